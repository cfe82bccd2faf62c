//! Reading what the engine and registries hold for a pipeline, without changing anything: the
//! one cache lookup that `apply` acts on and `plan` reports, so the two cannot disagree.

mod bases;
mod index;
mod unused;

use std::collections::HashMap;

use crate::cache::{NoteStore, StepInputs};
use crate::credentials;
use crate::engine::{same_workdir, Engine, EngineError, ImageConfig, ImageInfo, CACHE_REPOSITORY};
use crate::model::Pipeline;
use crate::plan::{self, Hit, Observed, Plan, RemoteHit, Resume};
use crate::registry::{Registry, RemoteCache, RemoteImage};

pub(crate) use bases::{resolve_bases, BuildBaseError};
pub(crate) use index::{digests_in, plan_index};
pub(crate) use unused::unused;

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
    let (want, got) = (remote.final_config, &entry.config);
    want.cmd == got.cmd
        && want.entrypoint == got.entrypoint
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

/// The platform the pipeline builds for: its own, else the engine's.
async fn build_platform<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<(String, String), EngineError> {
    match &p.platform {
        Some(pl) => Ok((pl.os.clone(), pl.arch.clone())),
        None => engine.platform().await,
    }
}

/// Opens the pipeline's remote cache, if it has one.
pub(crate) async fn open_remote<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<Option<RemoteCache>, ObserveError> {
    let Some(settings) = &p.cache_remote else {
        return Ok(None);
    };
    let host = settings.repository.registry_host();
    let creds = credentials::resolve(host, settings.login.as_ref()).await?;
    let (os, arch) = build_platform(engine, p).await?;
    Ok(Some(RemoteCache::new(
        settings.repository.repository(),
        host,
        settings.mode,
        creds,
        (&os, &arch),
    )))
}

/// The base image as its registry holds it, read without pulling: with a remote cache, a base
/// that is not in the engine (a fresh runner) still has an id, so the keys are known before any
/// pull and a fully cached pipeline never pulls it. `None` when it cannot be read that way.
pub(crate) async fn remote_base<E: Engine>(engine: &E, p: &Pipeline) -> Option<ImageInfo> {
    p.cache_remote.as_ref()?;
    if p.base.pull != crate::model::PullPolicy::Missing {
        return None;
    }
    let host = p.base.image.registry_host();
    let creds = credentials::resolve(host, p.base.login.as_ref())
        .await
        .ok()?;
    let (os, arch) = build_platform(engine, p).await.ok()?;
    let registry = Registry::new(host, creds.as_ref(), &os, &arch);
    let image = registry
        .image(&p.base.image.to_string())
        .await
        .ok()
        .flatten()?;
    Some(ImageInfo {
        id: image.id,
        config: image.config,
        layers: image.layers,
        ..Default::default()
    })
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
    // Offline, no registry is asked: not the remote cache either.
    let remote = if opts.offline {
        None
    } else {
        open_remote(engine, p).await?
    };
    let mut base = match known_base {
        Some(id) => id.map(|id| ImageInfo {
            id,
            ..Default::default()
        }),
        None => engine.inspect_image(&p.base.image.to_string()).await?,
    };
    let mut base_remote = false;
    if base.is_none() && !no_cache && !opts.offline {
        base = remote_base(engine, p).await;
        base_remote = base.is_some();
    }
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
        base_id: base.as_ref().map(|b| b.id.clone()),
        base_remote,
        no_cache,
        offline: opts.offline,
        ..Default::default()
    };
    let (keys, commit_key) = plan::keys(p, &inputs, obs.base_id.as_deref());
    if let Some(commit_key) = &commit_key {
        // A base known only by id (made by another pipeline of the apply) has no layers to
        // check entries against: the remote cache is not consulted for it.
        let final_config = base
            .as_ref()
            .map(|b| crate::model::final_config(&b.config, &p.commit.config))
            .unwrap_or_default();
        let with_remote = match (&remote, &base) {
            (Some(cache), Some(b)) if !b.layers.is_empty() => Some(Remote {
                cache,
                base_layers: &b.layers,
                final_config: &final_config,
            }),
            _ => None,
        };
        obs.hit = lookup(engine, &keys, commit_key, no_cache, with_remote).await?;
    }
    if let Some(cache) = &remote {
        obs.cache_remote = Some(plan::RemoteStatus {
            repository: cache.repository.clone(),
            mode: cache.mode,
            error: cache.failure().map(|e| e.to_string()),
        });
    }
    // A miss is explained by the notes of the images that held the first step to run.
    if !no_cache && obs.hit.image.is_none() && obs.base_id.is_some() {
        obs.cache = engine.list_cache().await?;
        if let Some(store) = &opts.notes {
            for sibling in plan::siblings(&obs.hit.resume, obs.base_id.as_deref(), &obs.cache)
                .into_iter()
                .take(10)
            {
                if let Some(note) = store.read(&sibling.id) {
                    obs.notes.insert(sibling.id.clone(), note);
                }
            }
        }
    }
    let mut image = None;
    if let Some(id) = &obs.hit.image {
        if let Ok(Some(info)) = engine.inspect_image(id).await {
            obs.local_digests = info.repo_digests.clone();
            image = Some(info);
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
                    if let (Some(info), Some(d)) = (&image, &digest) {
                        let published = engine
                            .is_published(info, &repository, d, creds.clone())
                            .await
                            .unwrap_or(false);
                        let entry = format!("{repository}@{d}");
                        if published && !obs.local_digests.contains(&entry) {
                            obs.local_digests.push(entry);
                        }
                    }
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
    Ok(plan::build(p, &inputs, &obs))
}
