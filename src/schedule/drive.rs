//! Drives a [`Scheduler`]: starts the applies and publications it decides on, waits for
//! them in one task, reports what happens, and stops everything on an interrupt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{FusedFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::{
    pull_base, BaseSource, BuildId, Consequences, Decision, Finish, GroupId, Run, Scheduler,
    Settings, Status, Summary,
};
use crate::engine::{Engine, EngineError};
use crate::error::{ExitStatus, Signal};
use crate::execute::events::{Event, Sink};
use crate::execute::index::{publish_index, Built};
use crate::execute::{self, ApplyError, Pushed};
use crate::model::{Platform, PullPolicy};

/// Where a run's events go.
#[derive(Clone, Copy)]
pub(crate) struct Sinks<'a> {
    /// By build.
    pub(crate) builds: &'a [&'a dyn Sink],
    /// By multi-platform pipeline: the events of publishing its indexes.
    pub(crate) groups: &'a [&'a dyn Sink],
    /// The run's own: an engine lost, `--fail-fast` stopping, an interrupt, leftovers removed.
    pub(crate) run: &'a dyn Sink,
}

/// A running apply or publication, and how it ended.
type Job<'a> = Pin<Box<dyn Future<Output = Done> + 'a>>;

enum Done {
    Build(BuildId, Finish),
    /// The tags published, or how publishing failed (its exit status and the error).
    Index(GroupId, Result<Vec<Pushed>, (ExitStatus, String)>),
}

/// Applies the builds of `run` over `engines` and publishes its multi-platform pipelines'
/// indexes. `interrupt` resolves when the run must stop: running applies and publications are
/// dropped and the build containers removed on every engine. Beside the run, the build
/// containers of runs that are gone are removed from every engine.
pub(crate) async fn run<E: Engine>(
    run: Run<'_>,
    engines: &[E],
    settings: &Settings,
    sinks: Sinks<'_>,
    interrupt: impl Future<Output = Signal>,
) -> Summary {
    // Polled beside the applies; a run that ends first still waits for it (an interrupt not).
    let tidy = remove_leftovers(engines, sinks.run).fuse();
    tokio::pin!(tidy);
    tokio::pin!(interrupt);
    let driver = Driver {
        run,
        engines,
        settings,
        sinks,
    };
    let mut sched = driver.scheduler().await;
    let mut running: FuturesUnordered<Job<'_>> = FuturesUnordered::new();
    loop {
        while let Some(decision) = sched.next() {
            running.extend(driver.start(&sched, decision));
        }
        if running.is_empty() {
            if !tidy.is_terminated() {
                (&mut tidy).await;
            }
            break;
        }
        let done = tokio::select! {
            signal = &mut interrupt => {
                drop(running);
                let interrupted = sched.interrupt(signal);
                sinks.run.event(Event::Interrupted { signal });
                sweep(engines, &interrupted, run.run_names, sinks.builds).await;
                return sched.summary();
            }
            Some(done) = running.next() => done,
            () = &mut tidy => continue,
        };
        let consequences = match done {
            Done::Build(i, finish) => sched.finish(i, finish),
            Done::Index(g, result) => sched.published(g, result),
        };
        running.extend(driver.follow(&sched, consequences));
    }
    sched.summary()
}

/// What the driver reads: the run, its engines, settings and sinks.
struct Driver<'a, E: Engine> {
    run: Run<'a>,
    engines: &'a [E],
    settings: &'a Settings,
    sinks: Sinks<'a>,
}

impl<'a, E: Engine> Driver<'a, E> {
    /// The state machine of this run: builds for a platform go preferably where it is native.
    async fn scheduler(&self) -> Scheduler<'a> {
        let builds = self.run.builds;
        let names = builds.iter().map(|p| p.name.clone()).collect();
        let mut sched = Scheduler::new(
            self.run.graph,
            names,
            self.engines.len(),
            self.settings.jobs,
            self.settings.fail_fast,
        );
        if builds.iter().any(|p| p.platform.is_some()) {
            let mut natives = Vec::new();
            for e in self.engines {
                natives.push(e.platform().await.ok().map(|(os, arch)| Platform {
                    os,
                    arch,
                    variant: None,
                }));
            }
            sched.prefer_native(builds.iter().map(|p| p.platform.clone()).collect(), natives);
        }
        let groups = self.run.groups.iter();
        sched.publish_groups(
            groups
                .map(|g| g.builds.iter().map(|&b| BuildId(b)).collect())
                .collect(),
        );
        sched
    }

    /// Reports what a finish changed; the publication it makes ready, if any.
    fn follow(&self, sched: &Scheduler<'_>, c: Consequences) -> Option<Job<'a>> {
        if let Some((e, why)) = c.lost_engine {
            self.sinks.run.event(Event::EngineLost {
                endpoint: self.engines[e.0].endpoint().to_string(),
                why,
            });
        }
        for (d, why) in c.skipped {
            self.sinks.builds[d.0].event(Event::NotRun {
                status: Status::Skipped,
                why,
            });
        }
        if let Some(why) = c.stopping {
            if sched.running() > 0 {
                self.sinks.run.event(Event::Stopping {
                    why,
                    running: sched.running(),
                });
            }
        }
        c.publish.map(|g| self.publish(sched, g))
    }

    /// Starts what the scheduler decided: an apply, or nothing for a refused build.
    fn start(&self, sched: &Scheduler<'_>, decision: Decision) -> Option<Job<'a>> {
        let (i, e, base) = match decision {
            Decision::Refused { pipeline, why } => {
                self.sinks.builds[pipeline.0].event(Event::NotRun {
                    status: Status::Failed,
                    why,
                });
                return None;
            }
            Decision::Start {
                pipeline,
                engine,
                base,
            } => (pipeline, engine, base),
        };
        let builds = self.run.builds;
        let mut p = builds[i.0].clone();
        let dependency = self.run.graph.nodes[i.0].dependency.clone();
        let mut expected = None;
        let mut after = None;
        let mut fallback = None;
        match &base {
            BaseSource::AsWritten => {}
            BaseSource::SameEngine { producer } => {
                // The producer tagged this run's image in this engine, unless it found it up
                // to date in the registry without pulling (a fresh runner with a remote
                // cache): then it is pulled from where the producer publishes.
                p.base.pull = PullPolicy::Never;
                expected = sched.produced_image(*producer);
                after = Some((builds[producer.0].name.clone(), None));
                fallback = dependency
                    .filter(|d| d.pull_from.is_some())
                    .map(|d| (d, sched.published_image(*producer)));
            }
            BaseSource::Pull { producer, from } => {
                if let Some(d) = &dependency {
                    pull_base(&mut p, d, from);
                }
                expected = sched.published_image(*producer);
                after = Some((
                    builds[producer.0].name.clone(),
                    Some(p.base.image.to_string()),
                ));
            }
        }
        let engine = &self.engines[e.0];
        let sink = self.sinks.builds[i.0];
        let run_name = self.run.run_names[i.0].clone();
        sink.event(Event::Started {
            engine: engine.endpoint().to_string(),
            after,
        });
        if let (Some(platform), true) = (&p.platform, sched.emulated(i, e)) {
            sink.event(Event::Emulated {
                platform: platform.to_string(),
                engine: engine.endpoint().to_string(),
            });
        }
        let options = &self.settings.options;
        Some(Box::pin(async move {
            if let (Some((d, published)), Some(id)) = (fallback, &expected) {
                if let (Ok(None), Some(from)) = (engine.inspect_image(id).await, &d.pull_from) {
                    pull_base(&mut p, &d, from);
                    expected = published;
                }
            }
            let check = BaseCheck {
                expected,
                inner: sink,
            };
            let started = Instant::now();
            let result = execute::apply(engine, &p, &run_name, options, &check).await;
            Done::Build(i, finished(engine, p, result, started, sink).await)
        }))
    }

    /// Publishes the indexes of multi-platform pipeline `g`, whose builds all succeeded.
    fn publish(&self, sched: &Scheduler<'_>, g: GroupId) -> Job<'a> {
        let group = &self.run.groups[g.0];
        let builds = self.run.builds;
        let built: Vec<Built<'a, E>> = sched
            .built(g)
            .into_iter()
            .filter_map(|(b, e, applied)| {
                Some(Built {
                    engine: &self.engines[e.0],
                    image: applied.image.clone(),
                    platform: builds[b.0].platform.clone()?,
                    made: applied.made.as_deref().cloned(),
                })
            })
            .collect();
        let sink = self.sinks.groups[g.0];
        let options = &self.settings.options;
        Box::pin(async move {
            let result = match publish_index(&group.pipeline, &built, options, sink).await {
                Ok(pushed) => Ok(pushed),
                Err(error) => {
                    let failure = (ExitStatus::of(&error), error.to_string());
                    sink.event(Event::Failed {
                        error: Arc::new(error),
                        pipeline: Arc::new(group.pipeline.clone()),
                    });
                    Err(failure)
                }
            };
            Done::Index(g, result)
        })
    }
}

/// How an apply ended, reported; a failure also asks whether the engine went away (asked
/// here, so the others keep streaming).
async fn finished<E: Engine>(
    engine: &E,
    p: crate::model::Pipeline,
    result: Result<execute::Applied, ApplyError>,
    started: Instant,
    sink: &dyn Sink,
) -> Finish {
    match result {
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
            let lost = answers(engine).await.err();
            Finish::Failed { exit, detail, lost }
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

/// Removes the build containers of interrupted pipelines, on every engine that answers. The
/// applies are gone, but a create may still be landing: sweep twice.
async fn sweep<E: Engine>(
    engines: &[E],
    interrupted: &[BuildId],
    run_names: &[String],
    sinks: &[&dyn Sink],
) {
    for delay in [0, 500] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        for &BuildId(i) in interrupted {
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
