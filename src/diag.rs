//! Diagnostics: located, coded problems in a pipeline file, all reported at once.

use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable kebab-case code, e.g. `unknown-key`.
    pub code: &'static str,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// Byte range in the source the problem is about, when there is one.
    pub span: Option<Range<usize>>,
    /// Text shown under the marked span.
    pub label: Option<String>,
    /// How to fix it, when that helps.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            span: None,
            label: None,
            hint: None,
        }
    }

    pub fn at(mut self, span: Range<usize>) -> Self {
        self.span = Some(span);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// At most this many diagnostics are shown for one file (a badly broken file can make the
/// TOML parser report one per line).
pub const MAX_SHOWN: usize = 100;

/// The problems found in one file, with the file's name and text for rendering.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Renders every diagnostic as `error[code]: message` with `file:line:col`, the source line
    /// and a marker under the span, followed by its hint.
    pub fn render(&self) -> String {
        let file = SimpleFile::new(self.file.as_str(), self.source.as_str());
        let config = Config::default();
        let mut out = String::new();
        for d in self.diagnostics.iter().take(MAX_SHOWN) {
            let mut cs = CsDiagnostic::error()
                .with_code(d.code)
                .with_message(&d.message);
            if let Some(span) = &d.span {
                let span = clamp(span, &self.source);
                let label = Label::primary((), span);
                let label = match &d.label {
                    Some(text) => label.with_message(text),
                    None => label,
                };
                cs = cs.with_labels(vec![label]);
            }
            if let Some(hint) = &d.hint {
                cs = cs.with_notes(vec![format!("hint: {hint}")]);
            }
            match term::emit_into_string(&config, &file, &cs) {
                Ok(text) => out.push_str(&text),
                Err(_) => out.push_str(&format!("error[{}]: {}\n", d.code, d.message)),
            }
        }
        if self.diagnostics.len() > MAX_SHOWN {
            out.push_str(&format!(
                "error: {} more problems in {} not shown\n",
                self.diagnostics.len() - MAX_SHOWN,
                self.file
            ));
        }
        out
    }
}

/// Keeps a span inside the source and on character boundaries, so rendering never fails.
fn clamp(span: &Range<usize>, source: &str) -> Range<usize> {
    let mut start = span.start.min(source.len());
    let mut end = span.end.clamp(start, source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    while !source.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// The closest known name to `unknown`, for "did you mean" hints.
/// A name is close when it is similar (Jaro-Winkler above 0.8) or one edit away (a typo,
/// a missing or extra letter, two swapped letters: `rnu` -> `run`).
pub fn suggest<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let unknown = unknown.to_lowercase();
    known
        .into_iter()
        .map(|k| {
            let edits = strsim::osa_distance(&unknown, &k.to_lowercase());
            let close = edits <= 1 || (edits == 2 && k.chars().count() > 5);
            let score = strsim::jaro_winkler(&unknown, k) + if close { 1.0 } else { 0.0 };
            (score, k)
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}
