//! Templating: every string value in a pipeline file is a minijinja template.
//!
//! The context holds the declared variables (see [`super::vars`]) and `env`, an object that
//! reads the process environment only where a template names it: `{{ env.HOME }}`. A name
//! that is not declared is an error before anything renders (with a did-you-mean); a declared
//! variable without a value and an unset environment variable are undefined: `default`, `is
//! defined` and `{% if %}` handle them, and printing one is an error, never an empty string.
//!
//! A template computes one string from scalar values, and a pipeline file may come from a
//! stranger, so templates are a subset of minijinja that cannot run long or allocate much
//! (see `subset`): no loops, macros or function calls, containers only where they are
//! consumed at once (`x in [...]`, `{...}[key]`), a few string and number filters; a bounded
//! number of tokens (minijinja's compiler recurses once per operator); and fuel, which bounds
//! the instructions and the bytes a render creates, shared by the whole file.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use minijinja::machinery::{self, ast, Token};
use minijinja::value::{Object, Value};
use minijinja::{Environment, UndefinedBehavior};

use super::raw::Str;
use super::vars::Resolved;
use crate::diag::{Code, Diagnostic};

/// Fuel one render may use (with what is left for the file): about 20,000 instructions, or 1.3 MB of data (64 bytes a fuel).
const RENDER_FUEL: u64 = 20_000;

/// Fuel all the renders of one file may use together: about 64 MB of data.
const FILE_FUEL: u64 = 1_000_000;

/// Most tokens (names, literals, operators) in one template, data between blocks aside.
pub const MAX_TOKENS: usize = 1_000;

/// The filters a template may use: they take and give scalars, and never build a value much
/// larger than their input (`replace` checks its fuel first).
pub const FILTERS: &[&str] = &[
    "abs",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "first",
    "float",
    "int",
    "join",
    "last",
    "length",
    "lower",
    "replace",
    "reverse",
    "round",
    "string",
    "title",
    "trim",
    "upper",
];

/// The platform being built, visible to templates as `platform`: `os`, `arch`, `variant`
/// (empty when the platform has none).
pub(crate) fn platform_value(p: &crate::model::Platform) -> Value {
    Value::from(BTreeMap::from([
        ("os".to_string(), Value::from(p.os.as_str())),
        ("arch".to_string(), Value::from(p.arch.as_str())),
        (
            "variant".to_string(),
            Value::from(p.variant.as_deref().unwrap_or_default()),
        ),
    ]))
}

/// The process environment, visible to templates as `env`, read lazily by name.
#[derive(Debug)]
struct EnvVars;

impl Object for EnvVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        std::env::var(key.as_str()?).ok().map(Value::from)
    }
}

/// An environment variable a template reads, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRead {
    pub name: String,
    pub span: Range<usize>,
}

/// Renders the strings of one pipeline file.
pub struct Templates {
    env: RefCell<Environment<'static>>,
    context: BTreeMap<String, Value>,
    /// Declared variables without a value: undefined, but not unknown.
    unset: BTreeSet<String>,
    /// The list variables, which stand only where a list is consumed at once.
    lists: BTreeSet<String>,
    /// Fuel left for the rest of the file.
    fuel: Cell<u64>,
    /// Every environment variable read so far.
    env_reads: RefCell<Vec<EnvRead>>,
}

impl Templates {
    /// Templates over the resolved variables and, when a platform is built, `platform`.
    pub fn new(vars: &Resolved, platform: Option<Value>) -> Self {
        let mut env = Environment::new();
        // An undefined value may be tested (`is defined`, `{% if %}`) and defaulted, never
        // printed or looked into.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // A bool prints as a shell or TOML would read it: `true`, not Python's `True`.
        env.set_formatter(|out, state, value| {
            if value.kind() == minijinja::value::ValueKind::Bool {
                out.write_str(if value.is_true() { "true" } else { "false" })?;
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        let mut context = vars.values.clone();
        if let Some(platform) = platform {
            context.insert("platform".to_string(), platform);
        }
        context.insert("env".to_string(), Value::from_object(EnvVars));
        Self {
            env: RefCell::new(env),
            context,
            unset: vars.unset.clone(),
            lists: vars.lists.clone(),
            fuel: Cell::new(FILE_FUEL),
            env_reads: RefCell::new(Vec::new()),
        }
    }

    /// The environment variables the templates rendered so far read.
    pub fn env_reads(&self) -> Vec<EnvRead> {
        self.env_reads.borrow().clone()
    }

    /// Renders `text`; errors point at `span`.
    // One function: the checks (size, syntax, the subset, undefined names, fuel) run in this
    // order on the same parsed template, and each ends the render with its diagnostic.
    #[allow(clippy::too_many_lines)]
    pub fn render(&self, text: &str, span: Range<usize>) -> Result<String, Diagnostic> {
        if !text.contains("{{") && !text.contains("{%") && !text.contains("{#") {
            return Ok(text.to_string());
        }
        let tokens = machinery::tokenize(text, false, Default::default())
            .filter(|t| !matches!(t, Ok((Token::TemplateData(_), _))))
            .take(MAX_TOKENS + 1)
            .count();
        if tokens > MAX_TOKENS {
            return Err(Diagnostic::new(
                Code::TemplateTooComplex,
                format!("the template has more than {MAX_TOKENS} names, literals and operators"),
            )
            .at(span)
            .label("in this template")
            .hint("split the value, or compute it outside and pass it with `--var NAME=VALUE`"));
        }
        let fuel = self.fuel.get().min(RENDER_FUEL);
        self.env.borrow_mut().set_fuel(Some(fuel.max(1)));
        let env = self.env.borrow();
        let syntax = |e: &minijinja::Error| {
            Diagnostic::new(
                Code::TemplateSyntax,
                format!("template syntax error: {}", detail(e)),
            )
            .at(span.clone())
            .label("in this template")
        };
        let template = env.template_from_str(text).map_err(|e| syntax(&e))?;
        let ast = machinery::parse(text, "<string>", Default::default()).map_err(|e| syntax(&e))?;
        let walk = subset::check(&ast, &self.lists)
            .map_err(|refusal| refusal.diagnostic(text, span.clone()))?;
        drop(ast);
        self.env_reads
            .borrow_mut()
            .extend(walk.reads.iter().map(|name| EnvRead {
                name: name.clone(),
                span: span.clone(),
            }));
        let mut unknown: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|name| {
                let root = name.split('.').next().unwrap_or(name);
                root != "env" && !self.context.contains_key(root) && !self.unset.contains(root)
            })
            .collect();
        unknown.sort();
        unknown.dedup();
        if !unknown.is_empty() {
            return Err(self.undefined(&unknown, span, true));
        }
        if fuel == 0 {
            return Err(Diagnostic::new(
                Code::TemplateError,
                "the templates of this file did too much work: no fuel is left",
            )
            .at(span)
            .label("not rendered")
            .hint("templates compute short values; make the ones before this one simpler"));
        }
        let rendered = template.render_captured(&self.context);
        match rendered {
            Ok(captured) => {
                let used = captured
                    .state()
                    .fuel_levels()
                    .map_or(fuel, |(used, _)| used);
                self.fuel.set(self.fuel.get().saturating_sub(used));
                Ok(captured.into_output())
            }
            Err(e) => {
                // How much a failed render used is unknown: as much as it could.
                self.fuel.set(self.fuel.get().saturating_sub(fuel));
                let undefined = self.undefined_uses(&walk.unguarded);
                if e.kind() == minijinja::ErrorKind::UndefinedError && !undefined.is_empty() {
                    return Err(self.undefined(&undefined, span, false));
                }
                let mut d = Diagnostic::new(
                    Code::TemplateError,
                    format!("template error: {}", detail(&e)),
                )
                .at(span)
                .label("in this template");
                if e.kind() == minijinja::ErrorKind::OutOfFuel {
                    d = d.hint("a template computes a short value: this one does too much work");
                }
                Err(d)
            }
        }
    }

    /// The names used outside `default`, `is defined` and `{% if %}` that have no value: an
    /// unset environment variable (`env.NAME`) or a variable declared without one.
    fn undefined_uses(&self, unguarded: &[String]) -> Vec<String> {
        let mut out: Vec<String> = unguarded
            .iter()
            .filter(|name| match name.strip_prefix("env.") {
                Some(var) => std::env::var_os(var).is_none(),
                None => self.unset.contains(name.as_str()),
            })
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `undefined variable `x``, with how to define the first one. `unknown`: the names are
    /// not declared at all (else: declared, or environment variables, without a value).
    fn undefined(&self, names: &[String], span: Range<usize>, unknown: bool) -> Diagnostic {
        let name = names.first().map(String::as_str).unwrap_or_default();
        let fallback = "or give a fallback: `| default(\"...\")`, `is defined`, `{% if %}`";
        let declared = self
            .context
            .keys()
            .chain(&self.unset)
            .filter(|k| *k != "env" && *k != "platform")
            .map(String::as_str);
        let hint = if let Some(var) = name.strip_prefix("env.") {
            format!("the environment variable `{var}` is not set: set it, {fallback}")
        } else if name == "platform" || name.starts_with("platform.") {
            "`platform` is the platform being built: set `platforms = [\"linux/amd64\", ...]` \
             in the file, or pass `--platform linux/amd64`"
                .to_string()
        } else if !unknown {
            format!("`{name}` is declared without a value: pass `--var {name}=VALUE`, {fallback}")
        } else if let Some(near) = crate::diag::suggest(name, declared) {
            format!("did you mean `{near}`? (variables are declared under [vars])")
        } else {
            format!(
                "declare it under [vars] (e.g. `{name} = \"...\"`) and pass `--var {name}=VALUE` \
                 to change it; environment variables are read as `{{{{ env.NAME }}}}`"
            )
        };
        let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let message = match quoted.split_last() {
            Some((last, [])) => format!("undefined variable {last}"),
            Some((last, init)) => format!("undefined variables {} and {last}", init.join(", ")),
            None => "undefined variable".to_string(),
        };
        Diagnostic::new(Code::UndefinedVariable, message)
            .at(span)
            .label("used here")
            .hint(hint)
    }

    /// The names a template reads (`version`, `env.USER`, `platform.arch`), sorted; none for
    /// a template that does not parse.
    pub fn names(&self, text: &str) -> Vec<String> {
        if !text.contains("{{") && !text.contains("{%") {
            return Vec::new();
        }
        let env = self.env.borrow();
        let mut names: Vec<String> = env
            .template_from_str(text)
            .map(|t| t.undeclared_variables(true).into_iter().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A tag written as one list variable, `{{ versions }}`: its items, as text. `None` when
    /// the text is anything else (it is then rendered as one tag).
    pub fn list(&self, s: &Str) -> Option<Vec<String>> {
        let inner = s.get_ref().trim().strip_prefix("{{")?.strip_suffix("}}")?;
        let name = inner.trim_matches(|c: char| c == '-' || c.is_whitespace());
        if !self.lists.contains(name) {
            return None;
        }
        let items = self.context.get(name)?.try_iter().ok()?;
        Some(
            items
                .map(|v| {
                    if v.kind() == minijinja::value::ValueKind::Bool {
                        v.is_true().to_string()
                    } else {
                        v.to_string()
                    }
                })
                .collect(),
        )
    }

    /// Whether the template `text` reads the variable `name` (anywhere in it, also where a
    /// branch leaves it unrendered). A template that does not parse reads nothing: rendering
    /// it reports why.
    pub fn reads(&self, text: &str, name: &str) -> bool {
        if !text.contains("{{") && !text.contains("{%") {
            return false;
        }
        let env = self.env.borrow();
        env.template_from_str(text)
            .is_ok_and(|t| t.undeclared_variables(false).contains(name))
    }

    /// Renders a spanned string from the file.
    pub fn str(&self, s: &Str) -> Result<String, Diagnostic> {
        self.render(s.get_ref(), s.span())
    }
}

fn detail(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The subset of minijinja that pipeline templates may use.
///
/// Every blow-up found in minijinja comes from a container: `[a] * 50000` is a lazy list that
/// costs nothing until it is printed (2.5 GB for a 50 kB `a`), and a list literal, macro
/// arguments or `format` repeat a large string as often as they are written. Without
/// containers every value is a scalar that the fuel paid for when it was made, so the fuel
/// bounds the memory of a render as well as its time.
mod subset {
    use super::*;

    /// Why a template is refused, and where in it.
    pub(crate) struct Refusal {
        code: Code,
        message: String,
        at: usize,
        len: usize,
        /// For a statement, its tag (`{% for`), shown from the `{%` before `at`.
        tag: Option<String>,
        hint: String,
    }

    impl Refusal {
        fn new(code: Code, message: impl Into<String>, span: machinery::Span) -> Self {
            Self {
                code,
                message: message.into(),
                at: span.start_offset as usize,
                len: span.end_offset.saturating_sub(span.start_offset) as usize,
                tag: None,
                hint: String::new(),
            }
        }

        fn statement(
            code: Code,
            message: impl Into<String>,
            span: machinery::Span,
            keyword: &str,
        ) -> Self {
            Self {
                tag: Some(format!("{{% {keyword}")),
                ..Self::new(code, message, span)
            }
        }

        fn hint(mut self, hint: impl Into<String>) -> Self {
            self.hint = hint.into();
            self
        }

        /// The diagnostic at `span` (the string in the file), naming the place in the template.
        pub(crate) fn diagnostic(&self, text: &str, span: Range<usize>) -> Diagnostic {
            let mut start = floor(text, self.at);
            let piece: String = match &self.tag {
                Some(tag) => {
                    start = text[..start].rfind("{%").unwrap_or(start);
                    tag.clone()
                }
                None => text[start..].chars().take(self.len.clamp(1, 24)).collect(),
            };
            let character = text[..start].chars().count() + 1;
            Diagnostic::new(self.code, self.message.clone())
                .at(span)
                .label(format!("`{piece}` at character {character}"))
                .hint(self.hint.clone())
        }
    }

    fn floor(text: &str, mut at: usize) -> usize {
        at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    const ONE_EXPRESSION: &str =
        "a value is one expression: use `{{ ... }}`, `{% if %}` and `{% set name = ... %}`";

    /// What a walk of a template found.
    pub(crate) struct Walk<'l> {
        /// The environment variables it reads.
        pub(crate) reads: Vec<String>,
        /// Names (`x`, `env.X`) used outside `default`, `is defined` and `{% if x %}`.
        pub(crate) unguarded: Vec<String>,
        lists: &'l BTreeSet<String>,
        /// The expression being walked is the input of `default` or `is defined`.
        guard: bool,
    }

    impl Walk<'_> {
        fn env(&mut self, name: &str) {
            self.reads.push(name.to_string());
            self.used(format!("env.{name}"));
        }

        fn used(&mut self, name: String) {
            if !self.guard {
                self.unguarded.push(name);
            }
        }
    }

    /// The filters that consume a list at once (a list variable may be their input).
    const LIST_FILTERS: &[&str] = &["count", "first", "join", "last", "length"];

    /// Checks a parsed template; `lists` are the list variables.
    pub(crate) fn check<'l>(
        template: &ast::Stmt<'_>,
        lists: &'l BTreeSet<String>,
    ) -> Result<Walk<'l>, Refusal> {
        let mut walk = Walk {
            reads: Vec::new(),
            unguarded: Vec::new(),
            lists,
            guard: false,
        };
        stmt(template, &mut walk)?;
        Ok(walk)
    }

    /// A name or `env.NAME`: what `default`, `is defined` and `{% if %}` may guard.
    fn guardable(e: &ast::Expr<'_>) -> bool {
        match e {
            ast::Expr::Var(_) => true,
            ast::Expr::GetAttr(g) => matches!(&g.expr, ast::Expr::Var(v) if v.id == "env"),
            ast::Expr::GetItem(g) => matches!(&g.expr, ast::Expr::Var(v) if v.id == "env"),
            ast::Expr::UnaryOp(u) => guardable(&u.expr),
            _ => false,
        }
    }

    /// Walks `e` as the input of a guard when it is a bare name.
    fn guarded(e: &ast::Expr<'_>, container: bool, reads: &mut Walk<'_>) -> Result<(), Refusal> {
        reads.guard = guardable(e);
        let result = expr(e, container, reads);
        reads.guard = false;
        result
    }

    fn stmt(s: &ast::Stmt<'_>, reads: &mut Walk<'_>) -> Result<(), Refusal> {
        match s {
            ast::Stmt::Template(t) => body(&t.children, reads),
            ast::Stmt::EmitExpr(e) => expr(&e.expr, false, reads),
            ast::Stmt::EmitRaw(_) => Ok(()),
            ast::Stmt::IfCond(c) => {
                guarded(&c.expr, false, reads)?;
                body(&c.true_body, reads)?;
                body(&c.false_body, reads)
            }
            ast::Stmt::Set(set) => match &set.target {
                ast::Expr::Var(_) => expr(&set.expr, false, reads),
                target => Err(Refusal::statement(
                    Code::TemplateUnsupported,
                    "`{% set` assigns one name in pipeline templates",
                    target.span(),
                    "set",
                )
                .hint("write `{% set name = ... %}`")),
            },
            ast::Stmt::ForLoop(l) => Err(Refusal::statement(
                Code::TemplateLoop,
                "loops are not supported in pipeline templates",
                l.span(),
                "for",
            )
            .hint("a value is one expression: use `{{ ... }}` and `{% if %}`, not `{% for %}`")),
            other => Err(Refusal::statement(
                Code::TemplateUnsupported,
                format!(
                    "`{{% {}` is not supported in pipeline templates",
                    keyword(other)
                ),
                span_of(other),
                keyword(other),
            )
            .hint(ONE_EXPRESSION)),
        }
    }

    fn body(stmts: &[ast::Stmt<'_>], reads: &mut Walk<'_>) -> Result<(), Refusal> {
        stmts.iter().try_for_each(|s| stmt(s, reads))
    }

    /// The tag of a statement, for messages.
    fn keyword(s: &ast::Stmt<'_>) -> &'static str {
        match s {
            ast::Stmt::WithBlock(_) => "with",
            ast::Stmt::SetBlock(_) => "set",
            ast::Stmt::AutoEscape(_) => "autoescape",
            ast::Stmt::FilterBlock(_) => "filter",
            ast::Stmt::Block(_) => "block",
            ast::Stmt::Import(_) | ast::Stmt::FromImport(_) => "import",
            ast::Stmt::Extends(_) => "extends",
            ast::Stmt::Include(_) => "include",
            ast::Stmt::Macro(_) => "macro",
            ast::Stmt::CallBlock(_) => "call",
            ast::Stmt::Do(_) => "do",
            _ => "...",
        }
    }

    fn span_of(s: &ast::Stmt<'_>) -> machinery::Span {
        match s {
            ast::Stmt::Template(x) => x.span(),
            ast::Stmt::EmitExpr(x) => x.span(),
            ast::Stmt::EmitRaw(x) => x.span(),
            ast::Stmt::ForLoop(x) => x.span(),
            ast::Stmt::IfCond(x) => x.span(),
            ast::Stmt::WithBlock(x) => x.span(),
            ast::Stmt::Set(x) => x.span(),
            ast::Stmt::SetBlock(x) => x.span(),
            ast::Stmt::AutoEscape(x) => x.span(),
            ast::Stmt::FilterBlock(x) => x.span(),
            ast::Stmt::Block(x) => x.span(),
            ast::Stmt::Import(x) => x.span(),
            ast::Stmt::FromImport(x) => x.span(),
            ast::Stmt::Extends(x) => x.span(),
            ast::Stmt::Include(x) => x.span(),
            ast::Stmt::Macro(x) => x.span(),
            ast::Stmt::CallBlock(x) => x.span(),
            ast::Stmt::Do(x) => x.span(),
        }
    }

    /// Checks an expression; `container` says whether a list, tuple or map may stand here
    /// (after `in`, before `[key]`).
    fn expr(e: &ast::Expr<'_>, container: bool, reads: &mut Walk<'_>) -> Result<(), Refusal> {
        match e {
            ast::Expr::Var(v) if v.id == "env" => Err(env_by_name(e.span())),
            ast::Expr::Var(v) if !container && reads.lists.contains(v.id) => {
                Err(list_out_of_place(v.id, e.span()))
            }
            ast::Expr::Var(v) => {
                reads.used(v.id.to_string());
                Ok(())
            }
            ast::Expr::Const(c) => {
                if container || is_scalar(&c.value) {
                    Ok(())
                } else {
                    Err(misplaced_container(e.span()))
                }
            }
            ast::Expr::List(l) => items(&l.items, container, e.span(), reads),
            ast::Expr::Tuple(t) => items(&t.items, container, e.span(), reads),
            ast::Expr::Map(m) => {
                items(&m.keys, container, e.span(), reads)?;
                items(&m.values, container, e.span(), reads)
            }
            ast::Expr::Slice(s) => {
                expr(&s.expr, false, reads)?;
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    expr(part, false, reads)?;
                }
                Ok(())
            }
            ast::Expr::UnaryOp(u) => expr(&u.expr, false, reads),
            ast::Expr::BinOp(b) => {
                expr(&b.left, false, reads)?;
                let in_container = matches!(b.op, ast::BinOpKind::In);
                expr(&b.right, in_container, reads)
            }
            ast::Expr::Compare(c) => {
                expr(&c.expr, false, reads)?;
                for op in &c.ops {
                    let in_container =
                        matches!(op.op, ast::CompareOpKind::In | ast::CompareOpKind::NotIn);
                    expr(&op.expr, in_container, reads)?;
                }
                Ok(())
            }
            ast::Expr::IfExpr(i) => {
                guarded(&i.test_expr, false, reads)?;
                expr(&i.true_expr, false, reads)?;
                match &i.false_expr {
                    Some(f) => expr(f, false, reads),
                    None => Ok(()),
                }
            }
            ast::Expr::Filter(f) => filter(f, e.span(), reads),
            ast::Expr::Test(t) => {
                if matches!(t.name, "defined" | "undefined" | "none") {
                    guarded(&t.expr, true, reads)?;
                } else {
                    expr(&t.expr, false, reads)?;
                }
                args(&t.args, reads)
            }
            ast::Expr::GetAttr(g) => match &g.expr {
                ast::Expr::Var(v) if v.id == "env" => {
                    reads.env(g.name);
                    Ok(())
                }
                inner => expr(inner, false, reads),
            },
            ast::Expr::GetItem(g) => match (&g.expr, &g.subscript_expr) {
                (ast::Expr::Var(v), ast::Expr::Const(c)) if v.id == "env" => match c.value.as_str()
                {
                    Some(name) => {
                        reads.env(name);
                        Ok(())
                    }
                    None => Err(env_by_name(e.span())),
                },
                (ast::Expr::Var(v), _) if v.id == "env" => Err(env_by_name(e.span())),
                (inner, subscript) => {
                    expr(inner, true, reads)?;
                    expr(subscript, false, reads)
                }
            },
            ast::Expr::Call(_) => Err(Refusal::new(
                Code::TemplateUnsupported,
                "function calls are not supported in pipeline templates",
                e.span(),
            )
            .hint(format!(
                "use a filter, e.g. `{{{{ name | upper }}}}`; the filters are: {}",
                FILTERS.join(", ")
            ))),
        }
    }

    /// Checks a filter: a known name, its input (a guarded one for `default`) and arguments.
    fn filter(
        f: &ast::Filter<'_>,
        span: machinery::Span,
        reads: &mut Walk<'_>,
    ) -> Result<(), Refusal> {
        if !FILTERS.contains(&f.name) {
            let hint = match crate::diag::suggest(f.name, FILTERS.iter().copied()) {
                Some(name) => format!("did you mean `{name}`?"),
                None => format!("the filters are: {}", FILTERS.join(", ")),
            };
            return Err(Refusal::new(
                Code::UnknownFilter,
                format!("unknown filter `{}`", f.name),
                span,
            )
            .hint(hint));
        }
        let list = LIST_FILTERS.contains(&f.name);
        match &f.expr {
            Some(inner) if matches!(f.name, "default" | "d") => guarded(inner, false, reads)?,
            Some(inner) => expr(inner, list, reads)?,
            None => {}
        }
        args(&f.args, reads)
    }

    fn items(
        list: &[ast::Expr<'_>],
        container: bool,
        span: machinery::Span,
        reads: &mut Walk<'_>,
    ) -> Result<(), Refusal> {
        if !container {
            return Err(misplaced_container(span));
        }
        list.iter().try_for_each(|item| expr(item, false, reads))
    }

    fn args(list: &[ast::CallArg<'_>], reads: &mut Walk<'_>) -> Result<(), Refusal> {
        for a in list {
            match a {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => expr(e, false, reads)?,
            }
        }
        Ok(())
    }

    fn is_scalar(v: &Value) -> bool {
        use minijinja::value::ValueKind;
        matches!(
            v.kind(),
            ValueKind::Undefined
                | ValueKind::None
                | ValueKind::Bool
                | ValueKind::Number
                | ValueKind::String
        )
    }

    fn misplaced_container(span: machinery::Span) -> Refusal {
        Refusal::new(
            Code::TemplateUnsupported,
            "a list, tuple or map can only follow `in` or be looked up with `[key]` in \
             pipeline templates",
            span,
        )
        .hint(
            "a template computes one string: `{{ arch in [\"amd64\", \"arm64\"] }}` and \
             `{{ {\"amd64\": \"x86_64\"}[arch] }}` work",
        )
    }

    fn list_out_of_place(name: &str, span: machinery::Span) -> Refusal {
        Refusal::new(
            Code::TemplateUnsupported,
            format!("`{name}` is a list: it can only follow `in` or be the input of `join`, `length`, `count`, `first` or `last`"),
            span,
        )
        .hint(format!(
            "a template computes one string: e.g. `{{{{ {name} | join(\" \") }}}}`; in `tags`, \
             `\"{{{{ {name} }}}}\"` alone gives one tag per item"
        ))
    }

    fn env_by_name(span: machinery::Span) -> Refusal {
        Refusal::new(
            Code::TemplateUnsupported,
            "`env` can only be read by name in pipeline templates",
            span,
        )
        .hint("write `{{ env.NAME }}`")
    }
}
