//! Publishing: every tag of every target, in order, skipping what the registry already holds.
//! The tool pushes its own image (the build's, else the engine image read from its export
//! into the blob store) with its own pusher; without a blob store (no cache folder), the
//! engine pushes.

use super::layers::engine_image;
use super::retry::retry;
use super::{ApplyError, Options, Pushed};
use crate::credentials;
use crate::engine::{Credentials, Engine, EngineError, Progress};
use crate::execute::events::{Event, Sink};
use crate::image::compress::Compression;
use crate::image::store::BlobStore;
use crate::image::Image;
use crate::model::Pipeline;
use crate::registry::push::{BlobProgress, PushError, Pusher};

/// Pushes every tag of every target, in order. Nothing is pushed unless the build succeeded
/// (the caller only gets here then). `made` is the tool's image of the build, when it wrote
/// one.
pub(super) async fn publish<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: &str,
    made: Option<&Image>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    if p.publish.is_empty() {
        return Ok(Vec::new());
    }
    let Some(store) = opts.store.clone() else {
        return publish_with_engine(engine, p, image, opts, sink).await;
    };
    let own = match made {
        Some(m) => m.clone(),
        None => tool_image(engine, p, image, &store)
            .await
            .map_err(|e| unreadable(engine, p, image, e))?,
    };
    let mut pushed = Vec::new();
    for target in &p.publish {
        let repository = target.repository.repository();
        let creds =
            credentials::resolve(target.repository.registry_host(), target.login.as_ref()).await?;
        let mut blobs_done = false;
        for tag in &target.tags {
            tag_locally(engine, image, (&repository, tag), &pushed).await?;
            let step = PushStep {
                repository: &repository,
                tag,
                creds: creds.as_ref(),
                image: &own,
                store: &store,
                blobs_done,
            };
            let (entry, attempts) =
                push_own(&step, opts, sink).await.map_err(|(e, attempts)| {
                    push_failed(
                        engine.cli_name(),
                        (&repository, tag),
                        image,
                        e,
                        attempts,
                        &pushed,
                    )
                })?;
            blobs_done = true;
            sink.event(Event::Pushed {
                repository: repository.clone(),
                tag: tag.clone(),
                digest: entry.digest.clone(),
                attempts,
                up_to_date: entry.up_to_date,
            });
            pushed.push(Pushed { attempts, ..entry });
        }
    }
    Ok(pushed)
}

/// Names `image` `target` (repository, tag) in the engine too: what `docker push` needs, and
/// what a failed publish keeps.
async fn tag_locally<E: Engine>(
    engine: &E,
    image: &str,
    target: (&str, &str),
    pushed: &[Pushed],
) -> Result<(), ApplyError> {
    engine
        .tag(image, target.0, target.1)
        .await
        .map_err(|e| push_failed(engine.cli_name(), target, image, e, 0, pushed))
}

/// A failed push of `image` to `target` (repository, tag), after `pushed`; `cli` names the
/// engine's client for the hint.
pub(super) fn push_failed(
    cli: &'static str,
    target: (&str, &str),
    image: &str,
    source: EngineError,
    attempts: u32,
    pushed: &[Pushed],
) -> ApplyError {
    ApplyError::Push {
        repository: target.0.to_string(),
        tag: target.1.to_string(),
        attempts,
        source: Box::new(source),
        image: image.to_string(),
        pushed: pushed.to_vec(),
        cli,
    }
}

/// The engine image `image` as the tool's own: read from the engine's export into the store
/// (once per image), its layers compressed as the pipeline's `[image]` says.
pub(super) async fn tool_image<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: &str,
    store: &BlobStore,
) -> Result<Image, super::layers::LayerError> {
    engine_image(engine, image, store, Compression::of(&p.image)).await
}

fn unreadable<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: &str,
    e: super::layers::LayerError,
) -> ApplyError {
    let first = p.publish.first();
    ApplyError::Push {
        repository: first.map(|t| t.repository.repository()).unwrap_or_default(),
        tag: first
            .and_then(|t| t.tags.first().cloned())
            .unwrap_or_default(),
        attempts: 0,
        source: Box::new(EngineError::Other(format!(
            "cannot read the image from the engine: {e}"
        ))),
        image: image.to_string(),
        pushed: Vec::new(),
        cli: engine.cli_name(),
    }
}

/// One tag's push of the tool's image.
pub(super) struct PushStep<'a> {
    pub(super) repository: &'a str,
    /// A tag, or the image's manifest digest (a platform's image of an index: no tag).
    pub(super) tag: &'a str,
    pub(super) creds: Option<&'a Credentials>,
    pub(super) image: &'a Image,
    pub(super) store: &'a BlobStore,
    /// An earlier tag of the same repository pushed the blobs: only the manifest is left.
    pub(super) blobs_done: bool,
}

/// Pushes the tool's image under one tag (or by digest), retrying transient failures; up to
/// date when the registry already holds its manifest there.
pub(super) async fn push_own(
    step: &PushStep<'_>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(Pushed, u32), (EngineError, u32)> {
    let (repository, tag) = (step.repository, step.tag);
    let by_digest = tag.starts_with("sha256:");
    let digest = &step.image.manifest.digest;
    let entry = |up_to_date| Pushed {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: digest.clone(),
        attempts: 0,
        up_to_date,
    };
    let pusher = retry(opts, sink, Some((repository, tag)), || async {
        Pusher::connect(repository, step.creds)
            .await
            .map_err(engine_error)
    })
    .await?
    .0;
    if let Ok(Some(held)) = pusher.manifest_digest(tag).await {
        if &held == digest {
            return Ok((entry(true), 0));
        }
    }
    if !by_digest {
        sink.event(Event::PushStarted {
            repository: repository.to_string(),
            tag: tag.to_string(),
        });
    }
    let progress = |b: BlobProgress| {
        sink.event(Event::PushProgress {
            repository: repository.to_string(),
            tag: tag.to_string(),
            progress: Progress {
                id: Some(b.id),
                status: b.status.to_string(),
                current: i64::try_from(b.current).ok(),
                total: i64::try_from(b.total).ok(),
            },
        })
    };
    let ((), attempts) = retry(opts, sink, Some((repository, tag)), || async {
        if !step.blobs_done {
            pusher
                .push_blobs(step.image, step.store, &progress)
                .await
                .map_err(engine_error)?;
        }
        pusher
            .put_manifest(tag, &step.image.manifest, step.store)
            .await
            .map(|_| ())
            .map_err(engine_error)
    })
    .await?;
    Ok((entry(false), attempts))
}

/// A push failure as the retries and the report know failures.
fn engine_error(e: PushError) -> EngineError {
    match e {
        PushError::Auth { .. } => EngineError::Auth(e.to_string()),
        other => EngineError::Registry {
            transient: other.is_transient(),
            message: other.to_string(),
        },
    }
}

/// Pushes every tag of every target through the engine, in order.
async fn publish_with_engine<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: &str,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    let mut pushed = Vec::new();
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
            let fail = |source, attempts, pushed: &Vec<Pushed>| {
                push_failed(
                    engine.cli_name(),
                    (&repository, tag),
                    image,
                    source,
                    attempts,
                    pushed,
                )
            };
            tag_locally(engine, image, (&repository, tag), &pushed).await?;
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
