//! From the file as written to the checked [`Pipeline`]: templates rendered, references
//! parsed, paths resolved, every problem collected as a located diagnostic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::paths::Outside;
use super::raw::{self, Str};
use super::template::Templates;
use crate::diag::{Code, Diagnostic};
use crate::model::*;
use crate::reference::{self, ImageRef};

/// Builds a [`Pipeline`] from the raw file, collecting every problem.
pub(super) struct Builder<'a> {
    pub(super) t: &'a Templates,
    /// The pipeline file's folder.
    pub(super) dir: &'a Path,
    /// The build context: where host paths are resolved (canonical).
    pub(super) root: PathBuf,
    pub(super) ctx: super::context::Context,
    pub(super) diags: Vec<Diagnostic>,
    /// The file's text and name, for places named outside a diagnostic (`file:line:col`).
    source: &'a str,
    file: PathBuf,
    /// The pipeline is built for several platforms (its publish targets are shared).
    multi_platform: bool,
    /// Each publish repository as parsed, where it is written.
    published: Vec<(ImageRef, std::ops::Range<usize>)>,
    /// The local tags and publish targets, where the file writes them.
    written: Vec<Written>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(t: &'a Templates, dir: &'a Path, source: &'a str) -> Self {
        Self {
            t,
            source,
            file: PathBuf::new(),
            dir,
            root: dir.to_path_buf(),
            ctx: super::context::Context::default(),
            diags: Vec::new(),
            multi_platform: false,
            published: Vec::new(),
            written: Vec::new(),
        }
    }

    /// For a pipeline built for several platforms: its publish targets may not depend on
    /// the platform.
    pub(super) fn multi_platform(mut self, yes: bool) -> Self {
        self.multi_platform = yes;
        self
    }

    pub(super) fn build(
        mut self,
        file: &Path,
        raw: raw::PipelineFile,
    ) -> Result<Pipeline, Vec<Diagnostic>> {
        self.file = file.to_path_buf();
        let name = match &raw.name {
            Some(n) => self.text(n).unwrap_or_default(),
            None => default_pipeline_name(file, self.dir),
        };
        self.context(raw.context.as_ref());
        let base = raw.base.as_ref().and_then(|b| self.base(b));
        let secrets = self.secrets(&raw.secrets);
        let steps: Vec<Step> = raw
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.step(i, s, &raw.secrets))
            .collect();
        if base.as_ref().is_some_and(Base::is_scratch) {
            self.runs_on_scratch(&raw.steps);
        }
        let commit = self.commit(&raw.commit);
        let checkpoint_after = match &raw.cache.checkpoint_after {
            Some(s) => self.duration(s).unwrap_or(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        let cache_remote = self.cache_remote(&raw.cache);
        let publish = self.publish(&raw.publish);
        if let Some(c) = &cache_remote {
            self.publish_into_cache(&c.repository);
        }
        let image = self.image_settings(&raw.image);
        let outputs = self.outputs(&raw.outputs);
        self.secret_variables_in_templates(&raw.secrets, &secrets);
        // No base without a diagnostic here: it is missing, reported by the structural check.
        let (Some(base), true) = (base, self.diags.is_empty()) else {
            return Err(self.diags);
        };
        Ok(Pipeline {
            name,
            file: file.to_path_buf(),
            dir: self.root.clone(),
            base,
            steps,
            commit,
            publish,
            secrets,
            checkpoint_after,
            cache_remote,
            platforms: Vec::new(),
            platform: None,
            image,
            written: self.written,
            outputs,
            variant: None,
        })
    }

    /// `[[output]]` tables: a kind and a plain relative path that stays in the folder (no
    /// `..`, no symlink on the way), so a file cannot make apply write outside it.
    fn outputs(&mut self, raw: &[raw::Output]) -> Vec<crate::model::Output> {
        let mut out = Vec::new();
        for o in raw {
            let (Some(kind), Some(path)) = (&o.kind, &o.path) else {
                let span = o
                    .path
                    .as_ref()
                    .map(|p| p.span())
                    .or(o.kind.as_ref().map(|k| k.span()));
                let mut d = Diagnostic::new(
                    Code::InvalidOutput,
                    "an `[[output]]` needs `type` and `path`",
                )
                .hint("write e.g. `type = \"tar\"` and `path = \"out/image.tar\"`");
                if let Some(span) = span {
                    d = d.at(span);
                }
                self.diags.push(d);
                continue;
            };
            let Some(text) = self.text(path) else {
                continue;
            };
            let relative = Path::new(&text);
            let plain = !text.is_empty()
                && relative
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            let through_link = relative.ancestors().any(|a| {
                !a.as_os_str().is_empty()
                    && std::fs::symlink_metadata(self.dir.join(a))
                        .is_ok_and(|m| m.file_type().is_symlink())
            });
            if !plain || through_link {
                self.diags.push(
                    Diagnostic::new(
                        Code::InvalidOutput,
                        format!("output path `{text}` is not a plain path inside the pipeline's folder"),
                    )
                    .at(path.span())
                    .hint("give a relative path of plain names (no `..`, no symlink), e.g. `out/image.tar`; `apply --output` writes anywhere"),
                );
                continue;
            }
            out.push(crate::model::Output {
                kind: *kind.get_ref(),
                path: self.dir.join(relative),
            });
        }
        out
    }

    /// `[image]`: the compression's level in its range, an epoch that is a time.
    fn image_settings(&mut self, raw: &raw::ImageSettings) -> crate::model::ImageSettings {
        let compression = raw
            .compression
            .as_ref()
            .map(|c| *c.get_ref())
            .unwrap_or_default();
        let (range, name) = match compression {
            crate::model::LayerCompression::Gzip => (0..=9, "gzip"),
            crate::model::LayerCompression::Zstd => (1..=19, "zstd"),
        };
        let level = raw.level.as_ref().and_then(|l| {
            let value = *l.get_ref();
            if range.contains(&value) {
                i32::try_from(value).ok()
            } else {
                self.diags.push(
                    Diagnostic::new(
                        Code::InvalidImageSetting,
                        format!("level {value} is outside {name}'s levels"),
                    )
                    .at(l.span())
                    .hint(format!(
                        "use {} to {} (higher: smaller layers, slower to write)",
                        range.start(),
                        range.end()
                    )),
                );
                None
            }
        });
        let epoch = raw.epoch.as_ref().and_then(|e| {
            let value = *e.get_ref();
            u64::try_from(value).ok().or_else(|| {
                self.diags.push(
                    Diagnostic::new(Code::InvalidImageSetting, "the epoch is before 1970")
                        .at(e.span())
                        .hint("give unix seconds, e.g. `git log -1 --format=%ct`"),
                );
                None
            })
        });
        crate::model::ImageSettings {
            compression,
            level,
            reproducible: raw.reproducible.unwrap_or(false),
            epoch,
        }
    }

    /// `[cache] remote`: a repository without tag or digest, with its credentials.
    fn cache_remote(&mut self, c: &raw::CacheSettings) -> Option<RemoteCache> {
        let Some(remote) = &c.remote else {
            if let Some(u) = c
                .username
                .as_ref()
                .or(c.password_env.as_ref())
                .or(c.verify_key.as_ref())
                .or(c.signing_key_env.as_ref())
            {
                self.diags.push(
                    Diagnostic::new(
                        Code::IncompleteCredentials,
                        "cache credentials without `remote`",
                    )
                    .at(u.span())
                    .hint("add `remote = \"REGISTRY/REPOSITORY\"`, or remove them"),
                );
            }
            return None;
        };
        let repository = self.reference(remote);
        let login = self.login(&c.username, &c.password_env);
        let verify_key = c.verify_key.as_ref().and_then(|k| self.verify_key(k));
        let signing_key_env = c.signing_key_env.as_ref().and_then(|n| self.env_name(n));
        let repository = repository?;
        if repository.tag.is_some() || repository.digest.is_some() {
            self.diags.push(
                Diagnostic::new(
                    Code::TagInRepository,
                    format!("`{repository}` names a tag or digest"),
                )
                .at(remote.span())
                .hint("give the repository alone: the cache keys are its tags"),
            );
            return None;
        }
        Some(RemoteCache {
            repository,
            login,
            mode: RemoteMode::ReadWrite,
            verify_key,
            signing_key_env,
        })
    }

    /// `[cache] verify_key`: `ed25519:BASE64`.
    fn verify_key(&mut self, s: &Str) -> Option<[u8; 32]> {
        let text = self.text(s)?;
        crate::signing::parse_verify_key(text.trim())
            .map_err(|why| {
                self.diags.push(
                    Diagnostic::new(Code::InvalidVerifyKey, format!("`verify_key`: {why}"))
                        .at(s.span())
                        .hint(
                            "write the public key `pipeline keygen` prints: \
                             `verify_key = \"ed25519:BASE64\"` (32 bytes in base64)",
                        ),
                )
            })
            .ok()
    }

    /// The name of an environment variable (`signing_key_env`).
    fn env_name(&mut self, s: &Str) -> Option<String> {
        let name = self.text(s)?;
        if is_env_name(&name) {
            return Some(name);
        }
        self.error(
            Code::InvalidEnvName,
            format!("`{name}` is not a valid environment variable name"),
            s.span(),
        );
        None
    }

    pub(super) fn text(&mut self, s: &Str) -> Option<String> {
        self.t.str(s).map_err(|d| self.diags.push(d)).ok()
    }

    fn error(&mut self, code: Code, message: impl Into<String>, span: std::ops::Range<usize>) {
        self.diags.push(Diagnostic::new(code, message).at(span));
    }

    fn reference(&mut self, s: &Str) -> Option<ImageRef> {
        let text = self.text(s)?;
        ImageRef::parse(&text)
            .map_err(|e| self.error(Code::InvalidReference, e, s.span()))
            .ok()
    }

    fn login(&mut self, username: &Option<Str>, password_env: &Option<Str>) -> Option<Login> {
        match (username, password_env) {
            (None, None) => None,
            (Some(u), Some(p)) => {
                let username = self.text(u)?;
                let password_env = self.env_name(p)?;
                Some(Login {
                    username,
                    password_env,
                })
            }
            (Some(u), None) => {
                self.diags.push(
                    Diagnostic::new(Code::IncompleteCredentials, "`username` is set without `password_env`")
                        .at(u.span())
                        .hint("add `password_env = \"NAME\"`, the name of the variable holding the password"),
                );
                None
            }
            (None, Some(p)) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::IncompleteCredentials,
                        "`password_env` is set without `username`",
                    )
                    .at(p.span()),
                );
                None
            }
        }
    }

    fn base(&mut self, b: &raw::Base) -> Option<Base> {
        // `scratch` is no image: as in a Dockerfile, it names nothing to pull, and the tool
        // starts from an empty image of its own, never pulled.
        let scratch = b
            .image
            .as_ref()
            .is_some_and(|i| i.get_ref().trim() == "scratch");
        let image = if scratch {
            ImageRef::parse(crate::reference::SCRATCH_REFERENCE).ok()
        } else {
            b.image.as_ref().and_then(|i| self.reference(i))
        };
        let login = self.login(&b.username, &b.password_env);
        let pull = if scratch {
            PullPolicy::Never
        } else {
            b.pull.as_ref().map(|p| *p.get_ref()).unwrap_or_default()
        };
        Some(Base {
            image: image?.with_default_tag(),
            pull,
            login,
        })
    }

    /// A `run` step on `scratch` has nothing to run: no shell, no files.
    fn runs_on_scratch(&mut self, steps: &[toml::Spanned<raw::Step>]) {
        for run in steps.iter().filter_map(|s| s.get_ref().run.as_ref()) {
            self.diags.push(
                Diagnostic::new(
                    Code::RunOnScratch,
                    "nothing can run on `scratch`: it has no shell and no files",
                )
                .at(run.span())
                .hint("copy files in with `copy` steps, or use a base with a shell (e.g. `busybox` or `debian`)"),
            );
        }
    }

    fn duration(&mut self, s: &Str) -> Option<Duration> {
        let text = self.text(s)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(
                    Code::InvalidDuration,
                    "the duration must be longer than zero",
                    s.span(),
                );
                None
            }
            Err(e) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::InvalidDuration,
                        format!("`{text}` is not a duration: {}", duration_problem(&e)),
                    )
                    .at(s.span())
                    .hint("write e.g. \"90s\", \"10m\" or \"1h 30m\""),
                );
                None
            }
        }
    }

    fn env_map(&mut self, map: &BTreeMap<Str, Str>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in map {
            if !is_env_name(k.get_ref()) {
                self.diags.push(
                    Diagnostic::new(
                        Code::InvalidEnvName,
                        format!("`{}` is not a valid environment variable name", k.get_ref()),
                    )
                    .at(k.span())
                    .hint("use letters, digits and `_`, not starting with a digit"),
                );
            }
            if let Some(v) = self.text(v) {
                out.insert(k.get_ref().clone(), v);
            }
        }
        out
    }

    fn step(
        &mut self,
        index: usize,
        spanned: &toml::Spanned<raw::Step>,
        declared: &BTreeMap<Str, raw::Secret>,
    ) -> Option<Step> {
        let s = spanned.get_ref();
        let action = match (&s.run, &s.copy) {
            (Some(run), None) => self.run(run),
            (None, Some(copy)) => self.copy(copy),
            (Some(run), Some(_)) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::StepAction,
                        format!("step {} has both `run` and `copy`", index + 1),
                    )
                    .at(run.span())
                    .hint("split it into two [[step]] tables"),
                );
                None
            }
            (None, None) => {
                let span = s
                    .name
                    .as_ref()
                    .map(|n| n.span())
                    .unwrap_or(spanned.span().start..spanned.span().start);
                self.diags.push(
                    Diagnostic::new(
                        Code::StepAction,
                        format!("step {} has neither `run` nor `copy`", index + 1),
                    )
                    .at(span)
                    .label("in this step")
                    .hint("add `run = \"...\"` or `copy = { src = \"...\", dest = \"...\" }`"),
                );
                None
            }
        };
        let env = self.env_map(&s.env);
        let user = s.user.as_ref().and_then(|u| self.text(u));
        let workdir = s.workdir.as_ref().and_then(|w| self.absolute(w));
        let timeout = s.timeout.as_ref().and_then(|t| self.duration(t));
        let mut secrets = Vec::new();
        for name in &s.secrets {
            if declared.contains_key(name.get_ref().as_str()) {
                secrets.push(name.get_ref().clone());
            } else {
                let hint = crate::diag::suggest(
                    name.get_ref(),
                    declared.keys().map(|k| k.get_ref().as_str()),
                )
                .map(|k| format!("did you mean `{k}`?"))
                .unwrap_or_else(|| "declare it as [secrets.NAME] with `env` or `file`".into());
                self.diags.push(
                    Diagnostic::new(
                        Code::UnknownSecret,
                        format!(
                            "secret `{}` is not declared under [secrets]",
                            name.get_ref()
                        ),
                    )
                    .at(name.span())
                    .hint(hint),
                );
            }
        }
        let name = s.name.as_ref().and_then(|n| self.text(n));
        let container = self.container_options(s, !secrets.is_empty());
        let action = action?;
        let name = name.unwrap_or_else(|| default_name(s));
        let at = self.place(
            s.run
                .as_ref()
                .map_or(spanned.span().start, |r| r.span().start),
        );
        Some(Step {
            name,
            action,
            at,
            env,
            user,
            workdir,
            timeout,
            checkpoint: s.checkpoint,
            secrets,
            container,
        })
    }

    /// `cache`, `mounts`, `tmpfs` and `network`: for `run` steps only; mount points are
    /// absolute plain paths, none of them inside another or in `/run/secrets`.
    // One function: the four options are checked against each other (no mount point inside
    // another, none in `/run/secrets`), so they are read together.
    #[allow(clippy::too_many_lines)]
    fn container_options(&mut self, s: &raw::Step, secrets: bool) -> ContainerOptions {
        let mut o = ContainerOptions::default();
        if s.copy.is_some() {
            let given = [
                s.cache.first().map(|c| ("cache", c.span())),
                s.mounts
                    .first()
                    .and_then(|m| m.src.as_ref().or(m.dest.as_ref()))
                    .map(|v| ("mounts", v.span())),
                s.tmpfs.first().map(|t| ("tmpfs", t.span())),
                s.network.as_ref().map(|n| ("network", n.span())),
            ];
            for (key, span) in given.into_iter().flatten() {
                self.diags.push(
                    Diagnostic::new(
                        Code::StepOption,
                        format!("`{key}` applies to `run` steps only"),
                    )
                    .at(span)
                    .hint("a copy goes through the engine's archive API, not a container"),
                );
            }
            return o;
        }
        // Every mount point with its span, to find overlaps.
        let mut points: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        for c in &s.cache {
            let (path, sharing) = match c.get_ref() {
                raw::CacheMount::Path(p) => (p, Sharing::default()),
                raw::CacheMount::Table(t) => (&t.path, t.sharing),
            };
            let Some(text) = self
                .t
                .render(path, c.span())
                .map_err(|d| self.diags.push(d))
                .ok()
            else {
                continue;
            };
            if let Some(path) = self.mount_point(&text, c.span(), "cache path") {
                points.push((path.clone(), c.span()));
                o.caches.push(CacheMount { path, sharing });
            }
        }
        for m in &s.mounts {
            let src_text = m.src.as_ref().and_then(|t| self.text(t));
            let dest = m.dest.as_ref().and_then(|d| {
                let text = self.text(d)?;
                let path = self.mount_point(&text, d.span(), "mount destination")?;
                points.push((path.clone(), d.span()));
                Some(path)
            });
            let src = match (&m.src, &src_text) {
                (Some(span), Some(text)) => self
                    .host_path(text, span.span(), "mount source")
                    .and_then(|p| {
                        if p.is_dir() {
                            Some(p)
                        } else {
                            self.diags.push(
                                Diagnostic::new(
                                    Code::MountNotFolder,
                                    format!("mount source `{text}` is not a folder"),
                                )
                                .at(span.span())
                                .hint("mount a folder; copy a single file with a `copy` step"),
                            );
                            None
                        }
                    }),
                _ => None,
            };
            if let (Some(src), Some(src_display), Some(dest)) = (src, src_text, dest) {
                o.mounts.push(HostMount {
                    src,
                    src_display,
                    dest,
                });
            }
        }
        for t in &s.tmpfs {
            let Some(text) = self.text(t) else { continue };
            if let Some(path) = self.mount_point(&text, t.span(), "tmpfs path") {
                points.push((path.clone(), t.span()));
                o.tmpfs.push(path);
            }
        }
        for (i, (path, span)) in points.iter().enumerate() {
            if let Some((other, other_span)) =
                points[..i].iter().find(|(p, _)| paths_overlap(p, path))
            {
                let what = if other == path {
                    format!("`{path}` is mounted twice")
                } else {
                    format!("mount points `{other}` and `{path}` overlap")
                };
                self.diags.push(
                    Diagnostic::new(Code::MountOverlap, what)
                        .at(span.clone())
                        .also(other_span.clone(), "also mounted here")
                        .hint("give each mount a folder of its own, none inside another"),
                );
            } else if paths_overlap(path, SECRETS_DIR) {
                let mut d = Diagnostic::new(
                    Code::MountOverlap,
                    format!("`{path}` overlaps `{SECRETS_DIR}`, where secrets are placed"),
                )
                .at(span.clone());
                if !secrets {
                    d = d.hint(format!("mount it anywhere but at or above `{SECRETS_DIR}`"));
                }
                self.diags.push(d);
            }
        }
        o.network = s.network.as_ref().map(|n| *n.get_ref()).unwrap_or_default();
        o
    }

    /// A mount point: an absolute path of plain names other than `/` (a final `/` dropped).
    fn mount_point(
        &mut self,
        text: &str,
        span: std::ops::Range<usize>,
        what: &str,
    ) -> Option<String> {
        if !text.starts_with('/') {
            self.error(
                Code::RelativePath,
                format!("{what} `{text}` must be an absolute path in the container"),
                span,
            );
            return None;
        }
        if text == "/" {
            self.diags.push(
                Diagnostic::new(Code::InvalidDestination, format!("{what} cannot be `/`"))
                    .at(span)
                    .hint("mount a folder below `/`, e.g. `/var/cache/apt`"),
            );
            return None;
        }
        if let Some(problem) = path_problem(text) {
            let hint = if text.contains('\0') {
                "names in an image cannot hold NUL bytes".to_string()
            } else {
                format!("write the plain path `{}`", plain_path(text))
            };
            self.diags.push(
                Diagnostic::new(
                    Code::InvalidDestination,
                    format!("{what} `{}` holds {problem}", text.escape_debug()),
                )
                .at(span)
                .hint(hint),
            );
            return None;
        }
        Some(text.strip_suffix('/').unwrap_or(text).to_string())
    }

    fn run(&mut self, run: &toml::Spanned<raw::RunSpec>) -> Option<Action> {
        let command = match run.get_ref() {
            raw::RunSpec::Shell(s) => Command::Shell(
                self.t
                    .render(s, run.span())
                    .map_err(|d| self.diags.push(d))
                    .ok()?,
            ),
            raw::RunSpec::Exec(v) => {
                let mut argv = Vec::new();
                for a in v {
                    argv.push(
                        self.t
                            .render(a, run.span())
                            .map_err(|d| self.diags.push(d))
                            .ok()?,
                    );
                }
                Command::Exec(argv)
            }
        };
        let empty = match &command {
            Command::Shell(s) => s.trim().is_empty(),
            Command::Exec(v) => v.first().is_none_or(|a| a.is_empty()),
        };
        if empty {
            self.error(Code::EmptyCommand, "the command is empty", run.span());
            return None;
        }
        Some(Action::Run(command))
    }

    fn absolute(&mut self, s: &Str) -> Option<String> {
        let text = self.text(s)?;
        if text.starts_with('/') {
            Some(text)
        } else {
            self.error(
                Code::RelativePath,
                format!("`{text}` must be an absolute path in the image"),
                s.span(),
            );
            None
        }
    }

    /// A copy destination: an absolute path of plain names, perhaps ending in `/`. `.`, `..`,
    /// `//` and NUL bytes are refused (with the plain path as the hint), never guessed at.
    fn destination(&mut self, s: &Str) -> Option<String> {
        let text = self.absolute(s)?;
        let Some(problem) = path_problem(&text) else {
            return Some(text);
        };
        let hint = if text.contains('\0') {
            "names in an image cannot hold NUL bytes".to_string()
        } else {
            format!("write the plain path `{}`", plain_path(&text))
        };
        self.diags.push(
            Diagnostic::new(
                Code::InvalidDestination,
                format!("copy destination `{}` holds {problem}", text.escape_debug()),
            )
            .at(s.span())
            .hint(hint),
        );
        None
    }

    fn copy(&mut self, c: &raw::Copy) -> Option<Action> {
        let dest = c.dest.as_ref().and_then(|d| self.destination(d));
        let mode = c.mode.as_ref().and_then(|m| {
            let text = self.text(m)?;
            match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
                Ok(v) if v <= 0o7777 => Some(v),
                _ => {
                    self.diags.push(
                        Diagnostic::new(
                            Code::InvalidMode,
                            format!("`{text}` is not an octal file mode"),
                        )
                        .at(m.span())
                        .hint("write e.g. \"0644\" or \"0755\""),
                    );
                    None
                }
            }
        });
        let (owner, owner_name) = match &c.owner {
            Some(o) => self.owner(o),
            None => (None, None),
        };
        if let Some(from) = &c.from {
            let from = self.copy_from(from, c)?;
            return Some(Action::Copy(CopySpec {
                sources: Vec::new(),
                src_display: from.src.clone(),
                dest: dest?,
                mode,
                owner,
                owner_name,
                from: Some(Box::new(from)),
            }));
        }
        let (sources, src_display) = self.copy_sources(c.src.as_ref()?, &c.exclude)?;
        let dest = dest?;
        if sources.len() > 1 && !dest.ends_with('/') {
            self.diags.push(
                Diagnostic::new(
                    Code::InvalidDestination,
                    format!(
                        "`{src_display}` is {} sources: the destination must be a folder",
                        sources.len()
                    ),
                )
                .at(c.dest.as_ref()?.span())
                .hint(format!("end it with `/`: `\"{dest}/\"`")),
            );
            return None;
        }
        Some(Action::Copy(CopySpec {
            sources,
            src_display,
            dest,
            mode,
            owner,
            owner_name,
            from: None,
        }))
    }

    /// `from` and `src` of a copy out of another image: one absolute path in it, and `from` a
    /// reference, or a name that only the run's other pipelines can tell (checked with them).
    fn copy_from(&mut self, from: &Str, c: &raw::Copy) -> Option<CopyFrom> {
        let text = self.text(from)?;
        if let Some(first) = c.exclude.first() {
            self.diags.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    "`exclude` filters the build context, not files from another image",
                )
                .at(first.span())
                .hint("leave `exclude` out, or copy a narrower `src`"),
            );
            return None;
        }
        let src = c.src.as_ref()?;
        let one = match src.get_ref() {
            raw::CopySrc::One(one) => one,
            raw::CopySrc::Many(_) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        "a copy `from` another image takes one `src`",
                    )
                    .at(src.span())
                    .hint(
                        "write one absolute path, e.g. \"/usr/local/bin/app\"; one step per path",
                    ),
                );
                return None;
            }
        };
        let path = self
            .t
            .render(one, src.span())
            .map_err(|d| self.diags.push(d))
            .ok()?;
        if !path.starts_with('/') {
            self.diags.push(
                Diagnostic::new(
                    Code::RelativePath,
                    format!("`{path}` must be an absolute path in the image `{text}`"),
                )
                .at(src.span())
                .hint(format!("write `/{}`", path.trim_start_matches("./"))),
            );
            return None;
        }
        Some(CopyFrom {
            reference: ImageRef::parse(&text).ok(),
            pipeline: None,
            image: None,
            at: self.place(from.span().start),
            span: from.span(),
            src: path,
            text,
        })
    }

    /// `uid[:gid]`, or with names (`app`, `app:app`, `1000:staff`), resolved in the image when
    /// the step runs.
    fn owner(&mut self, o: &Str) -> (Option<(u32, u32)>, Option<OwnerName>) {
        let Some(text) = self.text(o) else {
            return (None, None);
        };
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text.as_str(), None),
        };
        let numeric = |s: &str| s.parse::<u32>().ok();
        match (numeric(user), group.map(numeric)) {
            (Some(u), None) => return (Some((u, u)), None),
            (Some(u), Some(Some(g))) => return (Some((u, g)), None),
            _ => {}
        }
        let name = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '$'))
        };
        if !name(user) || group.is_some_and(|g| !name(g)) {
            self.diags.push(
                Diagnostic::new(Code::InvalidOwner, format!("`{text}` is not an owner"))
                    .at(o.span())
                    .hint("write `uid[:gid]` or `name[:group]`, e.g. \"1000:1000\" or \"app:app\""),
            );
            return (None, None);
        }
        let at = self.place(o.span().start);
        let owner = OwnerName {
            user: user.to_string(),
            group: group.map(str::to_string),
            text,
            at,
        };
        (None, Some(owner))
    }

    /// `file:line:col` of a byte offset of the file.
    fn place(&self, offset: usize) -> String {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{col}", self.file.display())
    }

    /// Resolves a host path relative to the pipeline folder; it must exist and stay inside it.
    /// Nothing outside the folder is looked at, not even whether it exists.
    pub(super) fn host_path(
        &mut self,
        text: &str,
        span: std::ops::Range<usize>,
        what: &str,
    ) -> Option<PathBuf> {
        match super::paths::resolve_inside(&self.root, Path::new(text)) {
            Ok(path) => Some(path),
            Err(Outside::Escapes) => {
                let hint = match self.ctx.declared {
                    Some(_) => format!("keep it under {}", self.root.display()),
                    None => format!(
                        "keep it under {}, or declare a wider build context: `context = \"..\"`",
                        self.root.display()
                    ),
                };
                self.diags.push(
                    Diagnostic::new(
                        Code::PathEscapes,
                        format!("{what} `{text}` is outside {}", self.root_name()),
                    )
                    .at(span)
                    .hint(hint),
                );
                None
            }
            Err(Outside::Missing) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::PathNotFound,
                        format!("{what} `{text}` does not exist"),
                    )
                    .at(span)
                    .label(format!("looked for {}", self.root.join(text).display())),
                );
                None
            }
        }
    }

    /// A template that reads the variable behind a secret puts its value in a command, an
    /// image name or a label: in the output, the plan and the report, unredacted.
    fn secret_variables_in_templates(
        &mut self,
        declared: &BTreeMap<Str, raw::Secret>,
        secrets: &BTreeMap<String, SecretSource>,
    ) {
        let mut seen = BTreeSet::new();
        for read in self.t.env_reads() {
            for (name, source) in secrets {
                if source != &SecretSource::Env(read.name.clone())
                    || !seen.insert((read.span.start, read.span.end, name.clone()))
                {
                    continue;
                }
                let mut d = Diagnostic::new(
                    Code::SecretInTemplate,
                    format!(
                        "the template reads `{}`, the variable of secret `{name}`: its value would \
                         show in the output, the plan and the report",
                        read.name
                    ),
                )
                .at(read.span.clone())
                .label(format!("reads secret `{name}`"))
                .hint(format!(
                    "list the secret in the step, `secrets = [\"{name}\"]`, and read \
                     `/run/secrets/{name}` in the command"
                ));
                let declaration = declared
                    .iter()
                    .find(|(k, _)| k.get_ref() == name)
                    .and_then(|(_, s)| s.env.as_ref());
                if let Some(env) = declaration {
                    d = d.also(
                        env.span(),
                        format!("secret `{name}` is read from `{}`", read.name),
                    );
                }
                self.diags.push(d);
            }
        }
    }

    /// A secret file is read when apply starts: it must be a regular file of bounded size (a
    /// FIFO would block the run, a device would never end).
    fn secret_file(
        &mut self,
        text: &str,
        path: PathBuf,
        span: std::ops::Range<usize>,
    ) -> Option<PathBuf> {
        let checked = std::fs::metadata(&path)
            .and_then(|m| crate::fsread::check(&m, crate::fsread::SECRET_LIMIT));
        match checked {
            Ok(()) => Some(path),
            Err(e) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::InvalidSecretFile,
                        format!("secret file `{text}`: {e}"),
                    )
                    .at(span)
                    .hint(format!(
                        "a secret file is a regular file of at most {}",
                        crate::fsread::size(crate::fsread::SECRET_LIMIT)
                    )),
                );
                None
            }
        }
    }

    fn commit(&mut self, c: &raw::Commit) -> Commit {
        let author = c.author.as_ref().and_then(|a| self.text(a));
        let message = c.message.as_ref().and_then(|m| self.text(m));
        let mut tags = Vec::new();
        if let Some(list) = &c.tags {
            if list.get_ref().is_empty() {
                self.empty_tags(list.span(), "commit.tags");
            }
            for (t, text) in self.tag_texts(list.get_ref()) {
                match ImageRef::parse(&text) {
                    Ok(r) => {
                        self.reserved(&r, t.span());
                        let r = r.with_default_tag();
                        self.note_written(&r, false, t.span());
                        tags.push(r);
                    }
                    Err(e) => self.error(Code::InvalidReference, e, t.span()),
                }
            }
        }
        let config = self.config(&c.config);
        Commit {
            author,
            message,
            tags,
            config,
        }
    }

    /// The tags of a list as rendered: a tag written as one list variable (`"{{ versions }}"`)
    /// gives one tag per item, and a tag that renders empty (a condition that does not hold) is
    /// left out. Each with the string it comes from.
    fn tag_texts<'s>(&mut self, list: &'s [Str]) -> Vec<(&'s Str, String)> {
        let mut out = Vec::new();
        for t in list {
            if let Some(items) = self.t.list(t) {
                out.extend(items.into_iter().map(|i| (t, i)));
            } else if let Some(text) = self.text(t) {
                out.push((t, text));
            }
        }
        out.retain(|(_, text)| !text.trim().is_empty());
        out
    }

    fn note_written(&mut self, r: &ImageRef, published: bool, span: std::ops::Range<usize>) {
        self.written.push(Written {
            reference: r.clone(),
            published,
            span,
            line: 0,
        });
    }

    fn empty_tags(&mut self, span: std::ops::Range<usize>, key: &str) {
        self.diags.push(
            Diagnostic::new(Code::EmptyTags, format!("`{key}` is empty"))
                .at(span)
                .hint("list at least one tag, or remove the key"),
        );
    }

    fn config(&mut self, c: &raw::ImageConfig) -> ConfigChanges {
        let shell: Option<Vec<String>> = c.shell.as_ref().map(|sh| {
            sh.get_ref()
                .iter()
                .filter_map(|a| self.t.str(a).ok())
                .collect()
        });
        let cmd = c.cmd.as_ref().and_then(|x| self.config_command(x, &shell));
        let entrypoint = c
            .entrypoint
            .as_ref()
            .and_then(|x| self.config_command(x, &shell));
        let env = self.config_env(c);
        let labels = self.labels(c);
        let expose = self.expose(c);
        let user = c.user.as_ref().and_then(|u| self.text(u));
        let workdir = c.workdir.as_ref().and_then(|w| self.absolute(w));
        let volumes = c
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| self.absolute(v))
            .collect();
        let healthcheck = c.healthcheck.as_ref().and_then(|h| self.healthcheck(h));
        let stop_signal = c.stop_signal.as_ref().and_then(|s| {
            let text = self.text(s)?;
            match signal(&text) {
                Ok(sig) => Some(sig),
                Err(e) => {
                    self.diags
                        .push(Diagnostic::new(Code::InvalidSignal, e).at(s.span()).hint(
                        "write a signal name such as \"SIGTERM\" or \"SIGQUIT\", or a number 1-64",
                    ));
                    None
                }
            }
        });
        let shell = c.shell.as_ref().and_then(|sh| {
            let list: Vec<String> = sh.get_ref().iter().filter_map(|a| self.text(a)).collect();
            if list.first().is_none_or(|a| a.is_empty()) {
                self.error(Code::EmptyCommand, "the shell is empty", sh.span());
                return None;
            }
            Some(list)
        });
        let onbuild = c.onbuild.as_ref().map(|list| {
            list.iter()
                .filter_map(|i| {
                    let text = self.text(i)?;
                    match onbuild_instruction(&text) {
                        Ok(()) => Some(text),
                        Err(e) => {
                            self.diags.push(
                                Diagnostic::new(Code::InvalidOnbuild, e)
                                    .at(i.span())
                                    .hint("write a Dockerfile instruction such as \"RUN make\" or \"COPY . /app\""),
                            );
                            None
                        }
                    }
                })
                .collect()
        });
        ConfigChanges {
            cmd,
            entrypoint,
            env,
            labels,
            expose,
            user,
            workdir,
            volumes,
            healthcheck,
            stop_signal,
            shell,
            onbuild,
        }
    }

    /// The committed `env`; `$VAR` in it expands against the base's env at apply time.
    fn config_env(&mut self, c: &raw::ImageConfig) -> BTreeMap<String, String> {
        let env = c.env.as_ref().map(|m| self.env_map(m)).unwrap_or_default();
        for (k, v) in c.env.iter().flatten() {
            let Some(text) = env.get(k.get_ref()) else {
                continue;
            };
            if let Err(e) = crate::model::env::expand(text, &[]) {
                self.diags.push(
                Diagnostic::new(Code::InvalidEnvValue, e.0)
                    .at(v.span())
                    .hint("write `$NAME` or `${NAME}` (`${NAME:-default}`, `${NAME:+alt}`), and `\\$` for a literal `$`"),
            );
            }
        }
        env
    }

    fn labels(&mut self, c: &raw::ImageConfig) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for (k, v) in c.labels.iter().flatten() {
            if k.get_ref().is_empty() {
                self.error(Code::InvalidLabel, "a label name cannot be empty", k.span());
            }
            if let Some(v) = self.text(v) {
                labels.insert(k.get_ref().clone(), v);
            }
        }
        labels
    }

    fn expose(&mut self, c: &raw::ImageConfig) -> Vec<String> {
        let mut expose = Vec::new();
        for p in c.expose.iter().flatten() {
            match port(p.get_ref()) {
                Ok(p) => expose.push(p),
                Err(e) => self.diags.push(
                    Diagnostic::new(Code::InvalidPort, e)
                        .at(p.span())
                        .hint("write a port 1-65535, optionally with /tcp or /udp"),
                ),
            }
        }
        expose
    }

    /// `cmd` or `entrypoint`: an array as is; a string in the shell form of a Dockerfile,
    /// with `shell` (the file's), else `/bin/sh -c`.
    fn config_command(
        &mut self,
        c: &toml::Spanned<raw::RunSpec>,
        shell: &Option<Vec<String>>,
    ) -> Option<Vec<String>> {
        match c.get_ref() {
            raw::RunSpec::Shell(s) => {
                let text = self.render(s, c.span())?;
                let mut argv = match shell {
                    Some(sh) if !sh.is_empty() => sh.clone(),
                    _ => vec!["/bin/sh".to_string(), "-c".to_string()],
                };
                argv.push(text);
                Some(argv)
            }
            raw::RunSpec::Exec(v) => v.iter().map(|a| self.render(a, c.span())).collect(),
        }
    }

    fn render(&mut self, text: &str, span: std::ops::Range<usize>) -> Option<String> {
        self.t
            .render(text, span)
            .map_err(|d| self.diags.push(d))
            .ok()
    }

    fn healthcheck(&mut self, h: &raw::Healthcheck) -> Option<Healthcheck> {
        let test = match h.test.get_ref() {
            raw::RunSpec::Shell(s) => {
                let text = self
                    .t
                    .render(s, h.test.span())
                    .map_err(|d| self.diags.push(d))
                    .ok()?;
                if text.trim().eq_ignore_ascii_case("none") {
                    vec!["NONE".to_string()]
                } else if text.trim().is_empty() {
                    self.error(
                        Code::EmptyCommand,
                        "the health check is empty",
                        h.test.span(),
                    );
                    return None;
                } else {
                    vec!["CMD-SHELL".to_string(), text]
                }
            }
            raw::RunSpec::Exec(v) => {
                let written: Vec<String> = v
                    .iter()
                    .map(|a| self.render(a, h.test.span()))
                    .collect::<Option<_>>()?;
                // Compose's form names the kind first; without it, the array is the command.
                let argv = match written.first().map(String::as_str) {
                    Some("NONE") if written.len() == 1 => written,
                    Some("CMD-SHELL") if written.len() > 1 => {
                        vec!["CMD-SHELL".to_string(), written[1..].join(" ")]
                    }
                    Some("CMD" | "CMD-SHELL") => written,
                    _ => std::iter::once("CMD".to_string()).chain(written).collect(),
                };
                if argv[0] != "NONE" && argv.get(1).is_none_or(|a| a.is_empty()) {
                    self.error(
                        Code::EmptyCommand,
                        "the health check is empty",
                        h.test.span(),
                    );
                    return None;
                }
                argv
            }
        };
        let interval = h.interval.as_ref().and_then(|d| self.duration(d));
        let timeout = h.timeout.as_ref().and_then(|d| self.duration(d));
        let start_period = h.start_period.as_ref().and_then(|d| self.duration(d));
        let retries = h
            .retries
            .as_ref()
            .and_then(|r| match u32::try_from(*r.get_ref()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        Code::InvalidValue,
                        format!("`retries` must be 0 or more, not {}", r.get_ref()),
                        r.span(),
                    );
                    None
                }
            });
        Some(Healthcheck {
            test,
            interval,
            timeout,
            start_period,
            retries,
        })
    }

    /// `[[publish]]` targets.
    fn publish(&mut self, targets: &[raw::Publish]) -> Vec<Target> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for p in targets {
            let repository = p.repository.as_ref().and_then(|r| {
                self.platform_in_publish(r);
                let parsed = self.reference(r)?;
                self.reserved(&parsed, r.span());
                self.published.push((parsed.clone(), r.span()));
                if parsed.tag.is_some() || parsed.digest.is_some() {
                    self.diags.push(
                        Diagnostic::new(
                            Code::TagInRepository,
                            format!("`{parsed}` names a tag or digest"),
                        )
                        .at(r.span())
                        .hint("give the repository alone and list tags under `tags`"),
                    );
                }
                Some(parsed)
            });
            let listed = p.tags.as_ref();
            if let Some(list) = listed.filter(|l| l.get_ref().is_empty()) {
                self.empty_tags(list.span(), "publish.tags");
            }
            let mut tags = Vec::new();
            let written = listed.map(|l| l.get_ref().as_slice()).unwrap_or_default();
            for t in written {
                self.platform_in_publish(t);
            }
            for (t, text) in self.tag_texts(written) {
                if let Err(e) = reference::validate_tag(&text) {
                    self.error(Code::InvalidTag, e, t.span());
                    continue;
                }
                if let Some(r) = &repository {
                    let mut target = r.clone();
                    target.tag = Some(text.clone());
                    target.digest = None;
                    self.note_written(&target, true, t.span());
                    if !seen.insert((r.repository(), text.clone())) {
                        self.diags.push(
                            Diagnostic::new(
                                Code::DuplicateTarget,
                                format!("`{}:{text}` is published twice", r.repository()),
                            )
                            .at(t.span())
                            .hint("remove one of the two"),
                        );
                    }
                }
                tags.push(text);
            }
            let login = self.login(&p.username, &p.password_env);
            // Every tag rendered empty (`{% if branch == "main" %}latest{% endif %}`):
            // nothing to push there.
            if tags.is_empty() && !written.is_empty() {
                continue;
            }
            if let Some(mut repository) = repository {
                repository.tag = None;
                repository.digest = None;
                out.push(Target {
                    repository,
                    tags,
                    login,
                });
            }
        }
        out
    }

    /// Refuses a name in a repository only the tool tags images in: a `pipeline-cache:KEY`
    /// tag would plant a step cache entry that another pipeline's apply takes for its own.
    fn reserved(&mut self, r: &ImageRef, span: std::ops::Range<usize>) {
        if let Some(repository) = r.reserved() {
            let what = match repository {
                reference::CACHE_REPOSITORY => "the step cache",
                _ => "the images `apply --keep-failed` keeps",
            };
            self.diags.push(
                Diagnostic::new(
                    Code::ReservedName,
                    format!(
                        "`{r}` is in `{repository}`, which only the tool writes: it holds {what}"
                    ),
                )
                .at(span)
                .label("a name the tool reserves")
                .hint("name the image in a repository of your own, e.g. `myapp:1.0`"),
            );
        }
    }

    /// Refuses a `[[publish]]` into the remote step cache: its tags are cache keys that other
    /// applies import, so a published image there would be taken for a cache entry.
    fn publish_into_cache(&mut self, cache: &ImageRef) {
        let into: Vec<_> = self
            .published
            .iter()
            .filter(|(r, _)| r.same_repository(cache))
            .map(|(r, span)| (r.repository(), span.clone()))
            .collect();
        for (repository, span) in into {
            self.diags.push(
                Diagnostic::new(
                    Code::PublishIntoCache,
                    format!("`{repository}` is the remote step cache (`[cache] remote`)"),
                )
                .at(span)
                .label("the cache's repository")
                .hint(
                    "publish to another repository: only `apply` writes the cache, under its keys",
                ),
            );
        }
    }

    /// Refuses a publish repository or tag that reads `platform` when the pipeline is built
    /// for several platforms: every tag is one index of all of them, so a name that depends
    /// on the platform cannot name it.
    fn platform_in_publish(&mut self, s: &Str) {
        if self.multi_platform && self.t.reads(s.get_ref(), "platform") {
            self.diags.push(
                Diagnostic::new(
                    Code::PlatformInPublish,
                    "a publish target of a pipeline built for several platforms reads `platform`",
                )
                .at(s.span())
                .label("depends on the platform")
                .hint(
                    "each tag becomes one index of every platform's image: name it without \
                     `platform`; to publish one platform's image alone, apply with `--platform OS/ARCH`",
                ),
            );
        }
    }

    fn secrets(&mut self, secrets: &BTreeMap<Str, raw::Secret>) -> BTreeMap<String, SecretSource> {
        let mut out = BTreeMap::new();
        for (spanned, s) in secrets {
            let name = spanned.get_ref();
            if !is_env_name(name) {
                self.diags.push(
                    Diagnostic::new(
                        Code::InvalidSecretName,
                        format!("secret name `{name}` must use letters, digits and `_`"),
                    )
                    .at(spanned.span()),
                );
            }
            let source = match (&s.env, &s.file) {
                (Some(e), None) => self.text(e).map(SecretSource::Env),
                (None, Some(f)) => {
                    let text = self.text(f);
                    text.and_then(|t| {
                        let path = self.host_path(&t, f.span(), "secret file")?;
                        self.secret_file(&t, path, f.span())
                    })
                    .map(SecretSource::File)
                }
                (Some(e), Some(_)) => {
                    self.error(
                        Code::SecretSource,
                        format!("secret `{name}` has both `env` and `file`"),
                        e.span(),
                    );
                    None
                }
                (None, None) => {
                    self.diags.push(
                        Diagnostic::new(
                            Code::SecretSource,
                            format!("secret `{name}` has neither `env` nor `file`"),
                        )
                        .at(spanned.span())
                        .hint("add `env = \"VARIABLE\"` or `file = \"path\"`"),
                    );
                    None
                }
            };
            if let Some(source) = source {
                out.insert(name.clone(), source);
            }
        }
        out
    }
}

/// Where secrets are placed while a step runs (a tmpfs of the build container).
const SECRETS_DIR: &str = "/run/secrets";

/// What keeps an absolute path from being plain: a NUL byte, `//`, a `.` or `..` segment (a
/// final `/` is fine).
fn path_problem(text: &str) -> Option<&'static str> {
    if text.contains('\0') {
        return Some("a NUL byte");
    }
    if text == "/" {
        return None;
    }
    let inner = text[1..].strip_suffix('/').unwrap_or(&text[1..]);
    inner.split('/').find_map(|part| match part {
        "" => Some("`//`"),
        "." => Some("a `.` segment"),
        ".." => Some("a `..` segment"),
        _ => None,
    })
}

/// What is wrong with a duration, in this tool's words (not the parser's).
fn duration_problem(e: &humantime::DurationError) -> String {
    use humantime::DurationError::*;
    match e {
        InvalidCharacter(at) => format!("unexpected character at position {}", at + 1),
        NumberExpected(at) => format!("a number is expected at position {}", at + 1),
        UnknownUnit { unit, .. } => format!(
            "unknown unit `{unit}` (use ms, s, m, h or d: e.g. `500ms`, `90s`, `10m`, `1h 30m`)"
        ),
        NumberOverflow => "the number is too large".into(),
        Empty => "it is empty".into(),
    }
}

/// A stop signal as the engine takes it: `SIGNAME`, `NAME` or a number 1-64; returned as
/// written (names upper-cased with the `SIG` prefix).
fn signal(text: &str) -> Result<String, String> {
    const NAMES: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
    ];
    let t = text.trim();
    if let Ok(n) = t.parse::<u32>() {
        return if (1..=64).contains(&n) {
            Ok(n.to_string())
        } else {
            Err(format!("`{t}` is not a signal number (1-64)"))
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = name
        .strip_prefix("RTMIN")
        .or_else(|| name.strip_prefix("RTMAX"))
        .is_some_and(|r| r.is_empty() || r.trim_start_matches(['+', '-']).parse::<u8>().is_ok());
    if NAMES.contains(&name) || realtime {
        Ok(format!("SIG{name}"))
    } else {
        Err(format!("`{t}` is not a signal name"))
    }
}

/// An `ONBUILD` instruction: a Dockerfile instruction other than `ONBUILD`, `FROM` and
/// `MAINTAINER`, which Docker refuses there.
fn onbuild_instruction(text: &str) -> Result<(), String> {
    const KNOWN: &[&str] = &[
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "HEALTHCHECK",
        "LABEL",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    let word = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match word.as_str() {
        "" => Err("the instruction is empty".into()),
        "ONBUILD" | "FROM" | "MAINTAINER" => Err(format!("`{word}` is not allowed in ONBUILD")),
        w if KNOWN.contains(&w) && text.split_whitespace().nth(1).is_some() => Ok(()),
        w if KNOWN.contains(&w) => Err(format!("`{text}` has no arguments")),
        _ => Err(format!(
            "`{text}` does not start with a Dockerfile instruction"
        )),
    }
}

/// A POSIX-style environment variable name.
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn port(p: &raw::PortSpec) -> Result<String, String> {
    let (num, proto) = match p {
        raw::PortSpec::Number(n) => (n.to_string(), "tcp"),
        raw::PortSpec::Text(t) => match t.split_once('/') {
            Some((n, proto)) => (n.to_string(), proto),
            None => (t.clone(), "tcp"),
        },
    };
    let ok_num = num.parse::<u16>().is_ok_and(|n| n > 0);
    if !ok_num || !["tcp", "udp", "sctp"].contains(&proto) {
        return Err(format!(
            "`{}` is not a valid port",
            match p {
                raw::PortSpec::Number(n) => n.to_string(),
                raw::PortSpec::Text(t) => t.clone(),
            }
        ));
    }
    Ok(format!("{num}/{proto}"))
}

/// The name of a step without `name`: the first line of its command or copy, as written in the
/// file. Never the rendered text: a template may read an environment variable or a `--var`, and
/// the name is shown in logs and the image history.
fn default_name(s: &raw::Step) -> String {
    let text = match (&s.run, &s.copy) {
        (Some(run), _) => match run.get_ref() {
            raw::RunSpec::Shell(s) => s.clone(),
            raw::RunSpec::Exec(v) => v.join(" "),
        },
        (None, Some(c)) => format!(
            "copy {} -> {}",
            c.src
                .as_ref()
                .map_or(String::new(), |s| s.get_ref().as_slice().join(", ")),
            c.dest.as_ref().map_or("", |d| d.get_ref())
        ),
        (None, None) => String::new(),
    };
    let line = text.lines().next().unwrap_or_default().trim();
    if line.chars().count() > 48 {
        format!("{}…", line.chars().take(47).collect::<String>())
    } else {
        line.to_string()
    }
}

/// The file name without `.toml`; for a file named `pipeline.toml`, its folder's name.
fn default_pipeline_name(file: &Path, dir: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match dir.file_name() {
        Some(folder) if stem == "pipeline" => folder.to_string_lossy().into_owned(),
        _ => stem,
    }
}

/// An absolute path with `.`, `..` and empty segments resolved as the engine would; it keeps
/// a final `/` (which a final `.` or `..` also means).
fn plain_path(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    let folder = text.ends_with('/') || text.ends_with("/.") || text.ends_with("/..");
    match (parts.is_empty(), folder) {
        (true, _) => "/".to_string(),
        (false, true) => format!("/{}/", parts.join("/")),
        (false, false) => format!("/{}", parts.join("/")),
    }
}
