//! The observation `plan` reports: the one `apply` acts on, and what explains a miss and what
//! the publish targets hold.

use super::{base, cache, inputs, publish_tags, BaseSeen, Look, ObserveError};
use crate::cache::NoteStore;
use crate::credentials;
use crate::engine::{Engine, EngineError};
use crate::model::{Pipeline, PullPolicy};
use crate::plan::{self, BasePull, Observed, Plan, RemoteStatus};
use crate::registry::{Registry, RegistryError};

/// How `plan` looks.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanOptions {
    pub(crate) look: Look,
    /// Where apply recorded its checkpoint notes, which explain a miss.
    pub(crate) notes: Option<NoteStore>,
    /// The name of the container (created, never started) that looks in a base in the engine
    /// for what the first `run` step needs; `None`: the base is not looked at.
    pub(crate) look_in_base: Option<String>,
}

/// Reads what the engine and registries hold, without changing anything, and plans.
/// `produced` is the base image id when another pipeline of the same run makes it
/// (`Some(None)`: it makes a new one, not known yet).
pub(crate) async fn plan<E: Engine>(
    engine: &E,
    p: &Pipeline,
    opts: &PlanOptions,
    produced: Option<Option<String>>,
) -> Result<Plan, ObserveError> {
    let look = opts.look;
    let from_run = produced.is_some();
    let seen = base(engine, p, look, produced).await?;
    let pinned = pin_copies(engine, p).await?;
    let p = pinned.as_ref().unwrap_or(p);
    let inputs = inputs(p)?;
    let base = seen.base.info();
    let mut obs = Observed {
        base_id: base.as_ref().map(|b| b.id.clone()),
        base_remote: matches!(seen.base, BaseSeen::Registry(_)),
        base_pull: (!from_run).then_some(base_pull(engine, p, &seen.base, look).await?),
        no_cache: look.no_cache,
        ..Default::default()
    };
    if let Some(base) = &base {
        let cached = cache(engine, p, look, seen.remote.as_ref(), base, &inputs).await?;
        obs.hit = cached.hit;
    }
    // Apply would fail at the first `run` step: said now, when the engine holds the base.
    if let (BaseSeen::Local(info), Some(name)) = (&seen.base, &opts.look_in_base) {
        obs.lacks = super::needs::lacks(engine, p, info, obs.hit.resume.steps_cached, name).await?;
    }
    if let Some(cache) = &seen.remote {
        obs.cache_remote = Some(RemoteStatus {
            repository: cache.repository.clone(),
            mode: cache.mode,
            error: cache.failure().map(|e| e.to_string()),
            ignored: cache.take_ignored(),
        });
    }
    explain_miss(engine, &mut obs, opts.notes.as_ref()).await?;
    let mut image = None;
    if let Some(id) = &obs.hit.image {
        image = Some(match engine.inspect_image(id).await {
            Ok(Some(info)) => {
                obs.local_digests.clone_from(&info.repo_digests);
                info
            }
            // A remote cache hit on a fresh runner: a tag holds this image when its config
            // is this id (the tool publishes its own manifest of it).
            _ => crate::engine::ImageInfo {
                id: id.clone(),
                ..Default::default()
            },
        });
    }
    // Offline, the publish targets (which the file chooses) are never contacted, and no
    // password or docker config credential is read for them.
    if !look.offline {
        obs.tags = Some(publish_tags(engine, p, image.as_ref()).await?);
    }
    Ok(plan::build(p, &inputs, &obs))
}

/// Whether apply can make the base present: a base it must pull is asked of its registry
/// (unless offline), which may say it has no such manifest or refuse the credentials.
async fn base_pull<E: Engine>(
    engine: &E,
    p: &Pipeline,
    seen: &BaseSeen,
    look: Look,
) -> Result<BasePull, ObserveError> {
    let must_pull = match (seen, p.base.pull) {
        (BaseSeen::Registry(_) | BaseSeen::Produced(_), _) => return Ok(BasePull::Possible),
        (BaseSeen::Absent, PullPolicy::Never) => return Ok(BasePull::Forbidden),
        (BaseSeen::Local(_), PullPolicy::Missing | PullPolicy::Never) => false,
        (BaseSeen::Absent, _) | (BaseSeen::Local(_), PullPolicy::Always) => true,
    };
    if !must_pull {
        return Ok(BasePull::NotNeeded);
    }
    if look.offline {
        return Ok(BasePull::Possible);
    }
    let host = p.base.image.registry_host();
    let creds = credentials::resolve(host, p.base.login.as_ref()).await?;
    let (os, arch) = match &p.platform {
        Some(pl) => (pl.os.clone(), pl.arch.clone()),
        None => engine.platform().await?,
    };
    let registry = Registry::new(host, creds.as_ref(), &os, &arch);
    Ok(match registry.digest(&p.base.image.to_string()).await {
        Ok(Some(_)) => BasePull::Possible,
        Ok(None) => BasePull::NotInRegistry,
        Err(RegistryError::Auth(why)) => BasePull::Refused(why),
        // Not certain: apply may still reach it.
        Err(_) => BasePull::Possible,
    })
}

/// A miss is explained by the notes of the images that held the first step to run.
async fn explain_miss<E: Engine>(
    engine: &E,
    obs: &mut Observed,
    notes: Option<&NoteStore>,
) -> Result<(), EngineError> {
    if obs.no_cache || obs.hit.image.is_some() || obs.base_id.is_none() {
        return Ok(());
    }
    obs.cache = engine.list_cache().await?;
    if let Some(store) = notes {
        for sibling in plan::siblings(&obs.hit.resume, obs.base_id.as_deref(), &obs.cache)
            .into_iter()
            .take(10)
        {
            if let Some(note) = store.read(&sibling.id) {
                obs.notes.insert(sibling.id.clone(), note);
            }
        }
    }
    Ok(())
}

/// `p` with the ids of the images its copies read from, as the engine holds them now (what
/// apply pins them to when it pulls nothing); `None` when no step copies from an image. An
/// image another pipeline of the run makes is the one `plan` found that pipeline would leave
/// (set by the caller), and stays unknown when it makes a new one: its copy is not cached.
async fn pin_copies<E: Engine>(engine: &E, p: &Pipeline) -> Result<Option<Pipeline>, EngineError> {
    let mut pinned = p.clone();
    let mut any = false;
    for step in &mut pinned.steps {
        let crate::model::Action::Copy(c) = &mut step.action else {
            continue;
        };
        let Some(from) = c.from.as_mut() else {
            continue;
        };
        any = true;
        if let (Some(r), None) = (&from.reference, &from.pipeline) {
            from.image = engine.inspect_image(&r.to_string()).await?.map(|i| i.id);
        }
    }
    Ok(any.then_some(pinned))
}
