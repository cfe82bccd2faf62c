//! The build: containers, steps, checkpoints and the final commit.

use std::collections::BTreeMap;
use std::time::Instant;

use super::made::Maker;
use super::output::Lines;
use super::{locks, ApplyError, Options};
use crate::cache::{CheckpointNote, NotedStep, StepInputs};
use crate::engine::{
    CommitSpec, ContainerSpec, Engine, EngineError, ExecSpec, ImageConfig, ImageInfo, MountSpec,
    CACHE_REPOSITORY,
};
use crate::execute::events::{Event, Sink, StepOutcome};
use crate::execute::volumes::CacheScope;
use crate::model::{
    paths_overlap, Action, Command, ContainerOptions, CopySpec, Network, Pipeline, Sharing, Step,
};
use crate::plan;
use crate::reference::DEBUG_REPOSITORY;

/// The user that places and removes secrets: root, by uid (an image may have no
/// /etc/passwd).
const ROOT: &str = "0";

/// The build: its containers, removed at the end whatever happens.
pub(super) struct Build<'a, E: Engine> {
    engine: &'a E,
    containers: Vec<String>,
    /// Lock containers of the locked cache mounts the current container uses.
    locks: Vec<String>,
    /// Who shares this build's cache mounts; known once a step has one.
    scope: Option<CacheScope>,
    /// The checkpoint of all steps, still to commit.
    last_checkpoint: Option<Pending>,
    /// Prefix of the names of every container this build creates.
    run_name: &'a str,
    opts: &'a Options,
    sink: &'a dyn Sink,
    /// Whether the base image has an entrypoint, and whether it has a command that the
    /// containers may run `cat` in place of (see [`ContainerSpec::cat_as_command`]).
    base_entrypoint: bool,
    base_cmd: bool,
    /// The platform the containers are created for; `None`: the engine's own.
    platform: Option<String>,
    /// The image the tool writes: each checkpoint's layer goes there before its container.
    pub(super) maker: Option<Maker>,
}

/// A checkpoint to commit: the container, the commit, its cache key, its last step and its note.
struct Pending {
    container: String,
    spec: CommitSpec,
    key: String,
    after_step: usize,
    note: CheckpointNote,
}

impl<'a, E: Engine> Build<'a, E> {
    pub(super) fn new(
        engine: &'a E,
        run_name: &'a str,
        opts: &'a Options,
        sink: &'a dyn Sink,
    ) -> Self {
        Self {
            engine,
            run_name,
            containers: Vec::new(),
            locks: Vec::new(),
            scope: None,
            last_checkpoint: None,
            opts,
            sink,
            base_entrypoint: false,
            base_cmd: false,
            platform: None,
            maker: None,
        }
    }

    /// Creates (and starts) a build container from `image` with the mounts and network of
    /// `options`, after taking the locks of its locked cache mounts.
    async fn container(
        &mut self,
        image: &str,
        secrets: bool,
        start: bool,
        options: &ContainerOptions,
    ) -> Result<String, EngineError> {
        let mut spec = ContainerSpec {
            name: format!("{}-{}", self.run_name, self.containers.len() + 1),
            image: image.to_string(),
            image_entrypoint: self.base_entrypoint,
            image_cmd: self.base_cmd,
            platform: self.platform.clone(),
            ..Default::default()
        };
        if secrets {
            // A tmpfs is never part of a commit.
            spec.tmpfs.insert("/run/secrets".into(), "mode=0755".into());
        }
        // Mounts are never part of a commit either: the image keeps what it had at their paths
        // (a path it lacked stays as the empty folder the engine mounted on).
        for t in &options.tmpfs {
            spec.tmpfs.insert(t.clone(), "exec,mode=1777".into());
        }
        let mut locked = Vec::new();
        for c in &options.caches {
            let scope = self
                .scope
                .as_ref()
                .ok_or_else(|| EngineError::Other("cache mounts without a scope".into()))?;
            let volume = scope.volume(&c.path);
            self.engine
                .create_volume(&volume.name, &volume.labels)
                .await?;
            if c.sharing == Sharing::Locked {
                locked.push((volume.lock_name(), format!("cache `{}`", c.path)));
            }
            spec.mounts.push(MountSpec::Volume {
                name: volume.name,
                labels: volume.labels,
                target: c.path.clone(),
            });
        }
        // Always taken in the same order, so that two applies never hold one lock each while
        // waiting for the other's.
        locked.sort();
        for (name, what) in &locked {
            let lock = locks::acquire(self.engine, name, &spec, what, self.sink).await?;
            self.locks.push(lock);
        }
        for m in &options.mounts {
            spec.mounts.push(MountSpec::Bind {
                source: m.src.clone(),
                target: m.dest.clone(),
            });
        }
        spec.network = match options.network {
            Network::Default => None,
            Network::None => Some("none".into()),
            Network::Host => Some("host".into()),
        };
        let id = self.engine.create_container(&spec).await?;
        self.containers.push(id.clone());
        if start {
            self.engine.start_container(&id).await?;
        }
        Ok(id)
    }

    /// Starts build container `id` before step `i` when the step runs a command and the
    /// container has not started yet (`started`: the step it started for). A container whose
    /// steps only copy never starts: a base with no shell and no `cat` (or none at all, as
    /// `scratch`) takes copies.
    async fn start_for(
        &self,
        id: &str,
        i: usize,
        step: &Step,
        started: &mut Option<usize>,
    ) -> Result<(), ApplyError> {
        if started.is_some() || matches!(step.action, Action::Copy(_)) {
            return Ok(());
        }
        *started = Some(i);
        self.engine
            .start_container(id)
            .await
            .map_err(|source| ApplyError::StepEngine {
                index: i + 1,
                name: step.name.clone(),
                source,
            })
    }

    /// Whether the build containers run `cat` as their command (see
    /// [`ContainerSpec::cat_as_command`]).
    fn cat_as_command(&self) -> bool {
        !self.base_entrypoint && self.base_cmd
    }

    /// Lets go of the locked cache mounts: the steps that use them are done.
    async fn release_locks(&mut self) {
        for id in std::mem::take(&mut self.locks) {
            if let Err(e) = self.engine.remove_container(&id).await {
                self.sink.event(Event::Warning(format!(
                    "could not remove lock container `{id}`: {e}"
                )));
            }
        }
    }

    /// Commits and tags the pending checkpoint of all steps, if any; its image id.
    async fn commit_pending(&mut self) -> Option<Result<String, EngineError>> {
        let p = self.last_checkpoint.take()?;
        let committed = async {
            let image = self.engine.commit(&p.container, &p.spec).await?;
            self.engine.tag(&image, CACHE_REPOSITORY, &p.key).await?;
            Ok::<_, EngineError>(image)
        };
        let committed = committed.await;
        if let Ok(image) = &committed {
            self.note(image, &p.note);
            self.sink.event(Event::Checkpoint {
                after_step: p.after_step,
                image: image.clone(),
            });
        }
        Some(committed)
    }

    /// Commits the pending last checkpoint (it caches the steps for a later change of the
    /// commit metadata alone), then removes every container.
    pub(super) async fn cleanup(&mut self) {
        self.release_locks().await;
        if let Some(Err(e)) = self.commit_pending().await {
            self.sink
                .event(Event::Warning(format!("could not cache the steps: {e}")));
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
    #[allow(
        clippy::too_many_lines,
        reason = "one loop carries the container, the image and the checkpoint group from step to step"
    )]
    pub(super) async fn run(
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
        self.platform = p.platform.as_ref().map(ToString::to_string);
        self.base_entrypoint = base
            .config
            .entrypoint
            .as_ref()
            .is_some_and(|e| !e.is_empty());
        self.base_cmd = base.config.cmd.as_ref().is_some_and(|c| !c.is_empty());
        let mut image = resume.image.clone().unwrap_or_else(|| base.id.clone());
        let cat_as_command = self.cat_as_command();
        if let (Some(maker), Some(key)) = (
            self.maker.as_mut(),
            resume.steps_cached.checked_sub(1).map(|i| &keys[i]),
        ) {
            maker.resume(self.engine, base, key, &image).await;
        }
        let commit = |config: &ImageConfig| CommitSpec {
            author: p.commit.author.clone(),
            message: p.commit.message.clone(),
            config: config.clone(),
            cat_as_command,
        };
        // A container that runs `cat` as its command cannot commit an image without one (the
        // commit would take `cat`): such an image comes from a container of the last
        // checkpoint that runs `cat` as its entrypoint (created, never started).
        let no_command = [&final_config.cmd, &final_config.entrypoint]
            .iter()
            .all(|v| v.as_ref().is_none_or(Vec::is_empty));
        let without_command = no_command && cat_as_command;
        if resume.steps_cached == total {
            if without_command {
                return self
                    .commit_without_command(Some(image), commit(final_config))
                    .await;
            }
            // Only the commit metadata changed: a container that never starts is enough.
            let id = self
                .container(&image, false, false, &ContainerOptions::default())
                .await?;
            return self
                .engine
                .commit(&id, &commit(final_config))
                .await
                .map_err(ApplyError::Commit);
        }
        let uses_secrets = p.steps.iter().any(|s| !s.secrets.is_empty());
        if p.steps.iter().any(|s| !s.container.caches.is_empty()) {
            // Scoped per pipeline and platform: a platform's build is named `NAME@PLATFORM`.
            self.scope = Some(match &p.platform {
                Some(platform) => {
                    let platform = platform.to_string();
                    let name = p
                        .name
                        .strip_suffix(&format!("@{platform}"))
                        .unwrap_or(&p.name);
                    CacheScope::new(name, &platform)
                }
                None => {
                    let (os, arch) = self.engine.platform().await?;
                    CacheScope::new(&p.name, &format!("{os}/{arch}"))
                }
            });
        }
        let mut options = container_options(&p.steps[resume.steps_cached]);
        // Created, not started: copies go in through the engine's archive endpoint, which
        // needs no process in the container; only a command starts it (see `start_for`).
        let mut id = self
            .container(&image, uses_secrets, false, &options)
            .await?;
        // Before any step: a first `run` step that cannot start on this image fails now, not
        // after the steps before it ran.
        if let Some(needs) = plan::needs::first_run(p, resume.steps_cached, &base.config) {
            let missing = crate::observe::missing(self.engine, &id, &needs.wants).await;
            if !missing.is_empty() {
                return Err(ApplyError::BaseLacks(Box::new(
                    needs.lack(p, &base.id, missing),
                )));
            }
        }
        let mut started_at = None;
        let mut group_start = resume.steps_cached;
        for i in resume.steps_cached..total {
            let step = &p.steps[i];
            let started = Instant::now();
            self.sink.event(Event::StepStarted {
                index: i + 1,
                total,
                name: step.name.clone(),
            });
            let result = match self.start_for(&id, i, step, &mut started_at).await {
                Ok(()) => {
                    self.step(&id, i, step, &inputs[i], secrets, &base.config.user)
                        .await
                }
                Err(e) => Err(e),
            };
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
            if let Err(mut e) = result {
                // The build container gone before its first command ran (the engine refused the
                // command, found no such container, or it stopped under it): an image without `cat` is the usual cause,
                // and a container that never starts can tell.
                if let ApplyError::StepEngine {
                    source:
                        source @ (EngineError::Api { .. }
                        | EngineError::NotFound(_)
                        | EngineError::Connection { .. }),
                    ..
                } = &mut e
                {
                    if started_at == Some(i) && !self.image_has_cat(&image, &base.config.env).await
                    {
                        *source = EngineError::Other(format!(
                            "the build container stopped as soon as it started: the tool keeps \
                             it alive with `cat` from the image, and the image (from `{}`) \
                             has no `cat` on its PATH; use a base with coreutils or busybox \
                             (the engine said: {source})",
                            p.base.image
                        ));
                    }
                }
                if self.opts.keep_failed {
                    self.keep_failed(&id, i + 1, &base.config).await;
                }
                return Err(e);
            }
            let last = i + 1 == total;
            // A next step that needs other mounts or another network needs another container.
            let switch = p.steps.get(i + 1).is_some_and(|n| !fits(n, &options));
            let wanted = switch || step.checkpoint.unwrap_or(duration >= p.checkpoint_after);
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
                    cat_as_command,
                };
                if last {
                    self.release_locks().await;
                    self.write_layer(&id, &image, base, &keys[i], &note).await;
                    // Committed after the final image, while the pushes run: see `cleanup`.
                    self.last_checkpoint = Some(Pending {
                        container: id.clone(),
                        spec,
                        key: keys[i].clone(),
                        after_step: i + 1,
                        note,
                    });
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
                self.note(&checkpoint, &note);
                self.sink.event(Event::Checkpoint {
                    after_step: i + 1,
                    image: checkpoint.clone(),
                });
                self.write_layer(&id, &image, base, &keys[i], &note).await;
                group_start = i + 1;
                self.release_locks().await;
                // Continue from the checkpoint so the next layer holds only what follows.
                image = checkpoint;
                options = container_options(&p.steps[i + 1]);
                id = self
                    .container(&image, uses_secrets, false, &options)
                    .await?;
                started_at = None;
            }
        }
        if without_command {
            return self
                .commit_without_command(None, commit(final_config))
                .await;
        }
        // The final commit of the same container: its layer is the checkpoint's, shared.
        self.engine
            .commit(&id, &commit(final_config))
            .await
            .map_err(ApplyError::Commit)
    }

    /// Commits an image without a command from a container of `image` (by default the
    /// checkpoint of all steps, committed now) that runs `cat` as its entrypoint.
    async fn commit_without_command(
        &mut self,
        image: Option<String>,
        spec: CommitSpec,
    ) -> Result<String, ApplyError> {
        let image = match image {
            Some(image) => image,
            None => self
                .commit_pending()
                .await
                .unwrap_or_else(|| Err(EngineError::Other("no checkpoint of the steps".into())))
                .map_err(ApplyError::Commit)?,
        };
        self.base_cmd = false;
        let id = self
            .container(&image, false, false, &ContainerOptions::default())
            .await?;
        let spec = CommitSpec {
            cat_as_command: false,
            ..spec
        };
        self.engine
            .commit(&id, &spec)
            .await
            .map_err(ApplyError::Commit)
    }

    /// Writes the layer of checkpoint container `id` (made from `image`) into the tool's
    /// image, named after the steps it holds.
    async fn write_layer(
        &mut self,
        id: &str,
        image: &str,
        base: &ImageInfo,
        key: &str,
        note: &CheckpointNote,
    ) {
        let engine = self.engine;
        let Some(maker) = self.maker.as_mut() else {
            return;
        };
        // What reading the container's whole file system costs.
        let size = if image == base.id {
            base.size
        } else {
            engine
                .inspect_image(image)
                .await
                .ok()
                .flatten()
                .map_or(base.size, |i| i.size)
        };
        maker
            .checkpoint(
                engine,
                id,
                size,
                key,
                format!("pipeline: {}", note.steps_text()),
            )
            .await;
    }

    /// Whether `image` has `cat` in a folder of its PATH (`env`'s, else the default one),
    /// asked of a container that is created for it and never started. Unknown counts as
    /// present: the explanation is only given when it is certain.
    async fn image_has_cat(&mut self, image: &str, env: &[String]) -> bool {
        let Ok(id) = self
            .container(image, false, false, &ContainerOptions::default())
            .await
        else {
            return true;
        };
        let cat = [plan::needs::cat(env)];
        crate::observe::missing(self.engine, &id, &cat)
            .await
            .is_empty()
    }

    /// Runs step `i` in container `id`. `image_user` is the user the image runs as (its
    /// config's `User`), the step's user when it names none.
    #[allow(
        clippy::too_many_lines,
        reason = "two arms, a copy and a run (secrets placed, the command, secrets removed); to split in two"
    )]
    async fn step(
        &self,
        id: &str,
        i: usize,
        step: &Step,
        inputs: &StepInputs,
        secrets: &BTreeMap<String, String>,
        image_user: &str,
    ) -> Result<(), ApplyError> {
        let name = || step.name.clone();
        let engine_err = |source| ApplyError::StepEngine {
            index: i + 1,
            name: name(),
            source,
        };
        match &step.action {
            Action::Copy(c) => {
                let copy_err = |source| ApplyError::CopySource {
                    index: i + 1,
                    name: name(),
                    source,
                };
                // Like `COPY --chown`, a folder copy creates `dest` with the owner, but leaves
                // an existing one (`/`, `/tmp`) as it is. (What is in another image may be a
                // folder: asked of the image when it is read.)
                let create_dest = (c.from.is_some() || c.sources.iter().any(|s| s.path.is_dir()))
                    && c.dest != "/"
                    && !self
                        .engine
                        .path_exists(id, &c.dest)
                        .await
                        .map_err(engine_err)?;
                // An owner by name is looked up in the image as it is now.
                let named;
                let c = match &c.owner_name {
                    Some(owner) => {
                        let ids = super::owner::resolve(self.engine, id, owner)
                            .await
                            .map_err(|source| ApplyError::CopyOwner {
                                index: i + 1,
                                name: name(),
                                source,
                            })?;
                        named = CopySpec {
                            owner: Some(ids),
                            ..c.clone()
                        };
                        &named
                    }
                    None => c,
                };
                if let Some(from) = &c.from {
                    let container = format!("{}-from-read-{}", self.run_name, i + 1);
                    return super::copy_from::copy(
                        self.engine,
                        from,
                        &container,
                        id,
                        c,
                        create_dest,
                    )
                    .await
                    .map_err(engine_err)?
                    .map_err(copy_err);
                }
                let expected = inputs.copied.clone().ok_or_else(|| {
                    copy_err(std::io::Error::other("the copy has no content digest"))
                })?;
                let (archive, source_error) = crate::archive::stream(c, expected, create_dest);
                let uploaded = self.engine.upload(id, "/", archive).await;
                // A source that changed fails the upload: say so, not what the engine saw.
                if let Some(e) = source_error.take() {
                    return Err(copy_err(e));
                }
                uploaded.map_err(engine_err)
            }
            Action::Run(cmd) => {
                // A secret file belongs to the user the step runs as (the step's, else the
                // image's, else root), mode 0400: readable by that user and no other. Root
                // places and removes it (the tmpfs is root's), whatever user the image has;
                // `chown` resolves the user as the engine does, in the container's
                // /etc/passwd (a name, `uid`, `uid:gid`, `name:group`; a uid unknown there
                // stays a bare uid, the group stays root's).
                let owner = step.user.as_deref().filter(|u| !u.is_empty()).unwrap_or(
                    if image_user.is_empty() {
                        "0"
                    } else {
                        image_user
                    },
                );
                let mut values: Vec<&str> = Vec::new();
                for s in &step.secrets {
                    let value = &secrets[s];
                    values.push(value);
                    let write = ExecSpec {
                        argv: vec![
                            "/bin/sh".into(),
                            "-c".into(),
                            "umask 077 && cat > \"$0\" && chown \"$1\" \"$0\" && chmod 0400 \"$0\""
                                .into(),
                            format!("/run/secrets/{s}"),
                            owner.to_string(),
                        ],
                        user: Some(ROOT.into()),
                        stdin: Some(value.as_bytes().to_vec()),
                        ..Default::default()
                    };
                    let code = self
                        .engine
                        .exec(id, &write, &mut |_, _| {})
                        .await
                        .map_err(engine_err)?;
                    if code != 0 {
                        return Err(engine_err(EngineError::Other(format!(
                            "could not place secret `{s}` (exit code {code})"
                        ))));
                    }
                }
                let spec = ExecSpec {
                    argv: run_argv(cmd),
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
                let mut removed = 0;
                if !step.secrets.is_empty() {
                    let argv = ["rm", "-f"]
                        .iter()
                        .map(|s| s.to_string())
                        .chain(step.secrets.iter().map(|s| format!("/run/secrets/{s}")))
                        .collect();
                    removed = self
                        .engine
                        .exec(
                            id,
                            &ExecSpec {
                                argv,
                                user: Some(ROOT.into()),
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
                if removed != 0 {
                    return Err(engine_err(EngineError::Other(format!(
                        "could not remove the secrets after the step (exit code {removed})"
                    ))));
                }
                self.mounts_unchanged(i, step, inputs).await
            }
        }
    }

    /// The read-only mounts of step `i` still hold what its cache key was computed from: a
    /// folder that changed while the step ran fails it, so nothing of it is cached.
    async fn mounts_unchanged(
        &self,
        i: usize,
        step: &Step,
        inputs: &StepInputs,
    ) -> Result<(), ApplyError> {
        for (m, before) in step.container.mounts.iter().zip(&inputs.mounted) {
            let src = m.src.clone();
            let now = tokio::task::spawn_blocking(move || crate::archive::tree_digest_of(&src))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            let problem = match now {
                Ok(now) if now == **before => continue,
                Ok(_) => {
                    std::io::Error::other(format!("`{}` changed while the step ran", m.src_display))
                }
                Err(e) => e,
            };
            return Err(ApplyError::MountSource {
                index: i + 1,
                name: step.name.clone(),
                source: problem,
            });
        }
        Ok(())
    }

    /// Records a checkpoint's note for `plan`. Best effort: without it, plan only says that a
    /// step is not in the cache.
    fn note(&self, image: &str, note: &CheckpointNote) {
        if let Some(store) = &self.opts.notes {
            let _ = store.write(image, note);
        }
    }

    async fn keep_failed(&self, id: &str, step: usize, config: &ImageConfig) {
        let spec = CommitSpec {
            author: None,
            message: Some(format!("failed at step {step}")),
            config: config.clone(),
            cat_as_command: self.cat_as_command(),
        };
        let kept = async {
            let image = self.engine.commit(id, &spec).await?;
            let tag = format!(
                "{}-step{step}",
                self.run_name.trim_start_matches("pipeline-")
            );
            self.engine.tag(&image, DEBUG_REPOSITORY, &tag).await?;
            Ok::<_, EngineError>(format!("{DEBUG_REPOSITORY}:{tag}"))
        };
        match kept.await {
            Ok(image) => self.sink.event(Event::KeptFailed {
                image,
                step,
                cli: self.engine.cli_name(),
            }),
            Err(e) => self.sink.event(Event::Warning(format!(
                "could not keep the failed container: {e}"
            ))),
        }
    }
}

/// What a step's container needs: a copy needs no mount and no network.
fn container_options(step: &Step) -> ContainerOptions {
    match step.action {
        Action::Run(_) => step.container.clone(),
        Action::Copy(_) => ContainerOptions::default(),
    }
}

/// Whether `step` can run in a container made with `options`: a command needs exactly its
/// options; a copy needs its destination outside every mount (it would land in the mount,
/// not in the image).
fn fits(step: &Step, options: &ContainerOptions) -> bool {
    match &step.action {
        Action::Run(_) => step.container == *options,
        Action::Copy(c) => {
            let dest = c
                .dest
                .strip_suffix('/')
                .filter(|d| !d.is_empty())
                .unwrap_or("/");
            !options.mount_points().any(|m| paths_overlap(m, dest))
        }
    }
}

/// The argv that runs a step's command. A shell command writes its stderr into its stdout: the
/// engine reads the two pipes of an exec separately and may deliver a later stderr line before
/// an earlier stdout one, so one pipe is the only way to show the output in the order the step
/// wrote it. Redirections in the command still apply (`2>/dev/null`, `x=$(cmd)` takes stdout
/// only). An exec-form command runs as written, with its two streams.
fn run_argv(cmd: &Command) -> Vec<String> {
    match cmd {
        Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), format!("exec 2>&1; {s}")],
        Command::Exec(v) => v.clone(),
    }
}
