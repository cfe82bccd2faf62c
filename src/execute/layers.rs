//! The layers of the image the tool writes: a build container's layer, read from the engine's
//! change list and archives (see `image::diff`), and an engine image's layers as its export
//! gives them (bases made in the engine, by `docker import` or a build). Both end in the store,
//! compressed once.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use crate::engine::{Engine, EngineError};
use crate::image::bridge::{blocking, read_blocking};
use crate::image::compress::{Compression, Layer};
use crate::image::diff::{DiffError, Plan, Spool, Take};
use crate::image::save::{self, Saved};
use crate::image::store::BlobStore;

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot write the layer: {0}")]
    Diff(#[from] DiffError),
    #[error("cannot write the layer: {0}")]
    Io(#[from] std::io::Error),
}

/// How the tool writes layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LayerSettings {
    pub(crate) compression: Compression,
    /// File times after this (unix seconds) are written as this: a reproducible image's epoch.
    pub(crate) clamp: Option<u64>,
}

/// What one archive request costs the engine, in bytes of the file system it could read
/// instead: Docker takes the container's lock and mounts its volumes for each (about 60 ms),
/// and reads about 100 MB a second.
const REQUEST_COST: u64 = 6 << 20;

/// Writes the layer of container `id` (what changed since it was created from its image) into
/// `store`. `image_size` is the size of the container's image (what reading the whole file
/// system costs); `now` dates whiteouts the engine gives no time for.
pub(crate) async fn container_layer<E: Engine>(
    engine: &E,
    id: &str,
    image_size: u64,
    store: &BlobStore,
    settings: LayerSettings,
    now: u64,
) -> Result<Layer, LayerError> {
    let changes = engine.changes(id).await?;
    let mut plan = Plan::new(&changes)?;
    if image_size < plan.requests.len() as u64 * REQUEST_COST {
        plan = Plan::whole(&changes)?;
    }
    let plan = Arc::new(plan);
    let mut spool = Spool::new(&store.scratch(), now)?;
    for (i, request) in plan.requests.iter().enumerate() {
        let archive = match engine.download(id, &request.path).await {
            Ok(a) => Some(a),
            Err(EngineError::NotFound(_)) if request.take == Take::Deleted => None,
            Err(e) => return Err(e.into()),
        };
        spool = match archive {
            None => {
                spool.read(&plan, i, None)?;
                spool
            }
            Some(archive) => {
                let plan = Arc::clone(&plan);
                read_blocking(archive, move |r| {
                    spool.read(&plan, i, Some(r))?;
                    Ok::<_, LayerError>(spool)
                })
                .await?
            }
        };
    }
    for group in spool.link_groups() {
        let archive = engine.download(id, &group.folder).await?;
        spool = read_blocking(archive, move |r| {
            spool.resolve_links(&group, r)?;
            Ok::<_, LayerError>(spool)
        })
        .await?;
    }
    let store = store.clone();
    blocking(move || {
        let mut layer = settings.compression.writer(&store)?;
        let mut out = BufWriter::with_capacity(256 * 1024, &mut layer);
        spool.write(&plan, &mut out, settings.clamp)?;
        out.flush()?;
        drop(out);
        Ok::<_, LayerError>(layer.finish()?)
    })
    .await
}

/// The config and layers of engine image `id`, from its export, each layer compressed into
/// `store` as it is (never rewritten, so its diff id stays the image's).
pub(crate) async fn image_layers<E: Engine>(
    engine: &E,
    id: &str,
    store: &BlobStore,
    compression: Compression,
) -> Result<Saved, LayerError> {
    let archive = engine.export_image(id).await?;
    let store = store.clone();
    read_blocking(archive, move |r| {
        Ok::<_, LayerError>(save::read(r, &store, compression)?)
    })
    .await
}

#[cfg(all(test, feature = "engine-tests"))]
mod engine_tests;
