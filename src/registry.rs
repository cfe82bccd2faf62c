//! Talking to a registry directly (not through the engine): manifest digests, image ids and
//! configs without pulling, for the base image's identity and the registry-backed step cache.
//! The only module that knows `oci-client`.

mod fetch;
mod pins;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;

use futures_util::{StreamExt, TryStreamExt};

use crate::credentials::Credentials;
use crate::image::store::BlobStore;
use crate::image::{Descriptor, Image};
use crate::model::ImageConfig;
use crate::model::{Platform, RemoteMode};

pub(crate) mod push;
mod token;

/// Every registry call ends within this time; a slower registry counts as unavailable.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a registry call failed (a missing manifest is not a failure: it is `None`).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("the registry refused the credentials: {0}")]
    Auth(String),
    #[error("the registry did not answer within {} s", TIMEOUT.as_secs())]
    Timeout,
    #[error("{0}")]
    Unavailable(String),
    /// Its entries could not be told from planted ones (no key to verify them with).
    #[error("{0}")]
    NotTrusted(String),
}

/// An image as a registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RemoteImage {
    /// The manifest digest (of the platform's manifest for a manifest list).
    pub(crate) digest: String,
    /// The config digest: the image id an engine gives the image once pulled.
    pub(crate) id: String,
    pub(crate) config: ImageConfig,
    /// Layer diff ids, bottom first.
    pub(crate) layers: Vec<String>,
}

/// A client for one registry host.
pub(crate) struct Registry {
    client: Client,
    auth: RegistryAuth,
    /// The platform chosen from manifest lists.
    os: String,
    arch: String,
    /// Bearer tokens (or none) per repository and operation, for the tool's own requests.
    tokens: Mutex<BTreeMap<String, Option<String>>>,
}

/// Loopback registries are spoken to over plain HTTP, as the engine does.
fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

impl Registry {
    /// A client for `host`, choosing `os`/`arch` from manifest lists.
    pub(crate) fn new(host: &str, creds: Option<&Credentials>, os: &str, arch: &str) -> Self {
        crate::tls::install();
        let protocol = if is_loopback(host) {
            ClientProtocol::HttpsExcept(vec![host.to_string()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(TIMEOUT),
            ..Default::default()
        });
        let auth = match creds {
            Some(c) if c.identity_token.is_some() => {
                RegistryAuth::Bearer(c.identity_token.clone().unwrap_or_default())
            }
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Self {
            client,
            auth,
            os: os.to_string(),
            arch: arch.to_string(),
            tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// The manifest digest of `reference` (`host/path:tag`), `None` when the registry has none.
    pub(crate) async fn digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
        let r = parse(reference)?;
        within(self.head_digest(&r, &MANIFEST_TYPES)).await
    }

    /// The image `reference` names: its manifest digest, id, config and layers, read without
    /// pulling any layer (for a manifest list, the image of the client's platform). `None`
    /// when the registry has no such manifest.
    pub(crate) async fn image(
        &self,
        reference: &str,
    ) -> Result<Option<RemoteImage>, RegistryError> {
        let mut r = parse(reference)?;
        let unreadable = |e: serde_json::Error| {
            RegistryError::Unavailable(format!("`{reference}`: unreadable manifest: {e}"))
        };
        let Some((body, mut digest)) = within(self.get_manifest(&r, &MANIFEST_TYPES)).await? else {
            return Ok(None);
        };
        let mut raw: RawManifest = serde_json::from_slice(&body).map_err(unreadable)?;
        if let Some(entries) = raw.manifests.take() {
            let Some(chosen) = entries.into_iter().find(|e| {
                e.platform
                    .as_ref()
                    .is_some_and(|p| p.os == self.os && p.architecture == self.arch)
            }) else {
                return Err(RegistryError::Unavailable(format!(
                    "`{reference}` has no image for {}/{}",
                    self.os, self.arch
                )));
            };
            r = Reference::with_digest(
                r.registry().to_string(),
                r.repository().to_string(),
                chosen.digest,
            );
            let Some((body, d)) = within(self.get_manifest(&r, &MANIFEST_TYPES)).await? else {
                return Ok(None);
            };
            digest = d;
            raw = serde_json::from_slice(&body).map_err(unreadable)?;
        }
        let id = raw.config.map(|c| c.digest).ok_or_else(|| {
            RegistryError::Unavailable(format!("`{reference}`: a manifest without a config"))
        })?;
        let config = within(self.get_config(&r, &id)).await?;
        let parsed: ConfigFile = serde_json::from_slice(&config).map_err(|e| {
            RegistryError::Unavailable(format!("`{reference}`: unreadable image config: {e}"))
        })?;
        let c = parsed.config.unwrap_or_default();
        Ok(Some(RemoteImage {
            digest,
            id,
            config: ImageConfig {
                // An empty list is how a committed config says "none"; the engine omits it.
                cmd: c.cmd.filter(|v| !v.is_empty()),
                entrypoint: c.entrypoint.filter(|v| !v.is_empty()),
                env: c.env.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
                user: c.user.unwrap_or_default(),
                workdir: c.working_dir.unwrap_or_default(),
                volumes: c.volumes.unwrap_or_default().into_keys().collect(),
                stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
                shell: c.shell.filter(|s| !s.is_empty()),
                onbuild: c.on_build.filter(|s| !s.is_empty()),
                // Not compared when an entry is checked; read from the engine once pulled.
                healthcheck: None,
            },
            layers: parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
        }))
    }
}

/// The manifest media types read when a tag may hold an index or an image.
const MANIFEST_TYPES: [&str; 4] = [
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
];

/// One platform's manifest, as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) size: i64,
    pub(crate) platform: Platform,
}

/// What a tag or digest names: an index of platforms, or one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Manifest {
    Index {
        digest: String,
        entries: Vec<IndexEntry>,
    },
    /// One image, with the platform its config says.
    Image(IndexEntry),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawEntry>>,
    config: Option<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    media_type: Option<String>,
    digest: String,
    size: i64,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl RawPlatform {
    fn platform(self) -> Platform {
        Platform {
            os: self.os,
            arch: self.architecture,
            variant: self.variant.filter(|v| !v.is_empty()),
        }
    }
}

impl Registry {
    /// What `reference` names, read without pulling: an index with its platforms, or one
    /// image with the platform of its config. `None` when the registry has no such manifest.
    pub(crate) async fn manifest(
        &self,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        let r = parse(reference)?;
        let Some((body, digest)) = within(self.get_manifest(&r, &MANIFEST_TYPES)).await? else {
            return Ok(None);
        };
        let unreadable = |e: serde_json::Error| {
            RegistryError::Unavailable(format!("`{reference}`: unreadable manifest: {e}"))
        };
        let raw: RawManifest = serde_json::from_slice(&body).map_err(unreadable)?;
        if let Some(entries) = raw.manifests {
            let entries = entries
                .into_iter()
                .filter_map(|e| {
                    Some(IndexEntry {
                        platform: e.platform?.platform(),
                        media_type: e.media_type.unwrap_or_default(),
                        digest: e.digest,
                        size: e.size,
                    })
                })
                .collect();
            return Ok(Some(Manifest::Index { digest, entries }));
        }
        let config = raw.config.ok_or_else(|| {
            RegistryError::Unavailable(format!("`{reference}`: a manifest without a config"))
        })?;
        let blob = within(self.get_config(&r, &config.digest)).await?;
        let platform: RawPlatform = serde_json::from_slice(&blob).map_err(unreadable)?;
        Ok(Some(Manifest::Image(IndexEntry {
            digest,
            media_type: raw
                .media_type
                .unwrap_or_else(|| oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.into()),
            size: i64::try_from(body.len()).unwrap_or(i64::MAX),
            platform: platform.platform(),
        })))
    }

    /// The digest of the manifest `reference` names, and the manifests it refers to (an
    /// index's entries, each with its media type; none for an image). `None` when the
    /// registry has no such manifest.
    pub(crate) async fn references(
        &self,
        reference: &str,
    ) -> Result<Option<(String, Vec<(String, String)>)>, RegistryError> {
        let r = parse(reference)?;
        let Some((body, digest)) = within(self.get_manifest(&r, &MANIFEST_TYPES)).await? else {
            return Ok(None);
        };
        let raw: RawManifest = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Unavailable(format!("`{reference}`: unreadable manifest: {e}"))
        })?;
        let children = raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.digest, e.media_type.unwrap_or_default()))
            .collect();
        Ok(Some((digest, children)))
    }

    /// Pushes a Docker manifest list of `entries` as `reference` (`host/path:tag`); returns its
    /// digest.
    pub(crate) async fn push_index(
        &self,
        reference: &str,
        entries: &[IndexEntry],
    ) -> Result<String, RegistryError> {
        let r = parse(reference)?;
        let list = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
            "manifests": entries.iter().map(|e| {
                let mut platform = serde_json::json!({
                    "architecture": e.platform.arch,
                    "os": e.platform.os,
                });
                if let Some(v) = &e.platform.variant {
                    platform["variant"] = v.clone().into();
                }
                serde_json::json!({
                    "mediaType": e.media_type,
                    "size": e.size,
                    "digest": e.digest,
                    "platform": platform,
                })
            }).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec_pretty(&list)
            .map_err(|e| RegistryError::Unavailable(format!("`{reference}`: {e}")))?;
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
        );
        self.client
            .store_auth_if_needed(r.resolve_registry(), &self.auth)
            .await;
        let content_type = oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE
            .parse()
            .map_err(|e| RegistryError::Unavailable(format!("{e}")))?;
        bounded(self.client.push_manifest_raw(&r, body, content_type))
            .await?
            .ok_or_else(|| {
                RegistryError::Unavailable(format!("`{reference}`: the registry refused the index"))
            })?;
        Ok(digest)
    }
}

/// Annotations of a pipeline's cache index (an empty OCI artifact).
const INDEX_PIPELINE: &str = "org.opencontainers.image.title";
const INDEX_NEWEST: &str = "pipeline.cache.newest";
const INDEX_OWNED: &str = "pipeline.cache.owned";

/// Annotations of an entry's signature (an empty OCI artifact under the tag `KEY.sig`).
const SIG_KEY: &str = "pipeline.cache.key";
const SIG_MANIFEST: &str = "pipeline.cache.manifest";
const SIG_VALUE: &str = "pipeline.cache.signature";

/// A trusted writer's signature of a cache entry: its manifest digest and the Ed25519
/// signature (base64) of the key and that digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntrySignature {
    pub(crate) digest: String,
    pub(crate) signature: String,
}

/// Why a registry did not delete a manifest.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum DeleteError {
    #[error(
        "the registry does not allow deletion (HTTP {status}): enable storage.delete in its \
         configuration (for the distribution registry: `storage: delete: enabled: true`, or \
         REGISTRY_STORAGE_DELETE_ENABLED=true)"
    )]
    NotAllowed { status: u16 },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl Registry {
    /// Every tag of `repository` (`host/path`), page by page; empty when the repository does
    /// not exist.
    pub(crate) async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let r = parse(repository)?;
        let mut all: Vec<String> = Vec::new();
        for _ in 0..fetch::TAG_PAGES {
            let last = all.last().map(String::as_str);
            let page = within(self.get_tags(&r, last)).await?;
            if page.len() < fetch::TAGS_PAGE {
                all.extend(page);
                return Ok(all);
            }
            // A full page that does not move past the last tag would come again forever; a
            // listing cut short would be taken for all of it.
            if page.last().map(String::as_str) <= last {
                return Err(RegistryError::Unavailable(format!(
                    "`{repository}`: the registry does not page its tags forward: refused"
                )));
            }
            all.extend(page);
        }
        Err(RegistryError::Unavailable(format!(
            "`{repository}` lists more than {} tags ({} pages): refused",
            fetch::TAG_PAGES * fetch::TAGS_PAGE,
            fetch::TAG_PAGES
        )))
    }

    /// The annotations of the artifact under `reference`; `None` when there is none (or it is
    /// not an image manifest).
    async fn annotations(
        &self,
        reference: &str,
    ) -> Result<Option<BTreeMap<String, String>>, RegistryError> {
        let r = parse(reference)?;
        let Some((body, _)) = within(self.get_manifest(&r, &MANIFEST_TYPES)).await? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Annotated {
            config: Option<RawDescriptor>,
            annotations: Option<BTreeMap<String, String>>,
        }
        Ok(match serde_json::from_slice::<Annotated>(&body) {
            Ok(m) if m.config.is_some() => Some(m.annotations.unwrap_or_default()),
            _ => None,
        })
    }

    /// Writes an OCI artifact with an empty config, no layers and `annotations` under
    /// `reference`.
    async fn put_annotations(
        &self,
        reference: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), RegistryError> {
        let r = parse(reference)?;
        let config = Config::new(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec(),
            oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.to_string(),
            None,
        );
        let manifest = OciImageManifest::build(&[], &config, Some(annotations));
        bounded(
            self.client
                .push(&r, &[], config, &self.auth, Some(manifest)),
        )
        .await?
        .map(|_| ())
        .ok_or_else(|| RegistryError::Unavailable(format!("`{reference}`: not found")))
    }

    /// The cache index under `reference`; `None` when there is none (or it is not an index).
    pub(crate) async fn index(
        &self,
        reference: &str,
    ) -> Result<Option<crate::cache::RemoteIndex>, RegistryError> {
        let Some(a) = self.annotations(reference).await? else {
            return Ok(None);
        };
        let (Some(pipeline), Some(newest)) = (a.get(INDEX_PIPELINE), a.get(INDEX_NEWEST)) else {
            return Ok(None);
        };
        let list = |s: Option<&String>| {
            s.map(|s| {
                s.split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        Ok(Some(crate::cache::RemoteIndex {
            pipeline: pipeline.clone(),
            newest: list(Some(newest)),
            owned: list(a.get(INDEX_OWNED)),
        }))
    }

    /// Writes `index` under `reference`: an OCI artifact with an empty config and no layers,
    /// the keys in its annotations.
    pub(crate) async fn put_index(
        &self,
        reference: &str,
        index: &crate::cache::RemoteIndex,
    ) -> Result<(), RegistryError> {
        let join = |s: &std::collections::BTreeSet<String>| {
            s.iter().map(String::as_str).collect::<Vec<_>>().join(",")
        };
        let annotations = [
            (INDEX_PIPELINE, index.pipeline.clone()),
            (INDEX_NEWEST, join(&index.newest)),
            (INDEX_OWNED, join(&index.owned)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.put_annotations(reference, annotations).await
    }

    /// The signature of a cache entry under `reference`; `None` when there is none.
    pub(crate) async fn signature(
        &self,
        reference: &str,
    ) -> Result<Option<EntrySignature>, RegistryError> {
        let Some(a) = self.annotations(reference).await? else {
            return Ok(None);
        };
        let get = |k: &str| a.get(k).cloned();
        Ok(match (get(SIG_MANIFEST), get(SIG_VALUE)) {
            (Some(digest), Some(signature)) => Some(EntrySignature { digest, signature }),
            _ => None,
        })
    }

    /// Writes the signature of the entry `key` (manifest `signature.digest`) under `reference`.
    pub(crate) async fn put_signature(
        &self,
        reference: &str,
        key: &str,
        signature: &EntrySignature,
    ) -> Result<(), RegistryError> {
        let annotations = [
            (SIG_KEY, key.to_string()),
            (SIG_MANIFEST, signature.digest.clone()),
            (SIG_VALUE, signature.signature.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.put_annotations(reference, annotations).await
    }

    /// Deletes the manifest `digest` of `repository` (`host/path`), with every tag on it.
    /// A manifest already gone is not an error.
    pub(crate) async fn delete(&self, repository: &str, digest: &str) -> Result<(), DeleteError> {
        let r = parse(repository)?;
        let host = r.resolve_registry().to_string();
        let scheme = if is_loopback(&host) { "http" } else { "https" };
        let url = format!("{scheme}://{host}/v2/{}/manifests/{digest}", r.repository());
        let request = self
            .request(reqwest::Method::DELETE, &url, &r, RegistryOperation::Push)
            .await?;
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(root_cause(&e)))?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            status @ 405 => Err(DeleteError::NotAllowed { status }),
            401 | 403 => Err(RegistryError::Auth(format!("DELETE {url}")).into()),
            status => {
                let body = response.text().await.unwrap_or_default();
                // The distribution registry answers 405 UNSUPPORTED; some answer 400 with it.
                if body.contains("UNSUPPORTED") {
                    return Err(DeleteError::NotAllowed { status });
                }
                Err(RegistryError::Unavailable(format!(
                    "DELETE {url}: HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                ))
                .into())
            }
        }
    }
}

/// The registry client's reference for `reference` (`host/path[:tag][@digest]`), made from
/// its parts: the client's own parser compiles a Unicode regex of about 20 MB.
fn parse(reference: &str) -> Result<Reference, RegistryError> {
    let r = crate::reference::ImageRef::parse(reference)
        .map_err(|e| RegistryError::Unavailable(format!("`{reference}`: {e}")))?;
    let registry = match r.registry_host() {
        "index.docker.io" => "docker.io",
        host => host,
    }
    .to_string();
    let repository = if registry == "docker.io" && !r.path.contains('/') {
        format!("library/{}", r.path)
    } else {
        r.path.clone()
    };
    Ok(match (r.tag, r.digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => {
            Reference::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".into()))
        }
    })
}

/// Runs one of the tool's own registry calls within [`TIMEOUT`].
async fn within<T>(
    call: impl std::future::Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| RegistryError::Timeout)?
}

/// Runs a registry call within [`TIMEOUT`]; a missing manifest is `None`.
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, OciDistributionError>>,
) -> Result<Option<T>, RegistryError> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Err(_) => Err(RegistryError::Timeout),
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(e)) => classify(e),
    }
}

fn classify<T>(e: OciDistributionError) -> Result<Option<T>, RegistryError> {
    use OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => Ok(None),
        E::ServerError { code: 404, .. } => Ok(None),
        E::RegistryError { ref envelope, .. }
            if envelope.errors.iter().any(|x| {
                let code = format!("{:?}", x.code).to_ascii_lowercase();
                code.contains("manifestunknown") || code.contains("nameunknown")
            }) =>
        {
            Ok(None)
        }
        E::AuthenticationFailure(m) => Err(RegistryError::Auth(m)),
        E::UnauthorizedError { url } => Err(RegistryError::Auth(format!("not authorized: {url}"))),
        E::ServerError {
            code: 401 | 403,
            message,
            ..
        } => Err(RegistryError::Auth(message)),
        E::RegistryError { ref envelope, .. }
            if envelope.errors.iter().any(|x| {
                let code = format!("{:?}", x.code).to_ascii_lowercase();
                code.contains("unauthorized") || code.contains("denied")
            }) =>
        {
            Err(RegistryError::Auth(e.to_string()))
        }
        E::RequestError(r) => Err(RegistryError::Unavailable(root_cause(&r))),
        other => Err(RegistryError::Unavailable(other.to_string())),
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    config: Option<RawConfig>,
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Option<Vec<String>>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    user: Option<String>,
    working_dir: Option<String>,
    volumes: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    stop_signal: Option<String>,
    shell: Option<Vec<String>>,
    on_build: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The keys of a remote cache: the public key that makes an entry trusted, and the private
/// key that signs what this run pushes (trusted jobs only).
#[derive(Debug, Default)]
pub(crate) struct CacheKeys {
    pub(crate) verify: Option<[u8; 32]>,
    pub(crate) signer: Option<crate::signing::SigningKey>,
}

/// The registry-backed step cache of one run: a repository whose tags are cache keys, each
/// entry beside its signature (`KEY.sig`). The first failure (down, slow, refused
/// credentials) turns it off for the rest of the run; the build goes on without it.
pub(crate) struct RemoteCache {
    /// `host/path`, no tag.
    pub(crate) repository: String,
    pub(crate) mode: RemoteMode,
    pub(crate) creds: Option<Credentials>,
    registry: Registry,
    keys: CacheKeys,
    failure: Mutex<Option<RegistryError>>,
    /// Entries found but not trusted, with why; said once.
    ignored: Mutex<Vec<String>>,
}

impl RemoteCache {
    pub(crate) fn new(
        repository: String,
        host: &str,
        mode: RemoteMode,
        creds: Option<Credentials>,
        platform: (&str, &str),
        keys: CacheKeys,
    ) -> Self {
        Self {
            registry: Registry::new(host, creds.as_ref(), platform.0, platform.1),
            repository,
            mode,
            creds,
            keys,
            failure: Mutex::new(None),
            ignored: Mutex::new(Vec::new()),
        }
    }

    /// `repository:key`.
    pub(crate) fn reference(&self, key: &str) -> String {
        format!("{}:{key}", self.repository)
    }

    /// Whether this run signs (so pushes) entries.
    pub(crate) fn signs(&self) -> bool {
        self.keys.signer.is_some()
    }

    /// The failure that turned the cache off, if any.
    pub(crate) fn failure(&self) -> Option<RegistryError> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Turns the cache off for the rest of the run (the first reason is kept).
    pub(crate) fn fail(&self, e: RegistryError) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// The entries found but not trusted since the last call, each with why.
    pub(crate) fn take_ignored(&self) -> Vec<String> {
        std::mem::take(&mut *self.ignored.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn ignore(&self, key: &str, why: &str) {
        self.ignored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("`{}`: {why}", self.reference(key)));
    }

    fn settle<T>(&self, r: Result<Option<T>, RegistryError>) -> Option<T> {
        match r {
            Ok(v) => v,
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// The signature stored beside the entry `key`, verified or not.
    async fn signature(&self, key: &str) -> Option<EntrySignature> {
        if self.failure().is_some() {
            return None;
        }
        let tag = crate::cache::signature_tag(key);
        let r = self.registry.signature(&self.reference(&tag)).await;
        self.settle(r)
    }

    /// The manifest digest a trusted writer signed for `key`; `None` when there is no such
    /// signature (or none that verifies), or the cache is off.
    pub(crate) async fn signed(&self, key: &str) -> Option<String> {
        let public = self.keys.verify?;
        let s = self.signature(key).await?;
        crate::signing::verify(&public, key, &s.digest, &s.signature).then_some(s.digest)
    }

    /// Signs the entry `key` (manifest `digest`) that this run pushed.
    pub(crate) async fn sign(&self, key: &str, digest: &str) {
        let Some(signer) = &self.keys.signer else {
            return;
        };
        let signature = crate::registry::EntrySignature {
            digest: digest.to_string(),
            signature: signer.sign(key, digest),
        };
        let tag = crate::cache::signature_tag(key);
        let r = self
            .registry
            .put_signature(&self.reference(&tag), key, &signature)
            .await;
        self.settle(r.map(Some));
    }

    /// Records that the newest apply of `pipeline` used `keys` (see [`crate::cache::RemoteIndex`]).
    pub(crate) async fn record(&self, pipeline: &str, keys: &[String]) {
        if self.failure().is_some() || !self.signs() {
            return;
        }
        let reference = self.reference(&crate::cache::last_tag(pipeline));
        let previous = self.registry.index(&reference).await;
        let Some(previous) = self.settle(previous.map(Some)) else {
            return;
        };
        let index = crate::cache::RemoteIndex::after_apply(previous, pipeline, keys);
        let written = self.registry.put_index(&reference, &index).await;
        self.settle(written.map(Some));
    }

    /// The entry `key`, read without pulling, when a trusted writer signed it: the image is
    /// read by the digest the signature names, whatever the key's tag holds now. `None` when
    /// absent, not trusted (said once, see [`Self::take_ignored`]) or the cache is off.
    pub(crate) async fn entry(&self, key: &str) -> Option<RemoteImage> {
        let public = self.keys.verify?;
        let digest = match self.signature(key).await {
            Some(s) if crate::signing::verify(&public, key, &s.digest, &s.signature) => s.digest,
            Some(_) => {
                self.ignore(key, "its signature does not verify with `verify_key`");
                return None;
            }
            None => {
                if self.failure().is_none() {
                    let r = self.registry.digest(&self.reference(key)).await;
                    if self.settle(r).is_some() {
                        self.ignore(key, "it is not signed");
                    }
                }
                return None;
            }
        };
        let r = self
            .registry
            .image(&format!("{}@{digest}", self.repository))
            .await;
        let image = self.settle(r)?;
        if image.digest != digest {
            self.ignore(key, "its signed manifest is not one image");
            return None;
        }
        Some(image)
    }
}

impl RemoteCache {
    /// The entry image of manifest `digest` (the digest a trusted writer signed) downloaded
    /// into `store`: its manifest, config and layers (a few at a time, streamed), each checked
    /// against the digest that names it; what the store holds is not downloaded again.
    pub(crate) async fn download(
        &self,
        digest: &str,
        store: &BlobStore,
    ) -> Result<Image, RegistryError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Listed {
            media_type: Option<String>,
            config: Descriptor,
            layers: Vec<Descriptor>,
        }
        let reference = format!("{}@{digest}", self.repository);
        let r = parse(&reference)?;
        let unreadable = |e: String| RegistryError::Unavailable(format!("`{reference}`: {e}"));
        let stored = |e: std::io::Error| unreadable(format!("cannot store it: {e}"));
        let (body, _) = within(self.registry.get_manifest(&r, &MANIFEST_TYPES[2..]))
            .await?
            .ok_or_else(|| unreadable("gone from the registry".into()))?;
        let listed: Listed = serde_json::from_slice(&body)
            .map_err(|e| unreadable(format!("unreadable manifest: {e}")))?;
        let manifest_type = listed
            .media_type
            .clone()
            .unwrap_or_else(|| crate::image::media::OCI_MANIFEST.to_string());
        let config_bytes = within(self.registry.get_config(&r, &listed.config.digest)).await?;
        futures_util::stream::iter(&listed.layers)
            .map(|l| self.registry.blob_into(&r, l, store))
            .buffer_unordered(crate::registry::push::IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        // A publish to this registry mounts them from here.
        for blob in listed.layers.iter().chain([&listed.config]) {
            push::held(store, r.resolve_registry(), r.repository(), &blob.digest);
        }
        let config = store
            .put(&listed.config.media_type, &config_bytes)
            .map_err(stored)?;
        let manifest = store.put(&manifest_type, &body).map_err(stored)?;
        crate::image::config::pulled(manifest, config, &config_bytes, listed.layers)
            .map_err(|e| unreadable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("docker.io"));
    }

    #[test]
    fn reads_a_docker_image_config() {
        let json = r#"{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/bin"],
            "ExposedPorts":{"80/tcp":{}},"Labels":{"a":"1"},"WorkingDir":"/w"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#;
        let c: ConfigFile = serde_json::from_str(json).unwrap();
        let raw = c.config.unwrap();
        assert_eq!(raw.cmd.unwrap(), ["sh"]);
        assert_eq!(raw.working_dir.as_deref(), Some("/w"));
        assert_eq!(c.rootfs.unwrap().diff_ids, ["sha256:aa", "sha256:bb"]);
        let empty: ConfigFile = serde_json::from_str(r#"{"config":null}"#).unwrap();
        assert!(empty.config.is_none());
    }
}
