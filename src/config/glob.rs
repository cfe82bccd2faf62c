//! Copy sources with globs (`files/*.txt`, `src/**/*.conf`): expanded inside the build
//! context, component by component, each match resolved as [`resolve_inside`] resolves a path
//! (a symlink out of the context is refused, never followed).

use std::path::{Path, PathBuf};

use super::paths::{resolve_inside, Outside};
use crate::model::ignore::{is_glob, Glob};

/// A source's matches: each resolved path with the path it was matched under, relative to
/// the folder before the first glob (what `exclude` patterns are matched against).
pub(crate) type Matches = Vec<(PathBuf, String)>;

/// The glob's components, or the first one that is not a valid pattern.
pub(crate) fn check(pattern: &str) -> Result<(), String> {
    for part in pattern.split('/').filter(|p| is_glob(p) && *p != "**") {
        Glob::new(part)?;
    }
    Ok(())
}

/// Expands `pattern` (relative to `root`, `/`-separated, its syntax [`check`]ed) into the
/// paths it matches, sorted by their relative paths; none is [`Outside::Missing`]. `**` as a
/// whole component matches any number of folders, none included (a final `**` is the folder
/// itself: its contents are copied).
pub(crate) fn expand_inside(root: &Path, pattern: &str) -> Result<Matches, Outside> {
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let Some(first) = parts.iter().position(|p| is_glob(p)) else {
        return resolve_inside(root, Path::new(pattern)).map(|p| vec![(p, String::new())]);
    };
    if pattern.starts_with('/') {
        return Err(Outside::Escapes);
    }
    let base = resolve_inside(root, Path::new(&parts[..first].join("/")))?;
    let mut out = Vec::new();
    walk(root, &base, "", &parts[first..], &mut out)?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out.dedup_by(|a, b| a.0 == b.0);
    if out.is_empty() {
        return Err(Outside::Missing);
    }
    Ok(out)
}

/// Matches `rest` below `dir` (reached as `rel`), pushing every match.
fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    rest: &[&str],
    out: &mut Matches,
) -> Result<(), Outside> {
    let Some((part, tail)) = rest.split_first() else {
        out.push((dir.to_path_buf(), rel.to_string()));
        return Ok(());
    };
    let join = |name: &str| {
        if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        }
    };
    if *part == "**" {
        if tail.is_empty() {
            out.push((dir.to_path_buf(), rel.to_string()));
            return Ok(());
        }
        walk(root, dir, rel, tail, out)?;
        for name in names(dir) {
            let path = dir.join(&name);
            // Folders only, never through a symlink: `**` does not leave a folder's tree.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                walk(root, &path, &join(&name), rest, out)?;
            }
        }
        return Ok(());
    }
    let candidates: Vec<String> = if is_glob(part) {
        let glob = Glob::new(part).map_err(|_| Outside::Missing)?;
        names(dir).into_iter().filter(|n| glob.matches(n)).collect()
    } else {
        vec![(*part).to_string()]
    };
    for name in candidates {
        let resolved = match resolve_inside(root, &dir.join(&name)) {
            Ok(p) => p,
            Err(Outside::Missing) => continue,
            Err(Outside::Escapes) => return Err(Outside::Escapes),
        };
        if tail.is_empty() || resolved.is_dir() {
            walk(root, &resolved, &join(&name), tail, out)?;
        }
    }
    Ok(())
}

/// The names in `dir` (UTF-8 ones: a glob is text), sorted; none when it cannot be read.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        for f in [
            "files/a.txt",
            "files/b.txt",
            "files/c.md",
            "files/sub/d.txt",
            "conf/x/app.conf",
            "conf/y/z/db.conf",
            "conf/top.conf",
        ] {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        std::fs::write(tmp.path().join("outside.txt"), "secret").unwrap();
        let root = root.canonicalize().unwrap();
        (tmp, root)
    }

    fn rels(root: &Path, pattern: &str) -> Result<Vec<String>, Outside> {
        expand_inside(root, pattern).map(|m| {
            m.into_iter()
                .map(|(p, _)| p.strip_prefix(root).unwrap().display().to_string())
                .collect()
        })
    }

    #[test]
    fn globs_match_names_in_order_and_double_stars_any_depth() {
        let (_tmp, root) = tree();
        let table: &[(&str, &[&str])] = &[
            ("files/*.txt", &["files/a.txt", "files/b.txt"]),
            ("files/?.md", &["files/c.md"]),
            ("files/[ab].txt", &["files/a.txt", "files/b.txt"]),
            ("*/sub", &["files/sub"]),
            (
                "conf/**/*.conf",
                &["conf/top.conf", "conf/x/app.conf", "conf/y/z/db.conf"],
            ),
            ("**/d.txt", &["files/sub/d.txt"]),
            ("files/**", &["files"]),
            ("files/a.txt", &["files/a.txt"]),
        ];
        for (pattern, want) in table {
            assert_eq!(rels(&root, pattern).unwrap(), *want, "{pattern}");
        }
        let matched = expand_inside(&root, "conf/**/*.conf").unwrap();
        assert_eq!(matched[1].1, "x/app.conf");
    }

    #[test]
    fn no_match_is_missing_and_a_link_out_is_refused() {
        let (_tmp, root) = tree();
        assert_eq!(rels(&root, "files/*.rs"), Err(Outside::Missing));
        assert_eq!(rels(&root, "nothing/*"), Err(Outside::Missing));
        assert_eq!(rels(&root, "../*.txt"), Err(Outside::Escapes));
        assert_eq!(rels(&root, "/etc/*"), Err(Outside::Escapes));
        symlink("../../outside.txt", root.join("files/link.txt")).unwrap();
        assert_eq!(rels(&root, "files/*.txt"), Err(Outside::Escapes));
    }

    #[test]
    fn bad_globs_are_found_before_expanding() {
        assert!(check("files/[a.txt").is_err());
        assert!(check("files/**/*.txt").is_ok());
    }
}
