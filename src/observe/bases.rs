//! The base image of each platform's build, pinned by digest before anything runs.

use crate::credentials;
use crate::engine::Engine;
use crate::model::{Pipeline, Platform};
use crate::reference::ImageRef;
use crate::registry::{Manifest, Registry};

/// Points every build that names its platform at the base's manifest for that platform,
/// by digest (`repo@sha256:...`): read from the base's index, or the base itself when it is
/// one image of that platform. A base that has no image for the platform is an error, found
/// before anything runs. A base its registry cannot tell about is checked in `engine`.
pub(crate) async fn resolve_bases<E: Engine>(
    builds: &mut [Pipeline],
    engine: &E,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for b in builds.iter_mut() {
        let Some(platform) = b.platform.clone() else {
            continue;
        };
        if let Err(e) = resolve_base(b, &platform, engine).await {
            errors.push(format!("`{}`: {e}", b.name));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

async fn resolve_base<E: Engine>(
    b: &mut Pipeline,
    platform: &Platform,
    engine: &E,
) -> Result<(), String> {
    let reference = b.base.image.to_string();
    let host = b.base.image.registry_host();
    let creds = credentials::resolve(host, b.base.login.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let registry = Registry::new(host, creds.as_ref(), &platform.os, &platform.arch);
    let read = registry.manifest(&reference).await;
    let digest = match read {
        Ok(Some(Manifest::Index { entries, .. })) => {
            let found = entries.iter().find(|e| {
                platform.matches(
                    &e.platform.os,
                    &e.platform.arch,
                    e.platform.variant.as_deref(),
                )
            });
            match found {
                Some(e) => e.digest.clone(),
                None => {
                    let has: Vec<String> = entries.iter().map(|e| e.platform.to_string()).collect();
                    return Err(format!(
                        "base image `{reference}` has no image for {platform} (its index lists {})",
                        if has.is_empty() {
                            "no platform".to_string()
                        } else {
                            has.join(", ")
                        }
                    ));
                }
            }
        }
        Ok(Some(Manifest::Image(e))) => {
            let p = &e.platform;
            if !platform.matches(&p.os, &p.arch, p.variant.as_deref()) {
                return Err(mismatch(&reference, p, platform));
            }
            e.digest
        }
        // Not in a registry that answers: the engine's copy must be of this platform.
        Ok(None) | Err(_) => {
            let local = engine
                .inspect_image(&reference)
                .await
                .map_err(|e| e.to_string())?;
            let why = match &read {
                Err(e) => format!("its registry cannot be read ({e})"),
                _ => "its registry has no such manifest".to_string(),
            };
            return match local.and_then(|i| i.platform) {
                Some(p) if platform.matches(&p.os, &p.arch, p.variant.as_deref()) => Ok(()),
                Some(p) => Err(format!("{}; {why}", mismatch(&reference, &p, platform))),
                None => Err(format!(
                    "base image `{reference}` is not in the engine and {why}: its image for {platform} cannot be found"
                )),
            };
        }
    };
    let pinned = format!("{}@{digest}", b.base.image.repository());
    b.base.image = ImageRef::parse(&pinned).map_err(|e| format!("`{pinned}`: {e}"))?;
    Ok(())
}

fn mismatch(reference: &str, has: &Platform, wants: &Platform) -> String {
    format!(
        "base image `{reference}` is a single-platform image for {has}, not {wants}: build {wants} from a base whose tag is a multi-platform index, or leave {wants} out of `platforms`"
    )
}
