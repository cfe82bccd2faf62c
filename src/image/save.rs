//! Reading what an engine's image export (`docker save`) gives: the image's config as the
//! engine stored it, and its layers, each compressed once into the store. The layers are
//! taken as they are (never rewritten): their diff ids stay the image's.

use std::collections::HashMap;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::collect::Names;
use super::compress::{Compression, Layer};
use super::store::BlobStore;
use super::tarfmt;
use super::{Descriptor, DescriptorPlatform, Image};

/// One image, as its export gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The config JSON, byte for byte.
    pub(crate) config: Vec<u8>,
    /// Bottom first.
    pub(crate) layers: Vec<Layer>,
}

/// Layers smaller than this are compressed whatever the store holds: cheap, and small layers
/// share sizes too often to be told apart by theirs.
const PREDICTED: u64 = 1 << 20;

/// JSON files of an export (manifests, configs) are small; anything larger is no JSON.
const JSON_LIMIT: u64 = 16 << 20;

/// Reads an export of one image (Docker's and Podman's `docker-archive` format, and Docker
/// 25's which is also an OCI layout). Layers are compressed into `store` as they stream by,
/// except those of `known` (layers the store holds, of the image's diff ids): a layer of a
/// known layer's size is only hashed, and taken as that layer when its diff id is that
/// layer's. An export names its layers by ids other than their diff ids, so the size is what
/// tells before reading; when a layer of that size turns out to be another, the error is
/// [`Mispredicted`] and the export must be read again without `known`.
pub(crate) fn read(
    archive: &mut dyn Read,
    store: &BlobStore,
    compression: Compression,
    known: &[Layer],
) -> io::Result<Saved> {
    let mut images = read_all(archive, store, compression, known)?;
    if images.len() != 1 {
        return Err(bad("the export holds more than one image"));
    }
    Ok(images.remove(0))
}

/// Reads an export of several images (one `docker save` of them all: a layer two images share
/// is in it once), as [`read`] reads one; the images in the order `manifest.json` lists them.
pub(crate) fn read_all(
    archive: &mut dyn Read,
    store: &BlobStore,
    compression: Compression,
    known: &[Layer],
) -> io::Result<Vec<Saved>> {
    let mut layers: HashMap<String, Layer> = HashMap::new();
    let mut aliases: HashMap<String, String> = HashMap::new();
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8_lossy(&tarfmt::clean(&entry.path_bytes())).into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                // Docker writes a layer that two images share once, and links the other name.
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                    let resolved = resolve(dir, &target);
                    aliases.insert(name, resolved);
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let mut head = Vec::new();
                (&mut entry).take(512).read_to_end(&mut head)?;
                let is_tar = head.len() == 512
                    && (&head[257..262] == b"ustar" || head.iter().all(|&b| b == 0));
                let stored = known
                    .iter()
                    .filter(|l| l.tar_size == size && size >= PREDICTED);
                if is_tar && stored.clone().next().is_some() {
                    let mut hash = Hashed::default();
                    io::copy(&mut head.as_slice().chain(&mut entry), &mut hash)?;
                    let diff_id = format!("sha256:{}", hex::encode(hash.0.finalize()));
                    let mut stored = stored;
                    let layer = stored.find(|l| l.diff_id == diff_id).ok_or_else(|| {
                        io::Error::other(Mispredicted {
                            layer: name.clone(),
                        })
                    })?;
                    layers.insert(name, layer.clone());
                } else if is_tar {
                    let mut w = compression.writer(store)?;
                    io::copy(&mut head.as_slice().chain(&mut entry), &mut w)?;
                    layers.insert(name, w.finish()?);
                } else if size <= JSON_LIMIT {
                    entry.read_to_end(&mut head)?;
                    small.insert(name, head);
                }
            }
            _ => {}
        }
    }
    let manifest = small
        .get("manifest.json")
        .ok_or_else(|| bad("the export has no `manifest.json`"))?;
    let manifest: Vec<ArchiveManifest> =
        serde_json::from_slice(manifest).map_err(|e| bad(&format!("`manifest.json`: {e}")))?;
    manifest
        .iter()
        .map(|m| {
            let config = small
                .get(&m.config)
                .ok_or_else(|| bad(&format!("the export has no `{}`", m.config)))?
                .clone();
            let layers = m
                .layers
                .iter()
                .map(|n| {
                    let n = aliases.get(n).unwrap_or(n);
                    layers
                        .get(n)
                        .cloned()
                        .ok_or_else(|| bad(&format!("the export has no layer `{n}`")))
                })
                .collect::<io::Result<Vec<_>>>()?;
            Ok(Saved { config, layers })
        })
        .collect()
}

/// A layer of an export had the size of a layer the store holds but other content: it was
/// hashed, not compressed (see [`read`]).
#[derive(Debug, thiserror::Error)]
#[error("layer `{layer}` of the export is not the stored layer of its size")]
pub(crate) struct Mispredicted {
    layer: String,
}

/// Whether `e` is [`read`]'s [`Mispredicted`].
pub(crate) fn mispredicted(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Mispredicted>())
}

/// A sink that only hashes what it is given.
#[derive(Default)]
struct Hashed(Sha256);

impl io::Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the store records of an engine image written as the tool's.
#[derive(serde::Serialize, serde::Deserialize)]
struct ImageRecord {
    /// The engine image id: the record is worth keeping while an engine holds that image
    /// (records written before it was kept have none).
    #[serde(default)]
    image: Option<String>,
    manifest: Descriptor,
    config: Descriptor,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    platform: DescriptorPlatform,
}

/// The store record of the tool's image of an engine image.
pub(crate) const IMAGE_RECORD: &str = "images";

fn image_key(id: &str, compression: Compression) -> String {
    format!("{id}\n{}", compression.id())
}

/// The tool's image of engine image `id`, as recorded when it was read from the engine's
/// export with `compression`; `None` when there is none or a blob is gone.
pub(crate) fn recorded_image(
    store: &BlobStore,
    id: &str,
    compression: Compression,
) -> Option<Image> {
    let key = image_key(id, compression);
    let r: ImageRecord = serde_json::from_slice(&store.record(IMAGE_RECORD, &key)?).ok()?;
    let blobs = [&r.manifest, &r.config].into_iter().chain(&r.layers);
    if !blobs.into_iter().all(|b| store.contains(&b.digest)) {
        return None;
    }
    Some(Image {
        manifest: r.manifest,
        config: r.config,
        layers: r.layers,
        diff_ids: r.diff_ids,
        platform: crate::model::Platform {
            os: r.platform.os,
            arch: r.platform.architecture,
            variant: r.platform.variant,
        },
        remote: Default::default(),
    })
}

/// Records the tool's image of engine image `id` (see [`recorded_image`]).
pub(crate) fn record_image(
    store: &BlobStore,
    id: &str,
    compression: Compression,
    image: &Image,
) -> io::Result<()> {
    let record = ImageRecord {
        image: Some(id.to_string()),
        manifest: image.manifest.clone(),
        config: image.config.clone(),
        layers: image.layers.clone(),
        diff_ids: image.diff_ids.clone(),
        platform: DescriptorPlatform::from(&image.platform),
    };
    let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
    store.put_record(IMAGE_RECORD, &image_key(id, compression), &bytes)
}

/// What an `images` record names, for the store's collector.
pub(crate) fn record_names(bytes: &[u8]) -> Option<Names> {
    let r: ImageRecord = serde_json::from_slice(bytes).ok()?;
    let blobs = [&r.manifest, &r.config].into_iter().chain(&r.layers);
    Some(Names {
        image: r.image,
        blobs: blobs.map(|b| b.digest.clone()).collect(),
    })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    layers: Vec<String>,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// `target` (relative to folder `dir`) as a path from the archive's root.
fn resolve(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }

    fn layer_tar(file: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, file, b"content");
        b.into_inner().unwrap()
    }

    /// An export of one image of `layers` (bottom first), each under a name of its own.
    fn export_of(layers: &[&[u8]]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let names: Vec<String> = (0..layers.len())
            .map(|i| format!("\"x{i}/layer.tar\""))
            .collect();
        for (i, l) in layers.iter().enumerate().rev() {
            append(&mut b, &format!("x{i}/layer.tar"), l);
        }
        append(&mut b, "cfg.json", br#"{"os":"linux"}"#);
        let manifest = format!(
            r#"[{{"Config":"cfg.json","Layers":[{}]}}]"#,
            names.join(",")
        );
        append(&mut b, "manifest.json", manifest.as_bytes());
        b.into_inner().unwrap()
    }

    #[test]
    fn a_big_layer_the_store_holds_is_hashed_not_compressed_again() {
        let big = |fill: u8| {
            let mut b = tar::Builder::new(Vec::new());
            append(&mut b, "big", &vec![fill; 3 << 20]);
            b.into_inner().unwrap()
        };
        let (base, top, other) = (big(1), layer_tar("top"), big(2));
        let first = tempfile::tempdir().unwrap();
        let first = BlobStore::at(first.path());
        let saved = read(
            &mut export_of(&[&base, &top]).as_slice(),
            &first,
            Compression::default(),
            &[],
        )
        .unwrap();
        let known = crate::image::compress::stored_layer(
            &first,
            &saved.layers[0].diff_id,
            Compression::default(),
        )
        .unwrap();
        assert_eq!(
            known, saved.layers[0],
            "the store recorded the layer by its diff id"
        );
        // Another store: what it holds after the read was compressed into it.
        let dir = tempfile::tempdir().unwrap();
        let second = BlobStore::at(dir.path());
        let again = read(
            &mut export_of(&[&base, &top]).as_slice(),
            &second,
            Compression::default(),
            std::slice::from_ref(&known),
        )
        .unwrap();
        assert_eq!(again, saved);
        assert!(
            !second.contains(&known.blob.digest),
            "the known layer was not compressed"
        );
        assert!(second.contains(&again.layers[1].blob.digest));
        // A layer of the known one's size with other content: read again without it.
        let e = read(
            &mut export_of(&[&other, &top]).as_slice(),
            &second,
            Compression::default(),
            std::slice::from_ref(&known),
        )
        .unwrap_err();
        assert!(mispredicted(&e), "{e}");
        // Small layers are compressed whatever is known.
        let small = crate::image::compress::stored_layer(
            &first,
            &saved.layers[1].diff_id,
            Compression::default(),
        )
        .unwrap();
        let other_small = layer_tar("pot");
        let read_small = read(
            &mut export_of(&[&other_small]).as_slice(),
            &second,
            Compression::default(),
            &[small],
        )
        .unwrap();
        assert_eq!(read_small.layers.len(), 1);
    }

    #[test]
    fn an_export_gives_the_config_and_the_layers_in_order_with_their_diff_ids() {
        let (l1, l2) = (layer_tar("a"), layer_tar("b"));
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, "l2/layer.tar", &l2);
        append(&mut b, "l2/VERSION", b"1.0");
        append(&mut b, "l1/layer.tar", &l1);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "l3/layer.tar", "../l1/layer.tar")
            .unwrap();
        append(&mut b, "cfg.json", br#"{"os":"linux"}"#);
        append(
            &mut b,
            "manifest.json",
            br#"[{"Config":"cfg.json","RepoTags":null,"Layers":["l1/layer.tar","l2/layer.tar","l3/layer.tar"]}]"#,
        );
        let export = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        let saved = read(&mut export.as_slice(), &store, Compression::default(), &[]).unwrap();
        assert_eq!(saved.config, br#"{"os":"linux"}"#);
        let ids: Vec<String> = saved.layers.iter().map(|l| l.diff_id.clone()).collect();
        let id = |t: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(t)));
        assert_eq!(ids, vec![id(&l1), id(&l2), id(&l1)]);
        assert!(saved.layers.iter().all(|l| store.contains(&l.blob.digest)));
    }

    #[test]
    fn an_image_record_names_its_engine_image_and_every_blob_and_is_lost_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        let export = export_of(&[&layer_tar("a")]);
        let saved = read(&mut export.as_slice(), &store, Compression::default(), &[]).unwrap();
        let image = crate::image::config::exported(&store, &saved.config, &saved.layers).unwrap();
        let c = Compression::default();
        record_image(&store, "sha256:engine", c, &image).unwrap();
        let bytes = store
            .record(IMAGE_RECORD, &image_key("sha256:engine", c))
            .unwrap();
        let names = record_names(&bytes).unwrap();
        assert_eq!(names.image.as_deref(), Some("sha256:engine"));
        let mut want = vec![image.manifest.digest.clone(), image.config.digest.clone()];
        want.extend(image.layers.iter().map(|l| l.digest.clone()));
        assert_eq!(names.blobs, want);
        // A record written before records named their image: read, naming none.
        let old = String::from_utf8(bytes)
            .unwrap()
            .replace(r#""image":"sha256:engine","#, "");
        assert!(!old.contains("sha256:engine"), "{old}");
        assert_eq!(record_names(old.as_bytes()).unwrap().image, None);
        assert!(recorded_image(&store, "sha256:engine", c).is_some());
        std::fs::remove_file(store.path(&image.layers[0].digest).unwrap()).unwrap();
        assert!(
            recorded_image(&store, "sha256:engine", c).is_none(),
            "a blob is gone"
        );
    }
}
