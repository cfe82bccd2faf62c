//! Planning: pure and deterministic. From the pipeline and what the engine holds (base image
//! id, cache images, remote digests) to what apply would do, and why. What the engine holds
//! is read by `observe`, the one cache lookup `plan` and `apply` share.

pub(crate) mod needs;
pub(crate) mod platforms;

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::Serialize;

use crate::cache::CacheImage;
use crate::cache::{self, CheckpointNote, StepInputs};
use crate::model::Pipeline;

/// What the engine and registries hold, as far as the plan needs to know.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// The local base image id; `None` when it must be pulled first.
    pub(crate) base_id: Option<String>,
    /// What the cache serves (see `observe::lookup`).
    pub(crate) hit: Hit,
    /// Cache images, when a miss needs explaining.
    pub(crate) cache: Vec<CacheImage>,
    /// Checkpoint notes of cache images (by image id), used to explain misses.
    pub(crate) notes: HashMap<String, CheckpointNote>,
    /// What the publish tags hold, in the order written; `None` when no registry was asked
    /// (`--offline`).
    pub(crate) tags: Option<Vec<TagSeen>>,
    /// `repository@digest` records of the reusable final image.
    pub(crate) local_digests: Vec<String>,
    /// `--no-cache`.
    pub(crate) no_cache: bool,
    /// The remote cache, when the pipeline has one.
    pub(crate) cache_remote: Option<RemoteStatus>,
    /// The base id was read from its registry: the base is not in the engine.
    pub(crate) base_remote: bool,
    /// Whether apply can make the base present.
    pub(crate) base_pull: Option<BasePull>,
    /// What the first `run` step needs and the base lacks, when the base was looked at.
    pub(crate) lacks: Option<needs::Lack>,
}

/// One publish tag, as its registry answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagSeen {
    pub(crate) repository: String,
    pub(crate) tag: String,
    pub(crate) state: TagState,
}

/// What a registry said of a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TagState {
    /// The manifest digest it holds (`None`: no such tag); `published`: the image asked about
    /// is that manifest.
    Holds {
        digest: Option<String>,
        published: bool,
    },
    /// The registry refused the credentials.
    Refused(String),
    /// The registry did not answer.
    Unreachable(String),
}

/// The remote cache as the plan saw it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RemoteStatus {
    pub(crate) repository: String,
    pub(crate) mode: crate::model::RemoteMode,
    /// Why it could not be used (down, slow, refused credentials); the build goes on without it.
    pub(crate) error: Option<String>,
    /// Entries it held that no trusted writer signed, each with why: not used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ignored: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    pub(crate) pipeline: String,
    pub(crate) base: BasePlan,
    pub(crate) steps: Vec<StepPlan>,
    /// How many leading steps the cache serves, and the image that holds them.
    pub(crate) resume: Resume,
    pub(crate) commit: CommitPlan,
    pub(crate) publish: Vec<PushPlan>,
    /// Where apply would also write the image (`oci:PATH`, `tar:PATH`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) outputs: Vec<String>,
    /// The remote cache, when the pipeline has one.
    pub(crate) cache_remote: Option<RemoteStatus>,
    /// Why apply is certain to fail (empty when it is not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) fails: Vec<Blocker>,
}

/// Something apply is certain to fail on, found without running anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub(crate) enum Blocker {
    /// The base is not in the engine and may not be pulled.
    #[error("base image `{reference}` is not in the engine and `pull = \"never\"`")]
    BaseMissing { reference: String },
    /// The base must be pulled and its registry has no such manifest.
    #[error("base image `{reference}` must be pulled and its registry has no such manifest")]
    BaseNotInRegistry { reference: String },
    /// The base must be pulled and its registry refuses the credentials.
    #[error(
        "base image `{reference}` must be pulled and its registry refused the credentials ({why})"
    )]
    BaseRefused { reference: String, why: String },
    /// A publish target's registry refuses the credentials.
    #[error("the registry refused the credentials for `{repository}:{tag}`")]
    PublishRefused { repository: String, tag: String },
    /// The first `run` step needs a path the base lacks (a shell, `cat`, its program).
    #[error("{0}")]
    BaseLacks(needs::Lack),
}

/// What the base's registry said of a base that apply must pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BasePull {
    /// The engine holds the base and apply uses it as it is.
    NotNeeded,
    /// Apply pulls it; the registry has it, or could not be asked (then apply may still
    /// succeed).
    Possible,
    /// Apply would need it and may not pull it (`pull = "never"`).
    Forbidden,
    /// Apply pulls it and its registry has no such manifest.
    NotInRegistry,
    /// Apply pulls it and its registry refuses the credentials.
    Refused(String),
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BasePlan {
    pub(crate) reference: String,
    pub(crate) id: Option<String>,
    pub(crate) pull: bool,
    /// The lock's entry for the base as the file writes it, beside what it resolves to now
    /// (`moved`), when a lock beside the files has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lock: Option<crate::lockfile::LockSeen>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepPlan {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) key: Option<String>,
    #[serde(flatten)]
    pub(crate) status: StepStatus,
    /// For a cached step: `local` (the engine) or `remote` (pulled from the remote cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<Source>,
    /// The step's cache mounts, read-only mounts, tmpfs folders and network, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) options: Vec<String>,
    /// For a copy out of another image: that image, as plan found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) copies_from: Option<CopySource>,
}

/// The image a copy step reads from: `from` as written, the pipeline of the run that makes it
/// (if one does), and its image id (`None`: to be pulled, or made new by that pipeline first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CopySource {
    pub(crate) from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pipeline: Option<String>,
    pub(crate) image: Option<String>,
    /// The reference apply reads, when `--locked` pinned `from` to a digest (`repo@sha256:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pinned: Option<String>,
    /// The lock's entry for `from`, beside what it resolves to now (`moved`), when a lock
    /// beside the files has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lock: Option<crate::lockfile::LockSeen>,
}

impl CopySource {
    /// The copy's source of step `s`, if it copies from an image.
    fn of(s: &crate::model::Step) -> Option<Self> {
        let crate::model::Action::Copy(c) = &s.action else {
            return None;
        };
        let from = c.from.as_ref()?;
        let pinned = from
            .reference
            .as_ref()
            .map(ToString::to_string)
            .filter(|r| from.pipeline.is_none() && *r != from.text);
        Some(Self {
            from: from.text.clone(),
            pipeline: from.pipeline.clone(),
            image: from.image.clone(),
            pinned,
            lock: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum StepStatus {
    Cached,
    Run { reason: String },
}

/// What the cache serves for a chain of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The longest cached prefix of the steps.
    pub(crate) resume: Resume,
    /// The final image, when nothing that goes into it changed.
    pub(crate) image: Option<String>,
    /// The remote entry that serves the hit, when it is not in the engine yet.
    pub(crate) remote: Option<RemoteHit>,
}

impl Hit {
    /// Where the hit comes from; `None` for a miss.
    pub(crate) fn source(&self) -> Option<Source> {
        if self.remote.is_some() {
            Some(Source::Remote)
        } else if self.image.is_some() || self.resume.image.is_some() {
            Some(Source::Local)
        } else {
            None
        }
    }
}

/// Where a cache hit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// The engine's own cache images.
    Local,
    /// The registry-backed cache: pulled before use.
    Remote,
}

/// An entry of the remote cache, checked against the base and the expected config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteHit {
    pub(crate) key: String,
    /// Its manifest digest in the cache repository.
    pub(crate) digest: String,
    /// Its image id (config digest): what the engine calls it once pulled.
    pub(crate) id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Resume {
    pub(crate) steps_cached: usize,
    /// `None`: start from the base image.
    pub(crate) image: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CommitPlan {
    pub(crate) key: Option<String>,
    /// The existing final image, when nothing that goes into it changed.
    pub(crate) image: Option<String>,
    /// Where that image is: `local` (the engine) or `remote` (the remote cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<Source>,
    pub(crate) tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PushPlan {
    pub(crate) repository: String,
    pub(crate) tag: String,
    pub(crate) status: PushStatus,
    /// Why the status is `unknown`: `offline`, or the registry did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PushStatus {
    New,
    Changed,
    UpToDate,
    Unknown,
    /// `plan --no-push`: apply would push nothing.
    Skipped,
}

impl Plan {
    /// The plan of `apply --no-push`: every publish tag skipped, and refused publish
    /// credentials no reason to fail.
    pub(crate) fn skip_publish(&mut self) {
        for p in &mut self.publish {
            p.status = PushStatus::Skipped;
            p.reason = None;
        }
        self.fails
            .retain(|b| !matches!(b, Blocker::PublishRefused { .. }));
    }

    /// True when apply would run, commit or push nothing.
    pub(crate) fn is_noop(&self) -> bool {
        self.commit.image.is_some()
            && self.steps.iter().all(|s| s.status == StepStatus::Cached)
            && self
                .publish
                .iter()
                .all(|p| matches!(p.status, PushStatus::UpToDate | PushStatus::Skipped))
    }
}

/// The chain of keys from the base image's id: one per step, then the commit key.
pub(crate) fn keys(p: &Pipeline, inputs: &[StepInputs], base_id: &str) -> (Vec<String>, String) {
    let mut key = match &p.platform {
        Some(pl) => cache::platform_base_key(base_id, &pl.to_string()),
        None => cache::base_key(base_id),
    };
    let mut out = Vec::with_capacity(inputs.len());
    for i in inputs {
        key = cache::step_key(&key, i);
        out.push(key.clone());
    }
    (out, cache::commit_key(&key, &p.commit))
}

/// The longest cached prefix of the chain.
pub(crate) fn resume(keys: &[String], cache: &[CacheImage], no_cache: bool) -> Resume {
    if no_cache {
        return Resume::default();
    }
    let by_key = index(cache);
    for (i, k) in keys.iter().enumerate().rev() {
        if let Some(id) = by_key.get(k.as_str()) {
            return Resume {
                steps_cached: i + 1,
                image: Some((*id).to_string()),
            };
        }
    }
    Resume::default()
}

fn index(cache: &[CacheImage]) -> HashMap<&str, &str> {
    cache
        .iter()
        .flat_map(|c| c.keys.iter().map(move |k| (k.as_str(), c.id.as_str())))
        .collect()
}

/// Cache images that hold the step after `resume`, newest first: the candidates that explain
/// why that step misses. Their notes are worth reading.
pub(crate) fn siblings<'a>(
    resume: &Resume,
    base_id: Option<&str>,
    cache: &'a [CacheImage],
) -> Vec<&'a CacheImage> {
    let parent = resume.image.as_deref().or(base_id);
    let mut out: Vec<_> = cache
        .iter()
        .filter(|c| Some(c.parent.as_str()) == parent)
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.created));
    out
}

/// The whole plan.
pub(crate) fn build(p: &Pipeline, inputs: &[StepInputs], obs: &Observed) -> Plan {
    let (keys, commit_key) = match obs.base_id.as_deref() {
        Some(id) => {
            let (keys, commit) = keys(p, inputs, id);
            (keys, Some(commit))
        }
        None => (Vec::new(), None),
    };
    let resume = obs.hit.resume.clone();
    let source = obs.hit.source();
    let remote_digest = obs.hit.remote.as_ref().map(|r| r.digest.clone());
    let first_reason = miss_reason(&p.name, inputs, obs, &resume);
    let steps = p
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepPlan {
            index: i + 1,
            name: s.name.clone(),
            key: keys.get(i).cloned(),
            source: (i < resume.steps_cached).then_some(source).flatten(),
            options: s.container.describe(),
            copies_from: CopySource::of(s),
            status: match i.cmp(&resume.steps_cached) {
                Ordering::Less => StepStatus::Cached,
                Ordering::Equal => StepStatus::Run {
                    reason: first_reason.clone(),
                },
                Ordering::Greater => StepStatus::Run {
                    reason: "follows a step that runs".into(),
                },
            },
        })
        .collect();
    let commit_image = obs.hit.image.clone();
    let publish = publish_plans(p, obs, commit_image.is_some(), remote_digest.as_ref());
    Plan {
        pipeline: p.name.clone(),
        base: BasePlan {
            reference: p.base.image.to_string(),
            id: obs.base_id.clone(),
            pull: obs.base_id.is_none()
                || p.base.pull == crate::model::PullPolicy::Always
                || (obs.base_remote && resume.image.is_none() && obs.hit.image.is_none()),
            lock: None,
        },
        steps,
        resume,
        commit: CommitPlan {
            key: commit_key,
            source: commit_image.is_some().then_some(source).flatten(),
            image: commit_image,
            tags: p.commit.tags.iter().map(|t| t.to_string()).collect(),
        },
        fails: blockers(p, obs, &publish),
        publish,
        outputs: p.outputs.iter().map(ToString::to_string).collect(),
        cache_remote: obs.cache_remote.clone(),
    }
}

/// What apply is certain to fail on: a base it cannot make present or that lacks what the
/// first `run` step needs, a publish target that refuses the credentials.
fn blockers(p: &Pipeline, obs: &Observed, publish: &[PushPlan]) -> Vec<Blocker> {
    let reference = p.base.image.to_string();
    let mut out = match &obs.base_pull {
        Some(BasePull::Forbidden) => vec![Blocker::BaseMissing { reference }],
        Some(BasePull::NotInRegistry) => vec![Blocker::BaseNotInRegistry { reference }],
        Some(BasePull::Refused(why)) => vec![Blocker::BaseRefused {
            reference,
            why: why.clone(),
        }],
        Some(BasePull::NotNeeded | BasePull::Possible) | None => Vec::new(),
    };
    out.extend(obs.lacks.clone().map(Blocker::BaseLacks));
    for (push, seen) in publish.iter().zip(obs.tags.iter().flatten()) {
        if let TagState::Refused(_) = seen.state {
            out.push(Blocker::PublishRefused {
                repository: push.repository.clone(),
                tag: push.tag.clone(),
            });
        }
    }
    out
}

/// How each publish tag would go: from what its registry holds, the image the commit would
/// reuse (`reused`) and its digests.
fn publish_plans(
    p: &Pipeline,
    obs: &Observed,
    reused: bool,
    remote_digest: Option<&String>,
) -> Vec<PushPlan> {
    let Some(tags) = &obs.tags else {
        return p
            .publish
            .iter()
            .flat_map(|t| {
                t.tags
                    .iter()
                    .map(move |tag| (t.repository.repository(), tag))
            })
            .map(|(repository, tag)| PushPlan {
                repository,
                tag: tag.clone(),
                status: PushStatus::Unknown,
                reason: Some("offline".to_string()),
            })
            .collect();
    };
    tags.iter()
        .map(|seen| {
            let (status, reason) = match &seen.state {
                TagState::Holds { digest: None, .. } => (PushStatus::New, None),
                TagState::Holds {
                    digest: Some(d),
                    published,
                } if reused
                    && (*published
                        || obs
                            .local_digests
                            .contains(&format!("{}@{d}", seen.repository))
                        || remote_digest == Some(d)) =>
                {
                    (PushStatus::UpToDate, None)
                }
                TagState::Holds { .. } => (PushStatus::Changed, None),
                TagState::Refused(_) => (
                    PushStatus::Unknown,
                    Some("the registry refused the credentials".to_string()),
                ),
                TagState::Unreachable(_) => (
                    PushStatus::Unknown,
                    Some("registry not reachable".to_string()),
                ),
            };
            PushPlan {
                repository: seen.repository.clone(),
                tag: seen.tag.clone(),
                status,
                reason,
            }
        })
        .collect()
}

/// Why the first uncached step must run.
fn miss_reason(pipeline: &str, inputs: &[StepInputs], obs: &Observed, resume: &Resume) -> String {
    if obs.no_cache {
        return "the cache is disabled (--no-cache)".into();
    }
    if obs.base_id.is_none() {
        return "the base image is not present yet".into();
    }
    let k = resume.steps_cached;
    let Some(current) = inputs.get(k) else {
        return String::new();
    };
    // Only this pipeline's earlier entries say what changed; another's would mislead.
    let own = siblings(resume, obs.base_id.as_deref(), &obs.cache)
        .into_iter()
        .filter_map(|s| obs.notes.get(&s.id))
        .filter(|n| n.pipeline == pipeline);
    for note in own {
        if note.first != k + 1 {
            continue;
        }
        if let Some(old) = note.steps.first() {
            let changed = current.changed_since(&old.inputs);
            if !changed.is_empty() {
                return format!("changed: {}", changed.join(", "));
            }
            // Same step, different grouping: the cached image holds later steps too.
            return "its cache entry holds later steps that changed".into();
        }
    }
    "not in the cache".into()
}
