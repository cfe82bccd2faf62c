//! The tool's own pusher: an image from the local blob store to a registry repository, over
//! the distribution API. Per blob: HEAD (skip what the registry has), a cross-repository
//! mount when the blob is known in another repository of the same registry, else one
//! monolithic upload (POST, then one PUT whose body streams from the store file). A few blobs
//! are in flight at once; the config goes after the layers and the manifest last, so a failed
//! or interrupted push never leaves a tag naming an image whose blobs are missing.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt, TryStreamExt};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::io::AsyncReadExt;

use super::{is_loopback, parse, root_cause, Registry, RegistryError};
use crate::credentials::Credentials;
use crate::image::store::BlobStore;
use crate::image::{Descriptor, Image};

/// Blobs uploaded at once (as BuildKit and go-containerregistry do).
pub(crate) const IN_FLIGHT: usize = 4;

/// Bytes read from the store per chunk of an upload's body.
const CHUNK: usize = 256 * 1024;

/// Progress is reported at most once per this many bytes of one blob.
const PROGRESS_STEP: u64 = 1 << 20;

/// The store record that remembers which repository of a registry holds a blob the tool
/// pushed there, so that a push to another repository of that registry mounts it.
pub(crate) const PUSHED_RECORD: &str = "pushed";

/// Why a push failed; each names the registry, what it was pushing and why.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum PushError {
    #[error("registry `{registry}` refused the credentials for `{repository}`: {detail}")]
    Auth {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("registry `{registry}`, blob `{digest}` of `{repository}`: {why}")]
    Blob {
        registry: String,
        repository: String,
        digest: String,
        why: String,
        transient: bool,
    },
    #[error("registry `{registry}`, manifest `{repository}:{reference}`: {why}")]
    Manifest {
        registry: String,
        repository: String,
        reference: String,
        why: String,
        transient: bool,
    },
}

impl PushError {
    /// True for failures worth retrying: broken connections, 5xx answers.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            PushError::Auth { .. } => false,
            PushError::Blob { transient, .. } | PushError::Manifest { transient, .. } => *transient,
        }
    }
}

/// What a blob's push is doing, for progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobProgress {
    /// The blob's digest, shortened as the engine names layers (12 hex digits).
    pub(crate) id: String,
    pub(crate) status: &'static str,
    pub(crate) current: u64,
    pub(crate) total: u64,
}

/// How the registry authenticates this push.
#[derive(Clone)]
enum Auth {
    Anonymous,
    Basic(String, String),
    Bearer(String),
}

/// A push session to one repository of one registry.
pub(crate) struct Pusher {
    http: reqwest::Client,
    /// `http[s]://host`.
    base: String,
    registry: String,
    repository: String,
    auth: Auth,
}

/// Why one request failed: an answer (status, body) or no answer at all.
enum Failure {
    Status(u16, String),
    Connection(String),
    Store(String),
}

impl Failure {
    fn transient(&self) -> bool {
        match self {
            Failure::Status(status, _) => *status >= 500 || *status == 429,
            Failure::Connection(_) => true,
            Failure::Store(_) => false,
        }
    }

    fn why(&self) -> String {
        match self {
            Failure::Status(status, body) if body.is_empty() => format!("HTTP {status}"),
            Failure::Status(status, body) => format!("HTTP {status}: {body}"),
            Failure::Connection(e) => e.clone(),
            Failure::Store(e) => format!("cannot read it from the local store: {e}"),
        }
    }
}

impl Pusher {
    /// A session for `repository` (`host/path`), authenticated with `creds` (Basic, or the
    /// Bearer token the registry's token service gives for pull and push).
    pub(crate) async fn connect(
        repository: &str,
        creds: Option<&Credentials>,
    ) -> Result<Self, PushError> {
        let r = parse(repository).map_err(|e| PushError::Auth {
            registry: repository.to_string(),
            repository: repository.to_string(),
            detail: e.to_string(),
        })?;
        let registry = r.resolve_registry().to_string();
        let path = r.repository().to_string();
        let client = Registry::new(&registry, creds, "linux", "amd64");
        let auth_failed = |detail: String| PushError::Auth {
            registry: registry.clone(),
            repository: path.clone(),
            detail,
        };
        let token = match tokio::time::timeout(
            super::TIMEOUT,
            client
                .client
                .auth(&r, &client.auth, RegistryOperation::Push),
        )
        .await
        {
            Err(_) => {
                return Err(PushError::Manifest {
                    registry: registry.clone(),
                    repository: path.clone(),
                    reference: String::new(),
                    why: format!("no answer within {} s", super::TIMEOUT.as_secs()),
                    transient: true,
                })
            }
            Ok(Ok(token)) => token,
            Ok(Err(e)) => match super::classify::<()>(e) {
                Err(RegistryError::Auth(m)) => return Err(auth_failed(m)),
                Err(e) => {
                    return Err(PushError::Manifest {
                        registry: registry.clone(),
                        repository: path.clone(),
                        reference: String::new(),
                        why: e.to_string(),
                        transient: true,
                    })
                }
                Ok(_) => None,
            },
        };
        let auth = match (token, &client.auth) {
            (Some(t), _) => Auth::Bearer(t),
            (None, RegistryAuth::Basic(u, p)) => Auth::Basic(u.clone(), p.clone()),
            (None, RegistryAuth::Bearer(t)) => Auth::Bearer(t.clone()),
            (None, _) => Auth::Anonymous,
        };
        crate::tls::install();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_mins(1))
            .build()
            .map_err(|e| auth_failed(root_cause(&e)))?;
        let scheme = if is_loopback(&registry) {
            "http"
        } else {
            "https"
        };
        Ok(Self {
            http,
            base: format!("{scheme}://{registry}"),
            registry,
            repository: path,
            auth,
        })
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let r = self.http.request(method, url);
        match &self.auth {
            Auth::Anonymous => r,
            Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
            Auth::Bearer(t) => r.bearer_auth(t),
        }
    }

    async fn send(&self, r: RequestBuilder) -> Result<Response, Failure> {
        r.send()
            .await
            .map_err(|e| Failure::Connection(root_cause(&e)))
    }

    async fn refused(response: Response) -> Failure {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Failure::Status(status, body.trim().chars().take(300).collect())
    }

    fn blob_error(&self, digest: &str, f: &Failure) -> PushError {
        if let Failure::Status(401 | 403, body) = f {
            return PushError::Auth {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail: format!("blob `{digest}`: {body}"),
            };
        }
        PushError::Blob {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            digest: digest.to_string(),
            why: f.why(),
            transient: f.transient(),
        }
    }

    /// Pushes the blobs of `image` (layers, a few at a time, then the config), reporting
    /// progress; nothing names them yet.
    pub(crate) async fn push_blobs(
        &self,
        image: &Image,
        store: &BlobStore,
        progress: &(dyn Fn(BlobProgress) + Sync),
    ) -> Result<(), PushError> {
        stream::iter(image.layers.iter())
            .map(|layer| self.push_blob(image, layer, store, progress))
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        self.push_blob(image, &image.config, store, progress).await
    }

    /// One blob: present, mounted, or uploaded.
    async fn push_blob(
        &self,
        image: &Image,
        blob: &Descriptor,
        store: &BlobStore,
        progress: &(dyn Fn(BlobProgress) + Sync),
    ) -> Result<(), PushError> {
        let digest = &blob.digest;
        let report = |status, current| {
            progress(BlobProgress {
                id: short(digest),
                status,
                current,
                total: blob.size,
            });
        };
        if self.has_blob(digest).await? {
            report("Layer already exists", blob.size);
            return Ok(());
        }
        let from = self.mount_source(image, digest, store);
        let upload = match self.start_upload(digest, from.as_deref()).await? {
            Upload::Mounted => {
                report("Mounted", blob.size);
                return Ok(());
            }
            Upload::At(location) => location,
        };
        if !store.contains(digest) {
            return Err(self.blob_error(
                digest,
                &Failure::Store("neither the store nor this registry has it".into()),
            ));
        }
        self.upload(&upload, blob, store, &report).await?;
        report("Pushed", blob.size);
        let key = format!("{}\n{digest}", self.registry);
        // Only a hint for later pushes: a failure to write it changes nothing.
        let _ = store.put_record(PUSHED_RECORD, &key, self.repository.as_bytes());
        Ok(())
    }

    /// A repository of this registry that holds `digest`, other than the target: where the
    /// image says the blob is, or where the tool pushed it before.
    fn mount_source(&self, image: &Image, digest: &str, store: &BlobStore) -> Option<String> {
        if let Some(remote) = image.remote.get(digest) {
            if remote.registry == self.registry && remote.repository != self.repository {
                return Some(remote.repository.clone());
            }
        }
        let key = format!("{}\n{digest}", self.registry);
        let known = String::from_utf8(store.record(PUSHED_RECORD, &key)?).ok()?;
        (known != self.repository).then_some(known)
    }

    async fn has_blob(&self, digest: &str) -> Result<bool, PushError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self
            .send(self.request(Method::HEAD, &url))
            .await
            .map_err(|f| self.blob_error(digest, &f))?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.blob_error(digest, &Self::refused(response).await)),
        }
    }

    /// Starts an upload, or mounts the blob from `from` when given (the registry answers
    /// 201 when it mounted, 202 with an upload when it could not).
    async fn start_upload(&self, digest: &str, from: Option<&str>) -> Result<Upload, PushError> {
        let mut url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        if let Some(from) = from {
            url += &format!("?mount={digest}&from={from}");
        }
        let response = self
            .send(self.request(Method::POST, &url).header(CONTENT_LENGTH, 0))
            .await
            .map_err(|f| self.blob_error(digest, &f))?;
        match response.status() {
            StatusCode::CREATED if from.is_some() => Ok(Upload::Mounted),
            StatusCode::ACCEPTED => {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        self.blob_error(
                            digest,
                            &Failure::Status(202, "an upload without a Location".into()),
                        )
                    })?;
                Ok(Upload::At(self.absolute(location)))
            }
            _ => Err(self.blob_error(digest, &Self::refused(response).await)),
        }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// The whole blob in one PUT, its body read from the store file chunk by chunk.
    async fn upload(
        &self,
        location: &str,
        blob: &Descriptor,
        store: &BlobStore,
        report: &(dyn Fn(&'static str, u64) + Sync),
    ) -> Result<(), PushError> {
        let digest = &blob.digest;
        let file = store
            .open(digest)
            .map_err(|e| self.blob_error(digest, &Failure::Store(e.to_string())))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let body = reqwest::Body::wrap_stream(file_chunks(tokio::fs::File::from_std(file), tx));
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let request = self
            .request(Method::PUT, &url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, blob.size)
            .body(body);
        let progress = async {
            let (mut sent, mut shown) = (0u64, 0u64);
            while let Some(n) = rx.recv().await {
                sent += n;
                if sent - shown >= PROGRESS_STEP {
                    shown = sent;
                    report("Pushing", sent);
                }
            }
        };
        let (response, ()) = tokio::join!(self.send(request), progress);
        let response = response.map_err(|f| self.blob_error(digest, &f))?;
        if response.status() == StatusCode::CREATED || response.status().is_success() {
            return Ok(());
        }
        Err(self.blob_error(digest, &Self::refused(response).await))
    }

    /// The digest of the manifest `reference` (a tag) names; `None` when there is none.
    pub(crate) async fn manifest_digest(
        &self,
        reference: &str,
    ) -> Result<Option<String>, PushError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let accept = [
            crate::image::media::DOCKER_MANIFEST,
            crate::image::media::DOCKER_LIST,
            crate::image::media::OCI_MANIFEST,
            crate::image::media::OCI_INDEX,
        ]
        .join(", ");
        let response = self
            .send(self.request(Method::HEAD, &url).header("Accept", accept))
            .await
            .map_err(|f| self.manifest_error(reference, &f))?;
        match response.status() {
            s if s.is_success() => Ok(response
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.manifest_error(reference, &Self::refused(response).await)),
        }
    }

    /// Writes the manifest `manifest` (in the store) under `reference`: a tag, or its own
    /// digest (then nothing names it but the digest). Returns its digest.
    pub(crate) async fn put_manifest(
        &self,
        reference: &str,
        manifest: &Descriptor,
        store: &BlobStore,
    ) -> Result<String, PushError> {
        let mut body = Vec::new();
        let read = async {
            let file = store.open(&manifest.digest)?;
            tokio::fs::File::from_std(file).read_to_end(&mut body).await
        };
        read.await
            .map_err(|e| self.manifest_error(reference, &Failure::Store(e.to_string())))?;
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let request = self
            .request(Method::PUT, &url)
            .header(CONTENT_TYPE, &manifest.media_type)
            .body(body);
        let response = self
            .send(request)
            .await
            .map_err(|f| self.manifest_error(reference, &f))?;
        if !response.status().is_success() {
            return Err(self.manifest_error(reference, &Self::refused(response).await));
        }
        let stored = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match stored {
            Some(d) if d != manifest.digest => Err(self.manifest_error(
                reference,
                &Failure::Status(
                    201,
                    format!("the registry stored `{d}`, not `{}`", manifest.digest),
                ),
            )),
            _ => Ok(manifest.digest.clone()),
        }
    }

    fn manifest_error(&self, reference: &str, f: &Failure) -> PushError {
        if let Failure::Status(401 | 403, body) = f {
            return PushError::Auth {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail: format!("manifest `{reference}`: {body}"),
            };
        }
        PushError::Manifest {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            reference: reference.to_string(),
            why: f.why(),
            transient: f.transient(),
        }
    }
}

enum Upload {
    Mounted,
    /// The upload's URL.
    At(String),
}

/// `sha256:0123456789ab...` -> `0123456789ab`.
fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

type Chunks = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The file's bytes, a chunk at a time; each chunk's size goes to `sent` (for progress).
fn file_chunks(file: tokio::fs::File, sent: tokio::sync::mpsc::UnboundedSender<u64>) -> Chunks {
    Box::pin(stream::try_unfold(
        (file, sent),
        |(mut file, sent)| async move {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            buf.truncate(n);
            let _ = sent.send(n as u64);
            Ok(Some((Bytes::from(buf), (file, sent))))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_why_and_whether_to_retry() {
        assert!(Failure::Status(503, String::new()).transient());
        assert!(Failure::Connection("reset".into()).transient());
        assert!(!Failure::Status(400, "DIGEST_INVALID".into()).transient());
        assert_eq!(Failure::Status(500, String::new()).why(), "HTTP 500");
        assert_eq!(Failure::Status(400, "bad".into()).why(), "HTTP 400: bad");
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
