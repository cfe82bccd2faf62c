//! `plan --resolved`: a pipeline file as the tool reads it, as TOML, with where each value
//! came from as a comment: `file:line`, `--set`, `--var`, a var file, the environment or a
//! default. Variables are resolved, `--set` applied and templates rendered (for the first
//! platform of a multi-platform file).

use std::fmt::Write as _;

use minijinja::Value;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::template::Templates;
use super::vars::{self, Origin, Resolved};
use super::Overrides;
use crate::model::Pipeline;

/// The top-level keys in the order they are printed (a TOML table's own keys first).
const ORDER: &[&str] = &[
    "name",
    "platforms",
    "vars",
    "base",
    "step",
    "commit",
    "publish",
    "secrets",
    "cache",
    "image",
];

/// What a value's comment needs: the file, its text, the `--set`s, the variables.
struct Context<'a> {
    file: String,
    source: &'a str,
    sets: &'a [(String, String)],
    /// The files the pipeline file extends.
    layers: &'a super::extends::Layers,
    vars: &'a Resolved,
    templates: Templates,
}

/// The resolved text of a loaded pipeline (its file is read again).
pub(crate) fn render(p: &Pipeline, overrides: &Overrides) -> String {
    let source = std::fs::read_to_string(&p.file).unwrap_or_default();
    let layers = match super::folder_of(&p.file) {
        Ok(dir) => super::extends::gather(&p.file, &source, &dir).0,
        Err(_) => super::extends::Layers::default(),
    };
    // Merged and `--set` applied once by the load, which succeeded.
    let (root, _) = super::merged(&source, &layers, &overrides.sets);
    let (given, _) = vars::given(overrides);
    let (declared_vars, given) = match super::parse_layered(&source, &layers, &overrides.sets).file
    {
        Some(raw) => {
            let mut declared = vars::declare(&raw.vars).0;
            let matrix =
                super::matrix::read(&raw.matrix, &mut declared, &|at| super::rank(&layers, at)).0;
            let given = matrix.given_for(&given, p.variant.as_ref());
            (declared, given)
        }
        None => (Vec::new(), given),
    };
    let (resolved, _) = vars::resolve(&declared_vars, &given);
    let platform = p.platform.as_ref().map(super::template::platform_value);
    let cx = Context {
        file: crate::diag::clean(&p.file.display().to_string()),
        source: &source,
        sets: &overrides.sets,
        layers: &layers,
        vars: &resolved,
        templates: Templates::new(&resolved, platform),
    };
    let mut out = format!(
        "# {}: as resolved ({}variables given, --set applied, templates rendered)\n",
        crate::diag::clean(&p.shown()),
        match &p.platform {
            Some(pl) if p.platforms.len() > 1 => format!("for {pl}; "),
            _ => String::new(),
        }
    );
    let root = root.get_ref();
    if !root.contains_key("name") {
        let _ = writeln!(
            out,
            "name = {}  # default: the file's name{}",
            toml::Value::from(p.name.clone()),
            if p.variant.is_some() {
                " and the variant's values"
            } else {
                ""
            }
        );
    }
    for key in ORDER {
        let Some(v) = root.get(*key) else {
            defaults(&mut out, key, root);
            continue;
        };
        match (*key, v.get_ref()) {
            ("vars", _) => variables(&mut out, &cx, &declared_vars),
            (_, DeValue::Table(t)) => table(&mut out, &cx, key, t, false),
            (_, DeValue::Array(items)) if items.iter().all(|i| i.get_ref().is_table()) => {
                for item in items {
                    if let DeValue::Table(t) = item.get_ref() {
                        table(&mut out, &cx, key, t, true);
                    }
                }
            }
            _ => line(&mut out, &cx, key, v),
        }
        if *key == "base" {
            defaults(&mut out, key, root);
        }
    }
    out
}

/// Keys the file leaves out that have a default worth showing.
fn defaults(out: &mut String, key: &str, root: &DeTable<'_>) {
    let base_pull = root
        .get("base")
        .and_then(|b| b.get_ref().as_table())
        .is_some_and(|b| b.contains_key("pull"));
    match key {
        "base" if !base_pull => out.push_str("pull = \"missing\"  # default\n"),
        "cache" => out.push_str("\n[cache]\ncheckpoint_after = \"1s\"  # default\n"),
        "image" => out.push_str("\n[image]\ncompression = \"gzip\"  # default\n"),
        _ => {}
    }
}

fn variables(out: &mut String, cx: &Context<'_>, declared: &[vars::Declaration]) {
    out.push_str("\n[vars]\n");
    for d in declared {
        let origin = cx.vars.origins.get(&d.name);
        let Some(value) = cx.vars.values.get(&d.name) else {
            let _ = writeln!(out, "# {}: {}, no value given", key(&d.name), d.kind.noun());
            continue;
        };
        let from = match origin {
            Some(Origin::File(span)) => cx.place(span),
            Some(Origin::VarFile(f, line)) => format!("{}:{line}", f.display()),
            Some(Origin::Cli) => "--var".to_string(),
            Some(Origin::Env) => format!("{}{}", vars::ENV_PREFIX, d.name),
            Some(Origin::Matrix(span)) => format!("matrix, {}", cx.place(span)),
            Some(Origin::Unset) | None => "default".to_string(),
        };
        let _ = writeln!(out, "{} = {}  # {from}", key(&d.name), toml_of(value));
    }
}

/// A table with a header (`[[step]]` for an item of an array of tables); its sub-tables that
/// hold tables get headers of their own, the others are written inline.
fn table(out: &mut String, cx: &Context<'_>, header: &str, t: &DeTable<'_>, item: bool) {
    if item {
        let _ = writeln!(out, "\n[[{header}]]");
    } else {
        let _ = writeln!(out, "\n[{header}]");
    }
    let mut entries: Vec<(&Spanned<std::borrow::Cow<'_, str>>, &Spanned<DeValue<'_>>)> =
        t.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut nested = Vec::new();
    for (k, v) in entries {
        match v.get_ref() {
            DeValue::Table(inner) if inner.values().any(|x| x.get_ref().is_table()) => {
                nested.push((k, inner));
            }
            _ => line(out, cx, k.get_ref(), v),
        }
    }
    for (k, inner) in nested {
        table(
            out,
            cx,
            &format!("{header}.{}", key(k.get_ref())),
            inner,
            false,
        );
    }
}

/// `key = value  # origin`.
fn line(out: &mut String, cx: &Context<'_>, name: &str, v: &Spanned<DeValue<'_>>) {
    let mut reads = Vec::new();
    let value = match v.get_ref() {
        DeValue::Array(items) if name == "tags" => cx.tags(items, &mut reads),
        _ => cx.value(v, &mut reads),
    };
    let mut comment = cx.place(&v.span());
    reads.sort();
    reads.dedup();
    if !reads.is_empty() {
        let _ = write!(comment, " ({})", reads.join(", "));
    }
    let _ = writeln!(out, "{} = {value}  # {comment}", key(name));
}

impl Context<'_> {
    /// `file:line`, or `--set PATH` for a value the command line set.
    fn place(&self, span: &std::ops::Range<usize>) -> String {
        let set = span
            .start
            .checked_sub(self.source.len() + 1)
            .filter(|_| self.layers.locate(span.start).is_none());
        match set {
            Some(i) => match self.sets.get(i) {
                Some((path, _)) => format!("--set {path}"),
                None => "--set".to_string(),
            },
            None => match self.layers.locate(span.start) {
                Some((layer, at)) => {
                    let line = super::line_of(&layer.text, at);
                    let file = crate::diag::clean(&layer.shown.display().to_string());
                    format!("from {file}:{line}")
                }
                None => {
                    let line = super::line_of(self.source, span.start);
                    format!("{}:{line}", self.file)
                }
            },
        }
    }

    /// The value as TOML, strings rendered; `reads` gets what the templates read.
    fn value(&self, v: &Spanned<DeValue<'_>>, reads: &mut Vec<String>) -> toml::Value {
        match v.get_ref() {
            DeValue::String(s) => {
                reads.extend(self.reads(s));
                let text = self
                    .templates
                    .render(s, v.span())
                    .unwrap_or_else(|_| s.to_string());
                toml::Value::String(text)
            }
            DeValue::Integer(i) => i.as_str().parse::<i64>().map_or_else(
                |_| toml::Value::String(i.as_str().into()),
                toml::Value::from,
            ),
            DeValue::Float(f) => f.as_str().parse::<f64>().map_or_else(
                |_| toml::Value::String(f.as_str().into()),
                toml::Value::from,
            ),
            DeValue::Boolean(b) => toml::Value::Boolean(*b),
            DeValue::Datetime(d) => toml::Value::Datetime(*d),
            DeValue::Array(a) => {
                toml::Value::Array(a.iter().map(|i| self.value(i, reads)).collect())
            }
            DeValue::Table(t) => toml::Value::Table(
                t.iter()
                    .map(|(k, i)| (k.get_ref().to_string(), self.value(i, reads)))
                    .collect(),
            ),
        }
    }

    /// Tags as apply takes them: a list variable alone gives one tag per item, an empty tag is
    /// left out.
    fn tags(&self, items: &[Spanned<DeValue<'_>>], reads: &mut Vec<String>) -> toml::Value {
        let mut out = Vec::new();
        for item in items {
            if let DeValue::String(s) = item.get_ref() {
                let written = Spanned::new(item.span(), s.to_string());
                if let Some(list) = self.templates.list(&written) {
                    reads.extend(self.reads(s));
                    out.extend(list.into_iter().map(toml::Value::String));
                    continue;
                }
            }
            match self.value(item, reads) {
                toml::Value::String(t) if t.trim().is_empty() => {}
                v => out.push(v),
            }
        }
        toml::Value::Array(out)
    }

    /// The variables a template reads, with where their values came from.
    fn reads(&self, text: &str) -> Vec<String> {
        self.templates
            .names(text)
            .into_iter()
            .map(|name| {
                let root = name.split('.').next().unwrap_or(&name).to_string();
                match self.vars.origins.get(&root) {
                    _ if root == "env" => {
                        let var = name.strip_prefix("env.").unwrap_or_default();
                        match std::env::var_os(var) {
                            Some(_) => format!("{name}: environment"),
                            None => format!("{name}: not set"),
                        }
                    }
                    _ if root == "platform" => format!("{name}: the platform built"),
                    Some(Origin::Cli) => format!("{root}: --var"),
                    Some(Origin::Env) => format!("{root}: {}{root}", vars::ENV_PREFIX),
                    Some(Origin::VarFile(f, line)) => {
                        format!("{root}: {}:{line}", f.display())
                    }
                    Some(Origin::File(span)) => format!("{root}: {}", self.place(span)),
                    Some(Origin::Matrix(span)) => {
                        format!("{root}: matrix, {}", self.place(span))
                    }
                    Some(Origin::Unset) | None => format!("{root}: no value"),
                }
            })
            .collect()
    }
}

/// A key as TOML writes it: bare when it can be.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// A template value as TOML.
fn toml_of(v: &Value) -> toml::Value {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Bool => toml::Value::Boolean(v.is_true()),
        ValueKind::Number => {
            let text = v.to_string();
            match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(i), _) => toml::Value::Integer(i),
                (_, Ok(f)) => toml::Value::Float(f),
                _ => toml::Value::String(text),
            }
        }
        ValueKind::Seq => toml::Value::Array(
            v.try_iter()
                .map(|items| items.map(|i| toml_of(&i)).collect())
                .unwrap_or_default(),
        ),
        _ => toml::Value::String(v.as_str().map_or_else(|| v.to_string(), str::to_string)),
    }
}

/// Resolves every file named (folders expanded) after loading them: the loads' problems, or
/// the text of every pipeline, one after the other.
pub fn resolved(
    files: &[std::path::PathBuf],
    overrides: &Overrides,
) -> Result<String, Vec<crate::diag::Report>> {
    let loaded = super::load_all(files, overrides)?;
    let texts: Vec<String> = loaded
        .pipelines
        .iter()
        .map(|p| render(p, overrides))
        .collect();
    Ok(texts.join("\n"))
}
