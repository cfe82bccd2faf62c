//! Bounded reads from a registry: whatever a registry sends, a manifest, an image config or a
//! page of tags is read in chunks up to a limit (containerd's for manifests), its digest
//! computed as it arrives, and the listing of tags stops after a number of pages. Too much is
//! an error that names the registry and what was too big; memory stays near its usual level.

use oci_client::{Reference, RegistryOperation};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH};
use sha2::Digest as _;

use super::{is_loopback, root_cause, Registry, RegistryError, TIMEOUT};
use crate::image::store::BlobStore;
use crate::image::Descriptor;

/// The largest manifest read (containerd's limit, also go-containerregistry's).
pub(super) const MANIFEST_LIMIT: u64 = 4 << 20;
/// The largest image config read.
pub(super) const CONFIG_LIMIT: u64 = 8 << 20;
/// The largest page of a tag listing read.
const TAGS_PAGE_LIMIT: u64 = 4 << 20;
/// Tags asked for per page.
pub(super) const TAGS_PAGE: usize = 1000;
/// The most pages of tags read: a repository with more is refused rather than listed forever.
pub(super) const TAG_PAGES: usize = 100;

/// `n` bytes as people read them: `4 MiB`.
fn size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// The error for `what` of `url` being larger than `limit`.
fn too_big(what: &str, url: &str, limit: u64) -> RegistryError {
    RegistryError::Unavailable(format!(
        "{what} at {url} is larger than the limit of {}: refused",
        size(limit)
    ))
}

/// Reads `response`'s body, at most `limit` bytes (refused early when its length says more).
async fn read_capped(
    mut response: reqwest::Response,
    what: &str,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_big(what, url, limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RegistryError::Unavailable(format!("{url}: {}", root_cause(&e))))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_big(what, url, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `sha256:` digest of `body`.
fn sha256(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
}

impl Registry {
    /// `https://host/v2/REPOSITORY` (plain HTTP for loopback registries).
    fn base_url(r: &Reference) -> String {
        let host = r.resolve_registry();
        let scheme = if is_loopback(host) { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{}", r.repository())
    }

    /// A request to `url` with the credentials `operation` on `r` needs (the client's own
    /// authentication: a bearer token when the registry uses tokens, else basic).
    pub(super) async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        r: &Reference,
        operation: RegistryOperation,
    ) -> Result<reqwest::RequestBuilder, RegistryError> {
        // Asked once per repository and operation: the client's own token cache is private.
        let slot = format!("{}/{}:{operation:?}", r.resolve_registry(), r.repository());
        let known = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
            .cloned();
        let token = match known {
            Some(token) => token,
            None => {
                let token = super::bounded(self.client.auth(r, &self.auth, operation))
                    .await?
                    .flatten();
                self.tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(slot, token.clone());
                token
            }
        };
        crate::tls::install();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Unavailable(root_cause(&e)))?;
        let request = http.request(method, url);
        Ok(match (&token, &self.auth) {
            (Some(t), _) => request.bearer_auth(t),
            (None, oci_client::secrets::RegistryAuth::Basic(u, p)) => {
                request.basic_auth(u, Some(p))
            }
            (None, oci_client::secrets::RegistryAuth::Bearer(t)) => request.bearer_auth(t),
            (None, _) => request,
        })
    }

    /// A GET of `url`: `None` for 404 (or a registry error that says the name or manifest is
    /// unknown), an error for refused credentials and other failures.
    async fn get(
        &self,
        url: &str,
        r: &Reference,
        headers: HeaderMap,
    ) -> Result<Option<reqwest::Response>, RegistryError> {
        self.fetch(reqwest::Method::GET, url, r, headers).await
    }

    /// A `method` (GET or HEAD) request of `url`, as [`Self::get`] says.
    async fn fetch(
        &self,
        method: reqwest::Method,
        url: &str,
        r: &Reference,
        headers: HeaderMap,
    ) -> Result<Option<reqwest::Response>, RegistryError> {
        let send = |request: reqwest::RequestBuilder| async {
            request
                .headers(headers.clone())
                .send()
                .await
                .map_err(|e| RegistryError::Unavailable(format!("{url}: {}", root_cause(&e))))
        };
        let pull = RegistryOperation::Pull;
        let mut response = send(self.request(method.clone(), url, r, pull).await?).await?;
        if response.status().as_u16() == 401 {
            // A token kept from earlier in a long run may have expired: once more with a new one.
            self.tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            response = send(self.request(method, url, r, pull).await?).await?;
        }
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(Some(response)),
            404 => Ok(None),
            401 | 403 => Err(RegistryError::Auth(format!("GET {url}: HTTP {status}"))),
            _ => {
                let body = read_capped(response, "an error", url, 64 << 10)
                    .await
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(&body);
                if body.contains("MANIFEST_UNKNOWN") || body.contains("NAME_UNKNOWN") {
                    return Ok(None);
                }
                Err(RegistryError::Unavailable(format!(
                    "GET {url}: HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                )))
            }
        }
    }

    /// The manifest `r` names, of one of the `accept`ed types, and its digest: at most
    /// [`MANIFEST_LIMIT`] bytes, checked against the digest the reference or the registry
    /// names. `None` when the registry has no such manifest.
    pub(super) async fn get_manifest(
        &self,
        r: &Reference,
        accept: &[&str],
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let name = r.digest().or(r.tag()).unwrap_or("latest");
        let url = format!("{}/manifests/{name}", Self::base_url(r));
        let mut headers = HeaderMap::new();
        if let Ok(v) = accept.join(", ").parse() {
            headers.insert(ACCEPT, v);
        }
        let Some(response) = self.get(&url, r, headers).await? else {
            return Ok(None);
        };
        let said = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_capped(response, "the manifest", &url, MANIFEST_LIMIT).await?;
        let digest = sha256(&body);
        for expected in [r.digest(), said.as_deref()].into_iter().flatten() {
            if expected.starts_with("sha256:") && expected != digest {
                return Err(RegistryError::Unavailable(format!(
                    "the manifest at {url} is not {expected} (its digest is {digest})"
                )));
            }
        }
        Ok(Some((body, digest)))
    }

    /// The digest of the manifest `r` names, from the registry's answer to a HEAD request;
    /// when it does not say, from the manifest itself (read as [`Self::get_manifest`] does).
    pub(super) async fn head_digest(
        &self,
        r: &Reference,
        accept: &[&str],
    ) -> Result<Option<String>, RegistryError> {
        let name = r.digest().or(r.tag()).unwrap_or("latest");
        let url = format!("{}/manifests/{name}", Self::base_url(r));
        let mut headers = HeaderMap::new();
        if let Ok(v) = accept.join(", ").parse() {
            headers.insert(ACCEPT, v);
        }
        let Some(response) = self.fetch(reqwest::Method::HEAD, &url, r, headers).await? else {
            return Ok(None);
        };
        let said = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_string);
        match said {
            Some(d) => Ok(Some(d)),
            None => Ok(self.get_manifest(r, accept).await?.map(|(_, d)| d)),
        }
    }

    /// The image config (a blob) `digest` of `r`'s repository: at most [`CONFIG_LIMIT`]
    /// bytes (refused at once when the registry declares more), its digest checked.
    pub(super) async fn get_config(
        &self,
        r: &Reference,
        digest: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = format!("{}/blobs/{digest}", Self::base_url(r));
        let Some(response) = self.get(&url, r, HeaderMap::new()).await? else {
            return Err(RegistryError::Unavailable(format!(
                "{}: the image config {digest} is missing",
                Self::base_url(r)
            )));
        };
        let body = read_capped(response, "the image config", &url, CONFIG_LIMIT).await?;
        let got = sha256(&body);
        if digest.starts_with("sha256:") && got != digest {
            return Err(RegistryError::Unavailable(format!(
                "the image config at {url} is not {digest} (its digest is {got})"
            )));
        }
        Ok(body)
    }

    /// Downloads the blob `d` of `r`'s repository into `store` (streamed, never held whole),
    /// unless the store holds it: nothing is stored unless its size and digest are `d`'s.
    /// A registry that sends nothing for [`TIMEOUT`] fails it.
    pub(super) async fn blob_into(
        &self,
        r: &Reference,
        d: &Descriptor,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        if store.contains(&d.digest) {
            return Ok(());
        }
        let url = format!("{}/blobs/{}", Self::base_url(r), d.digest);
        let broke = |e: &dyn std::error::Error| {
            RegistryError::Unavailable(format!("{url}: {}", root_cause(e)))
        };
        let request = self
            .request(reqwest::Method::GET, &url, r, RegistryOperation::Pull)
            .await?
            // Big blobs take long: the limit is on silence, per chunk, below.
            .timeout(std::time::Duration::from_hours(24));
        let mut response = request.send().await.map_err(|e| broke(&e))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => return Err(RegistryError::Auth(format!("GET {url}: HTTP {status}"))),
            _ => {
                return Err(RegistryError::Unavailable(format!(
                    "GET {url}: HTTP {status}"
                )))
            }
        }
        let stored = |e: std::io::Error| {
            RegistryError::Unavailable(format!("{url}: cannot write it to the local store: {e}"))
        };
        let mut w = store.writer().map_err(stored)?;
        loop {
            let chunk = tokio::time::timeout(TIMEOUT, response.chunk())
                .await
                .map_err(|_| RegistryError::Timeout)?
                .map_err(|e| broke(&e))?;
            let Some(chunk) = chunk else { break };
            if w.size() + chunk.len() as u64 > d.size {
                return Err(RegistryError::Unavailable(format!(
                    "{url}: more than the {} bytes the manifest says",
                    d.size
                )));
            }
            std::io::Write::write_all(&mut w, &chunk).map_err(stored)?;
        }
        if w.size() != d.size {
            return Err(RegistryError::Unavailable(format!(
                "{url}: {} bytes, not the {} the manifest says",
                w.size(),
                d.size
            )));
        }
        let got = w.commit(&d.media_type).map_err(stored)?;
        if got.digest != d.digest {
            return Err(RegistryError::Unavailable(format!(
                "the blob at {url} is not {} (its digest is {})",
                d.digest, got.digest
            )));
        }
        Ok(())
    }

    /// One page of the tags of `r`'s repository after `last`: at most a few MiB.
    pub(super) async fn get_tags(
        &self,
        r: &Reference,
        last: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        let mut url = format!("{}/tags/list?n={TAGS_PAGE}", Self::base_url(r));
        if let Some(last) = last {
            url.push_str("&last=");
            url.push_str(last);
        }
        let Some(response) = self.get(&url, r, HeaderMap::new()).await? else {
            return Ok(Vec::new());
        };
        let body = read_capped(response, "a page of tags", &url, TAGS_PAGE_LIMIT).await?;
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let page: Page = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Unavailable(format!("{url}: unreadable list of tags: {e}"))
        })?;
        Ok(page.tags.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(size(MANIFEST_LIMIT), "4 MiB");
        assert_eq!(size(CONFIG_LIMIT), "8 MiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
