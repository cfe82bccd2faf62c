//! One file per subcommand: glue between the CLI, the library and the renderers. Commands
//! return how they ended; errors are rendered once, by [`crate::run`].

mod apply;
mod gc;
mod plan;
mod schema;
mod validate;

use std::path::PathBuf;

use crate::cli::{CacheRemoteMode, Cli, Command, VarArgs};
use crate::config::{self, Overrides};
use crate::engine::connect::{self, ConnectError};
use crate::engine::docker::DockerEngine;
use crate::error::{CliError, ExitStatus};
use crate::model::{Pipeline, RemoteCache, RemoteMode};
use crate::reference::ImageRef;
use crate::ui::Ui;

pub use schema::schema_json;

pub(crate) async fn dispatch(cli: Cli, ui: &Ui) -> Result<ExitStatus, CliError> {
    match cli.command {
        Command::Apply(args) => apply::run(args, ui).await,
        Command::Plan(args) => plan::run(args, ui).await,
        Command::Validate(args) => validate::run(args, ui),
        Command::Schema => schema::run(),
        Command::Gc(args) => gc::run(args, ui).await,
    }
}

fn overrides(v: &VarArgs) -> Overrides {
    Overrides {
        var_files: v.var_files.clone(),
        vars: v.vars.clone(),
        platforms: v.platforms.clone(),
        platform: None,
    }
}

/// Loads and validates every file (folders expanded): every problem of every file at once;
/// says which files a folder held that are not pipelines.
fn load_all(files: &[PathBuf], vars: &VarArgs, ui: &Ui) -> Result<Vec<Pipeline>, CliError> {
    let loaded = config::load_all(files, &overrides(vars)).map_err(CliError::Invalid)?;
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

/// One build per (pipeline, platform) (see [`crate::plan::platforms`]).
fn platform_builds(
    pipelines: Vec<Pipeline>,
    vars: &VarArgs,
) -> Result<(Vec<Pipeline>, Vec<crate::plan::platforms::Group>), CliError> {
    crate::plan::platforms::expand(pipelines, &overrides(vars)).map_err(CliError::Invalid)
}

/// Applies `--cache-remote` and `--cache-remote-mode` to every pipeline.
fn remote_cache(
    pipelines: &mut [Pipeline],
    remote: Option<&str>,
    mode: CacheRemoteMode,
) -> Result<(), CliError> {
    let remote = match remote {
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
    for p in pipelines {
        if let Some(repository) = &remote {
            let login = p.cache_remote.take().and_then(|c| c.login);
            p.cache_remote = Some(RemoteCache {
                repository: repository.clone(),
                login,
                mode: RemoteMode::ReadWrite,
            });
        }
        if let Some(c) = &mut p.cache_remote {
            c.mode = match mode {
                CacheRemoteMode::Read => RemoteMode::Read,
                CacheRemoteMode::Readwrite => RemoteMode::ReadWrite,
            };
        }
    }
    Ok(())
}

/// Checks that every `password_env` variable is set, before anything runs.
fn check_passwords(pipelines: &[Pipeline]) -> Result<(), CliError> {
    let logins = pipelines.iter().flat_map(|p| {
        p.base
            .login
            .iter()
            .chain(p.publish.iter().filter_map(|t| t.login.as_ref()))
            .chain(p.cache_remote.iter().filter_map(|c| c.login.as_ref()))
    });
    let missing = crate::credentials::missing_passwords(logins);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::MissingPasswords(
            missing.into_iter().cloned().collect(),
        ))
    }
}

/// A step's read-only mounts are folders of this host: an engine elsewhere cannot mount them.
/// Refused before anything runs.
fn mounts_reachable(pipelines: &[Pipeline], engines: &[DockerEngine]) -> Result<(), CliError> {
    use crate::engine::Engine;
    let Some(remote) = engines.iter().find(|e| !e.is_local()) else {
        return Ok(());
    };
    let mounting = pipelines.iter().find_map(|p| {
        p.steps
            .iter()
            .position(|s| !s.container.mounts.is_empty())
            .map(|i| (p, i))
    });
    match mounting {
        None => Ok(()),
        Some((p, i)) => Err(CliError::Usage(format!(
            "pipeline `{}`, step {} `{}`: `mounts` names folders of this host, which the engine \
             at `{}` does not run on and cannot mount; build on a local engine (a unix socket), \
             or copy the folder with a `copy` step",
            p.name,
            i + 1,
            p.steps[i].name,
            remote.endpoint()
        ))),
    }
}

/// Connects to the engines of `--engine` (or `DOCKER_HOST`, else the local socket); names
/// the ones left out because they do not answer.
async fn engines(urls: &[String], ui: &Ui) -> Result<Vec<DockerEngine>, CliError> {
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
