//! The base image of each platform's build, pinned by digest before anything runs.

use crate::credentials::{self, CredentialError};
use crate::engine::{Engine, EngineError};
use crate::model::{Pipeline, Platform};
use crate::reference::ImageRef;
use crate::registry::{Manifest, Registry, RegistryError};

/// Why the base of one platform's build cannot be pinned.
#[derive(Debug, thiserror::Error)]
#[error("`{build}`: {error}")]
pub(crate) struct BuildBaseError {
    /// The build (`NAME@os/arch`).
    pub(crate) build: String,
    #[source]
    pub(crate) error: BaseError,
}

/// Why a base has no image for a platform.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BaseError {
    /// The base's index lists other platforms.
    #[error("base image `{reference}` has no image for {platform} (its index lists {})", listed(.has))]
    NoImageFor {
        reference: String,
        platform: Platform,
        has: Vec<Platform>,
    },
    /// The base is one image, of another platform; `registry` says why the engine's copy was
    /// asked, when it was.
    #[error(
        "base image `{reference}` is a single-platform image for {has}, not {wants}: build {wants} from a base whose tag is a multi-platform index, or leave {wants} out of `platforms`{}",
        .registry.as_ref().map(|r| format!("; {r}")).unwrap_or_default()
    )]
    SinglePlatform {
        reference: String,
        has: Platform,
        wants: Platform,
        registry: Option<RegistryAnswer>,
    },
    /// Neither the engine nor the registry has the base.
    #[error("base image `{reference}` is not in the engine and {registry}: its image for {platform} cannot be found")]
    Missing {
        reference: String,
        platform: Platform,
        registry: RegistryAnswer,
    },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The digest read does not make a reference (a registry answering nonsense).
    #[error("`{pinned}`: {reason}")]
    Pin { pinned: String, reason: String },
}

/// What the base's registry said when the base was not found there.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryAnswer {
    #[error("its registry cannot be read ({0})")]
    Unreadable(#[source] RegistryError),
    #[error("its registry has no such manifest")]
    NoManifest,
}

impl BaseError {
    /// True when the engine or the registry is at fault (the base is missing or cannot be
    /// read), false when the files ask for what the base does not have.
    pub(crate) fn is_engine_failure(&self) -> bool {
        matches!(self, BaseError::Missing { .. } | BaseError::Engine(_))
    }
}

fn listed(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        "no platform".to_string()
    } else {
        let names: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        names.join(", ")
    }
}

/// Points every build that names its platform at the base's manifest for that platform,
/// by digest (`repo@sha256:...`): read from the base's index, or the base itself when it is
/// one image of that platform. A base that has no image for the platform is an error, found
/// before anything runs. A base its registry cannot tell about is checked in `engine`.
pub(crate) async fn resolve_bases<E: Engine>(
    builds: &mut [Pipeline],
    engine: &E,
) -> Result<(), Vec<BuildBaseError>> {
    let mut errors = Vec::new();
    for b in builds.iter_mut() {
        let Some(platform) = b.platform.clone() else {
            continue;
        };
        if let Err(error) = resolve_base(b, &platform, engine).await {
            errors.push(BuildBaseError {
                build: b.name.clone(),
                error,
            });
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
) -> Result<(), BaseError> {
    let reference = b.base.image.to_string();
    let host = b.base.image.registry_host();
    let creds = credentials::resolve(host, b.base.login.as_ref()).await?;
    let registry = Registry::new(host, creds.as_ref(), &platform.os, &platform.arch);
    let matches = |p: &Platform| platform.matches(&p.os, &p.arch, p.variant.as_deref());
    let digest = match registry.manifest(&reference).await {
        Ok(Some(Manifest::Index { entries, .. })) => {
            match entries.iter().find(|e| matches(&e.platform)) {
                Some(e) => e.digest.clone(),
                None => {
                    return Err(BaseError::NoImageFor {
                        reference,
                        platform: platform.clone(),
                        has: entries.into_iter().map(|e| e.platform).collect(),
                    })
                }
            }
        }
        Ok(Some(Manifest::Image(e))) => {
            if !matches(&e.platform) {
                return Err(BaseError::SinglePlatform {
                    reference,
                    has: e.platform,
                    wants: platform.clone(),
                    registry: None,
                });
            }
            e.digest
        }
        // Not in a registry that answers: the engine's copy must be of this platform.
        Ok(None) => {
            return local_base(engine, reference, platform, RegistryAnswer::NoManifest).await
        }
        Err(e) => {
            return local_base(engine, reference, platform, RegistryAnswer::Unreadable(e)).await
        }
    };
    let pinned = format!("{}@{digest}", b.base.image.repository());
    b.base.image = ImageRef::parse(&pinned).map_err(|reason| BaseError::Pin { pinned, reason })?;
    Ok(())
}

/// A base its registry cannot tell about: the engine's copy is used when it is of `platform`.
async fn local_base<E: Engine>(
    engine: &E,
    reference: String,
    platform: &Platform,
    registry: RegistryAnswer,
) -> Result<(), BaseError> {
    let local = engine.inspect_image(&reference).await?;
    match local.and_then(|i| i.platform) {
        Some(p) if platform.matches(&p.os, &p.arch, p.variant.as_deref()) => Ok(()),
        Some(has) => Err(BaseError::SinglePlatform {
            reference,
            has,
            wants: platform.clone(),
            registry: Some(registry),
        }),
        None => Err(BaseError::Missing {
            reference,
            platform: platform.clone(),
            registry,
        }),
    }
}
