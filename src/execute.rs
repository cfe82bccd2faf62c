//! Walks a pipeline against an engine: base, steps (with the cache and checkpoints), commit,
//! tags, pushes. Reports progress as [`Event`]s and never prints.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::cache::{self, CheckpointNote, NotedStep, StepInputs};
use crate::credentials::{self, CredentialError};
use crate::engine::{
    CommitSpec, ContainerSpec, Credentials, Engine, EngineError, ExecSpec, ImageConfig, ImageInfo,
    OutputStream, CACHE_REPOSITORY,
};
use crate::events::{Event, Sink, StepOutcome};
use crate::model::{Action, ConfigChanges, Pipeline, PullPolicy, SecretSource, Step};
use crate::plan;

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

/// Lines of output kept to explain a failed step.
const TAIL_LINES: usize = 20;

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
    let secrets = secret_values(p)?;
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

    let mut build = Build {
        engine,
        containers: Vec::new(),
        last_checkpoint: None,
        opts,
        sink,
    };
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
fn secret_values(p: &Pipeline) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut out = BTreeMap::new();
    for (name, source) in &p.secrets {
        let value = match source {
            SecretSource::Env(var) => std::env::var(var).map_err(|_| ApplyError::Secret {
                name: name.clone(),
                detail: format!("the environment variable `{var}` is not set"),
            })?,
            SecretSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| ApplyError::Secret {
                    name: name.clone(),
                    detail: format!("cannot read `{}`: {e}", path.display()),
                })?
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

/// Runs `op` until it succeeds, fails for good, or runs out of attempts. Returns the last
/// error and the number of attempts made.
async fn retry<T, F, Fut>(
    opts: &Options,
    sink: &dyn Sink,
    push: Option<(&str, &str)>,
    mut op: F,
) -> Result<(T, u32), (EngineError, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    let mut delay = opts.retry_delay;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok((v, attempt)),
            Err(e) if e.is_transient() && attempt < opts.attempts => {
                if let Some((repository, tag)) = push {
                    sink.event(Event::PushRetry {
                        repository: repository.into(),
                        tag: tag.into(),
                        attempt,
                        error: e.to_string(),
                        delay,
                    });
                } else {
                    sink.event(Event::Warning(format!(
                        "{e}; retrying in {}",
                        humantime::format_duration(delay)
                    )));
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err((e, attempt)),
        }
    }
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

/// The build: its containers, removed at the end whatever happens.
struct Build<'a, E: Engine> {
    engine: &'a E,
    containers: Vec<String>,
    /// The checkpoint of all steps, still to commit: (container, commit, cache key, step).
    last_checkpoint: Option<(String, CommitSpec, String, usize)>,
    opts: &'a Options,
    sink: &'a dyn Sink,
}

impl<E: Engine> Build<'_, E> {
    async fn container(
        &mut self,
        image: &str,
        secrets: bool,
        start: bool,
    ) -> Result<String, EngineError> {
        let mut spec = ContainerSpec {
            name: format!("{}-{}", self.opts.run_name, self.containers.len() + 1),
            image: image.to_string(),
            ..Default::default()
        };
        if secrets {
            // A tmpfs is never part of a commit.
            spec.tmpfs.insert("/run/secrets".into(), "mode=0755".into());
        }
        let id = self.engine.create_container(&spec).await?;
        self.containers.push(id.clone());
        if start {
            self.engine.start_container(&id).await?;
        }
        Ok(id)
    }

    /// Commits the pending last checkpoint (it caches the steps for a later change of the
    /// commit metadata alone), then removes every container.
    async fn cleanup(&mut self) {
        if let Some((id, spec, key, after_step)) = self.last_checkpoint.take() {
            let committed = async {
                let image = self.engine.commit(&id, &spec).await?;
                self.engine.tag(&image, CACHE_REPOSITORY, &key).await?;
                Ok::<_, EngineError>(image)
            };
            match committed.await {
                Ok(image) => self.sink.event(Event::Checkpoint { after_step, image }),
                Err(e) => self
                    .sink
                    .event(Event::Warning(format!("could not cache the steps: {e}"))),
            }
        }
        let removals = self.containers.drain(..).map(|id| {
            let engine = self.engine;
            async move { (engine.remove_container(&id).await, id) }
        });
        for (result, id) in futures_util::future::join_all(removals).await {
            if let Err(e) = result {
                self.sink.event(Event::Warning(format!(
                    "could not remove container `{id}`: {e}"
                )));
            }
        }
    }

    /// Runs the uncached steps and commits; returns the final image id.
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::needless_range_loop)] // `i` indexes steps, keys and inputs together
    async fn run(
        &mut self,
        p: &Pipeline,
        base: &ImageInfo,
        resume: &plan::Resume,
        keys: &[String],
        inputs: &[StepInputs],
        secrets: &BTreeMap<String, String>,
        final_config: &ImageConfig,
    ) -> Result<String, ApplyError> {
        let total = p.steps.len();
        let mut image = resume.image.clone().unwrap_or_else(|| base.id.clone());
        let commit = |config: &ImageConfig| CommitSpec {
            author: p.commit.author.clone(),
            message: p.commit.message.clone(),
            config: config.clone(),
        };
        if resume.steps_cached == total {
            // Only the commit metadata changed: a container that never starts is enough.
            let id = self.container(&image, false, false).await?;
            return self
                .engine
                .commit(&id, &commit(final_config))
                .await
                .map_err(ApplyError::Commit);
        }
        let uses_secrets = p.steps.iter().any(|s| !s.secrets.is_empty());
        let mut id = self.container(&image, uses_secrets, true).await?;
        let mut group_start = resume.steps_cached;
        for i in resume.steps_cached..total {
            let step = &p.steps[i];
            let started = Instant::now();
            self.sink.event(Event::StepStarted {
                index: i + 1,
                total,
                name: step.name.clone(),
            });
            let result = self.step(&id, i, step, secrets).await;
            let duration = started.elapsed();
            let outcome = match &result {
                Ok(()) => StepOutcome::Succeeded,
                Err(ApplyError::StepFailed { code, .. }) => {
                    StepOutcome::Failed { exit_code: *code }
                }
                Err(ApplyError::StepTimedOut { .. }) => StepOutcome::TimedOut,
                Err(_) => StepOutcome::Error,
            };
            self.sink.event(Event::StepFinished {
                index: i + 1,
                outcome,
                duration,
            });
            if let Err(e) = result {
                if self.opts.keep_failed && !matches!(e, ApplyError::StepTimedOut { .. }) {
                    self.keep_failed(&id, i + 1, &base.config).await;
                }
                return Err(e);
            }
            let last = i + 1 == total;
            let wanted = step.checkpoint.unwrap_or(duration >= p.checkpoint_after);
            if last || wanted {
                // A checkpoint keeps the base's config, so that anything built on it (later
                // steps, a changed commit) starts from the same config as a fresh build.
                let note = CheckpointNote {
                    pipeline: p.name.clone(),
                    first: group_start + 1,
                    steps: (group_start..=i)
                        .map(|j| NotedStep {
                            name: p.steps[j].name.clone(),
                            inputs: inputs[j].clone(),
                        })
                        .collect(),
                };
                let spec = CommitSpec {
                    author: None,
                    message: Some(note.to_comment()),
                    config: base.config.clone(),
                };
                if last {
                    // Committed after the final image, while the pushes run: see `cleanup`.
                    self.last_checkpoint = Some((id.clone(), spec, keys[i].clone(), i + 1));
                    break;
                }
                let checkpoint = self
                    .engine
                    .commit(&id, &spec)
                    .await
                    .map_err(ApplyError::Commit)?;
                self.engine
                    .tag(&checkpoint, CACHE_REPOSITORY, &keys[i])
                    .await?;
                self.sink.event(Event::Checkpoint {
                    after_step: i + 1,
                    image: checkpoint.clone(),
                });
                group_start = i + 1;
                // Continue from the checkpoint so the next layer holds only what follows.
                image = checkpoint;
                id = self.container(&image, uses_secrets, true).await?;
            }
        }
        // The final commit of the same container: its layer is the checkpoint's, shared.
        self.engine
            .commit(&id, &commit(final_config))
            .await
            .map_err(ApplyError::Commit)
    }

    async fn step(
        &self,
        id: &str,
        i: usize,
        step: &Step,
        secrets: &BTreeMap<String, String>,
    ) -> Result<(), ApplyError> {
        let name = || step.name.clone();
        let engine_err = |source| ApplyError::StepEngine {
            index: i + 1,
            name: name(),
            source,
        };
        match &step.action {
            Action::Copy(c) => {
                let archive = crate::archive::stream(c);
                self.engine
                    .upload(id, "/", archive)
                    .await
                    .map_err(engine_err)
            }
            Action::Run(cmd) => {
                let mut values: Vec<&str> = Vec::new();
                for s in &step.secrets {
                    let value = &secrets[s];
                    values.push(value);
                    let write = ExecSpec {
                        argv: vec![
                            "/bin/sh".into(),
                            "-c".into(),
                            "umask 077 && cat > \"$0\"".into(),
                            format!("/run/secrets/{s}"),
                        ],
                        stdin: Some(value.as_bytes().to_vec()),
                        ..Default::default()
                    };
                    let code = self
                        .engine
                        .exec(id, &write, &mut |_, _| {})
                        .await
                        .map_err(engine_err)?;
                    if code != 0 {
                        return Err(engine_err(EngineError::Api(format!(
                            "could not place secret `{s}` (exit code {code})"
                        ))));
                    }
                }
                let spec = ExecSpec {
                    argv: cmd.argv(),
                    env: step.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    user: step.user.clone(),
                    workdir: step.workdir.clone(),
                    stdin: None,
                };
                let mut lines = Lines::new(i + 1, &values, self.sink);
                let mut on_output = |stream, bytes: &[u8]| lines.push(stream, bytes);
                let run = self.engine.exec(id, &spec, &mut on_output);
                let result = match step.timeout {
                    Some(limit) => match tokio::time::timeout(limit, run).await {
                        Ok(r) => r,
                        Err(_) => {
                            lines.finish();
                            return Err(ApplyError::StepTimedOut {
                                index: i + 1,
                                name: name(),
                                timeout: limit,
                                tail: lines.tail(),
                            });
                        }
                    },
                    None => run.await,
                };
                lines.finish();
                let code = result.map_err(engine_err)?;
                if !step.secrets.is_empty() {
                    let argv = ["rm", "-f"]
                        .iter()
                        .map(|s| s.to_string())
                        .chain(step.secrets.iter().map(|s| format!("/run/secrets/{s}")))
                        .collect();
                    self.engine
                        .exec(
                            id,
                            &ExecSpec {
                                argv,
                                ..Default::default()
                            },
                            &mut |_, _| {},
                        )
                        .await
                        .map_err(engine_err)?;
                }
                if code != 0 {
                    return Err(ApplyError::StepFailed {
                        index: i + 1,
                        name: name(),
                        code,
                        tail: lines.tail(),
                    });
                }
                Ok(())
            }
        }
    }

    async fn keep_failed(&self, id: &str, step: usize, config: &ImageConfig) {
        let spec = CommitSpec {
            author: None,
            message: Some(format!("failed at step {step}")),
            config: config.clone(),
        };
        let kept = async {
            let image = self.engine.commit(id, &spec).await?;
            let tag = format!(
                "{}-step{step}",
                self.opts.run_name.trim_start_matches("pipeline-")
            );
            self.engine.tag(&image, "pipeline-debug", &tag).await?;
            Ok::<_, EngineError>(format!("pipeline-debug:{tag}"))
        };
        match kept.await {
            Ok(image) => self.sink.event(Event::KeptFailed { image, step }),
            Err(e) => self.sink.event(Event::Warning(format!(
                "could not keep the failed container: {e}"
            ))),
        }
    }
}

/// Splits a step's output into lines, redacts secrets, keeps the last lines.
struct Lines<'a> {
    step: usize,
    secrets: &'a [&'a str],
    sink: &'a dyn Sink,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl<'a> Lines<'a> {
    fn new(step: usize, secrets: &'a [&'a str], sink: &'a dyn Sink) -> Self {
        Self {
            step,
            secrets,
            sink,
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::new(),
        }
    }

    fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let slot = stream as usize;
        self.partial[slot].extend_from_slice(bytes);
        while let Some(pos) = self.partial[slot].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[slot].drain(..=pos).collect();
            self.emit(stream, &line[..line.len() - 1]);
        }
    }

    fn finish(&mut self) {
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
    }

    fn emit(&mut self, stream: OutputStream, line: &[u8]) {
        let mut text = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string();
        for s in self.secrets {
            // The whole value, and each line of a multi-line value (a key file, say), since
            // output arrives line by line.
            let lines = s.lines().map(str::trim).filter(|l| l.len() >= 4);
            for variant in [s, s.trim()].into_iter().chain(lines) {
                if !variant.is_empty() {
                    text = text.replace(variant, "******");
                }
            }
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.clone());
        self.sink.event(Event::StepOutput {
            index: self.step,
            stream,
            line: text,
        });
    }

    fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// Pushes every tag of every target, in order. Nothing is pushed unless the build succeeded
/// (the caller only gets here then).
async fn publish<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: &str,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    let mut pushed = Vec::new();
    if p.publish.is_empty() {
        return Ok(pushed);
    }
    for target in &p.publish {
        let repository = target.repository.repository();
        let creds: Option<Credentials> =
            credentials::resolve(target.repository.registry_host(), target.login.as_ref()).await?;
        // Up to date when the registry already holds this image's manifest under the tag; only
        // possible when the image was pushed to this repository before.
        let prefix = format!("{repository}@");
        let local: Vec<String> = match engine.inspect_image(image).await {
            Ok(Some(i)) => i
                .repo_digests
                .into_iter()
                .filter_map(|d| d.strip_prefix(&prefix).map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        for tag in &target.tags {
            let fail = |source, attempts, pushed: &Vec<Pushed>| ApplyError::Push {
                repository: repository.clone(),
                tag: tag.clone(),
                attempts,
                source: Box::new(source),
                image: image.to_string(),
                pushed: pushed.clone(),
            };
            engine
                .tag(image, &repository, tag)
                .await
                .map_err(|e| fail(e, 0, &pushed))?;
            if !local.is_empty() {
                if let Ok(Some(remote)) = engine
                    .remote_digest(&format!("{repository}:{tag}"), creds.clone())
                    .await
                {
                    if local.contains(&remote) {
                        let entry = Pushed {
                            repository: repository.clone(),
                            tag: tag.clone(),
                            digest: remote,
                            attempts: 0,
                            up_to_date: true,
                        };
                        sink.event(Event::Pushed {
                            repository: repository.clone(),
                            tag: tag.clone(),
                            digest: entry.digest.clone(),
                            attempts: 0,
                            up_to_date: true,
                        });
                        pushed.push(entry);
                        continue;
                    }
                }
            }
            sink.event(Event::PushStarted {
                repository: repository.clone(),
                tag: tag.clone(),
            });
            let result = retry(opts, sink, Some((&repository, tag)), || {
                let creds = creds.clone();
                let (repository, tag) = (repository.clone(), tag.clone());
                async move {
                    engine
                        .push(&repository, &tag, creds, &mut |progress| {
                            sink.event(Event::PushProgress {
                                repository: repository.clone(),
                                tag: tag.clone(),
                                progress,
                            })
                        })
                        .await
                }
            })
            .await;
            match result {
                Ok((digest, attempts)) => {
                    sink.event(Event::Pushed {
                        repository: repository.clone(),
                        tag: tag.clone(),
                        digest: digest.clone(),
                        attempts,
                        up_to_date: false,
                    });
                    pushed.push(Pushed {
                        repository: repository.clone(),
                        tag: tag.clone(),
                        digest,
                        attempts,
                        up_to_date: false,
                    });
                }
                Err((source, attempts)) => return Err(fail(source, attempts, &pushed)),
            }
        }
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn output_is_split_into_lines_and_secrets_are_redacted_even_line_by_line() {
        let seen = Mutex::new(Vec::new());
        let sink = |e: Event| {
            if let Event::StepOutput { line, .. } = e {
                seen.lock().unwrap().push(line);
            }
        };
        let secrets = [
            "hunter2",
            "-----BEGIN KEY-----\nabcdefgh\n-----END KEY-----\n",
        ];
        let mut lines = Lines::new(1, &secrets, &sink);
        lines.push(OutputStream::Stdout, b"pass=hun");
        lines.push(OutputStream::Stdout, b"ter2 ok\nkey: abcdefgh\npartial");
        lines.finish();
        assert_eq!(
            *seen.lock().unwrap(),
            ["pass=****** ok", "key: ******", "partial"]
        );
        assert_eq!(lines.tail().len(), 3);
    }

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
