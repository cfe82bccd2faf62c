//! The lock beside the pipeline files: with `--locked`, every base the files take from outside
//! the run is used at exactly its locked digest, and a missing or stale lock is refused;
//! without it, a lock present is only compared with the registries (`base moved`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::Engine;
use crate::error::CliError;
use crate::graph::Graph;
use crate::lockfile::{self, LockFile, Source};
use crate::model::{Base, Pipeline, Platform};
use crate::observe::Moved;
use crate::reference::ImageRef;

/// The bases the files take from outside the run (no pipeline of the run makes them), by
/// reference as written, with the pipelines that use each.
pub(crate) fn external_bases(pipelines: &[Pipeline], graph: &Graph) -> BTreeMap<String, Used> {
    let mut used: BTreeMap<String, Used> = BTreeMap::new();
    for (p, node) in pipelines.iter().zip(&graph.nodes) {
        if node.dependency.is_some() {
            continue;
        }
        used.entry(p.base.image.to_string())
            .or_insert_with(|| Used {
                base: p.base.clone(),
                by: Vec::new(),
            })
            .by
            .push(p.name.clone());
    }
    used
}

/// One base reference and the pipelines that use it.
#[derive(Debug, Clone)]
pub(crate) struct Used {
    pub(crate) base: Base,
    pub(crate) by: Vec<String>,
}

/// The lock of `files` and where it is (`None` for the lock when there is none).
pub(crate) fn read(files: &[PathBuf]) -> Result<(PathBuf, Option<LockFile>), CliError> {
    let path = lockfile::path_for(files).map_err(CliError::Lock)?;
    let lock = lockfile::read(&path).map_err(CliError::Lock)?;
    Ok((path, lock))
}

/// `--locked`: the lock must exist, have an entry for every base the files use and none
/// other.
pub(crate) fn check<'a>(
    path: &Path,
    lock: Option<&'a LockFile>,
    used: &BTreeMap<String, Used>,
) -> Result<&'a LockFile, CliError> {
    let shown = crate::diag::clean(&path.display().to_string());
    let Some(lock) = lock else {
        return Err(CliError::Lock(format!(
            "`{shown}` is missing: `--locked` uses the lock beside the pipeline files; run \
             `pipeline lock` and commit `{shown}`"
        )));
    };
    let mut problems = Vec::new();
    for (reference, u) in used {
        if lock.entry(reference).is_none() {
            problems.push(format!(
                "`{shown}` has no entry for base `{reference}` (used by {}): run `pipeline lock` \
                 to add it",
                u.by.join(", ")
            ));
        }
    }
    for b in &lock.bases {
        if !used.contains_key(&b.reference) {
            problems.push(format!(
                "`{shown}` is stale: its entry for `{}` is the base of no pipeline: run \
                 `pipeline lock` to drop it",
                b.reference
            ));
        }
    }
    if problems.is_empty() {
        Ok(lock)
    } else {
        Err(CliError::Lock(problems.join("\n")))
    }
}

/// Points every build whose base comes from outside the run at the locked image of its
/// platform (the build's, else the engine's): `repo@MANIFEST` for a registry entry; an engine
/// entry must still be the engine's image under that reference.
pub(crate) async fn pin<E: Engine>(
    builds: &mut [Pipeline],
    graph: &Graph,
    lock: &LockFile,
    engine: &E,
) -> Result<(), CliError> {
    let engine_platform = engine.platform().await?;
    for (b, node) in builds.iter_mut().zip(&graph.nodes) {
        if node.dependency.is_some() {
            continue;
        }
        let reference = b.base.image.to_string();
        let Some(entry) = lock.entry(&reference) else {
            continue;
        };
        let platform = b.platform.clone().unwrap_or_else(|| Platform {
            os: engine_platform.0.clone(),
            arch: engine_platform.1.clone(),
            variant: None,
        });
        let Some(locked) = entry.for_platform(&platform) else {
            return Err(CliError::Lock(format!(
                "the lock has no image of `{reference}` for {platform} (`{}`): run `pipeline \
                 lock --update {reference}`",
                b.name
            )));
        };
        match (entry.source, &locked.manifest) {
            (Source::Registry, Some(manifest)) => {
                let pinned = format!("{}@{manifest}", b.base.image.repository());
                b.base.image = ImageRef::parse(&pinned)
                    .map_err(|why| CliError::Lock(format!("the lock's `{pinned}`: {why}")))?;
            }
            _ => {
                let now = engine.inspect_image(&reference).await?.map(|i| i.id);
                if now.as_deref() != Some(locked.config.as_str()) {
                    return Err(CliError::Lock(format!(
                        "base `{reference}` is locked to the engine's image {}, and the engine \
                         holds {}: load that image, or run `pipeline lock --update {reference}`",
                        locked.config,
                        now.as_deref().unwrap_or("none under that name")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The lock's entries whose base now resolves elsewhere.
pub(crate) async fn moved<E: Engine>(
    lock: &LockFile,
    used: &BTreeMap<String, Used>,
    engine: &E,
) -> Vec<Moved> {
    let mut moved = Vec::new();
    for (reference, u) in used {
        if let Some(entry) = lock.entry(reference) {
            moved.extend(crate::observe::lock_moved(engine, &u.base, entry).await);
        }
    }
    moved
}
