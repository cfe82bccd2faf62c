//! Mount points an engine leaves in a committed layer. Podman makes the mount points of a
//! container it sets up (`/dev`, `/proc`, `/sys`, the `/etc/hosts` it mounts its own file on,
//! its init, ...; on attach already, before any start) in the container's own layer when the
//! image lacks them, and its commit keeps them: every layer would hold them. Docker makes them in a layer of its own under the
//! container's, which its commit leaves out. [`rewrite_export`] takes an export of such a
//! commit and writes the same image with its top layer without them, to be loaded back.
//!
//! A mount point is left out only as Podman makes it: an empty file, a folder that holds
//! nothing else of the layer, `/etc/mtab` as a link to `/proc/mounts`. What a step writes there
//! on purpose (a copy of its own `/etc/hosts`) has content and stays.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest as _, Sha256};

use super::tarfmt;

/// The paths Podman mounts something on in every container (the ones its own change list
/// leaves out), relative to `/`.
const PODMAN_MOUNT_POINTS: [&str; 12] = [
    "dev",
    "proc",
    "sys",
    "run",
    "run/notify",
    "run/secrets",
    "run/.containerenv",
    "run/podman-init",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/mtab",
];

/// What one entry of a layer is, as far as telling a mount point goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Folder,
    EmptyFile,
    Link(String),
    /// A file with content, a whiteout, a device, ...
    Other,
}

/// The paths of a layer's entries (relative to `/`, as [`relative`] gives them) that are
/// Podman's mount points as it makes them, and the folders above them that hold nothing else
/// of the layer.
pub(crate) fn placeholders(entries: &[(String, Entry)]) -> BTreeSet<String> {
    let mount_point = |p: &str| PODMAN_MOUNT_POINTS.contains(&p);
    let mut gone: BTreeSet<String> = entries
        .iter()
        .filter(|(path, entry)| {
            mount_point(path)
                && match entry {
                    Entry::EmptyFile => true,
                    Entry::Link(target) => path == "etc/mtab" && target == "/proc/mounts",
                    Entry::Folder | Entry::Other => false,
                }
        })
        .map(|(path, _)| path.clone())
        .collect();
    let mut folders: Vec<&String> = entries
        .iter()
        .filter(|(path, entry)| *entry == Entry::Folder && !path.is_empty())
        .map(|(path, _)| path)
        .collect();
    // Deepest first: a folder goes only when everything below it went.
    folders.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for folder in folders {
        let below = format!("{folder}/");
        let mut under = entries
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with(&below))
            .peekable();
        let made_for_one = mount_point(folder) || under.clone().any(|p| gone.contains(p));
        if made_for_one && under.all(|p| gone.contains(p)) {
            gone.insert(folder.clone());
        }
    }
    gone
}

/// A layer entry's name relative to `/`: no `./` or `/` before it, no `/` after it.
pub(crate) fn relative(name: &[u8]) -> String {
    let clean = tarfmt::clean(name);
    String::from_utf8_lossy(&clean)
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// The image an export was rewritten into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewritten {
    /// `sha256:` and the digest of its config: the id an engine gives it when loaded.
    pub(crate) id: String,
    /// What its top layer no longer holds, relative to `/`.
    pub(crate) dropped: Vec<String>,
}

/// JSON files of an export (manifests, configs) are small; anything larger is no JSON.
const JSON_LIMIT: u64 = 16 << 20;

/// Reads an export (`docker-archive`, as Podman writes it) of an image whose top layer has
/// the diff id `top`, and writes into `out` the same image (an archive to load) with a top
/// layer without Podman's mount points. `None` when the layer holds none: `out` is then of no
/// use.
pub(crate) fn rewrite_export(
    export: &mut dyn Read,
    top: &str,
    out: &mut File,
) -> io::Result<Option<Rewritten>> {
    let top_hex = top.trim_start_matches("sha256:");
    let mut json: HashMap<String, Vec<u8>> = HashMap::new();
    let mut spooled: Option<(String, File)> = None;
    let mut archive = tar::Builder::new(&mut *out);
    let mut tar = tar::Archive::new(export);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8_lossy(&tarfmt::clean(&entry.path_bytes())).into_owned();
        let kind = entry.header().entry_type();
        let is_top = kind.is_file()
            && (name == format!("{top_hex}.tar") || name == format!("{top_hex}/layer.tar"));
        if is_top {
            let mut file = tempfile::tempfile()?;
            let mut hashed = Hashing::new(&mut file);
            io::copy(&mut entry, &mut hashed)?;
            if hashed.digest() != top {
                return Err(io::Error::other(format!(
                    "the export's `{name}` is not the layer {top}"
                )));
            }
            spooled = Some((name, file));
        } else if kind.is_file()
            && std::path::Path::new(&name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            let mut bytes = Vec::new();
            (&mut entry).take(JSON_LIMIT).read_to_end(&mut bytes)?;
            json.insert(name, bytes);
        } else if name != "repositories" {
            let mut header = entry.header().clone();
            archive.append_data(&mut header, &name, &mut entry)?;
        }
    }
    let (top_name, mut original) =
        spooled.ok_or_else(|| io::Error::other(format!("the export holds no layer {top}")))?;
    let mut layer = tempfile::tempfile()?;
    let dropped = without_placeholders(&mut original, &mut layer)?;
    if dropped.is_empty() {
        return Ok(None);
    }
    layer.seek(SeekFrom::Start(0))?;
    let mut hashed = Hashing::new(io::sink());
    let size = io::copy(&mut layer, &mut hashed)?;
    let new_top = hashed.digest();
    let new_name = format!("{}.tar", new_top.trim_start_matches("sha256:"));
    let manifest = json
        .remove("manifest.json")
        .ok_or_else(|| io::Error::other("the export has no manifest.json"))?;
    let (manifest, config, id, shared) =
        rewritten_manifest(&manifest, &mut json, &top_name, top, &new_name, &new_top)?;
    if shared {
        // The same layer lower in the image too: it stays there as it was.
        original.seek(SeekFrom::Start(0))?;
        let size = original.metadata()?.len();
        append_file(&mut archive, &top_name, size, &mut original)?;
    }
    layer.seek(SeekFrom::Start(0))?;
    append_file(&mut archive, &new_name, size, &mut layer)?;
    let config_name = format!("{}.json", id.trim_start_matches("sha256:"));
    append_file(
        &mut archive,
        &config_name,
        config.len() as u64,
        config.as_slice(),
    )?;
    append_file(
        &mut archive,
        "manifest.json",
        manifest.len() as u64,
        manifest.as_slice(),
    )?;
    archive.finish()?;
    Ok(Some(Rewritten { id, dropped }))
}

/// The export's manifest and config with `new_top` for the top layer `top_name` (diff id
/// `top`): the manifest, the config, its id, and whether the old layer is also a lower one.
fn rewritten_manifest(
    manifest: &[u8],
    json: &mut HashMap<String, Vec<u8>>,
    top_name: &str,
    top: &str,
    new_name: &str,
    new_top: &str,
) -> io::Result<(Vec<u8>, Vec<u8>, String, bool)> {
    let bad = |what: &str| io::Error::other(format!("the export's manifest.json: {what}"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(manifest).map_err(io::Error::other)?;
    let image = manifest.get_mut(0).ok_or_else(|| bad("no image in it"))?;
    let layers = image
        .get_mut("Layers")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| bad("no `Layers`"))?;
    if layers.last().and_then(serde_json::Value::as_str) != Some(top_name) {
        return Err(bad(&format!("its last layer is not `{top_name}`")));
    }
    let shared = layers
        .iter()
        .filter(|l| l.as_str() == Some(top_name))
        .count()
        > 1;
    *layers.last_mut().expect("checked above") = new_name.into();
    let config_name = image
        .get("Config")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("no `Config`"))?
        .to_string();
    let config = json
        .remove(&config_name)
        .ok_or_else(|| bad(&format!("no `{config_name}` in the export")))?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&config).map_err(io::Error::other)?;
    let diff_ids = config
        .pointer_mut("/rootfs/diff_ids")
        .and_then(serde_json::Value::as_array_mut)
        .filter(|ids| ids.last().and_then(serde_json::Value::as_str) == Some(top))
        .ok_or_else(|| io::Error::other(format!("the config's last layer is not {top}")))?;
    *diff_ids.last_mut().expect("checked above") = new_top.into();
    let config = serde_json::to_vec(&config).map_err(io::Error::other)?;
    let id = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
    image["Config"] = format!("{}.json", id.trim_start_matches("sha256:")).into();
    image["RepoTags"] = serde_json::Value::Array(Vec::new());
    let manifest = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    Ok((manifest, config, id, shared))
}

fn append_file(
    archive: &mut tar::Builder<&mut File>,
    name: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    archive.append_data(&mut header, name, data)
}

/// Copies the layer `from` into `to` without Podman's mount points (see [`placeholders`]),
/// every other entry byte for byte; what it left out (empty when nothing: `to` is then of no
/// use).
fn without_placeholders(from: &mut File, to: &mut File) -> io::Result<Vec<String>> {
    from.seek(SeekFrom::Start(0))?;
    let mut entries = Vec::new();
    for entry in tar::Archive::new(&mut *from).entries()? {
        let entry = entry?;
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Entry::Folder,
            k if k.is_file() && entry.size() == 0 => Entry::EmptyFile,
            tar::EntryType::Symlink => Entry::Link(
                entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default(),
            ),
            _ => Entry::Other,
        };
        entries.push((relative(&entry.path_bytes()), kind));
    }
    let gone = placeholders(&entries);
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    from.seek(SeekFrom::Start(0))?;
    let mut pending: Vec<(tar::Header, Vec<u8>)> = Vec::new();
    let mut out = io::BufWriter::new(&mut *to);
    for entry in tar::Archive::new(&mut *from).entries()?.raw(true) {
        let mut entry = entry?;
        let header = entry.header().clone();
        let mut data = Vec::new();
        let kind = header.entry_type();
        if kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
            entry.read_to_end(&mut data)?;
            pending.push((header, data));
            continue;
        }
        let name = long_name(&pending).unwrap_or_else(|| header.path_bytes().into_owned());
        let extensions = std::mem::take(&mut pending);
        if gone.contains(&relative(&name)) {
            continue;
        }
        for (h, d) in extensions {
            out.write_all(h.as_bytes())?;
            out.write_all(&d)?;
            tarfmt::pad(&mut out, d.len() as u64)?;
        }
        out.write_all(header.as_bytes())?;
        let size = io::copy(&mut entry, &mut out)?;
        tarfmt::pad(&mut out, size)?;
    }
    tarfmt::finish(&mut out)?;
    out.flush()?;
    Ok(gone.into_iter().collect())
}

/// The name that extension entries (a PAX `path`, a GNU long name) give the entry after them.
fn long_name(extensions: &[(tar::Header, Vec<u8>)]) -> Option<Vec<u8>> {
    extensions.iter().rev().find_map(|(header, data)| {
        if header.entry_type().is_gnu_longname() {
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            return Some(data[..end].to_vec());
        }
        pax_path(data)
    })
}

/// The `path` record of a PAX extended header (`LEN KEY=VALUE\n` records).
fn pax_path(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut path = None;
    while let Some(space) = data.iter().position(|&b| b == b' ') {
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        let record = data.get(space + 1..len)?;
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(value.strip_suffix(b"\n").unwrap_or(value).to_vec());
        }
        data = &data[len..];
    }
    path
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
        }
    }

    fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hash.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Layer = Vec<(String, Entry)>;

    fn layer(entries: &[(&str, Entry)]) -> Layer {
        entries
            .iter()
            .map(|(p, e)| ((*p).to_string(), e.clone()))
            .collect()
    }

    #[test]
    fn only_mount_points_as_podman_makes_them_go() {
        use Entry::{EmptyFile, Folder, Link, Other};
        let mtab = || Link("/proc/mounts".into());
        // (what the layer holds, what goes)
        let cases: Vec<(Layer, Vec<&str>)> = vec![
            // A base without any of them, a step that made `/made`.
            (
                layer(&[
                    ("dev", Folder),
                    ("etc", Folder),
                    ("etc/hostname", EmptyFile),
                    ("etc/hosts", EmptyFile),
                    ("etc/mtab", mtab()),
                    ("etc/resolv.conf", EmptyFile),
                    ("made", EmptyFile),
                    ("proc", Folder),
                    ("run", Folder),
                    ("run/.containerenv", EmptyFile),
                    ("run/podman-init", EmptyFile),
                    ("sys", Folder),
                ]),
                vec![
                    "dev",
                    "etc",
                    "etc/hostname",
                    "etc/hosts",
                    "etc/mtab",
                    "etc/resolv.conf",
                    "proc",
                    "run",
                    "run/.containerenv",
                    "run/podman-init",
                    "sys",
                ],
            ),
            // A copy of an `/etc/hosts` of the step's own: it and its folder stay.
            (
                layer(&[
                    ("etc", Folder),
                    ("etc/hosts", Other),
                    ("etc/mtab", mtab()),
                    ("run", Folder),
                    ("run/.containerenv", EmptyFile),
                ]),
                vec!["etc/mtab", "run", "run/.containerenv"],
            ),
            // What a step wrote under a mount point's folder keeps the folder.
            (
                layer(&[
                    ("run", Folder),
                    ("run/app", Folder),
                    ("run/app/pid", Other),
                    ("run/podman-init", EmptyFile),
                    ("etc", Folder),
                    ("etc/.wh.motd", EmptyFile),
                    ("etc/hosts", EmptyFile),
                ]),
                vec!["etc/hosts", "run/podman-init"],
            ),
            // An `/etc/mtab` of the image's own kind, and names that only look alike, stay.
            (
                layer(&[
                    ("etc", Folder),
                    ("etc/mtab", Link("../proc/self/mounts".into())),
                    ("devices", Folder),
                    ("usr", Folder),
                    ("usr/sbin", Folder),
                    ("usr/sbin/hosts", EmptyFile),
                    ("", Folder),
                ]),
                vec![],
            ),
        ];
        for (entries, gone) in cases {
            let got = placeholders(&entries);
            assert_eq!(
                got.iter().map(String::as_str).collect::<Vec<_>>(),
                gone,
                "{entries:?}"
            );
        }
    }

    #[test]
    fn names_are_taken_relative_to_the_root() {
        for (name, want) in [
            (&b"./etc/hosts"[..], "etc/hosts"),
            (b"/run/", "run"),
            (b"dev/", "dev"),
            (b"./", ""),
        ] {
            assert_eq!(relative(name), want);
        }
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                b.append_link(&mut h, name, std::str::from_utf8(data).unwrap())
                    .unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        tar::Archive::new(tar_bytes)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn an_export_is_rewritten_with_its_top_layer_alone_changed() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let base = tar_of(&[("bin/", Directory, b""), ("bin/sh", Regular, b"elf")]);
        let long = format!("data/{}/file", "x".repeat(120));
        let top = tar_of(&[
            ("dev/", Directory, b""),
            ("etc/", Directory, b""),
            ("etc/hosts", Regular, b"10.0.0.1 mine\n"),
            ("etc/mtab", Symlink, b"/proc/mounts"),
            ("made", Regular, b""),
            (&long, Regular, b"long"),
            ("run/", Directory, b""),
            ("run/.containerenv", Regular, b""),
        ]);
        let (base_id, top_id) = (digest(&base), digest(&top));
        let config = serde_json::json!({
            "architecture": "amd64",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [base_id, top_id]},
            "history": [{"created_by": "base"}, {"created_by": "step"}],
        });
        let config = serde_json::to_vec(&config).unwrap();
        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let manifest = serde_json::json!([{
            "Config": format!("{}.json", hex(&digest(&config))),
            "RepoTags": ["localhost/x:1"],
            "Layers": [format!("{}.tar", hex(&base_id)), format!("{}.tar", hex(&top_id))],
        }]);
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let export = tar_of(&[
            (&format!("{}.tar", hex(&base_id)), Regular, &base),
            (&format!("{}.tar", hex(&top_id)), Regular, &top),
            (&format!("{}.json", hex(&digest(&config))), Regular, &config),
            ("manifest.json", Regular, &manifest),
            ("repositories", Regular, b"{}"),
        ]);
        let mut out = tempfile::tempfile().unwrap();
        let rewritten = rewrite_export(&mut export.as_slice(), &top_id, &mut out)
            .unwrap()
            .expect("mount points to leave out");
        assert_eq!(
            rewritten.dropped,
            ["dev", "etc/mtab", "run", "run/.containerenv"]
        );
        out.seek(SeekFrom::Start(0)).unwrap();
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        for entry in tar::Archive::new(&mut out).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let config_name = manifest[0]["Config"].as_str().unwrap();
        let config = &files[config_name];
        assert_eq!(
            rewritten.id,
            digest(config),
            "the id is the config's digest"
        );
        let config: serde_json::Value = serde_json::from_slice(config).unwrap();
        let new_top = config["rootfs"]["diff_ids"][1].as_str().unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], base_id.as_str());
        assert_eq!(config["history"][1]["created_by"], "step");
        let layer = &files[manifest[0]["Layers"][1].as_str().unwrap()];
        assert_eq!(digest(layer), new_top);
        assert_eq!(
            names(layer),
            ["etc/", "etc/hosts", "made", long.as_str()],
            "the step's files stay, byte for byte"
        );
        assert_eq!(files[&format!("{}.tar", hex(&base_id))], base);
        assert!(!files.contains_key("repositories"));
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!([]));

        // A top layer with nothing of Podman's is left as it is.
        let clean = tar_of(&[("made", Regular, b"")]);
        let export = tar_of(&[(&format!("{}.tar", hex(&digest(&clean))), Regular, &clean)]);
        let mut out = tempfile::tempfile().unwrap();
        assert_eq!(
            rewrite_export(&mut export.as_slice(), &digest(&clean), &mut out).unwrap(),
            None
        );
        // An export without the layer asked for is an error, not an image without it.
        let mut out = tempfile::tempfile().unwrap();
        assert!(rewrite_export(&mut export.as_slice(), &top_id, &mut out).is_err());
    }
}
