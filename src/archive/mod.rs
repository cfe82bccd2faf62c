//! Copy sources as tar archives, streamed to the engine in small chunks (never whole in
//! memory, so a 100 MB copy costs a few hundred kB).
//!
//! An archive holds exactly the bytes its step's cache key was computed from: every entry is
//! hashed again as it is written (the same way [`tree_digest`] does) and compared
//! with what the key saw. A file is read for exactly the size in its tar header, from the very
//! file the walk saw. Any difference ends the archive with an error instead of the
//! end-of-archive marker, so the engine never takes other content for the copy.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::model::{CopyFilter, CopySource, CopySpec};

mod digest;
pub(crate) mod from;

pub(crate) use digest::{tree_digest, tree_digest_of, EntryHasher, TreeDigest};

/// A tar archive streamed to the engine.
pub(crate) type Archive =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File { size: u64 },
    Symlink(PathBuf),
}

/// One file system entry of a copy source.
#[derive(Debug, Clone)]
pub(crate) struct WalkEntry {
    pub(crate) path: PathBuf,
    /// Path relative to the source, byte for byte as on disk; empty for the source itself.
    pub(crate) rel: PathBuf,
    pub(crate) kind: EntryKind,
    pub(crate) mode: u32,
    pub(crate) mtime: u64,
    /// Device and inode: a file is read only while it is still the one the walk saw.
    pub(crate) inode: (u64, u64),
}

/// Lists a copy source in a fixed order: the source itself, then for a directory its
/// contents, parents before children, names sorted by their bytes; without what `filter`
/// excludes (a folder it excludes is walked only when an exception may keep something below
/// it, and listed only when something is kept).
pub(crate) fn walk(src: &Path, filter: &CopyFilter) -> io::Result<Vec<WalkEntry>> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| at(src, e))?;
    let mut out = vec![entry(src.to_path_buf(), PathBuf::new(), &meta)?];
    if meta.is_dir() {
        walk_dir(src, Path::new(""), filter, &mut out)?;
    }
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    prefix: &Path,
    filter: &CopyFilter,
    out: &mut Vec<WalkEntry>,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .map_err(|e| at(dir, e))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let path = e.path();
        let rel = prefix.join(e.file_name());
        let excluded = filter.excludes(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|err| at(&path, err))?;
        if excluded && !(meta.is_dir() && filter.has_exceptions()) {
            continue;
        }
        let listed = out.len();
        out.push(entry(path.clone(), rel.clone(), &meta)?);
        if meta.is_dir() {
            walk_dir(&path, &rel, filter, out)?;
        }
        if excluded && out.len() == listed + 1 {
            out.pop();
        }
    }
    Ok(())
}

fn entry(path: PathBuf, rel: PathBuf, meta: &std::fs::Metadata) -> io::Result<WalkEntry> {
    let kind = if meta.file_type().is_symlink() {
        EntryKind::Symlink(std::fs::read_link(&path).map_err(|e| at(&path, e))?)
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
        mtime: u64::try_from(meta.mtime()).unwrap_or(0),
        inode: (meta.dev(), meta.ino()),
    })
}

/// An I/O error that names the file.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("`{}`: {e}", path.display()))
}

/// The error for a source that is no longer what the step's cache key was computed from.
fn changed(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "`{}` {what} after the step's cache key was computed",
            path.display()
        ),
    )
}

/// The content of a walked file: exactly the size the walk saw, hashed on the way. A file that
/// has shrunk since is an error; bytes it has gained are left out (and the digest tells).
pub(crate) struct Content<'a> {
    file: File,
    left: u64,
    path: &'a Path,
    hasher: &'a mut EntryHasher,
}

impl<'a> Content<'a> {
    /// Opens the file the walk saw, and nothing else: not a symlink or a fifo put in its
    /// place, not another file moved there since.
    pub(crate) fn open(e: &'a WalkEntry, hasher: &'a mut EntryHasher) -> io::Result<Self> {
        let EntryKind::File { size } = e.kind else {
            return Err(changed(&e.path, "is not a file"));
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&e.path)
            .map_err(|err| match (err.kind(), err.raw_os_error()) {
                (io::ErrorKind::NotFound, _) => changed(&e.path, "vanished"),
                (_, Some(libc::ELOOP)) => changed(&e.path, "was replaced"),
                _ => at(&e.path, err),
            })?;
        let meta = file.metadata().map_err(|err| at(&e.path, err))?;
        if !meta.is_file() || (meta.dev(), meta.ino()) != e.inode {
            return Err(changed(&e.path, "was replaced"));
        }
        Ok(Self {
            file,
            left: size,
            path: &e.path,
            hasher,
        })
    }
}

impl Read for Content<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self
            .file
            .read(&mut buf[..want])
            .map_err(|e| at(self.path, e))?;
        if n == 0 {
            return Err(changed(self.path, "shrank"));
        }
        self.left -= n as u64;
        self.hasher.content(&buf[..n]);
        Ok(n)
    }
}

/// Where a copied source goes in the image, relative to `/` (empty for `/` itself): `dest`,
/// or for a file and a `dest` ending in `/`, the file's name inside it.
pub(crate) fn target_path(c: &CopySpec, src: &Path, src_is_dir: bool) -> PathBuf {
    let dest: PathBuf = Path::new(c.dest.trim_start_matches('/'))
        .components()
        .collect();
    match src.file_name() {
        Some(name) if !src_is_dir && c.dest.ends_with('/') => dest.join(name),
        _ => dest,
    }
}

/// Writes the copy as a tar archive meant to be extracted at `/`, checked entry by entry
/// against `expected` (what the step's cache key was computed from). With `create_dest`, a
/// directory copy also holds an entry for `dest` itself, with the source folder's mode and the
/// owner, like the folder `COPY --chown` creates. On any error `out` is dropped without an
/// end-of-archive marker.
pub(crate) fn write<W: Write>(
    c: &CopySpec,
    expected: &TreeDigest,
    create_dest: bool,
    out: W,
) -> io::Result<W> {
    let mut tar = tar::Builder::new(Gate(Some(out)));
    match append_all(&mut tar, c, expected, create_dest) {
        Ok(()) => {
            let mut gate = tar.into_inner()?;
            Ok(gate.0.take().expect("the gate is open"))
        }
        Err(e) => {
            // Shut before the builder's drop writes its end-of-archive marker.
            tar.get_mut().0 = None;
            Err(e)
        }
    }
}

fn append_all<W: Write>(
    tar: &mut tar::Builder<W>,
    c: &CopySpec,
    expected: &TreeDigest,
    create_dest: bool,
) -> io::Result<()> {
    let mut next = 0;
    for s in &c.sources {
        append_source(tar, c, s, expected, &mut next, create_dest)?;
    }
    match (expected.entries.get(next), c.sources.last()) {
        (Some((rel, _)), Some(last)) => Err(changed(&last.path.join(rel), "vanished")),
        _ => Ok(()),
    }
}

/// Appends one source, its entries checked against `expected` from index `next` on.
fn append_source<W: Write>(
    tar: &mut tar::Builder<W>,
    c: &CopySpec,
    s: &CopySource,
    expected: &TreeDigest,
    next: &mut usize,
    create_dest: bool,
) -> io::Result<()> {
    let entries = walk(&s.path, &s.filter)?;
    let src_is_dir = entries[0].kind == EntryKind::Dir;
    let target = target_path(c, &s.path, src_is_dir);
    let (uid, gid) = c.owner.unwrap_or((0, 0));
    for e in &entries {
        let i = *next;
        *next += 1;
        let is_root = e.rel.as_os_str().is_empty();
        let name = if is_root {
            target.clone()
        } else {
            target.join(&e.rel)
        };
        let mut h = tar::Header::new_gnu();
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_mtime(e.mtime);
        h.set_size(0);
        let mut hasher = EntryHasher::new(e);
        match &e.kind {
            EntryKind::Dir => {
                check(expected, i, e, &s.path, hasher.finish())?;
                // The source folder itself is `dest`: written only when the copy creates it.
                if !is_root || (create_dest && !name.as_os_str().is_empty()) {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(e.mode);
                    tar.append_data(&mut h, &name, io::empty())?;
                }
            }
            EntryKind::Symlink(link) => {
                check(expected, i, e, &s.path, hasher.finish())?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                tar.append_link(&mut h, &name, link)?;
            }
            EntryKind::File { size } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(c.mode.unwrap_or(e.mode));
                h.set_size(*size);
                tar.append_data(&mut h, &name, Content::open(e, &mut hasher)?)?;
                check(expected, i, e, &s.path, hasher.finish())?;
            }
        }
    }
    Ok(())
}

/// Compares the `i`th entry of the archive with the `i`th entry the key saw.
fn check(
    expected: &TreeDigest,
    i: usize,
    e: &WalkEntry,
    src: &Path,
    digest: [u8; 32],
) -> io::Result<()> {
    match expected.entries.get(i) {
        Some((rel, d)) if *rel == e.rel && *d == digest => Ok(()),
        Some((rel, _)) if *rel == e.rel => Err(changed(&e.path, "changed")),
        Some((rel, _)) if std::fs::symlink_metadata(src.join(rel)).is_err() => {
            Err(changed(&src.join(rel), "vanished"))
        }
        _ => Err(changed(&e.path, "appeared")),
    }
}

/// A writer that can be shut, so that a failed archive gets no end-of-archive marker (the tar
/// builder writes one when it is dropped).
struct Gate<W>(Option<W>);

impl<W: Write> Write for Gate<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(w) => w.write(data),
            None => Err(io::Error::other("the archive was abandoned")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// A writer that hands fixed-size chunks to the upload stream.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

/// The upload stopped reading the archive (the engine's error says why).
#[derive(Debug, thiserror::Error)]
#[error("the upload was cancelled")]
struct Cancelled;

/// True when the archive ended because the upload stopped reading it.
fn is_cancelled(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}

impl ChunkWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }
}

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
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, Cancelled))
    }
}

/// Why an archive ended early because of its source (not because the upload stopped reading
/// it), once it has. Set before the archive yields its error item, so that whoever sees the
/// upload fail can tell a source problem from an engine one without waiting for the writer.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceError(Arc<Mutex<Option<io::Error>>>);

impl SourceError {
    pub(crate) fn take(&self) -> Option<io::Error> {
        self.0.lock().map(|mut e| e.take()).unwrap_or(None)
    }

    fn set(&self, e: io::Error) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(e);
        }
    }
}

/// Streams the copy as a tar archive meant to be extracted at `/` (see [`write`]). When the
/// source does not match `expected`, the archive ends with an error item instead of its end
/// marker, which fails the upload, and the [`SourceError`] says why.
pub(crate) fn stream(
    c: &CopySpec,
    expected: Arc<TreeDigest>,
    create_dest: bool,
) -> (Archive, SourceError) {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let spec = c.clone();
    let failure = SourceError::default();
    let slot = failure.clone();
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let written =
            write(&spec, &expected, create_dest, ChunkWriter::new(tx)).and_then(|mut w| w.flush());
        end(written, &err_tx, &slot);
    });
    (received(rx), failure)
}

/// Ends an archive written into a [`ChunkWriter`] (on the blocking pool): a failure other
/// than the upload's stopping ends it with an error item, and `slot` keeps it.
fn end(written: io::Result<()>, tx: &mpsc::Sender<io::Result<Bytes>>, slot: &SourceError) {
    if let Err(e) = written {
        if !is_cancelled(&e) {
            let item = io::Error::new(e.kind(), e.to_string());
            slot.set(e);
            let _ = tx.blocking_send(Err(item));
        }
    }
}

/// The archive whose chunks a [`ChunkWriter`] sends to `rx`.
fn received(rx: mpsc::Receiver<io::Result<Bytes>>) -> Archive {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

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
            sources: vec![CopySource {
                path: src.to_path_buf(),
                filter: CopyFilter::default(),
            }],
            src_display: "src".into(),
            dest: dest.into(),
            mode: None,
            owner,
            owner_name: None,
            from: None,
        }
    }

    /// Writes the archive into a buffer; returns it, and the error if there was one.
    fn archive(
        c: &CopySpec,
        expected: &TreeDigest,
        create_dest: bool,
    ) -> (Vec<u8>, Option<String>) {
        let mut buf = Vec::new();
        let err = write(c, expected, create_dest, &mut buf).err();
        (buf, err.map(|e| e.to_string()))
    }

    /// One entry of a written archive.
    struct Entry {
        name: Vec<u8>,
        dir: bool,
        uid: u64,
        mode: u32,
        content: Vec<u8>,
    }

    fn entries(tar_bytes: &[u8]) -> Vec<Entry> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                let h = e.header();
                Entry {
                    name: e.path_bytes().into_owned(),
                    dir: h.entry_type().is_dir(),
                    uid: h.uid().unwrap(),
                    mode: h.mode().unwrap(),
                    content,
                }
            })
            .collect()
    }

    fn ends_archive(bytes: &[u8]) -> bool {
        bytes.len() >= 1024 && bytes[bytes.len() - 1024..].iter().all(|b| *b == 0)
    }

    #[test]
    fn names_are_byte_exact_in_the_archive_and_apart_in_the_digest() {
        let (_dir, src) = source(&[(b"a\xfe", b"A"), (b"a\xff", b"B")]);
        let c = spec(&src, "/names", None);
        let digest = tree_digest(&c).unwrap();
        let (bytes, err) = archive(&c, &digest, false);
        assert_eq!(err, None);
        assert!(ends_archive(&bytes));
        let names: Vec<(Vec<u8>, Vec<u8>)> = entries(&bytes)
            .into_iter()
            .map(|e| (e.name, e.content))
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
            tree_digest(&spec(&one, "/n", None)).unwrap().hex(),
            tree_digest(&spec(&other, "/n", None)).unwrap().hex()
        );
    }

    #[test]
    fn the_walk_leaves_out_what_the_filter_excludes_and_keeps_folders_exceptions_reach() {
        let (_dir, src) = source(&[
            (b"a.txt", b"a"),
            (b"notes.md", b"m"),
            (b"build/junk.o", b"o"),
            (b"build/keep.txt", b"k"),
            (b"logs/x.log", b"l"),
        ]);
        let patterns = |p: &[&str]| Some(Arc::new(crate::model::ignore::Patterns::new(p).unwrap()));
        let filter = CopyFilter {
            ignore: patterns(&["src/build", "!src/build/keep.txt", "**/*.log"]),
            base: "src".into(),
            exclude: patterns(&["*.md"]),
        };
        let rels: Vec<String> = walk(&src, &filter)
            .unwrap()
            .into_iter()
            .map(|e| e.rel.display().to_string())
            .collect();
        // `logs` itself is not excluded, only the files in it.
        assert_eq!(rels, ["", "a.txt", "build", "build/keep.txt", "logs"]);
        // The key sees only what the archive holds.
        let mut c = spec(&src, "/n", None);
        let all = tree_digest(&c).unwrap();
        c.sources[0].filter = filter;
        let kept = tree_digest(&c).unwrap();
        assert_eq!(kept.entries.len(), 5);
        assert_ne!(all.hex(), kept.hex());
        std::fs::write(src.join("notes.md"), "changed").unwrap();
        assert_eq!(tree_digest(&c).unwrap().hex(), kept.hex());
    }

    #[test]
    fn a_file_changed_after_the_digest_fails_the_archive_before_its_end() {
        for (change, what) in [
            (b"tampered\n".as_slice(), "changed"), // same size
            (b"short\n".as_slice(), "changed"),
            (b"much longer than before\n".as_slice(), "changed"),
        ] {
            let (_dir, src) = source(&[(b"a.conf", b"original\n"), (b"b.conf", b"other\n")]);
            let c = spec(&src, "/etc/app", None);
            let digest = tree_digest(&c).unwrap();
            std::fs::write(src.join("a.conf"), change).unwrap();
            let (bytes, err) = archive(&c, &digest, false);
            let err = err.expect("the archive must fail");
            assert!(err.contains("a.conf") && err.contains(what), "{err}");
            assert!(
                !ends_archive(&bytes),
                "a failed archive must not end cleanly"
            );
            assert!(
                !bytes.windows(6).any(|w| w == b"b.conf"),
                "nothing after the changed file is written"
            );
        }
    }

    #[test]
    fn vanished_appeared_and_retyped_entries_are_named() {
        type Change = fn(&Path);
        let cases: [(&str, Change, &str); 4] = [
            (
                "b.conf",
                |s| std::fs::remove_file(s.join("b.conf")).unwrap(),
                "vanished",
            ),
            (
                "c.conf",
                |s| std::fs::write(s.join("c.conf"), "new").unwrap(),
                "appeared",
            ),
            (
                "a.conf",
                |s| {
                    std::fs::remove_file(s.join("a.conf")).unwrap();
                    std::fs::create_dir(s.join("a.conf")).unwrap();
                },
                "changed",
            ),
            (
                "a.conf",
                |s| {
                    std::fs::set_permissions(
                        s.join("a.conf"),
                        std::fs::Permissions::from_mode(0o600),
                    )
                    .unwrap()
                },
                "changed",
            ),
        ];
        for (file, change, what) in cases {
            let (_dir, src) = source(&[(b"a.conf", b"a"), (b"b.conf", b"b")]);
            std::fs::set_permissions(src.join("a.conf"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let c = spec(&src, "/etc/app", None);
            let digest = tree_digest(&c).unwrap();
            change(&src);
            let (_, err) = archive(&c, &digest, false);
            let err = err.unwrap_or_else(|| panic!("{file} {what}: the archive must fail"));
            assert!(
                err.contains(file) && err.contains(what),
                "{file} {what}: {err}"
            );
        }
    }

    #[test]
    fn a_file_is_read_for_exactly_its_walked_size_and_a_shrunk_one_is_an_error() {
        let (_dir, src) = source(&[(b"f", b"0123456789")]);
        let walked = walk(&src.join("f"), &CopyFilter::default())
            .unwrap()
            .remove(0);
        let mut hasher = EntryHasher::new(&walked);
        // A shrunk file would leave the tar stream misaligned: the next file's bytes would be
        // read as headers. It is an error instead.
        std::fs::write(src.join("f"), b"0123").unwrap();
        let mut out = Vec::new();
        let err = Content::open(&walked, &mut hasher)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
        // Bytes a file gained after the walk are left out: the header's size is what is sent.
        std::fs::write(src.join("f"), b"0123456789ABCDEF").unwrap();
        let mut hasher = EntryHasher::new(&walked);
        let mut out = Vec::new();
        Content::open(&walked, &mut hasher)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn a_file_replaced_after_the_walk_is_not_read() {
        let (_dir, src) = source(&[(b"f", b"mine"), (b"secret", b"not yours")]);
        let walked = walk(&src.join("f"), &CopyFilter::default())
            .unwrap()
            .remove(0);
        // By a symlink to another file, then by another file moved into its place.
        std::fs::remove_file(src.join("f")).unwrap();
        std::os::unix::fs::symlink(src.join("secret"), src.join("f")).unwrap();
        let mut hasher = EntryHasher::new(&walked);
        let err = Content::open(&walked, &mut hasher).err().unwrap();
        assert!(err.to_string().contains("was replaced"), "{err}");
        std::fs::remove_file(src.join("f")).unwrap();
        std::fs::rename(src.join("secret"), src.join("f")).unwrap();
        let err = Content::open(&walked, &mut hasher).err().unwrap();
        assert!(err.to_string().contains("was replaced"), "{err}");
    }

    #[test]
    fn a_folder_copy_holds_dest_with_the_owner_only_when_it_creates_it() {
        let (_dir, src) = source(&[(b"one.txt", b"1"), (b"sub/two.txt", b"2")]);
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
        let c = spec(&src, "/tmp/made/cakes", Some((42, 42)));
        let digest = tree_digest(&c).unwrap();
        let names = |create| {
            let (bytes, err) = archive(&c, &digest, create);
            assert_eq!(err, None);
            entries(&bytes)
                .into_iter()
                .map(|e| (String::from_utf8(e.name).unwrap(), e.dir, e.uid, e.mode))
                .collect::<Vec<_>>()
        };
        let created = names(true);
        assert_eq!(created[0], ("tmp/made/cakes".into(), true, 42, 0o750));
        assert!(created.iter().all(|(_, _, uid, _)| *uid == 42));
        assert!(!created.iter().any(|(n, ..)| n == "tmp/made" || n == "tmp"));
        let existing = names(false);
        assert_eq!(existing, created[1..]);
        // To `/`: the contents, by relative names, never an entry for `/` itself.
        let c = spec(&src, "/", Some((42, 42)));
        let (bytes, err) = archive(&c, &digest, true);
        assert_eq!(err, None);
        let names: Vec<Vec<u8>> = entries(&bytes).into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                b"one.txt".to_vec(),
                b"sub".to_vec(),
                b"sub/two.txt".to_vec()
            ]
        );
    }

    #[tokio::test]
    async fn the_stream_of_a_changed_source_ends_in_an_error_and_says_why() {
        use futures_util::StreamExt;
        let (_dir, src) = source(&[(b"a.conf", b"original\n")]);
        let c = spec(&src, "/etc/app", None);
        let digest = Arc::new(tree_digest(&c).unwrap());
        std::fs::write(src.join("a.conf"), b"tampered\n").unwrap();
        let (archive, source_error) = stream(&c, digest, false);
        let items: Vec<io::Result<Bytes>> = archive.collect().await;
        let last = items.last().expect("items");
        assert!(last.is_err(), "the stream ends in an error item");
        let err = source_error.take().expect("the source error is set");
        assert!(err.to_string().contains("a.conf"), "{err}");
    }
}
