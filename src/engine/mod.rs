//! The engine boundary. Everything the tool asks of a container engine goes through
//! [`Engine`]; only `docker.rs` knows bollard.

pub mod docker;
pub mod fake;

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

/// A tar archive streamed to the engine.
pub type Archive = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at `{endpoint}`: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("{0}")]
    NotFound(String),
    #[error("authentication refused: {0}")]
    Auth(String),
    #[error("{0}")]
    Registry(String),
    #[error("{0}")]
    Api(String),
}

impl EngineError {
    /// True for failures worth retrying: connection resets, 5xx answers, timeouts.
    pub fn is_transient(&self) -> bool {
        let text = match self {
            EngineError::Registry(t) | EngineError::Api(t) => t.to_lowercase(),
            _ => return false,
        };
        [
            "connection reset",
            "connection refused",
            "broken pipe",
            "use of closed network connection",
            "connection closed",
            "eof",
            "timeout",
            "timed out",
            "500 internal",
            "502",
            "503",
            "504",
            "internal server error",
            "bad gateway",
            "service unavailable",
            "received unexpected http status: 5",
            "blob unknown",
        ]
        .iter()
        .any(|needle| text.contains(needle))
    }
}

/// Registry credentials for one request. The password never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub server: String,
    /// From the docker config, in place of a password.
    pub identity_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, server: {:?}, password: <redacted> }}",
            self.username, self.server
        )
    }
}

/// What the tool needs to know of an image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    pub config: ImageConfig,
    /// `repository@sha256:...` for each repository the image was pushed to or pulled from.
    pub repo_digests: Vec<String>,
    pub comment: String,
    /// Creation time as the engine reports it (RFC 3339, nanoseconds).
    pub created: String,
    /// Layer diff ids, bottom first.
    pub layers: Vec<String>,
}

/// The parts of an image config the tool reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub volumes: Vec<String>,
}

/// One of the tool's cache images, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImage {
    pub id: String,
    pub parent: String,
    /// Cache keys this image is tagged with.
    pub keys: Vec<String>,
    pub created: i64,
}

/// A build container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// `tmpfs` mounts (path -> options), e.g. for `/run/secrets`.
    pub tmpfs: BTreeMap<String, String>,
}

/// A command run in the build container.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Bytes written to the command's standard input, which is then closed.
    pub stdin: Option<Vec<u8>>,
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A commit of the build container into an image.
#[derive(Debug, Clone, Default)]
pub struct CommitSpec {
    pub author: Option<String>,
    pub message: Option<String>,
    /// The complete config of the new image. Fields the engine would otherwise merge in from
    /// the container (its entrypoint, command) are always given explicitly.
    pub config: ImageConfig,
}

/// Progress of a pull or push, one layer or status line at a time.
#[derive(Debug, Clone)]
pub struct Progress {
    pub id: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

/// The engine operations the tool uses.
#[allow(async_fn_in_trait)]
pub trait Engine {
    /// A name for messages: the endpoint.
    fn endpoint(&self) -> &str;
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError>;
    async fn pull(
        &self,
        reference: &str,
        creds: Option<Credentials>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), EngineError>;
    /// Every image tagged as a cache entry.
    async fn list_cache(&self) -> Result<Vec<CacheImage>, EngineError>;
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
    /// Reads one file from the container, if it exists (small files only).
    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError>;
    async fn commit(&self, id: &str, spec: &CommitSpec) -> Result<String, EngineError>;
    async fn tag(&self, image: &str, repository: &str, tag: &str) -> Result<(), EngineError>;
    async fn remove_container(&self, id: &str) -> Result<(), EngineError>;
    /// Removes containers whose name starts with `prefix`; returns how many.
    async fn remove_containers_named(&self, prefix: &str) -> Result<usize, EngineError>;
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
    /// Removes a tag or an image (without force).
    async fn remove_image(&self, reference: &str) -> Result<(), EngineError>;
}

/// The repository the tool tags its cache images under.
pub const CACHE_REPOSITORY: &str = "pipeline-cache";
