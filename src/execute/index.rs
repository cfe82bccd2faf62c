//! Publishing a multi-platform pipeline: each platform's image is pushed (by digest, with the
//! tool's pusher; through the engine that built it when there is no blob store), then every
//! tag becomes one index (a Docker manifest list) of those images, each with its platform. A
//! tag that already holds an index of exactly these images is up to date.

use super::outputs::write_outputs;
use super::publish::{push_failed, push_own, push_tag, tool_image, PushStep};
use super::retry::retry;
use super::{ApplyError, Options, Pushed};
use crate::credentials;
use crate::engine::{Engine, EngineError};
use crate::execute::events::{Event, Sink};
use crate::image::store::BlobStore;
use crate::image::Image;
use crate::model::{Pipeline, Platform};
use crate::plan::platforms;
use crate::registry::{IndexEntry, Manifest, Registry, RegistryError};

/// One platform's build: the engine that holds its image.
pub(crate) struct Built<'a, E: Engine> {
    pub(crate) engine: &'a E,
    pub(crate) image: String,
    pub(crate) platform: Platform,
    /// The image the tool wrote of this build, when it wrote one.
    pub(crate) made: Option<Image>,
}

/// Publishes `p`'s targets as indexes of `built`, in the order written: with the tool's
/// pusher when there is a blob store, else through the engines.
pub(crate) async fn publish_index<E: Engine>(
    p: &Pipeline,
    built: &[Built<'_, E>],
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    if !p.outputs.is_empty() {
        let store = super::outputs::store(p, opts)?;
        let images = own_images(p, built, store)
            .await
            .map_err(|why| super::outputs::failed(p, why))?;
        write_outputs(p, store, &images, sink).await?;
    }
    if opts.no_push {
        super::apply::skipped(p, sink);
        return Ok(Vec::new());
    }
    match &opts.store {
        Some(store) => publish_own_index(p, built, store, opts, sink).await,
        None => publish_index_with_engines(p, built, opts, sink).await,
    }
}

/// The tool's images of `built`: each platform's as the tool wrote it, else read from its
/// engine's export.
async fn own_images<E: Engine>(
    p: &Pipeline,
    built: &[Built<'_, E>],
    store: &BlobStore,
) -> Result<Vec<Image>, String> {
    let mut images = Vec::new();
    for b in built {
        let image = match &b.made {
            Some(made) => made.clone(),
            None => tool_image(b.engine, p, &b.image, store)
                .await
                .map_err(|e| format!("cannot read the image of {}: {e}", b.platform))?,
        };
        // The platform as the build names it: the engine may leave the variant out.
        images.push(Image {
            platform: b.platform.clone(),
            ..image
        });
    }
    Ok(images)
}

/// A failed publication of the index `target` (repository, tag) of `built`.
fn failure<E: Engine>(
    built: &[Built<'_, E>],
    target: (&str, &str),
    source: EngineError,
    attempts: u32,
    pushed: &[Pushed],
) -> ApplyError {
    let images: Vec<&str> = built.iter().map(|b| b.image.as_str()).collect();
    let cli = built.first().map_or("docker", |b| b.engine.cli_name());
    push_failed(cli, target, &images.join(", "), source, attempts, pushed)
}

/// Publishes with the tool's pusher: each platform's image by digest (no tag names it), then
/// every tag becomes the index, written last: a tag names the old index or the new one,
/// never a single platform's image.
async fn publish_own_index<E: Engine>(
    p: &Pipeline,
    built: &[Built<'_, E>],
    store: &BlobStore,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    let images = own_images(p, built, store).await.map_err(|why| {
        let first = p.publish.first();
        let repository = first.map(|t| t.repository.repository()).unwrap_or_default();
        let tag = first
            .and_then(|t| t.tags.first())
            .map_or("", String::as_str);
        failure(built, (&repository, tag), EngineError::Other(why), 0, &[])
    })?;
    let mut out = Vec::new();
    for target in &p.publish {
        let repository = target.repository.repository();
        let host = target.repository.registry_host();
        let creds = credentials::resolve(host, target.login.as_ref()).await?;
        let registry = Registry::new(host, creds.as_ref(), "linux", "amd64");
        let known: Vec<(&Platform, Vec<String>)> = images
            .iter()
            .map(|i| (&i.platform, vec![i.manifest.digest.clone()]))
            .collect();
        let mut entries: Option<Vec<IndexEntry>> = None;
        for tag in &target.tags {
            let fail =
                |e, attempts, out: &[Pushed]| failure(built, (&repository, tag), e, attempts, out);
            let reference = format!("{repository}:{tag}");
            if let Some((entry, listed)) = up_to_date(&registry, &repository, tag, &known).await {
                sink.event(listed_event(&entry, &listed));
                sink.event(pushed_event(&entry));
                out.push(entry);
                continue;
            }
            if entries.is_none() {
                let mut list = Vec::new();
                for image in &images {
                    let step = PushStep {
                        repository: &repository,
                        tag: &image.manifest.digest,
                        creds: creds.as_ref(),
                        image,
                        store,
                        blobs_done: false,
                    };
                    push_own(&step, opts, sink)
                        .await
                        .map_err(|(e, attempts)| fail(e, attempts, &out))?;
                    sink.event(Event::PlatformPushed {
                        repository: repository.clone(),
                        platform: image.platform.to_string(),
                        digest: image.manifest.digest.clone(),
                    });
                    list.push(IndexEntry {
                        digest: image.manifest.digest.clone(),
                        media_type: image.manifest.media_type.clone(),
                        size: i64::try_from(image.manifest.size).unwrap_or(i64::MAX),
                        platform: image.platform.clone(),
                    });
                }
                entries = Some(list);
                hold_before_index().await;
            }
            let list = entries.as_deref().unwrap_or_default();
            let (digest, attempts) = retry(
                opts,
                sink,
                Some((repository.as_str(), tag.as_str())),
                || async {
                    registry
                        .push_index(&reference, list)
                        .await
                        .map_err(|e| EngineError::Registry {
                            transient: !matches!(e, RegistryError::Auth(_)),
                            message: format!("the index `{reference}`: {e}"),
                        })
                },
            )
            .await
            .map_err(|(e, attempts)| fail(e, attempts, &out))?;
            let entry = Pushed {
                repository: repository.clone(),
                tag: tag.clone(),
                digest,
                attempts,
                up_to_date: false,
            };
            sink.event(listed_event(&entry, list));
            sink.event(pushed_event(&entry));
            out.push(entry);
        }
    }
    Ok(out)
}

/// For the tests of what an interrupt leaves: `PIPELINE_TEST_HOLD_INDEX=SECONDS` waits that
/// long after the platforms' images are pushed and before any index is written.
async fn hold_before_index() {
    if let Some(secs) = std::env::var("PIPELINE_TEST_HOLD_INDEX")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    }
}

/// Publishes `p`'s targets as indexes of `built` through the engines that built them.
// One function: per target, the up-to-date check, the platforms' pushes and the index share
// the registry client, the known digests and the entries pushed so far.
#[allow(clippy::too_many_lines)]
async fn publish_index_with_engines<E: Engine>(
    p: &Pipeline,
    built: &[Built<'_, E>],
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    let mut out = Vec::new();
    for target in &p.publish {
        let repository = target.repository.repository();
        let host = target.repository.registry_host();
        let creds = credentials::resolve(host, target.login.as_ref()).await?;
        // Manifests are read raw here, so the client's platform choice is never used.
        let registry = Registry::new(host, creds.as_ref(), "linux", "amd64");
        let fail = |tag: &str, source, attempts, pushed: &Vec<Pushed>| {
            failure(built, (&repository, tag), source, attempts, pushed)
        };
        let registry_error = |e: RegistryError| EngineError::Other(e.to_string());
        // What each image already is in this repository, when it was pushed there before.
        let mut known = Vec::new();
        for b in built {
            known.push((
                &b.platform,
                crate::observe::digests_in(b.engine, &b.image, &repository).await,
            ));
        }
        // Each platform's image is pushed once per repository, under its first tag that is
        // not up to date; its entry (digest, size, media type) is read back from the registry.
        let mut entries: Option<Vec<IndexEntry>> = None;
        for tag in &target.tags {
            let reference = format!("{repository}:{tag}");
            if let Some((entry, listed)) = up_to_date(&registry, &repository, tag, &known).await {
                sink.event(listed_event(&entry, &listed));
                sink.event(pushed_event(&entry));
                out.push(entry);
                continue;
            }
            if entries.is_none() {
                let mut pushed = Vec::new();
                for b in built {
                    b.engine
                        .tag(&b.image, &repository, tag)
                        .await
                        .map_err(|e| fail(tag, e, 0, &out))?;
                    let (digest, _) =
                        push_tag(b.engine, &repository, tag, creds.clone(), opts, sink)
                            .await
                            .map_err(|(e, attempts)| fail(tag, e, attempts, &out))?;
                    let by_digest = format!("{repository}@{digest}");
                    let entry = match registry.manifest(&by_digest).await {
                        Ok(Some(Manifest::Image(e))) => e,
                        Ok(_) => {
                            return Err(fail(
                                tag,
                                EngineError::Other(format!(
                                    "`{by_digest}` is not the image just pushed"
                                )),
                                1,
                                &out,
                            ))
                        }
                        Err(e) => return Err(fail(tag, registry_error(e), 1, &out)),
                    };
                    sink.event(Event::PlatformPushed {
                        repository: repository.clone(),
                        platform: b.platform.to_string(),
                        digest: digest.clone(),
                    });
                    // The platform as the build names it: the engine may leave the variant
                    // out of the image config.
                    pushed.push(IndexEntry {
                        platform: Platform {
                            variant: b.platform.variant.clone().or(entry.platform.variant),
                            ..entry.platform
                        },
                        ..entry
                    });
                }
                entries = Some(pushed);
            }
            let list = entries.as_deref().unwrap_or_default();
            let digest = registry
                .push_index(&reference, list)
                .await
                .map_err(|e| fail(tag, registry_error(e), 1, &out))?;
            let entry = Pushed {
                repository: repository.clone(),
                tag: tag.clone(),
                digest,
                attempts: 1,
                up_to_date: false,
            };
            sink.event(listed_event(&entry, list));
            sink.event(pushed_event(&entry));
            out.push(entry);
        }
    }
    Ok(out)
}

/// The tag `repository:tag` when it already holds an index of exactly the `known` images, and
/// the images that index lists.
async fn up_to_date(
    registry: &Registry,
    repository: &str,
    tag: &str,
    known: &[(&Platform, Vec<String>)],
) -> Option<(Pushed, Vec<IndexEntry>)> {
    let found = registry.manifest(&format!("{repository}:{tag}")).await;
    let Ok(Some(Manifest::Index { digest, entries })) = found else {
        return None;
    };
    let pushed = Pushed {
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest,
        attempts: 0,
        up_to_date: true,
    };
    platforms::index_matches(&entries, known).then_some((pushed, entries))
}

/// The images the index of `p` lists, as the report gives them.
fn listed_event(p: &Pushed, entries: &[IndexEntry]) -> Event {
    Event::IndexListed {
        repository: p.repository.clone(),
        tag: p.tag.clone(),
        manifests: entries
            .iter()
            .map(|e| (e.platform.to_string(), e.digest.clone()))
            .collect(),
    }
}

fn pushed_event(p: &Pushed) -> Event {
    Event::Pushed {
        repository: p.repository.clone(),
        tag: p.tag.clone(),
        digest: p.digest.clone(),
        attempts: p.attempts,
        up_to_date: p.up_to_date,
    }
}
