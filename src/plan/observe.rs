//! Reading what an engine holds, without changing anything: the one cache lookup that `apply`
//! acts on and `plan` reports, so the two cannot disagree.

use std::collections::HashMap;

use super::{Observed, Plan, Resume};
use crate::cache::{NoteStore, StepInputs};
use crate::credentials;
use crate::engine::{Engine, EngineError, CACHE_REPOSITORY};
use crate::model::Pipeline;

/// What the cache serves for a chain of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The longest cached prefix of the steps.
    pub(crate) resume: Resume,
    /// The final image, when nothing that goes into it changed.
    pub(crate) image: Option<String>,
}

/// Finds the final image, or else the longest cached prefix of the steps. Asks for the few
/// tags it needs (about a millisecond each) rather than listing every cache image, which grows
/// with the cache; long pipelines list once instead of asking step by step.
pub(crate) async fn lookup<E: Engine>(
    engine: &E,
    keys: &[String],
    commit_key: &str,
    no_cache: bool,
) -> Result<Hit, EngineError> {
    if no_cache {
        return Ok(Hit::default());
    }
    let tag = |key: &str| format!("{CACHE_REPOSITORY}:{key}");
    if let Some(image) = engine.inspect_image(&tag(commit_key)).await? {
        return Ok(Hit {
            resume: Resume {
                steps_cached: keys.len(),
                image: None,
            },
            image: Some(image.id),
        });
    }
    if keys.len() > 8 {
        let cache = engine.list_cache().await?;
        return Ok(Hit {
            resume: super::resume(keys, &cache, false),
            image: None,
        });
    }
    for (i, key) in keys.iter().enumerate().rev() {
        if let Some(image) = engine.inspect_image(&tag(key)).await? {
            return Ok(Hit {
                resume: Resume {
                    steps_cached: i + 1,
                    image: Some(image.id),
                },
                image: None,
            });
        }
    }
    Ok(Hit::default())
}

/// Why a pipeline could not be planned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObserveError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("step `{step}`: cannot read the copy source: {source}")]
    CopySource {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
}

/// How `plan` looks.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanOptions {
    /// Plan as if the cache were empty.
    pub(crate) no_cache: bool,
    /// Where apply recorded its checkpoint notes, which explain a miss.
    pub(crate) notes: Option<NoteStore>,
    /// Ask no registry and resolve no credentials: only the engine is read.
    pub(crate) offline: bool,
}

/// Reads what the engine and registries hold, without changing anything, and plans.
/// `known_base` is the base image id when another pipeline of the same apply makes it
/// (`Some(None)`: it makes a new one, not known yet).
pub(crate) async fn plan<E: Engine>(
    engine: &E,
    p: &Pipeline,
    opts: &PlanOptions,
    known_base: Option<Option<String>>,
) -> Result<Plan, ObserveError> {
    let no_cache = opts.no_cache;
    let base = match known_base {
        Some(id) => id,
        None => engine
            .inspect_image(&p.base.image.to_string())
            .await?
            .map(|b| b.id),
    };
    let inputs = p
        .steps
        .iter()
        .map(|s| {
            StepInputs::of(s).map_err(|source| ObserveError::CopySource {
                step: s.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut obs = Observed {
        base_id: base,
        no_cache,
        offline: opts.offline,
        ..Default::default()
    };
    let (keys, commit_key) = super::keys(p, &inputs, obs.base_id.as_deref());
    if let Some(commit_key) = &commit_key {
        obs.hit = lookup(engine, &keys, commit_key, no_cache).await?;
    }
    // A miss is explained by the notes of the images that held the first step to run.
    if !no_cache && obs.hit.image.is_none() && obs.base_id.is_some() {
        obs.cache = engine.list_cache().await?;
        if let Some(store) = &opts.notes {
            for sibling in super::siblings(&obs.hit.resume, obs.base_id.as_deref(), &obs.cache)
                .into_iter()
                .take(10)
            {
                if let Some(note) = store.read(&sibling.id) {
                    obs.notes.insert(sibling.id.clone(), note);
                }
            }
        }
    }
    if let Some(image) = &obs.hit.image {
        if let Ok(Some(info)) = engine.inspect_image(image).await {
            obs.local_digests = info.repo_digests;
        }
    }
    let mut remote = HashMap::new();
    // Offline, the publish targets (which the file chooses) are never contacted, and no
    // password or docker config credential is read for them.
    for t in p.publish.iter().filter(|_| !opts.offline) {
        let repository = t.repository.repository();
        let creds = credentials::resolve(t.repository.registry_host(), t.login.as_ref()).await?;
        for tag in &t.tags {
            match engine
                .remote_digest(&format!("{repository}:{tag}"), creds.clone())
                .await
            {
                Ok(digest) => {
                    remote.insert((repository.clone(), tag.clone()), digest);
                }
                Err(EngineError::Auth(_)) => {
                    obs.refused.insert((repository.clone(), tag.clone()));
                }
                Err(_) => {}
            }
        }
    }
    obs.remote = remote;
    Ok(super::build(p, &inputs, &obs))
}
