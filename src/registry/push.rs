//! The tool's own pusher: an image from the local blob store to a registry repository, over
//! the distribution API. Per blob: HEAD (skip what the registry has), a cross-repository
//! mount when the blob is known in another repository of the same registry, else one
//! monolithic upload (POST, then one PUT whose body streams from the store file). On a
//! registry with a token service, a mount is made with a token that also reads the source
//! repository (asked for once per source); a mount the registry refuses becomes an upload.
//! A few blobs are in flight at once; the config goes after the layers and the manifest
//! last, so a failed or interrupted push never leaves a tag naming an image whose blobs are
//! missing.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt, TryStreamExt};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::io::AsyncReadExt;

use super::token::{self, Challenge};
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

/// Remembers that `repository` of `registry` (as references name them) holds blob `digest`,
/// so that a push to another repository of that registry mounts it. Only a hint for later
/// pushes: a failure to write it changes nothing.
pub(crate) fn held(store: &BlobStore, registry: &str, repository: &str, digest: &str) {
    let key = format!("{registry}\n{digest}");
    let _ = store.put_record(PUSHED_RECORD, &key, repository.as_bytes());
}

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

/// How blobs are mounted from one source repository during a push.
#[derive(Clone)]
enum SourceAccess {
    /// With this token, which covers the target and reads the source.
    Token(String),
    /// With the session's own authentication (no token service, or it gave no wider token).
    Session,
    /// Not at all: the registry refused a mount from it, so its blobs are uploaded.
    Refused,
}

/// A push session to one repository of one registry.
pub(crate) struct Pusher {
    http: reqwest::Client,
    /// `http[s]://host`.
    base: String,
    registry: String,
    repository: String,
    auth: Auth,
    /// The login the session's token was asked for with (Basic or anonymous): `Some` only when
    /// that token came from the registry's token service, which is then asked, with the same
    /// login, for a token that also reads a mount's source repository.
    token_login: Option<Auth>,
    /// The registry's token service, read from its challenge when a mount first needs it.
    challenge: tokio::sync::OnceCell<Option<Challenge>>,
    /// Per source repository, how its blobs are mounted (asked once per push session).
    sources: tokio::sync::Mutex<BTreeMap<String, SourceAccess>>,
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
        let login = match &client.auth {
            RegistryAuth::Anonymous => Auth::Anonymous,
            RegistryAuth::Basic(u, p) => Auth::Basic(u.clone(), p.clone()),
            RegistryAuth::Bearer(t) => Auth::Bearer(t.clone()),
        };
        let (auth, token_login) = match token {
            // An identity token is the session's token itself: no token service gave it.
            Some(t) if matches!(login, Auth::Bearer(_)) => (Auth::Bearer(t), None),
            Some(t) => (Auth::Bearer(t), Some(login)),
            None => (login, None),
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
            token_login,
            challenge: tokio::sync::OnceCell::new(),
            sources: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        authorized(self.http.request(method, url), &self.auth)
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
        // Wherever the blob ends up in this repository, a later push to another repository of
        // the registry (the remote cache beside the published one) mounts it from here.
        if self.has_blob(digest).await? {
            report("Layer already exists", blob.size);
            held(store, &self.registry, &self.repository, digest);
            return Ok(());
        }
        let (upload, auth) = match self.mount_source(image, digest, store) {
            Some(from) => self.mount(digest, &from).await?,
            None => (self.start_upload(digest).await?, None),
        };
        let location = match upload {
            Upload::Mounted => {
                report("Mounted", blob.size);
                held(store, &self.registry, &self.repository, digest);
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
        let auth = auth.as_ref().unwrap_or(&self.auth);
        self.upload(&location, blob, store, &report, auth).await?;
        report("Pushed", blob.size);
        held(store, &self.registry, &self.repository, digest);
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

    /// Mounts `digest` from the repository `from`, or starts its upload when the registry
    /// answers with one (202) or refuses the mount: then later blobs from `from` are uploaded
    /// without asking. Returns the authentication the upload continues with when it is not
    /// the session's (the token that also reads `from`).
    async fn mount(&self, digest: &str, from: &str) -> Result<(Upload, Option<Auth>), PushError> {
        let auth = match self.source_access(from).await {
            SourceAccess::Token(t) => Some(Auth::Bearer(t)),
            SourceAccess::Session => None,
            SourceAccess::Refused => return Ok((self.start_upload(digest).await?, None)),
        };
        let mount_auth = auth.as_ref().unwrap_or(&self.auth);
        match self.try_start_upload(digest, Some(from), mount_auth).await {
            Ok(upload) => Ok((upload, auth)),
            // Registries answer a mount they do not allow (a token that does not read the
            // source) with 401 or 403, where they would have started a plain upload.
            Err(Failure::Status(status, _)) => {
                if status < 500 {
                    let mut sources = self.sources.lock().await;
                    sources.insert(from.to_string(), SourceAccess::Refused);
                }
                Ok((self.start_upload(digest).await?, None))
            }
            Err(f) => Err(self.blob_error(digest, &f)),
        }
    }

    /// How blobs of the repository `from` are mounted: on a registry whose token service gave
    /// the session's token, with a token for the target and `from` (asked for once). A token
    /// service that refuses it leaves the session's authentication.
    async fn source_access(&self, from: &str) -> SourceAccess {
        let Some(login) = &self.token_login else {
            return SourceAccess::Session;
        };
        let mut sources = self.sources.lock().await;
        if let Some(access) = sources.get(from) {
            return access.clone();
        }
        let scopes = [token::push_scope(&self.repository), token::pull_scope(from)];
        let access = match self.challenge().await {
            Some(c) => {
                let asked = authorized(token::request(&self.http, c, &scopes), login).send();
                match tokio::time::timeout(super::TIMEOUT, asked).await {
                    Ok(Ok(r)) if r.status().is_success() => r.bytes().await.ok(),
                    _ => None,
                }
                .and_then(|body| token::token(&body))
                .map_or(SourceAccess::Session, SourceAccess::Token)
            }
            None => SourceAccess::Session,
        };
        sources.insert(from.to_string(), access.clone());
        access
    }

    /// The registry's token service, from the challenge its `/v2/` answers an anonymous
    /// request with; `None` when it names none.
    async fn challenge(&self) -> Option<&Challenge> {
        self.challenge
            .get_or_init(|| async {
                let url = format!("{}/v2/", self.base);
                let answer = tokio::time::timeout(super::TIMEOUT, self.http.get(url).send());
                let response = answer.await.ok()?.ok()?;
                let header = response.headers().get(WWW_AUTHENTICATE)?.to_str().ok()?;
                token::challenge(header)
            })
            .await
            .as_ref()
    }

    /// Starts a plain upload (no mount), with the session's authentication.
    async fn start_upload(&self, digest: &str) -> Result<Upload, PushError> {
        self.try_start_upload(digest, None, &self.auth)
            .await
            .map_err(|f| self.blob_error(digest, &f))
    }

    /// Starts an upload, or mounts the blob from `from` when given (the registry answers
    /// 201 when it mounted, 202 with an upload when it could not).
    async fn try_start_upload(
        &self,
        digest: &str,
        from: Option<&str>,
        auth: &Auth,
    ) -> Result<Upload, Failure> {
        let mut url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        if let Some(from) = from {
            url += &format!("?mount={digest}&from={from}");
        }
        let request = authorized(self.http.request(Method::POST, &url), auth);
        let response = self.send(request.header(CONTENT_LENGTH, 0)).await?;
        match response.status() {
            StatusCode::CREATED if from.is_some() => Ok(Upload::Mounted),
            StatusCode::ACCEPTED => {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Failure::Status(202, "an upload without a Location".into()))?;
                Ok(Upload::At(self.absolute(location)))
            }
            _ => Err(Self::refused(response).await),
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
        auth: &Auth,
    ) -> Result<(), PushError> {
        let digest = &blob.digest;
        let file = store
            .open(digest)
            .map_err(|e| self.blob_error(digest, &Failure::Store(e.to_string())))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let body = reqwest::Body::wrap_stream(file_chunks(tokio::fs::File::from_std(file), tx));
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let request = authorized(self.http.request(Method::PUT, &url), auth)
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

/// `r` with `auth`'s credentials.
fn authorized(r: RequestBuilder, auth: &Auth) -> RequestBuilder {
    match auth {
        Auth::Anonymous => r,
        Auth::Basic(u, p) => r.basic_auth(u, Some(p)),
        Auth::Bearer(t) => r.bearer_auth(t),
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
