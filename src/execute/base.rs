//! The base image, made present by its pull policy, and pulls with retries.

use super::retry::retry;
use super::{ApplyError, Options};
use crate::credentials;
use crate::engine::{Credentials, Engine, EngineError, ImageInfo};
use crate::execute::events::{Event, Sink};
use crate::model::{Pipeline, PullPolicy};

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
    if pull {
        let creds =
            credentials::resolve(p.base.image.registry_host(), p.base.login.as_ref()).await?;
        pull_image(engine, &reference, creds, opts, sink)
            .await
            .map_err(|source| ApplyError::Pull {
                reference: reference.clone(),
                source,
            })?;
    }
    let info = match (pull, existing) {
        (false, Some(info)) => info,
        _ => engine
            .inspect_image(&reference)
            .await?
            .ok_or_else(|| ApplyError::Pull {
                reference: reference.clone(),
                source: EngineError::NotFound("the pulled image is missing".into()),
            })?,
    };
    sink.event(Event::BaseReady {
        reference,
        id: info.id.clone(),
        pulled: pull,
    });
    Ok(info)
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
