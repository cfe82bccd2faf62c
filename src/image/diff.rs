//! A container's layer, written by the tool from what the engine says changed: the engine's
//! change list says which paths to read, its archive endpoint gives their content, and the
//! layer is written in one stable form (see `tarfmt.rs`), sorted, with whiteouts for what was
//! deleted.
//!
//! The steps: [`Plan::new`] turns the change list into archive requests; [`Spool::read`] keeps
//! what each answer holds of the change (headers in memory, contents in a temporary file of the
//! store); [`Spool::link_groups`] finds files of different requests that may be one file under
//! two names (hard links, which only an archive holding both names shows), which
//! [`Spool::resolve_links`] settles from the archive of a folder above both; [`Spool::write`]
//! writes the layer in order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::tarfmt::{self, as_engine_text, path_order, Header, Kind};

/// How a path of a container's file system differs from its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ChangeKind {
    Modified,
    Added,
    /// Gone; on overlay storage also a folder that was removed and made again (it exists, and
    /// hides everything the image had in it).
    Deleted,
}

/// One changed path of a container, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// Absolute. The engine sends paths as JSON text: each byte of a name that is not UTF-8
    /// arrives as U+FFFD.
    pub(crate) path: String,
    pub(crate) kind: ChangeKind,
}

/// Files an engine puts in every build container for its own use: mount points of what it
/// mounts over them (its init, the container's host name and name servers) and its marker
/// files. Never part of a layer: the engine's content is not the image's, and each engine
/// has its own (Docker lists `/sbin/docker-init` in a base without it, Podman does not).
const ENGINE_FILES: [&str; 7] = [
    "/.dockerenv",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/run/.containerenv",
    "/run/podman-init",
    "/sbin/docker-init",
];

/// The change list without the engine's own files (see [`ENGINE_FILES`]), nor the folders it
/// shows changed only for them (`/sbin` for `/sbin/docker-init`: Docker lists it as changed,
/// Podman does not).
pub(crate) fn without_engine_files(changes: Vec<Change>) -> Vec<Change> {
    let path = |c: &Change| c.path.trim_end_matches('/').to_string();
    let paths: Vec<String> = changes.iter().map(path).collect();
    let mut gone: HashSet<String> = paths
        .iter()
        .filter(|p| ENGINE_FILES.contains(&p.as_str()))
        .cloned()
        .collect();
    if gone.is_empty() {
        return changes;
    }
    let mut folders: Vec<String> = changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Deleted)
        .map(path)
        .filter(|p| gone.iter().any(|g| g.starts_with(&format!("{p}/"))))
        .collect();
    // Deepest first: a folder above one that goes may go too.
    folders.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for dir in folders {
        let below = format!("{dir}/");
        if paths
            .iter()
            .filter(|p| p.starts_with(&below))
            .all(|p| gone.contains(p))
        {
            gone.insert(dir);
        }
    }
    changes
        .into_iter()
        .filter(|c| !gone.contains(&path(c)))
        .collect()
}

/// What to take from the archive of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Take {
    /// The entries that are changes (or folders above one): the archive of an added path, of
    /// a folder above changes the engine lists under names that are not UTF-8 (it cannot be
    /// asked for those by name), or of the whole file system.
    Changed,
    /// The first entry: a changed file, or a folder's own header (the transfer stops there).
    First,
    /// The first entry of a deleted path, which may be absent (then a whiteout is written) or
    /// a folder made again (then it hides what the image had in it).
    Deleted,
}

/// One archive request: an absolute path of the container and what to take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) path: String,
    pub(crate) take: Take,
}

/// Why a layer cannot be written from the change list.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiffError {
    #[error("the deleted path `{0}` has a name that is not UTF-8, which the engine's change list does not give exactly")]
    UnnamedDeletion(String),
    #[error("`{path}` is a hard link to `{target}`, which is not in the layer")]
    LinkOutside { path: String, target: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The archive requests that give a container's layer, and what the layer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) requests: Vec<Request>,
    /// Every path of the layer as the engine writes it (absolute, U+FFFD for bytes that are
    /// not UTF-8): the changes and the folders above them. Nothing else of an archive is kept
    /// (the contents of a volume mounted on an added folder, say).
    wanted: HashSet<String>,
    /// Deleted paths (not below another one): each becomes a whiteout unless it is there again.
    deleted: BTreeSet<String>,
}

fn parent(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    (i > 0).then(|| &path[..i])
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(parent(path), |p| parent(p))
}

impl Plan {
    /// The requests for a change list, one or a few per changed path. Every path's folders get
    /// their own header (the engines' layers have them: changing a file copies its folders up).
    pub(crate) fn new(changes: &[Change]) -> Result<Self, DiffError> {
        let mut plan = Self::whole(changes)?;
        let kinds: BTreeMap<&str, ChangeKind> = changes
            .iter()
            .map(|c| (c.path.trim_end_matches('/'), c.kind))
            .filter(|(p, _)| p.starts_with('/') && p.len() > 1)
            .collect();
        let added = |p: &str| kinds.get(p) == Some(&ChangeKind::Added);
        let mut requests: BTreeMap<String, Take> = BTreeMap::new();
        for (&path, &kind) in &kinds {
            // Below an added folder: its archive holds it.
            if ancestors(path).any(added) {
                continue;
            }
            if path.contains('\u{FFFD}') {
                let named = ancestors(path)
                    .find(|p| !p.contains('\u{FFFD}'))
                    .unwrap_or("/");
                requests.insert(named.to_string(), Take::Changed);
                continue;
            }
            let take = match kind {
                ChangeKind::Added => Take::Changed,
                ChangeKind::Modified => Take::First,
                ChangeKind::Deleted if plan.deleted.contains(path) => Take::Deleted,
                // A deleted folder's contents went with it.
                ChangeKind::Deleted => continue,
            };
            requests.insert(path.to_string(), take);
        }
        let paths: Vec<String> = requests.keys().cloned().collect();
        for path in paths {
            for dir in ancestors(&path) {
                requests.entry(dir.to_string()).or_insert(Take::First);
            }
        }
        plan.requests = requests
            .into_iter()
            .map(|(path, take)| Request { path, take })
            .collect();
        plan.requests
            .sort_by(|a, b| path_order(a.path.as_bytes(), b.path.as_bytes()));
        Ok(plan)
    }

    /// One request: the archive of the whole file system, filtered. Cheaper than
    /// [`Plan::new`]'s requests when the engine spends more on each request than on reading
    /// the image's files, and it shows every hard link as the engine's own layer has it.
    pub(crate) fn whole(changes: &[Change]) -> Result<Self, DiffError> {
        let mut wanted = HashSet::new();
        let mut deleted_all = BTreeSet::new();
        for c in changes {
            let path = c.path.trim_end_matches('/');
            if !path.starts_with('/') || path.len() < 2 {
                continue;
            }
            if c.kind == ChangeKind::Deleted {
                if path.contains('\u{FFFD}') {
                    return Err(DiffError::UnnamedDeletion(path.to_string()));
                }
                deleted_all.insert(path.to_string());
            }
            wanted.insert(path.to_string());
            for dir in ancestors(path) {
                wanted.insert(dir.to_string());
            }
        }
        let deleted = deleted_all
            .iter()
            .filter(|p| !ancestors(p).any(|d| deleted_all.contains(d)))
            .cloned()
            .collect();
        Ok(Self {
            requests: vec![Request {
                path: "/".into(),
                take: Take::Changed,
            }],
            wanted,
            deleted,
        })
    }
}

/// A kept entry: its header and where its content is in the spool.
#[derive(Debug, Clone)]
struct Kept {
    header: Header,
    /// Offset of the content in the spool file.
    offset: u64,
    /// sha256 of a regular file's content.
    digest: Option<[u8; 32]>,
    /// The request it came from.
    request: usize,
}

/// What the requests gave: entry headers in memory, their contents in a temporary file of
/// the store (deleted when the spool is dropped).
#[derive(Debug)]
pub(crate) struct Spool {
    file: File,
    path: PathBuf,
    len: u64,
    kept: Vec<Kept>,
    /// Deleted paths found in the container again.
    found: HashSet<String>,
    /// Folders made again in place of deleted ones (opaque), relative.
    opaque: Vec<Vec<u8>>,
    /// Time for the whiteouts of deletions whose folder has none.
    now: u64,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Files that may be one file under several names: the folder whose archive tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkGroup {
    /// An absolute path above every name.
    pub(crate) folder: String,
    /// The names, relative.
    names: Vec<Vec<u8>>,
}

impl Spool {
    /// An empty spool in `dir` for `plan`; `now` dates whiteouts of deletions in folders
    /// that give no time.
    pub(crate) fn new(dir: &std::path::Path, now: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (path, file) = super::store::tempfile_in(dir)?;
        Ok(Self {
            file,
            path,
            len: 0,
            kept: Vec::new(),
            found: HashSet::new(),
            opaque: Vec::new(),
            now,
        })
    }

    /// Keeps what request `index` of `plan` gave. `archive` is `None` when the engine has no
    /// such path (only a deleted path may be missing).
    pub(crate) fn read(
        &mut self,
        plan: &Plan,
        index: usize,
        archive: Option<&mut dyn Read>,
    ) -> Result<(), DiffError> {
        let request = &plan.requests[index];
        let rel = tarfmt::clean(request.path.as_bytes());
        let Some(archive) = archive else {
            if request.take == Take::Deleted {
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("`{}` changed but is not in the container", request.path),
            )
            .into());
        };
        let base = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => rel[..i].to_vec(),
            None => Vec::new(),
        };
        let first = matches!(request.take, Take::First | Take::Deleted);
        let mut tar = tar::Archive::new(archive);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let Some(header) = Header::read(&mut entry, &base)? else {
                continue;
            };
            let text = format!("/{}", as_engine_text(&header.path));
            if !first && !plan.wanted.contains(&text) {
                continue;
            }
            // A deleted path that is there again: a folder hides what the image had in it;
            // anything else replaces it when the layer is unpacked.
            if plan.deleted.contains(&text) {
                if header.kind == Kind::Dir {
                    self.opaque.push(header.path.clone());
                }
                self.found.insert(text);
            }
            self.keep(index, header, &mut entry)?;
            if first {
                break;
            }
        }
        Ok(())
    }

    fn keep(&mut self, request: usize, header: Header, content: &mut impl Read) -> io::Result<()> {
        let offset = self.len;
        let mut digest = None;
        if header.kind == Kind::File {
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = header.size;
            self.file.seek(SeekFrom::Start(offset))?;
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                let n = content.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the engine's archive ended inside a file",
                    ));
                }
                hash.update(&buf[..n]);
                self.file.write_all(&buf[..n])?;
                left -= n as u64;
            }
            self.len += header.size;
            digest = Some(hash.finalize().into());
        }
        self.kept.push(Kept {
            header,
            offset,
            digest,
            request,
        });
        Ok(())
    }

    /// Files that came from different requests with the same content and metadata: each group
    /// may be one file with several names (a hard link), which only the archive of a folder
    /// above all of them can tell. Empty files are left out (too common to ask about each).
    pub(crate) fn link_groups(&self) -> Vec<LinkGroup> {
        type Key = (u64, [u8; 32], u32, u64, u64, u64);
        let mut groups: HashMap<Key, Vec<usize>> = HashMap::new();
        for (i, k) in self.kept.iter().enumerate() {
            let (Some(d), Kind::File) = (k.digest, &k.header.kind) else {
                continue;
            };
            if k.header.size == 0 {
                continue;
            }
            let h = &k.header;
            groups
                .entry((h.size, d, h.mode, h.uid, h.gid, h.mtime))
                .or_default()
                .push(i);
        }
        let mut out: Vec<LinkGroup> = groups
            .into_values()
            .filter(|g| {
                let first = self.kept[g[0]].request;
                g.iter().any(|&i| self.kept[i].request != first)
            })
            .map(|g| {
                let names: Vec<Vec<u8>> = g
                    .iter()
                    .map(|&i| self.kept[i].header.path.clone())
                    .collect();
                LinkGroup {
                    folder: common_folder(&names),
                    names,
                }
            })
            .collect();
        out.sort_by(|a, b| a.names.cmp(&b.names));
        out
    }

    /// Reads the archive of `group.folder`: names of the group that it shows as hard links
    /// become hard links in the layer.
    pub(crate) fn resolve_links(
        &mut self,
        group: &LinkGroup,
        archive: &mut dyn Read,
    ) -> Result<(), DiffError> {
        let rel = tarfmt::clean(group.folder.as_bytes());
        let base = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => rel[..i].to_vec(),
            None => Vec::new(),
        };
        let names: BTreeSet<&[u8]> = group.names.iter().map(Vec::as_slice).collect();
        let mut links: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut tar = tar::Archive::new(archive);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let Some(h) = Header::read(&mut entry, &base)? else {
                continue;
            };
            if h.kind == Kind::Link
                && names.contains(h.path.as_slice())
                && names.contains(h.link.as_slice())
            {
                links.push((h.path, h.link));
            }
        }
        for (path, target) in links {
            if let Some(k) = self.kept.iter_mut().find(|k| k.header.path == path) {
                k.header.kind = Kind::Link;
                k.header.link = target;
                k.header.size = 0;
                k.digest = None;
            }
        }
        Ok(())
    }

    /// Writes the layer: every kept entry, whiteouts and opaque markers, in path order, each
    /// once; times after `clamp` become `clamp`.
    pub(crate) fn write(
        mut self,
        plan: &Plan,
        out: &mut impl Write,
        clamp: Option<u64>,
    ) -> Result<(), DiffError> {
        let mut entries: BTreeMap<OrderedPath, Option<usize>> = BTreeMap::new();
        for (i, k) in self.kept.iter().enumerate() {
            entries
                .entry(OrderedPath(k.header.path.clone()))
                .or_insert(Some(i));
        }
        let mut synthetic: Vec<Header> = Vec::new();
        let gone: Vec<Vec<u8>> = plan
            .deleted
            .iter()
            .filter(|p| !self.found.contains(*p))
            .map(|p| tarfmt::clean(p.as_bytes()))
            .collect();
        for path in gone {
            let (dir, name) = split(&path);
            let mut wh = b".wh.".to_vec();
            wh.extend_from_slice(name);
            // Dated as its folder, changed by the deletion.
            let mtime = self
                .kept
                .iter()
                .find(|k| k.header.path == dir)
                .map_or(self.now, |k| k.header.mtime);
            synthetic.push(marker(tarfmt::join(dir, &wh), 0o600, 0, 0, mtime));
        }
        for dir in std::mem::take(&mut self.opaque) {
            let (mode, uid, gid) = self
                .kept
                .iter()
                .find(|k| k.header.path == dir)
                .map_or((0o755, 0, 0), |k| {
                    (k.header.mode, k.header.uid, k.header.gid)
                });
            synthetic.push(marker(
                tarfmt::join(&dir, b".wh..wh..opq"),
                mode,
                uid,
                gid,
                0,
            ));
        }
        let base = self.kept.len();
        for (i, h) in synthetic.iter().enumerate() {
            entries.insert(OrderedPath(h.path.clone()), Some(base + i));
        }
        let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut spool = BufReader::new(&self.file);
        for index in entries.into_values().flatten() {
            let (mut header, offset) = match index.checked_sub(base) {
                None => (
                    self.kept[index].header.clone(),
                    Some(self.kept[index].offset),
                ),
                Some(s) => (synthetic[s].clone(), None),
            };
            if header.kind == Kind::Link && !seen.contains(&header.link) {
                return Err(DiffError::LinkOutside {
                    path: String::from_utf8_lossy(&header.path).into_owned(),
                    target: String::from_utf8_lossy(&header.link).into_owned(),
                });
            }
            if let Some(limit) = clamp {
                header.mtime = header.mtime.min(limit);
            }
            header.write(out)?;
            if let (Kind::File, Some(offset)) = (&header.kind, offset) {
                spool.seek(SeekFrom::Start(offset))?;
                let copied = io::copy(&mut (&mut spool).take(header.size), out)?;
                if copied != header.size {
                    return Err(
                        io::Error::new(io::ErrorKind::UnexpectedEof, "the spool is short").into(),
                    );
                }
                tarfmt::pad(out, header.size)?;
            }
            seen.insert(header.path);
        }
        tarfmt::finish(out)?;
        Ok(())
    }
}

/// An empty regular file that marks something for the layer's reader (a whiteout).
fn marker(path: Vec<u8>, mode: u32, uid: u64, gid: u64, mtime: u64) -> Header {
    Header {
        path,
        kind: Kind::File,
        mode,
        uid,
        gid,
        mtime,
        size: 0,
        link: Vec::new(),
        dev: (0, 0),
        capability: None,
    }
}

/// (folder, name) of a relative path.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

/// The deepest folder above every one of `names` (relative), as an absolute path.
fn common_folder(names: &[Vec<u8>]) -> String {
    let mut common: Option<Vec<&[u8]>> = None;
    for n in names {
        let dirs: Vec<&[u8]> = split(n)
            .0
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        common = Some(match common {
            None => dirs,
            Some(c) => c
                .iter()
                .zip(&dirs)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    // A folder the engine can be asked for by name: above any name that is not UTF-8.
    let named: Vec<&[u8]> = common
        .unwrap_or_default()
        .into_iter()
        .take_while(|c| std::str::from_utf8(c).is_ok())
        .collect();
    format!("/{}", String::from_utf8_lossy(&named.join(&b'/')))
}

/// A relative path ordered as a layer's entries are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OrderedPath(Vec<u8>);

impl Ord for OrderedPath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        path_order(&self.0, &other.0)
    }
}

impl PartialOrd for OrderedPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, kind: ChangeKind) -> Change {
        Change {
            path: path.to_string(),
            kind,
        }
    }

    #[test]
    fn the_engines_own_files_and_folders_made_only_for_them_are_no_changes() {
        use ChangeKind::*;
        let changes = vec![
            change("/sbin", Modified),
            change("/sbin/docker-init", Added),
            change("/etc", Modified),
            change("/etc/hosts", Modified),
            change("/etc/app", Added),
            change("/run", Added),
            change("/run/.containerenv", Added),
            change("/run/mine", Added),
            change("/.dockerenv", Added),
        ];
        let kept: Vec<String> = without_engine_files(changes)
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(kept, vec!["/etc", "/etc/app", "/run", "/run/mine"]);
        let plain = vec![change("/srv", Added)];
        assert_eq!(without_engine_files(plain.clone()), plain);
    }

    #[test]
    fn the_plan_asks_for_added_trees_whole_and_for_changed_folders_first_entries() {
        use ChangeKind::*;
        let plan = Plan::new(&[
            change("/opt", Added),
            change("/opt/a", Added),
            change("/opt/a/f", Added),
            change("/etc", Modified),
            change("/etc/passwd", Deleted),
            change("/usr/bin/vim", Added),
            change("/srv/old", Deleted),
            change("/srv/old/new", Added),
            change("/srv/gone", Deleted),
            change("/srv/gone/x", Deleted),
            change("/tmp/caf\u{FFFD}", Added),
        ])
        .unwrap();
        let got: Vec<(&str, &Take)> = plan
            .requests
            .iter()
            .map(|r| (r.path.as_str(), &r.take))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/etc", &Take::First),
                ("/etc/passwd", &Take::Deleted),
                ("/opt", &Take::Changed),
                ("/srv", &Take::First),
                ("/srv/gone", &Take::Deleted),
                ("/srv/old", &Take::Deleted),
                ("/srv/old/new", &Take::Changed),
                ("/tmp", &Take::Changed),
                ("/usr", &Take::First),
                ("/usr/bin", &Take::First),
                ("/usr/bin/vim", &Take::Changed),
            ]
        );
        assert!(matches!(
            Plan::new(&[change("/tmp/x\u{FFFD}", Deleted)]),
            Err(DiffError::UnnamedDeletion(_))
        ));
    }

    fn archive(entries: &[(&[u8], Kind, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, kind, content) in entries {
            let h = Header {
                path: path.to_vec(),
                kind: kind.clone(),
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 2_000_000_000,
                size: if *kind == Kind::File {
                    content.len() as u64
                } else {
                    0
                },
                link: if *kind == Kind::File {
                    Vec::new()
                } else {
                    content.to_vec()
                },
                dev: (0, 0),
                capability: None,
            };
            h.write(&mut out).unwrap();
            if *kind == Kind::File {
                out.extend_from_slice(content);
                tarfmt::pad(&mut out, content.len() as u64).unwrap();
            }
        }
        tarfmt::finish(&mut out).unwrap();
        out
    }

    #[test]
    fn a_spool_writes_the_layer_sorted_with_whiteouts_links_and_clamped_times() {
        use ChangeKind::*;
        let plan = Plan::new(&[
            change("/b", Added),
            change("/a", Modified),
            change("/a/x", Added),
            change("/a/gone", Deleted),
            change("/c", Added),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path(), 5).unwrap();
        let answers: Vec<Option<Vec<u8>>> = plan
            .requests
            .iter()
            .map(|r| match r.path.as_str() {
                "/a" => Some(archive(&[
                    (b"a", Kind::Dir, b""),
                    (b"a/x", Kind::File, b"x"),
                ])),
                "/a/gone" => None,
                "/a/x" => Some(archive(&[(b"x", Kind::File, b"same")])),
                "/b" => Some(archive(&[(b"b", Kind::File, b"same")])),
                "/c" => Some(archive(&[(b"c", Kind::File, b"other")])),
                other => panic!("unexpected request {other}"),
            })
            .collect();
        for (i, a) in answers.iter().enumerate() {
            let mut bytes = a.as_deref();
            let reader = bytes.as_mut().map(|b| b as &mut dyn Read);
            spool.read(&plan, i, reader).unwrap();
        }
        let groups = spool.link_groups();
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].folder, "/");
        // The root's archive shows `b` as a link to `a/x`.
        let root = archive(&[
            (b"a", Kind::Dir, b""),
            (b"a/x", Kind::File, b"same"),
            (b"b", Kind::Link, b"a/x"),
            (b"c", Kind::File, b"other"),
        ]);
        spool
            .resolve_links(&groups[0], &mut root.as_slice())
            .unwrap();
        let mut out = Vec::new();
        spool.write(&plan, &mut out, Some(1_000)).unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let got: Vec<(String, char, u64, String)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    e.header().entry_type().as_byte() as char,
                    e.header().mtime().unwrap(),
                    e.link_name()
                        .unwrap()
                        .map(|l| l.display().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a/".to_string(), '5', 1_000, String::new()),
                ("a/.wh.gone".to_string(), '0', 1_000, String::new()),
                ("a/x".to_string(), '0', 1_000, String::new()),
                ("b".to_string(), '1', 1_000, "a/x".to_string()),
                ("c".to_string(), '0', 1_000, String::new()),
            ]
        );
    }
}
