//! Images the tool writes itself: layer blobs, image configs, manifests and indexes, kept in a
//! local content-addressed [`store::BlobStore`], then pushed to registries or written out (an
//! OCI image layout, a tar that `docker load` reads). Knows nothing of the engine: the layers
//! it is given are tar streams, whoever read them.

pub(crate) mod bridge;
pub(crate) mod collect;
pub(crate) mod compare;
pub(crate) mod compress;
pub(crate) mod config;
pub(crate) mod diff;
pub(crate) mod layout;
pub(crate) mod mount_points;
pub(crate) mod save;
pub(crate) mod store;
pub(crate) mod tarfmt;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Platform;

/// The media types the tool writes and reads.
pub(crate) mod media {
    pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub(crate) const DOCKER_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub(crate) const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// A content descriptor, as OCI manifests and indexes write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    /// `sha256:` and 64 lowercase hex digits.
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<DescriptorPlatform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
}

/// The platform of an index entry, as OCI writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DescriptorPlatform {
    pub(crate) os: String,
    pub(crate) architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) variant: Option<String>,
}

impl From<&Platform> for DescriptorPlatform {
    fn from(p: &Platform) -> Self {
        Self {
            os: p.os.clone(),
            architecture: p.arch.clone(),
            variant: p.variant.clone(),
        }
    }
}

/// Where a blob the store lacks can be had without reading it from the engine again: a
/// registry repository that holds it (pushes to the same registry mount it, others copy it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteBlob {
    /// `host[:port]` as references name it.
    pub(crate) registry: String,
    /// The repository path inside that registry (`team/base`).
    pub(crate) repository: String,
}

/// One image, complete: its manifest, config and layers are in the store, or (for base layers
/// the store never needed) in [`Image::remote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    /// The manifest: its digest is the image's digest in every registry it is pushed to.
    pub(crate) manifest: Descriptor,
    /// The image config: its digest is the image id an engine gives it.
    pub(crate) config: Descriptor,
    /// Compressed layer blobs, bottom first, as the manifest lists them.
    pub(crate) layers: Vec<Descriptor>,
    /// The layers' diff ids (digests of the uncompressed tars), as the config lists them.
    pub(crate) diff_ids: Vec<String>,
    pub(crate) platform: Platform,
    /// Blobs that are not in the store, and where they are.
    pub(crate) remote: BTreeMap<String, RemoteBlob>,
}

/// Several platforms' images under one name: an OCI index (a Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// The index blob, in the store.
    pub(crate) descriptor: Descriptor,
    pub(crate) images: Vec<Image>,
}
