//! Images written out of the store: an OCI image layout folder (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), or one tar holding that layout and the classic `manifest.json`, as
//! `docker save` of Docker 25 writes it: `docker load` (20.10 too, through `manifest.json`;
//! it detects compressed layers by their magic bytes) and `podman load` read it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::store::BlobStore;
use super::{media, Descriptor, DescriptorPlatform, Image};

/// What an output holds: one image, or several platforms' images under one index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Contents<'a> {
    pub(crate) images: &'a [Image],
    /// Names the image gets where it is loaded (`repo:tag`); for several platforms, none
    /// (a local name holds one image).
    pub(crate) names: &'a [String],
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The files of the layout besides the blobs: `index.json` (and, for several platforms, the
/// index blob it names, written into the store), the blobs it needs.
struct Plan {
    index_json: Vec<u8>,
    blobs: Vec<Descriptor>,
    /// The digest of what `index.json` names: the image's manifest, or the index.
    top: String,
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn plan(store: &BlobStore, c: Contents<'_>) -> io::Result<Plan> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    for image in c.images {
        blobs.extend(image.layers.iter().cloned());
        blobs.push(image.config.clone());
        blobs.push(image.manifest.clone());
    }
    let top = match c.images {
        [one] => one.manifest.clone(),
        several => {
            let manifests = several
                .iter()
                .map(|i| Descriptor {
                    platform: Some(DescriptorPlatform::from(&i.platform)),
                    ..i.manifest.clone()
                })
                .collect();
            let index = IndexFile {
                schema_version: 2,
                media_type: media::OCI_INDEX,
                manifests,
            };
            let bytes = serde_json::to_vec(&index).map_err(io::Error::other)?;
            let d = store.put(media::OCI_INDEX, &bytes)?;
            blobs.push(d.clone());
            d
        }
    };
    let top_digest = top.digest.clone();
    let entries: Vec<Descriptor> = if c.names.is_empty() {
        vec![top]
    } else {
        c.names
            .iter()
            .map(|n| Descriptor {
                annotations: BTreeMap::from([(REF_NAME.to_string(), n.clone())]),
                ..top.clone()
            })
            .collect()
    };
    let index_json = serde_json::to_vec(&IndexFile {
        schema_version: 2,
        media_type: media::OCI_INDEX,
        manifests: entries,
    })
    .map_err(io::Error::other)?;
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    blobs.dedup_by(|a, b| a.digest == b.digest);
    Ok(Plan {
        index_json,
        blobs,
        top: top_digest,
    })
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes an OCI image layout folder at `dir` (created; blobs already there are kept);
/// returns the digest of the manifest (or index) it names.
pub(crate) fn write_oci(store: &BlobStore, c: Contents<'_>, dir: &Path) -> io::Result<String> {
    let plan = plan(store, c)?;
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)?;
    for b in &plan.blobs {
        let target = dir.join(blob_path(&b.digest));
        if target.is_file() {
            continue;
        }
        let from = store.path(&b.digest).ok_or_else(|| missing(&b.digest))?;
        let tmp = target.with_extension("tmp");
        // A hard link costs nothing when the store is on the same file system.
        if std::fs::hard_link(&from, &tmp).is_err() {
            std::fs::copy(&from, &tmp)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", b.digest)))?;
        }
        std::fs::rename(&tmp, &target)?;
    }
    std::fs::write(dir.join("oci-layout"), OCI_LAYOUT)?;
    let tmp = dir.join("index.json.tmp");
    std::fs::write(&tmp, &plan.index_json)?;
    std::fs::rename(tmp, dir.join("index.json"))?;
    Ok(plan.top)
}

fn missing(digest: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("blob `{digest}` is not in the store"),
    )
}

/// Writes one tar at `path`: the OCI layout plus `manifest.json`. Written to a temporary
/// file beside it and renamed, so `path` is whole or absent. Returns the digest of the
/// manifest (or index) `index.json` names.
pub(crate) fn write_tar(store: &BlobStore, c: Contents<'_>, path: &Path) -> io::Result<String> {
    let plan = plan(store, c)?;
    let archive: Vec<ArchiveEntry> = c
        .images
        .iter()
        .map(|i| ArchiveEntry {
            config: blob_path(&i.config.digest),
            repo_tags: if c.images.len() == 1 {
                c.names.to_vec()
            } else {
                Vec::new()
            },
            layers: i.layers.iter().map(|l| blob_path(&l.digest)).collect(),
        })
        .collect();
    let manifest_json = serde_json::to_vec(&archive).map_err(io::Error::other)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let (tmp, file) = super::store::tempfile_in(dir)?;
    let written = (|| {
        let mut tar = tar::Builder::new(io::BufWriter::new(file));
        let mut add = |name: &str, size: u64, data: &mut dyn io::Read| {
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, data)
        };
        add("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])?;
        for b in &plan.blobs {
            let mut f = store.open(&b.digest).map_err(|_| missing(&b.digest))?;
            add(&blob_path(&b.digest), b.size, &mut f)?;
        }
        add(
            "index.json",
            plan.index_json.len() as u64,
            &mut &plan.index_json[..],
        )?;
        add(
            "manifest.json",
            manifest_json.len() as u64,
            &mut &manifest_json[..],
        )?;
        let mut out = tar.into_inner()?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(plan.top),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Platform;
    use std::fs::File;

    fn image(store: &BlobStore, arch: &str) -> Image {
        let layer = store
            .put(media::DOCKER_LAYER_GZIP, arch.as_bytes())
            .unwrap();
        let config = store
            .put(
                media::DOCKER_CONFIG,
                format!("{{\"architecture\":\"{arch}\"}}").as_bytes(),
            )
            .unwrap();
        let manifest = store
            .put(
                media::DOCKER_MANIFEST,
                format!("{{\"m\":\"{arch}\"}}").as_bytes(),
            )
            .unwrap();
        Image {
            manifest,
            config,
            layers: vec![layer],
            diff_ids: vec!["sha256:x".into()],
            platform: Platform {
                os: "linux".into(),
                arch: arch.into(),
                variant: None,
            },
            remote: BTreeMap::new(),
        }
    }

    #[test]
    fn a_layout_and_a_tar_hold_every_blob_an_index_and_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path().join("store"));
        let one = [image(&store, "amd64")];
        let names = ["app:1".to_string()];
        let out = dir.path().join("oci");
        write_oci(
            &store,
            Contents {
                images: &one,
                names: &names,
            },
            &out,
        )
        .unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            one[0].manifest.digest.as_str()
        );
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "app:1");
        for b in [&one[0].manifest, &one[0].config, &one[0].layers[0]] {
            assert!(out.join(blob_path(&b.digest)).is_file());
        }
        let two = [image(&store, "amd64"), image(&store, "arm64")];
        let tar_path = dir.path().join("out/image.tar");
        write_tar(
            &store,
            Contents {
                images: &two,
                names: &[],
            },
            &tar_path,
        )
        .unwrap();
        let mut names = Vec::new();
        let mut manifest_json = String::new();
        let mut a = tar::Archive::new(File::open(&tar_path).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "manifest.json" {
                io::Read::read_to_string(&mut e, &mut manifest_json).unwrap();
            }
            names.push(name);
        }
        assert!(names.contains(&"oci-layout".to_string()), "{names:?}");
        // 2 layers, 2 configs, 2 manifests and the index blob, then the two JSON files.
        assert_eq!(names.len(), 1 + 7 + 2, "{names:?}");
        let archive: serde_json::Value = serde_json::from_str(&manifest_json).unwrap();
        assert_eq!(archive.as_array().unwrap().len(), 2);
        assert_eq!(
            archive[1]["Layers"][0],
            blob_path(&two[1].layers[0].digest).as_str()
        );
    }
}
