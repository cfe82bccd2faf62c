//! The image config and manifest the tool writes: the base's config and history carried on,
//! the tool's layers with one history entry each, the run-time config, the platform; then the
//! manifest listing the config and the layer blobs. JSON is written in one order every time,
//! so the same parts give the same digests.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::compress::Layer;
use super::store::BlobStore;
use super::{media, Descriptor, Image, RemoteBlob};
use crate::model::Platform;

/// One entry of an image's history (what `docker history` shows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) empty_layer: bool,
}

/// A base image's layers as the new image lists them: bottom first, with their history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BaseImage {
    /// Compressed blobs, as the base's manifest (or the tool's export of it) lists them.
    pub(crate) layers: Vec<Descriptor>,
    pub(crate) diff_ids: Vec<String>,
    /// The base's history, as its config has it.
    pub(crate) history: Vec<History>,
    /// Where blobs the store lacks can be had.
    pub(crate) remote: BTreeMap<String, RemoteBlob>,
}

impl BaseImage {
    /// The layers and history of a base from its config as stored (`raw`) and its layers.
    pub(crate) fn from_config(raw: &[u8], layers: Vec<Descriptor>) -> io::Result<Self> {
        let config: RawConfig = serde_json::from_slice(raw).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the base's config: {e}"),
            )
        })?;
        Ok(Self {
            layers,
            diff_ids: config.rootfs.diff_ids,
            history: config.history,
            remote: BTreeMap::new(),
        })
    }
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    history: Vec<History>,
    rootfs: RootFs,
}

#[derive(Serialize, Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// The config file, its fields in the order written.
#[derive(Serialize)]
struct ConfigFile<'a> {
    architecture: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    config: &'a Map<String, Value>,
    created: &'a str,
    history: Vec<History>,
    os: &'a str,
    rootfs: RootFs,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

/// What an image is made of: a base, the tool's layers (each with its history entry), the
/// run-time config (the `config` object, as Docker names its keys), and the rest of the config.
#[derive(Debug, Clone)]
pub(crate) struct Parts<'a> {
    pub(crate) base: &'a BaseImage,
    pub(crate) layers: Vec<(Layer, History)>,
    pub(crate) runtime: Map<String, Value>,
    pub(crate) platform: &'a Platform,
    /// RFC 3339.
    pub(crate) created: String,
    pub(crate) author: Option<String>,
    /// Write an OCI manifest (else a Docker one, which gzip layers allow).
    pub(crate) oci: bool,
}

/// Writes the config and manifest of `parts` into `store`.
pub(crate) fn assemble(store: &BlobStore, parts: &Parts<'_>) -> io::Result<Image> {
    let mut history = parts.base.history.clone();
    history.extend(parts.layers.iter().map(|(_, h)| h.clone()));
    let diff_ids: Vec<String> = parts
        .base
        .diff_ids
        .iter()
        .cloned()
        .chain(parts.layers.iter().map(|(l, _)| l.diff_id.clone()))
        .collect();
    let file = ConfigFile {
        architecture: &parts.platform.arch,
        author: parts.author.as_deref(),
        config: &parts.runtime,
        created: &parts.created,
        history,
        os: &parts.platform.os,
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: diff_ids.clone(),
        },
        variant: parts.platform.variant.as_deref(),
    };
    let config_bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
    let (config_type, manifest_type) = if parts.oci {
        (media::OCI_CONFIG, media::OCI_MANIFEST)
    } else {
        (media::DOCKER_CONFIG, media::DOCKER_MANIFEST)
    };
    let config = store.put(config_type, &config_bytes)?;
    let layers = parts
        .base
        .layers
        .iter()
        .cloned()
        .chain(parts.layers.iter().map(|(l, _)| l.blob.clone()));
    let (manifest, layers) = write_manifest(store, manifest_type, &config, layers, parts.oci)?;
    Ok(Image {
        manifest,
        config,
        layers,
        diff_ids,
        platform: parts.platform.clone(),
        remote: parts.base.remote.clone(),
    })
}

/// Writes the manifest of `config` and `layers` (their media types named as the manifest's
/// kind names them); the manifest and the layers as it lists them.
fn write_manifest(
    store: &BlobStore,
    manifest_type: &str,
    config: &Descriptor,
    layers: impl Iterator<Item = Descriptor>,
    oci: bool,
) -> io::Result<(Descriptor, Vec<Descriptor>)> {
    let layers: Vec<Descriptor> = layers
        .map(|mut d| {
            d.media_type = layer_type(&d.media_type, oci).to_string();
            d
        })
        .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: manifest_type,
        config: config.clone(),
        layers: layers.clone(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    Ok((store.put(manifest_type, &manifest_bytes)?, layers))
}

/// The image an engine's export gave (its config byte for byte, its layers as compressed
/// into the store): the config and manifest written into the store. A Docker manifest for
/// gzip layers, an OCI one otherwise.
pub(crate) fn exported(store: &BlobStore, config: &[u8], layers: &[Layer]) -> io::Result<Image> {
    let raw: PlatformOf = serde_json::from_slice(config).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the image's config: {e}"),
        )
    })?;
    let oci = layers.iter().any(|l| {
        !matches!(
            l.blob.media_type.as_str(),
            media::DOCKER_LAYER_GZIP | media::OCI_LAYER_GZIP
        )
    });
    let (config_type, manifest_type) = if oci {
        (media::OCI_CONFIG, media::OCI_MANIFEST)
    } else {
        (media::DOCKER_CONFIG, media::DOCKER_MANIFEST)
    };
    let config = store.put(config_type, config)?;
    let blobs = layers.iter().map(|l| l.blob.clone());
    let (manifest, layers_listed) = write_manifest(store, manifest_type, &config, blobs, oci)?;
    Ok(Image {
        manifest,
        config,
        layers: layers_listed,
        diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
        platform: Platform {
            os: raw.os,
            arch: raw.architecture,
            variant: raw.variant.filter(|v| !v.is_empty()),
        },
        remote: BTreeMap::new(),
    })
}

/// An image read from a registry into the store: its manifest `manifest` (already stored),
/// whose config (bytes `config_bytes`, stored as `config`) and layers it lists.
pub(crate) fn pulled(
    manifest: Descriptor,
    config: Descriptor,
    config_bytes: &[u8],
    layers: Vec<Descriptor>,
) -> io::Result<Image> {
    #[derive(Deserialize)]
    struct Read {
        #[serde(flatten)]
        platform: PlatformOf,
        rootfs: RootFs,
    }
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let raw: Read = serde_json::from_slice(config_bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the image's config: {e}"),
        )
    })?;
    if raw.rootfs.diff_ids.len() != layers.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the image's config lists {} layers, its manifest {}",
                raw.rootfs.diff_ids.len(),
                layers.len()
            ),
        ));
    }
    Ok(Image {
        manifest,
        config,
        layers,
        diff_ids: raw.rootfs.diff_ids,
        platform: Platform {
            os: raw.platform.os,
            arch: raw.platform.architecture,
            variant: raw.platform.variant.filter(|v| !v.is_empty()),
        },
        remote: BTreeMap::new(),
    })
}

#[derive(Deserialize)]
struct PlatformOf {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// A layer's media type in a manifest of the given kind: the same compressed bytes, named as
/// that kind names them.
fn layer_type(media_type: &str, oci: bool) -> &str {
    match (media_type, oci) {
        (media::DOCKER_LAYER_GZIP | media::OCI_LAYER_GZIP, true) => media::OCI_LAYER_GZIP,
        (media::DOCKER_LAYER_GZIP | media::OCI_LAYER_GZIP, false) => media::DOCKER_LAYER_GZIP,
        (other, _) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_and_manifest_carry_the_base_on_and_are_the_same_bytes_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        let base = BaseImage::from_config(
            br#"{"architecture":"amd64","os":"linux","history":[{"created":"2020-01-01T00:00:00Z","created_by":"import"}],"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
            vec![Descriptor {
                media_type: media::OCI_LAYER_GZIP.into(),
                digest: "sha256:bb".into(),
                size: 10,
                platform: None,
                annotations: BTreeMap::new(),
            }],
        )
        .unwrap();
        let layer = Layer {
            diff_id: "sha256:cc".into(),
            blob: Descriptor {
                media_type: media::DOCKER_LAYER_GZIP.into(),
                digest: "sha256:dd".into(),
                size: 20,
                platform: None,
                annotations: BTreeMap::new(),
            },
            tar_size: 30,
        };
        let platform = Platform {
            os: "linux".into(),
            arch: "arm64".into(),
            variant: Some("v8".into()),
        };
        let mut runtime = Map::new();
        runtime.insert("Cmd".into(), serde_json::json!(["vim"]));
        let parts = Parts {
            base: &base,
            layers: vec![(
                layer,
                History {
                    created: Some("2026-01-01T00:00:00Z".into()),
                    created_by: Some("pipeline vim: steps 1-2".into()),
                    ..Default::default()
                },
            )],
            runtime,
            platform: &platform,
            created: "2026-01-01T00:00:00Z".into(),
            author: None,
            oci: false,
        };
        let image = assemble(&store, &parts).unwrap();
        assert_eq!(assemble(&store, &parts).unwrap(), image);
        let config: Value =
            serde_json::from_reader(store.open(&image.config.digest).unwrap()).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!(["sha256:aa", "sha256:cc"])
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        assert_eq!(config["variant"], "v8");
        let manifest: Value =
            serde_json::from_reader(store.open(&image.manifest.digest).unwrap()).unwrap();
        assert_eq!(manifest["mediaType"], media::DOCKER_MANIFEST);
        assert_eq!(manifest["layers"][0]["mediaType"], media::DOCKER_LAYER_GZIP);
        assert_eq!(manifest["config"]["digest"], image.config.digest);
        let oci = assemble(
            &store,
            &Parts {
                oci: true,
                ..parts.clone()
            },
        )
        .unwrap();
        let manifest: Value =
            serde_json::from_reader(store.open(&oci.manifest.digest).unwrap()).unwrap();
        assert_eq!(manifest["layers"][1]["mediaType"], media::OCI_LAYER_GZIP);
        assert_eq!(manifest["config"]["mediaType"], media::OCI_CONFIG);
    }
}
