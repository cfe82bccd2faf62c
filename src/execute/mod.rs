//! Walks a pipeline against an engine: base, steps (with the cache and checkpoints), commit,
//! tags, pushes. Reports progress as [`Event`]s and never prints.

mod build;
pub(crate) mod index;
// The image the tool writes itself; the build hands it its layers once the apply flow is split
// into one file per operation.
#[allow(dead_code)]
pub(crate) mod layers;
pub(crate) mod leftovers;
mod locks;
mod output;
mod publish;
mod retry;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cache::{self, StepInputs};
use crate::credentials::{self, CredentialError};
use crate::engine::{Engine, EngineError, ImageConfig, ImageInfo, CACHE_REPOSITORY, DEFAULT_PATH};
use crate::events::{Event, Sink};
use crate::model::{ConfigChanges, Pipeline, PullPolicy, RemoteMode, SecretSource};
use crate::plan;
use crate::registry::RemoteCache;
use build::Build;
use publish::publish;
use retry::retry;

/// How apply behaves.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) no_cache: bool,
    /// Commit a failed step's container as a debug image instead of discarding it.
    pub(crate) keep_failed: bool,
    /// Attempts for a push or pull that fails with a transient error.
    pub(crate) attempts: u32,
    /// First retry delay; it doubles on each retry, up to 30 s, with jitter.
    pub(crate) retry_delay: Duration,
    /// Prefix of the names of every container this run creates.
    pub(crate) run_name: String,
    /// Where checkpoint notes are recorded for `plan`; `None`: nowhere.
    pub(crate) notes: Option<cache::NoteStore>,
}

/// An id for one run: microseconds and the process id, in hex.
pub(crate) fn run_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "{:x}{:04x}",
        micros & 0xff_ffff_ffff,
        std::process::id() & 0xffff
    )
}

/// How the names of build containers start.
pub(crate) const RUN_PREFIX: &str = "pipeline-";

/// The name prefix of a run's containers: `pipeline-<pipeline name>-<run id>`, the pipeline
/// name reduced to what a container name may hold.
pub(crate) fn run_name(pipeline: &str, run_id: &str) -> String {
    format!("{RUN_PREFIX}{}-{run_id}", engine_name(pipeline))
}

/// A pipeline name reduced to what the engine's names (containers, volumes) may hold: at most
/// 40 letters, digits, `_`, `.` and `-`, others replaced by `-`; `unnamed` when empty.
pub(crate) fn engine_name(pipeline: &str) -> String {
    let safe: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if safe.is_empty() {
        "unnamed".to_string()
    } else {
        safe
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("step {index} `{name}` failed with exit code {code}")]
    StepFailed {
        index: usize,
        name: String,
        code: i64,
        tail: Vec<String>,
    },
    #[error("step {index} `{name}` exceeded its timeout of {}", humantime::format_duration(*.timeout))]
    StepTimedOut {
        index: usize,
        name: String,
        timeout: Duration,
        tail: Vec<String>,
    },
    #[error("step {index} `{name}`: {source}")]
    StepEngine {
        index: usize,
        name: String,
        #[source]
        source: EngineError,
    },
    #[error("step {index} `{name}`: copy source: {source}")]
    CopySource {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("step {index} `{name}`: mounted folder: {source}")]
    MountSource {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("base image `{reference}` is not in the engine and `pull = \"never\"`")]
    BaseMissing {
        reference: String,
        /// The engine's command-line client (`docker`, `podman`), for the hint.
        cli: &'static str,
    },
    #[error("cannot pull base image `{reference}`: {source}")]
    Pull {
        reference: String,
        #[source]
        source: EngineError,
    },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("secret `{name}`: {detail}")]
    Secret { name: String, detail: String },
    #[error("cannot commit the image: {0}")]
    Commit(#[source] EngineError),
    #[error("push of `{repository}:{tag}` failed after {attempts} attempt(s): {source}")]
    Push {
        repository: String,
        tag: String,
        attempts: u32,
        #[source]
        source: Box<EngineError>,
        /// The committed image, kept in the engine.
        image: String,
        /// What reached a registry before the failure.
        pushed: Vec<Pushed>,
        /// The engine's command-line client (`docker`, `podman`), for the hint.
        cli: &'static str,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One tag in a registry.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Pushed {
    pub(crate) repository: String,
    pub(crate) tag: String,
    pub(crate) digest: String,
    pub(crate) attempts: u32,
    pub(crate) up_to_date: bool,
}

/// What a successful apply produced.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) image: String,
    pub(crate) tags: Vec<String>,
    pub(crate) pushed: Vec<Pushed>,
}

/// Applies a pipeline.
pub(crate) async fn apply<E: Engine>(
    engine: &E,
    p: &Pipeline,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Applied, ApplyError> {
    let secrets = secret_values(p).await?;
    let remote = plan::observe::open_remote(engine, p)
        .await
        .map_err(|e| match e {
            plan::observe::ObserveError::Credentials(c) => ApplyError::Credentials(c),
            plan::observe::ObserveError::Engine(e) => ApplyError::Engine(e),
            other => ApplyError::Engine(EngineError::Other(other.to_string())),
        })?;
    let remote = if opts.no_cache { None } else { remote };
    let mut warned = false;
    if let Some(r) = &remote {
        sink.event(Event::CacheRemote {
            repository: r.repository.clone(),
            mode: r.mode,
            unavailable: None,
        });
    }
    // On a fresh runner the base's id comes from its registry: no pull until one is needed.
    let mut base_local = true;
    let existing = engine.inspect_image(&p.base.image.to_string()).await?;
    let mut base = match (remote.as_ref(), existing) {
        (Some(_), None) => match plan::observe::remote_base(engine, p).await {
            Some(info) => {
                base_local = false;
                info
            }
            None => ensure_base(engine, p, None, opts, sink).await?,
        },
        (_, existing) => ensure_base(engine, p, existing, opts, sink).await?,
    };
    let inputs = p
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            StepInputs::of(s).map_err(|source| ApplyError::CopySource {
                index: i + 1,
                name: s.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (mut keys, commit_key) = plan::keys(p, &inputs, Some(&base.id));
    let mut commit_key = commit_key.expect("the base id is known");
    let mut final_cfg = final_config(&base.config, &p.commit.config);
    let with_remote =
        |base: &'_ ImageInfo, cfg: &'_ ImageConfig| -> Option<(Vec<String>, ImageConfig)> {
            remote.as_ref().map(|_| (base.layers.clone(), cfg.clone()))
        };
    let lookup =
        |keys: Vec<String>, commit_key: String, expect: Option<(Vec<String>, ImageConfig)>| {
            let remote = remote.as_ref();
            async move {
                let expect = expect.as_ref();
                let r = match (remote, expect) {
                    (Some(cache), Some((layers, cfg))) => Some(plan::observe::Remote {
                        cache,
                        base_layers: layers,
                        final_config: cfg,
                    }),
                    _ => None,
                };
                plan::observe::lookup(engine, &keys, &commit_key, opts.no_cache, r).await
            }
        };
    let mut hit = lookup(
        keys.clone(),
        commit_key.clone(),
        with_remote(&base, &final_cfg),
    )
    .await?;
    warn_remote(remote.as_ref(), sink, &mut warned);

    // A remote final image whose manifest every publish tag already holds: nothing to pull.
    if let (Some(_), Some(entry), Some(_)) = (&remote, &hit.remote, &hit.image) {
        if p.commit.tags.is_empty() {
            if let Some(pushed) = all_up_to_date(engine, p, &entry.digest).await {
                sink.event(Event::BaseReady {
                    reference: p.base.image.to_string(),
                    id: base.id.clone(),
                    pulled: false,
                });
                for (i, s) in p.steps.iter().enumerate() {
                    sink.event(Event::StepCached {
                        index: i + 1,
                        total: p.steps.len(),
                        name: s.name.clone(),
                    });
                }
                sink.event(Event::Committed {
                    image: entry.id.clone(),
                    tags: Vec::new(),
                    reused: true,
                });
                for x in &pushed {
                    sink.event(Event::Pushed {
                        repository: x.repository.clone(),
                        tag: x.tag.clone(),
                        digest: x.digest.clone(),
                        attempts: 0,
                        up_to_date: true,
                    });
                }
                // This is the pipeline's newest apply: its index says so, for `gc --remote`.
                if let Some(cache) = remote.as_ref().filter(|c| c.mode == RemoteMode::ReadWrite) {
                    let all: Vec<String> = keys.iter().chain([&commit_key]).cloned().collect();
                    cache.record(&p.name, &all).await;
                    warn_remote(Some(cache), sink, &mut warned);
                }
                return Ok(Applied {
                    image: entry.id.clone(),
                    tags: Vec::new(),
                    pushed,
                });
            }
        }
    }
    // Otherwise a remote hit is pulled and becomes a local cache entry.
    if let (Some(cache), Some(entry)) = (&remote, hit.remote.clone()) {
        let steps = hit.resume.steps_cached;
        let last = hit.image.is_some();
        match import(engine, cache, &entry, opts, sink).await {
            Ok(()) => sink.event(Event::CacheImported {
                reference: cache.reference(&entry.key),
                steps,
                last,
            }),
            Err(e) => {
                cache.fail(crate::registry::RegistryError::Unavailable(format!(
                    "cannot pull `{}`: {e}",
                    cache.reference(&entry.key)
                )));
                warn_remote(remote.as_ref(), sink, &mut warned);
                hit = lookup(keys.clone(), commit_key.clone(), None).await?;
            }
        }
    }
    // The steps start from the base: now it must be in the engine.
    if !base_local && hit.image.is_none() && hit.resume.image.is_none() {
        // Not in the engine (its id came from the registry).
        let info = ensure_base(engine, p, None, opts, sink).await?;
        if info.id != base.id {
            base = info;
            (keys, commit_key) = {
                let (k, c) = plan::keys(p, &inputs, Some(&base.id));
                (k, c.expect("the base id is known"))
            };
            final_cfg = final_config(&base.config, &p.commit.config);
            hit = lookup(keys.clone(), commit_key.clone(), None).await?;
        }
    } else if !base_local {
        sink.event(Event::BaseReady {
            reference: p.base.image.to_string(),
            id: base.id.clone(),
            pulled: false,
        });
    }
    let plan::observe::Hit {
        resume,
        image: reusable,
        ..
    } = hit;
    let total = p.steps.len();
    for (i, s) in p.steps.iter().enumerate().take(resume.steps_cached) {
        sink.event(Event::StepCached {
            index: i + 1,
            total,
            name: s.name.clone(),
        });
    }

    let mut build = Build::new(engine, opts, sink);
    let result = async {
        let image = match reusable.clone() {
            Some(id) => id,
            None => {
                let image = build
                    .run(p, &base, &resume, &keys, &inputs, &secrets, &final_cfg)
                    .await?;
                // The pointer first: `gc` keeps what it points to, so a concurrent gc never
                // sees this image as an unused entry.
                engine
                    .tag(&image, CACHE_REPOSITORY, &cache::last_tag(&p.name))
                    .await?;
                engine.tag(&image, CACHE_REPOSITORY, &commit_key).await?;
                image
            }
        };
        if reusable.is_some() {
            engine
                .tag(&image, CACHE_REPOSITORY, &cache::last_tag(&p.name))
                .await?;
        }
        let mut tags = Vec::new();
        for t in &p.commit.tags {
            let tag = t.tag.clone().unwrap_or_else(|| "latest".into());
            engine
                .tag(&image, &t.repository(), &tag)
                .await
                .map_err(ApplyError::Commit)?;
            tags.push(t.to_string());
        }
        sink.event(Event::Committed {
            image: image.clone(),
            tags: tags.clone(),
            reused: reusable.is_some(),
        });
        Ok::<_, ApplyError>((image, tags))
    }
    .await;
    let (image, tags) = match result {
        Ok(v) => v,
        Err(e) => {
            build.cleanup().await;
            return Err(e);
        }
    };
    // Containers go while the pushes run.
    let (pushed, ()) = tokio::join!(publish(engine, p, &image, opts, sink), build.cleanup());
    let pushed = pushed?;
    // After the publish targets, so publishing is never delayed; a failure only warns.
    if let Some(cache) = remote.as_ref().filter(|c| c.mode == RemoteMode::ReadWrite) {
        let all: Vec<String> = keys.iter().chain([&commit_key]).cloned().collect();
        export(engine, cache, &all, sink).await;
        cache.record(&p.name, &all).await;
        warn_remote(Some(cache), sink, &mut warned);
    }
    Ok(Applied {
        image,
        tags,
        pushed,
    })
}

/// Says once that the remote cache is off, and why.
fn warn_remote(remote: Option<&RemoteCache>, sink: &dyn Sink, warned: &mut bool) {
    let Some(r) = remote else { return };
    if *warned {
        return;
    }
    if let Some(e) = r.failure() {
        *warned = true;
        sink.event(Event::CacheRemote {
            repository: r.repository.clone(),
            mode: r.mode,
            unavailable: Some(e.to_string()),
        });
    }
}

/// Every publish tag, when each already holds the manifest `digest` (same registry, same
/// manifest bytes); `None` when one does not, or cannot be asked.
async fn all_up_to_date<E: Engine>(engine: &E, p: &Pipeline, digest: &str) -> Option<Vec<Pushed>> {
    let mut out = Vec::new();
    for t in &p.publish {
        let repository = t.repository.repository();
        let creds = credentials::resolve(t.repository.registry_host(), t.login.as_ref())
            .await
            .ok()?;
        for tag in &t.tags {
            let remote = engine
                .remote_digest(&format!("{repository}:{tag}"), creds.clone())
                .await
                .ok()??;
            if remote != digest {
                return None;
            }
            out.push(Pushed {
                repository: repository.clone(),
                tag: tag.clone(),
                digest: remote,
                attempts: 0,
                up_to_date: true,
            });
        }
    }
    Some(out)
}

/// Pulls a remote entry by its digest (exactly what the lookup checked) and tags it as the
/// local cache entry of its key.
async fn import<E: Engine>(
    engine: &E,
    cache: &RemoteCache,
    entry: &plan::observe::RemoteHit,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(), EngineError> {
    let reference = format!("{}@{}", cache.repository, entry.digest);
    pull_image(engine, &reference, cache.creds.clone(), opts, sink).await?;
    let pulled = engine.inspect_image(&reference).await?;
    match pulled {
        Some(info) if info.id == entry.id => {
            engine.tag(&info.id, CACHE_REPOSITORY, &entry.key).await?;
            // Keep only the cache tag.
            let _ = engine.remove_image(&reference).await;
            Ok(())
        }
        _ => Err(EngineError::Other(format!(
            "`{reference}` is not the image {} it was checked as",
            entry.id
        ))),
    }
}

/// Pulls `reference`, retrying transient failures, reporting progress.
async fn pull_image<E: Engine>(
    engine: &E,
    reference: &str,
    creds: Option<crate::engine::Credentials>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(), EngineError> {
    retry(opts, sink, None, || {
        let creds = creds.clone();
        async move {
            engine
                .pull(reference, creds, &mut |pr| {
                    sink.event(Event::PullProgress(pr))
                })
                .await
        }
    })
    .await
    .map(|_| ())
    .map_err(|(e, _)| e)
}

/// Pushes the local cache entries of `keys` that the remote cache lacks, under their keys.
async fn export<E: Engine>(engine: &E, cache: &RemoteCache, keys: &[String], sink: &dyn Sink) {
    let started = std::time::Instant::now();
    let mut pushed = Vec::new();
    for key in keys {
        if cache.failure().is_some() {
            break;
        }
        let local = format!("{CACHE_REPOSITORY}:{key}");
        let Ok(Some(info)) = engine.inspect_image(&local).await else {
            continue;
        };
        if cache.digest(key).await.is_some() || cache.failure().is_some() {
            continue;
        }
        let result = async {
            engine.tag(&info.id, &cache.repository, key).await?;
            let r = engine
                .push(&cache.repository, key, cache.creds.clone(), &mut |_| {})
                .await;
            let _ = engine.remove_image(&cache.reference(key)).await;
            r
        }
        .await;
        match result {
            Ok(_) => pushed.push(key.clone()),
            Err(e) => cache.fail(crate::registry::RegistryError::Unavailable(format!(
                "cannot push `{}`: {e}",
                cache.reference(key)
            ))),
        }
    }
    sink.event(Event::CacheExported {
        repository: cache.repository.clone(),
        keys: pushed,
        duration: started.elapsed(),
    });
}

/// Reads every secret's value up front, so a missing one stops the run before it starts.
/// Files are read on the blocking pool, so that an interrupt is handled whatever they are.
async fn secret_values(p: &Pipeline) -> Result<BTreeMap<String, String>, ApplyError> {
    let secrets = p.secrets.clone();
    tokio::task::spawn_blocking(move || read_secrets(&secrets))
        .await
        .map_err(|e| ApplyError::Secret {
            name: String::new(),
            detail: format!("cannot read the secrets: {e}"),
        })?
}

fn read_secrets(
    secrets: &BTreeMap<String, SecretSource>,
) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut out = BTreeMap::new();
    for (name, source) in secrets {
        let fail = |detail| ApplyError::Secret {
            name: name.clone(),
            detail,
        };
        let value = match source {
            SecretSource::Env(var) => std::env::var(var)
                .map_err(|_| fail(format!("the environment variable `{var}` is not set")))?,
            SecretSource::File(path) => {
                crate::fsread::read_bounded(path, crate::fsread::SECRET_LIMIT)
                    .and_then(|b| {
                        String::from_utf8(b).map_err(|_| {
                            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8")
                        })
                    })
                    .map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Makes the base present by its pull policy; `existing` is what the engine holds under the
/// base's reference (already asked by the caller).
async fn ensure_base<E: Engine>(
    engine: &E,
    p: &Pipeline,
    existing: Option<ImageInfo>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<ImageInfo, ApplyError> {
    let reference = p.base.image.to_string();
    let pull = match (p.base.pull, &existing) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, None) => true,
        (PullPolicy::Never, None) => {
            return Err(ApplyError::BaseMissing {
                reference,
                cli: engine.cli_name(),
            })
        }
        _ => false,
    };
    if pull {
        let creds =
            credentials::resolve(p.base.image.registry_host(), p.base.login.as_ref()).await?;
        pull_image(engine, &reference, creds, opts, sink)
            .await
            .map_err(|source| ApplyError::Pull {
                reference: reference.clone(),
                source,
            })?;
    }
    let info = match (pull, existing) {
        (false, Some(info)) => info,
        _ => engine
            .inspect_image(&reference)
            .await?
            .ok_or_else(|| ApplyError::Pull {
                reference: reference.clone(),
                source: EngineError::NotFound("the pulled image is missing".into()),
            })?,
    };
    sink.event(Event::BaseReady {
        reference,
        id: info.id.clone(),
        pulled: pull,
    });
    Ok(info)
}

/// The committed image's config: the base's, with the pipeline's changes.
pub(crate) fn final_config(base: &ImageConfig, c: &ConfigChanges) -> ImageConfig {
    let mut cfg = base.clone();
    if let Some(ep) = &c.entrypoint {
        cfg.entrypoint = Some(ep.clone());
        // As in a Dockerfile: a new entrypoint drops the inherited command.
        cfg.cmd = None;
    }
    if let Some(cmd) = &c.cmd {
        cfg.cmd = Some(cmd.clone());
    }
    // Values expand against the base's environment, as a Dockerfile `ENV` does; validation
    // has already refused what cannot be expanded.
    let mut base_env = base.env.clone();
    if !base_env.iter().any(|e| e.starts_with("PATH=")) {
        // What the engine runs the image with when it sets no PATH.
        base_env.push(format!("PATH={DEFAULT_PATH}"));
    }
    for (k, v) in &c.env {
        let value = crate::model::env::expand(v, &base_env).unwrap_or_else(|_| v.clone());
        let entry = format!("{k}={value}");
        match cfg
            .env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(k.as_str()))
        {
            Some(existing) => *existing = entry,
            None => cfg.env.push(entry),
        }
    }
    cfg.labels
        .extend(c.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    for port in &c.expose {
        if !cfg.exposed_ports.contains(port) {
            cfg.exposed_ports.push(port.clone());
        }
    }
    if let Some(u) = &c.user {
        cfg.user = u.clone();
    }
    if let Some(w) = &c.workdir {
        cfg.workdir = w.clone();
    }
    for v in &c.volumes {
        if !cfg.volumes.contains(v) {
            cfg.volumes.push(v.clone());
        }
    }
    if let Some(h) = &c.healthcheck {
        cfg.healthcheck = Some(h.clone());
    }
    if let Some(s) = &c.stop_signal {
        cfg.stop_signal = Some(s.clone());
    }
    if let Some(s) = &c.shell {
        cfg.shell = Some(s.clone());
    }
    if let Some(o) = &c.onbuild {
        cfg.onbuild = Some(o.clone());
    }
    cfg
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn final_config_keeps_the_base_and_applies_changes_like_a_dockerfile() {
        let base = ImageConfig {
            cmd: Some(vec!["bash".into()]),
            env: vec!["PATH=/bin".into(), "LANG=C".into()],
            labels: [("a".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let unchanged = final_config(&base, &ConfigChanges::default());
        assert_eq!(unchanged, base);
        let changes = ConfigChanges {
            entrypoint: Some(vec!["/entry".into()]),
            env: [
                ("LANG".to_string(), "C.UTF-8".to_string()),
                ("EDITOR".to_string(), "vim".to_string()),
            ]
            .into(),
            labels: [("b".to_string(), "2".to_string())].into(),
            expose: vec!["80/tcp".into()],
            ..Default::default()
        };
        let cfg = final_config(&base, &changes);
        let expanded = final_config(
            &base,
            &ConfigChanges {
                env: [
                    ("PATH".to_string(), "/opt/bin:$PATH".to_string()),
                    ("HOME".to_string(), "${HOME:-/root}".to_string()),
                ]
                .into(),
                ..Default::default()
            },
        );
        assert_eq!(
            expanded.env,
            ["PATH=/opt/bin:/bin", "LANG=C", "HOME=/root"],
            "expanded against the base's env, as a Dockerfile ENV"
        );
        let no_path = final_config(
            &ImageConfig::default(),
            &ConfigChanges {
                env: [("PATH".to_string(), "/opt/bin:$PATH".to_string())].into(),
                ..Default::default()
            },
        );
        assert_eq!(no_path.env, [format!("PATH=/opt/bin:{DEFAULT_PATH}")]);
        assert_eq!(
            cfg.cmd, None,
            "a new entrypoint drops the inherited command"
        );
        assert_eq!(cfg.env, ["PATH=/bin", "LANG=C.UTF-8", "EDITOR=vim"]);
        assert_eq!(cfg.labels.len(), 2);
        assert_eq!(cfg.exposed_ports, ["80/tcp"]);
    }
}
