//! The image the tool writes during `apply`, read from its store (`XDG_CACHE_HOME` of the
//! project: `pipeline/blobs`) by the digests its run report names, and compared with what the
//! engine committed.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The run-time config keys the tool writes, as Docker names them.
const CONFIG_KEYS: [&str; 12] = [
    "Cmd",
    "Entrypoint",
    "Env",
    "ExposedPorts",
    "Healthcheck",
    "Labels",
    "OnBuild",
    "Shell",
    "StopSignal",
    "User",
    "Volumes",
    "WorkingDir",
];

/// An image the tool wrote: its manifest digest, manifest and config.
pub(crate) struct Made {
    pub(crate) digest: String,
    pub(crate) manifest: Value,
    pub(crate) config: Value,
    /// The store it is in.
    pub(crate) blobs: PathBuf,
}

impl Made {
    /// The image the run report `report` names, in the store below `user_cache`.
    pub(crate) fn of_report(user_cache: &Path, report: &Value) -> Made {
        let digest = report["image"]["manifest_digest"]
            .as_str()
            .unwrap_or_else(|| panic!("the report names no image the tool wrote: {report:#}"))
            .to_string();
        let blobs = user_cache.join("pipeline").join("blobs");
        let read = |d: &str| -> Value {
            let path = blob_path(&blobs, d);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("blob {d} ({}): {e}", path.display()));
            serde_json::from_slice(&bytes).unwrap()
        };
        let manifest = read(&digest);
        let config = read(manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(
            report["image"]["config_digest"], manifest["config"]["digest"],
            "the report names the manifest's config"
        );
        Made {
            digest,
            manifest,
            config,
            blobs,
        }
    }

    /// The layers' diff ids, bottom first.
    pub(crate) fn diff_ids(&self) -> Vec<String> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    }

    /// The `created_by` of each history entry.
    pub(crate) fn history(&self) -> Vec<String> {
        self.config["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["created_by"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The entries of its top layer, by path.
    pub(crate) fn top_layer(&self) -> std::collections::BTreeMap<Vec<u8>, Entry> {
        let layers = self.manifest["layers"].as_array().unwrap();
        entries(self, layers.last().unwrap()["digest"].as_str().unwrap())
    }
}

fn blob_path(blobs: &Path, digest: &str) -> PathBuf {
    blobs
        .join("sha256")
        .join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// An absent key, `null` and an empty string, list or map all mean "not set".
fn normal(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

/// Panics unless the tool's config (`made.config["config"]`) says what the engine's
/// `Config` (from `docker image inspect`) says, key by key, and holds nothing else.
pub(crate) fn assert_same_config(made: &Made, engine: &Value) {
    let ours = made.config["config"].as_object().expect("a config object");
    for key in ours.keys() {
        assert!(
            CONFIG_KEYS.contains(&key.as_str()),
            "the tool's config has `{key}`"
        );
    }
    for key in CONFIG_KEYS {
        assert_eq!(
            normal(ours.get(key)),
            normal(engine.get(key)),
            "`{key}` differs: the tool's config {ours:?}, the engine's {engine}"
        );
    }
}

/// What a layer entry is, for comparing: type, mode, uid, gid, size, mtime, content sha256,
/// link target.
pub(crate) type Entry = (char, u32, u64, u64, u64, u64, String, String);

/// The entries of layer blob `digest` (gzip), by path.
fn entries(made: &Made, digest: &str) -> std::collections::BTreeMap<Vec<u8>, Entry> {
    use sha2::Digest as _;
    use std::io::Read;
    let blob = std::fs::File::open(blob_path(&made.blobs, digest)).unwrap();
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
    let mut out = std::collections::BTreeMap::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let path = e.path_bytes().into_owned();
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        out.insert(
            path,
            (
                h.entry_type().as_byte() as char,
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                content.len() as u64,
                h.mtime().unwrap(),
                hex::encode(sha2::Sha256::digest(&content)),
                link,
            ),
        );
    }
    out
}

/// How the layers of two images differ, entry by entry: `layer N PATH: A | B` (type, mode,
/// uid, gid, size, mtime, content sha256, link), `only in ...` for entries one lacks.
pub(crate) fn layer_entries(a: &Made, b: &Made) -> Vec<String> {
    let layers = |m: &Made| -> Vec<String> {
        m.manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let (la, lb) = (layers(a), layers(b));
    let mut out = Vec::new();
    if la.len() != lb.len() {
        out.push(format!("{} layers | {} layers", la.len(), lb.len()));
    }
    for (i, (da, db)) in la.iter().zip(&lb).enumerate() {
        if da == db {
            continue;
        }
        let (ea, eb) = (entries(a, da), entries(b, db));
        for (path, x) in &ea {
            let p = String::from_utf8_lossy(path);
            match eb.get(path) {
                None => out.push(format!("layer {i} {p}: only in the first {x:?}")),
                Some(y) if x != y => out.push(format!("layer {i} {p}: {x:?} | {y:?}")),
                Some(_) => {}
            }
        }
        for (path, y) in &eb {
            if !ea.contains_key(path) {
                let p = String::from_utf8_lossy(path);
                out.push(format!("layer {i} {p}: only in the second {y:?}"));
            }
        }
        if ea == eb {
            out.push(format!(
                "layer {i}: same entries, other bytes ({da} | {db})"
            ));
        }
    }
    out
}

/// The entries of the top layer of the image an export (`docker save`) holds, in order, each
/// with its content: names as the layer writes them, folders with a trailing `/`.
pub(crate) fn saved_top_layer(export: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut files = std::collections::HashMap::new();
    for entry in tar::Archive::new(export).entries().expect("an export") {
        let mut entry = entry.unwrap();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(name.trim_start_matches("./").to_string(), data);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let top = manifest[0]["Layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no layers: {manifest:#}"));
    tar::Archive::new(files[top].as_slice())
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (name.trim_start_matches("./").to_string(), data)
        })
        .collect()
}
