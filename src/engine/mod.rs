//! The engine boundary. Everything the tool asks of a container engine goes through
//! [`Engine`]; only `docker.rs` knows bollard, and only this folder knows which engine
//! (Docker, or Podman through its Docker-compatible API) answers.

pub(crate) mod connect;
pub(crate) mod docker;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod podman;

pub(crate) use crate::archive::Archive;
pub(crate) use crate::cache::CacheImage;
pub(crate) use crate::credentials::Credentials;
pub(crate) use crate::model::{ImageConfig, DEFAULT_PATH};

use std::collections::BTreeMap;

pub(crate) use crate::image::diff::{Change, ChangeKind};

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("cannot reach the Docker engine at `{endpoint}`: {detail}")]
    Unreachable { endpoint: String, detail: String },
    /// The connection broke during a call (reset, closed, timed out): worth retrying.
    #[error("lost the connection to the Docker engine at `{endpoint}`: {detail}")]
    Connection { endpoint: String, detail: String },
    #[error("{0}")]
    NotFound(String),
    #[error("authentication refused: {0}")]
    Auth(String),
    /// A registry failure the engine relayed; `transient` for resets and 5xx answers.
    #[error("{message}")]
    Registry { message: String, transient: bool },
    /// The engine answered with an error status.
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Other(String),
    /// A failure only the engine's setup causes (Podman's), with what to do about it: the
    /// renderer prints the hint after the error.
    #[error("{source}")]
    Hinted {
        #[source]
        source: Box<EngineError>,
        hint: &'static str,
    },
}

impl EngineError {
    /// What to do about this failure, when the engine's setup causes it.
    pub(crate) fn hint(&self) -> Option<&'static str> {
        match self {
            EngineError::Hinted { hint, .. } => Some(hint),
            _ => None,
        }
    }

    /// The failure itself, without its hint.
    pub(crate) fn unhinted(&self) -> &EngineError {
        match self {
            EngineError::Hinted { source, .. } => source.unhinted(),
            other => other,
        }
    }

    /// True for failures worth retrying: broken connections, a registry's resets and 5xx
    /// answers, a gateway's 502-504.
    pub(crate) fn is_transient(&self) -> bool {
        match self.unhinted() {
            EngineError::Connection { .. } => true,
            EngineError::Registry { transient, .. } => *transient,
            EngineError::Api { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// True when the engine refused because the object is in use (HTTP 409).
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self.unhinted(), EngineError::Api { status: 409, .. })
    }
}

/// What the tool needs to know of an image.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ImageInfo {
    pub(crate) id: String,
    pub(crate) config: ImageConfig,
    /// `repository@sha256:...` for each repository the image was pushed to or pulled from.
    pub(crate) repo_digests: Vec<String>,
    pub(crate) comment: String,
    /// Creation time as the engine reports it (RFC 3339, nanoseconds).
    pub(crate) created: String,
    /// Layer diff ids, bottom first.
    pub(crate) layers: Vec<String>,
    /// The platform its config says; `None` when it says none.
    pub(crate) platform: Option<crate::model::Platform>,
    /// Bytes of its file system (all layers, uncompressed) as the engine counts them.
    pub(crate) size: u64,
}

/// A build container.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerSpec {
    pub(crate) name: String,
    pub(crate) image: String,
    /// `tmpfs` mounts (path -> options), e.g. for `/run/secrets`.
    pub(crate) tmpfs: BTreeMap<String, String>,
    /// The image has an entrypoint (which the build container overrides) and a command.
    pub(crate) image_entrypoint: bool,
    pub(crate) image_cmd: bool,
    /// `os/arch[/variant]` to create the container for; `None`: the engine's own.
    pub(crate) platform: Option<String>,
    /// Volumes and host folders mounted in it.
    pub(crate) mounts: Vec<MountSpec>,
    /// `none` or `host`; `None`: the engine's default network.
    pub(crate) network: Option<String>,
}

impl ContainerSpec {
    /// Whether the container runs `cat` as its command, keeping the image's unset entrypoint
    /// (an image with a command and no entrypoint), rather than as its entrypoint with an
    /// empty command. A commit takes from the container what its config leaves empty: only
    /// the first keeps an unset entrypoint unset, only the second can commit no command.
    pub(crate) fn cat_as_command(&self) -> bool {
        !self.image_entrypoint && self.image_cmd
    }
}

/// A volume or a host folder mounted in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountSpec {
    /// A named volume, read-write; it starts empty (nothing of the image is copied in). The
    /// labels are given again, for when the engine has to create it here (removed since).
    Volume {
        name: String,
        labels: BTreeMap<String, String>,
        target: String,
    },
    /// A folder of the engine's host, read-only.
    Bind {
        source: std::path::PathBuf,
        target: String,
    },
}

/// A volume as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeInfo {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// What state a container is in, as far as the tool cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerState {
    /// Created, never started.
    Created,
    /// Running, paused, restarting: someone may be using it.
    Alive,
    /// Being removed already.
    Removing,
    /// Exited or dead: nothing runs in it.
    Stopped,
}

/// A container as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerInfo {
    pub(crate) id: String,
    /// The name, without the engine's leading `/`.
    pub(crate) name: String,
    pub(crate) state: ContainerState,
    /// Creation time, unix seconds.
    pub(crate) created: i64,
}

/// A command run in the build container.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecSpec {
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) user: Option<String>,
    pub(crate) workdir: Option<String>,
    /// Bytes written to the command's standard input, which is then closed.
    pub(crate) stdin: Option<Vec<u8>>,
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputStream {
    Stdout,
    Stderr,
}

/// A commit of the build container into an image.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitSpec {
    pub(crate) author: Option<String>,
    pub(crate) message: Option<String>,
    /// The complete config of the new image. Fields the engine would otherwise merge in from
    /// the container (its entrypoint, command) are always given explicitly.
    pub(crate) config: ImageConfig,
    /// The container runs `cat` as its command (see [`ContainerSpec::cat_as_command`]).
    pub(crate) cat_as_command: bool,
}

/// Progress of a pull or push, one layer or status line at a time.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub(crate) id: Option<String>,
    pub(crate) status: String,
    pub(crate) current: Option<i64>,
    pub(crate) total: Option<i64>,
}

/// The engine operations the tool uses.
#[allow(async_fn_in_trait)]
pub(crate) trait Engine {
    /// A name for messages: the endpoint.
    fn endpoint(&self) -> &str;
    /// The command-line client that matches this engine, for hints (`docker run ...`).
    fn cli_name(&self) -> &'static str {
        "docker"
    }
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError>;
    async fn pull(
        &self,
        reference: &str,
        creds: Option<Credentials>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), EngineError>;
    /// Every image tagged as a cache entry.
    async fn list_cache(&self) -> Result<Vec<CacheImage>, EngineError>;
    /// Creates a build container. It lives only as long as this engine client: when the
    /// tool's process ends, however it ends, the container stops and is removed.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError>;
    async fn start_container(&self, id: &str) -> Result<(), EngineError>;
    /// Runs a command to completion, feeding its output; returns the exit code.
    async fn exec(
        &self,
        id: &str,
        spec: &ExecSpec,
        output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<i64, EngineError>;
    /// Extracts a tar archive at `path` (a directory) in the container.
    async fn upload(&self, id: &str, path: &str, archive: Archive) -> Result<(), EngineError>;
    /// Whether `path` exists in the container (as anything: file, folder, symlink).
    async fn path_exists(&self, id: &str, path: &str) -> Result<bool, EngineError>;
    async fn commit(&self, id: &str, spec: &CommitSpec) -> Result<String, EngineError>;
    // Read by the layer writer, which the build calls once wired in.
    #[allow(dead_code)]
    /// What changed in the container's file system since it was created from its image.
    async fn changes(&self, id: &str) -> Result<Vec<Change>, EngineError>;
    // Read by the layer writer, which the build calls once wired in.
    #[allow(dead_code)]
    /// A tar stream of `path` in the container: its last component, and everything below it
    /// when it is a folder. A reader may stop early (dropping the stream ends the transfer).
    async fn download(&self, id: &str, path: &str) -> Result<Archive, EngineError>;
    // Read by the layer writer, which the build calls once wired in.
    #[allow(dead_code)]
    /// The image `id` as `docker save` writes it: a tar of its config, its layers
    /// (uncompressed) and a `manifest.json`.
    async fn export_image(&self, id: &str) -> Result<Archive, EngineError>;
    /// The images `ids` in one `docker save` tar (a layer they share is in it once), with one
    /// `manifest.json` entry per image.
    async fn export_images(&self, ids: &[String]) -> Result<Archive, EngineError>;
    async fn tag(&self, image: &str, repository: &str, tag: &str) -> Result<(), EngineError>;
    /// Loads an image archive as `docker load` reads it (a `manifest.json`, its config and
    /// layers); `tag` is the name the archive gives it.
    async fn load_image(&self, archive: Vec<u8>, tag: &str) -> Result<(), EngineError>;
    /// Loads the image archive at `path` as `docker load` reads it, streamed from the file.
    async fn load_file(&self, path: &std::path::Path) -> Result<(), EngineError>;
    async fn remove_container(&self, id: &str) -> Result<(), EngineError>;
    /// Removes containers whose name starts with `prefix`; returns how many.
    async fn remove_containers_named(&self, prefix: &str) -> Result<usize, EngineError>;
    /// Every container (in any state) whose name starts with `prefix`.
    async fn list_containers_named(&self, prefix: &str) -> Result<Vec<ContainerInfo>, EngineError>;
    /// Pushes `repository:tag`; returns the manifest digest the registry stored.
    async fn push(
        &self,
        repository: &str,
        tag: &str,
        creds: Option<Credentials>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String, EngineError>;
    /// The manifest digest a registry holds for `reference`, `None` when it has none.
    async fn remote_digest(
        &self,
        reference: &str,
        creds: Option<Credentials>,
    ) -> Result<Option<String>, EngineError>;
    /// Whether the manifest `digest` a registry holds under `repository` (a tag of it) is
    /// `image`. Docker records the manifest digest of every push and pull of an image: its
    /// repository digests say it. Otherwise (Podman compresses the layers on push, so the
    /// registry's manifest is not the local one; the tool pushes images the engine never
    /// pushed) the registry is asked for the manifest's config, which is the image id.
    async fn is_published(
        &self,
        image: &ImageInfo,
        repository: &str,
        digest: &str,
        _creds: Option<Credentials>,
    ) -> Result<bool, EngineError> {
        Ok(image
            .repo_digests
            .contains(&format!("{repository}@{digest}")))
    }
    /// Removes a tag or an image (without force).
    async fn remove_image(&self, reference: &str) -> Result<(), EngineError>;
    /// The platform the engine runs images for: (`linux`, `amd64`), as registries name them.
    async fn platform(&self) -> Result<(String, String), EngineError>;
    /// Whether the engine runs on this host, so that it can mount this host's folders: it is
    /// reached through a unix socket (or a loopback address).
    fn is_local(&self) -> bool;
    /// Creates the volume `name` with `labels` unless it exists (then it is left as it is).
    async fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError>;
    /// Every volume that has the label `key` with `value`.
    async fn list_volumes(&self, key: &str, value: &str) -> Result<Vec<VolumeInfo>, EngineError>;
    /// Removes a volume; a conflict error when a container uses it. Gone already is fine.
    async fn remove_volume(&self, name: &str) -> Result<(), EngineError>;
}

// The repository the tool tags its cache images under.
pub(crate) use crate::reference::CACHE_REPOSITORY;

/// The name the tool wrote for a name an engine lists (a tag, a `repository@digest`). Docker
/// lists names as they were written; Podman qualifies them: names tagged through the
/// Docker-compatible API as `docker.io/library/NAME` or `docker.io/OWNER/NAME`, names made by
/// Podman itself as `localhost/NAME`. Every name read back from an engine goes through here,
/// so cache lookups, `gc` and publish checks compare like with like.
pub(crate) fn local_name(listed: &str) -> &str {
    ["docker.io/library/", "docker.io/", "localhost/"]
        .iter()
        .find_map(|prefix| listed.strip_prefix(prefix))
        .unwrap_or(listed)
}

/// Whether two working directories of an image config are the same at run time: an unset one
/// (`""`, as Docker stores it) is `/` (as Podman stores it).
pub(crate) fn same_workdir(a: &str, b: &str) -> bool {
    a == b || (a.is_empty() && b == "/") || (a == "/" && b.is_empty())
}

/// An image id as the tool shows and stores it: `sha256:` and the hex digest. Podman gives
/// some ids (a commit's, a parent's) without the prefix; an empty id stays empty.
pub(crate) fn image_id(id: &str) -> String {
    if id.is_empty() || id.starts_with("sha256:") {
        id.to_string()
    } else {
        format!("sha256:{id}")
    }
}

/// The short form of an image id, as docker prints it.
pub(crate) fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::EngineError;

    #[test]
    fn a_hint_is_data_beside_the_message_and_hides_nothing_of_the_failure() {
        let failure = EngineError::Registry {
            message: "http: server gave HTTP response to HTTPS client".into(),
            transient: true,
        };
        let hinted = EngineError::Hinted {
            source: Box::new(failure),
            hint: "mark the registry insecure",
        };
        assert_eq!(
            hinted.to_string(),
            "http: server gave HTTP response to HTTPS client",
            "the message is the engine's, the hint is not appended"
        );
        assert_eq!(hinted.hint(), Some("mark the registry insecure"));
        assert!(hinted.is_transient(), "the failure's kind shows through");
        assert!(matches!(hinted.unhinted(), EngineError::Registry { .. }));
        assert_eq!(EngineError::Other("x".into()).hint(), None);
    }
}
