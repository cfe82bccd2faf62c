//! `extends = ["common.toml", ...]`: files applied under a pipeline file, in order, then the
//! file itself. Tables merge key by key; arrays (`[[step]]` included) and scalars replace.
//!
//! The files are named relative to the file that extends them and resolved inside the
//! pipeline's folder as copy sources are (no `..` or symlink out of it). An extended file may
//! extend others; each file is applied once, where it is first reached; a cycle is an error.
//!
//! Every file keeps its own spans: the text of the `n`th extended file is addressed from
//! `n * STRIDE`, past the pipeline file's own text and its `--set` values, so a diagnostic
//! about an inherited value is reported in the file and at the line it came from.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::paths::{self, Outside};
use crate::diag::{Code, Diagnostic, Report};

/// The address space of one extended file: more than a file may hold (1 MiB) plus its
/// `--set` values.
pub(crate) const STRIDE: usize = 1 << 24;

/// Most files one pipeline may extend, directly or not.
const MAX_FILES: usize = 64;

/// An extended file: its name as shown, its text, and where its spans start.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) shown: PathBuf,
    pub(crate) real: PathBuf,
    pub(crate) text: String,
    pub(crate) offset: usize,
}

/// The files a pipeline file extends, in the order they are applied.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layers {
    pub(crate) list: Vec<Layer>,
}

impl Layers {
    /// The layer a merged offset is in, and the offset inside its text; `None` for the
    /// pipeline file's own text.
    pub(crate) fn locate(&self, offset: usize) -> Option<(&Layer, usize)> {
        self.list
            .iter()
            .find(|l| l.offset <= offset && offset < l.offset + STRIDE)
            .map(|l| (l, offset - l.offset))
    }
}

/// The `extends` entries of a file's text, with their spans in it (as far as it can be read:
/// a wrong shape is the structural check's to report).
fn entries(text: &str) -> Vec<(String, Range<usize>)> {
    let (root, _) = DeTable::parse_recoverable(text);
    match root.get_ref().get("extends").map(Spanned::get_ref) {
        Some(DeValue::Array(items)) => items
            .iter()
            .filter_map(|i| match i.get_ref() {
                DeValue::String(s) => Some((s.to_string(), i.span())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

struct Gather<'a> {
    root: &'a Path,
    shown_dir: PathBuf,
    layers: Vec<Layer>,
    /// The files being extended, outermost first (the pipeline file's own first).
    stack: Vec<(PathBuf, String)>,
    next: usize,
    diags: Vec<Diagnostic>,
}

/// Reads every file `text` (the pipeline file `shown`, in the canonical folder `root`)
/// extends, directly or not, in the order they are applied.
pub(crate) fn gather(shown: &Path, text: &str, root: &Path) -> (Layers, Vec<Diagnostic>) {
    let name = shown.file_name().map(PathBuf::from).unwrap_or_default();
    let own = paths::resolve_inside(root, &name).unwrap_or_else(|_| root.join(&name));
    let mut g = Gather {
        root,
        shown_dir: shown.parent().map(Path::to_path_buf).unwrap_or_default(),
        layers: Vec::new(),
        stack: vec![(own, name.display().to_string())],
        next: 1,
        diags: Vec::new(),
    };
    g.visit(text, 0, Path::new(""));
    (Layers { list: g.layers }, g.diags)
}

impl Gather<'_> {
    fn visit(&mut self, text: &str, offset: usize, rel_dir: &Path) {
        for (name, span) in entries(text) {
            let span = span.start + offset..span.end + offset;
            match paths::resolve_inside(self.root, &rel_dir.join(&name)) {
                Ok(real) => self.enter(&name, real, span),
                Err(Outside::Escapes) => self.diags.push(
                    Diagnostic::new(
                        Code::PathEscapes,
                        format!("`{name}` is outside the pipeline's folder"),
                    )
                    .at(span)
                    .label("extended here")
                    .hint(format!(
                        "an extended file must be inside {}: move it there",
                        self.root.display()
                    )),
                ),
                Err(Outside::Missing) => self.diags.push(
                    Diagnostic::new(Code::UnreadableFile, format!("cannot read `{name}`"))
                        .at(span)
                        .label("no such file")
                        .hint("name a file relative to the file that extends it"),
                ),
            }
        }
    }

    fn enter(&mut self, name: &str, real: PathBuf, span: Range<usize>) {
        if let Some(at) = self.stack.iter().position(|(p, _)| *p == real) {
            let mut chain: Vec<String> = self.stack[at..]
                .iter()
                .map(|(_, n)| format!("`{n}`"))
                .collect();
            chain.push(format!("`{name}`"));
            self.diags.push(
                Diagnostic::new(
                    Code::ExtendsCycle,
                    format!("a cycle of extended files: {}", chain.join(" extends ")),
                )
                .at(span)
                .label("extends a file that extends this one")
                .hint("move what both files share into a third file that both extend"),
            );
            return;
        }
        if self.layers.iter().any(|l| l.real == real) {
            return;
        }
        if self.next > MAX_FILES {
            self.diags.push(
                Diagnostic::new(
                    Code::ExtendsCycle,
                    format!("more than {MAX_FILES} extended files"),
                )
                .at(span)
                .hint("extend fewer files"),
            );
            return;
        }
        let text = match crate::fsread::read_bounded(&real, crate::fsread::FILE_LIMIT)
            .map_err(|e| e.to_string())
            .and_then(|b| String::from_utf8(b).map_err(|_| "not valid UTF-8".into()))
        {
            Ok(text) => text,
            Err(e) => {
                self.diags.push(
                    Diagnostic::new(Code::UnreadableFile, format!("cannot read `{name}`: {e}"))
                        .at(span),
                );
                return;
            }
        };
        let offset = self.next * STRIDE;
        self.next += 1;
        let rel = real.strip_prefix(self.root).unwrap_or(&real).to_path_buf();
        let rel_dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        self.stack.push((real.clone(), rel.display().to_string()));
        self.visit(&text, offset, &rel_dir);
        self.stack.pop();
        self.layers.push(Layer {
            shown: self.shown_dir.join(&rel),
            real,
            text,
            offset,
        });
    }
}

/// Merges the extended files under the pipeline file's own tree `own`: each file in order,
/// then `own`. Syntax errors in an extended file are located in it.
pub(crate) fn merge<'i>(own: &mut DeTable<'i>, layers: &'i Layers) -> Vec<Diagnostic> {
    if layers.list.is_empty() {
        return Vec::new();
    }
    let mut diags = Vec::new();
    let mut merged = DeTable::new();
    for layer in &layers.list {
        let (tree, errors) = DeTable::parse_recoverable(&layer.text);
        diags.extend(errors.iter().take(crate::diag::MAX_SHOWN).map(|e| {
            let mut d = super::toml_error(e);
            d.span = d.span.map(|s| s.start + layer.offset..s.end + layer.offset);
            d
        }));
        let mut table = shift_table(tree.into_inner(), layer.offset);
        table.remove("extends");
        merge_table(&mut merged, table);
    }
    let own_table = std::mem::take(own);
    merge_table(&mut merged, own_table);
    *own = merged;
    diags
}

/// Sets every key of `from` in `into`: tables merge, anything else replaces.
fn merge_table<'i>(into: &mut DeTable<'i>, from: DeTable<'i>) {
    for (k, v) in from {
        let both_tables = v.get_ref().is_table()
            && into
                .get(k.get_ref().as_ref())
                .is_some_and(|old| old.get_ref().is_table());
        if both_tables {
            let Some((_, old)) = into.remove_entry(k.get_ref().as_ref()) else {
                continue;
            };
            let span = v.span();
            let (DeValue::Table(mut old), DeValue::Table(new)) = (old.into_inner(), v.into_inner())
            else {
                continue;
            };
            merge_table(&mut old, new);
            into.insert(k, Spanned::new(span, DeValue::Table(old)));
        } else {
            into.remove(k.get_ref().as_ref());
            into.insert(k, v);
        }
    }
}

fn shift(span: Range<usize>, by: usize) -> Range<usize> {
    span.start + by..span.end + by
}

fn shift_table(t: DeTable<'_>, by: usize) -> DeTable<'_> {
    let mut out = DeTable::new();
    for (k, v) in t {
        let key = Spanned::new(shift(k.span(), by), k.into_inner());
        out.insert(key, shift_value(v, by));
    }
    out
}

fn shift_value(v: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = shift(v.span(), by);
    let value = match v.into_inner() {
        DeValue::Table(t) => DeValue::Table(shift_table(t, by)),
        DeValue::Array(a) => {
            let mut out = DeArray::new();
            for item in a {
                out.push(shift_value(item, by));
            }
            DeValue::Array(out)
        }
        other => other,
    };
    Spanned::new(span, value)
}

/// Splits the diagnostics of a pipeline file `shown` (text `source`) into one report for the
/// file and one for each extended file a diagnostic is in, spans made local to each.
pub(crate) fn reports(
    shown: &Path,
    source: String,
    layers: &Layers,
    diagnostics: Vec<Diagnostic>,
) -> Vec<Report> {
    let mut own = Report {
        file: shown.display().to_string(),
        source,
        diagnostics: Vec::new(),
    };
    let mut others: Vec<Report> = Vec::new();
    for mut d in diagnostics {
        let at = d.span.as_ref().and_then(|s| layers.locate(s.start));
        let Some((layer, _)) = at else {
            d.also = d
                .also
                .iter()
                .filter(|(s, _)| layers.locate(s.start).is_none())
                .cloned()
                .collect();
            own.diagnostics.push(d);
            continue;
        };
        let local = |s: &Range<usize>| s.start - layer.offset..s.end - layer.offset;
        d.span = d.span.as_ref().map(local);
        d.also = d
            .also
            .iter()
            .filter(|(s, _)| {
                layers
                    .locate(s.start)
                    .is_some_and(|(l, _)| l.real == layer.real)
            })
            .map(|(s, label)| (local(s), label.clone()))
            .collect();
        d.message = format!(
            "{} (in `{}`, which extends this file)",
            d.message,
            crate::diag::clean(&own.file)
        );
        let file = layer.shown.display().to_string();
        match others.iter_mut().find(|r| r.file == file) {
            Some(r) => r.diagnostics.push(d),
            None => others.push(Report {
                file,
                source: layer.text.clone(),
                diagnostics: vec![d],
            }),
        }
    }
    let mut out = Vec::new();
    if !own.diagnostics.is_empty() || others.is_empty() {
        out.push(own);
    }
    out.extend(others);
    out
}
