//! The base image of each platform's build, pinned by digest before anything runs.

use crate::credentials::{self, CredentialError};
use crate::engine::{Engine, EngineError};
use crate::model::{Action, CopySpec, Pipeline, Platform};
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
    #[error("{what} `{reference}` has no image for {platform} (its index lists {})", listed(.has))]
    NoImageFor {
        what: Role,
        reference: String,
        platform: Platform,
        has: Vec<Platform>,
    },
    /// The base is one image, of another platform; `registry` says why the engine's copy was
    /// asked, when it was.
    #[error(
        "{what} `{reference}` is a single-platform image for {has}, not {wants}: build {wants} from {} whose tag is a multi-platform index, or leave {wants} out of `platforms`{}",
        .what.instead(),
        .registry.as_ref().map(|r| format!("; {r}")).unwrap_or_default()
    )]
    SinglePlatform {
        what: Role,
        reference: String,
        has: Platform,
        wants: Platform,
        registry: Option<RegistryAnswer>,
    },
    /// Neither the engine nor the registry has the base.
    #[error("{what} `{reference}` is not in the engine and {registry}: its image for {platform} cannot be found")]
    Missing {
        what: Role,
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

/// What an image is to the build whose platform it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The build's base.
    Base,
    /// An image a copy step takes files from.
    CopySource,
}

impl Role {
    /// What to use instead, in a hint.
    fn instead(self) -> &'static str {
        match self {
            Role::Base => "a base",
            Role::CopySource => "an image",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Base => "base image",
            Role::CopySource => "copy source",
        })
    }
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
/// one image of that platform; and the same for each image reference a copy takes files from.
/// An image that has no image for the platform is an error, found before anything runs. An
/// image its registry cannot tell about is checked in `engine`.
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
    // The tool writes the empty base of every platform itself.
    if !b.base.is_scratch() {
        let login = b.base.login.as_ref();
        if let Some(pinned) = pin(&b.base.image, login, platform, Role::Base, engine).await? {
            b.base.image = pinned;
        }
    }
    // The images copies take files from are of the build's platform too.
    for step in &mut b.steps {
        let Action::Copy(CopySpec {
            from: Some(from), ..
        }) = &mut step.action
        else {
            continue;
        };
        let (None, Some(reference)) = (&from.pipeline, &from.reference) else {
            continue;
        };
        if let Some(pinned) = pin(reference, None, platform, Role::CopySource, engine).await? {
            from.reference = Some(pinned);
        }
    }
    Ok(())
}

/// `image`'s manifest for `platform`, by digest (`repo@sha256:...`), read from its index, or
/// `image` itself when it is one image of that platform; `None` when its registry cannot tell
/// and the engine's copy is of that platform.
async fn pin<E: Engine>(
    image: &ImageRef,
    login: Option<&crate::model::Login>,
    platform: &Platform,
    what: Role,
    engine: &E,
) -> Result<Option<ImageRef>, BaseError> {
    let reference = image.to_string();
    let host = image.registry_host();
    let creds = credentials::resolve(host, login).await?;
    let registry = Registry::new(host, creds.as_ref(), &platform.os, &platform.arch);
    let matches = |p: &Platform| platform.matches(&p.os, &p.arch, p.variant.as_deref());
    let digest = match registry.manifest(&reference).await {
        Ok(Some(Manifest::Index { entries, .. })) => {
            match entries.iter().find(|e| matches(&e.platform)) {
                Some(e) => e.digest.clone(),
                None => {
                    return Err(BaseError::NoImageFor {
                        what,
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
                    what,
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
            return local(
                engine,
                what,
                reference,
                platform,
                RegistryAnswer::NoManifest,
            )
            .await
        }
        Err(e) => {
            return local(
                engine,
                what,
                reference,
                platform,
                RegistryAnswer::Unreadable(e),
            )
            .await
        }
    };
    let pinned = format!("{}@{digest}", image.repository());
    ImageRef::parse(&pinned)
        .map(Some)
        .map_err(|reason| BaseError::Pin { pinned, reason })
}

/// An image its registry cannot tell about: the engine's copy is used when it is of
/// `platform`.
async fn local<E: Engine>(
    engine: &E,
    what: Role,
    reference: String,
    platform: &Platform,
    registry: RegistryAnswer,
) -> Result<Option<ImageRef>, BaseError> {
    let found = engine.inspect_image(&reference).await?;
    match found.and_then(|i| i.platform) {
        Some(p) if platform.matches(&p.os, &p.arch, p.variant.as_deref()) => Ok(None),
        Some(has) => Err(BaseError::SinglePlatform {
            what,
            reference,
            has,
            wants: platform.clone(),
            registry: Some(registry),
        }),
        None => Err(BaseError::Missing {
            what,
            reference,
            platform: platform.clone(),
            registry,
        }),
    }
}
