//! The build context: the folder host paths are relative to (`context`, by default the
//! pipeline file's folder), its ignore file (`.dockerignore` at its root) and what of a copy
//! source they and the step's `exclude` patterns leave out.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::glob;
use super::paths::{resolve_inside, Outside};
use super::raw::{CopySrc, Str};
use super::validate::Builder;
use crate::diag::{Code, Diagnostic};
use crate::model::ignore::{is_glob, read_ignore_file, Patterns};
use crate::model::{CopyFilter, CopySource};

/// The ignore file's name, at the context root.
pub(crate) const IGNORE_FILE: &str = ".dockerignore";

/// The declared context (resolved), its span and its ignore file's patterns.
#[derive(Debug, Default)]
pub(super) struct Context {
    /// `context` as written and its span; `None`: the pipeline file's folder.
    pub(super) declared: Option<(String, Range<usize>)>,
    pub(super) ignore: Option<Arc<Patterns>>,
}

impl Builder<'_> {
    /// Resolves `context` (relative to the file's folder) to a folder, then reads its ignore
    /// file, resolved inside it.
    pub(super) fn context(&mut self, raw: Option<&Str>) {
        if let Some(s) = raw {
            if let Some(text) = self.text(s) {
                self.declare_context(&text, s.span());
            }
        }
        self.ignore_file();
    }

    fn declare_context(&mut self, text: &str, span: Range<usize>) {
        let folder = self.dir.join(text);
        match folder.canonicalize() {
            Ok(root) if root.is_dir() => {
                self.root = root;
                self.ctx.declared = Some((text.to_string(), span));
            }
            Ok(_) => self.diags.push(
                Diagnostic::new(
                    Code::InvalidContext,
                    format!("context `{text}` is not a folder"),
                )
                .at(span)
                .hint("name the folder that holds the sources, e.g. `\"..\"`"),
            ),
            Err(e) => self.diags.push(
                Diagnostic::new(
                    Code::InvalidContext,
                    format!("context `{text}` cannot be read: {e}"),
                )
                .at(span)
                .label(format!("looked for {}", folder.display()))
                .hint("write it relative to the pipeline file's folder, e.g. `\"..\"`"),
            ),
        }
    }

    /// Reads `.dockerignore` at the context root, when there is one.
    fn ignore_file(&mut self) {
        let span = self.ctx.declared.as_ref().map(|(_, s)| s.clone());
        let path = match resolve_inside(&self.root, Path::new(IGNORE_FILE)) {
            Ok(path) => path,
            Err(Outside::Missing) => return,
            Err(Outside::Escapes) => {
                let d = Diagnostic::new(
                    Code::PathEscapes,
                    format!(
                        "ignore file `{IGNORE_FILE}` is outside {}",
                        self.root_name()
                    ),
                )
                .hint("make it a file, not a symlink out of the context");
                self.diags.push(at(d, span));
                return;
            }
        };
        let text = crate::fsread::read_bounded(&path, crate::fsread::FILE_LIMIT)
            .map_err(|e| e.to_string())
            .and_then(|b| String::from_utf8(b).map_err(|_| "not valid UTF-8".to_string()));
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                let d = Diagnostic::new(
                    Code::InvalidIgnoreFile,
                    format!("ignore file `{}`: {e}", path.display()),
                );
                self.diags.push(at(d, span));
                return;
            }
        };
        let lines = read_ignore_file(&text);
        for (line, pattern) in &lines {
            if let Err(e) = Patterns::new(&[pattern]) {
                let d = Diagnostic::new(
                    Code::InvalidIgnoreFile,
                    format!("{}:{line}: {e}", path.display()),
                )
                .hint(
                    "see Docker's `.dockerignore` syntax: `*`, `?`, `**`, `[a-z]`, `!` exceptions",
                );
                self.diags.push(at(d, span.clone()));
            }
        }
        let patterns: Vec<&String> = lines.iter().map(|(_, p)| p).collect();
        if let Ok(p) = Patterns::new(&patterns) {
            self.ctx.ignore = (!p.is_empty()).then(|| Arc::new(p));
        }
    }

    /// `the pipeline's folder`, or `the build context `..``.
    pub(super) fn root_name(&self) -> String {
        match &self.ctx.declared {
            Some((text, _)) => format!("the build context `{text}`"),
            None => "the pipeline's folder".into(),
        }
    }

    /// The sources of a copy, resolved inside the context (globs expanded), each with what
    /// the ignore file and `exclude` leave out of it; and the sources as written.
    pub(super) fn copy_sources(
        &mut self,
        src: &Spanned<CopySrc>,
        exclude: &[Str],
    ) -> Option<(Vec<CopySource>, String)> {
        let span = src.span();
        let exclude = self.exclude_patterns(exclude);
        let mut out = Vec::new();
        let mut texts = Vec::new();
        let mut ok = exclude.is_some();
        for raw in src.get_ref().as_slice() {
            let Ok(text) = self
                .t
                .render(raw, span.clone())
                .map_err(|d| self.diags.push(d))
            else {
                ok = false;
                continue;
            };
            let exclude = exclude.clone().flatten();
            ok &= if is_glob(&text) {
                self.glob_sources(&text, span.clone(), exclude, &mut out)
            } else {
                self.plain_source(&text, span.clone(), exclude, &mut out)
            };
            texts.push(text);
        }
        ok.then(|| (out, texts.join(", ")))
    }

    fn plain_source(
        &mut self,
        text: &str,
        span: Range<usize>,
        exclude: Option<Arc<Patterns>>,
        out: &mut Vec<CopySource>,
    ) -> bool {
        let Some(path) = self.host_path(text, span.clone(), "copy source") else {
            return false;
        };
        let base = self.base_of(&path);
        if base != "." && self.ignored(&path, &base) {
            self.diags.push(
                Diagnostic::new(
                    Code::IgnoredSource,
                    format!("copy source `{text}` is excluded by `{IGNORE_FILE}`"),
                )
                .at(span)
                .hint(format!(
                    "remove its pattern from `{IGNORE_FILE}`, or add the exception `!{base}`"
                )),
            );
            return false;
        }
        out.push(self.source(path, base, exclude));
        true
    }

    /// A glob's matches, less those the ignore file or `exclude` (matched against the path
    /// below the glob's first folder) leave out, as `COPY` leaves out what the context lacks.
    fn glob_sources(
        &mut self,
        text: &str,
        span: Range<usize>,
        exclude: Option<Arc<Patterns>>,
        out: &mut Vec<CopySource>,
    ) -> bool {
        if let Err(e) = glob::check(text) {
            self.diags
                .push(Diagnostic::new(Code::InvalidPattern, e).at(span));
            return false;
        }
        let problem = match glob::expand_inside(&self.root, text) {
            Ok(matches) => {
                let before = out.len();
                for (path, rel) in matches {
                    let base = self.base_of(&path);
                    let excluded = exclude.as_ref().is_some_and(|p| p.excludes(&rel));
                    if !excluded && !self.ignored(&path, &base) {
                        out.push(self.source(path, base, exclude.clone()));
                    }
                }
                if out.len() > before {
                    return true;
                }
                (
                    Code::PathNotFound,
                    "matches only ignored or excluded files".to_string(),
                )
            }
            Err(Outside::Missing) => (Code::PathNotFound, "matches nothing".to_string()),
            Err(Outside::Escapes) => (
                Code::PathEscapes,
                format!("is outside {}", self.root_name()),
            ),
        };
        self.diags.push(
            Diagnostic::new(problem.0, format!("copy source `{text}` {}", problem.1))
                .at(span)
                .label(format!("looked in {}", self.root.display())),
        );
        false
    }

    /// Whether the ignore file leaves out the source at `path` (`base` in the context); an
    /// ignored folder that an exception reaches into is copied with what it keeps.
    fn ignored(&self, path: &Path, base: &str) -> bool {
        self.ctx
            .ignore
            .as_ref()
            .is_some_and(|p| p.excludes(base) && !(path.is_dir() && p.has_exceptions()))
    }

    /// The path of `src` in the context, `/`-separated (`.`: the root).
    fn base_of(&self, src: &Path) -> String {
        match src.strip_prefix(&self.root) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
            _ => ".".to_string(),
        }
    }

    fn source(&self, path: PathBuf, base: String, exclude: Option<Arc<Patterns>>) -> CopySource {
        CopySource {
            path,
            filter: CopyFilter {
                ignore: self.ctx.ignore.clone(),
                base,
                exclude,
            },
        }
    }

    /// A copy's `exclude` patterns (`Some(None)`: none); `None` when one is refused.
    fn exclude_patterns(&mut self, exclude: &[Str]) -> Option<Option<Arc<Patterns>>> {
        let mut ok = true;
        let mut patterns = Vec::new();
        for s in exclude {
            let Some(text) = self.text(s) else {
                ok = false;
                continue;
            };
            if let Err(e) = Patterns::new(&[&text]) {
                self.diags.push(
                    Diagnostic::new(Code::InvalidPattern, e)
                        .at(s.span())
                        .hint("write e.g. `\"*.md\"`, `\"tests/**\"` or `\"!keep.md\"`"),
                );
                ok = false;
            }
            patterns.push(text);
        }
        let patterns = Patterns::new(&patterns).ok().filter(|p| !p.is_empty());
        ok.then(|| patterns.map(Arc::new))
    }
}

fn at(d: Diagnostic, span: Option<Range<usize>>) -> Diagnostic {
    match span {
        Some(span) => d.at(span),
        None => d,
    }
}
