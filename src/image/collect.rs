//! The blob store's collector (`pipeline gc`): which blobs, records and temporary files can
//! go. Records are the roots, as leases are in containerd's content store:
//!
//! - A record is live while an engine holds the engine image it names (the tool's image of a
//!   build, a base's layers, a checkpoint's layers), or when it was written or read within the
//!   keep duration.
//! - A blob is live while a live record names it. A blob nothing live names goes once it is
//!   older than [`GRACE`]: a running apply writes a blob before the record that names it.
//! - A record goes when a blob it names is gone, or, naming none, when it is not live.
//! - With a size budget, the least recently used blobs go next (a blob's use is the latest of
//!   its own write and the writes and reads of the records that name it), until the store fits.
//! - Temporary files (`tmp/`, and unfinished writes beside blobs and records) go once older
//!   than [`GRACE`]. Nothing younger than [`GRACE`] ever goes, nothing that is not a regular
//!   file (a link is never followed), nor a file whose name the store never writes, nor
//!   records of kinds this version does not know.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::store::BlobStore;

/// How old an unnamed blob, a record or a temporary file must be before the collector
/// removes it: longer than any apply takes between writing a blob and the record naming it.
pub(crate) const GRACE: Duration = Duration::from_hours(1);

/// How long a record stays live after it was last written or read, when no engine holds the
/// image it names (`gc --keep-duration` changes it).
pub(crate) const KEEP: Duration = Duration::from_hours(48);

/// Records are small; a larger file under `records/` is none of the tool's.
const RECORD_LIMIT: u64 = 64 << 20;

/// What one record names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// An engine image (its id, or a local tag): the record is live while an engine holds it.
    pub(crate) image: Option<String>,
    /// Blob digests (`sha256:...`).
    pub(crate) blobs: Vec<String>,
}

/// A kind of record (its folder under `records/`) and how to read what one names (`None`: the
/// record cannot be read, and names nothing).
pub(crate) type RecordKind = (&'static str, fn(&[u8]) -> Option<Names>);

/// What the collector keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// See [`KEEP`].
    pub(crate) keep: Duration,
    /// Bytes of blobs the store may keep at most (least recently used go first).
    pub(crate) budget: Option<u64>,
}

/// A file the collector would remove, with the modification time it had when seen (a file
/// changed since, by a run using it, stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doomed {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    seen: SystemTime,
}

/// What the collector would remove from a store.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// Blobs, with their digests.
    pub(crate) blobs: Vec<(String, Doomed)>,
    pub(crate) records: Vec<Doomed>,
    pub(crate) temporary: Vec<Doomed>,
    /// The records that name each blob, as seen: a blob one of them was read or written
    /// again since stays.
    namers: BTreeMap<String, Vec<Doomed>>,
}

/// A record as the survey saw it.
struct Record {
    file: Doomed,
    names: Option<Names>,
}

/// A blob as the survey saw it.
struct Blob {
    file: Doomed,
    /// The latest of its own write and its naming records' writes and reads.
    used: SystemTime,
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_temporary(name: &str) -> bool {
    name.starts_with(".tmp-")
}

/// The regular files of `dir` (never through a link), with their metadata; none when `dir`
/// is missing or is not a folder.
fn files(dir: &Path) -> io::Result<Vec<(String, PathBuf, Metadata)>> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // The entry's own metadata: a link is a link, not what it points at.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_string(), entry.path(), meta));
        }
    }
    Ok(out)
}

fn doomed(path: PathBuf, meta: &Metadata) -> Doomed {
    Doomed {
        path,
        bytes: meta.len(),
        seen: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

fn age(now: SystemTime, t: SystemTime) -> Duration {
    now.duration_since(t).unwrap_or_default()
}

/// The records of the known kinds, and the temporary files beside them.
fn records(store: &BlobStore, kinds: &[RecordKind]) -> io::Result<(Vec<Record>, Vec<Doomed>)> {
    let (mut found, mut temporary) = (Vec::new(), Vec::new());
    let dir = store.root().join("records");
    // A link in place of the folder is not followed either.
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Ok((found, temporary));
    }
    for (kind, read) in kinds {
        for (name, path, meta) in files(&dir.join(kind))? {
            if is_temporary(&name) {
                temporary.push(doomed(path, &meta));
            } else if is_hex64(&name) {
                let names = if meta.len() <= RECORD_LIMIT {
                    std::fs::read(&path).ok().and_then(|b| read(&b))
                } else {
                    None
                };
                found.push(Record {
                    file: doomed(path, &meta),
                    names,
                });
            }
        }
    }
    Ok((found, temporary))
}

/// The engine images (ids, local tags) the records of `store` name: what to ask the engines
/// about.
pub(crate) fn images(store: &BlobStore, kinds: &[RecordKind]) -> io::Result<BTreeSet<String>> {
    let (records, _) = records(store, kinds)?;
    Ok(records.into_iter().filter_map(|r| r.names?.image).collect())
}

/// Surveys `store`: what [`Policy`] lets go. `held` says whether an engine holds an engine
/// image id.
pub(crate) fn survey(
    store: &BlobStore,
    kinds: &[RecordKind],
    policy: Policy,
    held: &dyn Fn(&str) -> bool,
    now: SystemTime,
) -> io::Result<Sweep> {
    // Records before blobs: a record written after this look names blobs younger than the
    // grace, or blobs it read a record to find (which made that record recent, so live).
    let (records, mut temporary) = records(store, kinds)?;
    let mut blobs = BTreeMap::new();
    for (name, path, meta) in files(&store.root().join("sha256"))? {
        if is_temporary(&name) {
            temporary.push(doomed(path, &meta));
        } else if is_hex64(&name) {
            let file = doomed(path, &meta);
            let used = file.seen;
            blobs.insert(format!("sha256:{name}"), Blob { file, used });
        }
    }
    for (_, path, meta) in files(&store.scratch())? {
        temporary.push(doomed(path, &meta));
    }
    let mut live = BTreeSet::new();
    let mut namers: BTreeMap<String, Vec<Doomed>> = BTreeMap::new();
    for r in &records {
        let names = r.names.as_ref();
        for digest in names.map_or(&[][..], |n| &n.blobs) {
            if let Some(b) = blobs.get_mut(digest) {
                b.used = b.used.max(r.file.seen);
                namers
                    .entry(digest.clone())
                    .or_default()
                    .push(r.file.clone());
            }
        }
        let recent = age(now, r.file.seen) < policy.keep;
        if recent || names.and_then(|n| n.image.as_deref()).is_some_and(held) {
            live.extend(names.map_or(&[][..], |n| &n.blobs).iter().cloned());
        }
    }
    let old = |t: SystemTime| age(now, t) >= GRACE;
    let mut gone: BTreeMap<String, Doomed> = BTreeMap::new();
    let mut kept = Vec::new();
    for (digest, b) in blobs {
        if !live.contains(&digest) && old(b.used) {
            gone.insert(digest, b.file);
        } else {
            kept.push((digest, b));
        }
    }
    if let Some(budget) = policy.budget {
        kept.sort_by_key(|(_, b)| b.used);
        let mut total: u64 = kept.iter().map(|(_, b)| b.file.bytes).sum();
        for (digest, b) in kept {
            if total <= budget {
                break;
            }
            if old(b.used) {
                total -= b.file.bytes;
                gone.insert(digest, b.file);
            }
        }
    }
    let present = |d: &String| store.contains(d) && !gone.contains_key(d);
    let records = records
        .into_iter()
        .filter(|r| old(r.file.seen))
        .filter(|r| match &r.names {
            Some(n) if !n.blobs.is_empty() => !n.blobs.iter().all(present),
            _ => age(now, r.file.seen) >= policy.keep,
        })
        .map(|r| r.file)
        .collect();
    temporary.retain(|t| old(t.seen));
    namers.retain(|d, _| gone.contains_key(d));
    Ok(Sweep {
        blobs: gone.into_iter().collect(),
        records,
        temporary,
        namers,
    })
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Freed {
    pub(crate) blobs: usize,
    pub(crate) records: usize,
    pub(crate) temporary: usize,
    /// Bytes of all of them.
    pub(crate) bytes: u64,
}

impl Sweep {
    /// Whether there is nothing to remove.
    pub(crate) fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.records.is_empty() && self.temporary.is_empty()
    }

    /// What removing all of it frees.
    pub(crate) fn size(&self) -> Freed {
        let blobs = self.blobs.iter().map(|(_, d)| d);
        Freed {
            blobs: self.blobs.len(),
            records: self.records.len(),
            temporary: self.temporary.len(),
            bytes: blobs
                .chain(&self.records)
                .chain(&self.temporary)
                .map(|d| d.bytes)
                .sum(),
        }
    }

    /// Removes it: records first (a reader finding a record without its blob rebuilds; the
    /// other way round nothing would name a blob left behind). A file changed since the survey
    /// (read or written again by a run) stays, as does one already gone.
    pub(crate) fn remove(&self) -> io::Result<Freed> {
        let mut freed = Freed::default();
        for d in &self.records {
            if remove_unchanged(d)? {
                freed.records += 1;
                freed.bytes += d.bytes;
            }
        }
        for (digest, d) in &self.blobs {
            let namers = self.namers.get(digest).map_or(&[][..], Vec::as_slice);
            if namers.iter().any(changed) {
                continue;
            }
            if remove_unchanged(d)? {
                freed.blobs += 1;
                freed.bytes += d.bytes;
            }
        }
        for d in &self.temporary {
            if remove_unchanged(d)? {
                freed.temporary += 1;
                freed.bytes += d.bytes;
            }
        }
        Ok(freed)
    }
}

/// Whether `d` is still there, changed since it was seen.
fn changed(d: &Doomed) -> bool {
    std::fs::symlink_metadata(&d.path).is_ok_and(|m| m.modified().ok() != Some(d.seen))
}

/// Removes `d` unless it changed since it was seen; whether it did.
fn remove_unchanged(d: &Doomed) -> io::Result<bool> {
    match std::fs::symlink_metadata(&d.path) {
        Ok(m) if m.is_file() && m.modified().ok() == Some(d.seen) => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(&d.path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
