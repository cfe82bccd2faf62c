//! Reading what the engine and registries hold for a pipeline, without changing anything: the
//! one observation that `apply` acts on and `plan` reports, so the two cannot disagree. Both
//! read in the same order with the same rules ([`Look`]): the remote cache is opened, the base
//! is found ([`base`]), the steps' inputs are read and their keys computed, and the cache is
//! looked up ([`cache`], [`lookup`]). `plan` then also reads what explains a miss and what the
//! publish targets hold ([`plan`], [`publish`]); `apply` acts between the steps (it pulls a
//! base that must be pulled before the lookup) and after them.

mod base;
mod held;
mod index;
mod keys;
mod lock;
mod needs;
mod pins;
mod planning;
mod publish;
mod scratch;
mod unused;

use crate::credentials;
use crate::engine::{same_workdir, Engine, EngineError, ImageConfig, CACHE_REPOSITORY};
use crate::plan::{self, Hit, RemoteHit, Resume};
use crate::registry::{RemoteCache, RemoteImage};

pub(crate) use base::{base, BaseSeen};
pub(crate) use held::held;
pub(crate) use keys::{cache, inputs, Cached};
pub(crate) use lock::{entry as lock_entry, seen as lock_seen};
pub(crate) use needs::missing;
pub(crate) use planning::{plan, PlanOptions};
pub(crate) use publish::publish_tags;
pub(crate) use scratch::ensure_scratch;

pub(crate) use index::{digests_in, plan_index};
pub(crate) use pins::{resolve_bases, BuildBaseError};
pub(crate) use unused::unused;

/// How the engine and the registries are read: the same rules for `plan` and `apply`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Look {
    /// `--no-cache`: no cache is read, the engine's or the remote one; the remote cache is not
    /// opened (so `apply` does not write it either) and no base id is read from a registry.
    pub(crate) no_cache: bool,
    /// `plan --offline`: no registry is asked and no credential is read; only the engine.
    pub(crate) offline: bool,
}

/// Why what a pipeline needs could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObserveError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("step {index} `{name}`: cannot read the copy source: {source}")]
    CopySource {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
}

/// The remote cache and what its entries must look like to be trusted.
pub(crate) struct Remote<'a> {
    pub(crate) cache: &'a RemoteCache,
    /// The base image's layer diff ids: every entry's layers start with them.
    pub(crate) base_layers: &'a [String],
    /// The config the commit makes: the final entry has it.
    pub(crate) final_config: &'a ImageConfig,
}

/// True when an entry's image can be what the key says: it extends the base and, for the final
/// image, carries the config the commit would make. A foreign or corrupt entry is a miss.
fn trusted(remote: &Remote<'_>, entry: &RemoteImage, last: bool) -> bool {
    if remote.base_layers.is_empty() || !entry.layers.starts_with(remote.base_layers) {
        return false;
    }
    if !last {
        return true;
    }
    carries(remote.final_config, &entry.config)
}

/// Whether an image's config `got` is the config `want` a commit makes, as the engine stores
/// it: an unset command or entrypoint may be stored as an empty list (the tool's commit on a
/// base with neither stores `[]`, which runs the same), and every env entry, label, port and
/// volume asked is there.
fn carries(want: &ImageConfig, got: &ImageConfig) -> bool {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    list(&want.cmd) == list(&got.cmd)
        && list(&want.entrypoint) == list(&got.entrypoint)
        && want.user == got.user
        && same_workdir(&want.workdir, &got.workdir)
        && want.env.iter().all(|e| got.env.contains(e))
        && want
            .labels
            .iter()
            .all(|(k, v)| got.labels.get(k) == Some(v))
        && want
            .exposed_ports
            .iter()
            .all(|p| got.exposed_ports.contains(p))
        && want.volumes.iter().all(|v| got.volumes.contains(v))
}

/// Finds the final image, or else the longest cached prefix of the steps: in the engine first,
/// then, for what the engine lacks, in the remote cache (newest key first), whose entries are
/// read without pulling and trusted only when they extend the base. Asks the engine for the few
/// tags it needs (about a millisecond each) rather than listing every cache image, which grows
/// with the cache; long pipelines list once instead of asking step by step.
pub(crate) async fn lookup<E: Engine>(
    engine: &E,
    keys: &[String],
    commit_key: &str,
    no_cache: bool,
    remote: Option<Remote<'_>>,
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
            remote: None,
        });
    }
    let mut local = Hit::default();
    if keys.len() > 8 {
        let cache = engine.list_cache().await?;
        local.resume = plan::resume(keys, &cache, false);
    } else {
        for (i, key) in keys.iter().enumerate().rev() {
            if let Some(image) = engine.inspect_image(&tag(key)).await? {
                local.resume = Resume {
                    steps_cached: i + 1,
                    image: Some(image.id),
                };
                break;
            }
        }
    }
    let Some(remote) = remote else {
        return Ok(local);
    };
    let hit = |key: &str, entry: RemoteImage| RemoteHit {
        key: key.to_string(),
        digest: entry.digest,
        id: entry.id,
    };
    if let Some(entry) = remote.cache.entry(commit_key).await {
        if trusted(&remote, &entry, true) {
            return Ok(Hit {
                resume: Resume {
                    steps_cached: keys.len(),
                    image: None,
                },
                image: Some(entry.id.clone()),
                remote: Some(hit(commit_key, entry)),
            });
        }
    }
    for (i, key) in keys.iter().enumerate().rev() {
        if i < local.resume.steps_cached {
            break;
        }
        let Some(entry) = remote.cache.entry(key).await else {
            if remote.cache.failure().is_some() {
                break;
            }
            continue;
        };
        if trusted(&remote, &entry, false) {
            return Ok(Hit {
                resume: Resume {
                    steps_cached: i + 1,
                    image: Some(entry.id.clone()),
                },
                image: None,
                remote: Some(hit(key, entry)),
            });
        }
    }
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_entry_carries_the_config_the_commit_stores() {
        let want = ImageConfig {
            cmd: Some(vec!["app".into()]),
            env: vec!["A=1".into()],
            ..Default::default()
        };
        // On a base with neither command nor entrypoint, the entrypoint is stored as `[]`.
        let stored = ImageConfig {
            entrypoint: Some(Vec::new()),
            env: vec!["PATH=/bin".into(), "A=1".into()],
            ..want.clone()
        };
        assert!(carries(&want, &stored));
        let neither = ImageConfig::default();
        let both_empty = ImageConfig {
            cmd: Some(Vec::new()),
            entrypoint: Some(Vec::new()),
            ..Default::default()
        };
        assert!(carries(&neither, &both_empty));
        for other in [
            ImageConfig {
                cmd: Some(vec!["sh".into()]),
                ..stored.clone()
            },
            ImageConfig {
                entrypoint: Some(vec!["/entry".into()]),
                ..stored.clone()
            },
            ImageConfig {
                env: Vec::new(),
                ..stored.clone()
            },
        ] {
            assert!(!carries(&want, &other), "{other:?}");
        }
    }
}
