//! Applies the pipelines of one command — one, or a graph of several — over one or more
//! engines, and publishes the indexes of multi-platform pipelines. A single pipeline is a
//! graph of one: there is no other apply path.
//!
//! [`Scheduler`] (`scheduler.rs`) is the state machine: which build is ready, where it goes,
//! what a finish or a failure changes, when a multi-platform pipeline's index is published.
//! [`run`] (`drive.rs`) drives it: it starts the applies and publications it decides on, waits
//! for them, and reports everything as [`Event`]s (to each build's sink, each multi-platform
//! pipeline's sink and the run's sink), never by printing. Everything runs in ONE task: the
//! [`Engine`] futures are not `Send`.
//!
//! A build starts when its producer (if any) succeeded and a job slot is free (`--jobs`).
//! It is placed on the least loaded reachable engine; a dependent that is not on its
//! producer's engine pulls the producer's published image (`pull = always`, so this run's
//! image, never a stale copy), and one whose producer publishes nothing runs on the
//! producer's engine. A multi-platform pipeline's indexes are published as soon as all its
//! builds succeeded; one failed build publishes nothing of it.
//!
//! Failure policy: `fail_fast` (default) starts nothing new after a failure and lets the
//! running pipelines finish; `keep_going` goes on with everything that does not depend on the
//! failure. Dependents of a failed pipeline are skipped. An engine that stops answering fails
//! only the pipelines on it: it gets no new work, and the failure does not stop the others.
//! An interrupt stops everything, publications included.

mod drive;
mod scheduler;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::error::ExitStatus;
#[cfg(doc)]
use crate::execute::events::Event;
pub(crate) use crate::execute::events::Status;
use crate::execute::{Applied, Options, Pushed};
use crate::graph::{Dependency, Graph};
use crate::model::{Pipeline, PullPolicy};
use crate::plan::platforms::Group;
use crate::reference::ImageRef;

pub(crate) use drive::{run, Sinks};
pub(crate) use scheduler::Scheduler;

/// What every apply of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Pipelines applied at once.
    pub(crate) jobs: usize,
    pub(crate) fail_fast: bool,
    /// The executor's options.
    pub(crate) options: Options,
}

/// `--jobs` when not given: four pipelines per engine (they mostly wait on the engine).
pub(crate) fn default_jobs(engines: usize) -> usize {
    4 * engines.max(1)
}

/// A build of the run: its index among the run's builds (command-line order, one per
/// platform), as in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct BuildId(pub(crate) usize);

/// An engine of the run: its index among the run's engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EngineId(pub(crate) usize);

/// A multi-platform pipeline of the run: its index among the run's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupId(pub(crate) usize);

/// What one run applies: the builds, their graph, the multi-platform pipelines whose indexes
/// it publishes, and the names its containers get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run<'a> {
    pub(crate) builds: &'a [Pipeline],
    pub(crate) graph: &'a Graph,
    pub(crate) groups: &'a [Group],
    /// By build: the prefix of the names of every container it creates (see [`run_names`]).
    pub(crate) run_names: &'a [String],
}

/// The container name prefix of each build of a run: `pipeline-NAME-RUNID` (see
/// [`crate::execute::run_name`]), and the build's index when there are several.
pub(crate) fn run_names(builds: &[Pipeline]) -> Vec<String> {
    let id = crate::execute::run_id();
    builds
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = crate::execute::run_name(&p.name, &id);
            if builds.len() > 1 {
                format!("{name}{i:x}")
            } else {
                name
            }
        })
        .collect()
}

/// The result of one build.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    /// The engine it ran on.
    pub(crate) engine: Option<EngineId>,
    pub(crate) exit: Option<ExitStatus>,
    /// The error, or why it was skipped / not started.
    pub(crate) detail: Option<String>,
    pub(crate) applied: Option<Applied>,
    /// Offsets from the start of the run.
    pub(crate) started: Option<Duration>,
    pub(crate) finished: Option<Duration>,
}

impl Outcome {
    /// A build that never ran on an engine.
    fn not_run(status: Status, detail: String) -> Self {
        Self {
            status,
            engine: None,
            exit: None,
            detail: Some(detail),
            applied: None,
            started: None,
            finished: None,
        }
    }
}

/// The result of publishing one multi-platform pipeline's indexes.
#[derive(Debug, Clone)]
pub(crate) struct IndexOutcome {
    pub(crate) status: Status,
    pub(crate) exit: Option<ExitStatus>,
    /// The error, or why nothing was published.
    pub(crate) detail: Option<String>,
    /// The tags that hold the index (pushed or up to date), when publishing finished.
    pub(crate) pushed: Vec<Pushed>,
}

/// The result of the whole run.
#[derive(Debug)]
pub(crate) struct Summary {
    /// By build (command-line order).
    pub(crate) outcomes: Vec<Outcome>,
    /// By multi-platform pipeline.
    pub(crate) indexes: Vec<IndexOutcome>,
    /// Success, the status of the first failure (a build or a publication), or the signal's.
    pub(crate) exit: ExitStatus,
    pub(crate) elapsed: Duration,
}

/// How a started build gets its base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BaseSource {
    /// As its file says.
    AsWritten,
    /// Its producer tagged it in this engine in this run.
    SameEngine { producer: BuildId },
    /// Pulled from where its producer pushed it.
    Pull { producer: BuildId, from: String },
}

/// What the scheduler decided for the next ready build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Start {
        pipeline: BuildId,
        engine: EngineId,
        base: BaseSource,
    },
    /// It cannot run anywhere (its producer's engine is gone, or every engine is).
    Refused { pipeline: BuildId, why: String },
}

/// How a started build (or a publication) finished, as the scheduler needs to know it.
#[derive(Debug, Clone)]
pub(crate) enum Finish {
    Succeeded(Applied),
    Failed {
        exit: ExitStatus,
        detail: String,
        /// Why its engine no longer answers, when it does not.
        lost: Option<String>,
    },
}

/// What a finish changed beyond the build itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Consequences {
    /// Builds now skipped because they build on the failed one, and why.
    pub(crate) skipped: Vec<(BuildId, String)>,
    /// The engine found unreachable by this finish (first time only).
    pub(crate) lost_engine: Option<(EngineId, String)>,
    /// `--fail-fast` stops starting new builds, for this reason.
    pub(crate) stopping: Option<String>,
    /// A multi-platform pipeline whose builds all succeeded: its indexes are published now.
    pub(crate) publish: Option<GroupId>,
}

/// Points `p` at the image its producer pushed to `from`, with that push's credentials when
/// `from` is not the reference `p` names, pulled every time: the producer's newest push, never
/// a stale copy of the same tag.
pub(crate) fn pull_base(p: &mut Pipeline, d: &Dependency, from: &str) {
    if let Ok(r) = ImageRef::parse(from) {
        if r.to_string() != p.base.image.to_string() {
            p.base.login.clone_from(&d.login);
        }
        p.base.image = r;
    }
    p.base.pull = PullPolicy::Always;
}
