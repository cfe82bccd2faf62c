//! The image the tool writes for one build (see `image/`): the layer of each checkpoint,
//! written from its container before the container goes and recorded under the checkpoint's
//! cache key (so a later build that reuses the checkpoint has it without the engine); then the
//! config and manifest over the base's layers. Without a store, or when a layer cannot be
//! had, there is no such image and publishing goes through the engine's own.

use std::time::{SystemTime, UNIX_EPOCH};

use super::layers::{
    base_image, container_layer, image_layers, rfc3339, runtime_config, LayerError, LayerSettings,
    Reuse,
};
use crate::engine::{Engine, EngineError, ImageConfig, ImageInfo, CACHE_REPOSITORY};
use crate::execute::events::{Event, Sink};
use crate::image::compress::Layer;
use crate::image::config::{assemble, BaseImage, History, Parts};
use crate::image::save;
use crate::image::store::BlobStore;
use crate::image::Image;
use crate::model::{Pipeline, Platform};

/// The tool's layers of a build, bottom first, each with its history entry.
type Chain = Vec<(Layer, History)>;

/// The image being written for one build.
pub(crate) struct Maker {
    store: BlobStore,
    settings: LayerSettings,
    /// The time of the image (unix seconds).
    epoch: u64,
    chain: Chain,
    /// Why there will be no image: a layer could not be had. Said once, at the end.
    lost: Option<String>,
}

/// Now, in unix seconds.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Maker {
    /// The maker of `p`'s image in `store`, for a reproducible image (`[image] reproducible`,
    /// or `SOURCE_DATE_EPOCH` in the environment). Other images are the engine's commit, read
    /// from its export when published: their config, and so their id, is the engine's, which
    /// is what tells a runner that reuses the image from the remote cache that a tag holding
    /// it is up to date; writing layers at checkpoints would only delay the build for them.
    pub(crate) fn new(p: &Pipeline, store: Option<&BlobStore>) -> Option<Self> {
        let env = std::env::var("SOURCE_DATE_EPOCH").ok();
        let (settings, epoch) = LayerSettings::of(&p.image, &p.file, env.as_deref());
        Some(Self {
            store: store?.clone(),
            settings,
            epoch: epoch?,
            chain: Vec::new(),
            lost: None,
        })
    }

    /// The time the image and its history entries are dated: the epoch.
    fn time(&self) -> String {
        rfc3339(self.epoch)
    }

    /// Starts from the cached checkpoint (or final image) `image` of cache key `key`: its
    /// layers from the store's record, else from the engine's export of `image` (the layers
    /// above the base's, as the engine wrote them).
    pub(crate) async fn resume<E: Engine>(
        &mut self,
        engine: &E,
        base: &ImageInfo,
        key: &str,
        image: &str,
    ) {
        if let Some(chain) = recorded(&self.store, &self.settings.record_key(key)) {
            self.chain = chain;
            return;
        }
        match self.exported(engine, base, image).await {
            // The engine's layers are not clamped: they are used, never recorded.
            Ok(chain) => self.chain = chain,
            Err(e) => self.lose(format!("cannot read the layers of the cached steps: {e}")),
        }
    }

    /// The layers of engine image `image` above the base's, with their history entries.
    async fn exported<E: Engine>(
        &self,
        engine: &E,
        base: &ImageInfo,
        image: &str,
    ) -> Result<Chain, LayerError> {
        let saved = image_layers(
            engine,
            image,
            &self.store,
            self.settings.compression,
            Reuse::Own,
        )
        .await?;
        let blobs = saved.layers.iter().map(|l| l.blob.clone()).collect();
        let all = BaseImage::from_config(&saved.config, blobs)?;
        let n = base.layers.len();
        if all.diff_ids.get(..n) != Some(&base.layers[..]) || saved.layers.len() < n {
            return Err(std::io::Error::other("the cached image does not extend the base").into());
        }
        // One entry per layer; the engine's commit names the steps in its comment.
        let history = all
            .history
            .into_iter()
            .filter(|h| !h.empty_layer)
            .skip(n)
            .map(|h| History {
                created: h.created,
                created_by: h.comment,
                ..History::default()
            })
            .chain(std::iter::repeat(History::default()));
        Ok(saved.layers.into_iter().skip(n).zip(history).collect())
    }

    /// Writes the layer of checkpoint container `id` (what it changed in its image, of
    /// `image_size` bytes), named `created_by` in the history, and records the layers so far
    /// under the checkpoint's cache key.
    pub(crate) async fn checkpoint<E: Engine>(
        &mut self,
        engine: &E,
        id: &str,
        image_size: u64,
        key: &str,
        created_by: String,
    ) {
        if self.lost.is_some() {
            return;
        }
        let written = container_layer(engine, id, image_size, &self.store, self.settings, now());
        match written.await {
            Ok(layer) => {
                let history = History {
                    created: Some(self.time()),
                    created_by: Some(created_by),
                    ..History::default()
                };
                self.chain.push((layer, history));
                self.record(key);
            }
            Err(e) => self.lose(format!("cannot write the layer of `{id}`: {e}")),
        }
    }

    fn lose(&mut self, why: String) {
        self.lost.get_or_insert(why);
    }

    /// Records the layers so far under checkpoint `key`. Best effort: without the record a
    /// later build reads them from the engine.
    fn record(&self, key: &str) {
        let record = ChainRecord::Named {
            image: format!("{CACHE_REPOSITORY}:{key}"),
            layers: self.chain.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&record) {
            let _ = self
                .store
                .put_record(CHAIN_RECORD, &self.settings.record_key(key), &bytes);
        }
    }

    /// The image of engine image `built`: the base's layers (from the engine's export, once
    /// per base), the build's layers, the config `final_config` makes, dated the epoch. It is
    /// recorded as the tool's image of `built`, so that `plan` knows a tag holding it is up
    /// to date. `None`, with a warning, when a part could not be had.
    pub(crate) async fn image<E: Engine>(
        self,
        engine: &E,
        p: &Pipeline,
        (base, built): (&ImageInfo, &str),
        final_config: &ImageConfig,
        sink: &dyn Sink,
    ) -> Option<Image> {
        let compression = self.settings.compression;
        let store = self.store.clone();
        match self.assemble(engine, p, base, final_config).await {
            Ok(image) => {
                // Best effort: without the record the next apply writes the image again.
                let _ = save::record_image(&store, built, compression, &image);
                Some(image)
            }
            // A base the engine does not hold (its id came from its registry): the engine
            // publishes, as before.
            Err(LayerError::Engine(EngineError::NotFound(_))) => None,
            Err(e) => {
                sink.event(Event::Warning(format!(
                    "the tool could not write the image, the engine's is published: {e}"
                )));
                None
            }
        }
    }

    async fn assemble<E: Engine>(
        self,
        engine: &E,
        p: &Pipeline,
        base: &ImageInfo,
        final_config: &ImageConfig,
    ) -> Result<Image, LayerError> {
        if let Some(why) = self.lost {
            return Err(std::io::Error::other(why).into());
        }
        let compression = self.settings.compression;
        let base_image = base_image(engine, base, &self.store, compression).await?;
        // As the engine's commit: the base's platform, else the build's, else the engine's.
        let platform = match base.platform.clone().or_else(|| p.platform.clone()) {
            Some(platform) => platform,
            None => {
                let (os, arch) = engine.platform().await?;
                Platform {
                    os,
                    arch,
                    variant: None,
                }
            }
        };
        let created = self.time();
        let mut layers = self.chain;
        // As `docker commit -a AUTHOR -m MESSAGE` names its layer.
        if let Some((_, last)) = layers.last_mut() {
            last.author.clone_from(&p.commit.author);
            last.comment.clone_from(&p.commit.message);
        }
        let parts = Parts {
            base: &base_image,
            layers,
            runtime: runtime_config(final_config),
            platform: &platform,
            created,
            author: p.commit.author.clone(),
            oci: compression.needs_oci(),
        };
        Ok(assemble(&self.store, &parts)?)
    }
}

/// The store record of a checkpoint's layers.
pub(crate) const CHAIN_RECORD: &str = "chains";

/// What the store records of a checkpoint: its layers, and the engine's checkpoint image
/// (by its cache tag), whose export would give the same files unclamped.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum ChainRecord {
    Named {
        image: String,
        layers: Chain,
    },
    /// Records written before they named their checkpoint.
    Bare(Chain),
}

impl ChainRecord {
    fn parts(self) -> (Option<String>, Chain) {
        match self {
            ChainRecord::Named { image, layers } => (Some(image), layers),
            ChainRecord::Bare(layers) => (None, layers),
        }
    }
}

/// What a `chains` record names, for the store's collector: kept while an engine holds the
/// checkpoint, since without the record a build resuming from it would take the engine's
/// unclamped layers (another digest).
pub(crate) fn chain_names(bytes: &[u8]) -> Option<crate::image::collect::Names> {
    let (image, chain) = serde_json::from_slice::<ChainRecord>(bytes).ok()?.parts();
    Some(crate::image::collect::Names {
        image,
        blobs: chain.into_iter().map(|(l, _)| l.blob.digest).collect(),
    })
}

/// The layers recorded for a checkpoint, when the store still holds every blob.
fn recorded(store: &BlobStore, key: &str) -> Option<Chain> {
    let record = store.record(CHAIN_RECORD, key)?;
    let (_, chain) = serde_json::from_slice::<ChainRecord>(&record).ok()?.parts();
    chain
        .iter()
        .all(|(l, _)| store.contains(&l.blob.digest))
        .then_some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_record_names_its_checkpoint_and_records_written_before_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        let blob = store.put("application/octet-stream", b"layer").unwrap();
        let layer = Layer {
            diff_id: "sha256:diff".into(),
            blob: blob.clone(),
            tar_size: 5,
        };
        let chain: Chain = vec![(layer, History::default())];
        let named = ChainRecord::Named {
            image: format!("{CACHE_REPOSITORY}:k1"),
            layers: chain.clone(),
        };
        let cases = [
            (
                serde_json::to_vec(&named).unwrap(),
                Some(format!("{CACHE_REPOSITORY}:k1")),
            ),
            (serde_json::to_vec(&chain).unwrap(), None),
        ];
        for (i, (bytes, image)) in cases.into_iter().enumerate() {
            let names = chain_names(&bytes).unwrap();
            assert_eq!(names.image, image);
            assert_eq!(names.blobs, vec![blob.digest.clone()]);
            let key = i.to_string();
            store.put_record(CHAIN_RECORD, &key, &bytes).unwrap();
            assert_eq!(recorded(&store, &key), Some(chain.clone()), "{key}");
        }
        std::fs::remove_file(store.path(&blob.digest).unwrap()).unwrap();
        assert_eq!(recorded(&store, "0"), None, "a blob is gone");
    }
}
