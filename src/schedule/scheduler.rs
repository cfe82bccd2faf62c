//! The scheduling state of one run: a state machine with no I/O, tested on its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{
    BaseSource, BuildId, Consequences, Decision, EngineId, Finish, GroupId, IndexOutcome, Outcome,
    Status, Summary,
};
use crate::error::{ExitStatus, Signal};
use crate::execute::{Applied, Pushed};
use crate::graph::{Dependency, Graph};
use crate::model::Platform;

/// The scheduling state of one run.
#[derive(Debug)]
pub(crate) struct Scheduler<'a> {
    graph: &'a Graph,
    names: Vec<String>,
    engines: usize,
    jobs: usize,
    fail_fast: bool,
    outcomes: Vec<Option<Outcome>>,
    started: Vec<Option<(EngineId, Duration)>>,
    running: usize,
    running_on: Vec<usize>,
    assigned: Vec<usize>,
    down: BTreeMap<EngineId, String>,
    first_failure: Option<ExitStatus>,
    stopping: Option<String>,
    interrupted: Option<Signal>,
    t0: Instant,
    /// The platform each build is for (`None`: its engine's own).
    wants: Vec<Option<Platform>>,
    /// Each engine's own platform, when known.
    natives: Vec<Option<Platform>>,
    /// The builds of each multi-platform pipeline.
    groups: Vec<Vec<BuildId>>,
    /// How each multi-platform pipeline's publication ended (or why it never started).
    indexes: Vec<Option<IndexOutcome>>,
    /// Multi-platform pipelines whose publication is running.
    publishing: Vec<bool>,
}

impl<'a> Scheduler<'a> {
    pub(crate) fn new(
        graph: &'a Graph,
        names: Vec<String>,
        engines: usize,
        jobs: usize,
        fail_fast: bool,
    ) -> Self {
        let n = graph.nodes.len();
        Self {
            graph,
            names,
            engines,
            jobs: jobs.max(1),
            fail_fast,
            outcomes: vec![None; n],
            started: vec![None; n],
            running: 0,
            running_on: vec![0; engines],
            assigned: vec![0; engines],
            down: BTreeMap::new(),
            first_failure: None,
            stopping: None,
            interrupted: None,
            t0: Instant::now(),
            wants: Vec::new(),
            natives: Vec::new(),
            groups: Vec::new(),
            indexes: Vec::new(),
            publishing: Vec::new(),
        }
    }

    /// Places builds for a platform preferably on an engine of that platform: `wants` by
    /// build, `natives` by engine.
    pub(crate) fn prefer_native(
        &mut self,
        wants: Vec<Option<Platform>>,
        natives: Vec<Option<Platform>>,
    ) {
        self.wants = wants;
        self.natives = natives;
    }

    /// The multi-platform pipelines of the run, by their builds: each is published once all
    /// its builds succeeded.
    pub(crate) fn publish_groups(&mut self, groups: Vec<Vec<BuildId>>) {
        self.indexes = vec![None; groups.len()];
        self.publishing = vec![false; groups.len()];
        self.groups = groups;
    }

    /// True when build `i` would run on engine `e` by emulation.
    pub(crate) fn emulated(&self, i: BuildId, e: EngineId) -> bool {
        match (
            self.wants.get(i.0).and_then(Option::as_ref),
            self.natives.get(e.0).and_then(Option::as_ref),
        ) {
            (Some(w), Some(n)) => !w.matches(&n.os, &n.arch, n.variant.as_deref()),
            _ => false,
        }
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The next build to start, in graph order, while a job slot is free and nothing stops
    /// the run. A refused build is already recorded as failed (and its dependents skipped)
    /// when this returns it.
    pub(crate) fn next(&mut self) -> Option<Decision> {
        if self.running >= self.jobs || self.stopping.is_some() || self.interrupted.is_some() {
            return None;
        }
        let graph = self.graph;
        let succeeded =
            |j: usize| matches!(&self.outcomes[j], Some(o) if o.status == Status::Succeeded);
        let i = graph.order.iter().copied().find(|&i| {
            self.started[i].is_none()
                && self.outcomes[i].is_none()
                && graph.nodes[i]
                    .dependency
                    .as_ref()
                    .is_none_or(|d| succeeded(d.producer))
                && graph.nodes[i].copies_from.iter().all(|&j| succeeded(j))
        })?;
        let producer = graph.nodes[i].dependency.as_ref().map(|d| {
            let engine = self.outcomes[d.producer]
                .as_ref()
                .and_then(|o| o.engine)
                .expect("a succeeded producer ran on an engine");
            (d, engine)
        });
        let engine = match self.place(BuildId(i), producer) {
            Ok(e) => e,
            Err(why) => {
                self.first_failure.get_or_insert(ExitStatus::EngineFailed);
                self.outcomes[i] = Some(Outcome {
                    exit: Some(ExitStatus::EngineFailed),
                    finished: Some(self.now()),
                    ..Outcome::not_run(Status::Failed, why.clone())
                });
                self.skip_dependents(BuildId(i));
                return Some(Decision::Refused {
                    pipeline: BuildId(i),
                    why,
                });
            }
        };
        let base = match &producer {
            None => BaseSource::AsWritten,
            Some((d, pe)) if *pe == engine => BaseSource::SameEngine {
                producer: BuildId(d.producer),
            },
            Some((d, _)) => match &d.pull_from {
                Some(from) => BaseSource::Pull {
                    producer: BuildId(d.producer),
                    from: from.clone(),
                },
                None => unreachable!("an unpublished producer's dependents stay on its engine"),
            },
        };
        self.started[i] = Some((engine, self.now()));
        self.running += 1;
        self.running_on[engine.0] += 1;
        self.assigned[engine.0] += 1;
        Some(Decision::Start {
            pipeline: BuildId(i),
            engine,
            base,
        })
    }

    /// The engine build `i` goes to: its producer's when the producer publishes nothing,
    /// else the least loaded reachable one (a native one first).
    fn place(
        &self,
        i: BuildId,
        producer: Option<(&Dependency, EngineId)>,
    ) -> Result<EngineId, String> {
        match producer {
            Some((d, pe)) if d.pull_from.is_none() => match self.down.get(&pe) {
                Some(why) => Err(format!(
                    "it builds on `{}`, which is not published, so it must run on the engine of `{}`, and that engine is unreachable: {why}",
                    d.reference, self.graph.nodes[d.producer].name
                )),
                None => Ok(pe),
            },
            _ => (0..self.engines)
                .map(EngineId)
                .filter(|e| !self.down.contains_key(e))
                .min_by_key(|&e| {
                    let not_producer = producer.is_none_or(|(_, pe)| pe != e);
                    let emulated = self.emulated(i, e);
                    (
                        emulated,
                        self.running_on[e.0],
                        self.assigned[e.0],
                        not_producer,
                        e,
                    )
                })
                .ok_or_else(|| "no engine is reachable".to_string()),
        }
    }

    /// Records how a started build finished.
    pub(crate) fn finish(&mut self, i: BuildId, finish: Finish) -> Consequences {
        let (engine, start) = self.started[i.0].expect("only started builds finish");
        self.running -= 1;
        self.running_on[engine.0] -= 1;
        let mut out = Consequences::default();
        let finished = Some(self.now());
        match finish {
            Finish::Succeeded(applied) => {
                self.outcomes[i.0] = Some(Outcome {
                    status: Status::Succeeded,
                    engine: Some(engine),
                    exit: Some(ExitStatus::Success),
                    detail: None,
                    applied: Some(applied),
                    started: Some(start),
                    finished,
                });
                out.publish = self.ready_to_publish(i);
            }
            Finish::Failed { exit, detail, lost } => {
                // An engine that went away fails only its own builds, as an engine error.
                let lost = match (self.down.get(&engine), lost) {
                    (Some(why), _) => Some(why.clone()),
                    (None, Some(why)) => {
                        self.down.insert(engine, why.clone());
                        out.lost_engine = Some((engine, why.clone()));
                        Some(why)
                    }
                    (None, None) => None,
                };
                let (exit, detail) = match &lost {
                    Some(why) => (
                        ExitStatus::EngineFailed,
                        format!("its engine became unreachable ({why}): {detail}"),
                    ),
                    None => (exit, detail),
                };
                self.first_failure.get_or_insert(exit);
                self.outcomes[i.0] = Some(Outcome {
                    status: Status::Failed,
                    engine: Some(engine),
                    exit: Some(exit),
                    detail: Some(detail),
                    applied: None,
                    started: Some(start),
                    finished,
                });
                out.skipped = self.skip_dependents(i);
                self.skip_publication(i);
                if lost.is_none() {
                    out.stopping = self.stop_after(i.0);
                }
            }
        }
        out
    }

    /// `--fail-fast`: the first failure stops starting new builds; the reason, that once.
    fn stop_after(&mut self, failed: usize) -> Option<String> {
        if !self.fail_fast || self.stopping.is_some() {
            return None;
        }
        let why = format!("--fail-fast: `{}` failed", self.names[failed]);
        self.stopping = Some(why.clone());
        Some(why)
    }

    /// The multi-platform pipeline of build `i`, when all its builds succeeded now.
    fn ready_to_publish(&mut self, i: BuildId) -> Option<GroupId> {
        let g = self.groups.iter().position(|b| b.contains(&i))?;
        let all = self.groups[g]
            .iter()
            .all(|b| matches!(&self.outcomes[b.0], Some(o) if o.status == Status::Succeeded));
        if !all || self.indexes[g].is_some() || self.publishing[g] {
            return None;
        }
        self.publishing[g] = true;
        Some(GroupId(g))
    }

    /// A build of a multi-platform pipeline failed: nothing of that pipeline is published.
    fn skip_publication(&mut self, i: BuildId) {
        let Some(g) = self.groups.iter().position(|b| b.contains(&i)) else {
            return;
        };
        if self.indexes[g].is_none() && !self.publishing[g] {
            self.indexes[g] = Some(IndexOutcome {
                status: Status::Skipped,
                exit: None,
                detail: Some(format!(
                    "nothing published: its build `{}` failed",
                    self.names[i.0]
                )),
                pushed: Vec::new(),
            });
        }
    }

    /// Records how publishing a multi-platform pipeline's indexes ended: the tags it
    /// published, or the failure (and its exit status and detail).
    pub(crate) fn published(
        &mut self,
        g: GroupId,
        result: Result<Vec<Pushed>, (ExitStatus, String)>,
    ) -> Consequences {
        self.publishing[g.0] = false;
        let mut out = Consequences::default();
        self.indexes[g.0] = Some(match result {
            Ok(pushed) => IndexOutcome {
                status: Status::Succeeded,
                exit: Some(ExitStatus::Success),
                detail: None,
                pushed,
            },
            Err((exit, detail)) => {
                self.first_failure.get_or_insert(exit);
                if let Some(&first) = self.groups[g.0].first() {
                    out.stopping = self.stop_after(first.0);
                }
                IndexOutcome {
                    status: Status::Failed,
                    exit: Some(exit),
                    detail: Some(detail),
                    pushed: Vec::new(),
                }
            }
        });
        out
    }

    /// Stops the run: every running build is interrupted, and every running publication;
    /// returns the builds.
    pub(crate) fn interrupt(&mut self, signal: Signal) -> Vec<BuildId> {
        self.interrupted = Some(signal);
        let now = Some(self.now());
        let mut running = Vec::new();
        for i in 0..self.outcomes.len() {
            if let (Some((engine, start)), None) = (self.started[i], &self.outcomes[i]) {
                self.outcomes[i] = Some(Outcome {
                    status: Status::Interrupted,
                    engine: Some(engine),
                    exit: Some(ExitStatus::Interrupted(signal)),
                    detail: Some("interrupted".into()),
                    applied: None,
                    started: Some(start),
                    finished: now,
                });
                running.push(BuildId(i));
            }
        }
        for g in 0..self.indexes.len() {
            if std::mem::take(&mut self.publishing[g]) {
                self.indexes[g] = Some(IndexOutcome {
                    status: Status::Interrupted,
                    exit: Some(ExitStatus::Interrupted(signal)),
                    detail: Some("interrupted while publishing".into()),
                    pushed: Vec::new(),
                });
            }
        }
        self.running = 0;
        running
    }

    /// Builds running now.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// The image a succeeded build made.
    pub(crate) fn produced_image(&self, i: BuildId) -> Option<String> {
        self.outcomes[i.0]
            .as_ref()
            .and_then(|o| o.applied.as_ref())
            .map(|a| a.image.clone())
    }

    /// The id a registry pull of what build `i` published gives: the config digest of the
    /// tool's image when it wrote one, else the engine's image id (the tool publishes the
    /// engine's config then).
    pub(crate) fn published_image(&self, i: BuildId) -> Option<String> {
        self.outcomes[i.0]
            .as_ref()
            .and_then(|o| o.applied.as_ref())
            .map(|a| {
                a.made
                    .as_ref()
                    .map_or_else(|| a.image.clone(), |m| m.config.digest.clone())
            })
    }

    /// The engine and what it applied of each build of a multi-platform pipeline whose
    /// builds all succeeded.
    pub(crate) fn built(&self, g: GroupId) -> Vec<(BuildId, EngineId, &Applied)> {
        self.groups[g.0]
            .iter()
            .filter_map(|&b| {
                let o = self.outcomes[b.0].as_ref()?;
                Some((b, o.engine?, o.applied.as_ref()?))
            })
            .collect()
    }

    /// Marks every build built (transitively) on `failed` as skipped; returns them.
    fn skip_dependents(&mut self, failed: BuildId) -> Vec<(BuildId, String)> {
        let mut skipped = Vec::new();
        for d in self.graph.descendants(failed.0) {
            if self.outcomes[d].is_none() {
                let why = format!(
                    "skipped: it builds on `{}`, which failed",
                    self.graph.nodes[failed.0].name
                );
                self.outcomes[d] = Some(Outcome::not_run(Status::Skipped, why.clone()));
                self.skip_publication(BuildId(d));
                skipped.push((BuildId(d), why));
            }
        }
        skipped
    }

    /// The end of the run: every build and every multi-platform pipeline has an outcome.
    pub(crate) fn summary(self) -> Summary {
        let why = match (&self.interrupted, &self.stopping) {
            (Some(_), _) => "interrupted before it started".to_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => "not started".to_string(),
        };
        let outcomes = self
            .outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::not_run(Status::NotStarted, why.clone())))
            .collect();
        let indexes = self
            .indexes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| IndexOutcome {
                    status: Status::NotStarted,
                    exit: None,
                    detail: Some(why.clone()),
                    pushed: Vec::new(),
                })
            })
            .collect();
        Summary {
            outcomes,
            indexes,
            exit: self
                .interrupted
                .map(ExitStatus::Interrupted)
                .or(self.first_failure)
                .unwrap_or(ExitStatus::Success),
            elapsed: self.t0.elapsed(),
        }
    }
}
