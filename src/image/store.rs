//! A local content-addressed store of blobs (`<root>/sha256/<hex>`), shared by every run of
//! the user: a layer is compressed once, whatever reads it later (pushes, outputs, the remote
//! cache). Writes go to a temporary file in the store and are renamed into place once their
//! digest is known, so a reader never sees a partial blob and concurrent writers of the same
//! content agree.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Descriptor;

/// A folder of blobs named by their sha256 digest.
#[derive(Debug, Clone)]
pub(crate) struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// The user's store: `$XDG_CACHE_HOME/pipeline/blobs`, else `~/.cache/pipeline/blobs`.
    pub(crate) fn user() -> Option<Self> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(Self::at(base.join("pipeline").join("blobs")))
    }

    /// A store in `root` (created when first written).
    pub(crate) fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of `digest` (which may not exist); `None` for a digest that is not sha256.
    pub(crate) fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| self.root.join("sha256").join(hex))
    }

    /// A folder for temporary files next to the blobs (same file system: a finished file can
    /// be renamed into place).
    pub(crate) fn scratch(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The folder of the store.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A small record kept beside the blobs under `kind` and `key` (what a cache key's layer
    /// is, say), or `None` when there is none. Reading a record marks it used (its file's
    /// modification time): the collector keeps what was used lately, and a blob a run has
    /// just found through a record is never taken from under it.
    pub(crate) fn record(&self, kind: &str, key: &str) -> Option<Vec<u8>> {
        let mut file = File::open(self.record_path(kind, key)).ok()?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        // Best effort: a store on a read-only file system is still read.
        let _ = file.set_modified(std::time::SystemTime::now());
        Some(bytes)
    }

    /// Writes a record atomically (a reader sees the old one or the new one).
    pub(crate) fn put_record(&self, kind: &str, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.record_path(kind, key);
        let dir = path.parent().expect("a record has a folder");
        std::fs::create_dir_all(dir)?;
        let (tmp, mut file) = tempfile_in(dir)?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        drop(file);
        match written.and_then(|()| std::fs::rename(&tmp, &path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Records are named by a digest of their key: any key is a safe file name.
    fn record_path(&self, kind: &str, key: &str) -> PathBuf {
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        self.root.join("records").join(kind).join(name)
    }

    /// Whether the store holds `digest`.
    pub(crate) fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_some_and(|p| p.is_file())
    }

    /// Opens the blob `digest` for reading.
    pub(crate) fn open(&self, digest: &str) -> io::Result<File> {
        let path = self.path(digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a sha256 digest: `{digest}`"),
            )
        })?;
        File::open(path)
    }

    /// Stores `bytes` as a blob of `media_type`.
    pub(crate) fn put(&self, media_type: &str, bytes: &[u8]) -> io::Result<Descriptor> {
        let mut w = self.writer()?;
        w.write_all(bytes)?;
        w.commit(media_type)
    }

    /// A writer of one blob: hashes what it is given and moves it into place on `commit`.
    pub(crate) fn writer(&self) -> io::Result<BlobWriter> {
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)?;
        let tmp = tempfile_in(&dir)?;
        Ok(BlobWriter {
            dir,
            file: Some(tmp.1),
            tmp: tmp.0,
            hash: Sha256::new(),
            size: 0,
        })
    }
}

/// A blob being written; dropped without `commit`, it leaves nothing behind.
#[derive(Debug)]
pub(crate) struct BlobWriter {
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    hash: Sha256,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob already committed"))?;
        let n = file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Syncs the blob and moves it into place under its digest.
    pub(crate) fn commit(mut self, media_type: &str) -> io::Result<Descriptor> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("blob already committed"))?;
        file.sync_all()?;
        drop(file);
        let digest = format!("sha256:{}", hex::encode(self.hash.clone().finalize()));
        let target = self.dir.join(&digest["sha256:".len()..]);
        std::fs::rename(&self.tmp, &target)?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: self.size,
            platform: None,
            annotations: Default::default(),
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A new empty file in `dir` with a name no other writer uses.
pub(crate) fn tempfile_in(dir: &Path) -> io::Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            // Another writer has the name: take the next.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_stored_under_its_digest_and_a_dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        assert_eq!(store.record("layers", "k/../x"), None);
        store.put_record("layers", "k/../x", b"one").unwrap();
        store.put_record("layers", "k/../x", b"two").unwrap();
        assert_eq!(
            store.record("layers", "k/../x").as_deref(),
            Some(&b"two"[..])
        );
        let d = store.put("text/plain", b"hello").unwrap();
        assert_eq!(
            d.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(d.size, 5);
        assert!(store.contains(&d.digest));
        assert_eq!(
            std::fs::read(store.path(&d.digest).unwrap()).unwrap(),
            b"hello"
        );
        let mut w = store.writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "only the committed blob is left");
        assert!(store.path("md5:abc").is_none());
        assert!(store.path("sha256:../../etc/passwd").is_none());
    }
}
