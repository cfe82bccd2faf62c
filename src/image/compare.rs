//! What differs between two images the tool wrote, to explain why two builds that should give
//! one digest do not: the config's fields, then each layer's entries, by name and by which of
//! their fields differ. Reads the store only.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::media;
use super::store::BlobStore;
use super::tarfmt::{as_engine_text, Header};

/// A layer entry as compared: its normalised header and its content's sha256.
type Entry = (Header, Option<String>);

/// Every difference between the images of manifests `a` and `b` in `store`, one line each;
/// empty when they are the same image.
pub(crate) fn differences(store: &BlobStore, a: &str, b: &str) -> io::Result<Vec<String>> {
    let (ma, mb) = (json(store, a)?, json(store, b)?);
    let mut out = Vec::new();
    if ma.get("mediaType") != mb.get("mediaType") {
        out.push(format!(
            "manifest media type: {} | {}",
            ma["mediaType"], mb["mediaType"]
        ));
    }
    let config = |m: &Value| m["config"]["digest"].as_str().unwrap_or("").to_string();
    let (ca, cb) = (json(store, &config(&ma))?, json(store, &config(&mb))?);
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &ca, &mut fa);
    flatten("", &cb, &mut fb);
    for key in fa.keys().chain(fb.keys().filter(|k| !fa.contains_key(*k))) {
        let (x, y) = (fa.get(key), fb.get(key));
        if x != y {
            let show = |v: Option<&String>| v.map_or("(none)".to_string(), Clone::clone);
            out.push(format!("config `{key}`: {} | {}", show(x), show(y)));
        }
    }
    let layers = |m: &Value| -> Vec<(String, String)> {
        m["layers"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|d| {
                        let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
                        (s("digest"), s("mediaType"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (la, lb) = (layers(&ma), layers(&mb));
    if la.len() != lb.len() {
        out.push(format!("layers: {} | {}", la.len(), lb.len()));
    }
    for (i, (x, y)) in la.iter().zip(&lb).enumerate() {
        if x.0 != y.0 {
            out.extend(layer_differences(store, i + 1, x, y)?);
        }
    }
    Ok(out)
}

/// The differences of two layers (digest, media type), numbered `n` from the bottom.
fn layer_differences(
    store: &BlobStore,
    n: usize,
    a: &(String, String),
    b: &(String, String),
) -> io::Result<Vec<String>> {
    let (ea, eb) = (entries(store, a)?, entries(store, b)?);
    let mut out = Vec::new();
    let name = |p: &[u8]| as_engine_text(p);
    for (path, x) in &ea {
        match eb.get(path) {
            None => out.push(format!("layer {n} `{}`: only in the first", name(path))),
            Some(y) if x != y => out.push(format!(
                "layer {n} `{}`: {}",
                name(path),
                fields(x, y).join(", ")
            )),
            Some(_) => {}
        }
    }
    for path in eb.keys().filter(|p| !ea.contains_key(*p)) {
        out.push(format!("layer {n} `{}`: only in the second", name(path)));
    }
    if out.is_empty() {
        out.push(format!(
            "layer {n}: the same entries, other bytes (tar headers or compression): {} | {}",
            a.0, b.0
        ));
    }
    Ok(out)
}

/// Which fields of two entries of one path differ, with both values.
fn fields(a: &Entry, b: &Entry) -> Vec<String> {
    let (x, y) = (&a.0, &b.0);
    let mut out = Vec::new();
    let mut field = |what: &str, p: String, q: String| {
        if p != q {
            out.push(format!("{what} {p} | {q}"));
        }
    };
    field("type", format!("{:?}", x.kind), format!("{:?}", y.kind));
    field("mode", format!("{:o}", x.mode), format!("{:o}", y.mode));
    field("uid", x.uid.to_string(), y.uid.to_string());
    field("gid", x.gid.to_string(), y.gid.to_string());
    field("mtime", x.mtime.to_string(), y.mtime.to_string());
    field("size", x.size.to_string(), y.size.to_string());
    let text = |b: &[u8]| as_engine_text(b);
    field("link", text(&x.link), text(&y.link));
    field("device", format!("{:?}", x.dev), format!("{:?}", y.dev));
    field(
        "capability",
        format!("{:?}", x.capability),
        format!("{:?}", y.capability),
    );
    field(
        "content",
        a.1.clone().unwrap_or_default(),
        b.1.clone().unwrap_or_default(),
    );
    out
}

/// The entries of a layer blob, by path.
fn entries(
    store: &BlobStore,
    (digest, media_type): &(String, String),
) -> io::Result<BTreeMap<Vec<u8>, Entry>> {
    let blob = io::BufReader::new(store.open(digest)?);
    let reader: Box<dyn Read> = match media_type.as_str() {
        media::OCI_LAYER_ZSTD => Box::new(zstd::stream::read::Decoder::new(blob)?),
        media::OCI_LAYER_TAR => Box::new(blob),
        _ => Box::new(flate2::read::MultiGzDecoder::new(blob)),
    };
    let mut tar = tar::Archive::new(reader);
    let mut out = BTreeMap::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        let Some(header) = Header::read(&mut entry, b"")? else {
            continue;
        };
        let mut hash = Sha256::new();
        let n = io::copy(&mut entry, &mut HashWriter(&mut hash))?;
        let content = (n > 0).then(|| hex::encode(hash.finalize()));
        out.insert(header.path.clone(), (header, content));
    }
    Ok(out)
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON blob of the store.
fn json(store: &BlobStore, digest: &str) -> io::Result<Value> {
    let mut bytes = Vec::new();
    store.open(digest)?.read_to_end(&mut bytes)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("`{digest}`: {e}")))
}

/// `value` as `path -> JSON text` of its leaves (`history[2].created`).
fn flatten(path: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, out);
            }
        }
        leaf => {
            out.insert(path.to_string(), leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::compress::Compression;
    use crate::image::config::{assemble, BaseImage, History, Parts};
    use crate::image::tarfmt::Kind;
    use crate::model::Platform;
    use std::io::Write;

    fn layer(store: &BlobStore, files: &[(&[u8], u64, &[u8])]) -> crate::image::compress::Layer {
        let mut w = Compression::default().writer(store).unwrap();
        for (path, mtime, content) in files {
            let h = Header {
                path: path.to_vec(),
                kind: Kind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: *mtime,
                size: content.len() as u64,
                link: Vec::new(),
                dev: (0, 0),
                capability: None,
            };
            h.write(&mut w).unwrap();
            w.write_all(content).unwrap();
            crate::image::tarfmt::pad(&mut w, content.len() as u64).unwrap();
        }
        crate::image::tarfmt::finish(&mut w).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn two_images_differ_by_the_fields_of_their_entries_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        let platform = Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        };
        let base = BaseImage::default();
        let image = |files: &[(&[u8], u64, &[u8])], created: &str| {
            let parts = Parts {
                base: &base,
                layers: vec![(layer(&store, files), History::default())],
                runtime: serde_json::Map::new(),
                platform: &platform,
                created: created.into(),
                author: None,
                oci: false,
            };
            assemble(&store, &parts).unwrap().manifest.digest
        };
        let a = image(&[(b"etc/a", 5, b"x"), (b"etc/b", 5, b"y")], "t1");
        let b = image(&[(b"etc/a", 6, b"x"), (b"etc/c", 5, b"z")], "t2");
        assert_eq!(differences(&store, &a, &a).unwrap(), Vec::<String>::new());
        let mut got = differences(&store, &a, &b).unwrap();
        let ids = got.remove(1);
        assert!(
            ids.starts_with("config `rootfs.diff_ids[0]`: \"sha256:"),
            "{ids}"
        );
        assert_eq!(
            got,
            vec![
                "config `created`: \"t1\" | \"t2\"".to_string(),
                "layer 1 `etc/a`: mtime 5 | 6".to_string(),
                "layer 1 `etc/b`: only in the first".to_string(),
                "layer 1 `etc/c`: only in the second".to_string(),
            ]
        );
    }
}
