//! Cache keys. A key covers everything that can change an image's content: the parent's key
//! (down to the base image id) and the rendered step (command, env, user, workdir, secret
//! names; for copies the content, mode and owner of every file, never mtimes). Secret values
//! and step names are never part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::{tree_digest, tree_digest_of, TreeDigest};
use crate::model::{Action, Commit, Network, Step};

/// The cache-relevant inputs of one step, as a digest per field so that a miss can say which
/// input changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StepInputs {
    pub(crate) fields: BTreeMap<String, String>,
    /// For a copy: what its content digest was computed from, entry by entry, so that the
    /// archive can be checked against it while it is sent. Never stored.
    #[serde(skip)]
    pub(crate) copied: Option<Arc<TreeDigest>>,
    /// For a step with read-only mounts: each mount's content digest, so that a folder that
    /// changes while the step runs fails it. Never stored.
    #[serde(skip)]
    pub(crate) mounted: Vec<Arc<TreeDigest>>,
}

/// Inputs are equal when their digests are.
impl PartialEq for StepInputs {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for StepInputs {}

impl StepInputs {
    pub(crate) fn of(step: &Step) -> std::io::Result<Self> {
        let mut fields = BTreeMap::new();
        let mut copied = None;
        let mut put = |k: &str, v: String| {
            fields.insert(k.to_string(), v);
        };
        match &step.action {
            Action::Run(cmd) => put("command", digest_json(&cmd.argv())),
            Action::Copy(c) => {
                // From another image: its id and the path; else the content itself.
                match &c.from {
                    Some(from) => put("copied from", digest_json(&(&from.image, &from.src))),
                    None => {
                        let tree = tree_digest(c)?;
                        put("copied content", tree.hex());
                        copied = Some(Arc::new(tree));
                    }
                }
                put("copy destination", digest_json(&c.dest));
                put("mode", digest_json(&c.mode));
                put("owner", digest_json(&c.owner));
                // Only when given, so that the keys of numeric owners stay as they were. The
                // name resolves in the image, which the previous key already fixes.
                if let Some(name) = &c.owner_name {
                    put("owner name", digest_json(name));
                }
            }
        }
        put("env", digest_json(&step.env));
        put("user", digest_json(&step.user));
        put("workdir", digest_json(&step.workdir));
        put("secrets", digest_json(&step.secrets));
        // The container options only when set, so that the keys of steps without them stay
        // as they were. A cache mount's content never counts (it is a cache: later applies
        // change it), but its path does, as a tmpfs path does: what the step writes there
        // stays out of the image, and what the image had there is hidden from the step. The
        // network counts too: a step without one may fail, or do something else, where one
        // with a network succeeds. A read-only mount counts by its content, as a copy does.
        let o = &step.container;
        let mut mounted = Vec::new();
        if !o.caches.is_empty() {
            let mut paths: Vec<&str> = o.caches.iter().map(|c| c.path.as_str()).collect();
            paths.sort_unstable();
            put("cache paths", digest_json(&paths));
        }
        if !o.mounts.is_empty() {
            let mut described = Vec::new();
            for m in &o.mounts {
                let tree = tree_digest_of(&m.src)?;
                described.push((m.dest.clone(), tree.hex()));
                mounted.push(Arc::new(tree));
            }
            described.sort();
            put("mounted content", digest_json(&described));
        }
        if !o.tmpfs.is_empty() {
            let mut paths = o.tmpfs.clone();
            paths.sort();
            put("tmpfs", digest_json(&paths));
        }
        if o.network != Network::Default {
            put(
                "network",
                digest_json(&format!("{:?}", o.network).to_lowercase()),
            );
        }
        Ok(Self {
            fields,
            copied,
            mounted,
        })
    }

    /// Names of the fields that differ from `old`.
    pub(crate) fn changed_since(&self, old: &StepInputs) -> Vec<String> {
        let mut names: Vec<String> = self
            .fields
            .iter()
            .filter(|(k, v)| old.fields.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        names.extend(
            old.fields
                .keys()
                .filter(|k| !self.fields.contains_key(*k))
                .cloned(),
        );
        names
    }
}

/// One of the tool's cache images, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheImage {
    pub(crate) id: String,
    pub(crate) parent: String,
    /// Cache keys this image is tagged with.
    pub(crate) keys: Vec<String>,
    pub(crate) created: i64,
}

/// The cache tag that points at the image the newest apply of a pipeline produced:
/// `last-` and a digest of the pipeline's name. `pipeline gc` keeps what these point to.
pub(crate) fn last_tag(pipeline: &str) -> String {
    format!("{LAST_PREFIX}{}", &hash(&["pipeline", pipeline])[..24])
}

pub(crate) const LAST_PREFIX: &str = "last-";

/// How the tag of an entry's signature ends: `KEY.sig` (a key is hex, so no key ends so).
pub(crate) const SIGNATURE_SUFFIX: &str = ".sig";

/// The tag of the signature of the remote entry `key`.
pub(crate) fn signature_tag(key: &str) -> String {
    format!("{key}{SIGNATURE_SUFFIX}")
}

/// The key of the base image: the start of every chain.
pub(crate) fn base_key(base_image_id: &str) -> String {
    hash(&["pipeline-cache-v1", base_image_id])
}

/// The key of the base image for a build that names its platform: the platform is part of
/// every key of the chain, so two platforms never share an entry.
pub(crate) fn platform_base_key(base_image_id: &str, platform: &str) -> String {
    hash(&["pipeline-cache-v1", base_image_id, platform])
}

/// The key after a step, given the key before it.
pub(crate) fn step_key(parent: &str, inputs: &StepInputs) -> String {
    hash(&[
        parent,
        &serde_json::to_string(&inputs.fields).unwrap_or_default(),
    ])
}

/// The key of the committed image: all steps plus the commit metadata and config.
pub(crate) fn commit_key(last_step_key: &str, commit: &Commit) -> String {
    let config = &commit.config;
    let meta = serde_json::json!({
        "author": commit.author, "message": commit.message,
        "cmd": config.cmd, "entrypoint": config.entrypoint, "env": config.env, "labels": config.labels,
        "expose": config.expose, "user": config.user, "workdir": config.workdir, "volumes": config.volumes,
    });
    // Later keys only when set, so that the keys of files without them stay as they were.
    let mut meta = meta;
    for (key, value) in [
        ("healthcheck", serde_json::to_value(&config.healthcheck)),
        ("stop_signal", serde_json::to_value(&config.stop_signal)),
        ("shell", serde_json::to_value(&config.shell)),
        ("onbuild", serde_json::to_value(&config.onbuild)),
    ] {
        match value {
            Ok(serde_json::Value::Null) | Err(_) => {}
            Ok(v) => {
                meta[key] = v;
            }
        }
    }
    hash(&[last_step_key, "commit", &meta.to_string()])
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

fn digest_json<T: Serialize>(v: &T) -> String {
    hash(&[&serde_json::to_string(v).unwrap_or_default()])[..16].to_string()
}

/// What a checkpoint holds: its pipeline, its steps and a digest of each step's inputs, so that
/// a later miss can say which input changed. The digests are kept in the user's [`NoteStore`],
/// never in the image: anything derived from step inputs (an env value, a command) would be
/// published with it. The image's commit comment only names the steps ([`Self::to_comment`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointNote {
    pub(crate) pipeline: String,
    /// 1-based index of the first step the checkpoint holds.
    pub(crate) first: usize,
    pub(crate) steps: Vec<NotedStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NotedStep {
    pub(crate) name: String,
    pub(crate) inputs: StepInputs,
}

/// Longest list of step names in a checkpoint's comment.
const COMMENT_NAMES: usize = 200;

impl CheckpointNote {
    /// The checkpoint's commit comment, what `docker history` shows, for people:
    /// `pipeline NAME: steps 2-3 (install vim; copy vimrc)`. Step names only: nothing in it is
    /// derived from a step's inputs.
    pub(crate) fn to_comment(&self) -> String {
        format!(
            "pipeline {}: {}",
            one_line(&self.pipeline),
            self.steps_text()
        )
    }

    /// The steps it holds, for people: `steps 2-3 (install vim; copy vimrc)`.
    pub(crate) fn steps_text(&self) -> String {
        let last = self.first + self.steps.len().max(1) - 1;
        let range = if last == self.first {
            format!("step {}", self.first)
        } else {
            format!("steps {}-{last}", self.first)
        };
        let names = self
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let mut names: String = names
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if names.chars().count() > COMMENT_NAMES {
            names = names.chars().take(COMMENT_NAMES - 1).collect::<String>() + "…";
        }
        format!("{range} ({names})")
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What a checkpoint's commit comment says: its pipeline and the steps it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointComment {
    pub(crate) pipeline: String,
    pub(crate) first: usize,
    pub(crate) last: usize,
}

/// The comment of checkpoints written before their notes moved out of the image.
const LEGACY_PREFIX: &str = "pipeline checkpoint v1 ";

impl CheckpointComment {
    /// Reads [`CheckpointNote::to_comment`]'s format (and the older JSON one); `None` for any
    /// other comment, such as a final image's commit message.
    pub(crate) fn parse(comment: &str) -> Option<Self> {
        if let Some(json) = comment.strip_prefix(LEGACY_PREFIX) {
            let note: CheckpointNote = serde_json::from_str(json).ok()?;
            return Some(Self {
                last: note.first + note.steps.len().max(1) - 1,
                pipeline: note.pipeline,
                first: note.first,
            });
        }
        let rest = comment.strip_prefix("pipeline ")?;
        // The first `: step` followed by a step range ends the pipeline name.
        rest.match_indices(": step").find_map(|(at, _)| {
            let after = &rest[at + ": step".len()..];
            let (range, tail) = if let Some(r) = after.strip_prefix("s ") {
                r.split_once(' ').unwrap_or((r, ""))
            } else {
                after
                    .strip_prefix(' ')?
                    .split_once(' ')
                    .unwrap_or((&after[1..], ""))
            };
            if !(tail.is_empty() || tail.starts_with('(')) {
                return None;
            }
            let (first, last) = match range.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let n = range.parse().ok()?;
                    (n, n)
                }
            };
            Some(Self {
                pipeline: rest[..at].to_string(),
                first,
                last,
            })
        })
    }
}

/// The checkpoint notes of one user: a small JSON file per checkpoint image in
/// `$XDG_CACHE_HOME/pipeline/notes/` (else `~/.cache/pipeline/notes/`). Written by apply, read by
/// plan to explain a miss, pruned by gc with the images it removes. Without it, plan only says
/// a step is not in the cache.
#[derive(Debug, Clone)]
pub(crate) struct NoteStore {
    dir: PathBuf,
}

impl NoteStore {
    /// The current user's store; `None` when neither `XDG_CACHE_HOME` nor `HOME` is set.
    pub(crate) fn user() -> Option<Self> {
        let absolute = |v: std::ffi::OsString| {
            let p = PathBuf::from(v);
            p.is_absolute().then_some(p)
        };
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .and_then(absolute)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(absolute)
                    .map(|h| h.join(".cache"))
            })?;
        Some(Self::at(cache.join("pipeline").join("notes")))
    }

    pub(crate) fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of an image: its id's hex digits (`sha256:` left out).
    fn path(&self, image: &str) -> Option<PathBuf> {
        let hex = image.strip_prefix("sha256:").unwrap_or(image);
        let ok =
            !hex.is_empty() && hex.len() <= 128 && hex.chars().all(|c| c.is_ascii_alphanumeric());
        ok.then(|| self.dir.join(format!("{hex}.json")))
    }

    /// Records the note of a checkpoint image (readable by the user only).
    pub(crate) fn write(&self, image: &str, note: &CheckpointNote) -> std::io::Result<()> {
        let path = self.path(image).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an image id")
        })?;
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
        dirs.create(&self.dir)?;
        // Written aside and renamed, so a reader never sees half a file.
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(note).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    }

    pub(crate) fn read(&self, image: &str) -> Option<CheckpointNote> {
        serde_json::from_slice(&std::fs::read(self.path(image)?).ok()?).ok()
    }

    /// Forgets an image's note (gone already is fine).
    pub(crate) fn remove(&self, image: &str) {
        if let Some(path) = self.path(image) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a pipeline's applies put in a remote cache repository, kept there beside the entries
/// (under the pipeline's `last-` tag), so that any machine can collect that repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RemoteIndex {
    pub(crate) pipeline: String,
    /// The keys of the newest apply: what `gc --remote` keeps.
    pub(crate) newest: BTreeSet<String>,
    /// Every key the pipeline's applies pushed since the last collection.
    pub(crate) owned: BTreeSet<String>,
}

impl RemoteIndex {
    /// The index after an apply that used `keys`.
    pub(crate) fn after_apply(
        previous: Option<RemoteIndex>,
        pipeline: &str,
        keys: &[String],
    ) -> Self {
        let mut owned = previous.map(|p| p.owned).unwrap_or_default();
        owned.extend(keys.iter().cloned());
        RemoteIndex {
            pipeline: pipeline.to_string(),
            newest: keys.iter().cloned().collect(),
            owned,
        }
    }
}

/// What `gc --remote` does with one cache tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteVerdict {
    /// Listed by no pipeline's newest apply: deleted (with every tag of its manifest).
    Delete,
    /// Its manifest is also under a tag that is kept: deleting it would delete that tag.
    Shared { with: String },
    /// An index under another tag (a published multi-platform image) lists its manifest:
    /// deleting it would break that index.
    Referenced { by: String },
}

/// What a remote cache repository holds, as `gc --remote` read it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RemoteHoldings {
    /// The pipelines' indexes (under their `last-` tags).
    pub(crate) indexes: Vec<RemoteIndex>,
    /// Every other tag, with its manifest digest.
    pub(crate) digests: BTreeMap<String, String>,
    /// Every manifest digest an index (under any tag) lists, with that tag.
    pub(crate) referenced: BTreeMap<String, String>,
}

impl RemoteHoldings {
    /// The tags the indexes own (with their signatures' tags), and those the newest applies
    /// use (likewise).
    fn owned_and_kept(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let with_signatures = |keys: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
            keys.flat_map(|k| [k.clone(), signature_tag(k)]).collect()
        };
        let owned = with_signatures(&mut self.indexes.iter().flat_map(|i| &i.owned));
        let kept = with_signatures(&mut self.indexes.iter().flat_map(|i| &i.newest));
        (owned, kept)
    }

    /// How many tags are neither an index nor owned by one (another tool's, a user's, or of
    /// pipelines that never wrote an index): left alone.
    pub(crate) fn unknown(&self) -> usize {
        let (owned, _) = self.owned_and_kept();
        self.digests.keys().filter(|t| !owned.contains(*t)).count()
    }
}

/// Which tags of a remote cache repository go: those some pipeline's index owns (an entry,
/// or its signature) and no pipeline's newest apply uses. A manifest that a tag that stays
/// also names, or that an index under any tag lists, stays: deleting it would take that tag
/// or break that index. Tags no index owns are left alone.
pub(crate) fn remote_unused(held: &RemoteHoldings) -> Vec<(String, RemoteVerdict)> {
    let (owned, kept) = held.owned_and_kept();
    let going: BTreeSet<&String> = held
        .digests
        .keys()
        .filter(|t| owned.contains(*t) && !kept.contains(*t))
        .collect();
    let verdict = |tag: &String| {
        let digest = &held.digests[tag];
        let shared = held
            .digests
            .iter()
            .find(|(other, d)| *d == digest && !going.contains(other));
        match (shared, held.referenced.get(digest)) {
            (Some((other, _)), _) => RemoteVerdict::Shared {
                with: other.clone(),
            },
            (None, Some(by)) => RemoteVerdict::Referenced { by: by.clone() },
            (None, None) => RemoteVerdict::Delete,
        }
    };
    let (signatures, entries): (Vec<&String>, Vec<&String>) =
        going.iter().partition(|t| t.ends_with(SIGNATURE_SUFFIX));
    let mut out: Vec<(String, RemoteVerdict)> = entries
        .into_iter()
        .map(|t| (t.clone(), verdict(t)))
        .collect();
    // A signature goes only with its entry.
    let deleted: BTreeSet<String> = out
        .iter()
        .filter(|(_, v)| *v == RemoteVerdict::Delete)
        .map(|(t, _)| signature_tag(t))
        .collect();
    out.extend(
        signatures
            .into_iter()
            .filter(|t| deleted.contains(*t))
            .map(|t| (t.clone(), verdict(t))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(pipeline: &str, first: usize, names: &[&str]) -> CheckpointNote {
        CheckpointNote {
            pipeline: pipeline.into(),
            first,
            steps: names
                .iter()
                .map(|n| NotedStep {
                    name: n.to_string(),
                    inputs: StepInputs {
                        fields: [("command".to_string(), "0123456789abcdef".to_string())].into(),
                        copied: None,
                        mounted: Vec::new(),
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn a_checkpoint_comment_names_pipeline_and_steps_and_reads_back() {
        let two = note("vim", 2, &["install vim", "copy vimrc"]);
        assert_eq!(
            two.to_comment(),
            "pipeline vim: steps 2-3 (install vim; copy vimrc)"
        );
        assert_eq!(
            CheckpointComment::parse(&two.to_comment()),
            Some(CheckpointComment {
                pipeline: "vim".into(),
                first: 2,
                last: 3
            })
        );
        let odd = note("a: step b", 1, &["x: steps 7-9 (y)\nz"]);
        let comment = odd.to_comment();
        assert_eq!(comment, "pipeline a: step b: step 1 (x: steps 7-9 (y) z)");
        let parsed = CheckpointComment::parse(&comment).unwrap();
        assert_eq!(
            (parsed.pipeline.as_str(), parsed.first, parsed.last),
            ("a: step b", 1, 1)
        );
        // A final image's message is no checkpoint; the old JSON comment still reads.
        assert_eq!(CheckpointComment::parse("debian with vim 1.1"), None);
        assert_eq!(CheckpointComment::parse("pipeline x: stepping out"), None);
        let legacy = format!("{LEGACY_PREFIX}{}", serde_json::to_string(&two).unwrap());
        assert_eq!(CheckpointComment::parse(&legacy).map(|c| c.last), Some(3));
    }

    #[test]
    fn long_names_are_shortened_and_no_input_digest_reaches_the_comment() {
        let names: Vec<String> = (0..50).map(|i| format!("step number {i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let comment = note("p", 1, &names).to_comment();
        assert!(comment.chars().count() < 260, "{comment}");
        assert!(comment.starts_with("pipeline p: steps 1-50 (step number 0; "));
        assert!(!comment.contains("0123456789abcdef"));
    }

    #[test]
    fn the_note_store_keeps_one_file_per_image_and_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = NoteStore::at(dir.path().join("notes"));
        let id = "sha256:0a1b2c";
        assert!(store.read(id).is_none());
        store.write(id, &note("p", 1, &["a"])).unwrap();
        assert!(dir.path().join("notes/0a1b2c.json").is_file());
        assert_eq!(store.read(id).unwrap().steps[0].name, "a");
        store.remove(id);
        assert!(store.read(id).is_none());
        assert!(store.write("../escape", &note("p", 1, &["a"])).is_err());
    }

    #[test]
    fn remote_gc_deletes_only_owned_unused_tags_whose_manifest_no_kept_tag_shares() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let a = RemoteIndex {
            pipeline: "a".into(),
            newest: set(&["k3", "k4"]),
            owned: set(&["k1", "k2", "k3", "k4"]),
        };
        // b shares k2 (same first steps) and still uses it.
        let b = RemoteIndex {
            pipeline: "b".into(),
            newest: set(&["k2"]),
            owned: set(&["k2"]),
        };
        let digests: BTreeMap<String, String> = [
            ("k1", "d1"),
            ("k2", "d2"),
            ("k3", "d3"),
            ("k4", "d4"),
            ("k5", "d5"),
            ("old", "d3"),
            ("stranger", "d9"),
        ]
        .into_iter()
        .map(|(t, d)| (t.to_string(), d.to_string()))
        .collect();
        let held = |indexes: Vec<RemoteIndex>, referenced: &[(&str, &str)]| RemoteHoldings {
            indexes,
            digests: digests.clone(),
            referenced: referenced
                .iter()
                .map(|(d, t)| (d.to_string(), t.to_string()))
                .collect(),
        };
        // k1 goes; k2 is b's; k5 and stranger belong to no index.
        let plain = held(vec![a.clone(), b.clone()], &[]);
        assert_eq!(
            remote_unused(&plain),
            vec![("k1".to_string(), RemoteVerdict::Delete)]
        );
        assert_eq!(plain.unknown(), 3, "k5, old, stranger");
        // An owned tag whose manifest a kept tag shares stays.
        let mut a2 = a.clone();
        a2.owned.insert("old".into());
        assert_eq!(
            remote_unused(&held(vec![a2, b.clone()], &[])),
            vec![
                ("k1".to_string(), RemoteVerdict::Delete),
                (
                    "old".to_string(),
                    RemoteVerdict::Shared { with: "k3".into() }
                ),
            ]
        );
        // A manifest an index under another tag lists stays.
        assert_eq!(
            remote_unused(&held(vec![a.clone(), b.clone()], &[("d1", "release")])),
            vec![(
                "k1".to_string(),
                RemoteVerdict::Referenced {
                    by: "release".into()
                }
            )]
        );
        // An entry's signature goes with it, and stays with it.
        let mut signed = held(vec![a.clone(), b], &[]);
        for (k, d) in [("k1", "s1"), ("k3", "s3"), ("k5", "s5")] {
            signed.digests.insert(signature_tag(k), d.into());
        }
        assert_eq!(
            remote_unused(&signed),
            vec![
                ("k1".to_string(), RemoteVerdict::Delete),
                (signature_tag("k1"), RemoteVerdict::Delete),
            ]
        );
        assert_eq!(signed.unknown(), 4, "k5 and its signature, old, stranger");
        // The signature of an entry that stays (its manifest shared) stays too.
        signed.indexes[0].owned.insert("old".into());
        signed.indexes[0].owned.insert("k3x".into());
        signed.digests.insert("k3x".into(), "d3".into());
        signed.digests.insert(signature_tag("k3x"), "s3x".into());
        assert!(!remote_unused(&signed)
            .iter()
            .any(|(t, _)| t == &signature_tag("k3x")));
        let next = RemoteIndex::after_apply(Some(a), "a", &["k5".to_string()]);
        assert_eq!(next.newest, set(&["k5"]));
        assert_eq!(next.owned, set(&["k1", "k2", "k3", "k4", "k5"]));
    }
}
