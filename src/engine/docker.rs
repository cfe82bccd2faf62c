//! The Docker engine, through bollard. The only module that knows bollard's types.

use std::collections::HashMap;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerConfig, ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptions, ContainerArchiveInfoOptions, CreateContainerOptions,
    CreateImageOptions, ListContainersOptions, ListImagesOptions, PushImageOptions,
    RemoveContainerOptions, RemoveImageOptions, TagImageOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::*;

/// A connected Docker engine.
pub(crate) struct DockerEngine {
    docker: Docker,
    endpoint: String,
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
        let version = bollard::API_DEFAULT_VERSION;
        let docker =
            if let Some(path) = url.strip_prefix("unix://") {
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
        let docker = tokio::time::timeout(Duration::from_secs(20), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 20 s".into()))?
            .map_err(|e| unreachable(root_cause(&e)))?;
        Ok(Self { docker, endpoint })
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
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
    [
        "unauthorized",
        "authentication required",
        "no basic auth",
        "denied",
        "incorrect username or password",
        "401",
    ]
    .iter()
    .any(|n| t.contains(n))
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
    /// An engine error from a bollard error, naming this engine when the connection broke.
    fn convert(&self, e: BollardError) -> EngineError {
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
            } if status_code != 404 => registry_error(message),
            other => self.convert(other),
        }
    }
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
            id: image.id.unwrap_or_default(),
            config: ImageConfig {
                cmd: c.cmd,
                entrypoint: c.entrypoint,
                env: c.env.unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                exposed_ports: c.exposed_ports.unwrap_or_default(),
                user: c.user.unwrap_or_default(),
                workdir: c.working_dir.unwrap_or_default(),
                volumes: c.volumes.unwrap_or_default(),
            },
            repo_digests: image.repo_digests.unwrap_or_default(),
            comment: image.comment.unwrap_or_default(),
            created: image.created.unwrap_or_default(),
            layers: image.root_fs.and_then(|r| r.layers).unwrap_or_default(),
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
                return Err(registry_error(err));
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
                    .filter_map(|t| t.strip_prefix(&prefix).map(str::to_string))
                    .collect(),
                id: i.id,
                parent: i.parent_id,
                created: i.created,
            })
            .collect())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // The build container only waits for execs. Its command is the entrypoint with no
            // `Cmd`, so nothing of it can be merged into a commit.
            entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
            cmd: None,
            host_config: Some(HostConfig {
                init: Some(true),
                tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.clone().into_iter().collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.convert(e))?;
        Ok(created.id)
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
        let config = ExecConfig {
            attach_stdin: Some(spec.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(spec.argv.clone()),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
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
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| self.convert(e))?;
        inspect
            .exit_code
            .ok_or_else(|| EngineError::Other("the engine reported no exit code".into()))
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

    async fn commit(&self, id: &str, spec: &CommitSpec) -> Result<String, EngineError> {
        let options = CommitContainerOptions {
            container: Some(id.to_string()),
            author: spec.author.clone(),
            comment: spec.message.clone(),
            // Nothing runs in the build container between steps, so pausing it buys nothing.
            pause: false,
            ..Default::default()
        };
        let c = &spec.config;
        let config = ContainerConfig {
            cmd: c.cmd.clone(),
            // Always explicit: an absent entrypoint would be merged in from the container.
            entrypoint: Some(c.entrypoint.clone().unwrap_or_default()),
            env: Some(c.env.clone()),
            labels: Some(c.labels.clone().into_iter().collect()),
            exposed_ports: Some(c.exposed_ports.clone()),
            user: Some(c.user.clone()),
            working_dir: Some(c.workdir.clone()),
            volumes: Some(c.volumes.clone()),
            ..Default::default()
        };
        let id = self
            .docker
            .commit_container(options, config)
            .await
            .map_err(|e| self.convert(e))?;
        Ok(id.id)
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

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // 409: removal already in progress (e.g. a second interrupt).
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(self.convert(e)),
        }
    }

    async fn remove_containers_named(&self, prefix: &str) -> Result<usize, EngineError> {
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
        let mut removed = 0;
        for c in containers {
            let ours = c
                .names
                .iter()
                .flatten()
                .any(|n| n.trim_start_matches('/').starts_with(prefix));
            if let (true, Some(id)) = (ours, c.id) {
                self.remove_container(&id).await?;
                removed += 1;
            }
        }
        Ok(removed)
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
                return Err(registry_error(err));
            }
            if let Some(status) = &info.status {
                // "<tag>: digest: sha256:... size: N"
                if let Some(rest) = status.split("digest: ").nth(1) {
                    digest = rest.split_whitespace().next().map(str::to_string);
                }
            }
            progress(progress_of(
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
        let v = self.docker.version().await.map_err(|e| self.convert(e))?;
        Ok((
            v.os.unwrap_or_else(|| "linux".into()),
            v.arch.unwrap_or_else(|| "amd64".into()),
        ))
    }
}
