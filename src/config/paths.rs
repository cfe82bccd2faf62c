//! Paths a pipeline file names (copy sources, secret files) and the files folder expansion
//! finds: resolved inside the pipeline's folder without ever looking outside it.
//!
//! `canonicalize` follows a symlink wherever it points before one can tell that it leaves the
//! folder, which lets a file probe the host (`src = "../../home/ci/.ssh/id_rsa"`: "does not
//! exist" or "outside the folder"). Here every component is looked at from inside the
//! folder, and a `..` or a symlink that would leave it is refused before anything past it is
//! touched.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Why a path could not be resolved inside the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outside {
    /// It leaves the folder (through `..`, an absolute path or a symlink).
    Escapes,
    /// It does not exist (or a symlink loop, or a file used as a folder).
    Missing,
}

/// Symlinks followed at most, as the kernel does (`ELOOP`).
const MAX_LINKS: usize = 40;

/// Resolves `path` (relative to `root`, or absolute under it) to a path with no symlink in
/// it, inside `root`, which must be canonical.
pub(crate) fn resolve_inside(root: &Path, path: &Path) -> Result<PathBuf, Outside> {
    let mut current = root.to_path_buf();
    let mut pending: Vec<OsString> = Vec::new();
    push(&mut pending, under(root, path)?);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if current == root {
                return Err(Outside::Escapes);
            }
            current.pop();
            continue;
        }
        let next = current.join(&part);
        let meta = std::fs::symlink_metadata(&next).map_err(|_| Outside::Missing)?;
        if !meta.file_type().is_symlink() {
            current = next;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Outside::Missing);
        }
        let target = std::fs::read_link(&next).map_err(|_| Outside::Missing)?;
        if target.is_absolute() {
            current = root.to_path_buf();
        }
        push(&mut pending, under(root, &target)?);
    }
    Ok(current)
}

/// A path relative to `root`: relative paths as they are, absolute ones only under `root`
/// (compared as written: a `..` after the prefix is resolved step by step later).
fn under<'p>(root: &Path, path: &'p Path) -> Result<&'p Path, Outside> {
    if path.is_absolute() {
        path.strip_prefix(root).map_err(|_| Outside::Escapes)
    } else {
        Ok(path)
    }
}

/// Queues the components of `rel` so that the first one is popped first.
fn push(pending: &mut Vec<OsString>, rel: &Path) {
    let parts: Vec<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(parts.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn folder() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), "x").unwrap();
        let root = root.canonicalize().unwrap();
        (tmp, root)
    }

    #[test]
    fn paths_inside_resolve_through_relative_and_absolute_links() {
        let (_tmp, root) = folder();
        symlink("sub/file", root.join("rel")).unwrap();
        symlink(root.join("sub"), root.join("abs")).unwrap();
        symlink("rel", root.join("chain")).unwrap();
        let file = root.join("sub/file");
        for p in ["sub/file", "./sub/../sub/file", "rel", "abs/file", "chain"] {
            assert_eq!(resolve_inside(&root, Path::new(p)), Ok(file.clone()), "{p}");
        }
        assert_eq!(resolve_inside(&root, &file), Ok(file.clone()));
        assert_eq!(resolve_inside(&root, Path::new(".")), Ok(root.clone()));
    }

    #[test]
    fn leaving_the_folder_is_refused_without_looking_outside() {
        let (tmp, root) = folder();
        std::fs::write(tmp.path().join("secret"), "x").unwrap();
        // Targets that do not exist: "escapes", never "missing", so nothing outside was
        // looked at.
        symlink("/nonexistent-outside/x", root.join("abs")).unwrap();
        symlink("../nonexistent-outside", root.join("up")).unwrap();
        symlink("sub/../../secret", root.join("sneaky")).unwrap();
        for p in [
            "../secret",
            "sub/../../secret",
            "/etc/passwd",
            "/nonexistent-outside",
            "abs",
            "up",
            "up/deeper",
            "sneaky",
        ] {
            assert_eq!(
                resolve_inside(&root, Path::new(p)),
                Err(Outside::Escapes),
                "{p}"
            );
        }
    }

    #[test]
    fn missing_paths_and_loops_are_missing() {
        let (_tmp, root) = folder();
        symlink("loop", root.join("loop")).unwrap();
        symlink("nothing", root.join("dangling")).unwrap();
        for p in ["nothing", "sub/file/x", "loop", "dangling"] {
            assert_eq!(
                resolve_inside(&root, Path::new(p)),
                Err(Outside::Missing),
                "{p}"
            );
        }
    }
}
