//! Walks a pipeline against an engine: base, steps (with the cache and checkpoints), commit,
//! tags, pushes. Reports progress as [`Event`]s and never prints.

mod build;
mod output;
mod publish;
mod retry;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cache::{self, StepInputs};
use crate::credentials::{self, CredentialError};
use crate::engine::{Engine, EngineError, ImageConfig, ImageInfo, CACHE_REPOSITORY};
use crate::events::{Event, Sink};
use crate::model::{ConfigChanges, Pipeline, PullPolicy, SecretSource};
use crate::plan;
use build::Build;
use publish::publish;
use retry::retry;

/// How apply behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub no_cache: bool,
    /// Commit a failed step's container as a debug image instead of discarding it.
    pub keep_failed: bool,
    /// Attempts for a push or pull that fails with a transient error.
    pub attempts: u32,
    /// First retry delay; it doubles on each retry.
    pub retry_delay: Duration,
    /// Prefix of the names of every container this run creates.
    pub run_name: String,
}

/// An id for one run: microseconds and the process id, in hex.
pub fn run_id() -> String {
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

/// The name prefix of a run's containers: `pipeline-<pipeline name>-<run id>`, the pipeline
/// name reduced to what a container name may hold.
pub fn run_name(pipeline: &str, run_id: &str) -> String {
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
    let safe = if safe.is_empty() {
        "unnamed".to_string()
    } else {
        safe
    };
    format!("pipeline-{safe}-{run_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
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
    #[error("step {index} `{name}`: cannot read the copy source: {source}")]
    CopySource {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("base image `{reference}` is not in the engine and `pull = \"never\"`")]
    BaseMissing { reference: String },
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
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One tag in a registry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub attempts: u32,
    pub up_to_date: bool,
}

/// What a successful apply produced.
#[derive(Debug, Clone)]
pub struct Applied {
    pub image: String,
    pub tags: Vec<String>,
    pub pushed: Vec<Pushed>,
}

/// Applies a pipeline.
pub async fn apply<E: Engine>(
    engine: &E,
    p: &Pipeline,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Applied, ApplyError> {
    let secrets = secret_values(p).await?;
    let base = ensure_base(engine, p, opts, sink).await?;
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
    let (keys, commit_key) = plan::keys(p, &inputs, Some(&base.id));
    let commit_key = commit_key.expect("the base id is known");
    let (resume, reusable) = lookup(engine, &keys, &commit_key, opts.no_cache).await?;
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
                let final_config = final_config(&base.config, &p.commit.config);
                let image = build
                    .run(p, &base, &resume, &keys, &inputs, &secrets, &final_config)
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
    Ok(Applied {
        image,
        tags,
        pushed: pushed?,
    })
}

/// Finds the final image, or else the longest cached prefix of the steps. Asks for the few
/// tags it needs (about a millisecond each) rather than listing every cache image, which grows
/// with the cache; long pipelines list once instead of asking step by step.
async fn lookup<E: Engine>(
    engine: &E,
    keys: &[String],
    commit_key: &str,
    no_cache: bool,
) -> Result<(plan::Resume, Option<String>), EngineError> {
    let full = plan::Resume {
        steps_cached: keys.len(),
        image: None,
    };
    if no_cache {
        return Ok((plan::Resume::default(), None));
    }
    let tag = |key: &str| format!("{CACHE_REPOSITORY}:{key}");
    if let Some(image) = engine.inspect_image(&tag(commit_key)).await? {
        return Ok((full, Some(image.id)));
    }
    if keys.len() > 8 {
        let cache = engine.list_cache().await?;
        return Ok((plan::resume(keys, &cache, false), None));
    }
    for (i, key) in keys.iter().enumerate().rev() {
        if let Some(image) = engine.inspect_image(&tag(key)).await? {
            return Ok((
                plan::Resume {
                    steps_cached: i + 1,
                    image: Some(image.id),
                },
                None,
            ));
        }
    }
    Ok((plan::Resume::default(), None))
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

async fn ensure_base<E: Engine>(
    engine: &E,
    p: &Pipeline,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<ImageInfo, ApplyError> {
    let reference = p.base.image.to_string();
    let existing = engine.inspect_image(&reference).await?;
    let pull = match (p.base.pull, &existing) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, None) => true,
        (PullPolicy::Never, None) => return Err(ApplyError::BaseMissing { reference }),
        _ => false,
    };
    if pull {
        let creds =
            credentials::resolve(p.base.image.registry_host(), p.base.login.as_ref()).await?;
        retry(opts, sink, None, || {
            let creds = creds.clone();
            let reference = reference.clone();
            async move {
                engine
                    .pull(&reference, creds, &mut |pr| {
                        sink.event(Event::PullProgress(pr))
                    })
                    .await
            }
        })
        .await
        .map_err(|(source, _)| ApplyError::Pull {
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
pub fn final_config(base: &ImageConfig, c: &ConfigChanges) -> ImageConfig {
    let mut cfg = base.clone();
    if let Some(ep) = &c.entrypoint {
        cfg.entrypoint = Some(ep.clone());
        // As in a Dockerfile: a new entrypoint drops the inherited command.
        cfg.cmd = None;
    }
    if let Some(cmd) = &c.cmd {
        cfg.cmd = Some(cmd.clone());
    }
    for (k, v) in &c.env {
        let entry = format!("{k}={v}");
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
    cfg
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            cfg.cmd, None,
            "a new entrypoint drops the inherited command"
        );
        assert_eq!(cfg.env, ["PATH=/bin", "LANG=C.UTF-8", "EDITOR=vim"]);
        assert_eq!(cfg.labels.len(), 2);
        assert_eq!(cfg.exposed_ports, ["80/tcp"]);
    }
}
