//! The second part of an observation: the steps' inputs, their keys from the base, the config
//! the commit makes, and what the cache serves for those keys.

use super::{lookup, Look, ObserveError, Remote};
use crate::cache::StepInputs;
use crate::engine::{Engine, EngineError, ImageConfig, ImageInfo};
use crate::model::{final_config, Pipeline};
use crate::plan::{self, Hit};
use crate::registry::RemoteCache;

/// Reads every step's cache-relevant inputs (copy sources and mounted folders are hashed).
pub(crate) fn inputs(p: &Pipeline) -> Result<Vec<StepInputs>, ObserveError> {
    p.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            StepInputs::of(s).map_err(|source| ObserveError::CopySource {
                index: i + 1,
                name: s.name.clone(),
                source,
            })
        })
        .collect()
}

/// What the cache holds for a pipeline built on a known base.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    /// One key per step.
    pub(crate) keys: Vec<String>,
    /// The key of the committed image.
    pub(crate) commit_key: String,
    /// The config the commit makes: the base's with the pipeline's changes.
    pub(crate) final_config: ImageConfig,
    pub(crate) hit: Hit,
}

/// Computes the keys from `base` and looks them up: in the engine, then in `remote` (when
/// given and the base's layers are known, so that its entries can be checked).
pub(crate) async fn cache<E: Engine>(
    engine: &E,
    p: &Pipeline,
    look: Look,
    remote: Option<&RemoteCache>,
    base: &ImageInfo,
    inputs: &[StepInputs],
) -> Result<Cached, EngineError> {
    let (keys, commit_key) = plan::keys(p, inputs, &base.id);
    let final_config = final_config(&base.config, &p.commit.config);
    // A base known only by id (made by another pipeline of the run) has no layers to check
    // entries against: the remote cache is not consulted for it.
    let remote = remote
        .filter(|_| !base.layers.is_empty())
        .map(|cache| Remote {
            cache,
            base_layers: &base.layers,
            final_config: &final_config,
        });
    let hit = lookup(engine, &keys, &commit_key, look.no_cache, remote).await?;
    Ok(Cached {
        keys,
        commit_key,
        final_config,
        hit,
    })
}
