//! Copy sources as tar archives, streamed to the engine in small chunks (never whole in
//! memory, so a 100 MB copy costs a few hundred kB).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::engine::Archive;
use crate::model::CopySpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { size: u64 },
    Symlink(PathBuf),
}

/// One file system entry under a copy source.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    pub path: PathBuf,
    /// Path relative to the source, byte for byte as on disk (empty when the source is a
    /// single file).
    pub rel: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: u64,
}

/// Lists a copy source in a fixed order: a file alone, or a directory's contents (not the
/// directory itself), parents before children, names sorted by their bytes.
pub fn walk(src: &Path) -> io::Result<Vec<WalkEntry>> {
    let meta = std::fs::symlink_metadata(src)?;
    let mut out = Vec::new();
    if meta.is_dir() {
        walk_dir(src, Path::new(""), &mut out)?;
    } else {
        out.push(entry(src.to_path_buf(), PathBuf::new(), &meta)?);
    }
    Ok(out)
}

fn walk_dir(dir: &Path, prefix: &Path, out: &mut Vec<WalkEntry>) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let rel = prefix.join(e.file_name());
        let meta = std::fs::symlink_metadata(e.path())?;
        out.push(entry(e.path(), rel.clone(), &meta)?);
        if meta.is_dir() {
            walk_dir(&e.path(), &rel, out)?;
        }
    }
    Ok(())
}

fn entry(path: PathBuf, rel: PathBuf, meta: &std::fs::Metadata) -> io::Result<WalkEntry> {
    use std::os::unix::fs::MetadataExt;
    let kind = if meta.file_type().is_symlink() {
        EntryKind::Symlink(std::fs::read_link(&path)?)
    } else if meta.is_dir() {
        EntryKind::Dir
    } else if meta.is_file() {
        EntryKind::File { size: meta.len() }
    } else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("`{}` is not a file, directory or symlink", path.display()),
        ));
    };
    Ok(WalkEntry {
        path,
        rel,
        kind,
        mode: meta.mode() & 0o7777,
        mtime: meta.mtime().max(0) as u64,
    })
}

/// Where the copied source goes in the image, relative to `/` (empty for `/` itself): `dest`,
/// or for a file and a `dest` ending in `/`, the file's name inside it.
pub fn target_path(c: &CopySpec, src_is_dir: bool) -> PathBuf {
    let dest: PathBuf = Path::new(c.dest.trim_start_matches('/'))
        .components()
        .collect();
    match c.src.file_name() {
        Some(name) if !src_is_dir && c.dest.ends_with('/') => dest.join(name),
        _ => dest,
    }
}

/// A writer that hands fixed-size chunks to the upload stream.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload was cancelled"))
    }
}

/// Streams the copy as a tar archive meant to be extracted at `/`.
pub fn stream(c: &CopySpec) -> Archive {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let spec = c.clone();
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let writer = ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = build(&spec, writer).and_then(|mut w| w.flush()) {
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Writes the copy as a tar archive meant to be extracted at `/`, names byte for byte.
fn build<W: Write>(c: &CopySpec, out: W) -> io::Result<W> {
    let src_is_dir = std::fs::metadata(&c.src)?.is_dir();
    let root = target_path(c, src_is_dir);
    let (uid, gid) = c.owner.unwrap_or((0, 0));
    let mut tar = tar::Builder::new(out);
    for e in walk(&c.src)? {
        let name = if e.rel.as_os_str().is_empty() {
            root.clone()
        } else {
            root.join(&e.rel)
        };
        let mut h = tar::Header::new_gnu();
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        h.set_mtime(e.mtime);
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(e.mode);
                h.set_size(0);
                tar.append_data(&mut h, &name, io::empty())?;
            }
            EntryKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, &name, target)?;
            }
            EntryKind::File { size } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(c.mode.unwrap_or(e.mode));
                h.set_size(*size);
                let f = std::fs::File::open(&e.path)?;
                tar.append_data(&mut h, &name, f.take(*size))?;
            }
        }
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::cache::tree_digest;

    /// A source folder `src` in a temp dir, holding `files` (relative path, content).
    fn source(files: &[(&[u8], &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        for (rel, content) in files {
            let path = src.join(OsStr::from_bytes(rel));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
        }
        (dir, src)
    }

    fn spec(src: &Path, dest: &str, owner: Option<(u32, u32)>) -> CopySpec {
        CopySpec {
            src: src.to_path_buf(),
            src_display: "src".into(),
            dest: dest.into(),
            mode: None,
            owner,
        }
    }

    #[test]
    fn names_are_byte_exact_in_the_archive_and_apart_in_the_digest() {
        let (_dir, src) = source(&[(b"a\xfe", b"A"), (b"a\xff", b"B")]);
        let bytes = build(&spec(&src, "/names", None), Vec::new()).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<(Vec<u8>, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                (e.path_bytes().into_owned(), content)
            })
            .collect();
        assert_eq!(
            names,
            [
                (b"names/a\xfe".to_vec(), b"A".to_vec()),
                (b"names/a\xff".to_vec(), b"B".to_vec())
            ]
        );
        // Either name alone, same content: the digests differ.
        let (_d1, one) = source(&[(b"a\xfe", b"A")]);
        let (_d2, other) = source(&[(b"a\xff", b"A")]);
        assert_ne!(
            tree_digest(&spec(&one, "/n", None)).unwrap(),
            tree_digest(&spec(&other, "/n", None)).unwrap()
        );
    }
}
