//! The stages of [`super::prepare`] that check or adjust the builds without reading anything.

use super::CacheSettings;
use crate::engine::docker::DockerEngine;
use crate::engine::Engine;
use crate::error::CliError;
use crate::graph::Graph;
use crate::model::{Login, Pipeline, RemoteCache};

/// `--only NAME`: the pipeline named NAME, ready to run alone on any engine: the image it
/// builds on comes from the registry its producer publishes to.
pub(super) fn only(
    pipelines: &[Pipeline],
    graph: &Graph,
    name: &str,
) -> Result<Pipeline, CliError> {
    let found: Vec<usize> = (0..pipelines.len())
        .filter(|&i| pipelines[i].name == name)
        .collect();
    let i = match found.as_slice() {
        [i] => *i,
        [] => {
            let names: Vec<&str> = graph
                .order
                .iter()
                .map(|&i| pipelines[i].name.as_str())
                .collect();
            return Err(CliError::Usage(format!(
                "--only `{name}`: no pipeline has that name; the pipelines are: {}",
                names.join(", ")
            )));
        }
        several => {
            let files: Vec<String> = several.iter().map(|&i| graph.nodes[i].shown()).collect();
            return Err(CliError::Usage(format!(
                "--only `{name}`: several pipelines have that name ({}); give them distinct `name`s",
                files.join(", ")
            )));
        }
    };
    let mut p = pipelines[i].clone();
    if let Some(d) = &graph.nodes[i].dependency {
        let producer = &pipelines[d.producer].name;
        let Some(from) = &d.pull_from else {
            return Err(CliError::Usage(format!(
                "--only `{name}`: it builds on `{}`, which `{producer}` makes but publishes to no \
                 registry, so no other job can pull it; publish it (`[[publish]]`) or apply the \
                 pipelines together",
                d.reference
            )));
        };
        crate::schedule::pull_base(&mut p, d, from);
    }
    Ok(p)
}

/// Applies `--cache-remote` and `--cache-remote-mode` to every build (the file's credentials
/// and keys stay).
pub(super) fn remote_cache(builds: &mut [Pipeline], cache: &CacheSettings) {
    for p in builds {
        if let Some(repository) = &cache.remote {
            // The file's credentials and keys stay: who signs entries does not depend on
            // where they are kept.
            let file = p.cache_remote.take();
            p.cache_remote = Some(RemoteCache {
                repository: repository.clone(),
                login: file.as_ref().and_then(|c| c.login.clone()),
                mode: cache.mode,
                verify_key: file.as_ref().and_then(|c| c.verify_key),
                signing_key_env: file.and_then(|c| c.signing_key_env),
            });
        }
        if let Some(c) = &mut p.cache_remote {
            c.mode = cache.mode;
        }
    }
}

/// `--cache-remote REF` may not name a repository a pipeline publishes to: its tags are cache
/// keys that other applies import (a file's own `[cache] remote` is checked by validate).
pub(super) fn publish_into_cache<'a>(
    pipelines: impl Iterator<Item = &'a Pipeline>,
    cache: &CacheSettings,
) -> Result<(), CliError> {
    let Some(remote) = &cache.remote else {
        return Ok(());
    };
    for p in pipelines {
        if let Some(t) = p
            .publish
            .iter()
            .find(|t| t.repository.same_repository(remote))
        {
            return Err(CliError::Usage(format!(
                "--cache-remote `{remote}`: pipeline `{}` ({}) publishes to `{}`, the same \
                 repository; the cache's tags are keys other applies import, so publish to \
                 another repository or give the cache one of its own",
                p.name,
                p.shown(),
                t.repository.repository()
            )));
        }
    }
    Ok(())
}

/// Adds the `--output`s to the one pipeline of the run; with several, where each would
/// write is ambiguous: a usage error.
pub(super) fn outputs(
    pipelines: &mut [Pipeline],
    outputs: &[crate::model::Output],
) -> Result<(), CliError> {
    match pipelines {
        _ if outputs.is_empty() => Ok(()),
        [one] => {
            one.outputs.extend(outputs.iter().cloned());
            Ok(())
        }
        _ => Err(CliError::Usage(format!(
            "--output writes one pipeline's image, and {} pipelines are given: apply one (`--only NAME`), or use `[[output]]` in each file",
            pipelines.len()
        ))),
    }
}

/// Checks that every `password_env` variable is set, before anything runs; the publish
/// targets' only when `publish` (not for `--no-push`).
pub(super) fn passwords<'a>(
    pipelines: impl Iterator<Item = &'a Pipeline>,
    publish: bool,
) -> Result<(), CliError> {
    let logins = pipelines.flat_map(|p| {
        p.base
            .login
            .iter()
            .chain(
                p.publish
                    .iter()
                    .filter(move |_| publish)
                    .filter_map(|t| t.login.as_ref()),
            )
            .chain(p.cache_remote.iter().filter_map(|c| c.login.as_ref()))
    });
    let mut missing: Vec<Login> = Vec::new();
    // A multi-platform pipeline's builds share its logins: each is named once.
    for login in crate::credentials::missing_passwords(logins) {
        if !missing.contains(login) {
            missing.push(login.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::MissingPasswords(missing))
    }
}

/// A step's read-only mounts are folders of this host: an engine elsewhere cannot mount them.
/// Refused before anything runs.
pub(super) fn mounts_reachable(
    builds: &[Pipeline],
    engines: &[DockerEngine],
) -> Result<(), CliError> {
    let Some(remote) = engines.iter().find(|e| !e.is_local()) else {
        return Ok(());
    };
    let mounting = builds.iter().find_map(|p| {
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
