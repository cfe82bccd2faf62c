//! Declared, typed template variables.
//!
//! A `[vars]` entry declares a variable and its type by its value (`debug = false` is a bool,
//! `arches = ["amd64"]` a list of strings), or by a table without a value (`registry = { type
//! = "string" }`: a variable the command line must give, else it is undefined). Values given
//! from outside, in this order (later ones win), are converted to the declared type:
//! `PIPELINE_VAR_<name>` environment variables, `--var-file FILE.toml` and `--var NAME=VALUE`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use minijinja::Value;
use toml::Spanned;

use super::Overrides;
use crate::diag::{Code, Diagnostic, Report};

/// The prefix of the environment variables that give a variable's value.
pub const ENV_PREFIX: &str = "PIPELINE_VAR_";

/// The type of a list's items, or of a scalar variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Bool,
    Integer,
    Float,
}

/// A variable's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Scalar(Scalar),
    List(Scalar),
}

impl Scalar {
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Scalar::String => "a string",
            Scalar::Bool => "a bool",
            Scalar::Integer => "an integer",
            Scalar::Float => "a number",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Scalar::String => "strings",
            Scalar::Bool => "bools",
            Scalar::Integer => "integers",
            Scalar::Float => "numbers",
        }
    }

    pub(crate) fn of(v: &toml::Value) -> Option<Self> {
        Some(match v {
            toml::Value::String(_) => Scalar::String,
            toml::Value::Boolean(_) => Scalar::Bool,
            toml::Value::Integer(_) => Scalar::Integer,
            toml::Value::Float(_) => Scalar::Float,
            _ => return None,
        })
    }

    /// Converts a value written as text (`--var`, the environment).
    pub(crate) fn parse(self, text: &str) -> Result<Value, String> {
        let t = text.trim();
        match self {
            Scalar::String => Ok(Value::from(text)),
            Scalar::Bool => match t.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::from(true)),
                "false" | "0" => Ok(Value::from(false)),
                _ => Err(format!("`{text}` is not `true` or `false`")),
            },
            Scalar::Integer => t
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("`{text}` is not an integer")),
            Scalar::Float => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::from(f)),
                _ => Err(format!("`{text}` is not a number")),
            },
        }
    }

    /// Converts a TOML value (a var file); an integer is a fine number.
    pub(crate) fn convert(self, v: &toml::Value) -> Result<Value, String> {
        match (self, v) {
            (Scalar::String, toml::Value::String(s)) => Ok(Value::from(s.as_str())),
            (Scalar::Bool, toml::Value::Boolean(b)) => Ok(Value::from(*b)),
            (Scalar::Integer, toml::Value::Integer(i)) => Ok(Value::from(*i)),
            (Scalar::Float, toml::Value::Float(f)) => Ok(Value::from(*f)),
            (Scalar::Float, toml::Value::Integer(i)) => Ok(Value::from(*i as f64)),
            _ => Err(format!("{} is not {}", kind_of(v), self.noun())),
        }
    }
}

impl Kind {
    /// `a bool`, `a list of strings`.
    pub fn noun(self) -> String {
        match self {
            Kind::Scalar(s) => s.noun().to_string(),
            Kind::List(s) => format!("a list of {}", s.plural()),
        }
    }

    /// The name of the type in `{ type = "..." }`.
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Kind::Scalar(Scalar::String),
            "bool" => Kind::Scalar(Scalar::Bool),
            "integer" => Kind::Scalar(Scalar::Integer),
            "number" => Kind::Scalar(Scalar::Float),
            "list" => Kind::List(Scalar::String),
            _ => return None,
        })
    }

    /// The type a value declares, and the value; `None` for a table, a date or a mixed list.
    fn declared_by(v: &toml::Value) -> Option<(Self, Value)> {
        if let toml::Value::Array(items) = v {
            let item = items.first().map_or(Some(Scalar::String), Scalar::of)?;
            let kind = Kind::List(item);
            return Some((kind, kind.convert(v).ok()?));
        }
        let s = Scalar::of(v)?;
        Some((Kind::Scalar(s), s.convert(v).ok()?))
    }

    /// Converts a value written as text: a list is TOML (`["a", "b"]`) or comma-separated.
    pub fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            Kind::Scalar(s) => s.parse(text),
            Kind::List(s) if text.trim_start().starts_with('[') => {
                let doc: BTreeMap<String, toml::Value> = toml::from_str(&format!("v = {text}"))
                    .map_err(|_| format!("`{text}` is not a TOML list"))?;
                let v = doc.get("v").cloned().unwrap_or(toml::Value::Boolean(false));
                Kind::List(s).convert(&v)
            }
            Kind::List(s) => {
                let items: Result<Vec<Value>, String> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|_| !text.trim().is_empty())
                    .map(|item| s.parse(item))
                    .collect();
                items.map(Value::from)
            }
        }
    }

    /// Converts a TOML value of the declared type.
    fn convert(self, v: &toml::Value) -> Result<Value, String> {
        match (self, v) {
            (Kind::Scalar(s), _) => s.convert(v),
            (Kind::List(s), toml::Value::Array(items)) => {
                let items: Result<Vec<Value>, String> = items
                    .iter()
                    .map(|i| s.convert(i).map_err(|e| format!("an item: {e}")))
                    .collect();
                items.map(Value::from)
            }
            (Kind::List(_), _) => Err(format!("{} is not {}", kind_of(v), self.noun())),
        }
    }
}

fn kind_of(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a bool",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// One `[vars]` entry.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub name: String,
    pub kind: Kind,
    /// The value written in the file; `None` for `{ type = "..." }` without `default`.
    pub value: Option<Value>,
    /// Where the entry's value is.
    pub span: Range<usize>,
}

/// Reads the `[vars]` table: each entry's type and value.
pub fn declare(
    vars: &BTreeMap<String, Spanned<toml::Value>>,
) -> (Vec<Declaration>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    for (name, v) in vars {
        let declared = match v.get_ref() {
            toml::Value::Table(t) => table(t),
            other => Kind::declared_by(other)
                .map(|(kind, value)| (kind, Some(value)))
                .ok_or_else(|| {
                    let why = if matches!(other, toml::Value::Array(_)) {
                        "a list variable's items are all strings, all bools or all numbers"
                    } else {
                        "a variable is a string, a number, a bool or a list of them"
                    };
                    why.to_string()
                }),
        };
        match declared {
            Ok((kind, value)) => out.push(Declaration {
                name: name.clone(),
                kind,
                value,
                span: v.span(),
            }),
            Err(e) => diags.push(
                Diagnostic::new(Code::InvalidVar, format!("variable `{name}`: {e}"))
                    .at(v.span())
                    .hint(
                        "write a value (`debug = false`, `arches = [\"amd64\"]`) or a type \
                         without one (`registry = { type = \"string\" }`)",
                    ),
            ),
        }
    }
    (out, diags)
}

/// `{ type = "...", default = ..., description = "..." }`.
fn table(t: &toml::Table) -> Result<(Kind, Option<Value>), String> {
    // A `type` the structural check refused (and reported) is gone: a string, quietly.
    let Some(name) = t.get("type").and_then(toml::Value::as_str) else {
        return Ok((Kind::Scalar(Scalar::String), None));
    };
    let mut kind = Kind::named(name).ok_or_else(|| {
        format!("`{name}` is not a type: write `string`, `bool`, `integer`, `number` or `list`")
    })?;
    let Some(default) = t.get("default") else {
        return Ok((kind, None));
    };
    if let (Kind::List(_), toml::Value::Array(items)) = (kind, default) {
        if let Some(item) = items.first().and_then(Scalar::of) {
            kind = Kind::List(item);
        }
    }
    let value = kind
        .convert(default)
        .map_err(|e| format!("the default: {e}"))?;
    Ok((kind, Some(value)))
}

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The pipeline file, at this byte range.
    File(Range<usize>),
    /// A `--var-file`, at this line.
    VarFile(PathBuf, usize),
    /// `--var`.
    Cli,
    /// `PIPELINE_VAR_<name>`.
    Env,
    /// Declared without a value, and given none.
    Unset,
    /// A `[matrix]` key, whose values are written at this byte range.
    Matrix(Range<usize>),
}

/// A value given from outside the pipeline file.
#[derive(Debug, Clone)]
pub struct Given {
    pub name: String,
    pub value: GivenValue,
    pub origin: Origin,
    /// Where the name is in a var file (for an unknown name).
    pub key_span: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
pub enum GivenValue {
    Text(String),
    Toml(toml::Value),
}

impl Given {
    /// How the value was given, for messages: `--var debug=maybe`, `vars.toml:3`.
    pub(crate) fn shown(&self) -> String {
        match (&self.origin, &self.value) {
            (Origin::Cli, GivenValue::Text(t)) => format!("`--var {}={t}`", self.name),
            (Origin::Env, GivenValue::Text(t)) => format!("`{ENV_PREFIX}{}={t}`", self.name),
            (Origin::VarFile(f, line), _) => format!("`{}` line {line}", f.display()),
            _ => format!("`{}`", self.name),
        }
    }
}

/// A var file as read: its text and entries, or why it cannot be read.
#[derive(Debug, Clone)]
pub struct VarFile {
    pub path: PathBuf,
    pub text: String,
    pub entries: Result<Vec<Given>, String>,
}

/// Reads a `--var-file`.
pub fn var_file(path: &Path) -> VarFile {
    let text = crate::fsread::read_bounded(path, crate::fsread::FILE_LIMIT)
        .map_err(|e| e.to_string())
        .and_then(|b| String::from_utf8(b).map_err(|_| "not valid UTF-8".to_string()));
    let (text, entries) = match text {
        Ok(text) => {
            let entries = entries(path, &text);
            (text, entries)
        }
        Err(e) => (String::new(), Err(e)),
    };
    VarFile {
        path: path.to_path_buf(),
        text,
        entries,
    }
}

fn entries(path: &Path, text: &str) -> Result<Vec<Given>, String> {
    let map =
        toml::from_str::<BTreeMap<Spanned<String>, Spanned<toml::Value>>>(text).map_err(|e| {
            // The message without the snippet of the file that `Display` adds.
            let before = e.span().and_then(|at| text.get(..at.start));
            let line = before.unwrap_or_default().matches('\n').count() + 1;
            format!("{} at line {line}", e.message().trim())
        })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let line = text[..k.span().start.min(text.len())].matches('\n').count() + 1;
            Given {
                name: k.get_ref().clone(),
                key_span: Some(k.span()),
                value: GivenValue::Toml(v.into_inner()),
                origin: Origin::VarFile(path.to_path_buf(), line),
            }
        })
        .collect())
}

/// Every value given from outside, in the order they apply: the environment, var files, `--var`.
pub fn given(overrides: &Overrides) -> (Vec<Given>, Vec<VarFile>) {
    let mut out: Vec<Given> = environment();
    let files: Vec<VarFile> = overrides
        .var_files
        .iter()
        .map(|f| var_file(f.as_path()))
        .collect();
    for f in &files {
        out.extend(f.entries.iter().flatten().cloned());
    }
    out.extend(overrides.vars.iter().map(|(k, v)| Given {
        name: k.clone(),
        value: GivenValue::Text(v.clone()),
        origin: Origin::Cli,
        key_span: None,
    }));
    (out, files)
}

/// `PIPELINE_VAR_<name>` variables, sorted by name.
fn environment() -> Vec<Given> {
    let mut out: Vec<Given> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let name = k.to_str()?.strip_prefix(ENV_PREFIX)?.to_string();
            Some(Given {
                name,
                value: GivenValue::Text(v.to_string_lossy().into_owned()),
                origin: Origin::Env,
                key_span: None,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The variables of one pipeline file, resolved.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Every variable with a value.
    pub values: BTreeMap<String, Value>,
    /// Declared variables without a value: undefined in templates (`is defined` is false).
    pub unset: BTreeSet<String>,
    /// The list variables.
    pub lists: BTreeSet<String>,
    /// Where each declared variable's value came from.
    pub origins: BTreeMap<String, Origin>,
}

/// Resolves the declared variables with the values given from outside; a given value that does
/// not fit its declared type is a diagnostic at the declaration. Names no declaration has are
/// left to [`unknown`] (another file of the same run may declare them).
pub fn resolve(declared: &[Declaration], given: &[Given]) -> (Resolved, Vec<Diagnostic>) {
    let mut r = Resolved::default();
    let mut diags = Vec::new();
    for d in declared {
        match &d.value {
            Some(v) => {
                r.values.insert(d.name.clone(), v.clone());
                r.origins
                    .insert(d.name.clone(), Origin::File(d.span.clone()));
            }
            None => {
                r.unset.insert(d.name.clone());
                r.origins.insert(d.name.clone(), Origin::Unset);
            }
        }
        if let Kind::List(_) = d.kind {
            r.lists.insert(d.name.clone());
        }
    }
    for g in given {
        let Some(d) = declared.iter().find(|d| d.name == g.name) else {
            continue;
        };
        let converted = match &g.value {
            GivenValue::Text(t) => d.kind.parse(t),
            GivenValue::Toml(v) => d.kind.convert(v),
        };
        match converted {
            Ok(v) => {
                r.values.insert(d.name.clone(), v);
                r.unset.remove(&d.name);
                r.origins.insert(d.name.clone(), g.origin.clone());
            }
            Err(e) => diags.push(
                Diagnostic::new(
                    Code::VarType,
                    format!("{}: `{}` is {}, and {e}", g.shown(), d.name, d.kind.noun()),
                )
                .at(d.span.clone())
                .label(format!("declared as {} here", d.kind.noun()))
                .hint(example(d)),
            ),
        }
    }
    (r, diags)
}

/// How to give a value of a declaration's type.
fn example(d: &Declaration) -> String {
    let n = &d.name;
    match d.kind {
        Kind::Scalar(Scalar::Bool) => format!("pass `--var {n}=true` or `--var {n}=false`"),
        Kind::Scalar(Scalar::Integer) => format!("pass a whole number, e.g. `--var {n}=3`"),
        Kind::Scalar(Scalar::Float) => format!("pass a number, e.g. `--var {n}=1.5`"),
        Kind::Scalar(Scalar::String) => format!("pass text, e.g. `--var {n}=text`"),
        Kind::List(_) => format!(
            "pass items separated by commas (`--var {n}=a,b`) or a TOML list (`--var '{n}=[\"a\", \"b\"]'`)"
        ),
    }
}

/// Values given for names no file declares: a report for the command line and one per var
/// file, with a did-you-mean.
pub fn unknown(given: &[Given], files: &[VarFile], declared: &BTreeSet<String>) -> Vec<Report> {
    let mut cli = Vec::new();
    let mut per_file: BTreeMap<PathBuf, Vec<Diagnostic>> = BTreeMap::new();
    for g in given.iter().filter(|g| !declared.contains(&g.name)) {
        let hint = match crate::diag::suggest(&g.name, declared.iter().map(String::as_str)) {
            Some(k) => format!("did you mean `{k}`?"),
            None => "declare it under [vars] in the pipeline file, e.g. `name = \"default\"`"
                .to_string(),
        };
        let mut d = Diagnostic::new(
            Code::UnknownVariable,
            format!(
                "{}: no pipeline declares a variable `{}`",
                g.shown(),
                g.name
            ),
        )
        .hint(hint);
        match (&g.origin, &g.key_span) {
            (Origin::VarFile(path, _), Some(span)) => {
                d = d.at(span.clone()).label("not declared under [vars]");
                per_file.entry(path.clone()).or_default().push(d);
            }
            _ => cli.push(d),
        }
    }
    let mut out = Vec::new();
    if !cli.is_empty() {
        out.push(Report {
            file: "the command line".into(),
            source: String::new(),
            diagnostics: cli,
        });
    }
    for f in files {
        if let Some(diagnostics) = per_file.remove(&f.path) {
            out.push(Report {
                file: f.path.display().to_string(),
                source: f.text.clone(),
                diagnostics,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_given_as_text_are_converted_to_the_declared_type() {
        let b = Kind::Scalar(Scalar::Bool);
        assert_eq!(b.parse("false").unwrap(), Value::from(false));
        assert_eq!(b.parse("TRUE").unwrap(), Value::from(true));
        assert!(b.parse("maybe").is_err());
        let i = Kind::Scalar(Scalar::Integer);
        assert_eq!(i.parse(" 3 ").unwrap(), Value::from(3));
        assert!(i.parse("3.5").is_err());
        let l = Kind::List(Scalar::String);
        assert_eq!(l.parse("a, b").unwrap(), Value::from(vec!["a", "b"]));
        assert_eq!(l.parse("").unwrap(), Value::from(Vec::<Value>::new()));
        assert_eq!(
            l.parse("[\"a\", \"b,c\"]").unwrap(),
            Value::from(vec!["a", "b,c"])
        );
        assert!(Kind::List(Scalar::Integer).parse("1,x").is_err());
        let f = Kind::Scalar(Scalar::Float);
        assert!(f
            .convert(&toml::Value::Integer(2))
            .is_ok_and(|v| v.to_string() == "2.0"));
        assert!(f.parse("inf").is_err());
    }
}
