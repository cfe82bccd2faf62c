//! Applies the pipelines of one command — one, or a graph of several — over one or more
//! engines. A single pipeline is a graph of one: there is no other apply path.
//!
//! [`Scheduler`] is the state machine: which pipeline is ready, where it goes, what a finish
//! or a failure changes. [`run`] drives it: it starts the applies it decides on, waits for
//! them, and reports everything as [`Event`]s (to each pipeline's sink and to the run's sink),
//! never by printing. Everything runs in ONE task: the [`Engine`] futures are not `Send`.
//!
//! A pipeline starts when its producer (if any) succeeded and a job slot is free (`--jobs`).
//! It is placed on the least loaded reachable engine; a dependent that is not on its
//! producer's engine pulls the producer's published image (`pull = always`, so this run's
//! image, never a stale copy), and one whose producer publishes nothing runs on the
//! producer's engine.
//!
//! Failure policy: `fail_fast` (default) starts nothing new after a failure and lets the
//! running pipelines finish; `keep_going` goes on with everything that does not depend on the
//! failure. Dependents of a failed pipeline are skipped. An engine that stops answering fails
//! only the pipelines on it: it gets no new work, and the failure does not stop the others.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{FusedFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::engine::{Engine, EngineError};
use crate::error::{ExitStatus, Signal};
pub(crate) use crate::execute::events::Status;
use crate::execute::events::{Event, Sink};
use crate::execute::{self, Applied, Options};
use crate::graph::{Dependency, Graph};
use crate::model::{Pipeline, Platform, PullPolicy};
use crate::reference::ImageRef;

/// What every apply of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Pipelines applied at once.
    pub(crate) jobs: usize,
    pub(crate) fail_fast: bool,
    /// The executor's options; `run_name` is set per pipeline.
    pub(crate) options: Options,
}

/// `--jobs` when not given: four pipelines per engine (they mostly wait on the engine).
pub(crate) fn default_jobs(engines: usize) -> usize {
    4 * engines.max(1)
}

/// The result of one pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    /// Index of the engine it ran on.
    pub(crate) engine: Option<usize>,
    pub(crate) exit: Option<ExitStatus>,
    /// The error, or why it was skipped / not started.
    pub(crate) detail: Option<String>,
    pub(crate) applied: Option<Applied>,
    /// Offsets from the start of the run.
    pub(crate) started: Option<Duration>,
    pub(crate) finished: Option<Duration>,
}

impl Outcome {
    /// A pipeline that never ran on an engine.
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

/// The result of the whole run.
#[derive(Debug)]
pub(crate) struct Summary {
    /// By pipeline index (command-line order).
    pub(crate) outcomes: Vec<Outcome>,
    /// Success, the status of the first pipeline to fail, or the signal's.
    pub(crate) exit: ExitStatus,
    pub(crate) elapsed: Duration,
}

/// How a started pipeline gets its base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BaseSource {
    /// As its file says.
    AsWritten,
    /// Its producer tagged it in this engine in this run.
    SameEngine { producer: usize },
    /// Pulled from where its producer pushed it.
    Pull { producer: usize, from: String },
}

/// What the scheduler decided for the next ready pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Start {
        pipeline: usize,
        engine: usize,
        base: BaseSource,
    },
    /// It cannot run anywhere (its producer's engine is gone, or every engine is).
    Refused { pipeline: usize, why: String },
}

/// How a started pipeline finished, as the scheduler needs to know it.
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

/// What a finish changed beyond the pipeline itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Consequences {
    /// Pipelines now skipped because they build on the failed one.
    pub(crate) skipped: Vec<usize>,
    /// The engine found unreachable by this finish (first time only).
    pub(crate) lost_engine: Option<(usize, String)>,
    /// `--fail-fast` stops starting new pipelines, for this reason.
    pub(crate) stopping: Option<String>,
}

/// The scheduling state of one run.
#[derive(Debug)]
pub(crate) struct Scheduler<'a> {
    graph: &'a Graph,
    names: Vec<String>,
    engines: usize,
    jobs: usize,
    fail_fast: bool,
    outcomes: Vec<Option<Outcome>>,
    started: Vec<Option<(usize, Duration)>>,
    running: usize,
    running_on: Vec<usize>,
    assigned: Vec<usize>,
    down: BTreeMap<usize, String>,
    first_failure: Option<ExitStatus>,
    stopping: Option<String>,
    interrupted: Option<Signal>,
    t0: Instant,
    /// The platform each pipeline builds for (`None`: its engine's own).
    wants: Vec<Option<Platform>>,
    /// Each engine's own platform, when known.
    natives: Vec<Option<Platform>>,
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
        }
    }

    /// Places builds for a platform preferably on an engine of that platform: `wants` by
    /// pipeline, `natives` by engine.
    pub(crate) fn prefer_native(
        &mut self,
        wants: Vec<Option<Platform>>,
        natives: Vec<Option<Platform>>,
    ) {
        self.wants = wants;
        self.natives = natives;
    }

    /// True when pipeline `i` would run on engine `e` by emulation.
    pub(crate) fn emulated(&self, i: usize, e: usize) -> bool {
        match (
            self.wants.get(i).and_then(Option::as_ref),
            self.natives.get(e).and_then(Option::as_ref),
        ) {
            (Some(w), Some(n)) => !w.matches(&n.os, &n.arch, n.variant.as_deref()),
            _ => false,
        }
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The next pipeline to start, in graph order, while a job slot is free and nothing stops
    /// the run. A refused pipeline is already recorded as failed (and its dependents skipped)
    /// when this returns it.
    pub(crate) fn next(&mut self) -> Option<Decision> {
        if self.running >= self.jobs || self.stopping.is_some() || self.interrupted.is_some() {
            return None;
        }
        let graph = self.graph;
        let i = graph.order.iter().copied().find(|&i| {
            self.started[i].is_none()
                && self.outcomes[i].is_none()
                && graph.nodes[i].dependency.as_ref().is_none_or(|d| {
                    matches!(&self.outcomes[d.producer], Some(o) if o.status == Status::Succeeded)
                })
        })?;
        let producer = graph.nodes[i].dependency.as_ref().map(|d| {
            let engine = self.outcomes[d.producer]
                .as_ref()
                .and_then(|o| o.engine)
                .expect("a succeeded producer ran on an engine");
            (d, engine)
        });
        let placed = match &producer {
            Some((d, pe)) if d.pull_from.is_none() => match self.down.get(pe) {
                Some(why) => Err(format!(
                    "it builds on `{}`, which is not published, so it must run on the engine of `{}`, and that engine is unreachable: {why}",
                    d.reference, graph.nodes[d.producer].name
                )),
                None => Ok(*pe),
            },
            _ => (0..self.engines)
                .filter(|e| !self.down.contains_key(e))
                .min_by_key(|&e| {
                    let not_producer = producer.as_ref().is_none_or(|(_, pe)| *pe != e);
                    let emulated = self.emulated(i, e);
                    (emulated, self.running_on[e], self.assigned[e], not_producer, e)
                })
                .ok_or_else(|| "no engine is reachable".to_string()),
        };
        let engine = match placed {
            Ok(e) => e,
            Err(why) => {
                self.first_failure.get_or_insert(ExitStatus::EngineFailed);
                self.outcomes[i] = Some(Outcome {
                    exit: Some(ExitStatus::EngineFailed),
                    finished: Some(self.now()),
                    ..Outcome::not_run(Status::Failed, why.clone())
                });
                self.skip_dependents(i);
                return Some(Decision::Refused { pipeline: i, why });
            }
        };
        let base = match &producer {
            None => BaseSource::AsWritten,
            Some((d, pe)) if *pe == engine => BaseSource::SameEngine {
                producer: d.producer,
            },
            Some((d, _)) => match &d.pull_from {
                Some(from) => BaseSource::Pull {
                    producer: d.producer,
                    from: from.clone(),
                },
                None => unreachable!("an unpublished producer's dependents stay on its engine"),
            },
        };
        self.started[i] = Some((engine, self.now()));
        self.running += 1;
        self.running_on[engine] += 1;
        self.assigned[engine] += 1;
        Some(Decision::Start {
            pipeline: i,
            engine,
            base,
        })
    }

    /// Records how a started pipeline finished.
    pub(crate) fn finish(&mut self, i: usize, finish: Finish) -> Consequences {
        let (engine, start) = self.started[i].expect("only started pipelines finish");
        self.running -= 1;
        self.running_on[engine] -= 1;
        let mut out = Consequences::default();
        let finished = Some(self.now());
        match finish {
            Finish::Succeeded(applied) => {
                self.outcomes[i] = Some(Outcome {
                    status: Status::Succeeded,
                    engine: Some(engine),
                    exit: Some(ExitStatus::Success),
                    detail: None,
                    applied: Some(applied),
                    started: Some(start),
                    finished,
                });
            }
            Finish::Failed { exit, detail, lost } => {
                // An engine that went away fails only its own pipelines, as an engine error.
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
                self.outcomes[i] = Some(Outcome {
                    status: Status::Failed,
                    engine: Some(engine),
                    exit: Some(exit),
                    detail: Some(detail),
                    applied: None,
                    started: Some(start),
                    finished,
                });
                out.skipped = self.skip_dependents(i);
                if self.fail_fast && lost.is_none() && self.stopping.is_none() {
                    let why = format!("--fail-fast: `{}` failed", self.names[i]);
                    self.stopping = Some(why.clone());
                    out.stopping = Some(why);
                }
            }
        }
        out
    }

    /// Stops the run: every running pipeline is interrupted; returns them.
    pub(crate) fn interrupt(&mut self, signal: Signal) -> Vec<usize> {
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
                running.push(i);
            }
        }
        self.running = 0;
        running
    }

    /// Pipelines running now.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Marks every pipeline built (transitively) on `failed` as skipped; returns them.
    fn skip_dependents(&mut self, failed: usize) -> Vec<usize> {
        let mut skipped = Vec::new();
        for d in self.graph.descendants(failed) {
            if self.outcomes[d].is_none() {
                let why = format!(
                    "skipped: it builds on `{}`, which failed",
                    self.graph.nodes[failed].name
                );
                self.outcomes[d] = Some(Outcome::not_run(Status::Skipped, why));
                skipped.push(d);
            }
        }
        skipped
    }

    /// The end of the run: every pipeline has an outcome.
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
        Summary {
            outcomes,
            exit: self
                .interrupted
                .map(ExitStatus::Interrupted)
                .or(self.first_failure)
                .unwrap_or(ExitStatus::Success),
            elapsed: self.t0.elapsed(),
        }
    }
}

/// Warns when a dependent's base is not the image its producer made in this run.
struct BaseCheck<'a> {
    expected: Option<String>,
    inner: &'a dyn Sink,
}

impl Sink for BaseCheck<'_> {
    fn event(&self, e: Event) {
        if let (Event::BaseReady { reference, id, .. }, Some(expected)) = (&e, &self.expected) {
            if id != expected {
                self.inner.event(Event::Warning(format!(
                    "base `{reference}` is {} but this run built {}",
                    crate::engine::short(id),
                    crate::engine::short(expected)
                )));
            }
        }
        self.inner.event(e);
    }
}

/// Whether `engine` still answers (a cheap inspect of an image that does not exist).
async fn answers<E: Engine>(engine: &E) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        engine.inspect_image("pipeline-engine-probe:absent"),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

/// Applies `pipelines` (validated, with their `graph`) over `engines`. Each pipeline's events
/// go to `sinks[i]`, the run's own (an engine lost, `--fail-fast` stopping, an interrupt,
/// leftovers removed) to `run_sink`. `interrupt` resolves when the run must stop: running
/// applies are dropped and their containers removed on every engine. Beside the run, the
/// build containers of runs that are gone are removed from every engine.
pub(crate) async fn run<E: Engine>(
    pipelines: &[Pipeline],
    graph: &Graph,
    engines: &[E],
    settings: &Settings,
    sinks: &[&dyn Sink],
    run_sink: &dyn Sink,
    interrupt: impl Future<Output = Signal>,
) -> Summary {
    // Polled beside the applies; a run that ends first still waits for it (an interrupt not).
    let tidy = remove_leftovers(engines, run_sink).fuse();
    tokio::pin!(tidy);

    let names = pipelines.iter().map(|p| p.name.clone()).collect();
    let mut sched = Scheduler::new(
        graph,
        names,
        engines.len(),
        settings.jobs,
        settings.fail_fast,
    );
    // Builds for a platform go preferably where it is native.
    if pipelines.iter().any(|p| p.platform.is_some()) {
        let mut natives = Vec::new();
        for e in engines {
            natives.push(e.platform().await.ok().map(|(os, arch)| Platform {
                os,
                arch,
                variant: None,
            }));
        }
        sched.prefer_native(
            pipelines.iter().map(|p| p.platform.clone()).collect(),
            natives,
        );
    }
    let id = execute::run_id();
    let run_names: Vec<String> = pipelines
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = execute::run_name(&p.name, &id);
            if pipelines.len() > 1 {
                format!("{name}{i:x}")
            } else {
                name
            }
        })
        .collect();
    let mut running = FuturesUnordered::new();
    tokio::pin!(interrupt);
    loop {
        while let Some(decision) = sched.next() {
            let (i, e, base) = match decision {
                Decision::Refused { pipeline, why } => {
                    sinks[pipeline].event(Event::NotRun {
                        status: Status::Failed,
                        why,
                    });
                    continue;
                }
                Decision::Start {
                    pipeline,
                    engine,
                    base,
                } => (pipeline, engine, base),
            };
            let mut p = pipelines[i].clone();
            let mut expected = None;
            let mut after = None;
            let mut fallback = None;
            match &base {
                BaseSource::AsWritten => {}
                BaseSource::SameEngine { producer } => {
                    // The producer tagged this run's image in this engine, unless it found
                    // it up to date in the registry without pulling (a fresh runner with a
                    // remote cache): then it is pulled from where the producer publishes.
                    p.base.pull = PullPolicy::Never;
                    expected = produced_image(&sched, *producer);
                    after = Some((pipelines[*producer].name.clone(), None));
                    fallback = graph.nodes[i]
                        .dependency
                        .clone()
                        .filter(|d| d.pull_from.is_some());
                }
                BaseSource::Pull { producer, from } => {
                    if let Some(d) = &graph.nodes[i].dependency {
                        pull_base(&mut p, d, from);
                    }
                    expected = produced_image(&sched, *producer);
                    after = Some((
                        pipelines[*producer].name.clone(),
                        Some(p.base.image.to_string()),
                    ));
                }
            }
            let engine = &engines[e];
            sinks[i].event(Event::Started {
                run_name: run_names[i].clone(),
                engine: engine.endpoint().to_string(),
                after,
            });
            if let (Some(platform), true) = (&p.platform, sched.emulated(i, e)) {
                sinks[i].event(Event::Emulated {
                    platform: platform.to_string(),
                    engine: engine.endpoint().to_string(),
                });
            }
            let opts = Options {
                run_name: run_names[i].clone(),
                ..settings.options.clone()
            };
            let sink = sinks[i];
            running.push(async move {
                let mut p = p;
                if let (Some(d), Some(id)) = (&fallback, &expected) {
                    if let (Ok(None), Some(from)) = (engine.inspect_image(id).await, &d.pull_from) {
                        pull_base(&mut p, d, from);
                    }
                }
                let check = BaseCheck {
                    expected,
                    inner: sink,
                };
                let started = Instant::now();
                let result = execute::apply(engine, &p, &opts, &check).await;
                let finish = match result {
                    Ok(applied) => {
                        sink.event(Event::Succeeded {
                            applied: applied.clone(),
                            engine: engine.endpoint().to_string(),
                            duration: started.elapsed(),
                        });
                        Finish::Succeeded(applied)
                    }
                    Err(error) => {
                        let exit = ExitStatus::of(&error);
                        let detail = error.to_string();
                        sink.event(Event::Failed {
                            error: Arc::new(error),
                            pipeline: Arc::new(p),
                        });
                        // Did the engine go away? Asked here, so the others keep streaming.
                        let lost = answers(engine).await.err();
                        Finish::Failed { exit, detail, lost }
                    }
                };
                (i, finish)
            });
        }
        if running.is_empty() {
            if !tidy.is_terminated() {
                (&mut tidy).await;
            }
            break;
        }
        let next = tokio::select! {
            signal = &mut interrupt => Err(signal),
            Some(r) = running.next() => Ok(r),
            () = &mut tidy => continue,
        };
        let (i, finish) = match next {
            Ok(r) => r,
            Err(signal) => {
                drop(running);
                let interrupted = sched.interrupt(signal);
                run_sink.event(Event::Interrupted { signal });
                sweep(engines, &interrupted, &run_names, sinks).await;
                return sched.summary();
            }
        };
        let c = sched.finish(i, finish);
        if let Some((e, why)) = c.lost_engine {
            run_sink.event(Event::EngineLost {
                endpoint: engines[e].endpoint().to_string(),
                why,
            });
        }
        for d in c.skipped {
            let why = format!(
                "skipped: it builds on `{}`, which failed",
                pipelines[i].name
            );
            sinks[d].event(Event::NotRun {
                status: Status::Skipped,
                why,
            });
        }
        if let Some(why) = c.stopping {
            if sched.running() > 0 {
                run_sink.event(Event::Stopping {
                    why,
                    running: sched.running(),
                });
            }
        }
    }
    sched.summary()
}

/// Removes the build containers of runs that are gone, on every engine, within a bound. An
/// engine that does not answer is the run's to report, not this tidying's.
async fn remove_leftovers<E: Engine>(engines: &[E], run_sink: &dyn Sink) {
    for engine in engines {
        let removed =
            tokio::time::timeout(Duration::from_secs(20), execute::leftovers::remove(engine)).await;
        match removed {
            Ok(Ok(names)) if !names.is_empty() => run_sink.event(Event::LeftoversRemoved {
                endpoint: engine.endpoint().to_string(),
                names,
            }),
            Ok(Err(e)) if !matches!(e, EngineError::Connection { .. }) => {
                run_sink.event(Event::Warning(format!(
                    "could not remove the build containers of runs that are gone from {}: {e}",
                    engine.endpoint()
                )))
            }
            _ => {}
        }
    }
}

/// Points `p` at the image its producer pushed to `from`, with that push's credentials when
/// `from` is not the reference `p` names, pulled every time: the producer's newest push, never
/// a stale copy of the same tag.
pub(crate) fn pull_base(p: &mut Pipeline, d: &Dependency, from: &str) {
    if let Ok(r) = ImageRef::parse(from) {
        if r.to_string() != p.base.image.to_string() {
            p.base.login = d.login.clone();
        }
        p.base.image = r;
    }
    p.base.pull = PullPolicy::Always;
}

/// The image a succeeded producer made.
fn produced_image(sched: &Scheduler<'_>, producer: usize) -> Option<String> {
    sched.outcomes[producer]
        .as_ref()
        .and_then(|o| o.applied.as_ref())
        .map(|a| a.image.clone())
}

/// Removes the build containers of interrupted pipelines, on every engine that answers. The
/// applies are gone, but a create may still be landing: sweep twice.
async fn sweep<E: Engine>(
    engines: &[E],
    interrupted: &[usize],
    run_names: &[String],
    sinks: &[&dyn Sink],
) {
    for delay in [0, 500] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        for &i in interrupted {
            for engine in engines {
                if let Err(e) = engine.remove_containers_named(&run_names[i]).await {
                    sinks[i].event(Event::Warning(format!(
                        "could not remove the containers named `{}*` on {}: {e}",
                        run_names[i],
                        engine.endpoint()
                    )));
                }
            }
        }
    }
}
