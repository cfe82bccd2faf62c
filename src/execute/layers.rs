//! The layers of the image the tool writes: a build container's layer, read from the engine's
//! change list and archives (see `image::diff`), and an engine image's layers as its export
//! gives them (bases made in the engine, by `docker import` or a build). Both end in the store,
//! compressed once.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::engine::{Engine, EngineError, ImageConfig, ImageInfo};
use crate::image::bridge::{blocking, read_blocking};
use crate::image::collect::Names;
use crate::image::compress::{any_layer, stored_layer, Compression, Layer};
use crate::image::config::BaseImage;
use crate::image::diff::{DiffError, Plan, Spool, Take};
use crate::image::save::{self, Saved};
use crate::image::store::BlobStore;
use crate::image::{media, Descriptor, Image};

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
    let changes = crate::image::diff::without_engine_files(engine.changes(id).await?);
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
/// `store` as it is (never rewritten, so its diff id stays the image's). Layers the store
/// already holds compressed (by diff id: a base compressed before, a layer of an earlier
/// image) are only read through, not compressed again.
pub(crate) async fn image_layers<E: Engine>(
    engine: &E,
    id: &str,
    store: &BlobStore,
    compression: Compression,
    reuse: Reuse,
) -> Result<Saved, LayerError> {
    let diff_ids = match engine.inspect_image(id).await {
        Ok(Some(info)) => info.layers,
        _ => Vec::new(),
    };
    let known: Vec<Layer> = diff_ids
        .iter()
        .filter_map(|d| reuse.layer(store, d, compression))
        .collect();
    match export_layers(engine, id, store, compression, known).await {
        Err(LayerError::Io(e)) if save::mispredicted(&e) => {
            export_layers(engine, id, store, compression, Vec::new()).await
        }
        other => other,
    }
}

async fn export_layers<E: Engine>(
    engine: &E,
    id: &str,
    store: &BlobStore,
    compression: Compression,
    known: Vec<Layer>,
) -> Result<Saved, LayerError> {
    let archive = engine.export_image(id).await?;
    let store = store.clone();
    read_blocking(archive, move |r| {
        Ok::<_, LayerError>(save::read(r, &store, compression, &known)?)
    })
    .await
}

/// Which stored blobs of a layer an image may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Only the tool's own compression with the image's settings: the same bytes on every
    /// machine (a reproducible image, a base it lists).
    Own,
    /// Also a blob downloaded from a registry (a remote cache entry): any blob of the layer
    /// will do for an engine image published as it is.
    Any,
}

impl Reuse {
    fn layer(self, store: &BlobStore, diff_id: &str, compression: Compression) -> Option<Layer> {
        match self {
            Reuse::Own => stored_layer(store, diff_id, compression),
            Reuse::Any => any_layer(store, diff_id, compression),
        }
    }
}

/// Engine image `id` as an image of the tool's (its config byte for byte, its layers as the
/// export gives them, compressed into the store, and a manifest of them), read from the
/// engine's export once per image id and compression: a record in the store finds it again.
pub(crate) async fn engine_image<E: Engine>(
    engine: &E,
    id: &str,
    store: &BlobStore,
    compression: Compression,
) -> Result<Image, LayerError> {
    if let Some(found) = save::recorded_image(store, id, compression) {
        return Ok(found);
    }
    let saved = image_layers(engine, id, store, compression, Reuse::Any).await?;
    let image = crate::image::config::exported(store, &saved.config, &saved.layers)?;
    save::record_image(store, id, compression, &image)?;
    Ok(image)
}

/// Engine images `ids` as the tool's images (see [`engine_image`]), in the order of `ids`:
/// those the store has not recorded are read from one export of them all, so a layer they
/// share (the base, the layers of earlier steps) crosses from the engine once, not once per
/// image. An image the export does not give by its id (an engine that rewrites configs) is
/// read on its own.
pub(crate) async fn engine_images<E: Engine>(
    engine: &E,
    ids: &[String],
    store: &BlobStore,
    compression: Compression,
) -> Result<Vec<Image>, LayerError> {
    let mut found: std::collections::HashMap<String, Image> = ids
        .iter()
        .filter_map(|id| Some((id.clone(), save::recorded_image(store, id, compression)?)))
        .collect();
    let mut missing: Vec<String> = ids
        .iter()
        .filter(|id| !found.contains_key(*id))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    if missing.len() > 1 {
        let mut known = Vec::new();
        for id in &missing {
            if let Ok(Some(info)) = engine.inspect_image(id).await {
                known.extend(
                    info.layers
                        .iter()
                        .filter_map(|d| any_layer(store, d, compression)),
                );
            }
        }
        let saved = match export_all(engine, &missing, store, compression, known).await {
            Err(LayerError::Io(e)) if save::mispredicted(&e) => {
                export_all(engine, &missing, store, compression, Vec::new()).await
            }
            other => other,
        }?;
        for s in saved {
            let id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&s.config)));
            if missing.contains(&id) && !found.contains_key(&id) {
                let image = crate::image::config::exported(store, &s.config, &s.layers)?;
                save::record_image(store, &id, compression, &image)?;
                found.insert(id, image);
            }
        }
    }
    let mut images = Vec::with_capacity(ids.len());
    for id in ids {
        match found.get(id) {
            Some(image) => images.push(image.clone()),
            None => {
                let image = engine_image(engine, id, store, compression).await?;
                found.insert(id.clone(), image.clone());
                images.push(image);
            }
        }
    }
    Ok(images)
}

async fn export_all<E: Engine>(
    engine: &E,
    ids: &[String],
    store: &BlobStore,
    compression: Compression,
    known: Vec<Layer>,
) -> Result<Vec<Saved>, LayerError> {
    let archive = engine.export_images(ids).await?;
    let store = store.clone();
    read_blocking(archive, move |r| {
        Ok::<_, LayerError>(save::read_all(r, &store, compression, &known)?)
    })
    .await
}

/// A base image as the tool's image lists it: its layers compressed into the store from the
/// engine's export, once per image id and compression (a record in the store finds them
/// again), never rewritten.
pub(crate) async fn base_image<E: Engine>(
    engine: &E,
    base: &ImageInfo,
    store: &BlobStore,
    compression: Compression,
) -> Result<BaseImage, LayerError> {
    let key = format!("{}\n{}", base.id, compression.id());
    if let Some(found) = recorded_base(store, &key) {
        return Ok(found);
    }
    let saved = image_layers(engine, &base.id, store, compression, Reuse::Own).await?;
    let config = store.put(media::DOCKER_CONFIG, &saved.config)?;
    let record = BaseRecord {
        image: Some(base.id.clone()),
        config: config.digest,
        layers: saved.layers.iter().map(|l| l.blob.clone()).collect(),
    };
    let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    store.put_record(BASE_RECORD, &key, &bytes)?;
    Ok(BaseImage::from_config(&saved.config, record.layers)?)
}

/// The store record of a base's layers.
pub(crate) const BASE_RECORD: &str = "bases";

/// What the store records of a base: its config blob and its layer blobs.
#[derive(serde::Serialize, serde::Deserialize)]
struct BaseRecord {
    /// The engine image id of the base: the record is worth keeping while an engine holds
    /// it (records written before it was kept have none).
    #[serde(default)]
    image: Option<String>,
    config: String,
    layers: Vec<Descriptor>,
}

/// What a `bases` record names, for the store's collector.
pub(crate) fn base_names(bytes: &[u8]) -> Option<Names> {
    let record: BaseRecord = serde_json::from_slice(bytes).ok()?;
    let layers = record.layers.into_iter().map(|l| l.digest);
    Some(Names {
        image: record.image,
        blobs: std::iter::once(record.config).chain(layers).collect(),
    })
}

fn recorded_base(store: &BlobStore, key: &str) -> Option<BaseImage> {
    let record: BaseRecord = serde_json::from_slice(&store.record(BASE_RECORD, key)?).ok()?;
    if !record.layers.iter().all(|l| store.contains(&l.digest)) {
        return None;
    }
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut store.open(&record.config).ok()?, &mut raw).ok()?;
    BaseImage::from_config(&raw, record.layers).ok()
}

impl LayerSettings {
    /// The name of what the store records for cache key `key` written with these settings:
    /// layers of other settings (compression, clamp, compressor code) are never mixed in.
    pub(crate) fn record_key(self, key: &str) -> String {
        let clamp = self
            .clamp
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        format!("{key}\n{}\n{clamp}", self.compression.id())
    }
}

/// The run-time part of an image config (`config` in the JSON), with Docker's key names: what
/// `docker commit` stores for the same settings, without the fields that only describe the
/// container it was made from (its host name, its image, its streams).
pub(crate) fn runtime_config(c: &ImageConfig) -> Map<String, Value> {
    let set = |items: &[String]| -> Value {
        Value::Object(items.iter().map(|i| (i.clone(), json!({}))).collect())
    };
    let mut m = Map::new();
    m.insert("Cmd".into(), json!(c.cmd));
    m.insert("Entrypoint".into(), json!(c.entrypoint));
    m.insert("Env".into(), json!(c.env));
    if !c.exposed_ports.is_empty() {
        m.insert("ExposedPorts".into(), set(&c.exposed_ports));
    }
    if let Some(h) = &c.healthcheck {
        let mut hc = Map::new();
        hc.insert("Test".into(), json!(h.test));
        let nanos = |d: Option<std::time::Duration>| {
            d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        for (k, v) in [
            ("Interval", nanos(h.interval)),
            ("Timeout", nanos(h.timeout)),
            ("StartPeriod", nanos(h.start_period)),
            ("Retries", h.retries.map(u64::from)),
        ] {
            if let Some(v) = v {
                hc.insert(k.into(), json!(v));
            }
        }
        m.insert("Healthcheck".into(), Value::Object(hc));
    }
    if !c.labels.is_empty() {
        m.insert("Labels".into(), json!(c.labels));
    }
    if let Some(o) = &c.onbuild {
        m.insert("OnBuild".into(), json!(o));
    }
    if let Some(s) = &c.shell {
        m.insert("Shell".into(), json!(s));
    }
    if let Some(s) = &c.stop_signal {
        m.insert("StopSignal".into(), json!(s));
    }
    if !c.user.is_empty() {
        m.insert("User".into(), json!(c.user));
    }
    if !c.volumes.is_empty() {
        m.insert("Volumes".into(), set(&c.volumes));
    }
    if !c.workdir.is_empty() {
        m.insert("WorkingDir".into(), json!(c.workdir));
    }
    m
}

impl LayerSettings {
    /// The settings of a pipeline's `[image]` table; `source_date_epoch` is the environment's
    /// `SOURCE_DATE_EPOCH`, which always makes the image reproducible. Returns the epoch too.
    pub(crate) fn of(
        image: &crate::model::ImageSettings,
        file: &std::path::Path,
        source_date_epoch: Option<&str>,
    ) -> (Self, Option<u64>) {
        let compression = Compression::of(image);
        let env = source_date_epoch.filter(|v| v.trim().parse::<u64>().is_ok());
        let epoch = (env.is_some() || image.reproducible)
            .then(|| epoch(env, image.epoch, file).unwrap_or(0));
        (
            Self {
                compression,
                clamp: epoch,
            },
            epoch,
        )
    }
}

/// The time of a reproducible image (unix seconds): `SOURCE_DATE_EPOCH` when set, else the
/// file's setting, else the time of the last git commit of the pipeline file, else none.
pub(crate) fn epoch(
    env: Option<&str>,
    setting: Option<u64>,
    file: &std::path::Path,
) -> Option<u64> {
    if let Some(v) = env.and_then(|v| v.trim().parse().ok()) {
        return Some(v);
    }
    if setting.is_some() {
        return setting;
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty())?;
    let name = file.file_name()?;
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct", "--"])
        .arg(name)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Unix seconds as RFC 3339 (UTC), as image configs write times.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_epoch_comes_from_the_environment_then_the_file_then_git() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "").unwrap();
        assert_eq!(epoch(Some("1234"), Some(5), &file), Some(1234));
        assert_eq!(epoch(Some("x"), Some(5), &file), Some(5));
        assert_eq!(epoch(None, None, &file), None, "not in a git repository");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_COMMITTER_DATE", "2001-09-09T01:46:40Z")
                .env("GIT_AUTHOR_DATE", "2001-09-09T01:46:40Z")
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        git(&["add", "p.toml"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ]);
        assert_eq!(epoch(None, None, &file), Some(1_000_000_000));
    }

    #[test]
    fn settings_follow_the_file_and_source_date_epoch() {
        use crate::model::{ImageSettings, LayerCompression};
        let file = std::path::Path::new("/nonexistent/p.toml");
        let (s, epoch) = LayerSettings::of(&ImageSettings::default(), file, None);
        assert_eq!((s, epoch), (LayerSettings::default(), None));
        let (s, epoch) = LayerSettings::of(&ImageSettings::default(), file, Some("42"));
        assert_eq!(
            (s.clamp, epoch),
            (Some(42), Some(42)),
            "SOURCE_DATE_EPOCH turns it on"
        );
        let zstd = ImageSettings {
            compression: LayerCompression::Zstd,
            reproducible: true,
            ..Default::default()
        };
        let (s, epoch) = LayerSettings::of(&zstd, file, None);
        assert_eq!(s.compression, Compression::Zstd { level: 3 });
        assert_eq!(epoch, Some(0), "outside git, 0");
    }

    #[test]
    fn the_runtime_config_names_keys_as_docker_does() {
        let c = ImageConfig {
            cmd: Some(vec!["vim".into()]),
            env: vec!["A=1".into()],
            exposed_ports: vec!["80/tcp".into()],
            workdir: "/w".into(),
            ..Default::default()
        };
        let m = runtime_config(&c);
        assert_eq!(
            Value::Object(m),
            json!({"Cmd": ["vim"], "Entrypoint": null, "Env": ["A=1"], "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/w"})
        );
    }
}

#[cfg(all(test, feature = "engine-tests"))]
mod engine_tests;
