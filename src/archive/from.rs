//! A copy out of another image: the engine's tar of `src` in that image (its last component
//! first, as `GET /containers/{id}/archive` gives it), renamed to land at `dest` when it is
//! extracted at `/`, with the step's `owner` and `mode` when it sets them.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use tokio::sync::mpsc;

use super::{end, received, Archive, ChunkWriter, SourceError};
use crate::model::CopySpec;

/// [`rename`] of the engine's archive as it arrives: the renamed archive streams out while
/// `tar` streams in, a few chunks at a time, so a copy of any size costs little memory. A
/// problem with `tar` ends the renamed archive with an error item, and the [`SourceError`]
/// says why.
pub(crate) fn stream(
    tar: Archive,
    c: &CopySpec,
    owner: Option<(u32, u32)>,
    create_dest: bool,
) -> (Archive, SourceError) {
    let (tx, rx) = mpsc::channel::<io::Result<bytes::Bytes>>(4);
    let spec = c.clone();
    let failure = SourceError::default();
    let slot = failure.clone();
    tokio::spawn(crate::image::bridge::read_blocking(tar, move |r| {
        let err_tx = tx.clone();
        let written =
            rename(r, &spec, owner, create_dest, ChunkWriter::new(tx)).and_then(|mut w| w.flush());
        end(written, &err_tx, &slot);
        Ok::<(), io::Error>(())
    }));
    (received(rx), failure)
}

/// Rewrites `tar` (the engine's archive of one path) into `out`, an archive meant to be
/// extracted at `/`: a file lands at `dest` (inside it when `dest` ends with `/`), a folder's
/// contents in `dest`, and with `create_dest` the folder itself as `dest`. Owners and modes are
/// kept unless `owner` (every entry) or `mode` (every file) is given. Contents are streamed
/// from `tar` to `out`, never held whole.
pub(crate) fn rename<R: Read, W: Write>(
    tar: R,
    c: &CopySpec,
    owner: Option<(u32, u32)>,
    create_dest: bool,
    out: W,
) -> io::Result<W> {
    let dest: PathBuf = Path::new(c.dest.trim_start_matches('/'))
        .components()
        .collect();
    let mut out = tar::Builder::new(out);
    let mut archive = tar::Archive::new(tar);
    let mut root: Option<PathBuf> = None;
    let mut root_is_dir = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        let root = root.get_or_insert_with(|| {
            root_is_dir = kind.is_dir();
            first_component(&path)
        });
        let Some(target) = target(&path, root, root_is_dir, &dest, c.dest.ends_with('/')) else {
            continue;
        };
        if target == dest && kind.is_dir() && (!create_dest || dest.as_os_str().is_empty()) {
            continue;
        }
        let mut h = entry.header().clone();
        if let Some((uid, gid)) = owner {
            h.set_uid(uid.into());
            h.set_gid(gid.into());
            let _ = h.set_username("");
            let _ = h.set_groupname("");
        }
        if let (Some(mode), true) = (c.mode, kind.is_file()) {
            h.set_mode(mode);
        }
        if kind.is_hard_link() {
            let link = entry
                .link_name()?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let to = target_of_link(&link, root, root_is_dir, &dest, c.dest.ends_with('/'));
            out.append_link(&mut h, &target, to)?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            out.append_link(&mut h, &target, link)?;
        } else {
            out.append_data(&mut h, &target, &mut entry)?;
        }
    }
    if root.is_none() {
        return Err(io::Error::other("the image's archive of it is empty"));
    }
    out.into_inner()
}

fn first_component(path: &Path) -> PathBuf {
    path.components()
        .find(|c| matches!(c, Component::Normal(_)))
        .map(|c| PathBuf::from(c.as_os_str()))
        .unwrap_or_default()
}

/// Where an entry of the engine's archive goes, relative to `/`.
fn target(path: &Path, root: &Path, root_is_dir: bool, dest: &Path, into: bool) -> Option<PathBuf> {
    let normal: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let rel = normal.strip_prefix(root).ok()?;
    if root_is_dir {
        return Some(if rel.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(rel)
        });
    }
    Some(if into {
        dest.join(root)
    } else {
        dest.to_path_buf()
    })
}

/// A hard link's target, renamed as entries are (only the copied file itself can be one of a
/// file copy's links).
fn target_of_link(link: &Path, root: &Path, root_is_dir: bool, dest: &Path, into: bool) -> PathBuf {
    target(link, root, root_is_dir, dest, into).unwrap_or_else(|| link.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dest: &str, mode: Option<u32>) -> CopySpec {
        CopySpec {
            sources: Vec::new(),
            src_display: String::new(),
            dest: dest.into(),
            mode,
            owner: None,
            owner_name: None,
            from: None,
        }
    }

    /// An engine-like archive: (path, mode, uid, content or None for a folder).
    fn engine_tar(entries: &[(&str, u32, u64, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, mode, uid, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_gid(*uid);
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    b.append_data(&mut h, path, *c).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// (path, mode, uid, gid) of every entry.
    fn listed(tar: &[u8]) -> Vec<(String, u32, u64, u64)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_file_lands_at_dest_or_inside_a_folder_dest_keeping_owner_and_mode() {
        let tar = engine_tar(&[("busybox", 0o755, 7, Some(b"elf"))]);
        let cases = [
            ("/app", None, None, ("app", 0o755, 7, 7)),
            ("/usr/bin/", None, None, ("usr/bin/busybox", 0o755, 7, 7)),
            ("/app", Some(0o700), Some((1, 2)), ("app", 0o700, 1, 2)),
        ];
        for (dest, mode, owner, want) in cases {
            let out = rename(&tar[..], &spec(dest, mode), owner, false, Vec::new()).unwrap();
            let (p, m, u, g) = want;
            assert_eq!(listed(&out), vec![(p.to_string(), m, u, g)], "{dest}");
        }
    }

    #[test]
    fn a_folder_s_contents_land_in_dest_and_the_folder_itself_only_when_created() {
        let tar = engine_tar(&[
            ("doc", 0o750, 5, None),
            ("doc/a.txt", 0o644, 5, Some(b"a")),
            ("doc/sub", 0o755, 5, None),
            ("doc/sub/b", 0o600, 6, Some(b"b")),
        ]);
        let out = rename(&tar[..], &spec("/srv/doc", None), None, true, Vec::new()).unwrap();
        let names: Vec<String> = listed(&out).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            ["srv/doc", "srv/doc/a.txt", "srv/doc/sub", "srv/doc/sub/b"]
        );
        assert_eq!(listed(&out)[0].1, 0o750);
        let out = rename(&tar[..], &spec("/srv/doc", None), None, false, Vec::new()).unwrap();
        assert_eq!(listed(&out).len(), 3);
        assert_eq!(listed(&out)[2], ("srv/doc/sub/b".into(), 0o600, 6, 6));
    }

    #[test]
    fn an_empty_archive_is_an_error() {
        let empty = tar::Builder::new(Vec::new()).into_inner().unwrap();
        assert!(rename(&empty[..], &spec("/a", None), None, false, Vec::new()).is_err());
    }
}
