//! The lock file's entries as the registries and the engine hold them now: what `pipeline
//! lock` records, and what `plan` compares with the lock (`base moved`).

use crate::credentials;
use crate::engine::Engine;
use crate::lockfile::{LockedBase, LockedPlatform, Source};
use crate::model::Base;
use crate::registry::Registry;

/// A base whose reference now resolves to other digests than its lock entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moved {
    pub(crate) reference: String,
    pub(crate) locked: String,
    pub(crate) current: String,
}

/// A client for the base's registry, with its credentials.
async fn registry(base: &Base) -> Result<Registry, String> {
    let host = base.image.registry_host();
    let creds = credentials::resolve(host, base.login.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    // The platform only chooses among an index's images, which these reads do not do.
    Ok(Registry::new(host, creds.as_ref(), "linux", "amd64"))
}

/// Reads the lock entry of `base` now: from its registry (bounded reads); a reference no
/// registry answers for is read from the engine (its image id, its repo digest if any).
pub(crate) async fn entry<E: Engine>(engine: &E, base: &Base) -> Result<LockedBase, String> {
    let reference = base.image.to_string();
    let answer = match registry(base).await {
        Ok(r) => r.pins(&reference).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if let Ok(Some(pins)) = answer {
        let platforms = pins
            .platforms
            .into_iter()
            .map(|(p, manifest, config)| LockedPlatform {
                platform: p.to_string(),
                manifest: Some(manifest),
                config,
            })
            .collect();
        return Ok(LockedBase {
            reference,
            source: Source::Registry,
            index: pins.index,
            platforms,
        });
    }
    let why = match answer {
        Err(e) => format!("its registry cannot be read ({e})"),
        _ => "its registry has no such manifest".to_string(),
    };
    let info = engine
        .inspect_image(&reference)
        .await
        .map_err(|e| format!("`{reference}`: {why}, and the engine cannot be read: {e}"))?
        .ok_or_else(|| format!("`{reference}`: {why}, and the engine does not hold it"))?;
    let repository = base.image.repository();
    let manifest = info.repo_digests.iter().find_map(|d| {
        d.split_once('@')
            .filter(|(repo, _)| *repo == repository)
            .map(|(_, digest)| digest.to_string())
    });
    Ok(LockedBase {
        reference,
        source: Source::Engine,
        index: None,
        platforms: vec![LockedPlatform {
            platform: info
                .platform
                .map_or_else(|| "unknown/unknown".to_string(), |p| p.to_string()),
            manifest,
            config: info.id,
        }],
    })
}

/// Whether `locked` still names what `base` resolves to: the registry's current digest of the
/// reference (a HEAD request) against the locked index or manifest; for an entry read from the
/// engine, the engine's image id against the locked one. `None` when nothing moved or it
/// cannot be told.
pub(crate) async fn moved<E: Engine>(
    engine: &E,
    base: &Base,
    locked: &LockedBase,
) -> Option<Moved> {
    let reference = base.image.to_string();
    let (was, now) = match locked.source {
        Source::Registry => {
            let registry = registry(base).await.ok()?;
            let now = registry.digest(&reference).await.ok()??;
            (locked.top_digest()?.to_string(), now)
        }
        Source::Engine => {
            let now = engine.inspect_image(&reference).await.ok()??.id;
            (locked.platforms.first()?.config.clone(), now)
        }
    };
    (was != now).then_some(Moved {
        reference,
        locked: was,
        current: now,
    })
}
