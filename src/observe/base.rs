//! The first part of an observation: the remote cache, opened by the rules of [`Look`], and
//! where the base image is.

use super::{Look, ObserveError};
use crate::credentials;
use crate::engine::{Engine, EngineError, ImageInfo};
use crate::model::{Pipeline, PullPolicy, RemoteMode};
use crate::registry::{CacheKeys, Registry, RegistryError, RemoteCache};
use crate::signing::SigningKey;

/// Where a pipeline's base image is, as far as its identity goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BaseSeen {
    /// The engine holds it.
    Local(ImageInfo),
    /// Its registry, read without pulling: with a remote cache, a base that is not in the
    /// engine (a fresh runner) still has an id, so the keys are known before any pull and a
    /// fully cached pipeline never pulls it.
    Registry(ImageInfo),
    /// Another pipeline of the same run makes it (`plan` of several files): its id when that
    /// pipeline reuses an image, `None` when it makes a new one.
    Produced(Option<String>),
    /// Nowhere the tool can read it without pulling.
    Absent,
}

impl BaseSeen {
    /// What is known of the base: a produced base has an id and nothing else (so no layers to
    /// check remote entries against).
    pub(crate) fn info(&self) -> Option<ImageInfo> {
        match self {
            BaseSeen::Local(i) | BaseSeen::Registry(i) => Some(i.clone()),
            BaseSeen::Produced(Some(id)) => Some(ImageInfo {
                id: id.clone(),
                ..Default::default()
            }),
            BaseSeen::Produced(None) | BaseSeen::Absent => None,
        }
    }
}

/// The remote cache and the base, as [`base`] found them.
pub(crate) struct Seen {
    /// The pipeline's remote cache: `None` without one, with `--no-cache` or offline.
    pub(crate) remote: Option<RemoteCache>,
    pub(crate) base: BaseSeen,
}

/// Opens the remote cache and finds the base. `produced` is the base image id when another
/// pipeline of the same run makes it (`Some(None)`: it makes a new one, not known yet).
pub(crate) async fn base<E: Engine>(
    engine: &E,
    p: &Pipeline,
    look: Look,
    produced: Option<Option<String>>,
) -> Result<Seen, ObserveError> {
    let remote = if look.no_cache || look.offline {
        None
    } else {
        open_remote(engine, p).await?
    };
    let base = match produced {
        Some(id) => BaseSeen::Produced(id),
        // The tool makes it: known without the engine holding it yet.
        None if p.base.is_scratch() => {
            BaseSeen::Local(super::scratch::scratch_info(engine, p).await?)
        }
        None => match engine.inspect_image(&p.base.image.to_string()).await? {
            Some(info) => BaseSeen::Local(info),
            None if remote.is_some() => match remote_base(engine, p).await {
                Some(info) => BaseSeen::Registry(info),
                None => BaseSeen::Absent,
            },
            None => BaseSeen::Absent,
        },
    };
    Ok(Seen { remote, base })
}

/// The platform the pipeline builds for: its own, else the engine's.
async fn build_platform<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<(String, String), EngineError> {
    match &p.platform {
        Some(pl) => Ok((pl.os.clone(), pl.arch.clone())),
        None => engine.platform().await,
    }
}

/// Opens the pipeline's remote cache, if it has one.
async fn open_remote<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<Option<RemoteCache>, ObserveError> {
    let Some(settings) = &p.cache_remote else {
        return Ok(None);
    };
    let host = settings.repository.registry_host();
    let creds = credentials::resolve(host, settings.login.as_ref()).await?;
    let (os, arch) = build_platform(engine, p).await?;
    let (keys, problem) = cache_keys(settings);
    let cache = RemoteCache::new(
        settings.repository.repository(),
        host,
        settings.mode,
        creds,
        (&os, &arch),
        keys,
    );
    if let Some(why) = problem {
        cache.fail(RegistryError::NotTrusted(why));
    }
    Ok(Some(cache))
}

/// The keys of a remote cache: `verify_key`, and in `readwrite` mode the private key in the
/// variable `signing_key_env` names, when it is set (on trusted jobs only). A private key
/// alone also verifies. The reason the cache cannot be used at all, if so.
fn cache_keys(settings: &crate::model::RemoteCache) -> (CacheKeys, Option<String>) {
    let mut keys = CacheKeys {
        verify: settings.verify_key,
        signer: None,
    };
    let variable = settings
        .signing_key_env
        .as_ref()
        .filter(|_| settings.mode == RemoteMode::ReadWrite)
        .and_then(|name| Some((name, std::env::var(name).ok()?)));
    if let Some((name, value)) = variable {
        match SigningKey::parse(&value) {
            Ok(k) => keys.signer = Some(k),
            Err(why) => return (keys, Some(format!("`{name}` holds no signing key: {why}"))),
        }
    }
    let signer = keys.signer.as_ref().map(SigningKey::public);
    match (keys.verify, signer) {
        (Some(v), Some(s)) if v != s => {
            let why = format!(
                "the key in `{}` does not match `verify_key` (its public key is `{}`)",
                settings.signing_key_env.as_deref().unwrap_or_default(),
                crate::signing::format_verify_key(&s)
            );
            (keys, Some(why))
        }
        (None, Some(s)) => {
            keys.verify = Some(s);
            (keys, None)
        }
        (None, None) => (
            keys,
            Some(
                "`[cache]` has no `verify_key`, so an entry a trusted apply signed cannot be \
                 told from one anyone with push rights planted (`pipeline keygen` makes a key \
                 pair)"
                    .into(),
            ),
        ),
        _ => (keys, None),
    }
}

/// The base image as its registry holds it, read without pulling; `None` when it cannot be
/// read that way, or when its pull policy would pull it anyway.
async fn remote_base<E: Engine>(engine: &E, p: &Pipeline) -> Option<ImageInfo> {
    if p.base.pull != PullPolicy::Missing {
        return None;
    }
    let host = p.base.image.registry_host();
    let creds = credentials::resolve(host, p.base.login.as_ref())
        .await
        .ok()?;
    let (os, arch) = build_platform(engine, p).await.ok()?;
    let registry = Registry::new(host, creds.as_ref(), &os, &arch);
    let image = registry
        .image(&p.base.image.to_string())
        .await
        .ok()
        .flatten()?;
    Some(ImageInfo {
        id: image.id,
        config: image.config,
        layers: image.layers,
        ..Default::default()
    })
}
