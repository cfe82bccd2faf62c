//! The base image, made present by its pull policy, and pulls with retries.

use super::retry::retry;
use super::{ApplyError, Options};
use crate::credentials;
use crate::engine::{Credentials, Engine, EngineError, ImageInfo};
use crate::execute::events::{Event, Sink};
use crate::model::{Login, Pipeline, PullPolicy};
use crate::reference::ImageRef;

/// Makes the base present by its pull policy; `existing` is what the engine holds under the
/// base's reference (already asked by the caller).
pub(super) async fn ensure_base<E: Engine>(
    engine: &E,
    p: &Pipeline,
    existing: Option<ImageInfo>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<ImageInfo, ApplyError> {
    let reference = p.base.image.to_string();
    if p.base.is_scratch() {
        let info = crate::observe::ensure_scratch(engine, p).await?;
        sink.event(Event::BaseReady {
            reference,
            id: info.id.clone(),
            pulled: false,
        });
        return Ok(info);
    }
    let pull = match (p.base.pull, &existing) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, None) => true,
        (PullPolicy::Never, None) => {
            return Err(ApplyError::BaseMissing {
                reference,
                cli: engine.cli_name(),
            })
        }
        _ => false,
    };
    let info = match (pull, existing) {
        (false, Some(info)) => info,
        _ => pulled(engine, &p.base.image, p.base.login.as_ref(), opts, sink).await?,
    };
    sink.event(Event::BaseReady {
        reference,
        id: info.id.clone(),
        pulled: pull,
    });
    Ok(info)
}

/// Pulls `image` (with credentials for its registry, `login`'s when given) and inspects what
/// the pull left.
pub(super) async fn pulled<E: Engine>(
    engine: &E,
    image: &ImageRef,
    login: Option<&Login>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<ImageInfo, ApplyError> {
    let reference = image.to_string();
    let creds = credentials::resolve(image.registry_host(), login).await?;
    pull_image(engine, &reference, creds, opts, sink)
        .await
        .map_err(|source| ApplyError::Pull {
            reference: reference.clone(),
            source,
        })?;
    engine
        .inspect_image(&reference)
        .await?
        .ok_or_else(|| ApplyError::Pull {
            reference,
            source: EngineError::NotFound("the pulled image is missing".into()),
        })
}

/// Pulls `reference`, retrying transient failures, reporting progress.
pub(super) async fn pull_image<E: Engine>(
    engine: &E,
    reference: &str,
    creds: Option<Credentials>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(), EngineError> {
    retry(opts, sink, None, || {
        let creds = creds.clone();
        async move {
            engine
                .pull(reference, creds, &mut |pr| {
                    sink.event(Event::PullProgress(pr))
                })
                .await
        }
    })
    .await
    .map(|_| ())
    .map_err(|(e, _)| e)
}
