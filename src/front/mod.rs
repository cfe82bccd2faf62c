//! From a command's arguments to a prepared run, in one order for every command:
//!
//! 1. the files are loaded and checked (every problem of every file at once);
//! 2. the files' dependency graph is built (no cycles, one producer per base), and `--only`
//!    picks its pipeline;
//! 3. each pipeline becomes one build per platform, and the builds' graph is built;
//!
//! `validate` stops here: nothing so far reads an engine or the network. `plan` and `apply`
//! go on:
//!
//! 4. the cache settings of the command line are applied;
//! 5. every password variable is checked (`plan --offline` reads no credentials);
//! 6. the engines are connected;
//! 7. host folders are refused for an engine on another host;
//! 8. each platform's base is pinned by digest (`plan --offline`: not, it asks no registry).
//!
//! [`Settings`] is what the arguments mean, resolved once; [`prepare`] runs the stages.

mod checks;
pub(crate) mod locked;
pub(crate) mod platforms;

use std::path::PathBuf;

use crate::cli::{ApplyArgs, CacheArgs, CacheRemoteMode, FileArgs, PlanArgs, ValidateArgs};
use crate::config::{self, Overrides};
use crate::engine::connect::{self, ConnectError};
use crate::engine::docker::DockerEngine;
use crate::error::CliError;
use crate::execute::Options;
use crate::graph::{self, Graph};
use crate::lockfile::{Kind, LockSeen};
use crate::model::{Pipeline, RemoteMode};
use crate::plan::platforms::Group;
use crate::reference::ImageRef;
use crate::schedule;
use crate::ui::Ui;

/// How far a command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The files only: nothing reads an engine or the network (`validate`).
    Files,
    /// Engines connected and bases pinned (`plan`, `apply`).
    Engines,
}

/// What a command's arguments mean for loading and preparing its run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) reach: Reach,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) overrides: Overrides,
    /// `--only NAME`.
    pub(crate) only: Option<String>,
    pub(crate) cache: CacheSettings,
    /// `--engine` URLs (empty: `DOCKER_HOST`, else the local socket).
    pub(crate) engines: Vec<String>,
    /// False for `plan --offline`: no registry is asked and no credential is read.
    pub(crate) registries: bool,
    /// `--no-push`: nothing is pushed, so no publish password is needed and the remote
    /// cache is only read.
    pub(crate) no_push: bool,
    /// `--output`: added to the pipeline's `[[output]]` (one pipeline only).
    pub(crate) outputs: Vec<crate::model::Output>,
    /// `--locked`: the bases at exactly the lock's digests; no lock, or a stale one, is an
    /// error.
    pub(crate) locked: bool,
}

/// The step cache as the command line sets it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheSettings {
    /// `--no-cache`: the cache is not read (neither the engine's nor the remote one).
    pub(crate) no_cache: bool,
    /// `--cache-remote`: replaces every pipeline's `[cache] remote`.
    pub(crate) remote: Option<ImageRef>,
    /// `--cache-remote-mode`.
    pub(crate) mode: RemoteMode,
}

impl Settings {
    fn files(reach: Reach, files: &FileArgs) -> Self {
        Self {
            reach,
            files: files.files.clone(),
            overrides: Overrides {
                var_files: files.vars.var_files.clone(),
                vars: files.vars.vars.clone(),
                platforms: files.vars.platforms.clone(),
                platform: None,
                sets: files.vars.sets.clone(),
                variant: None,
            },
            only: None,
            cache: CacheSettings::default(),
            engines: Vec::new(),
            registries: true,
            no_push: false,
            outputs: Vec::new(),
            locked: false,
        }
    }

    /// `lock`: the files only (the command reads the bases itself).
    pub(crate) fn lock(args: &crate::cli::LockArgs) -> Self {
        Self::files(Reach::Files, &args.files)
    }

    /// `validate`: the files only.
    pub(crate) fn validate(args: &ValidateArgs) -> Self {
        Self::files(Reach::Files, &args.files)
    }

    /// `plan`: everything apply would read, without changing anything.
    pub(crate) fn plan(args: &PlanArgs) -> Result<Self, CliError> {
        Ok(Self {
            cache: CacheSettings::resolve(&args.cache)?,
            engines: args.engines.engines.clone(),
            registries: !args.offline,
            no_push: args.no_push,
            outputs: args.outputs.clone(),
            locked: args.locked,
            ..Self::files(Reach::Engines, &args.files)
        })
    }

    /// `apply`.
    pub(crate) fn apply(args: &ApplyArgs) -> Result<Self, CliError> {
        Ok(Self {
            only: args.only.clone(),
            cache: CacheSettings::resolve(&args.cache)?,
            engines: args.engines.engines.clone(),
            no_push: args.no_push,
            outputs: args.outputs.clone(),
            locked: args.locked,
            ..Self::files(Reach::Engines, &args.files)
        })
    }
}

impl Settings {
    /// How the engine and the registries are read.
    pub(crate) fn look(&self) -> crate::observe::Look {
        crate::observe::Look {
            no_cache: self.cache.no_cache,
            offline: !self.registries,
        }
    }
}

impl CacheSettings {
    fn resolve(args: &CacheArgs) -> Result<Self, CliError> {
        let remote = match &args.cache_remote {
            Some(r) => {
                let repository = ImageRef::parse(r)
                    .map_err(|e| CliError::Usage(format!("--cache-remote `{r}`: {e}")))?;
                if repository.tag.is_some() || repository.digest.is_some() {
                    return Err(CliError::Usage(format!(
                        "--cache-remote `{r}` names a tag or digest: give the repository alone"
                    )));
                }
                Some(repository)
            }
            None => None,
        };
        Ok(Self {
            no_cache: args.no_cache,
            remote,
            mode: match args.cache_remote_mode {
                CacheRemoteMode::Read => RemoteMode::Read,
                CacheRemoteMode::Readwrite => RemoteMode::ReadWrite,
            },
        })
    }
}

/// How `apply` runs the prepared builds on `engines` engines.
pub(crate) fn run_settings(
    args: &ApplyArgs,
    settings: &Settings,
    engines: usize,
) -> schedule::Settings {
    schedule::Settings {
        jobs: args
            .jobs
            .map_or_else(|| schedule::default_jobs(engines), |j| j as usize),
        fail_fast: !args.keep_going,
        options: Options {
            no_cache: settings.cache.no_cache,
            keep_failed: args.keep_failed,
            attempts: args.attempts,
            retry_delay: args.retry_delay,
            notes: crate::cache::NoteStore::user(),
            store: crate::image::store::BlobStore::user(),
            no_push: args.no_push,
        },
    }
}

/// A run ready to plan or apply.
pub(crate) struct Prepared {
    /// One build per (pipeline, platform), in command-line order.
    pub(crate) builds: Vec<Pipeline>,
    /// The multi-platform pipelines and their builds.
    pub(crate) groups: Vec<Group>,
    /// The builds' dependency graph.
    pub(crate) graph: Graph,
    /// The engines that answered (none for [`Reach::Files`]).
    pub(crate) engines: Vec<DockerEngine>,
    /// Each entry of the lock beside the files that the files use, beside what its reference
    /// resolves to now (a lock beside the files; `current` unknown offline).
    pub(crate) locks: Vec<LockSeen>,
    /// Each build's base reference as its file writes it (before `--locked` or its platform
    /// pinned it to a digest), in the order of `builds`.
    pub(crate) bases_written: Vec<String>,
}

impl Prepared {
    /// What the lock says of `reference` of `kind`, when it has an entry the files use.
    pub(crate) fn lock_seen(&self, kind: Kind, reference: &str) -> Option<LockSeen> {
        self.locks
            .iter()
            .find(|l| l.kind == kind && l.reference == reference)
            .cloned()
    }
}

/// A run refused before anything ran: the error, and the builds when the files were loaded
/// (for the report of a run that reached no engine).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: CliError,
    pub(crate) builds: Vec<Pipeline>,
}

impl From<CliError> for Refused {
    fn from(error: CliError) -> Self {
        Self {
            error,
            builds: Vec::new(),
        }
    }
}

/// Runs the stages of the module documentation, as far as `settings.reach`.
pub(crate) async fn prepare(settings: &Settings, ui: &Ui) -> Result<Prepared, Refused> {
    let pipelines = load(&settings.files, &settings.overrides, ui)?;
    let files_graph = graph::build(&pipelines).map_err(CliError::Graph)?;
    let used = locked::external(&pipelines, &files_graph);
    let mut pipelines = match &settings.only {
        Some(name) => vec![checks::only(&pipelines, &files_graph, name)?],
        None => pipelines,
    };
    checks::outputs(&mut pipelines, &settings.outputs)?;
    let (mut builds, groups) =
        platforms::expand(pipelines, &settings.overrides).map_err(CliError::Invalid)?;
    let graph = graph::build(&builds).map_err(CliError::Graph)?;
    let bases_written = builds.iter().map(|b| b.base.image.to_string()).collect();
    if settings.reach == Reach::Files {
        return Ok(Prepared {
            builds,
            groups,
            graph,
            engines: Vec::new(),
            locks: Vec::new(),
            bases_written,
        });
    }
    let cache = CacheSettings {
        mode: if settings.no_push {
            RemoteMode::Read
        } else {
            settings.cache.mode
        },
        ..settings.cache.clone()
    };
    checks::remote_cache(&mut builds, &cache);
    let published = groups.iter().map(|g| &g.pipeline);
    checks::publish_into_cache(builds.iter().chain(published), &settings.cache)?;
    if settings.registries {
        let published = groups.iter().map(|g| &g.pipeline);
        checks::passwords(builds.iter().chain(published), !settings.no_push)?;
    }
    let engines = match engines(&settings.engines, ui).await {
        Ok(e) => e,
        Err(error) => return Err(Refused { error, builds }),
    };
    checks::mounts_reachable(&builds, &engines)?;
    let locks = match engines.first() {
        Some(engine) => lock(settings, &used, &mut builds, &graph, engine).await?,
        None => Vec::new(),
    };
    // Each platform's build starts from the base's image for that platform.
    if let (true, Some(engine)) = (settings.registries, engines.first()) {
        crate::observe::resolve_bases(&mut builds, engine)
            .await
            .map_err(CliError::Bases)?;
    }
    Ok(Prepared {
        builds,
        groups,
        graph,
        engines,
        locks,
        bases_written,
    })
}

/// The lock beside the files: with `--locked`, checked and the builds pinned to it; each entry
/// the files use beside what its reference resolves to now (not asked offline).
async fn lock(
    settings: &Settings,
    used: &locked::External,
    builds: &mut [Pipeline],
    graph: &Graph,
    engine: &DockerEngine,
) -> Result<Vec<LockSeen>, CliError> {
    let read = locked::read(&settings.files);
    let lock = if settings.locked {
        let (path, lock) = read?;
        let checked = locked::check(&path, lock.as_ref(), used)?;
        locked::pin(builds, graph, checked, engine).await?;
        lock
    } else {
        // Without `--locked` a lock is only compared: files of several folders, or a lock
        // that cannot be read, have none to compare with.
        read.ok().and_then(|(_, lock)| lock)
    };
    Ok(match &lock {
        Some(lock) => locked::seen(lock, used, engine, settings.registries).await,
        None => Vec::new(),
    })
}

/// Loads and validates every file (folders expanded): every problem of every file at once;
/// says which files a folder held that are not pipelines.
fn load(files: &[PathBuf], overrides: &Overrides, ui: &Ui) -> Result<Vec<Pipeline>, CliError> {
    let loaded = config::load_all(files, overrides).map_err(CliError::Invalid)?;
    for s in &loaded.skipped {
        let file = crate::diag::clean(&s.file.display().to_string());
        ui.line(&format!("note: skipped `{file}`: {}", s.reason));
    }
    if loaded.pipelines.is_empty() {
        return Err(CliError::Usage(
            "no pipeline files (a folder needs `*.toml` files with a `[base]` table)".into(),
        ));
    }
    Ok(loaded.pipelines)
}

/// Connects to the engines of `--engine` (or `DOCKER_HOST`, else the local socket); names
/// the ones left out because they do not answer.
pub(crate) async fn engines(urls: &[String], ui: &Ui) -> Result<Vec<DockerEngine>, CliError> {
    match connect::connect_all(urls).await {
        Ok(c) => {
            for e in c.left_out {
                ui.error(&format!("{e} (this engine is left out)"));
            }
            Ok(c.engines)
        }
        Err(ConnectError::Usage(e)) => Err(CliError::Usage(e)),
        Err(ConnectError::NoEngine(e)) => Err(CliError::NoEngine(e)),
    }
}
