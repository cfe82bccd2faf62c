//! The lock file's entries as the registries and the engine hold them now: what `pipeline
//! lock` records, and what `plan` compares with the lock (`base moved`, `copy source moved`).

use crate::credentials;
use crate::engine::Engine;
use crate::lockfile::{Kind, LockSeen, LockedImage, LockedPlatform, Source};
use crate::model::Login;
use crate::reference::ImageRef;
use crate::registry::Registry;

/// A client for the image's registry, with its credentials (`login`'s when given).
async fn registry(image: &ImageRef, login: Option<&Login>) -> Result<Registry, String> {
    let host = image.registry_host();
    let creds = credentials::resolve(host, login)
        .await
        .map_err(|e| e.to_string())?;
    // The platform only chooses among an index's images, which these reads do not do.
    Ok(Registry::new(host, creds.as_ref(), "linux", "amd64"))
}

/// Reads the lock entry of `image` now: from its registry (bounded reads); a reference no
/// registry answers for is read from the engine (its image id, its repo digest if any).
pub(crate) async fn entry<E: Engine>(
    engine: &E,
    image: &ImageRef,
    login: Option<&Login>,
) -> Result<LockedImage, String> {
    let reference = image.to_string();
    let answer = match registry(image, login).await {
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
        return Ok(LockedImage {
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
    let repository = image.repository();
    let manifest = info.repo_digests.iter().find_map(|d| {
        d.split_once('@')
            .filter(|(repo, _)| *repo == repository)
            .map(|(_, digest)| digest.to_string())
    });
    Ok(LockedImage {
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

/// `locked` beside what `image` resolves to now: the registry's current digest of the
/// reference (a HEAD request) against the locked index or manifest; for an entry read from the
/// engine, the engine's image id against the locked one. `read = false` (`plan --offline`)
/// asks nothing; `current` is then unknown, as it is when the answer cannot be had.
pub(crate) async fn seen<E: Engine>(
    engine: &E,
    kind: Kind,
    (image, login): (&ImageRef, Option<&Login>),
    locked: &LockedImage,
    read: bool,
) -> LockSeen {
    let current = if read {
        current(engine, image, login, locked.source).await
    } else {
        None
    };
    let was = locked.pinned().unwrap_or_default().to_string();
    LockSeen {
        kind,
        reference: locked.reference.clone(),
        moved: current.as_ref().is_some_and(|now| *now != was),
        locked: was,
        current,
    }
}

/// What `image` resolves to now, compared the way its entry was read.
async fn current<E: Engine>(
    engine: &E,
    image: &ImageRef,
    login: Option<&Login>,
    source: Source,
) -> Option<String> {
    let reference = image.to_string();
    match source {
        Source::Registry => registry(image, login)
            .await
            .ok()?
            .digest(&reference)
            .await
            .ok()?,
        Source::Engine => Some(engine.inspect_image(&reference).await.ok()??.id),
    }
}
