//! `pipeline.lock`: the base images of the pipelines in one folder, and the images their copies
//! read from, pinned by digest. Pure: the format, its parsing and its rendering (stable bytes:
//! entries sorted, one layout).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock file's name, beside the pipeline files.
pub(crate) const FILE_NAME: &str = "pipeline.lock";
/// The format version this tool writes and reads.
pub(crate) const VERSION: u32 = 1;

const HEADER: &str =
    "# pipeline.lock: the base images of the pipelines beside it and the images they copy from,\n\
# pinned by digest.\n\
# Written by `pipeline lock` (`--update` moves entries); read by `plan` and `apply --locked`.\n\
# Commit it; do not edit it by hand.\n";

/// The whole lock file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockFile {
    /// The format version (1).
    pub(crate) version: u32,
    /// One entry per base reference the pipelines name, sorted by reference.
    #[serde(default, rename = "base", skip_serializing_if = "Vec::is_empty")]
    pub(crate) bases: Vec<LockedImage>,
    /// One entry per image reference copy steps read from (`copy = { from = ... }`, not a
    /// pipeline of the run), sorted by reference. A lock written before copies were locked
    /// has none.
    #[serde(default, rename = "copy", skip_serializing_if = "Vec::is_empty")]
    pub(crate) copies: Vec<LockedImage>,
}

/// What a lock entry pins: a base or a copy's source image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// A pipeline's `[base] image` (`[[base]]` in the lock).
    Base,
    /// An image a copy step reads from, `copy = { from = "REFERENCE", ... }` (`[[copy]]`).
    Copy,
}

impl Kind {
    /// How the lines of `lock` and `plan` name an entry of this kind.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Base => "base",
            Kind::Copy => "copy source",
        }
    }
}

/// A lock entry beside what its reference resolves to now (what `plan` reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub(crate) struct LockSeen {
    /// `base` or `copy`.
    pub(crate) kind: Kind,
    /// The reference as the files write it.
    pub(crate) reference: String,
    /// What the lock pins it to: the index digest, else the one image's manifest digest; for
    /// an entry read from the engine, the engine's image id.
    pub(crate) locked: String,
    /// The same digest as the registry (or the engine) gives it now; `null` when it was not
    /// asked (`plan --offline`) or could not tell.
    pub(crate) current: Option<String>,
    /// `current` differs from `locked`: `pipeline lock --update REFERENCE` records the new one.
    pub(crate) moved: bool,
}

/// Where a locked base was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Source {
    /// Its registry: the digests are the registry's.
    Registry,
    /// Only the engine holds it (no registry answers for it): `config` is the engine's image
    /// id, `manifest` its repo digest when it has one.
    Engine,
}

/// One base reference, as the pipeline files write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockedImage {
    /// The reference as the files name it, e.g. `debian:bookworm`.
    pub(crate) reference: String,
    pub(crate) source: Source,
    /// The digest of its index, when the reference names a multi-platform index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<String>,
    /// Its image per platform, sorted by platform.
    #[serde(default, rename = "platform")]
    pub(crate) platforms: Vec<LockedPlatform>,
}

/// One platform's image of a locked base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockedPlatform {
    /// `os/arch[/variant]`.
    pub(crate) platform: String,
    /// The platform's manifest digest (the digest the base is pulled by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) manifest: Option<String>,
    /// The config digest: the image id an engine gives the image.
    pub(crate) config: String,
}

impl LockedImage {
    /// The digest the reference resolves to as a whole: the index's, else the one image's
    /// manifest (what `plan` compares with the registry's current answer).
    pub(crate) fn top_digest(&self) -> Option<&str> {
        let one = match self.platforms.as_slice() {
            [one] => one.manifest.as_deref(),
            _ => None,
        };
        self.index.as_deref().or(one)
    }

    /// What the entry pins as a whole: for a registry entry its [`top_digest`](Self::top_digest),
    /// for an engine entry the image id (what `plan` compares with the current answer).
    pub(crate) fn pinned(&self) -> Option<&str> {
        match self.source {
            Source::Registry => self.top_digest(),
            Source::Engine => self.platforms.first().map(|p| p.config.as_str()),
        }
    }

    /// The image for `os`/`arch` (a variant left out on either side matches any).
    pub(crate) fn for_platform(&self, p: &crate::model::Platform) -> Option<&LockedPlatform> {
        self.platforms.iter().find(|l| {
            crate::model::Platform::parse(&l.platform)
                .is_ok_and(|l| p.matches(&l.os, &l.arch, l.variant.as_deref()))
        })
    }
}

impl LockFile {
    /// The entries of one kind.
    pub(crate) fn entries(&self, kind: Kind) -> &[LockedImage] {
        match kind {
            Kind::Base => &self.bases,
            Kind::Copy => &self.copies,
        }
    }

    /// The entry of `reference` of `kind`.
    pub(crate) fn entry(&self, kind: Kind, reference: &str) -> Option<&LockedImage> {
        self.entries(kind).iter().find(|b| b.reference == reference)
    }

    /// Parses a lock file's text; the error says what is wrong and where.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let lock: LockFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        if lock.version != VERSION {
            return Err(format!(
                "version {} is not one this tool reads (it reads version {VERSION}): run \
                 `pipeline lock --update` to rewrite it",
                lock.version
            ));
        }
        Ok(lock)
    }

    /// The file's text: a header comment, then the entries sorted (the same lock renders to
    /// the same bytes).
    pub(crate) fn render(&self) -> String {
        let mut sorted = self.clone();
        sorted.version = VERSION;
        for entries in [&mut sorted.bases, &mut sorted.copies] {
            entries.sort_by(|a, b| a.reference.cmp(&b.reference));
            entries.dedup_by(|a, b| a.reference == b.reference);
            for b in entries.iter_mut() {
                b.platforms.sort_by(|x, y| x.platform.cmp(&y.platform));
            }
        }
        let body = toml::to_string(&sorted).unwrap_or_default();
        format!("{HEADER}\n{body}")
    }
}

/// Where the lock of `files` lives: in the folder the files are in (a folder given is that
/// folder). Files from several folders have no one lock: an error says so.
pub(crate) fn path_for(files: &[PathBuf]) -> Result<PathBuf, String> {
    let folder = |f: &Path| -> PathBuf {
        if f.is_dir() {
            f.to_path_buf()
        } else {
            match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        }
    };
    let mut folders: Vec<PathBuf> = files.iter().map(|f| folder(f)).collect();
    folders.sort();
    folders.dedup_by(|a, b| std::fs::canonicalize(&*a).ok() == std::fs::canonicalize(&*b).ok());
    match folders.as_slice() {
        [one] => Ok(one.join(FILE_NAME)),
        _ => Err(format!(
            "the pipeline files are in {} folders ({}): a lock file belongs to one folder; lock \
             each folder on its own",
            folders.len(),
            folders
                .iter()
                .map(|f| format!("`{}`", f.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Reads the lock at `path`: `None` when there is none.
pub(crate) fn read(path: &Path) -> Result<Option<LockFile>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => LockFile::parse(&text)
            .map(Some)
            .map_err(|e| format!("`{}`: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LockFile {
        LockFile {
            version: VERSION,
            bases: vec![
                LockedImage {
                    reference: "registry.example/z:1".into(),
                    source: Source::Registry,
                    index: Some("sha256:aa".into()),
                    platforms: vec![
                        LockedPlatform {
                            platform: "linux/arm64".into(),
                            manifest: Some("sha256:m2".into()),
                            config: "sha256:c2".into(),
                        },
                        LockedPlatform {
                            platform: "linux/amd64".into(),
                            manifest: Some("sha256:m1".into()),
                            config: "sha256:c1".into(),
                        },
                    ],
                },
                LockedImage {
                    reference: "busybox:latest".into(),
                    source: Source::Engine,
                    index: None,
                    platforms: vec![LockedPlatform {
                        platform: "linux/amd64".into(),
                        manifest: None,
                        config: "sha256:id".into(),
                    }],
                },
            ],
            copies: vec![LockedImage {
                reference: "registry.example/tools:2".into(),
                source: Source::Registry,
                index: None,
                platforms: vec![LockedPlatform {
                    platform: "linux/amd64".into(),
                    manifest: Some("sha256:m3".into()),
                    config: "sha256:c3".into(),
                }],
            }],
        }
    }

    #[test]
    fn renders_sorted_with_a_header_and_reads_back_the_same() {
        let text = sample().render();
        insta::assert_snapshot!(text, @r#"
        # pipeline.lock: the base images of the pipelines beside it and the images they copy from,
        # pinned by digest.
        # Written by `pipeline lock` (`--update` moves entries); read by `plan` and `apply --locked`.
        # Commit it; do not edit it by hand.

        version = 1

        [[base]]
        reference = "busybox:latest"
        source = "engine"

        [[base.platform]]
        platform = "linux/amd64"
        config = "sha256:id"

        [[base]]
        reference = "registry.example/z:1"
        source = "registry"
        index = "sha256:aa"

        [[base.platform]]
        platform = "linux/amd64"
        manifest = "sha256:m1"
        config = "sha256:c1"

        [[base.platform]]
        platform = "linux/arm64"
        manifest = "sha256:m2"
        config = "sha256:c2"

        [[copy]]
        reference = "registry.example/tools:2"
        source = "registry"

        [[copy.platform]]
        platform = "linux/amd64"
        manifest = "sha256:m3"
        config = "sha256:c3"
        "#);
        let back = LockFile::parse(&text).unwrap();
        assert_eq!(
            back.render(),
            text,
            "a second render is byte for byte the same"
        );
    }

    #[test]
    fn the_top_digest_is_the_index_else_the_one_manifest() {
        let lock = sample();
        let top = |r: &str| lock.entry(Kind::Base, r).and_then(LockedImage::top_digest);
        assert_eq!(top("registry.example/z:1"), Some("sha256:aa"));
        assert_eq!(top("busybox:latest"), None);
        let amd64 = crate::model::Platform::parse("linux/amd64").unwrap();
        let z = lock.entry(Kind::Base, "registry.example/z:1").unwrap();
        assert_eq!(z.for_platform(&amd64).unwrap().config, "sha256:c1");
        let s390x = crate::model::Platform::parse("linux/s390x").unwrap();
        assert!(z.for_platform(&s390x).is_none());
        let tools = lock.entry(Kind::Copy, "registry.example/tools:2").unwrap();
        assert_eq!(tools.pinned(), Some("sha256:m3"));
        assert!(lock.entry(Kind::Base, "registry.example/tools:2").is_none());
        let engine = lock.entry(Kind::Base, "busybox:latest").unwrap();
        assert_eq!(
            engine.pinned(),
            Some("sha256:id"),
            "an engine entry pins its id"
        );
    }

    #[test]
    fn a_lock_written_before_copies_were_locked_reads_with_no_copy_entries() {
        let old =
            "version = 1\n\n[[base]]\nreference = \"busybox:latest\"\nsource = \"engine\"\n\n\
                   [[base.platform]]\nplatform = \"linux/amd64\"\nconfig = \"sha256:id\"\n";
        let lock = LockFile::parse(old).unwrap();
        assert_eq!(lock.bases.len(), 1);
        assert!(lock.copies.is_empty());
        assert!(lock.entry(Kind::Copy, "busybox:latest").is_none());
    }

    #[test]
    fn bad_lock_files_are_refused_with_why() {
        let cases = [
            ("version = 2\n", "version 2 is not one this tool reads"),
            ("version = 1\nextra = 3\n", "unknown field `extra`"),
            (
                "version = 1\n[[base]]\nreference = \"a\"\nsource = \"ftp\"\n",
                "unknown variant `ftp`",
            ),
            ("version = \n", "string values must be quoted"),
        ];
        for (text, wants) in cases {
            let err = LockFile::parse(text).unwrap_err();
            assert!(err.contains(wants), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_committed_lock_schema_is_current() {
        let schema = schemars::schema_for!(LockFile);
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/lock.schema.json");
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == text,
            "schemas/lock.schema.json is stale: rerun this test with UPDATE_SCHEMAS=1"
        );
    }

    #[test]
    fn the_lock_belongs_to_the_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        assert_eq!(
            path_for(&[a.clone(), b]).unwrap(),
            dir.path().join(FILE_NAME)
        );
        assert_eq!(
            path_for(&[dir.path().to_path_buf()]).unwrap(),
            dir.path().join(FILE_NAME)
        );
        assert_eq!(
            path_for(&[PathBuf::from("x.toml")]).unwrap(),
            PathBuf::from(".").join(FILE_NAME)
        );
        let other = dir.path().join("sub").join("c.toml");
        let err = path_for(&[a, other]).unwrap_err();
        assert!(err.contains("2 folders"), "{err}");
        assert!(read(&dir.path().join(FILE_NAME)).unwrap().is_none());
    }
}
