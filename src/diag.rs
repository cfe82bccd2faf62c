//! Diagnostics: located, coded problems in a pipeline file, all reported at once.

use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::Error as FilesError;
use codespan_reporting::term::{self, Config};

mod code;

pub use code::Code;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code, printed in kebab-case, e.g. `unknown-key`.
    pub code: Code,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// Byte range in the source the problem is about, when there is one.
    pub span: Option<Range<usize>>,
    /// Text shown under the marked span.
    pub label: Option<Box<str>>,
    /// How to fix it, when that helps.
    pub hint: Option<Box<str>>,
    /// Other places that explain the problem, each with its label.
    pub also: Box<[(Range<usize>, String)]>,
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            span: None,
            label: None,
            hint: None,
            also: Box::default(),
        }
    }

    /// Marks another place, e.g. the declaration a use conflicts with.
    pub fn also(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        let mut also = std::mem::take(&mut self.also).into_vec();
        also.push((span, label.into()));
        self.also = also.into_boxed_slice();
        self
    }

    pub fn at(mut self, span: Range<usize>) -> Self {
        self.span = Some(span);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into().into_boxed_str());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into().into_boxed_str());
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
    /// and a marker under the span, followed by its hint. The file may be anything: a snippet
    /// shows at most [`MAX_SNIPPET`] bytes of a line, around the span, and no control
    /// character (a terminal escape in the file never reaches the terminal).
    pub fn render(&self) -> String {
        self.render_styled(false)
    }

    /// As [`Report::render`], coloured with ANSI escapes when `color` (a terminal that wants
    /// colour).
    pub fn render_styled(&self, color: bool) -> String {
        let name = clean(&self.file);
        let shown = Shown::new(&name, &self.source);
        let config = Config::default();
        let mut out = String::new();
        for d in self.diagnostics.iter().take(MAX_SHOWN) {
            let mut cs = CsDiagnostic::error()
                .with_code(d.code.as_str())
                .with_message(clean(&d.message));
            let mut notes = Vec::new();
            let mut focus = None;
            if let Some(span) = &d.span {
                let span = clamp(span, &self.source);
                let (span, window) = shown.window(span);
                if let Some((line, window)) = window {
                    notes.push(format!(
                        "line {} is {} bytes long: only part of it is shown",
                        line + 1,
                        shown.full_line(line).len()
                    ));
                    focus = Some((line, window));
                }
                let label = Label::primary((), span);
                let label = match &d.label {
                    Some(text) => label.with_message(clean(text)),
                    None => label,
                };
                let mut labels = vec![label];
                for (span, text) in &d.also {
                    let span = clamp(span, &self.source);
                    // Only where it fits: a long line shows the part around the main span.
                    if shown.window(span.clone()).1.is_none() && focus.is_none() {
                        labels.push(Label::secondary((), span).with_message(clean(text)));
                    }
                }
                cs = cs.with_labels(labels);
            }
            if let Some(hint) = &d.hint {
                notes.push(format!("hint: {}", clean(hint)));
            }
            cs = cs.with_notes(notes);
            let view = View {
                shown: &shown,
                focus,
            };
            let rendered = if color {
                let mut buf = term::termcolor::Buffer::ansi();
                term::emit_to_write_style(&mut buf, &config, &view, &cs)
                    .map(|()| String::from_utf8_lossy(buf.as_slice()).into_owned())
            } else {
                term::emit_into_string(&config, &view, &cs)
            };
            match rendered {
                Ok(text) => out.push_str(&text),
                Err(_) => out.push_str(&format!("error[{}]: {}\n", d.code, clean(&d.message))),
            }
        }
        if self.diagnostics.len() > MAX_SHOWN {
            out.push_str(&format!(
                "error: {} more problems in {} not shown\n",
                self.diagnostics.len() - MAX_SHOWN,
                name
            ));
        }
        out
    }
}

/// Most bytes of a source line a snippet shows.
pub const MAX_SNIPPET: usize = 160;

/// Most characters of a quoted piece of a message (`unknown key `...``).
const MAX_QUOTED: usize = 80;

/// Most characters of a message, label or hint.
const MAX_TEXT: usize = 400;

/// Text from a file (or made of it) made safe to print: control characters (and bidi
/// overrides) become `?`, a quoted piece longer than `MAX_QUOTED` characters and a text
/// longer than `MAX_TEXT` are cut with `…`.
pub fn clean(text: &str) -> String {
    let mut out = String::new();
    for (i, piece) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let limit = if i % 2 == 1 { MAX_QUOTED } else { MAX_TEXT };
        out.extend(
            cut(piece, limit)
                .chars()
                .map(|c| if shown_as_is(c) { c } else { '?' }),
        );
        if out.chars().count() > MAX_TEXT {
            return cut(&out, MAX_TEXT);
        }
    }
    out
}

fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Whether a character can be printed as it is: not a control character (other than a tab or
/// a line break) and not a bidi override, which can make a line read differently.
fn shown_as_is(c: char) -> bool {
    (!c.is_control() || c == '\t' || c == '\n')
        && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The source as snippets show it: unprintable characters replaced byte for byte (so every
/// span still fits), with its line starts.
struct Shown<'a> {
    name: &'a str,
    text: String,
    starts: Vec<usize>,
}

impl<'a> Shown<'a> {
    fn new(name: &'a str, source: &str) -> Self {
        let mut text = String::with_capacity(source.len());
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            let keep = shown_as_is(c) || (c == '\r' && chars.peek() == Some(&'\n'));
            if keep {
                text.push(c);
            } else {
                text.extend(std::iter::repeat_n('?', c.len_utf8()));
            }
        }
        let starts = codespan_reporting::files::line_starts(&text).collect();
        Self { name, text, starts }
    }

    fn line_of(&self, byte: usize) -> usize {
        self.starts
            .binary_search(&byte)
            .unwrap_or_else(|next| next - 1)
    }

    fn full_line(&self, line: usize) -> Range<usize> {
        let start = self.starts.get(line).copied().unwrap_or(self.text.len());
        let end = self
            .starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.text.len());
        start..end
    }

    /// The part of a long line to show around `span`, and the span cut to fit in it: `None`
    /// for a short line. A span over several lines is cut to its first line when one of its
    /// ends is on a long line.
    fn window(&self, span: Range<usize>) -> (Range<usize>, Option<(usize, Range<usize>)>) {
        let (first, last) = (self.line_of(span.start), self.line_of(span.end));
        let long = |line| self.full_line(line).len() > MAX_SNIPPET;
        if !long(first) && !long(last) {
            return (span, None);
        }
        let line = self.full_line(first);
        if !long(first) {
            let end = span.end.min(line.end.saturating_sub(1)).max(span.start);
            return (span.start..end, None);
        }
        let start = self.floor(span.start.saturating_sub(MAX_SNIPPET / 4).max(line.start));
        let end = self.floor((start + MAX_SNIPPET).min(line.end));
        let span = span.start..span.end.min(end).max(span.start);
        (span, Some((first, start..end)))
    }

    fn floor(&self, mut at: usize) -> usize {
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }
}

/// [`Shown`] as codespan reads it, with the long lines cut.
struct View<'s, 'a> {
    shown: &'s Shown<'a>,
    /// The line whose span is shown, and the part of it around the span.
    focus: Option<(usize, Range<usize>)>,
}

impl<'f> codespan_reporting::files::Files<'f> for View<'_, '_> {
    type FileId = ();
    type Name = &'f str;
    type Source = &'f str;

    fn name(&'f self, (): ()) -> Result<&'f str, FilesError> {
        Ok(self.shown.name)
    }

    fn source(&'f self, (): ()) -> Result<&'f str, FilesError> {
        Ok(&self.shown.text)
    }

    fn line_index(&'f self, (): (), byte: usize) -> Result<usize, FilesError> {
        Ok(self.shown.line_of(byte))
    }

    fn line_range(&'f self, (): (), line: usize) -> Result<Range<usize>, FilesError> {
        if line > self.shown.starts.len() {
            return Err(FilesError::LineTooLarge {
                given: line,
                max: self.shown.starts.len(),
            });
        }
        match &self.focus {
            Some((focus, window)) if *focus == line => Ok(window.clone()),
            _ => {
                let full = self.shown.full_line(line);
                let end = self.shown.floor(full.end.min(full.start + MAX_SNIPPET));
                Ok(full.start..end)
            }
        }
    }

    /// The column in the whole line, not in the part shown.
    fn column_number(&'f self, (): (), line: usize, byte: usize) -> Result<usize, FilesError> {
        let start = self.shown.full_line(line).start;
        let byte = self.shown.floor(byte.clamp(start, self.shown.text.len()));
        Ok(self.shown.text[start..byte].chars().count() + 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(source: &str, d: Diagnostic) -> String {
        Report {
            file: "p.toml".into(),
            source: source.into(),
            diagnostics: vec![d],
        }
        .render()
    }

    #[test]
    fn a_huge_line_is_shown_in_part_around_the_span_with_its_true_column() {
        let mut source = format!("[base]\nimage = \"{}", "a".repeat(1_000_000));
        let at = source.len();
        source.push_str("MARK\"\n");
        let text = report(
            &source,
            Diagnostic::new(Code::InvalidReference, "bad").at(at..at + 4),
        );
        assert!(text.len() < 2_000, "{} bytes:\n{text}", text.len());
        assert!(text.contains(&format!("p.toml:2:{}", at - 7 + 1)), "{text}");
        assert!(text.contains("aMARK\""), "{text}");
        assert!(
            text.contains("line 2 is 1000015 bytes long: only part of it is shown"),
            "{text}"
        );
        // A span over the whole line is cut too.
        let text = report(
            &source,
            Diagnostic::new(Code::InvalidReference, "bad").at(7..source.len()),
        );
        assert!(text.len() < 2_000, "{} bytes:\n{text}", text.len());
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let source = "[base]\nimage = \"\x1b]52;c;ZXZpbA==\x07\x1b[2J\r\u{202e}x\u{9b}\0\"\r\n";
        let text = report(
            source,
            Diagnostic::new(Code::InvalidReference, "`\x1b[2J` is bad")
                .at(15..source.len() - 3)
                .label("here\x1b[0m")
                .hint("fix \x07 it"),
        );
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{text:?}"
        );
        assert!(text.contains("`?[2J` is bad"), "{text}");
    }

    #[test]
    fn long_quoted_pieces_of_messages_are_cut() {
        let name = "k".repeat(10_000);
        let text = clean(&format!("unknown key `{name}` in `base`"));
        assert_eq!(
            text,
            format!("unknown key `{}…` in `base`", "k".repeat(MAX_QUOTED))
        );
        assert!(clean(&"x".repeat(10_000)).chars().count() <= MAX_TEXT + 1);
        assert_eq!(clean("a `b` c"), "a `b` c");
    }

    #[test]
    fn any_span_on_any_text_renders() {
        let sources = ["", "\n", "é", "a\nb", &"x".repeat(500), "\r\n\r\n"];
        for source in sources {
            for start in 0..source.len() + 2 {
                for end in [start, start + 1, source.len(), usize::MAX] {
                    let text = report(
                        source,
                        Diagnostic::new(Code::TomlSyntax, "m").at(start..end),
                    );
                    assert!(
                        text.starts_with("error[toml-syntax]: m"),
                        "{source:?} {start}..{end}"
                    );
                }
            }
        }
    }
}
