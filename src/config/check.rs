//! The structural check: the parsed TOML tree, with its spans, against the JSON Schema of
//! [`raw::PipelineFile`](super::raw::PipelineFile).
//!
//! It reports every unknown key (with a "did you mean" from the keys known at that place),
//! every value of the wrong type or outside its allowed set and every missing key in one
//! pass, then removes what it reported from the tree, so that the rest of the file can still
//! be deserialized and checked for semantic problems (keys the schema requires are optional to
//! serde, see [`raw`](super::raw)).

use std::sync::OnceLock;

use serde_json::Value as Json;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use crate::diag::{suggest, Code, Diagnostic};

/// The JSON Schema of the pipeline file (`pipeline schema`), as a JSON value.
pub fn schema() -> &'static Json {
    static SCHEMA: OnceLock<Json> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::to_value(schemars::schema_for!(super::raw::PipelineFile)).unwrap_or_default()
    })
}

/// What the structural check found.
pub struct Checked {
    /// Unknown keys, wrong types, invalid values and missing keys.
    pub diagnostics: Vec<Diagnostic>,
    /// Spans of the tables keys were removed from: a semantic "missing" problem there
    /// (`step-action`...) is most likely the removed key, already reported.
    pub pruned: Vec<std::ops::Range<usize>>,
}

/// Checks the document `root` against the pipeline schema; removes every reported value.
pub fn check(root: &mut Spanned<DeTable<'_>>) -> Checked {
    let schema = schema();
    let mut c = Checker {
        root: schema,
        diags: Vec::new(),
        pruned: Vec::new(),
    };
    let mut path = Vec::new();
    let span = root.span();
    c.table(root.get_mut(), span, schema, &mut path);
    Checked {
        diagnostics: c.diags,
        pruned: c.pruned,
    }
}

/// One step of the path from the root to a value.
#[derive(Clone)]
enum Seg {
    Key(String),
    Item,
}

/// Where a value is, for messages: `commit.config.expose`, `an item of `step``.
fn place(path: &[Seg]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Item => None,
        })
        .collect();
    keys.join(".")
}

fn table_name(path: &[Seg]) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        format!("`{}`", place(path))
    }
}

fn value_name(path: &[Seg]) -> String {
    let p = place(path);
    match path.last() {
        Some(Seg::Item) => format!("an item of `{p}`"),
        _ if p.is_empty() => "the document".to_string(),
        _ => format!("`{p}`"),
    }
}

/// The kind of a TOML value, as written in messages.
fn found(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Whether a value has the JSON Schema type `ty`.
fn has_type(v: &DeValue<'_>, ty: &str) -> bool {
    matches!(
        (v, ty),
        (DeValue::String(_), "string")
            | (DeValue::Integer(_), "integer" | "number")
            | (DeValue::Float(_), "number")
            | (DeValue::Boolean(_), "boolean")
            | (DeValue::Array(_), "array")
            | (DeValue::Table(_), "object")
    )
}

/// The non-null types a schema allows, if it restricts them.
fn types(schema: &Json) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Json::String(t) => Some(vec![t.as_str()]),
        Json::Array(ts) => Some(
            ts.iter()
                .filter_map(Json::as_str)
                .filter(|t| *t != "null")
                .collect(),
        ),
        _ => None,
    }
}

/// Whether a schema only allows `null` (the `None` half of an `Option`).
fn is_null(schema: &Json) -> bool {
    schema.get("type").and_then(Json::as_str) == Some("null")
}

struct Checker<'s> {
    root: &'s Json,
    diags: Vec<Diagnostic>,
    pruned: Vec<std::ops::Range<usize>>,
}

impl<'s> Checker<'s> {
    fn resolve(&self, mut schema: &'s Json) -> &'s Json {
        for _ in 0..32 {
            match schema.get("$ref").and_then(Json::as_str) {
                Some(r) => match self.root.pointer(r.trim_start_matches('#')) {
                    Some(s) => schema = s,
                    None => return &Json::Bool(true),
                },
                None => break,
            }
        }
        schema
    }

    /// What a schema expects, for messages: `a string`, `an array of strings`, `a table`.
    fn expected(&self, schema: &'s Json, depth: u32) -> String {
        let schema = self.resolve(schema);
        if depth > 4 {
            return "a value".into();
        }
        if let Some(variants) = variants(schema) {
            let mut parts: Vec<String> = Vec::new();
            for v in variants {
                let text = self.expected(v, depth + 1);
                if !parts.contains(&text) {
                    parts.push(text);
                }
            }
            if parts.iter().any(|p| p == "a number") {
                parts.retain(|p| p != "an integer");
            }
            return join_or(&parts);
        }
        if let Some(c) = schema.get("const") {
            return format!("`{}`", c.as_str().unwrap_or_default());
        }
        let Some(ts) = types(schema) else {
            return "a value".into();
        };
        let has_number = ts.contains(&"number");
        ts.iter()
            .filter(|t| !(has_number && **t == "integer"))
            .map(|t| match *t {
                "string" => "a string".to_string(),
                "integer" => "an integer".to_string(),
                "number" => "a number".to_string(),
                "boolean" => "`true` or `false`".to_string(),
                "object" => "a table".to_string(),
                "array" => match schema.get("items") {
                    Some(items) => {
                        let item = self.expected(items, depth + 1);
                        match plural(&item) {
                            Some(p) => format!("an array of {p}"),
                            None => "an array".to_string(),
                        }
                    }
                    None => "an array".to_string(),
                },
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Checks one value; returns false when it must be removed from its parent.
    fn value(
        &mut self,
        v: &mut Spanned<DeValue<'_>>,
        schema: &'s Json,
        path: &mut Vec<Seg>,
    ) -> bool {
        let schema = self.resolve(schema);
        if let Some(variants) = variants(schema) {
            return self.any_of(v, schema, variants, path);
        }
        if let Some(ts) = types(schema) {
            if !ts.iter().any(|t| has_type(v.get_ref(), t)) {
                let expected = self.expected(schema, 0);
                self.type_error(v, &expected, path);
                return false;
            }
        }
        if let Some(c) = schema.get("const") {
            if v.get_ref().as_str() != c.as_str() {
                self.invalid_value(v, &[c], path);
                return false;
            }
        }
        if let Some(Json::Array(allowed)) = schema.get("enum") {
            if !allowed.iter().any(|a| a.as_str() == v.get_ref().as_str()) {
                let allowed: Vec<&Json> = allowed.iter().collect();
                self.invalid_value(v, &allowed, path);
                return false;
            }
        }
        let span = v.span();
        match v.get_mut() {
            DeValue::Table(t) => self.table(t, span, schema, path),
            DeValue::Array(a) => self.array(a, schema, path),
            _ => true,
        }
    }

    fn any_of(
        &mut self,
        v: &mut Spanned<DeValue<'_>>,
        schema: &'s Json,
        variants: Vec<&'s Json>,
        path: &mut Vec<Seg>,
    ) -> bool {
        let variants: Vec<&'s Json> = variants
            .into_iter()
            .map(|s| self.resolve(s))
            .filter(|s| !is_null(s))
            .collect();
        if let [only] = variants[..] {
            return self.value(v, only, path);
        }
        // A variant that accepts the value as is wins.
        let mut candidates = Vec::new();
        for variant in &variants {
            let mut trial = Checker {
                root: self.root,
                diags: Vec::new(),
                pruned: Vec::new(),
            };
            let mut copy = v.clone();
            if trial.value(&mut copy, variant, &mut path.clone()) && trial.diags.is_empty() {
                return true;
            }
            let typed = types(variant)
                .is_some_and(|ts| ts.iter().any(|t| has_type(v.get_ref(), t)))
                || variants_of_type(variant, v.get_ref());
            if typed {
                candidates.push(*variant);
            }
        }
        // All candidates are constants of the value's type: an enum.
        let consts: Vec<&Json> = candidates.iter().filter_map(|c| c.get("const")).collect();
        if !consts.is_empty() && consts.len() == candidates.len() {
            self.invalid_value(v, &consts, path);
            return false;
        }
        // Else the first variant of the value's type explains what is wrong inside it.
        match candidates.first() {
            Some(variant) => self.value(v, variant, path),
            None => {
                let expected = self.expected(schema, 0);
                self.type_error(v, &expected, path);
                false
            }
        }
    }

    fn table(
        &mut self,
        t: &mut DeTable<'_>,
        span: std::ops::Range<usize>,
        schema: &'s Json,
        path: &mut Vec<Seg>,
    ) -> bool {
        let properties = schema.get("properties").and_then(Json::as_object);
        let additional = schema.get("additionalProperties");
        let mut remove: Vec<String> = Vec::new();
        // Known keys that an unknown key here is a misspelling of.
        let mut meant: Vec<&str> = Vec::new();
        for (key, value) in t.iter_mut() {
            let name: &str = key.get_ref();
            let child = match properties.and_then(|p| p.get(name)) {
                Some(s) => Some(s),
                None => match additional {
                    Some(Json::Bool(false)) => None,
                    Some(Json::Bool(true)) | None => {
                        continue;
                    }
                    Some(s) => Some(s),
                },
            };
            let Some(child) = child else {
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let mut d = Diagnostic::new(
                    Code::UnknownKey,
                    format!("unknown key `{name}` in {}", table_name(path)),
                )
                .at(key.span())
                .label("unknown key");
                d = match suggest(name, known.iter().copied()) {
                    Some(k) => {
                        meant.push(k);
                        d.hint(format!("did you mean `{k}`?"))
                    }
                    None if !known.is_empty() => {
                        d.hint(format!("the keys here are: {}", known.join(", ")))
                    }
                    None => d,
                };
                self.diags.push(d);
                remove.push(name.to_string());
                continue;
            };
            path.push(Seg::Key(name.to_string()));
            let ok = self.value(value, child, path);
            path.pop();
            if !ok {
                remove.push(name.to_string());
            }
        }
        for r in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
        {
            // `imag = ...`: the unknown key's "did you mean `image`?" says it all.
            if !t.contains_key(r) && !meant.contains(&r) {
                let mut d = Diagnostic::new(
                    Code::MissingKey,
                    format!("missing key `{r}` in {}", table_name(path)),
                );
                if !path.is_empty() {
                    d = d
                        .at(span.start..span.start)
                        .label(format!("`{r}` is required here"));
                }
                self.diags.push(d);
            }
        }
        for r in &remove {
            t.remove(r.as_str());
        }
        if !remove.is_empty() && !path.is_empty() {
            self.pruned.push(span);
        }
        // Kept even with a required key missing: the rest of the table is still checked.
        true
    }

    fn array<'i>(&mut self, a: &mut DeArray<'i>, schema: &'s Json, path: &mut Vec<Seg>) -> bool {
        let Some(items) = schema.get("items") else {
            return true;
        };
        let mut keep = Vec::with_capacity(a.len());
        let mut all = true;
        path.push(Seg::Item);
        for item in a.iter_mut() {
            let ok = self.value(item, items, path);
            keep.push(ok);
            all &= ok;
        }
        path.pop();
        if !all {
            let old = std::mem::replace(a, DeArray::new());
            for (item, ok) in old.iter().zip(keep) {
                if ok {
                    a.push(item.clone());
                }
            }
        }
        true
    }

    fn type_error(&mut self, v: &Spanned<DeValue<'_>>, expected: &str, path: &[Seg]) {
        let found = found(v.get_ref());
        let mut d = Diagnostic::new(
            Code::InvalidType,
            format!("{} must be {expected}, not {found}", value_name(path)),
        )
        .at(v.span())
        .label(format!("expected {expected}"));
        if expected.starts_with("an array") && !matches!(v.get_ref(), DeValue::Array(_)) {
            // The value itself, in brackets (a short one; a long one is the user's to see).
            let example = match v.get_ref() {
                DeValue::String(s) if s.chars().count() <= 40 && !s.contains(['"', '\\']) => {
                    format!("[\"{s}\"]")
                }
                _ => "[\"...\"]".to_string(),
            };
            d = d.hint(format!("write a list in brackets, e.g. `{example}`"));
        } else if expected == "a string" && !matches!(v.get_ref(), DeValue::String(_)) {
            d = d.hint("put the value in double quotes");
        }
        self.diags.push(d);
    }

    fn invalid_value(&mut self, v: &Spanned<DeValue<'_>>, allowed: &[&Json], path: &[Seg]) {
        let allowed: Vec<&str> = allowed.iter().filter_map(|a| a.as_str()).collect();
        let text = v.get_ref().as_str().unwrap_or_default();
        let list = allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = Diagnostic::new(
            Code::InvalidValue,
            format!("`{text}` is not a valid value for {}", value_name(path)),
        )
        .at(v.span())
        .label(format!("expected one of {list}"));
        if let Some(s) = suggest(text, allowed.iter().copied()) {
            d = d.hint(format!("did you mean `{s}`?"));
        }
        self.diags.push(d);
    }
}

/// The `anyOf` / `oneOf` alternatives of a schema.
fn variants(schema: &Json) -> Option<Vec<&Json>> {
    let list = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))?
        .as_array()?;
    Some(list.iter().collect())
}

/// Whether a nested `anyOf` has a variant of the value's type.
fn variants_of_type(schema: &Json, v: &DeValue<'_>) -> bool {
    variants(schema).is_some_and(|vs| {
        vs.iter()
            .any(|s| types(s).is_some_and(|ts| ts.iter().any(|t| has_type(v, t))))
    })
}

/// `a string` -> `strings`, for `an array of strings`.
fn plural(item: &str) -> Option<String> {
    if item.contains(" or ") {
        let parts: Option<Vec<String>> = item.split(" or ").map(plural).collect();
        return parts.map(|p| p.join(" or "));
    }
    let noun = item
        .strip_prefix("a ")
        .or_else(|| item.strip_prefix("an "))?;
    Some(format!("{noun}s"))
}

/// `a`, `a or b`, `a, b or c`.
fn join_or(parts: &[String]) -> String {
    match parts {
        [] => "a value".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
