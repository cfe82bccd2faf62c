//! Templating: every string value in a pipeline file is a minijinja template.
//!
//! The context holds the `[vars]` table (overridden by `--var-file` and `--var`) and `env`, an
//! object that reads the process environment only where a template names it: `{{ env.HOME }}`.
//! Undefined names are errors (strict undefined behaviour), never empty strings.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Object, Value};
use minijinja::{Environment, UndefinedBehavior};

use super::raw::Str;
use crate::diag::Diagnostic;

/// The process environment, visible to templates as `env`, read lazily by name.
#[derive(Debug)]
struct EnvVars;

impl Object for EnvVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        std::env::var(key.as_str()?).ok().map(Value::from)
    }
}

/// Renders the strings of one pipeline file.
pub struct Templates {
    env: Environment<'static>,
    context: BTreeMap<String, Value>,
}

impl Templates {
    pub fn new(vars: BTreeMap<String, Value>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Bounds the work any template can do (recursive macros included): a value is a short
        // expression, so this is far more than a real one needs.
        env.set_fuel(Some(100_000));
        let mut context = vars;
        context.insert("env".to_string(), Value::from_object(EnvVars));
        Self { env, context }
    }

    /// Renders `text`; errors point at `span`.
    pub fn render(&self, text: &str, span: std::ops::Range<usize>) -> Result<String, Diagnostic> {
        if !text.contains("{{") && !text.contains("{%") && !text.contains("{#") {
            return Ok(text.to_string());
        }
        if let Some(at) = find_loop(text) {
            return Err(Diagnostic::new(
                "template-loop",
                "loops are not supported in pipeline templates",
            )
            .at(span)
            .label(format!("`{{% for` at character {}", at + 1))
            .hint("a value is one expression: use `{{ ... }}` and `{% if %}`, not `{% for %}`"));
        }
        let template = self.env.template_from_str(text).map_err(|e| {
            Diagnostic::new(
                "template-syntax",
                format!("template syntax error: {}", detail(&e)),
            )
            .at(span.clone())
            .label("in this template")
        })?;
        let mut undefined: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|name| match name.split_once('.') {
                Some(("env", var)) => std::env::var_os(var).is_none(),
                _ => !self
                    .context
                    .contains_key(name.split('.').next().unwrap_or(name)),
            })
            .collect();
        undefined.sort();
        if let Some(name) = undefined.first() {
            let hint = if let Some(var) = name.strip_prefix("env.") {
                format!("the environment variable `{var}` is not set")
            } else {
                format!(
                    "define it under [vars], or pass `--var {name}=VALUE`; environment \
                     variables are read as `{{{{ env.NAME }}}}`"
                )
            };
            let names: Vec<String> = undefined.iter().map(|n| format!("`{n}`")).collect();
            let message = match names.split_last() {
                Some((last, [])) => format!("undefined variable {last}"),
                Some((last, init)) => {
                    format!("undefined variables {} and {last}", init.join(", "))
                }
                None => "undefined variable".to_string(),
            };
            return Err(Diagnostic::new("undefined-variable", message)
                .at(span)
                .label("used here")
                .hint(hint));
        }
        template.render(&self.context).map_err(|e| {
            Diagnostic::new("template-error", format!("template error: {}", detail(&e)))
                .at(span)
                .label("in this template")
        })
    }

    /// Renders a spanned string from the file.
    pub fn str(&self, s: &Str) -> Result<String, Diagnostic> {
        self.render(s.get_ref(), s.span())
    }
}

/// Where a `{% for ... %}` statement starts, if there is one: loops are refused so that no
/// template can run for a long time (`{% for a in range(99999) %}{% for b in ... %}`).
fn find_loop(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("{%") {
        let at = from + i;
        let rest = text[at + 2..]
            .trim_start_matches(['-', '+', '~'])
            .trim_start();
        if rest.starts_with("for")
            && !rest[3..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            return Some(at);
        }
        from = at + 2;
    }
    None
}

fn detail(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Converts a TOML scalar to a template value.
pub fn toml_to_value(v: &toml::Value) -> Option<Value> {
    Some(match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        _ => return None,
    })
}
