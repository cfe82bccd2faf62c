//! The Docker Engine API through bollard: Docker, and Podman's service (what differs there is in
//! `podman.rs`). The only module that knows bollard's types.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::errors::Error as BollardError;
use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerSummaryStateEnum, ExecConfig, HostConfig, Mount,
    MountType, MountVolumeOptions, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptions, CommitContainerOptions, ContainerArchiveInfoOptions,
    CreateContainerOptions, CreateImageOptions, ImportImageOptionsBuilder, ListContainersOptions,
    ListImagesOptions, ListVolumesOptions, PushImageOptions, RemoveContainerOptions,
    RemoveImageOptions, RemoveVolumeOptions, TagImageOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::podman::{self, RawClient};
use super::*;

/// A connected engine that speaks the Docker Engine API: Docker, or Podman's service.
pub(crate) struct DockerEngine {
    docker: Docker,
    endpoint: String,
    /// The attached standard input of each build container, by container id: the container
    /// lives while this connection is open (see `create_container`).
    leases: Mutex<HashMap<String, AttachContainerResults>>,
    /// Set when the engine is Podman (see `podman.rs`); `None` inside when its address is
    /// one the plain client cannot reach.
    podman: Option<Option<RawClient>>,
    /// Build containers whose image sets no `PATH`: their commands get the default one, as
    /// Docker gives them (see `exec`).
    no_path: Mutex<HashSet<String>>,
    /// (`linux`, `amd64`): what the engine said when the tool connected.
    platform: (String, String),
}

/// Client certificates for a TLS engine: `key.pem`, `cert.pem` and `ca.pem` in one folder,
/// as the docker CLI's `DOCKER_CERT_PATH`.
#[derive(Debug, Clone)]
pub(crate) struct TlsDir(pub std::path::PathBuf);

impl DockerEngine {
    /// Connects to the engine at `url` (`unix://PATH`, `tcp://HOST:PORT`, `ssh://[USER@]HOST`),
    /// with TLS when `tls` is given, and negotiates the API version. `DOCKER_HOST` and
    /// `DOCKER_TLS_VERIFY` are not read: the caller decides.
    pub(crate) async fn connect_url(url: &str, tls: Option<&TlsDir>) -> Result<Self, EngineError> {
        let endpoint = url.to_string();
        let unreachable = |detail: String| EngineError::Unreachable {
            endpoint: endpoint.clone(),
            detail,
        };
        let timeout = 1800;
        let make = |version: &bollard::ClientVersion| -> Result<Docker, EngineError> {
            let docker = if let Some(path) = url.strip_prefix("unix://") {
                if !std::path::Path::new(path).exists() {
                    return Err(unreachable("the socket does not exist".into()));
                }
                Docker::connect_with_unix(url, timeout, version)
            } else if url.starts_with("ssh://") {
                Docker::connect_with_ssh(url, timeout, version, None)
            } else if url.starts_with("tcp://")
                || url.starts_with("http://")
                || url.starts_with("https://")
            {
                match tls {
                    Some(TlsDir(dir)) => {
                        for f in ["key.pem", "cert.pem", "ca.pem"] {
                            if !dir.join(f).is_file() {
                                return Err(unreachable(format!(
                                    "TLS is on but `{}` is missing",
                                    dir.join(f).display()
                                )));
                            }
                        }
                        let addr = url.replacen("http://", "tcp://", 1);
                        Docker::connect_with_ssl(
                            &addr,
                            &dir.join("key.pem"),
                            &dir.join("cert.pem"),
                            &dir.join("ca.pem"),
                            timeout,
                            version,
                        )
                    }
                    None if url.starts_with("https://") => return Err(unreachable(
                        "https:// needs client certificates (DOCKER_CERT_PATH or ?cert_path=DIR)"
                            .into(),
                    )),
                    None => Docker::connect_with_http(url, timeout, version),
                }
            } else {
                return Err(unreachable(
                    "unsupported scheme: use unix://, tcp://, https:// or ssh://".into(),
                ));
            }
            .map_err(|e| unreachable(root_cause(&e)))?;
            Ok(docker)
        };
        let docker = make(bollard::API_DEFAULT_VERSION)?;
        // What `negotiate_version` does, from one `/version` answer that also names the engine
        // and its platform (Podman takes most of a second to answer it).
        let version = tokio::time::timeout(Duration::from_secs(20), docker.version())
            .await
            .map_err(|_| unreachable("no answer within 20 s".into()))?
            .map_err(|e| unreachable(root_cause(&e)))?;
        let server = version.api_version.as_deref().and_then(|v| {
            let (major, minor) = v.split_once('.')?;
            Some(bollard::ClientVersion {
                major_version: major.parse().ok()?,
                minor_version: minor.parse().ok()?,
            })
        });
        let docker = match server {
            Some(server) if server < docker.client_version() => make(&server)?,
            Some(_) => docker,
            None => {
                return Err(unreachable(format!(
                    "the engine's /version answer has no valid API version ({:?})",
                    version.api_version
                )))
            }
        };
        let platform = (
            version.os.clone().unwrap_or_else(|| "linux".into()),
            version.arch.clone().unwrap_or_else(|| "amd64".into()),
        );
        let components = version.components.unwrap_or_default();
        let podman = podman::is_podman(components.iter().map(|c| c.name.as_str()))
            .then(|| RawClient::new(url, tls.is_some()));
        Ok(Self {
            docker,
            endpoint,
            leases: Mutex::new(HashMap::new()),
            podman,
            no_path: Mutex::new(HashSet::new()),
            platform,
        })
    }
}

pub(crate) fn root_cause(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

fn is_auth_text(t: &str) -> bool {
    let t = t.to_lowercase();
    // A runtime's "permission denied" (setting rlimits, mounting) is no registry's refusal.
    let t = t.replace("permission denied", "");
    [
        "unauthorized",
        "authentication required",
        "no basic auth",
        "denied",
        "incorrect username or password",
    ]
    .iter()
    .any(|n| t.contains(n))
        || has_status_401(&t)
}

/// An HTTP status 401 in a message, not the digits `401` inside a port or an address
/// (`127.0.0.1:42401`).
fn has_status_401(t: &str) -> bool {
    t.match_indices("401").any(|(at, _)| {
        let before = t[..at].chars().next_back();
        let after = t[at + 3..].chars().next();
        before.is_none_or(|c| !c.is_ascii_digit() && c != ':' && c != '.')
            && after.is_none_or(|c| !c.is_ascii_digit() && c != '.')
    })
}

/// A registry failure the engine relayed as text (inside a pull or push stream, or as the
/// message of an error answer to a registry call): the text is all the engine tells, so
/// this is the one place that reads it.
fn registry_error(message: String) -> EngineError {
    if is_auth_text(&message) {
        return EngineError::Auth(message);
    }
    let t = message.to_lowercase();
    let transient = [
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
    .any(|needle| t.contains(needle));
    EngineError::Registry { message, transient }
}

impl DockerEngine {
    /// The engine lost something the tool was using (a command, the build container).
    fn lost(&self, detail: &str) -> EngineError {
        EngineError::Connection {
            endpoint: self.endpoint.clone(),
            detail: detail.to_string(),
        }
    }

    /// Whether container `id` exists and runs.
    async fn is_running(&self, id: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(c.state.and_then(|s| s.running).unwrap_or(false)),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.convert(e)),
        }
    }

    /// Whether container `id` still runs after a command in it ended with `code`. A command
    /// killed by a signal (128 + N) may have died with the container, whose stop the engine
    /// reports a moment after the command's: ask again for a short while before believing it.
    async fn still_running(&self, id: &str, code: i64) -> Result<bool, EngineError> {
        let asks = if code > 128 { 5 } else { 1 };
        for ask in 1..=asks {
            if !self.is_running(id).await? {
                return Ok(false);
            }
            if ask < asks {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(true)
    }

    /// An engine error from a bollard error, naming this engine when the connection broke.
    fn convert(&self, e: BollardError) -> EngineError {
        let e = self.convert_plain(e);
        self.with_hint(e)
    }

    /// Adds what to do to a failure only Podman's setup causes.
    fn with_hint(&self, e: EngineError) -> EngineError {
        if self.podman.is_none() {
            return e;
        }
        match (&e, podman::hint(&e.to_string())) {
            (
                EngineError::Registry { .. }
                | EngineError::Api { .. }
                | EngineError::Other(_)
                | EngineError::NotFound(_),
                Some(hint),
            ) => EngineError::Hinted {
                source: Box::new(e),
                hint,
            },
            _ => e,
        }
    }

    fn convert_plain(&self, e: BollardError) -> EngineError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(message),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => {
                if is_auth_text(&message) {
                    EngineError::Auth(message)
                } else {
                    EngineError::Api {
                        status: status_code,
                        message,
                    }
                }
            }
            BollardError::DockerStreamError { error } => registry_error(error),
            e @ (BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::HttpClientError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_)) => EngineError::Connection {
                endpoint: self.endpoint.clone(),
                detail: root_cause(&e),
            },
            other => EngineError::Other(root_cause(&other)),
        }
    }

    /// An error of a registry call (pull, push, remote digest): the engine relays the
    /// registry's failure as the message of its error answer.
    fn convert_registry(&self, e: BollardError) -> EngineError {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } if status_code != 404 => self.with_hint(registry_error(message)),
            other => self.convert(other),
        }
    }
}

impl DockerEngine {
    /// The image a registry holds under `reference`, read by the tool itself (manifest and
    /// config, no layers) for what Podman's service cannot tell.
    async fn registry_image(
        &self,
        reference: &str,
        creds: Option<Credentials>,
    ) -> Result<Option<crate::registry::RemoteImage>, EngineError> {
        let parsed = crate::reference::ImageRef::parse(reference).map_err(EngineError::Other)?;
        let (os, arch) = self.platform().await?;
        let registry =
            crate::registry::Registry::new(parsed.registry_host(), creds.as_ref(), &os, &arch);
        registry.image(reference).await.map_err(|e| match e {
            crate::registry::RegistryError::Auth(m) => EngineError::Auth(m),
            other => self.with_hint(EngineError::Registry {
                message: other.to_string(),
                transient: true,
            }),
        })
    }

    /// Creates a build container on Podman: with `UnsetEnvAll` and the image's own
    /// environment, so that nothing Podman adds (`container=podman`, containers.conf's `env`)
    /// reaches a commit (see `podman.rs`).
    async fn create_on_podman(
        &self,
        raw: Option<&RawClient>,
        spec: &ContainerSpec,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let raw = raw.ok_or_else(|| {
            EngineError::Other(format!(
                "the engine at `{}` is Podman, whose build containers are created through \
                 its unix socket or a plain tcp:// address: use one of those",
                self.endpoint
            ))
        })?;
        let env = match self.inspect_image(&spec.image).await? {
            Some(image) => image.config.env,
            None => {
                return Err(EngineError::NotFound(format!(
                    "no such image: {}",
                    spec.image
                )))
            }
        };
        let body = serde_json::to_value(&body)
            .map_err(|e| EngineError::Other(format!("the container config: {e}")))?;
        let id = raw
            .create_container(&spec.name, podman::create_body(body, &env)?)
            .await
            .map_err(|e| self.with_hint(e))?;
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            self.no_path
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone());
        }
        Ok(id)
    }
}

impl DockerEngine {
    /// Podman's commit `id` without the mount points Podman made in the container's layer when
    /// it set the container up (on attach, before any start; see `image::mount_points`): the
    /// image is exported, written again with its top layer without them, loaded back, and used
    /// in place of the commit (which is removed). The same id when the layer holds none.
    async fn without_mount_points(&self, id: String) -> Result<String, EngineError> {
        let failed = |e: std::io::Error| {
            EngineError::Other(format!(
                "the engine at `{}`: cannot write the committed image {id} without Podman's \
                 mount points: {e}",
                self.endpoint
            ))
        };
        let top = self
            .inspect_image(&id)
            .await?
            .and_then(|i| i.layers.last().cloned())
            .ok_or_else(|| EngineError::Other(format!("the committed image {id} is missing")))?;
        let export = self.export_image(&id).await?;
        let out = tempfile::tempfile().map_err(failed)?;
        let (rewritten, mut out) = crate::image::bridge::read_blocking(export, move |r| {
            let mut out = out;
            let rewritten = crate::image::mount_points::rewrite_export(r, &top, &mut out)?;
            Ok::<_, std::io::Error>((rewritten, out))
        })
        .await
        .map_err(failed)?;
        let Some(rewritten) = rewritten else {
            return Ok(id);
        };
        std::io::Seek::rewind(&mut out).map_err(failed)?;
        self.load_stream(file_stream(tokio::fs::File::from_std(out)))
            .await?;
        if self.inspect_image(&rewritten.id).await?.is_none() {
            return Err(EngineError::Other(format!(
                "the engine at `{}` did not keep the image {} it loaded",
                self.endpoint, rewritten.id
            )));
        }
        if rewritten.id != id {
            // Untagged and never used.
            let _ = self.remove_image(&id).await;
        }
        Ok(rewritten.id)
    }

    /// Loads the image archive (`docker save`'s format) that `archive` streams.
    async fn load_stream(&self, archive: Archive) -> Result<(), EngineError> {
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut stream = self
            .docker
            .import_image(options, bollard::body_try_stream(archive), None);
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| self.convert(e))?;
            if let Some(detail) = info.error_detail {
                return Err(EngineError::Other(detail.message.unwrap_or_default()));
            }
        }
        Ok(())
    }
}

/// The bytes of `file`, from where it stands, as a stream.
fn file_stream(file: tokio::fs::File) -> Archive {
    Box::pin(futures_util::stream::try_unfold(
        file,
        |mut file| async move {
            let mut buf = vec![0; 1 << 20];
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
            buf.truncate(n);
            Ok((n > 0).then(|| (bytes::Bytes::from(buf), file)))
        },
    ))
}

impl DockerEngine {
    // Used by `download` and `export_image`, which the build calls once the layer writer is
    // wired in.
    #[allow(dead_code)]
    /// A response body as an archive stream. The engine's refusal (a missing path or image)
    /// arrives as the stream's first item: it is read here, so that the caller gets it as the
    /// call's error.
    async fn body(
        &self,
        stream: impl futures_util::Stream<Item = Result<bytes::Bytes, BollardError>> + Send + 'static,
    ) -> Result<Archive, EngineError> {
        let mut stream = Box::pin(stream);
        let first = match stream.next().await {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => return Err(self.convert(e)),
        };
        let endpoint = self.endpoint.clone();
        let rest = stream.map(move |item| {
            item.map_err(|e| {
                std::io::Error::other(format!(
                    "the engine at `{endpoint}` broke off a transfer: {}",
                    root_cause(&e)
                ))
            })
        });
        Ok(Box::pin(
            futures_util::stream::iter(first.map(Ok)).chain(rest),
        ))
    }
}

/// The entrypoint and command a commit sends. Docker's commit takes from the container what
/// its config leaves empty: an empty command becomes the container's, a null entrypoint too
/// (only when the entrypoint is empty). So:
/// - an entrypoint is sent with the command as it is (null stays null, as after a
///   Dockerfile's `ENTRYPOINT` without `CMD`);
/// - without one, a container running `cat` as its command (its entrypoint the image's null)
///   keeps the entrypoint as asked, and one running `cat` as its entrypoint gets an empty
///   entrypoint (`[]`: the same at run time; a null one would be `cat`) and an explicit
///   command, empty when there is none (the container's command is empty too). The first
///   kind cannot commit an image without a command: the build never asks it to.
fn commit_command(
    c: &ImageConfig,
    cat_as_command: bool,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    if c.entrypoint.as_ref().is_some_and(|e| !e.is_empty()) {
        return (c.entrypoint.clone(), c.cmd.clone());
    }
    let cmd = Some(c.cmd.clone().unwrap_or_default());
    if cat_as_command {
        (c.entrypoint.clone(), cmd)
    } else {
        (Some(Vec::new()), cmd)
    }
}

/// The first field where the stored config differs from the one asked for, if any.
fn config_mismatch(asked: &ImageConfig, stored: &ImageConfig) -> Option<&'static str> {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let set = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    if list(&asked.cmd) != list(&stored.cmd) {
        return Some("cmd");
    }
    if list(&asked.entrypoint) != list(&stored.entrypoint) {
        return Some("entrypoint");
    }
    if set(&asked.env) != set(&stored.env) {
        return Some("env");
    }
    if asked.labels != stored.labels {
        return Some("labels");
    }
    if set(&asked.exposed_ports) != set(&stored.exposed_ports) {
        return Some("exposed ports");
    }
    if asked.user != stored.user {
        return Some("user");
    }
    if asked.workdir != stored.workdir {
        return Some("workdir");
    }
    if set(&asked.volumes) != set(&stored.volumes) {
        return Some("volumes");
    }
    if asked.healthcheck.as_ref().map(|h| &h.test) != stored.healthcheck.as_ref().map(|h| &h.test) {
        return Some("healthcheck");
    }
    if asked.stop_signal != stored.stop_signal {
        return Some("stop signal");
    }
    None
}

/// A duration the engine gives in nanoseconds (0: unset).
fn nanos(n: Option<i64>) -> Option<Duration> {
    n.filter(|n| *n > 0)
        .map(|n| Duration::from_nanos(n.unsigned_abs()))
}

fn duration_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A mount as the engine takes it. A cache volume starts empty, as BuildKit's cache mounts
/// do (the engine would otherwise copy the image's files at the path into a new volume).
fn mount(m: &MountSpec) -> Mount {
    match m {
        MountSpec::Volume {
            name,
            labels,
            target,
        } => Mount {
            target: Some(target.clone()),
            source: Some(name.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                labels: Some(labels.clone().into_iter().collect()),
                ..Default::default()
            }),
            ..Default::default()
        },
        MountSpec::Bind { source, target } => Mount {
            target: Some(target.clone()),
            source: Some(source.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        },
    }
}

/// Whether an engine URL reaches this host: a unix socket, or TCP to a loopback address.
fn is_local_url(url: &str) -> bool {
    if url.starts_with("unix://") {
        return true;
    }
    let Some(rest) = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn credentials(c: Option<Credentials>) -> Option<DockerCredentials> {
    c.map(|c| DockerCredentials {
        username: (!c.username.is_empty()).then_some(c.username),
        password: (!c.password.is_empty()).then_some(c.password),
        serveraddress: Some(c.server),
        identitytoken: c.identity_token,
        ..Default::default()
    })
}

fn progress_of(
    id: Option<String>,
    status: Option<String>,
    detail: Option<&bollard::models::ProgressDetail>,
) -> Progress {
    Progress {
        id,
        status: status.unwrap_or_default(),
        current: detail.and_then(|d| d.current),
        total: detail.and_then(|d| d.total),
    }
}

impl Engine for DockerEngine {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        let image = match self.docker.inspect_image(reference).await {
            Ok(i) => i,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(self.convert(e)),
        };
        let c = image.config.unwrap_or_default();
        Ok(Some(ImageInfo {
            id: image_id(&image.id.unwrap_or_default()),
            config: ImageConfig {
                cmd: c.cmd,
                entrypoint: c.entrypoint,
                env: c.env.unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                exposed_ports: c.exposed_ports.unwrap_or_default(),
                user: c.user.unwrap_or_default(),
                workdir: c.working_dir.unwrap_or_default(),
                volumes: c.volumes.unwrap_or_default(),
                healthcheck: c.healthcheck.map(|h| crate::model::Healthcheck {
                    test: h.test.unwrap_or_default(),
                    interval: nanos(h.interval),
                    timeout: nanos(h.timeout),
                    start_period: nanos(h.start_period),
                    retries: h.retries.and_then(|r| u32::try_from(r).ok()),
                }),
                stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
                shell: c.shell.filter(|s| !s.is_empty()),
                onbuild: c.on_build.filter(|s| !s.is_empty()),
            },
            repo_digests: image
                .repo_digests
                .unwrap_or_default()
                .iter()
                .map(|d| local_name(d).to_string())
                .collect(),
            comment: image.comment.unwrap_or_default(),
            created: image.created.unwrap_or_default(),
            layers: image.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            platform: match (image.os, image.architecture) {
                (Some(os), Some(arch)) => Some(crate::model::Platform {
                    os,
                    arch,
                    variant: image.variant.filter(|v| !v.is_empty()),
                }),
                _ => None,
            },
        }))
    }

    async fn pull(
        &self,
        reference: &str,
        creds: Option<Credentials>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), EngineError> {
        let options = CreateImageOptions {
            from_image: Some(reference.to_string()),
            ..Default::default()
        };
        let mut stream = self
            .docker
            .create_image(Some(options), None, credentials(creds));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.convert_registry(e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(self.with_hint(registry_error(err)));
            }
            progress(progress_of(
                info.id,
                info.status,
                info.progress_detail.as_ref(),
            ));
        }
        Ok(())
    }

    async fn list_cache(&self) -> Result<Vec<CacheImage>, EngineError> {
        let filters =
            HashMap::from([("reference".to_string(), vec![CACHE_REPOSITORY.to_string()])]);
        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.convert(e))?;
        let prefix = format!("{CACHE_REPOSITORY}:");
        Ok(images
            .into_iter()
            .map(|i| CacheImage {
                keys: i
                    .repo_tags
                    .iter()
                    .filter_map(|t| local_name(t).strip_prefix(&prefix).map(str::to_string))
                    .collect(),
                id: image_id(&i.id),
                parent: image_id(&i.parent_id),
                created: i.created,
            })
            .collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        // The build container only waits for execs, and only as long as this process lives:
        // its main process reads its standard input until end of file, and that input is a
        // connection this client holds open (attached below, before the start). When the
        // process ends, however it ends (SIGKILL too), the kernel closes the connection, the
        // engine closes the container's input (`StdinOnce`), `cat` exits, the container
        // stops, its tmpfs (the secrets) is gone and `AutoRemove` removes it. `init` makes
        // signals and the reaping of execs work. A commit takes from the container what its
        // body leaves null, and an image's unset entrypoint must stay null: so `cat` is the
        // command (the container's entrypoint stays the image's null) when the image has a
        // command and no entrypoint; otherwise `cat` is the entrypoint (and the commit sets
        // entrypoint and command explicitly, see `commit_command`).
        let (entrypoint, cmd) = if spec.cat_as_command() {
            (None, Some(vec!["cat".to_string()]))
        } else {
            (Some(vec!["cat".to_string()]), Some(Vec::new()))
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint,
            cmd,
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            host_config: Some(HostConfig {
                init: Some(true),
                auto_remove: Some(true),
                tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.clone().into_iter().collect()),
                mounts: (!spec.mounts.is_empty()).then(|| spec.mounts.iter().map(mount).collect()),
                network_mode: spec.network.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            platform: spec.platform.clone().unwrap_or_default(),
        };
        let created_id = match &self.podman {
            None => {
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| self.convert(e))?
                    .id
            }
            Some(raw) => self.create_on_podman(raw.as_ref(), spec, body).await?,
        };
        let attach = AttachContainerOptions {
            stdin: true,
            stream: true,
            ..Default::default()
        };
        match self
            .docker
            .attach_container(&created_id, Some(attach))
            .await
        {
            Ok(lease) => {
                self.leases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(created_id.clone(), lease);
                Ok(created_id)
            }
            Err(e) => {
                let _ = self.remove_container(&created_id).await;
                Err(self.convert(e))
            }
        }
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| self.convert(e))
    }

    async fn exec(
        &self,
        id: &str,
        spec: &ExecSpec,
        output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<i64, EngineError> {
        let mut env = spec.env.clone();
        let no_path = self
            .no_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id);
        if no_path && !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        let config = ExecConfig {
            attach_stdin: Some(spec.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(spec.argv.clone()),
            env: (!env.is_empty()).then_some(env),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(id, config)
            .await
            .map_err(|e| self.convert(e))?;
        match self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| self.convert(e))?
        {
            StartExecResults::Attached {
                output: mut stream,
                mut input,
            } => {
                if let Some(bytes) = &spec.stdin {
                    input.write_all(bytes).await.map_err(|e| {
                        EngineError::Other(format!("writing to the command's input: {e}"))
                    })?;
                    input.shutdown().await.map_err(|e| {
                        EngineError::Other(format!("closing the command's input: {e}"))
                    })?;
                }
                drop(input);
                while let Some(item) = stream.next().await {
                    match item.map_err(|e| self.convert(e))? {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            output(OutputStream::Stdout, &message)
                        }
                        LogOutput::StdErr { message } => output(OutputStream::Stderr, &message),
                        LogOutput::StdIn { .. } => {}
                    }
                }
            }
            StartExecResults::Detached => {
                return Err(EngineError::Other("the engine detached the exec".into()))
            }
        }
        // The output ends when the command does, and also when the engine restarts or the
        // container dies under it (then the exec may be gone too): tell those apart, and name
        // the engine for them.
        let code = match self.docker.inspect_exec(&exec.id).await {
            Ok(i) if i.running == Some(true) => {
                return Err(self.lost("the command's output ended while it still runs"))
            }
            Ok(i) => i.exit_code,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => None,
            Err(e) => return Err(self.convert(e)),
        };
        match code {
            Some(0) => Ok(0),
            Some(code) if self.still_running(id, code).await? => Ok(code),
            None if self.is_running(id).await? => {
                Err(self.lost("the engine reported no exit code for the command"))
            }
            _ => Err(self.lost(
                "the build container stopped during the command: the engine restarted, or \
                 the container was stopped or removed from outside",
            )),
        }
    }

    async fn upload(&self, id: &str, path: &str, archive: Archive) -> Result<(), EngineError> {
        let options = UploadToContainerOptions {
            path: path.to_string(),
            // A file must never replace a folder (a copy to `/etc` would drop all of it).
            no_overwrite_dir_non_dir: Some("true".into()),
            ..Default::default()
        };
        self.docker
            .upload_to_container(id, Some(options), bollard::body_try_stream(archive))
            .await
            .map_err(|e| self.convert(e))
    }

    async fn path_exists(&self, id: &str, path: &str) -> Result<bool, EngineError> {
        let options = ContainerArchiveInfoOptions {
            path: path.to_string(),
        };
        match self
            .docker
            .get_container_archive_info(id, Some(options))
            .await
        {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.convert(e)),
        }
    }

    async fn commit(&self, container: &str, spec: &CommitSpec) -> Result<String, EngineError> {
        let c = &spec.config;
        // Podman reads the config from `changes` only, Docker from the body (which `changes`
        // could not carry exactly: Docker's `ENV` there expands `$NAME`).
        let (entrypoint, cmd) = commit_command(c, spec.cat_as_command);
        let changes =
            match self.podman {
                Some(_) => Some(podman::commit_changes(c, entrypoint.as_deref()).map_err(
                    |why| EngineError::Other(format!("the engine at `{}`: {why}", self.endpoint)),
                )?),
                None => None,
            };
        let options = CommitContainerOptions {
            container: Some(container.to_string()),
            author: spec.author.clone(),
            comment: spec.message.clone(),
            // Nothing runs in the build container between steps, so pausing it buys nothing.
            pause: false,
            changes,
            ..Default::default()
        };
        let config = ContainerConfig {
            cmd,
            entrypoint,
            env: Some(c.env.clone()),
            labels: Some(c.labels.clone().into_iter().collect()),
            exposed_ports: Some(c.exposed_ports.clone()),
            user: Some(c.user.clone()),
            working_dir: Some(c.workdir.clone()),
            volumes: Some(c.volumes.clone()),
            healthcheck: c
                .healthcheck
                .as_ref()
                .map(|h| bollard::models::HealthConfig {
                    test: Some(h.test.clone()),
                    interval: h.interval.map(duration_nanos),
                    timeout: h.timeout.map(duration_nanos),
                    start_period: h.start_period.map(duration_nanos),
                    retries: h.retries.map(i64::from),
                    ..Default::default()
                }),
            stop_signal: c.stop_signal.clone(),
            shell: c.shell.clone(),
            on_build: c.onbuild.clone(),
            ..Default::default()
        };
        let id = self
            .docker
            .commit_container(options, config)
            .await
            .map_err(|e| self.convert(e))?;
        let mut id = image_id(&id.id);
        if self.podman.is_some() {
            id = self.without_mount_points(id).await?;
        }
        // What the engine stored is checked, never assumed.
        let stored = self
            .inspect_image(&id)
            .await?
            .ok_or_else(|| EngineError::Other(format!("the committed image {id} is missing")))?;
        let asked = match self.podman {
            Some(_) => podman::as_stored(c, &stored.config),
            None => c.clone(),
        };
        if let Some(field) = config_mismatch(&asked, &stored.config) {
            // Untagged and never used: leave nothing of it behind.
            let _ = self.remove_image(&id).await;
            return Err(EngineError::Other(format!(
                "the engine at `{}` committed a different config than asked ({field}); the image {id} is not used",
                self.endpoint
            )));
        }
        Ok(id)
    }

    async fn changes(&self, id: &str) -> Result<Vec<Change>, EngineError> {
        use bollard::models::ChangeType;
        let list = self
            .docker
            .container_changes(id)
            .await
            .map_err(|e| self.convert(e))?;
        Ok(list
            .unwrap_or_default()
            .into_iter()
            .map(|c| Change {
                path: c.path,
                kind: match c.kind {
                    ChangeType::_0 => ChangeKind::Modified,
                    ChangeType::_1 => ChangeKind::Added,
                    ChangeType::_2 => ChangeKind::Deleted,
                },
            })
            .collect())
    }

    async fn download(&self, id: &str, path: &str) -> Result<Archive, EngineError> {
        let options = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let stream = self.docker.download_from_container(id, Some(options));
        self.body(stream).await
    }

    async fn export_image(&self, id: &str) -> Result<Archive, EngineError> {
        let stream = self.docker.export_image(id);
        self.body(stream).await
    }

    async fn export_images(&self, ids: &[String]) -> Result<Archive, EngineError> {
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        let stream = self.docker.export_images(&names);
        self.body(stream).await
    }

    fn cli_name(&self) -> &'static str {
        if self.podman.is_some() {
            "podman"
        } else {
            "docker"
        }
    }

    async fn tag(&self, image: &str, repository: &str, tag: &str) -> Result<(), EngineError> {
        let options = TagImageOptions {
            repo: Some(repository.to_string()),
            tag: Some(tag.to_string()),
        };
        self.docker
            .tag_image(image, Some(options))
            .await
            .map_err(|e| self.convert(e))
    }

    async fn load_image(&self, archive: Vec<u8>, _tag: &str) -> Result<(), EngineError> {
        let bytes = bytes::Bytes::from(archive);
        self.load_stream(Box::pin(futures_util::stream::iter([Ok(bytes)])))
            .await
    }

    async fn load_file(&self, path: &std::path::Path) -> Result<(), EngineError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| EngineError::Other(format!("{}: {e}", path.display())))?;
        self.load_stream(file_stream(file)).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let result = match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // 409: removal already in progress (e.g. a second interrupt, or `AutoRemove`).
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(self.convert(e)),
        };
        // Only now let go of its input: closed earlier, the container would stop and
        // remove itself under a commit or this removal.
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.no_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        result
    }

    async fn remove_containers_named(&self, prefix: &str) -> Result<usize, EngineError> {
        let containers = self.list_containers_named(prefix).await?;
        for c in &containers {
            self.remove_container(&c.id).await?;
        }
        Ok(containers.len())
    }

    async fn list_containers_named(&self, prefix: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        let filters = HashMap::from([("name".to_string(), vec![prefix.to_string()])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.convert(e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                // The engine's name filter matches anywhere in the name: keep the prefixed.
                let name = c
                    .names
                    .iter()
                    .flatten()
                    .map(|n| n.trim_start_matches('/'))
                    .find(|n| n.starts_with(prefix))?
                    .to_string();
                use ContainerSummaryStateEnum as S;
                let state = match c.state.unwrap_or(S::EMPTY) {
                    S::CREATED => ContainerState::Created,
                    S::EXITED | S::DEAD => ContainerState::Stopped,
                    S::REMOVING => ContainerState::Removing,
                    // Running, paused, restarting, stopping, or a state this client does not
                    // know: someone may be using it.
                    _ => ContainerState::Alive,
                };
                Some(ContainerInfo {
                    id: c.id?,
                    name,
                    state,
                    created: c.created.unwrap_or(0),
                })
            })
            .collect())
    }

    async fn push(
        &self,
        repository: &str,
        tag: &str,
        creds: Option<Credentials>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String, EngineError> {
        let options = PushImageOptions {
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let mut stream = self
            .docker
            .push_image(repository, Some(options), credentials(creds));
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.convert_registry(e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(self.with_hint(registry_error(err)));
            }
            if let Some(status) = &info.status {
                // "<tag>: digest: sha256:... size: N"
                if let Some(rest) = status.split("digest: ").nth(1) {
                    digest = rest.split_whitespace().next().map(str::to_string);
                }
            }
            progress(progress_of(
                // The engine names no layer in push progress (bollard drops it).
                None,
                info.status,
                info.progress_detail.as_ref(),
            ));
        }
        digest.ok_or_else(|| EngineError::Registry {
            message: format!("the push of `{repository}:{tag}` reported no digest"),
            transient: false,
        })
    }

    async fn remote_digest(
        &self,
        reference: &str,
        creds: Option<Credentials>,
    ) -> Result<Option<String>, EngineError> {
        if self.podman.is_some() {
            // Podman's service has no `/distribution` endpoint: ask the registry.
            return Ok(self
                .registry_image(reference, creds)
                .await?
                .map(|i| i.digest));
        }
        match self
            .docker
            .inspect_registry_image(reference, credentials(creds))
            .await
        {
            Ok(d) => Ok(d.descriptor.digest),
            Err(e) => match self.convert_registry(e) {
                EngineError::NotFound(_) => Ok(None),
                EngineError::Registry { message, .. }
                    if message.contains("manifest unknown") || message.contains("not found") =>
                {
                    Ok(None)
                }
                other => Err(other),
            },
        }
    }

    async fn is_published(
        &self,
        image: &ImageInfo,
        repository: &str,
        digest: &str,
        creds: Option<Credentials>,
    ) -> Result<bool, EngineError> {
        if image
            .repo_digests
            .contains(&format!("{repository}@{digest}"))
        {
            return Ok(true);
        }
        // Not pushed by this engine (Podman records no digests; the tool pushes its own
        // image): the same config in the registry is the same image.
        let remote = self
            .registry_image(&format!("{repository}@{digest}"), creds)
            .await?;
        Ok(remote.is_some_and(|r| image_id(&r.id) == image.id))
    }

    async fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_)
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.convert(e)),
        }
    }

    async fn platform(&self) -> Result<(String, String), EngineError> {
        Ok(self.platform.clone())
    }

    fn is_local(&self) -> bool {
        is_local_url(&self.endpoint)
    }

    async fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        // The engine answers with the existing volume when there is one.
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|e| self.convert(e))
    }

    async fn list_volumes(&self, key: &str, value: &str) -> Result<Vec<VolumeInfo>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
        let list = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| self.convert(e))?;
        let mut volumes: Vec<VolumeInfo> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            // Checked again: what the engine filtered is trusted with nothing removable.
            .filter(|v| v.labels.get(key).map(String::as_str) == Some(value))
            .map(|v| VolumeInfo {
                name: v.name,
                labels: v.labels.into_iter().collect(),
            })
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.convert(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_and_loopback_addresses_are_this_host() {
        for local in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "https://[::1]:2376",
        ] {
            assert!(is_local_url(local), "{local}");
        }
        for remote in [
            "tcp://10.0.0.5:2376",
            "ssh://me@builder",
            "https://build.example.com:2376",
        ] {
            assert!(!is_local_url(remote), "{remote}");
        }
    }

    #[test]
    fn a_port_with_401_in_it_is_not_an_authentication_failure() {
        let reset = "write tcp 127.0.0.1:43062->127.0.0.1:42401: use of closed network connection";
        assert!(!is_auth_text(reset));
        assert!(registry_error(reset.into()).is_transient());
        for refused in [
            "received unexpected HTTP status: 401 Unauthorized",
            "unauthorized: authentication required",
            "status 401",
        ] {
            assert!(is_auth_text(refused), "{refused}");
        }
        assert!(!is_auth_text("dial tcp 10.0.0.401:5000"));
        assert!(!is_auth_text(
            "runc create failed: error setting rlimit type 7: operation not permitted: OCI permission denied"
        ));
        assert!(is_auth_text(
            "denied: requested access to the resource is denied"
        ));
        assert!(!is_auth_text("127.0.0.1:401: connection refused"));
    }
}
