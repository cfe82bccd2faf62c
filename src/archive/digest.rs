//! The digest of a copy source (or a read-only mount), entry by entry: what goes into a step's
//! cache key and what its archive is checked against while it is written.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{walk, Content, EntryKind, WalkEntry};
use crate::model::{CopyFilter, CopySpec};

/// The digest of one entry of a copy source: its relative path (bytes, as on disk), type,
/// size or symlink target, permission bits and content. Variable-length parts are
/// length-prefixed, so no two different entries hash the same bytes. Modification times are
/// left out on purpose.
pub(crate) struct EntryHasher(Sha256);

impl EntryHasher {
    pub(crate) fn new(e: &WalkEntry) -> Self {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(e.rel.as_os_str().as_bytes());
        match &e.kind {
            EntryKind::Dir => field(b"d"),
            EntryKind::Symlink(target) => {
                field(b"l");
                field(target.as_os_str().as_bytes());
            }
            EntryKind::File { size } => {
                field(b"f");
                field(&size.to_le_bytes());
            }
        }
        field(&e.mode.to_le_bytes());
        Self(h)
    }

    /// Feeds file content, exactly the size given to [`EntryHasher::new`] in all.
    pub(crate) fn content(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// What the digest of a copy source was computed from: each entry's relative path and digest,
/// in walk order (see [`walk`]), and where each source goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeDigest {
    pub(crate) entries: Vec<(PathBuf, [u8; 32])>,
    /// Each source's target path: they count when there are several (one source's target is
    /// `dest`, already part of the key).
    pub(crate) targets: Vec<PathBuf>,
}

impl TreeDigest {
    /// The digest that goes into the cache key.
    pub(crate) fn hex(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pipeline-copy-v2");
        for (_, digest) in &self.entries {
            h.update(digest);
        }
        if self.targets.len() > 1 {
            for t in &self.targets {
                h.update((t.as_os_str().len() as u64).to_le_bytes());
                h.update(t.as_os_str().as_bytes());
            }
        }
        hex::encode(h.finalize())
    }
}

/// Digest of a copy's sources, entry by entry: what the archive of the copy must hold.
pub(crate) fn tree_digest(c: &CopySpec) -> std::io::Result<TreeDigest> {
    let mut all = TreeDigest {
        entries: Vec::new(),
        targets: Vec::new(),
    };
    for s in &c.sources {
        let one = digest_walk(&s.path, &s.filter)?;
        let is_dir = std::fs::symlink_metadata(&s.path)?.is_dir();
        all.targets.push(super::target_path(c, &s.path, is_dir));
        all.entries.extend(one.entries);
    }
    Ok(all)
}

/// Digest of a file or folder on the host, entry by entry.
pub(crate) fn tree_digest_of(src: &std::path::Path) -> std::io::Result<TreeDigest> {
    digest_walk(src, &CopyFilter::default())
}

fn digest_walk(src: &std::path::Path, filter: &CopyFilter) -> std::io::Result<TreeDigest> {
    let mut entries = Vec::new();
    for e in walk(src, filter)? {
        let digest = entry_digest(&e)?;
        entries.push((e.rel, digest));
    }
    Ok(TreeDigest {
        entries,
        targets: Vec::new(),
    })
}

/// Digest of one walked entry, reading a file's content from disk.
fn entry_digest(e: &WalkEntry) -> std::io::Result<[u8; 32]> {
    let mut h = EntryHasher::new(e);
    if let EntryKind::File { .. } = e.kind {
        let mut content = Content::open(e, &mut h)?;
        let mut buf = vec![0u8; 256 * 1024];
        while std::io::Read::read(&mut content, &mut buf)? > 0 {}
    }
    Ok(h.finish())
}
