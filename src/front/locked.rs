//! The lock beside the pipeline files: with `--locked`, every base the files take from outside
//! the run, and every image a copy reads from outside it, is used at exactly its locked
//! digest, and a missing or stale lock is refused; without it, a lock present is only
//! compared with the registries (`base moved`, `copy source moved`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::Engine;
use crate::error::CliError;
use crate::graph::Graph;
use crate::lockfile::{self, Kind, LockFile, LockSeen, LockedImage, LockedPlatform, Source};
use crate::model::{Action, Login, Pipeline, Platform};
use crate::reference::ImageRef;

/// The images the files take from outside the run, by kind and by reference as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct External {
    /// Bases no pipeline of the run makes.
    pub(crate) bases: BTreeMap<String, Used>,
    /// Images copies read from that no pipeline of the run makes.
    pub(crate) copies: BTreeMap<String, Used>,
}

impl External {
    /// Both kinds, bases first.
    pub(crate) fn all(&self) -> [(Kind, &BTreeMap<String, Used>); 2] {
        [(Kind::Base, &self.bases), (Kind::Copy, &self.copies)]
    }

    /// Whether any entry of either kind is `reference`.
    pub(crate) fn contains(&self, reference: &str) -> bool {
        self.all().iter().any(|(_, m)| m.contains_key(reference))
    }
}

/// The images the files take from outside the run: the bases no pipeline of the run makes, and
/// the images copies read from (a `from` that names no pipeline of the run), with the
/// pipelines that use each.
pub(crate) fn external(pipelines: &[Pipeline], graph: &Graph) -> External {
    let mut found = External::default();
    for (p, node) in pipelines.iter().zip(&graph.nodes) {
        if node.dependency.is_none() {
            let used = add(&mut found.bases, p.base.image.to_string(), &p.base.image, p);
            if used.login.is_none() {
                used.login.clone_from(&p.base.login);
            }
        }
        for (text, image) in copy_sources(p) {
            add(&mut found.copies, text.to_string(), image, p);
        }
    }
    found
}

/// The entry of `key` in `map`, with `p` among its users.
fn add<'m>(
    map: &'m mut BTreeMap<String, Used>,
    key: String,
    image: &ImageRef,
    p: &Pipeline,
) -> &'m mut Used {
    let used = map.entry(key).or_insert_with(|| Used {
        image: image.clone(),
        login: None,
        by: Vec::new(),
    });
    if !used.by.contains(&p.name) {
        used.by.push(p.name.clone());
    }
    used
}

/// The copies of `p` that read an image no pipeline of the run makes: `from` as written and
/// the reference.
fn copy_sources(p: &Pipeline) -> impl Iterator<Item = (&str, &ImageRef)> {
    p.steps.iter().filter_map(|s| match &s.action {
        Action::Copy(c) => {
            let from = c.from.as_ref().filter(|f| f.pipeline.is_none())?;
            Some((from.text.as_str(), from.reference.as_ref()?))
        }
        Action::Run(_) => None,
    })
}

/// One image reference, its registry credentials (a base's `login`), and the pipelines that
/// use it.
#[derive(Debug, Clone)]
pub(crate) struct Used {
    pub(crate) image: ImageRef,
    pub(crate) login: Option<Login>,
    pub(crate) by: Vec<String>,
}

/// The lock of `files` and where it is (`None` for the lock when there is none).
pub(crate) fn read(files: &[PathBuf]) -> Result<(PathBuf, Option<LockFile>), CliError> {
    let path = lockfile::path_for(files).map_err(CliError::Lock)?;
    let lock = lockfile::read(&path).map_err(CliError::Lock)?;
    Ok((path, lock))
}

/// `--locked`: the lock must exist, have an entry for every base and copy source the files use
/// and none other.
pub(crate) fn check<'a>(
    path: &Path,
    lock: Option<&'a LockFile>,
    used: &External,
) -> Result<&'a LockFile, CliError> {
    let shown = crate::diag::clean(&path.display().to_string());
    let Some(lock) = lock else {
        return Err(CliError::Lock(format!(
            "`{shown}` is missing: `--locked` uses the lock beside the pipeline files; run \
             `pipeline lock` and commit `{shown}`"
        )));
    };
    let mut problems = Vec::new();
    for (kind, map) in used.all() {
        let noun = kind.noun();
        let verb = match kind {
            Kind::Base => "used by",
            Kind::Copy => "copied from by",
        };
        for (reference, u) in map {
            if lock.entry(kind, reference).is_none() {
                problems.push(format!(
                    "`{shown}` has no entry for {noun} `{reference}` ({verb} {}): it is not in \
                     the lock file; run `pipeline lock` to add it",
                    u.by.join(", ")
                ));
            }
        }
        for b in lock.entries(kind) {
            if !map.contains_key(&b.reference) {
                let what = match kind {
                    Kind::Base => format!("`{}` is the base of", b.reference),
                    Kind::Copy => format!("copy source `{}` is copied from by", b.reference),
                };
                problems.push(format!(
                    "`{shown}` is stale: its entry for {what} no pipeline: run `pipeline lock` \
                     to drop it"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(lock)
    } else {
        Err(CliError::Lock(problems.join("\n")))
    }
}

/// Points every build whose base comes from outside the run at the locked image of its
/// platform (the build's, else the engine's), and every copy out of an image from outside the
/// run at the locked image of that platform too (else the entry's one image): `repo@MANIFEST`
/// for a registry entry; an engine entry must still be the engine's image under that
/// reference.
pub(crate) async fn pin<E: Engine>(
    builds: &mut [Pipeline],
    graph: &Graph,
    lock: &LockFile,
    engine: &E,
) -> Result<(), CliError> {
    let (os, arch) = engine.platform().await?;
    let engine_platform = Platform {
        os,
        arch,
        variant: None,
    };
    for (b, node) in builds.iter_mut().zip(&graph.nodes) {
        let name = b.name.clone();
        let platform = b.platform.clone().unwrap_or(engine_platform.clone());
        let reference = b.base.image.to_string();
        let entry = lock.entry(Kind::Base, &reference);
        if let (None, Some(entry)) = (&node.dependency, entry) {
            let locked = entry.for_platform(&platform);
            let pinned = pin_one(
                Kind::Base,
                entry,
                locked,
                &b.base.image,
                &platform,
                &name,
                engine,
            )
            .await?;
            if let Some(pinned) = pinned {
                b.base.image = pinned;
            }
        }
        for step in &mut b.steps {
            let Action::Copy(c) = &mut step.action else {
                continue;
            };
            let Some(from) = c.from.as_mut().filter(|f| f.pipeline.is_none()) else {
                continue;
            };
            let (Some(entry), Some(image)) = (lock.entry(Kind::Copy, &from.text), &from.reference)
            else {
                continue;
            };
            let locked = entry
                .for_platform(&platform)
                .or(match entry.platforms.as_slice() {
                    [one] => Some(one),
                    _ => None,
                });
            let pinned =
                pin_one(Kind::Copy, entry, locked, image, &platform, &name, engine).await?;
            if let Some(pinned) = pinned {
                from.reference = Some(pinned);
            }
        }
    }
    Ok(())
}

/// The reference that names `entry`'s (a `kind`) image `locked` of `platform`: `repo@MANIFEST` for a
/// registry entry; `None` for an engine entry, after checking that the engine still holds
/// that image under `image`.
async fn pin_one<E: Engine>(
    kind: Kind,
    entry: &LockedImage,
    locked: Option<&LockedPlatform>,
    image: &ImageRef,
    platform: &Platform,
    build: &str,
    engine: &E,
) -> Result<Option<ImageRef>, CliError> {
    let reference = &entry.reference;
    let Some(locked) = locked else {
        return Err(CliError::Lock(format!(
            "the lock has no image of `{reference}` for {platform} (`{build}`): run `pipeline \
             lock --update {reference}`"
        )));
    };
    if let (Source::Registry, Some(manifest)) = (entry.source, &locked.manifest) {
        let pinned = format!("{}@{manifest}", image.repository());
        return ImageRef::parse(&pinned)
            .map(Some)
            .map_err(|why| CliError::Lock(format!("the lock's `{pinned}`: {why}")));
    }
    let now = engine.inspect_image(reference).await?.map(|i| i.id);
    if now.as_deref() == Some(locked.config.as_str()) {
        return Ok(None);
    }
    Err(CliError::Lock(format!(
        "{} `{reference}` is locked to the engine's image {}, and the engine holds {}: load \
         that image, or run `pipeline lock --update {reference}`",
        kind.noun(),
        locked.config,
        now.as_deref().unwrap_or("none under that name")
    )))
}

/// Every entry of the lock that the files use, beside what its reference resolves to now
/// (`read = false`: not asked, `current` unknown).
pub(crate) async fn seen<E: Engine>(
    lock: &LockFile,
    used: &External,
    engine: &E,
    read: bool,
) -> Vec<LockSeen> {
    let mut seen = Vec::new();
    for (kind, map) in used.all() {
        for (reference, u) in map {
            if let Some(entry) = lock.entry(kind, reference) {
                let image = (&u.image, u.login.as_ref());
                seen.push(crate::observe::lock_seen(engine, kind, image, entry, read).await);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockfile::VERSION;
    use crate::testing::Folder;

    /// `maker` tags `made:1` on `tools:1`; `app` builds on `made:1` and copies out of `made:1`
    /// (made by the run) and `tools:1` (not).
    fn run() -> (Vec<Pipeline>, Graph) {
        let folder = Folder::new();
        let maker = folder.load(
            "maker",
            "[base]\nimage = \"tools:1\"\n[commit]\ntags = [\"made:1\"]\n",
        );
        let app = folder.load(
            "app",
            "[base]\nimage = \"made:1\"\n\n[[step]]\ncopy = { from = \"made:1\", src = \"/a\", dest = \"/a\" }\n\n\
             [[step]]\ncopy = { from = \"tools:1\", src = \"/b\", dest = \"/b\" }\n",
        );
        let mut pipelines = vec![maker, app];
        assert!(crate::config::from::link(&mut pipelines).is_empty());
        let graph = crate::graph::build(&pipelines).unwrap();
        (pipelines, graph)
    }

    fn entry(reference: &str) -> LockedImage {
        LockedImage {
            reference: reference.into(),
            source: Source::Registry,
            index: None,
            platforms: Vec::new(),
        }
    }

    #[test]
    fn what_the_run_makes_is_not_locked_and_an_image_copies_read_from_is() {
        let (pipelines, graph) = run();
        let used = external(&pipelines, &graph);
        let keys = |m: &BTreeMap<String, Used>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&used.bases), ["tools:1"]);
        assert_eq!(keys(&used.copies), ["tools:1"]);
        assert_eq!(used.copies["tools:1"].by, ["app"]);
        assert_eq!(used.bases["tools:1"].by, ["maker"]);
    }

    #[test]
    fn locked_names_each_missing_or_stale_entry_of_either_kind() {
        let (pipelines, graph) = run();
        let used = external(&pipelines, &graph);
        let path = Path::new("pipeline.lock");
        let lock = |bases: &[&str], copies: &[&str]| LockFile {
            version: VERSION,
            bases: bases.iter().map(|r| entry(r)).collect(),
            copies: copies.iter().map(|r| entry(r)).collect(),
        };
        let cases: [(LockFile, &[&str]); 4] = [
            (lock(&["tools:1"], &["tools:1"]), &[]),
            (
                // A lock written before copies were locked.
                lock(&["tools:1"], &[]),
                &[
                    "no entry for copy source `tools:1` (copied from by app): it is not in the \
                   lock file; run `pipeline lock` to add it",
                ],
            ),
            (
                lock(&[], &["tools:1", "gone:1"]),
                &[
                    "no entry for base `tools:1` (used by maker)",
                    "its entry for copy source `gone:1` is copied from by no pipeline",
                ],
            ),
            (
                lock(&["tools:1", "made:1"], &["tools:1"]),
                &["its entry for `made:1` is the base of no pipeline"],
            ),
        ];
        for (lock, wants) in cases {
            let result = check(path, Some(&lock), &used);
            match (result, wants) {
                (Ok(_), []) => {}
                (Err(CliError::Lock(text)), wants) if !wants.is_empty() => {
                    assert_eq!(text.lines().count(), wants.len(), "{text}");
                    for w in wants {
                        assert!(text.contains(w), "{w} in:\n{text}");
                    }
                }
                (other, wants) => panic!("{wants:?}: {other:?}"),
            }
        }
    }
}
