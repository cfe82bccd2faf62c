//! Loading a pipeline file: read, parse (with spans), template, validate.

pub mod check;
pub mod raw;
pub mod template;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::Value;
use serde::Deserialize;

use crate::diag::{Diagnostic, Report};
use crate::model::Pipeline;
use template::Templates;
use validate::Builder;

/// Variables given on the command line, applied over `[vars]` in this order.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--var-file FILE.toml`, in order.
    pub var_files: Vec<std::path::PathBuf>,
    /// `--var KEY=VALUE`, in order; they win over var files.
    pub vars: Vec<(String, String)>,
}

/// A parsed pipeline file: what could be read of it, and every problem found on the way.
#[derive(Debug)]
pub struct Parsed {
    /// The file's raw form, with the structurally wrong parts left out; `None` when too much is
    /// wrong (a syntax error, a missing `[base]`...) to check anything further.
    pub file: Option<raw::PipelineFile>,
    /// TOML syntax errors, unknown keys, wrong types and missing keys, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// Spans of tables that lost keys to structural problems (see [`check::Checked`]).
    pub pruned: Vec<std::ops::Range<usize>>,
}

/// Parses a pipeline file's text: every syntax error and every structural problem (unknown
/// key, wrong type, missing key) is reported, not only the first one.
pub fn parse(source: &str) -> Parsed {
    let (mut root, errors) = toml::de::DeTable::parse_recoverable(source);
    let mut diagnostics: Vec<Diagnostic> = errors
        .iter()
        .take(crate::diag::MAX_SHOWN)
        .map(toml_error)
        .collect();
    let syntax_ok = diagnostics.is_empty();
    let checked = check::check(&mut root);
    if syntax_ok {
        diagnostics.extend(checked.diagnostics);
    } else {
        // After the first syntax error the recovered tree is a guess: keep only what the
        // structural check says about the part before it.
        let first = diagnostics
            .iter()
            .filter_map(|d| d.span.as_ref().map(|s| s.start))
            .min()
            .unwrap_or(0);
        diagnostics.extend(checked.diagnostics.into_iter().filter(|d| {
            d.code != "missing-key"
                && d.span
                    .as_ref()
                    .is_some_and(|s| s.start < s.end && s.end <= first)
        }));
    }
    let complete = checked.complete;
    diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
    let file = if syntax_ok && complete {
        match raw::PipelineFile::deserialize(toml::de::Deserializer::from(root)) {
            Ok(file) => Some(file),
            Err(e) => {
                diagnostics.push(toml_error(&e));
                None
            }
        }
    } else {
        None
    };
    Parsed {
        file,
        diagnostics,
        pruned: checked.pruned,
    }
}

/// Semantic codes about something missing, which a structural problem in the same table
/// (an unknown or mistyped key, removed before the semantic checks) already explains.
const CASCADES: &[&str] = &["step-action", "secret-source", "incomplete-credentials"];

/// Turns a TOML or serde error into a coded diagnostic.
pub fn toml_error(e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_string();
    let code = if message.starts_with("unknown field") {
        "unknown-key"
    } else if message.starts_with("invalid type") || message.starts_with("data did not match") {
        "invalid-type"
    } else if message.starts_with("missing field") {
        "missing-key"
    } else if message.starts_with("unknown variant") {
        "invalid-value"
    } else {
        "toml-syntax"
    };
    let mut d = Diagnostic::new(code, message);
    if let Some(span) = e.span() {
        d = d.at(span);
    }
    d
}

/// Expands folders to the `*.toml` files in them, sorted; files are taken as given.
pub(crate) fn expand(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(f)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(f.clone());
        }
    }
    out
}

/// Loads and validates every file (folders expanded); on failure, the problems of every file.
pub(crate) fn load_all(
    files: &[PathBuf],
    overrides: &Overrides,
) -> Result<Vec<Pipeline>, Vec<Report>> {
    let mut pipelines = Vec::new();
    let mut reports = Vec::new();
    for f in expand(files) {
        match load(&f, overrides) {
            Ok(p) => pipelines.push(p),
            Err(report) => reports.push(report),
        }
    }
    if reports.is_empty() {
        Ok(pipelines)
    } else {
        Err(reports)
    }
}

/// Loads, templates and validates one pipeline file.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Pipeline, Report> {
    let file = path.display().to_string();
    let fail = |source: String, diagnostics| Report {
        file: file.clone(),
        source,
        diagnostics,
    };
    let bytes = crate::fsread::read_bounded(path, crate::fsread::FILE_LIMIT).map_err(|e| {
        fail(
            String::new(),
            vec![Diagnostic::new(
                "unreadable-file",
                format!("cannot read `{file}`: {e}"),
            )],
        )
    })?;
    let source = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            return Err(fail(
                text,
                vec![
                    Diagnostic::new("invalid-utf8", "the file is not valid UTF-8")
                        .at(at..at + 1)
                        .hint("save the file as UTF-8"),
                ],
            ));
        }
    };
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .canonicalize()
        .map_err(|e| {
            fail(
                source.clone(),
                vec![Diagnostic::new(
                    "unreadable-file",
                    format!("cannot resolve the folder of `{file}`: {e}"),
                )],
            )
        })?;
    load_str(path, &source, &dir, overrides).map_err(|d| fail(source, d))
}

/// Parses, templates and validates a pipeline file's text; `dir` is the (canonical) folder
/// copy sources and secret files are relative to. Every problem found is returned.
pub fn load_str(
    path: &Path,
    source: &str,
    dir: &Path,
    overrides: &Overrides,
) -> Result<Pipeline, Vec<Diagnostic>> {
    let Parsed {
        file,
        mut diagnostics,
        pruned,
    } = parse(source);
    let Some(raw) = file else {
        return Err(diagnostics);
    };
    let (vars, var_diags) = variables(&raw, overrides);
    diagnostics.extend(var_diags);
    let templates = Templates::new(vars);
    match Builder::new(&templates, dir).build(path, raw) {
        Ok(p) if diagnostics.is_empty() => Ok(p),
        Ok(_) => Err(diagnostics),
        Err(d) => {
            // "Neither `run` nor `copy`" in a step whose `rnu` was just reported says the
            // same thing twice.
            let cascade = |d: &Diagnostic| {
                CASCADES.contains(&d.code)
                    && d.span.as_ref().is_some_and(|s| {
                        pruned
                            .iter()
                            .any(|t| t.start <= s.start && s.start < t.end.max(t.start + 1))
                    })
            };
            diagnostics.extend(d.into_iter().filter(|d| !cascade(d)));
            Err(diagnostics)
        }
    }
}

fn variables(
    raw: &raw::PipelineFile,
    overrides: &Overrides,
) -> (BTreeMap<String, Value>, Vec<Diagnostic>) {
    let mut vars: BTreeMap<String, Value> = raw
        .vars
        .iter()
        .filter_map(|(k, v)| template::toml_to_value(v.get_ref()).map(|v| (k.clone(), v)))
        .collect();
    let mut diags = Vec::new();
    for file in &overrides.var_files {
        let loaded = crate::fsread::read_bounded(file, crate::fsread::FILE_LIMIT)
            .map_err(|e| e.to_string())
            .and_then(|b| String::from_utf8(b).map_err(|_| "not valid UTF-8".to_string()))
            .and_then(|s| {
                toml::from_str::<BTreeMap<String, toml::Value>>(&s).map_err(|e| e.to_string())
            });
        match loaded {
            Ok(map) => {
                for (k, v) in map {
                    match template::toml_to_value(&v) {
                        Some(v) => {
                            vars.insert(k, v);
                        }
                        None => diags.push(Diagnostic::new(
                            "invalid-var",
                            format!(
                                "variable `{k}` in `{}` must be a string, number or boolean",
                                file.display()
                            ),
                        )),
                    }
                }
            }
            Err(e) => diags.push(Diagnostic::new(
                "invalid-var-file",
                format!("cannot load `{}`: {e}", file.display()),
            )),
        }
    }
    for (k, v) in &overrides.vars {
        vars.insert(k.clone(), Value::from(v.as_str()));
    }
    (vars, diags)
}
