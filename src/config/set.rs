//! `--set PATH=VALUE`: any key of the file, given on the command line.
//!
//! The path is the key as a dotted TOML key, with the index of an array item as a segment:
//! `base.image`, `step.0.run`, `commit.config.labels."org.opencontainers.image.version"`,
//! `publish.1.tags`. Each `--set` is applied, in order, to the parsed file before any check,
//! so the value is checked as if the file said it; its type is the key's in the schema: a
//! key that takes a string takes the value as written, any other reads it as a TOML value
//! (`9`, `true`, `["a", "b"]`, `{ test = "true" }`). Missing tables on the way are created;
//! array items are not. Problems with a value name the flag, not a line of the file.

use std::ops::Range;

use serde_json::Value as Json;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use crate::diag::{suggest, Code, Diagnostic};

/// The span of the value of the `i`th `--set` of a file whose text is `len` bytes long: past
/// the end of the text, so a diagnostic about it is known for one (see [`relocate`]).
pub(crate) fn span(len: usize, i: usize) -> Range<usize> {
    let at = len + 1 + i;
    at..at + 1
}

/// Applies every `--set` to the parsed file `root` (of a text `len` bytes long).
pub(crate) fn apply<'i>(
    root: &mut DeTable<'i>,
    sets: &'i [(String, String)],
    len: usize,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for (i, (path, value)) in sets.iter().enumerate() {
        if let Err(e) = apply_one(root, path, value, span(len, i)) {
            diags.push(
                Diagnostic::new(Code::InvalidSet, format!("`--set {path}={value}`: {e}")).hint(
                    "write `--set KEY.KEY=VALUE` with the keys as in the file, and the index of \
                     an item for an array (`--set step.0.run=...`)",
                ),
            );
        }
    }
    diags
}

/// A diagnostic about a `--set` value names the flag instead of a place in the file.
pub(crate) fn relocate(mut d: Diagnostic, len: usize, sets: &[(String, String)]) -> Diagnostic {
    let Some(i) = d.span.as_ref().and_then(|s| s.start.checked_sub(len + 1)) else {
        return d;
    };
    if let Some((path, value)) = sets.get(i) {
        d.message = format!("`--set {path}={value}`: {}", d.message);
        d.span = None;
        d.label = None;
    }
    d
}

/// One segment of a path.
fn segments(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    loop {
        let (segment, after) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').ok_or("a quoted key has no closing `\"`")?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => {
                let end = rest.find('.').unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if segment.is_empty() {
            return Err("the path has an empty key".into());
        }
        out.push(segment.to_string());
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => return Ok(out),
            None => return Err("a quoted key must be followed by `.` or the end".into()),
        }
    }
}

fn resolve(mut s: &'static Json) -> &'static Json {
    let root = super::check::schema();
    for _ in 0..32 {
        match s.get("$ref").and_then(Json::as_str) {
            Some(r) => match root.pointer(r.trim_start_matches('#')) {
                Some(next) => s = next,
                None => break,
            },
            None => break,
        }
    }
    s
}

/// The alternatives of a schema, resolved (one for a schema without `anyOf`).
fn variants(s: &'static Json) -> Vec<&'static Json> {
    let s = resolve(s);
    match s
        .get("anyOf")
        .or_else(|| s.get("oneOf"))
        .and_then(Json::as_array)
    {
        Some(list) => list.iter().map(resolve).collect(),
        None => vec![s],
    }
}

fn has_type(s: &Json, ty: &str) -> bool {
    match s.get("type") {
        Some(Json::String(t)) => t == ty,
        Some(Json::Array(ts)) => ts.iter().any(|t| t == ty),
        _ => ty == "string" && (s.get("enum").is_some() || s.get("const").is_some()),
    }
}

/// The schema of key `key` of a table schema, and the keys it has (for a did-you-mean).
fn child(s: &'static Json, key: &str) -> Result<&'static Json, Vec<&'static str>> {
    let mut known = Vec::new();
    for v in variants(s) {
        if let Some(props) = v.get("properties").and_then(Json::as_object) {
            if let Some(c) = props.get(key) {
                return Ok(c);
            }
            known.extend(props.keys().map(String::as_str));
        }
        match v.get("additionalProperties") {
            Some(Json::Bool(false)) | None => {}
            Some(Json::Bool(true)) => return Ok(&Json::Bool(true)),
            Some(c) => return Ok(c),
        }
    }
    Err(known)
}

/// The item schema of an array schema.
fn items(s: &'static Json) -> Option<&'static Json> {
    variants(s).into_iter().find_map(|v| v.get("items"))
}

fn apply_one<'i>(
    root: &mut DeTable<'i>,
    path: &str,
    value: &'i str,
    span: Range<usize>,
) -> Result<(), String> {
    let segments = segments(path)?;
    if segments[0] == "vars" {
        return Err("variables are given with `--var NAME=VALUE`".into());
    }
    walk(root, super::check::schema(), &segments, value, span, "")
}

/// Sets `segments` of `table` (of schema `schema`, at `done` in the file) to `value`.
fn walk<'i>(
    table: &mut DeTable<'i>,
    schema: &'static Json,
    segments: &[String],
    value: &'i str,
    span: Range<usize>,
    done: &str,
) -> Result<(), String> {
    let Some((key, rest)) = segments.split_first() else {
        return Err("the path is empty".into());
    };
    let schema = child(schema, key).map_err(|known| {
        let place = if done.is_empty() {
            "the top level".to_string()
        } else {
            format!("`{done}`")
        };
        match suggest(key, known.iter().copied()) {
            Some(k) => format!("{place} has no key `{key}`: did you mean `{k}`?"),
            None => format!("{place} has no key `{key}`"),
        }
    })?;
    let done = if done.is_empty() {
        key.clone()
    } else {
        format!("{done}.{key}")
    };
    let name = || Spanned::new(span.clone(), key.clone().into());
    if rest.is_empty() {
        table.insert(name(), typed(schema, value, span.clone()));
        return Ok(());
    }
    let is_array = variants(schema).iter().any(|v| has_type(v, "array"));
    if !table.contains_key(key.as_str()) {
        if is_array {
            return Err(format!("the file has no `{done}`"));
        }
        let empty = Spanned::new(span.clone(), DeValue::Table(DeTable::new()));
        table.insert(name(), empty);
    }
    match table.get_mut(key.as_str()).map(Spanned::get_mut) {
        Some(DeValue::Table(t)) => walk(t, schema, rest, value, span, &done),
        Some(DeValue::Array(a)) if is_array => {
            let (index, rest) = rest.split_first().unwrap_or((key, &[]));
            if rest.is_empty() {
                return Err(format!(
                    "`{done}.{index}` is a whole item: set its keys one by one"
                ));
            }
            let (t, item_schema) = item(a, index, &done, schema)?;
            walk(
                t,
                item_schema,
                rest,
                value,
                span,
                &format!("{done}.{index}"),
            )
        }
        _ => Err(format!("`{done}` is not a table")),
    }
}

/// The item `index` of an array of tables, and its schema.
fn item<'a, 'i>(
    a: &'a mut DeArray<'i>,
    index: &str,
    done: &str,
    schema: &'static Json,
) -> Result<(&'a mut DeTable<'i>, &'static Json), String> {
    let len = a.len();
    let i: usize = index
        .parse()
        .map_err(|_| format!("`{done}` is an array: `{index}` is not an index"))?;
    let item_schema = items(schema).ok_or_else(|| format!("`{done}` is not an array"))?;
    match a.get_mut(i).map(Spanned::get_mut) {
        Some(DeValue::Table(t)) => Ok((t, item_schema)),
        Some(_) => Err(format!("`{done}.{i}` is not a table")),
        None => Err(format!(
            "`{done}` has {len} item{} (indexes start at 0)",
            if len == 1 { "" } else { "s" }
        )),
    }
}

/// The value as the key's type reads it: a key that takes a string takes the text as it is
/// (unless it is a list or a table); any other reads it as TOML, and when that fails it is the
/// text, which the structural check then refuses with the type it wanted.
fn typed<'i>(schema: &'static Json, value: &'i str, span: Range<usize>) -> Spanned<DeValue<'i>> {
    let string = variants(schema)
        .iter()
        .any(|v| has_type(v, "string") || **v == Json::Bool(true));
    let literal = value.trim_start().starts_with(['[', '{']);
    if !string || literal {
        if let Ok(v) = DeValue::parse(value) {
            return respan(v.into_inner(), &span);
        }
    }
    Spanned::new(span, DeValue::String(value.into()))
}

/// A value with every span inside it replaced by `span`.
fn respan<'i>(v: DeValue<'i>, span: &Range<usize>) -> Spanned<DeValue<'i>> {
    let v = match v {
        DeValue::Array(a) => {
            let mut out = DeArray::new();
            for item in &a {
                out.push(respan(item.get_ref().clone(), span));
            }
            DeValue::Array(out)
        }
        DeValue::Table(t) => {
            let mut out = DeTable::new();
            for (k, v) in &t {
                out.insert(
                    Spanned::new(span.clone(), k.get_ref().clone()),
                    respan(v.get_ref().clone(), span),
                );
            }
            DeValue::Table(out)
        }
        other => other,
    };
    Spanned::new(span.clone(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_dotted_keys_with_quotes_and_indexes() {
        assert_eq!(segments("base.image").unwrap(), ["base", "image"]);
        assert_eq!(
            segments("commit.config.labels.\"a.b\"").unwrap(),
            ["commit", "config", "labels", "a.b"]
        );
        assert_eq!(segments("step.0.run").unwrap(), ["step", "0", "run"]);
        assert!(segments("base..image").is_err());
        assert!(segments("\"open").is_err());
    }
}
