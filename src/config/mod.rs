//! Loading a pipeline file: read, parse (with spans), template, validate.

pub mod raw;
pub mod template;

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::Value;

use crate::diag::{Diagnostic, Report};
use crate::model::{Builder, Pipeline};
use template::Templates;

/// Variables given on the command line, applied over `[vars]` in this order.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--var-file FILE.toml`, in order.
    pub var_files: Vec<std::path::PathBuf>,
    /// `--var KEY=VALUE`, in order; they win over var files.
    pub vars: Vec<(String, String)>,
}

/// Parses a pipeline file's text into its raw form; every problem becomes a diagnostic.
pub fn parse(source: &str) -> Result<raw::PipelineFile, Vec<Diagnostic>> {
    toml::from_str::<raw::PipelineFile>(source).map_err(|e| vec![toml_error(&e)])
}

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

/// Loads, templates and validates one pipeline file.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Pipeline, Report> {
    let file = path.display().to_string();
    let fail = |source: String, diagnostics| Report {
        file: file.clone(),
        source,
        diagnostics,
    };
    let bytes = std::fs::read(path).map_err(|e| {
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
                vec![Diagnostic::new("invalid-utf8", "the file is not valid UTF-8").at(at..at + 1)],
            ));
        }
    };
    let raw = parse(&source).map_err(|d| fail(source.clone(), d))?;
    let vars = variables(&raw, overrides).map_err(|d| fail(source.clone(), d))?;
    let templates = Templates::new(vars);
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
    Builder::new(&templates, &dir)
        .build(path, raw)
        .map_err(|d| fail(source, d))
}

fn variables(
    raw: &raw::PipelineFile,
    overrides: &Overrides,
) -> Result<BTreeMap<String, Value>, Vec<Diagnostic>> {
    let mut vars: BTreeMap<String, Value> = raw
        .vars
        .iter()
        .filter_map(|(k, v)| template::toml_to_value(v.get_ref()).map(|v| (k.clone(), v)))
        .collect();
    let mut diags = Vec::new();
    for file in &overrides.var_files {
        let loaded = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
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
    if diags.is_empty() {
        Ok(vars)
    } else {
        Err(diags)
    }
}
