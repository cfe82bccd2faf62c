//! The remote step cache during an apply: an entry the lookup found is pulled (imported), the
//! entries the apply made or used are pushed (exported), and a failure turns the cache off
//! with one warning.

use std::cell::Cell;

use super::base::pull_image;
use super::layers::engine_images;
use super::Options;
use crate::engine::{Engine, EngineError, CACHE_REPOSITORY};
use crate::execute::events::{Event, Sink};
use crate::image::bridge::blocking;
use crate::image::compress::{self, Compression};
use crate::image::layout::{self, Contents};
use crate::image::save;
use crate::image::store::tempfile_in;
use crate::image::store::BlobStore;
use crate::image::Image;
use crate::plan;
use crate::registry::push::Pusher;
use crate::registry::{RegistryError, RemoteCache};

/// The remote cache of one apply, and whether its failure was reported.
pub(super) struct RemoteUse<'a> {
    pub(super) cache: Option<RemoteCache>,
    warned: Cell<bool>,
    sink: &'a dyn Sink,
}

impl<'a> RemoteUse<'a> {
    /// Uses `cache` (if any), saying so.
    pub(super) fn new(cache: Option<RemoteCache>, sink: &'a dyn Sink) -> Self {
        if let Some(r) = &cache {
            sink.event(Event::CacheRemote {
                repository: r.repository.clone(),
                mode: r.mode,
                unavailable: None,
            });
        }
        Self {
            cache,
            warned: Cell::new(false),
            sink,
        }
    }

    /// Says once that the remote cache is off, and why.
    pub(super) fn warn(&self) {
        let mut warned = self.warned.get();
        warn_remote(self.cache.as_ref(), self.sink, &mut warned);
        self.warned.set(warned);
    }
}

/// Says once that the remote cache is off, and why; and which entries it held that were not
/// trusted.
fn warn_remote(remote: Option<&RemoteCache>, sink: &dyn Sink, warned: &mut bool) {
    let Some(r) = remote else { return };
    let ignored = r.take_ignored();
    if !ignored.is_empty() {
        sink.event(Event::Warning(format!(
            "remote cache {}: ignored what no trusted apply signed (built instead): {}",
            r.repository,
            ignored.join("; ")
        )));
    }
    if *warned {
        return;
    }
    if let Some(e) = r.failure() {
        *warned = true;
        sink.event(Event::CacheRemote {
            repository: r.repository.clone(),
            mode: r.mode,
            unavailable: Some(e.to_string()),
        });
    }
}

/// Brings a remote entry into the engine by its digest (exactly what the lookup checked) and
/// tags it as the local cache entry of its key. With a blob store, the tool downloads it into
/// the store (each blob checked against its digest; a layer the store holds is not
/// downloaded) and loads it into the engine, so a publish of an image on it finds its layers
/// compressed; without one, the engine pulls it.
pub(super) async fn import<E: Engine>(
    engine: &E,
    cache: &RemoteCache,
    entry: &plan::RemoteHit,
    compression: Compression,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(), EngineError> {
    let reference = format!("{}@{}", cache.repository, entry.digest);
    let not_checked = || {
        EngineError::Other(format!(
            "`{reference}` is not the image {} it was checked as",
            entry.id
        ))
    };
    if let Some(store) = &opts.store {
        let image = cache
            .download(&entry.digest, store)
            .await
            .map_err(|e| EngineError::Other(e.to_string()))?;
        if image.config.digest != entry.id {
            return Err(not_checked());
        }
        let recorded = record_layers(store, &image, pullable(compression));
        if engine.inspect_image(&entry.id).await?.is_none() {
            let (loaded, ()) = tokio::join!(load(engine, store, &image), recorded);
            loaded?;
        } else {
            recorded.await;
        }
        // The engine's image is this one: a publish of it pushes these blobs.
        let _ = save::record_image(store, &entry.id, pullable(compression), &image);
    } else {
        pull_image(engine, &reference, cache.creds.clone(), opts, sink).await?;
    }
    match engine.inspect_image(&entry.id).await? {
        Some(info) if info.id == entry.id => {
            engine.tag(&info.id, CACHE_REPOSITORY, &entry.key).await?;
            // Keep only the cache tag.
            if opts.store.is_none() {
                let _ = engine.remove_image(&reference).await;
            }
            Ok(())
        }
        _ => Err(not_checked()),
    }
}

/// Records the layers of `image` (downloaded into `store`) by their diff ids, each read through
/// and checked against the diff id its config lists, so that a publish of an image on them
/// (the next steps' commit) takes these blobs instead of compressing the layers again; a layer
/// the store holds already (compressed with `compression`, or downloaded before) is skipped.
/// Only a head start: a layer that cannot be read is not recorded.
async fn record_layers(store: &BlobStore, image: &Image, compression: Compression) {
    let (store, image) = (store.clone(), image.clone());
    let _ = blocking(move || {
        for (blob, diff_id) in image.layers.iter().zip(&image.diff_ids) {
            if compress::any_layer(&store, diff_id, compression).is_some() {
                continue;
            }
            let layer = compress::read_through(&store, blob)?;
            if &layer.diff_id == diff_id {
                compress::record_fetched(&store, &layer)?;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Loads `image` (in `store`) into the engine: a `docker load` archive of it is written next
/// to the store's blobs, streamed to the engine and removed.
async fn load<E: Engine>(engine: &E, store: &BlobStore, image: &Image) -> Result<(), EngineError> {
    let scratch = store.scratch();
    let written = {
        let (store, image) = (store.clone(), image.clone());
        blocking(move || {
            std::fs::create_dir_all(&scratch)?;
            let (path, file) = tempfile_in(&scratch)?;
            drop(file);
            let contents = Contents {
                images: std::slice::from_ref(&image),
                names: &[],
            };
            match layout::write_tar(&store, contents, &path) {
                Ok(_) => Ok(path),
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    Err(e)
                }
            }
        })
        .await
    };
    let path = written
        .map_err(|e: std::io::Error| EngineError::Other(format!("cannot write the entry: {e}")))?;
    let loaded = engine.load_file(&path).await;
    let _ = std::fs::remove_file(&path);
    loaded
}

/// Before the publish of engine image `image` (`.0`; `.1`: the tool wrote an image of its
/// own instead), when the remote cache will be written too: reads the image and the local
/// entries of `keys` from ONE engine export into the store, so that the publish and the
/// cache's export both find them there (the entries share the image's layers: they add their
/// configs to the export, not a second export). Only a head start: a failure changes nothing.
pub(super) async fn read_entries<E: Engine>(
    engine: &E,
    remote: &RemoteUse<'_>,
    p: &crate::model::Pipeline,
    image: (&str, bool),
    keys: &[String],
    opts: &Options,
) {
    let writes = remote.cache.as_ref().is_some_and(|c| {
        c.mode == crate::model::RemoteMode::ReadWrite && c.signs() && c.failure().is_none()
    });
    let compression = Compression::of(&p.image);
    let Some(store) = opts.store.as_ref() else {
        return;
    };
    if !writes || opts.no_push || pullable(compression) != compression {
        return;
    }
    let mut ids = Vec::new();
    if !image.1 && (!p.publish.is_empty() || !p.outputs.is_empty()) {
        ids.push(image.0.to_string());
    }
    for key in keys {
        if let Ok(Some(info)) = engine
            .inspect_image(&format!("{CACHE_REPOSITORY}:{key}"))
            .await
        {
            ids.push(info.id);
        }
    }
    let _ = engine_images(engine, &ids, store, compression).await;
}

/// After a successful apply of `p` that may write the remote cache: pushes the entries of
/// `keys` it lacks (see [`push_entries`]) and records that the apply used `keys`; a failure
/// only warns.
pub(super) async fn export<E: Engine>(
    engine: &E,
    remote: &RemoteUse<'_>,
    p: &crate::model::Pipeline,
    keys: &[String],
    store: Option<&BlobStore>,
) {
    let Some(cache) = remote
        .cache
        .as_ref()
        .filter(|c| c.mode == crate::model::RemoteMode::ReadWrite)
    else {
        return;
    };
    let compression = Compression::of(&p.image);
    push_entries(engine, cache, keys, store, compression, remote.sink).await;
    cache.record(&p.name, keys).await;
    remote.warn();
}

/// Pushes the local cache entries of `keys` that the remote cache lacks (no entry a trusted
/// writer signed), under their keys, and signs each. Without a signing key, pushes nothing.
/// With a blob store, the tool pushes them as it publishes: read from one engine export of
/// them all, each layer compressed once (a layer the publish compressed is reused), blobs the
/// registry holds skipped or mounted; without one, the engine pushes each.
async fn push_entries<E: Engine>(
    engine: &E,
    cache: &RemoteCache,
    keys: &[String],
    store: Option<&BlobStore>,
    compression: Compression,
    sink: &dyn Sink,
) {
    if cache.failure().is_some() {
        return;
    }
    if !cache.signs() {
        sink.event(Event::Warning(format!(
            "remote cache {}: nothing pushed: this job has no signing key (the variable \
             `[cache] signing_key_env` names, for trusted jobs only); a job that only reads \
             the cache runs with `--cache-remote-mode read`",
            cache.repository
        )));
        return;
    }
    let started = std::time::Instant::now();
    let mut wanted = Vec::new();
    for key in keys {
        if cache.failure().is_some() {
            break;
        }
        let local = format!("{CACHE_REPOSITORY}:{key}");
        let Ok(Some(info)) = engine.inspect_image(&local).await else {
            continue;
        };
        if cache.signed(key).await.is_some() || cache.failure().is_some() {
            continue;
        }
        wanted.push(Entry {
            key: key.clone(),
            id: info.id,
        });
    }
    let pushed = match store {
        Some(store) if !wanted.is_empty() => {
            push_own(engine, cache, &wanted, store, pullable(compression)).await
        }
        _ => push_with_engine(engine, cache, &wanted).await,
    };
    sink.event(Event::CacheExported {
        repository: cache.repository.clone(),
        keys: pushed,
        duration: started.elapsed(),
    });
}

/// A local cache entry to push: its key and engine image id.
struct Entry {
    key: String,
    id: String,
}

/// The compression of cache entries: the image's when every engine pulls it (so the layers
/// the publish compressed are the entries' too), else gzip (an engine imports an entry by
/// pulling it, and Docker before 23 pulls no zstd).
fn pullable(compression: Compression) -> Compression {
    match compression {
        Compression::Gzip { .. } => compression,
        Compression::Zstd { .. } => Compression::default(),
    }
}

/// Pushes `entries` with the tool's pusher; the keys pushed and signed.
async fn push_own<E: Engine>(
    engine: &E,
    cache: &RemoteCache,
    entries: &[Entry],
    store: &BlobStore,
    compression: Compression,
) -> Vec<String> {
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    let images = match engine_images(engine, &ids, store, compression).await {
        Ok(images) => images,
        Err(e) => {
            cache.fail(RegistryError::Unavailable(format!(
                "cannot read the entries from the engine: {e}"
            )));
            return Vec::new();
        }
    };
    let pusher = match Pusher::connect(&cache.repository, cache.creds.as_ref()).await {
        Ok(p) => p,
        Err(e) => {
            cache.fail(RegistryError::Unavailable(format!("cannot push: {e}")));
            return Vec::new();
        }
    };
    let mut pushed = Vec::new();
    for (entry, image) in entries.iter().zip(&images) {
        let key = &entry.key;
        let written = async {
            pusher.push_blobs(image, store, &|_| {}).await?;
            pusher.put_manifest(key, &image.manifest, store).await
        }
        .await;
        match written {
            // Signed with the digest of the manifest the tool wrote, never one read back
            // from the registry, which a writer may have changed in between.
            Ok(_) => {
                cache.sign(key, &image.manifest.digest).await;
                if cache.failure().is_some() {
                    break;
                }
                pushed.push(key.clone());
            }
            Err(e) => {
                cache.fail(RegistryError::Unavailable(format!(
                    "cannot push `{}`: {e}",
                    cache.reference(key)
                )));
                break;
            }
        }
    }
    pushed
}

/// Pushes `entries` through the engine (no blob store); the keys pushed and signed.
async fn push_with_engine<E: Engine>(
    engine: &E,
    cache: &RemoteCache,
    entries: &[Entry],
) -> Vec<String> {
    let mut pushed = Vec::new();
    for Entry { key, id } in entries {
        if cache.failure().is_some() {
            break;
        }
        let result = async {
            engine.tag(id, &cache.repository, key).await?;
            let r = engine
                .push(&cache.repository, key, cache.creds.clone(), &mut |_| {})
                .await;
            let _ = engine.remove_image(&cache.reference(key)).await;
            r
        }
        .await;
        match result {
            // Signed with the digest the engine pushed, never one read back from the
            // registry, which a writer may have changed in between.
            Ok(digest) => {
                cache.sign(key, &digest).await;
                if cache.failure().is_none() {
                    pushed.push(key.clone());
                }
            }
            Err(e) => cache.fail(RegistryError::Unavailable(format!(
                "cannot push `{}`: {e}",
                cache.reference(key)
            ))),
        }
    }
    pushed
}
