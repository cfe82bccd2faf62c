//! A reference's digests as its registry holds them, for the lock file: the index (when it is
//! one), and per platform the manifest and config digests. Bounded reads only.

use oci_client::Reference;

use super::{parse, within, RawManifest, Registry, RegistryError, MANIFEST_TYPES};
use crate::model::Platform;

/// What a reference resolves to, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pins {
    /// The index digest, when the reference names an index.
    pub(crate) index: Option<String>,
    /// Per platform: the manifest digest and the config digest.
    pub(crate) platforms: Vec<(Platform, String, String)>,
}

impl Registry {
    /// The digests `reference` resolves to; `None` when the registry has no such manifest.
    /// Index entries for no real platform (`unknown/unknown`: attestations) are left out.
    pub(crate) async fn pins(&self, reference: &str) -> Result<Option<Pins>, RegistryError> {
        let r = parse(reference)?;
        let Some(top) = self.manifest(reference).await? else {
            return Ok(None);
        };
        match top {
            super::Manifest::Index { digest, entries } => {
                let mut platforms = Vec::new();
                for e in entries.into_iter().filter(|e| e.platform.os != "unknown") {
                    let config = self.config_digest(&r, &e.digest, reference).await?;
                    platforms.push((e.platform, e.digest, config));
                }
                Ok(Some(Pins {
                    index: Some(digest),
                    platforms,
                }))
            }
            super::Manifest::Image(e) => {
                let config = self.config_digest(&r, &e.digest, reference).await?;
                Ok(Some(Pins {
                    index: None,
                    platforms: vec![(e.platform, e.digest, config)],
                }))
            }
        }
    }

    /// The config digest of the manifest `digest` in `r`'s repository.
    async fn config_digest(
        &self,
        r: &Reference,
        digest: &str,
        reference: &str,
    ) -> Result<String, RegistryError> {
        let at = Reference::with_digest(
            r.registry().to_string(),
            r.repository().to_string(),
            digest.to_string(),
        );
        let missing = || {
            RegistryError::Unavailable(format!("`{reference}`: its manifest {digest} is missing"))
        };
        let (body, _) = within(self.get_manifest(&at, &MANIFEST_TYPES))
            .await?
            .ok_or_else(missing)?;
        let raw: RawManifest = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Unavailable(format!("`{reference}`: unreadable manifest {digest}: {e}"))
        })?;
        raw.config.map(|c| c.digest).ok_or_else(|| {
            RegistryError::Unavailable(format!("`{reference}`: manifest {digest} has no config"))
        })
    }
}
