//! Publishing: every tag of every target, in order, skipping what the registry already holds.

use super::retry::retry;
use super::{ApplyError, Options, Pushed};
use crate::credentials;
use crate::engine::{Credentials, Engine};
use crate::execute::events::{Event, Sink};
use crate::model::Pipeline;

/// Pushes every tag of every target, in order. Nothing is pushed unless the build succeeded
/// (the caller only gets here then).
pub(super) async fn publish<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: &str,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    let mut pushed = Vec::new();
    if p.publish.is_empty() {
        return Ok(pushed);
    }
    for target in &p.publish {
        let repository = target.repository.repository();
        let creds: Option<Credentials> =
            credentials::resolve(target.repository.registry_host(), target.login.as_ref()).await?;
        // Up to date when the registry already holds this image under the tag; only possible
        // when the image was pushed to (or pulled from) this repository before.
        let prefix = format!("{repository}@");
        let local = match engine.inspect_image(image).await {
            Ok(Some(i)) if i.repo_digests.iter().any(|d| d.starts_with(&prefix)) => Some(i),
            _ => None,
        };
        for tag in &target.tags {
            let fail = |source, attempts, pushed: &Vec<Pushed>| ApplyError::Push {
                repository: repository.clone(),
                tag: tag.clone(),
                attempts,
                source: Box::new(source),
                image: image.to_string(),
                pushed: pushed.clone(),
                cli: engine.cli_name(),
            };
            engine
                .tag(image, &repository, tag)
                .await
                .map_err(|e| fail(e, 0, &pushed))?;
            if let Some(local) = &local {
                if let Ok(Some(remote)) = engine
                    .remote_digest(&format!("{repository}:{tag}"), creds.clone())
                    .await
                {
                    let published = engine
                        .is_published(local, &repository, &remote, creds.clone())
                        .await
                        .unwrap_or(false);
                    if published {
                        let entry = Pushed {
                            repository: repository.clone(),
                            tag: tag.clone(),
                            digest: remote,
                            attempts: 0,
                            up_to_date: true,
                        };
                        sink.event(Event::Pushed {
                            repository: repository.clone(),
                            tag: tag.clone(),
                            digest: entry.digest.clone(),
                            attempts: 0,
                            up_to_date: true,
                        });
                        pushed.push(entry);
                        continue;
                    }
                }
            }
            match push_tag(engine, &repository, tag, creds.clone(), opts, sink).await {
                Ok((digest, attempts)) => {
                    sink.event(Event::Pushed {
                        repository: repository.clone(),
                        tag: tag.clone(),
                        digest: digest.clone(),
                        attempts,
                        up_to_date: false,
                    });
                    pushed.push(Pushed {
                        repository: repository.clone(),
                        tag: tag.clone(),
                        digest,
                        attempts,
                        up_to_date: false,
                    });
                }
                Err((source, attempts)) => return Err(fail(source, attempts, &pushed)),
            }
        }
    }
    Ok(pushed)
}

/// Pushes the local `repository:tag`, retrying transient failures, reporting progress; the
/// manifest digest and the attempts it took.
pub(super) async fn push_tag<E: Engine>(
    engine: &E,
    repository: &str,
    tag: &str,
    creds: Option<Credentials>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(String, u32), (crate::engine::EngineError, u32)> {
    sink.event(Event::PushStarted {
        repository: repository.to_string(),
        tag: tag.to_string(),
    });
    retry(opts, sink, Some((repository, tag)), || {
        let creds = creds.clone();
        async move {
            engine
                .push(repository, tag, creds, &mut |progress| {
                    sink.event(Event::PushProgress {
                        repository: repository.to_string(),
                        tag: tag.to_string(),
                        progress,
                    })
                })
                .await
        }
    })
    .await
}
