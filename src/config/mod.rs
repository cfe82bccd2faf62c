//! Loading a pipeline file: read, parse (with spans), template, validate.

pub mod check;
mod context;
pub(crate) mod extends;
pub(crate) mod from;
mod glob;
mod matrix;
mod paths;
pub mod raw;
mod resolved;
mod set;
pub mod template;
mod validate;
pub mod vars;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diag::{Code, Diagnostic, Report};
use crate::model::Pipeline;
pub use resolved::resolved;
use template::Templates;
use validate::Builder;

/// Variables given on the command line, applied over `[vars]` in this order.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--var-file FILE.toml`, in order.
    pub var_files: Vec<std::path::PathBuf>,
    /// `--var KEY=VALUE`, in order; they win over var files.
    pub vars: Vec<(String, String)>,
    /// `--platform`, in order: replaces the file's `platforms` when not empty.
    pub platforms: Vec<String>,
    /// The platform to render the templates for; `None`: the first of the pipeline's.
    pub platform: Option<crate::model::Platform>,
    /// `--set PATH=VALUE`, in order: keys of the file set over its values.
    pub sets: Vec<(String, String)>,
    /// Load only this variant of a file's `[matrix]` (a build loaded again for another
    /// platform).
    pub variant: Option<crate::model::Variant>,
}

/// A parsed pipeline file: what could be read of it, and every problem found on the way.
#[derive(Debug)]
pub struct Parsed {
    /// The file's raw form, with the structurally wrong parts left out (missing keys are
    /// `None`); `None` when even that cannot be read.
    pub file: Option<raw::PipelineFile>,
    /// TOML syntax errors, unknown keys, wrong types and missing keys, in source order.
    pub diagnostics: Vec<Diagnostic>,
    /// Spans of tables that lost keys to structural problems (see [`check::Checked`]).
    pub pruned: Vec<std::ops::Range<usize>>,
    /// Where the first syntax error is: the file is only read up to there.
    pub syntax_error_at: Option<usize>,
}

/// Parses a pipeline file's text: every syntax error and every structural problem (unknown
/// key, wrong type, missing key) is reported, not only the first one.
pub fn parse(source: &str) -> Parsed {
    parse_with(source, &[])
}

/// [`parse`], with the keys of `--set` applied over the file's (see `config::set`).
pub fn parse_with<'i>(source: &'i str, sets: &'i [(String, String)]) -> Parsed {
    parse_layered(source, &NO_LAYERS, sets)
}

static NO_LAYERS: extends::Layers = extends::Layers { list: Vec::new() };

/// The file's own tree with the files it extends merged under it and `--set` applied over
/// it, and the syntax errors and `--set` problems on the way.
pub(crate) fn merged<'i>(
    source: &'i str,
    layers: &'i extends::Layers,
    sets: &'i [(String, String)],
) -> (toml::Spanned<toml::de::DeTable<'i>>, Vec<Diagnostic>) {
    let (mut root, errors) = toml::de::DeTable::parse_recoverable(source);
    let mut diagnostics: Vec<Diagnostic> = errors
        .iter()
        .take(crate::diag::MAX_SHOWN)
        .map(toml_error)
        .collect();
    diagnostics.extend(extends::merge(root.get_mut(), layers));
    diagnostics.extend(set::apply(root.get_mut(), sets, source.len()));
    (root, diagnostics)
}

/// [`parse_with`] of a file that extends the files `layers`.
fn parse_layered<'i>(
    source: &'i str,
    layers: &'i extends::Layers,
    sets: &'i [(String, String)],
) -> Parsed {
    let (mut root, mut diagnostics) = merged(source, layers, sets);
    let syntax_error_at = (!diagnostics.is_empty()).then(|| {
        diagnostics
            .iter()
            .filter_map(|d| d.span.as_ref().map(|s| s.start))
            .min()
            .unwrap_or(0)
    });
    let checked = check::check(&mut root);
    diagnostics.extend(
        checked
            .diagnostics
            .into_iter()
            .filter(|d| d.code != Code::MissingKey || syntax_error_at.is_none())
            .filter(|d| before(d, syntax_error_at)),
    );
    diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
    let file = match raw::PipelineFile::deserialize(toml::de::Deserializer::from(root)) {
        Ok(file) => Some(file),
        Err(e) => {
            if syntax_error_at.is_none() {
                diagnostics.push(toml_error(&e));
            }
            None
        }
    };
    Parsed {
        file,
        diagnostics,
        pruned: checked.pruned,
        syntax_error_at,
    }
}

/// Whether a diagnostic is about the part of the file before its first syntax error: after
/// it, the tree the parser recovered is a guess.
fn before(d: &Diagnostic, syntax_error_at: Option<usize>) -> bool {
    match syntax_error_at {
        None => true,
        Some(first) => d
            .span
            .as_ref()
            .is_some_and(|s| s.start < s.end && s.end <= first),
    }
}

/// Semantic codes about something missing, which a structural problem in the same table
/// (an unknown or mistyped key, removed before the semantic checks) already explains.
const CASCADES: &[Code] = &[
    Code::StepAction,
    Code::SecretSource,
    Code::IncompleteCredentials,
];

/// Semantic codes that depend on other parts of the file (a declaration, a variable), which may
/// be after a syntax error.
const WHOLE_FILE: &[Code] = &[
    Code::StepAction,
    Code::SecretSource,
    Code::IncompleteCredentials,
    Code::UnknownSecret,
    Code::UndefinedVariable,
    Code::SecretInTemplate,
];

/// Turns a TOML or serde error into a coded diagnostic.
pub fn toml_error(e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_string();
    let code = if message.starts_with("unknown field") {
        Code::UnknownKey
    } else if message.starts_with("invalid type") || message.starts_with("data did not match") {
        Code::InvalidType
    } else if message.starts_with("missing field") {
        Code::MissingKey
    } else if message.starts_with("unknown variant") {
        Code::InvalidValue
    } else {
        Code::TomlSyntax
    };
    let mut d = Diagnostic::new(code, message);
    if let Some(span) = e.span() {
        d = d.at(span);
    }
    d
}

/// A file to load: the path as shown, the path to read, and whether folder expansion found it
/// (then it may be something other than a pipeline, and it was resolved inside its folder).
struct Candidate {
    shown: PathBuf,
    real: PathBuf,
    found: bool,
}

/// A file that was not loaded as a pipeline, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: PathBuf,
    pub reason: &'static str,
}

/// What [`load_all`] loaded.
#[derive(Debug)]
pub struct Loaded {
    pub pipelines: Vec<Pipeline>,
    /// Files found in folders (or named) that are not pipelines.
    pub skipped: Vec<Skipped>,
}

/// Expands folders to the `*.toml` files in them, sorted; files are taken as given. A file in
/// a folder is resolved inside it: a symlink that leaves the folder is refused, as a copy
/// source that leaves it is; a folder named `*.toml` is not a file.
fn expand(files: &[PathBuf]) -> Vec<Result<Candidate, Report>> {
    let mut out = Vec::new();
    for f in files {
        if !f.is_dir() {
            out.push(Ok(Candidate {
                shown: f.clone(),
                real: f.clone(),
                found: false,
            }));
            continue;
        }
        let folder = match f.canonicalize() {
            Ok(folder) => folder,
            Err(e) => {
                out.push(Err(unreadable(
                    f,
                    format!("cannot read `{}`: {e}", f.display()),
                )));
                continue;
            }
        };
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(f)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| Path::new(n).extension().is_some_and(|e| e == "toml"))
            .collect();
        names.sort();
        for name in names {
            let shown = f.join(&name);
            match paths::resolve_inside(&folder, Path::new(&name)) {
                Ok(real) if real.is_dir() => {}
                Ok(real) => out.push(Ok(Candidate {
                    shown,
                    real,
                    found: true,
                })),
                Err(paths::Outside::Escapes) => out.push(Err(Report {
                    file: shown.display().to_string(),
                    source: String::new(),
                    diagnostics: vec![Diagnostic::new(
                        Code::PathEscapes,
                        format!(
                            "`{}` is a symlink to a file outside `{}`",
                            shown.display(),
                            f.display()
                        ),
                    )
                    .hint(
                        "a file found in a folder must stay inside it; name the file on the \
                         command line to load it anyway",
                    )],
                })),
                Err(paths::Outside::Missing) => out.push(Err(unreadable(
                    &shown,
                    format!("cannot read `{}`: a broken symlink", shown.display()),
                ))),
            }
        }
    }
    out
}

fn unreadable(file: &Path, message: String) -> Report {
    Report {
        file: file.display().to_string(),
        source: String::new(),
        diagnostics: vec![Diagnostic::new(Code::UnreadableFile, message)],
    }
}

/// Loads and validates every file (folders expanded); on failure, the problems of every file.
/// A `--var-file` is never a pipeline, and neither is a TOML file found in a folder without a
/// `base` key at its top level (a shared var file, another tool's config): both are skipped.
pub fn load_all(files: &[PathBuf], overrides: &Overrides) -> Result<Loaded, Vec<Report>> {
    let var_files: Vec<PathBuf> = overrides
        .var_files
        .iter()
        .filter_map(|f| f.canonicalize().ok())
        .collect();
    let mut loaded = Loaded {
        pipelines: Vec::new(),
        skipped: Vec::new(),
    };
    let mut reports = Vec::new();
    // Every variable some file declares: a value given for another name is a mistake.
    let mut declared = BTreeSet::new();
    let mut read_any = false;
    let candidates = expand(files);
    let (extended, inherited) = extended_files(&candidates);
    declared.extend(inherited);
    for candidate in candidates {
        let c = match candidate {
            Ok(c) => c,
            Err(report) => {
                reports.push(report);
                continue;
            }
        };
        let skip = |reason| Skipped {
            file: c.shown.clone(),
            reason,
        };
        if c.real
            .canonicalize()
            .is_ok_and(|real| var_files.contains(&real))
        {
            loaded.skipped.push(skip("given with --var-file"));
            continue;
        }
        if c.found
            && c.real
                .canonicalize()
                .is_ok_and(|real| extended.contains(&real))
        {
            loaded
                .skipped
                .push(skip("extended by another file, so not applied on its own"));
            continue;
        }
        let source = match read(&c.shown, &c.real) {
            Ok(source) => source,
            Err(report) => {
                reports.push(report);
                continue;
            }
        };
        if c.found && !is_pipeline(&source) {
            loaded
                .skipped
                .push(skip("no `base` or `extends` key, so not a pipeline"));
            continue;
        }
        read_any = true;
        declared.extend(declared_names(&source));
        match load_source(&c.shown, source, overrides) {
            Ok(p) => loaded.pipelines.extend(p),
            Err(r) => reports.extend(r),
        }
    }
    if read_any {
        let (given, var_files) = vars::given(overrides);
        reports.extend(vars::unknown(&given, &var_files, &declared));
    }
    reports.extend(produced_twice(&loaded.pipelines));
    let unknown = from::link(&mut loaded.pipelines);
    reports.extend(grouped(&loaded.pipelines, unknown));
    if reports.is_empty() {
        Ok(loaded)
    } else {
        Err(reports)
    }
}

/// The line (from 1) of a byte offset.
fn line_of(source: &str, at: usize) -> usize {
    source.as_bytes()[..at.min(source.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A reference two files of one run produce (a local tag or a publish target): both would
/// write it at the same time, and which one wins is luck. A report for each later file.
fn produced_twice(pipelines: &[Pipeline]) -> Vec<Report> {
    let mut first: std::collections::HashMap<String, (usize, &crate::model::Written)> =
        std::collections::HashMap::new();
    let mut found: Vec<(usize, Diagnostic)> = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        for w in &p.written {
            let Some(key) = w.reference.key() else {
                continue;
            };
            match first.get(&key) {
                None => {
                    first.insert(key, (i, w));
                }
                Some((j, _)) if *j == i => {}
                Some((j, other)) => {
                    let what = |w: &crate::model::Written| {
                        if w.published {
                            "publishes"
                        } else {
                            "tags its image"
                        }
                    };
                    let two = if pipelines[*j].file == p.file {
                        "two variants"
                    } else {
                        "two files"
                    };
                    let mut message = format!(
                        "`{}` is produced by {two}: `{}` {} it too (line {})",
                        w.reference,
                        crate::diag::clean(&pipelines[*j].shown()),
                        what(other),
                        other.line
                    );
                    if p.variant.is_some() {
                        message.push_str(&format!(" (in `{}`)", crate::diag::clean(&p.shown())));
                    }
                    found.push((
                        i,
                        Diagnostic::new(Code::DuplicateTarget, message)
                            .at(w.span.clone())
                            .label(format!(
                                "this {} {} it",
                                if p.variant.is_some() {
                                    "variant"
                                } else {
                                    "file"
                                },
                                what(w)
                            ))
                            .hint("give each file tags of its own, e.g. with a suffix per variant"),
                    ));
                }
            }
        }
    }
    grouped(pipelines, found)
}

/// Diagnostics of the run's files, one report per file (the variants of a matrix share
/// theirs); a value inherited through `extends` is reported in the file it is written in.
fn grouped(pipelines: &[Pipeline], found: Vec<(usize, Diagnostic)>) -> Vec<Report> {
    let mut by_file: Vec<(usize, Vec<Diagnostic>)> = Vec::new();
    for (i, d) in found {
        match by_file
            .iter_mut()
            .find(|(j, _)| pipelines[*j].file == pipelines[i].file)
        {
            // The variants of a matrix find the same problem each.
            Some((_, diags)) if diags.contains(&d) => {}
            Some((_, diags)) => diags.push(d),
            None => by_file.push((i, vec![d])),
        }
    }
    by_file
        .into_iter()
        .flat_map(|(i, diags)| {
            let path = &pipelines[i].file;
            let source = std::fs::read_to_string(path).unwrap_or_default();
            let layers = folder_of(path)
                .map(|dir| extends::gather(path, &source, &dir).0)
                .unwrap_or_default();
            extends::reports(path, source, &layers, diags)
        })
        .collect()
}

/// The files that the files of a run extend (canonical), and the variables they declare.
fn extended_files(candidates: &[Result<Candidate, Report>]) -> (Vec<PathBuf>, BTreeSet<String>) {
    let mut files = Vec::new();
    let mut names = BTreeSet::new();
    for c in candidates.iter().flatten() {
        let (Ok(source), Ok(dir)) = (read(&c.shown, &c.real), folder_of(&c.shown)) else {
            continue;
        };
        for layer in extends::gather(&c.shown, &source, &dir).0.list {
            names.extend(declared_names(&layer.text));
            files.push(layer.real);
        }
    }
    (files, names)
}

/// The names a pipeline file declares under `[vars]` and `[matrix]` (as far as it can be
/// read).
fn declared_names(source: &str) -> Vec<String> {
    let (root, _) = toml::de::DeTable::parse_recoverable(source);
    ["vars", "matrix"]
        .iter()
        .filter_map(
            |table| match root.get_ref().get(*table).map(|v| v.get_ref()) {
                Some(toml::de::DeValue::Table(t)) => {
                    Some(t.keys().map(|k| k.get_ref().to_string()))
                }
                _ => None,
            },
        )
        .flatten()
        .collect()
}

/// Whether a file found in a folder is meant as a pipeline: valid TOML without a top-level
/// `base` or `extends` key is not; a file that is not valid TOML may be one, and gets its diagnostics.
fn is_pipeline(source: &str) -> bool {
    let (root, errors) = toml::de::DeTable::parse_recoverable(source);
    !errors.is_empty()
        || root.get_ref().contains_key("base")
        || root.get_ref().contains_key("extends")
}

/// Loads, templates and validates one pipeline file (of a file with a `[matrix]`, its
/// first variant: [`load_reports`] has them all).
/// The first report is the file's own, or the first file it extends that a problem is in:
/// [`load_reports`] has them all.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Pipeline, Report> {
    load_reports(path, overrides)
        .map(|mut p| p.remove(0))
        .map_err(|mut r| r.remove(0))
}

/// [`load`], with every variant of a `[matrix]`, and a report for each file a problem is in.
pub fn load_reports(path: &Path, overrides: &Overrides) -> Result<Vec<Pipeline>, Vec<Report>> {
    let source = read(path, path).map_err(|r| vec![r])?;
    load_source(path, source, overrides)
}

/// Reads the file at `real` (shown as `shown`) as UTF-8 text.
fn read(shown: &Path, real: &Path) -> Result<String, Report> {
    let file = shown.display().to_string();
    let bytes = crate::fsread::read_bounded(real, crate::fsread::FILE_LIMIT)
        .map_err(|e| unreadable(shown, format!("cannot read `{file}`: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Report {
            file,
            source: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            diagnostics: vec![
                Diagnostic::new(Code::InvalidUtf8, "the file is not valid UTF-8")
                    .at(at..at + 1)
                    .hint("save the file as UTF-8"),
            ],
        }
    })
}

/// The canonical folder of a pipeline file.
fn folder_of(path: &Path) -> Result<PathBuf, Diagnostic> {
    path.parent()
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
            let message = format!("cannot resolve the folder of `{}`: {e}", path.display());
            Diagnostic::new(Code::UnreadableFile, message)
        })
}

/// Templates and validates the text of the pipeline file `path`: on failure, a report for the
/// file and one for each file it extends that a problem is in.
fn load_source(
    path: &Path,
    source: String,
    overrides: &Overrides,
) -> Result<Vec<Pipeline>, Vec<Report>> {
    let dir = match folder_of(path) {
        Ok(dir) => dir,
        Err(d) => return Err(extends::reports(path, source, &NO_LAYERS, vec![d])),
    };
    let (layers, loaded) = load_extended(path, &source, &dir, overrides);
    loaded.map_err(|d| extends::reports(path, source, &layers, d))
}

/// Parses, templates and validates a pipeline file's text; `dir` is the (canonical) folder
/// copy sources and secret files are relative to. Every problem found is returned (one in a
/// file the text extends has a span past the text: see `config::extends`). Of a file with a
/// `[matrix]`, the first variant: [`load_str_all`] has them all.
pub fn load_str(
    path: &Path,
    source: &str,
    dir: &Path,
    overrides: &Overrides,
) -> Result<Pipeline, Vec<Diagnostic>> {
    load_str_all(path, source, dir, overrides).map(|mut p| p.remove(0))
}

/// [`load_str`], with every variant of a `[matrix]` (in matrix order; never none).
pub fn load_str_all(
    path: &Path,
    source: &str,
    dir: &Path,
    overrides: &Overrides,
) -> Result<Vec<Pipeline>, Vec<Diagnostic>> {
    load_extended(path, source, dir, overrides).1
}

/// [`load_str`], and the files the text extends (the diagnostics' spans address them too).
fn load_extended(
    path: &Path,
    source: &str,
    dir: &Path,
    overrides: &Overrides,
) -> (extends::Layers, Result<Vec<Pipeline>, Vec<Diagnostic>>) {
    let (layers, mut found) = extends::gather(path, source, dir);
    let loaded = load_checked(path, source, dir, &layers, overrides);
    let result = match loaded {
        Ok(p) if found.is_empty() => Ok(p),
        Ok(_) => Err(found),
        Err(d) => {
            found.extend(
                d.into_iter()
                    .map(|d| set::relocate(d, source.len(), &overrides.sets)),
            );
            Err(found)
        }
    };
    (layers, result)
}

/// What every variant of a file shares while it is built.
struct Shared<'a> {
    path: &'a Path,
    source: &'a str,
    dir: &'a Path,
    layers: &'a extends::Layers,
    raw: raw::PipelineFile,
    declared: Vec<vars::Declaration>,
    matrix: matrix::Matrix,
    given: Vec<vars::Given>,
    platforms: Vec<crate::model::Platform>,
    platform: Option<crate::model::Platform>,
    pruned: Vec<std::ops::Range<usize>>,
    syntax_error_at: Option<usize>,
}

fn load_checked(
    path: &Path,
    source: &str,
    dir: &Path,
    layers: &extends::Layers,
    overrides: &Overrides,
) -> Result<Vec<Pipeline>, Vec<Diagnostic>> {
    let Parsed {
        file,
        mut diagnostics,
        pruned,
        syntax_error_at,
    } = parse_layered(source, layers, &overrides.sets);
    let Some(raw) = file else {
        return Err(diagnostics);
    };
    let (mut declared, var_diags) = vars::declare(&raw.vars);
    diagnostics.extend(var_diags);
    let (matrix, matrix_diags) = matrix::read(&raw.matrix, &mut declared, &|at| rank(layers, at));
    diagnostics.extend(matrix_diags);
    let (given, files) = vars::given(overrides);
    diagnostics.extend(files.iter().filter_map(|f| {
        let e = f.entries.as_ref().err()?;
        Some(Diagnostic::new(
            Code::InvalidVarFile,
            format!("cannot load `{}`: {e}", f.path.display()),
        ))
    }));
    let (variants, select_diags) = matrix.select(&given, overrides.variant.as_ref());
    diagnostics.extend(select_diags);
    let platforms = platforms(&raw, overrides, &mut diagnostics);
    let platform = overrides
        .platform
        .clone()
        .or_else(|| platforms.first().cloned());
    let shared = Shared {
        path,
        source,
        dir,
        layers,
        raw,
        declared,
        matrix,
        given,
        platforms,
        platform,
        pruned,
        syntax_error_at,
    };
    let mut built = Vec::new();
    let mut found = Vec::new();
    for v in &variants {
        match shared.variant(v.as_ref()) {
            Ok(p) => {
                built.push(p);
                found.push(Vec::new());
            }
            Err(d) => found.push(d),
        }
    }
    let file = crate::diag::clean(&path.display().to_string());
    diagnostics.extend(matrix::merge(&file, &variants, found));
    diagnostics.extend(shared.names_twice(&built));
    if diagnostics.is_empty() && !built.is_empty() {
        Ok(built)
    } else {
        if diagnostics.is_empty() {
            diagnostics.push(Diagnostic::new(
                Code::MatrixValue,
                "no variant of the matrix is left to load",
            ));
        }
        Err(diagnostics)
    }
}

/// Where a merged offset is in the order the files are applied: the extended files' in
/// their order, then the file's own.
fn rank(layers: &extends::Layers, at: usize) -> (usize, usize) {
    let layer = layers
        .list
        .iter()
        .position(|l| l.offset <= at && at < l.offset + extends::STRIDE);
    (layer.unwrap_or(layers.list.len()), at)
}

impl Shared<'_> {
    /// Builds one variant (the pipeline itself without a matrix): its own problems only.
    fn variant(
        &self,
        variant: Option<&crate::model::Variant>,
    ) -> Result<Pipeline, Vec<Diagnostic>> {
        let given = self.matrix.given_for(&self.given, variant);
        let (resolved, mut diagnostics) = vars::resolve(&self.declared, &given);
        let templates = Templates::new(
            &resolved,
            self.platform.as_ref().map(template::platform_value),
        );
        match Builder::new(&templates, self.dir, self.source)
            .multi_platform(self.platforms.len() > 1)
            .build(self.path, self.raw.clone())
        {
            Ok(mut p) if diagnostics.is_empty() => {
                for w in &mut p.written {
                    w.line = match self.layers.locate(w.span.start) {
                        Some((layer, at)) => line_of(&layer.text, at),
                        None => line_of(self.source, w.span.start),
                    };
                }
                if let (Some(v), None) = (variant, &self.raw.name) {
                    p.name = matrix::default_name(&p.name, v);
                }
                Ok(Pipeline {
                    platforms: self.platforms.clone(),
                    platform: self.platform.clone(),
                    variant: variant.cloned(),
                    ..p
                })
            }
            Ok(_) => Err(diagnostics),
            Err(d) => {
                // "Neither `run` nor `copy`" in a step whose `rnu` was just reported says the
                // same thing twice.
                let cascade = |d: &Diagnostic| {
                    CASCADES.contains(&d.code)
                        && d.span.as_ref().is_some_and(|s| {
                            self.pruned
                                .iter()
                                .any(|t| t.start <= s.start && s.start < t.end.max(t.start + 1))
                        })
                };
                let reliable = |d: &Diagnostic| {
                    self.syntax_error_at.is_none()
                        || (before(d, self.syntax_error_at) && !WHOLE_FILE.contains(&d.code))
                };
                diagnostics.extend(d.into_iter().filter(|d| !cascade(d) && reliable(d)));
                Err(diagnostics)
            }
        }
    }

    /// Two variants of the file with one name: at the `name` key, else at the matrix.
    fn names_twice(&self, built: &[Pipeline]) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (i, p) in built.iter().enumerate() {
            let Some(first) = built[..i].iter().find(|q| q.name == p.name) else {
                continue;
            };
            let span = self
                .raw
                .name
                .as_ref()
                .map(toml::Spanned::span)
                .or_else(|| self.matrix.span());
            let file = crate::diag::clean(&self.path.display().to_string());
            let shown = |q: &Pipeline| {
                q.variant
                    .as_ref()
                    .map_or_else(|| file.clone(), |v| v.shown(&file))
            };
            let mut d = Diagnostic::new(
                Code::DuplicateName,
                format!(
                    "`{}` and `{}` are both named `{}`",
                    shown(first),
                    shown(p),
                    p.name
                ),
            )
            .label("names the variants")
            .hint("name each variant after its values, e.g. `name = \"app-{{ flavor }}\"`");
            if let Some(span) = span {
                d = d.at(span);
            }
            out.push(d);
        }
        out
    }
}

/// The platforms to build: `--platform` when given, else the file's `platforms`, each once.
fn platforms(
    raw: &raw::PipelineFile,
    overrides: &Overrides,
    diags: &mut Vec<Diagnostic>,
) -> Vec<crate::model::Platform> {
    let mut out: Vec<crate::model::Platform> = Vec::new();
    let mut add = |pl: crate::model::Platform| {
        if !out.contains(&pl) {
            out.push(pl);
        }
    };
    if !overrides.platforms.is_empty() {
        for s in &overrides.platforms {
            match crate::model::Platform::parse(s) {
                Ok(pl) => add(pl),
                Err(e) => diags.push(
                    Diagnostic::new(Code::InvalidPlatform, format!("--platform: {e}"))
                        .hint("e.g. `--platform linux/arm64`"),
                ),
            }
        }
        return out;
    }
    for s in &raw.platforms {
        match crate::model::Platform::parse(s.get_ref()) {
            Ok(pl) => add(pl),
            Err(e) => diags.push(
                Diagnostic::new(Code::InvalidPlatform, e)
                    .at(s.span())
                    .hint("e.g. `platforms = [\"linux/amd64\", \"linux/arm64\"]`"),
            ),
        }
    }
    out
}
