//! One apply, stage by stage: observe (the same observation `plan` reports), make the base
//! present, take what the cache serves (pulling a remote entry), build and commit what it does
//! not, tag, publish, and push the new entries to the remote cache.

use std::collections::BTreeMap;

use super::base::ensure_base;
use super::build::Build;
use super::copy_from;
use super::layers::base_image;
use super::made::Maker;
use super::outputs::{self, write_outputs};
use super::publish::{publish, tool_image};
use super::remote::{export, import, read_entries, RemoteUse};
use super::secrets::secret_values;
use super::{Applied, ApplyError, Options, Pushed};
use crate::cache::{self, StepInputs};
use crate::engine::{Engine, ImageInfo, CACHE_REPOSITORY};
use crate::execute::events::{Event, Sink};
use crate::model::{Pipeline, RemoteMode};
use crate::observe::{self, BaseSeen, Cached, Look};
use crate::plan::{TagSeen, TagState};

/// Applies a pipeline; `run_name` prefixes the names of every container it creates.
pub(crate) async fn apply<E: Engine>(
    engine: &E,
    p: &Pipeline,
    run_name: &str,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Applied, ApplyError> {
    let secrets = secret_values(p).await?;
    let pinned = copy_from::pinned(engine, p, run_name, opts, sink).await?;
    let p = pinned.as_ref().unwrap_or(p);
    let look = Look {
        no_cache: opts.no_cache,
        offline: false,
    };
    let seen = observe::base(engine, p, look, None).await?;
    let remote = RemoteUse::new(seen.remote, sink);
    // On a fresh runner the base's id comes from its registry: no pull until one is needed.
    let (base, base_local) = match seen.base {
        BaseSeen::Registry(info) => (info, false),
        BaseSeen::Local(info) => (ensure_base(engine, p, Some(info), opts, sink).await?, true),
        BaseSeen::Absent | BaseSeen::Produced(_) => {
            (ensure_base(engine, p, None, opts, sink).await?, true)
        }
    };
    let inputs = observe::inputs(p)?;
    let cached = observe::cache(engine, p, look, remote.cache.as_ref(), &base, &inputs).await?;
    remote.warn();
    if let Some(applied) = all_published(engine, p, &remote, &base, &cached, sink).await {
        return Ok(applied);
    }
    let cached = import_hit(engine, p, look, &remote, &base, &inputs, cached, opts, sink).await?;
    let (base, cached) = if base_local {
        (base, cached)
    } else {
        base_for_steps(engine, p, look, base, &inputs, cached, opts, sink).await?
    };
    for (i, s) in p
        .steps
        .iter()
        .enumerate()
        .take(cached.hit.resume.steps_cached)
    {
        sink.event(Event::StepCached {
            index: i + 1,
            total: p.steps.len(),
            name: s.name.clone(),
        });
    }
    let mut build = Build::new(engine, run_name, opts, sink);
    build.maker = Maker::new(p, opts.store.as_ref());
    let reproducible = build.maker.is_some();
    let Committed {
        image,
        tags,
        reused,
    } = match with_head_start(
        commit(engine, p, &base, &cached, &inputs, &secrets, &mut build),
        warm_base(engine, p, (&base, reproducible), &cached, opts),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => {
            build.cleanup().await;
            return Err(e);
        }
    };
    sink.event(Event::Committed {
        image: image.clone(),
        tags: tags.clone(),
        reused,
    });
    let made = match build.maker.take() {
        Some(maker) => {
            maker
                .image(engine, p, (&base, &image), &cached.final_config, sink)
                .await
        }
        None => None,
    };
    if let Some(m) = &made {
        sink.event(Event::ImageWritten {
            digest: m.manifest.digest.clone(),
            config: m.config.digest.clone(),
        });
    }
    // Containers go while the image is written out and pushed.
    let keys = all_keys(&cached);
    let (pushed, ()) = tokio::join!(
        async {
            read_entries(engine, &remote, p, (&image, made.is_some()), &keys, opts).await;
            deliver(engine, p, &image, made.as_ref(), opts, sink).await
        },
        build.cleanup()
    );
    let pushed = pushed?;
    // After the publish targets, so publishing is never delayed; a failure only warns.
    if !opts.no_push {
        export(engine, &remote, p, &keys, opts.store.as_ref()).await;
    }
    Ok(Applied {
        image,
        tags,
        pushed,
        made: made.map(Box::new),
    })
}

/// Runs `main` with `side` beside it; waits for `side` too when `main` succeeds (its work is
/// what comes next), not when it fails.
async fn with_head_start<T, E>(
    main: impl std::future::Future<Output = Result<T, E>>,
    side: impl std::future::Future<Output = ()>,
) -> Result<T, E> {
    tokio::pin!(main, side);
    let mut side_done = false;
    loop {
        tokio::select! {
            r = &mut main => {
                if r.is_ok() && !side_done {
                    side.await;
                }
                return r;
            }
            () = &mut side, if !side_done => side_done = true,
        }
    }
}

/// Compresses the base's layers into the store while the steps run, when the image will be
/// published: the publish phase then finds them by diff id and only reads them through, the
/// CPU spent while the steps mostly wait for the network and the disk. A head start only:
/// a failure changes nothing.
async fn warm_base<E: Engine>(
    engine: &E,
    p: &Pipeline,
    (base, reproducible): (&ImageInfo, bool),
    cached: &Cached,
    opts: &Options,
) {
    let Some(store) = opts.store.as_ref() else {
        return;
    };
    if p.publish.is_empty() || opts.no_push || cached.hit.image.is_some() || base.id.is_empty() {
        return;
    }
    let compression = crate::image::compress::Compression::of(&p.image);
    // An image published as the engine's may list blobs downloaded from a remote cache.
    let fetched = !reproducible
        && base
            .layers
            .iter()
            .all(|d| crate::image::compress::any_layer(store, d, compression).is_some());
    if !fetched {
        let _ = base_image(engine, base, store, compression).await;
    }
}

/// Writes the image to the pipeline's outputs, then publishes it (unless `--no-push`).
async fn deliver<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: &str,
    made: Option<&crate::image::Image>,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    if !p.outputs.is_empty() {
        let store = outputs::store(p, opts)?;
        let own = match made {
            Some(m) => m.clone(),
            None => tool_image(engine, p, image, store)
                .await
                .map_err(|e| outputs::failed(p, format!("cannot read the image: {e}")))?,
        };
        write_outputs(p, store, &[own], sink).await?;
    }
    if opts.no_push {
        skipped(p, sink);
        return Ok(Vec::new());
    }
    publish(engine, p, image, made, opts, sink).await
}

/// Says that `apply --no-push` pushes none of `p`'s publish tags.
pub(crate) fn skipped(p: &Pipeline, sink: &dyn Sink) {
    for target in &p.publish {
        for tag in &target.tags {
            sink.event(Event::PushSkipped {
                repository: target.repository.repository(),
                tag: tag.clone(),
            });
        }
    }
}

/// Every key the apply made or used: the steps', then the commit's.
fn all_keys(cached: &Cached) -> Vec<String> {
    cached
        .keys
        .iter()
        .chain([&cached.commit_key])
        .cloned()
        .collect()
}

/// A remote final image whose manifest every publish tag already holds, for a pipeline with
/// no local tags: nothing to pull, build or push. The apply is done; `None` otherwise.
async fn all_published<E: Engine>(
    engine: &E,
    p: &Pipeline,
    remote: &RemoteUse<'_>,
    base: &ImageInfo,
    cached: &Cached,
    sink: &dyn Sink,
) -> Option<Applied> {
    let (Some(cache), Some(entry), Some(_)) =
        (&remote.cache, &cached.hit.remote, &cached.hit.image)
    else {
        return None;
    };
    if !p.commit.tags.is_empty() {
        return None;
    }
    let held = crate::engine::ImageInfo {
        id: entry.id.clone(),
        ..Default::default()
    };
    let tags = observe::publish_tags(engine, p, Some(&held)).await.ok()?;
    let pushed = up_to_date(&tags, &entry.digest)?;
    sink.event(Event::BaseReady {
        reference: p.base.image.to_string(),
        id: base.id.clone(),
        pulled: false,
    });
    for (i, s) in p.steps.iter().enumerate() {
        sink.event(Event::StepCached {
            index: i + 1,
            total: p.steps.len(),
            name: s.name.clone(),
        });
    }
    sink.event(Event::Committed {
        image: entry.id.clone(),
        tags: Vec::new(),
        reused: true,
    });
    for x in &pushed {
        sink.event(Event::Pushed {
            repository: x.repository.clone(),
            tag: x.tag.clone(),
            digest: x.digest.clone(),
            attempts: 0,
            up_to_date: true,
        });
    }
    // This is the pipeline's newest apply: its index says so, for `gc --remote`.
    if cache.mode == RemoteMode::ReadWrite {
        cache.record(&p.name, &all_keys(cached)).await;
        remote.warn();
    }
    Some(Applied {
        image: entry.id.clone(),
        tags: Vec::new(),
        pushed,
        made: None,
    })
}

/// Every publish tag, when each holds the manifest `digest` (same registry, same manifest
/// bytes) or another manifest of the same image (the tool's own, with the same config);
/// `None` when one does not, or could not be asked.
fn up_to_date(tags: &[TagSeen], digest: &str) -> Option<Vec<Pushed>> {
    tags.iter()
        .map(|t| match &t.state {
            TagState::Holds {
                digest: Some(d),
                published,
            } if d == digest || *published => Some(Pushed {
                repository: t.repository.clone(),
                tag: t.tag.clone(),
                digest: d.clone(),
                attempts: 0,
                up_to_date: true,
            }),
            _ => None,
        })
        .collect()
}

/// Pulls a remote hit, which becomes a local cache entry; when it cannot be pulled, the
/// remote cache is off and the engine's cache alone is looked up again.
#[allow(clippy::too_many_arguments)] // the stage's inputs, each from an earlier stage
async fn import_hit<E: Engine>(
    engine: &E,
    p: &Pipeline,
    look: Look,
    remote: &RemoteUse<'_>,
    base: &ImageInfo,
    inputs: &[StepInputs],
    cached: Cached,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Cached, ApplyError> {
    let (Some(cache), Some(entry)) = (&remote.cache, &cached.hit.remote) else {
        return Ok(cached);
    };
    let compression = crate::image::compress::Compression::of(&p.image);
    match import(engine, cache, entry, compression, opts, sink).await {
        Ok(()) => {
            sink.event(Event::CacheImported {
                reference: cache.reference(&entry.key),
                steps: cached.hit.resume.steps_cached,
                last: cached.hit.image.is_some(),
            });
            Ok(cached)
        }
        Err(e) => {
            cache.fail(crate::registry::RegistryError::Unavailable(format!(
                "cannot pull `{}`: {e}",
                cache.reference(&entry.key)
            )));
            remote.warn();
            Ok(observe::cache(engine, p, look, None, base, inputs).await?)
        }
    }
}

/// The steps start from the base: a base whose id came from its registry is pulled now,
/// unless the cache serves a step; a base that changed since gives new keys.
#[allow(clippy::too_many_arguments)] // the stage's inputs, each from an earlier stage
async fn base_for_steps<E: Engine>(
    engine: &E,
    p: &Pipeline,
    look: Look,
    base: ImageInfo,
    inputs: &[StepInputs],
    cached: Cached,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(ImageInfo, Cached), ApplyError> {
    if cached.hit.image.is_some() || cached.hit.resume.image.is_some() {
        sink.event(Event::BaseReady {
            reference: p.base.image.to_string(),
            id: base.id.clone(),
            pulled: false,
        });
        return Ok((base, cached));
    }
    let pulled = ensure_base(engine, p, None, opts, sink).await?;
    if pulled.id == base.id {
        return Ok((base, cached));
    }
    let cached = observe::cache(engine, p, look, None, &pulled, inputs).await?;
    Ok((pulled, cached))
}

/// The image an apply ends with.
struct Committed {
    image: String,
    /// Its local tags.
    tags: Vec<String>,
    /// Nothing changed: the final image was in the cache.
    reused: bool,
}

/// Builds what the cache does not serve and commits it (or reuses the final image), tags it
/// as the cache's and the pipeline's.
async fn commit<E: Engine>(
    engine: &E,
    p: &Pipeline,
    base: &ImageInfo,
    cached: &Cached,
    inputs: &[StepInputs],
    secrets: &BTreeMap<String, String>,
    build: &mut Build<'_, E>,
) -> Result<Committed, ApplyError> {
    let reusable = cached.hit.image.clone();
    let image = match reusable.clone() {
        Some(id) => {
            // The final image's layers are its last checkpoint's.
            if let (Some(maker), Some(key)) = (build.maker.as_mut(), cached.keys.last()) {
                maker.resume(engine, base, key, &id).await;
            }
            id
        }
        None => {
            let image = build
                .run(
                    p,
                    base,
                    &cached.hit.resume,
                    &cached.keys,
                    inputs,
                    secrets,
                    &cached.final_config,
                )
                .await?;
            // The pointer first: `gc` keeps what it points to, so a concurrent gc never
            // sees this image as an unused entry.
            engine
                .tag(&image, CACHE_REPOSITORY, &cache::last_tag(&p.name))
                .await?;
            engine
                .tag(&image, CACHE_REPOSITORY, &cached.commit_key)
                .await?;
            image
        }
    };
    if reusable.is_some() {
        engine
            .tag(&image, CACHE_REPOSITORY, &cache::last_tag(&p.name))
            .await?;
    }
    let mut tags = Vec::new();
    for t in &p.commit.tags {
        let tag = t.tag.clone().unwrap_or_else(|| "latest".into());
        engine
            .tag(&image, &t.repository(), &tag)
            .await
            .map_err(ApplyError::Commit)?;
        tags.push(t.to_string());
    }
    Ok(Committed {
        image,
        tags,
        reused: reusable.is_some(),
    })
}
