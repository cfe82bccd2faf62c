//! An in-memory engine for tests of the planner and executor: it records every call and keeps
//! images, tags and containers consistently, without a daemon.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::*;

#[derive(Debug)]
struct Container {
    name: String,
    image: String,
    state: ContainerState,
    /// Unix seconds.
    created: i64,
}

#[derive(Debug, Default)]
struct State {
    images: HashMap<String, ImageInfo>,
    /// `repository:tag` -> image id.
    tags: HashMap<String, String>,
    parents: HashMap<String, String>,
    /// Container id -> container.
    containers: HashMap<String, Container>,
    remote: HashMap<String, String>,
    /// Volume name -> labels.
    volumes: HashMap<String, BTreeMap<String, String>>,
    calls: Vec<String>,
    next: u64,
}

/// A fake engine. Commands whose argv contains `exit N` exit with N; `sleep S` waits S
/// seconds first (tokio time, so a paused test clock makes it instant); `engine-dies` takes
/// the engine down mid-command. Everything else exits 0. [`FakeEngine::set_down`] makes every
/// call fail as an unreachable engine would. Its containers hold every program in `/bin` (a
/// shell, `cat`) and no other path, unless [`FakeEngine::without_bin`].
#[derive(Debug, Default)]
pub(crate) struct FakeEngine {
    state: Mutex<State>,
    down: AtomicBool,
    name: String,
    /// Its containers have no `/bin`: no shell, no `cat`.
    no_bin: bool,
}

impl FakeEngine {
    /// An engine holding one image under `reference`.
    pub(crate) fn with_image(reference: &str, config: ImageConfig) -> Self {
        let fake = Self::default();
        {
            let mut s = fake.state.lock().unwrap();
            let id = "sha256:base".to_string();
            s.images.insert(
                id.clone(),
                ImageInfo {
                    id: id.clone(),
                    config,
                    ..Default::default()
                },
            );
            s.tags.insert(reference.to_string(), id);
        }
        fake
    }

    /// The same, with images that have no `/bin` (a distroless base).
    pub(crate) fn without_bin(mut self) -> Self {
        self.no_bin = true;
        self
    }

    /// The same, answering as `endpoint`.
    pub(crate) fn named(mut self, endpoint: &str) -> Self {
        self.name = endpoint.to_string();
        self
    }

    /// Stops (or resumes) answering.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn gate(&self) -> Result<(), EngineError> {
        if self.down.load(Ordering::SeqCst) {
            Err(EngineError::Connection {
                endpoint: self.endpoint().to_string(),
                detail: "connection refused".into(),
            })
        } else {
            Ok(())
        }
    }

    /// Every call so far, as `verb argument`.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls whose verb is `verb`.
    pub(crate) fn count(&self, verb: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.split(' ').next() == Some(verb))
            .count()
    }

    pub(crate) fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Live (not removed) containers.
    pub(crate) fn containers(&self) -> usize {
        self.state.lock().unwrap().containers.len()
    }

    /// Adds a container as another process (or a run that is gone) would have left it.
    pub(crate) fn add_container(&self, name: &str, state: ContainerState, created: i64) {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let id = format!("container{}", s.next);
        let c = Container {
            name: name.to_string(),
            image: String::new(),
            state,
            created,
        };
        s.containers.insert(id, c);
    }

    /// The names of the containers there are now, sorted.
    pub(crate) fn container_names(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut names: Vec<String> = s.containers.values().map(|c| c.name.clone()).collect();
        names.sort();
        names
    }

    fn record(&self, call: String) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(call);
        s
    }
}

fn resolve(s: &State, reference: &str) -> Option<String> {
    if s.images.contains_key(reference) {
        return Some(reference.to_string());
    }
    let full = if reference.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    };
    s.tags.get(&full).cloned()
}

impl Engine for FakeEngine {
    fn endpoint(&self) -> &str {
        if self.name.is_empty() {
            "fake://"
        } else {
            &self.name
        }
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        self.gate()?;
        let s = self.record(format!("inspect {reference}"));
        Ok(resolve(&s, reference).and_then(|id| s.images.get(&id).cloned()))
    }

    async fn pull(
        &self,
        reference: &str,
        _: Option<Credentials>,
        _: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), EngineError> {
        self.gate()?;
        let s = self.record(format!("pull {reference}"));
        match resolve(&s, reference) {
            Some(_) => Ok(()),
            None => Err(EngineError::NotFound(format!(
                "manifest for {reference} not found"
            ))),
        }
    }

    async fn list_cache(&self) -> Result<Vec<CacheImage>, EngineError> {
        self.gate()?;
        let s = self.record("list_cache".into());
        let mut by_id: HashMap<String, CacheImage> = HashMap::new();
        for (tag, id) in &s.tags {
            if let Some(key) = tag.strip_prefix(&format!("{CACHE_REPOSITORY}:")) {
                let entry = by_id.entry(id.clone()).or_insert_with(|| CacheImage {
                    id: id.clone(),
                    parent: s.parents.get(id).cloned().unwrap_or_default(),
                    keys: Vec::new(),
                    created: 0,
                });
                entry.keys.push(key.to_string());
            }
        }
        Ok(by_id.into_values().collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.gate()?;
        let mut s = self.record(format!("create {}", spec.image));
        let image =
            resolve(&s, &spec.image).ok_or_else(|| EngineError::NotFound(spec.image.clone()))?;
        s.next += 1;
        let id = format!("container{}", s.next);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let c = Container {
            name: spec.name.clone(),
            image,
            state: ContainerState::Created,
            created: now,
        };
        s.containers.insert(id.clone(), c);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.gate()?;
        let mut s = self.record(format!("start {id}"));
        match s.containers.get_mut(id) {
            Some(c) => {
                c.state = ContainerState::Alive;
                Ok(())
            }
            None => Err(EngineError::NotFound(format!("no container {id}"))),
        }
    }

    async fn exec(
        &self,
        id: &str,
        spec: &ExecSpec,
        output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<i64, EngineError> {
        self.gate()?;
        let line = spec.argv.join(" ");
        drop(self.record(format!("exec {line}")));
        if let Some(secs) = line
            .split("sleep ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
        {
            tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
        }
        if line.contains("engine-dies") {
            self.set_down(true);
            return Err(EngineError::Connection {
                endpoint: self.endpoint().to_string(),
                detail: "the engine went away".into(),
            });
        }
        if !self.state.lock().unwrap().containers.contains_key(id) {
            return Err(EngineError::NotFound(format!("no container {id}")));
        }
        output(OutputStream::Stdout, format!("ran {line}\n").as_bytes());
        let code = line
            .split("exit ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(code)
    }

    async fn upload(&self, id: &str, path: &str, mut archive: Archive) -> Result<(), EngineError> {
        self.gate()?;
        use futures_util::StreamExt;
        let mut bytes = 0;
        while let Some(chunk) = archive.next().await {
            bytes += chunk.map_err(|e| EngineError::Other(e.to_string()))?.len();
        }
        drop(self.record(format!("upload {id} {path} {bytes}")));
        Ok(())
    }

    async fn path_exists(&self, id: &str, path: &str) -> Result<bool, EngineError> {
        self.gate()?;
        drop(self.record(format!("stat {id} {path}")));
        let program = path
            .strip_prefix("/bin/")
            .is_some_and(|name| !name.is_empty() && !name.contains('/'));
        Ok(program && !self.no_bin)
    }

    async fn commit(&self, id: &str, spec: &CommitSpec) -> Result<String, EngineError> {
        self.gate()?;
        let mut s = self.record(format!("commit {id}"));
        let parent = s
            .containers
            .get(id)
            .map(|c| c.image.clone())
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        s.next += 1;
        let image = format!("sha256:image{}", s.next);
        let info = ImageInfo {
            id: image.clone(),
            config: spec.config.clone(),
            comment: spec.message.clone().unwrap_or_default(),
            ..Default::default()
        };
        s.images.insert(image.clone(), info);
        s.parents.insert(image.clone(), parent);
        Ok(image)
    }

    async fn changes(&self, id: &str) -> Result<Vec<Change>, EngineError> {
        drop(self.record(format!("changes {id}")));
        Ok(Vec::new())
    }

    async fn download(&self, id: &str, path: &str) -> Result<Archive, EngineError> {
        drop(self.record(format!("download {id} {path}")));
        Err(EngineError::NotFound(format!("no such path: {path}")))
    }

    async fn export_image(&self, id: &str) -> Result<Archive, EngineError> {
        drop(self.record(format!("export {id}")));
        Err(EngineError::NotFound(format!("no such image: {id}")))
    }

    async fn export_images(&self, ids: &[String]) -> Result<Archive, EngineError> {
        drop(self.record(format!("export {}", ids.join(" "))));
        Err(EngineError::NotFound(format!(
            "no such images: {}",
            ids.join(" ")
        )))
    }

    async fn load_file(&self, path: &std::path::Path) -> Result<(), EngineError> {
        drop(self.record(format!("load-file {}", path.display())));
        Err(EngineError::Other(
            "the fake engine reads no archives".into(),
        ))
    }

    async fn load_image(&self, _archive: Vec<u8>, tag: &str) -> Result<(), EngineError> {
        self.gate()?;
        let mut s = self.record(format!("load {tag}"));
        let id = format!("sha256:loaded-{tag}");
        s.images.insert(
            id.clone(),
            ImageInfo {
                id: id.clone(),
                ..Default::default()
            },
        );
        s.tags.insert(tag.to_string(), id);
        Ok(())
    }

    async fn tag(&self, image: &str, repository: &str, tag: &str) -> Result<(), EngineError> {
        self.gate()?;
        let mut s = self.record(format!("tag {repository}:{tag}"));
        s.tags
            .insert(format!("{repository}:{tag}"), image.to_string());
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.gate()?;
        drop(self.record(format!("remove {id}")).containers.remove(id));
        Ok(())
    }

    async fn remove_containers_named(&self, prefix: &str) -> Result<usize, EngineError> {
        self.gate()?;
        let mut s = self.record(format!("remove_named {prefix}"));
        let before = s.containers.len();
        s.containers.retain(|_, c| !c.name.starts_with(prefix));
        Ok(before - s.containers.len())
    }

    async fn list_containers_named(&self, prefix: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        self.gate()?;
        let s = self.record(format!("list_containers {prefix}"));
        Ok(s.containers
            .iter()
            .filter(|(_, c)| c.name.starts_with(prefix))
            .map(|(id, c)| ContainerInfo {
                id: id.clone(),
                name: c.name.clone(),
                state: c.state,
                created: c.created,
            })
            .collect())
    }

    async fn push(
        &self,
        repository: &str,
        tag: &str,
        _: Option<Credentials>,
        _: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String, EngineError> {
        self.gate()?;
        let mut s = self.record(format!("push {repository}:{tag}"));
        let image = s
            .tags
            .get(&format!("{repository}:{tag}"))
            .cloned()
            .ok_or_else(|| EngineError::NotFound(tag.to_string()))?;
        let digest = format!("sha256:{}", image.trim_start_matches("sha256:"));
        s.remote
            .insert(format!("{repository}:{tag}"), digest.clone());
        if let Some(info) = s.images.get_mut(&image) {
            info.repo_digests.push(format!("{repository}@{digest}"));
        }
        Ok(digest)
    }

    async fn remote_digest(
        &self,
        reference: &str,
        _: Option<Credentials>,
    ) -> Result<Option<String>, EngineError> {
        self.gate()?;
        Ok(self
            .record(format!("remote_digest {reference}"))
            .remote
            .get(reference)
            .cloned())
    }

    async fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        self.gate()?;
        drop(
            self.record(format!("remove_image {reference}"))
                .tags
                .remove(reference),
        );
        Ok(())
    }

    async fn platform(&self) -> Result<(String, String), EngineError> {
        self.gate()?;
        Ok(("linux".into(), "amd64".into()))
    }

    fn is_local(&self) -> bool {
        true
    }

    async fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.gate()?;
        self.record(format!("create_volume {name}"))
            .volumes
            .entry(name.to_string())
            .or_insert_with(|| labels.clone());
        Ok(())
    }

    async fn list_volumes(&self, key: &str, value: &str) -> Result<Vec<VolumeInfo>, EngineError> {
        self.gate()?;
        let s = self.state.lock().unwrap();
        let mut out: Vec<VolumeInfo> = s
            .volumes
            .iter()
            .filter(|(_, l)| l.get(key).map(String::as_str) == Some(value))
            .map(|(name, labels)| VolumeInfo {
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.gate()?;
        self.record(format!("remove_volume {name}"))
            .volumes
            .remove(name);
        Ok(())
    }
}
