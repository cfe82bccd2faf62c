//! Copy sources as tar archives, streamed to the engine in small chunks (never whole in
//! memory, so a 100 MB copy costs a few hundred kB).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::engine::Archive;
use crate::model::CopySpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File { size: u64 },
    Symlink(String),
}

/// One file system entry under a copy source.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    pub path: PathBuf,
    /// Path relative to the source (`""` when the source is a single file).
    pub rel: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: u64,
}

/// Lists a copy source in a fixed order: a file alone, or a directory's contents (not the
/// directory itself), parents before children, names sorted.
pub fn walk(src: &Path) -> io::Result<Vec<WalkEntry>> {
    let meta = std::fs::symlink_metadata(src)?;
    let mut out = Vec::new();
    if meta.is_dir() {
        walk_dir(src, "", &mut out)?;
    } else {
        out.push(entry(src.to_path_buf(), String::new(), &meta)?);
    }
    Ok(out)
}

fn walk_dir(dir: &Path, prefix: &str, out: &mut Vec<WalkEntry>) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(e.path())?;
        out.push(entry(e.path(), rel.clone(), &meta)?);
        if meta.is_dir() {
            walk_dir(&e.path(), &rel, out)?;
        }
    }
    Ok(())
}

fn entry(path: PathBuf, rel: String, meta: &std::fs::Metadata) -> io::Result<WalkEntry> {
    use std::os::unix::fs::MetadataExt;
    let kind = if meta.file_type().is_symlink() {
        EntryKind::Symlink(std::fs::read_link(&path)?.to_string_lossy().into_owned())
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

/// The path of the copied source in the image, without the leading `/`.
pub fn target_path(c: &CopySpec, src_is_dir: bool) -> String {
    let dest = c.dest.trim_start_matches('/');
    if !src_is_dir && c.dest.ends_with('/') {
        let base = c
            .src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{dest}{base}")
    } else {
        dest.trim_end_matches('/').to_string()
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
        if let Err(e) = build(
            &spec,
            ChunkWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            },
        ) {
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn build(c: &CopySpec, writer: ChunkWriter) -> io::Result<()> {
    let src_is_dir = std::fs::metadata(&c.src)?.is_dir();
    let root = target_path(c, src_is_dir);
    let (uid, gid) = c.owner.unwrap_or((0, 0));
    let mut tar = tar::Builder::new(writer);
    for e in walk(&c.src)? {
        // Relative names: for `dest = "/"` the root is empty.
        let name = match (root.is_empty(), e.rel.is_empty()) {
            (_, true) => root.clone(),
            (true, false) => e.rel.clone(),
            (false, false) => format!("{root}/{}", e.rel),
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
    let mut writer = tar.into_inner()?;
    writer.flush()
}

use std::io::Read as _;
