//! The scheduler against fake engines: fail-fast, keep-going, skipped dependents, a lost
//! engine, placement and interrupts, in milliseconds (the test clock is paused, so a step's
//! `sleep 5` ends at once and in order).

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::engine::fake::FakeEngine;
use crate::error::Signal;
use crate::execute::events::{Event, Sink};
use crate::model::{Pipeline, Platform};
use crate::testing::{engine, runtime, Folder};

/// A pipeline named `name` on `base` running `steps`, tagging `tag` (when given).
fn pipeline(name: &str, base: &str, steps: &[&str], tag: Option<&str>) -> String {
    let mut t = format!("name = \"{name}\"\n[base]\nimage = \"{base}\"\npull = \"never\"\n");
    for s in steps {
        t += &format!("[[step]]\nrun = \"{s}\"\n");
    }
    t += "[commit]\nmessage = \"m\"\n";
    if let Some(tag) = tag {
        t += &format!("tags = [\"{tag}\"]\n");
    }
    t
}

/// Every event, per pipeline and for the run, as text.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Sink for Seen {
    fn event(&self, e: Event) {
        let text = match e {
            Event::Started { engine, .. } => format!("started {engine}"),
            Event::Succeeded { .. } => "succeeded".into(),
            Event::Failed { error, .. } => format!("failed {error}"),
            Event::NotRun { status, why } => format!("{status:?} {why}"),
            Event::EngineLost { endpoint, .. } => format!("lost {endpoint}"),
            Event::Stopping { why, .. } => format!("stopping {why}"),
            Event::Interrupted { .. } => "interrupted".into(),
            Event::LeftoversRemoved { endpoint, names } => {
                format!("leftovers {endpoint} {}", names.join(" "))
            }
            _ => return,
        };
        self.0.lock().unwrap().push(text);
    }
}

impl Seen {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Ran {
    summary: Summary,
    seen: Vec<Vec<String>>,
    run_seen: Vec<String>,
}

impl Ran {
    fn statuses(&self) -> Vec<Status> {
        self.summary.outcomes.iter().map(|o| o.status).collect()
    }
    fn engines(&self) -> Vec<Option<usize>> {
        self.summary
            .outcomes
            .iter()
            .map(|o| o.engine.map(|e| e.0))
            .collect()
    }
}

fn apply(
    files: &[(&str, String)],
    engines: &[FakeEngine],
    jobs: usize,
    fail_fast: bool,
    interrupt_after: Option<Duration>,
) -> Ran {
    let folder = Folder::new();
    let pipelines: Vec<Pipeline> = files.iter().map(|(n, t)| folder.load(n, t)).collect();
    let graph = crate::graph::build(&pipelines).expect("graph");
    let settings = Settings {
        jobs,
        fail_fast,
        options: Options {
            no_cache: false,
            keep_failed: false,
            attempts: 1,
            retry_delay: Duration::from_millis(1),
            notes: None,
            store: None,
            no_push: false,
        },
    };
    let seen: Vec<Seen> = pipelines.iter().map(|_| Seen::default()).collect();
    let sinks: Vec<&dyn Sink> = seen.iter().map(|s| s as &dyn Sink).collect();
    let run_seen = Seen::default();
    let run_names = run_names(&pipelines);
    let summary = runtime().block_on(async {
        let interrupt = async {
            match interrupt_after {
                Some(d) => {
                    tokio::time::sleep(d).await;
                    Signal::Interrupt
                }
                None => std::future::pending().await,
            }
        };
        let run_of = Run {
            builds: &pipelines,
            graph: &graph,
            groups: &[],
            run_names: &run_names,
        };
        let sinks = Sinks {
            builds: &sinks,
            groups: &[],
            run: &run_seen,
        };
        run(run_of, engines, &settings, sinks, interrupt).await
    });
    Ran {
        summary,
        seen: seen.iter().map(Seen::all).collect(),
        run_seen: run_seen.all(),
    }
}

fn two_engines() -> Vec<FakeEngine> {
    vec![engine().named("fake://a"), engine().named("fake://b")]
}

#[test]
fn one_pipeline_is_a_graph_of_one() {
    let e = [engine()];
    let r = apply(
        &[("one", pipeline("one", "base:1", &["echo hi"], None))],
        &e,
        4,
        true,
        None,
    );
    assert_eq!(r.statuses(), [Status::Succeeded]);
    assert_eq!(r.summary.exit, ExitStatus::Success);
    assert_eq!(r.seen[0], ["started fake://", "succeeded"]);
    assert_eq!(e[0].containers(), 0);
}

#[test]
fn an_apply_removes_what_runs_that_are_gone_left_on_every_engine_and_nothing_running() {
    use crate::engine::ContainerState;
    let e = two_engines();
    e[0].add_container("pipeline-old-18c2f3a4b51a2b-1", ContainerState::Stopped, 0);
    e[1].add_container("pipeline-old-18c2f3a4b51a2c-2", ContainerState::Created, 0);
    e[1].add_container("pipeline-live-18c2f3a4b51a2d-1", ContainerState::Alive, 0);
    let files = [
        ("a", pipeline("a", "base:1", &["true"], None)),
        ("b", pipeline("b", "base:1", &["true"], None)),
    ];
    let r = apply(&files, &e, 4, true, None);
    assert_eq!(r.statuses(), [Status::Succeeded, Status::Succeeded]);
    assert_eq!(
        r.run_seen,
        [
            "leftovers fake://a pipeline-old-18c2f3a4b51a2b-1",
            "leftovers fake://b pipeline-old-18c2f3a4b51a2c-2"
        ]
    );
    assert!(e[0].container_names().is_empty());
    assert_eq!(e[1].container_names(), ["pipeline-live-18c2f3a4b51a2d-1"]);
}

#[test]
fn fail_fast_starts_nothing_after_a_failure() {
    let e = [engine()];
    let r = apply(
        &[
            ("a", pipeline("a", "base:1", &["exit 3"], None)),
            ("b", pipeline("b", "base:1", &["echo b"], None)),
            ("c", pipeline("c", "base:1", &["echo c"], None)),
        ],
        &e,
        1,
        true,
        None,
    );
    assert_eq!(
        r.statuses(),
        [Status::Failed, Status::NotStarted, Status::NotStarted]
    );
    assert_eq!(r.summary.exit, ExitStatus::StepFailed);
    assert!(r.summary.outcomes[1]
        .detail
        .as_deref()
        .unwrap()
        .contains("--fail-fast: `a` failed"));
    assert_eq!(e[0].count("create"), 1, "{:?}", e[0].calls());
}

#[test]
fn fail_fast_lets_running_pipelines_finish() {
    let e = [engine()];
    let r = apply(
        &[
            ("a", pipeline("a", "base:1", &["exit 3"], None)),
            ("b", pipeline("b", "base:1", &["sleep 5"], None)),
            ("c", pipeline("c", "base:1", &["echo c"], None)),
        ],
        &e,
        2,
        true,
        None,
    );
    assert_eq!(
        r.statuses(),
        [Status::Failed, Status::Succeeded, Status::NotStarted]
    );
    assert_eq!(r.run_seen, ["stopping --fail-fast: `a` failed"]);
}

#[test]
fn keep_going_runs_the_independent_and_skips_every_dependent() {
    let e = [engine()];
    let r = apply(
        &[
            ("a", pipeline("a", "base:1", &["exit 4"], Some("app:a"))),
            ("b", pipeline("b", "app:a", &["echo b"], Some("app:b"))),
            ("c", pipeline("c", "app:b", &["echo c"], None)),
            ("d", pipeline("d", "base:1", &["echo d"], None)),
        ],
        &e,
        1,
        false,
        None,
    );
    assert_eq!(
        r.statuses(),
        [
            Status::Failed,
            Status::Skipped,
            Status::Skipped,
            Status::Succeeded
        ]
    );
    assert_eq!(r.summary.exit, ExitStatus::StepFailed);
    assert_eq!(
        r.seen[2],
        ["Skipped skipped: it builds on `a`, which failed"]
    );
}

#[test]
fn a_dependent_runs_on_its_producers_result_on_the_same_engine() {
    let e = two_engines();
    let r = apply(
        &[
            ("app", pipeline("app", "lib:1", &["echo app"], None)),
            (
                "lib",
                pipeline("lib", "base:1", &["echo lib"], Some("lib:1")),
            ),
        ],
        &e,
        4,
        true,
        None,
    );
    assert_eq!(r.statuses(), [Status::Succeeded, Status::Succeeded]);
    // lib publishes nothing, so app must run where lib tagged its image.
    assert_eq!(r.engines()[0], r.engines()[1]);
    let producer = r.summary.outcomes[1]
        .applied
        .as_ref()
        .unwrap()
        .image
        .clone();
    let engine = &e[r.engines()[0].unwrap()];
    assert!(
        engine.calls().contains(&format!("create {producer}")),
        "app started from lib's tag: {:?} (lib made {producer})",
        engine.calls()
    );
}

#[test]
fn independent_pipelines_spread_over_the_engines() {
    let e = two_engines();
    let files: Vec<(&str, String)> = ["p1", "p2", "p3", "p4"]
        .iter()
        .map(|n| (*n, pipeline(n, "base:1", &["sleep 1"], None)))
        .collect();
    let r = apply(&files, &e, 4, true, None);
    assert!(r.statuses().iter().all(|s| *s == Status::Succeeded));
    let on_a = r.engines().iter().filter(|x| **x == Some(0)).count();
    assert_eq!(on_a, 2, "{:?}", r.engines());
}

#[test]
fn a_lost_engine_fails_only_its_pipelines_and_gets_no_new_work() {
    let e = two_engines();
    let r = apply(
        &[
            ("dies", pipeline("dies", "base:1", &["engine-dies"], None)),
            ("slow", pipeline("slow", "base:1", &["sleep 2"], None)),
            ("later", pipeline("later", "base:1", &["echo later"], None)),
        ],
        &e,
        2,
        true,
        None,
    );
    assert_eq!(
        r.statuses(),
        [Status::Failed, Status::Succeeded, Status::Succeeded],
        "{:?}",
        r.summary.outcomes
    );
    assert_eq!(r.summary.exit, ExitStatus::EngineFailed);
    assert_eq!(r.engines(), [Some(0), Some(1), Some(1)]);
    assert_eq!(r.run_seen, ["lost fake://a"]);
    assert!(r.summary.outcomes[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("its engine became unreachable"));
}

#[test]
fn a_dependent_of_an_unpublished_pipeline_on_a_lost_engine_is_refused() {
    let e = two_engines();
    let r = apply(
        &[
            (
                "lib",
                pipeline("lib", "base:1", &["echo lib"], Some("lib:2")),
            ),
            (
                "kill",
                pipeline("kill", "base:1", &["sleep 1; engine-dies"], None),
            ),
            ("app", pipeline("app", "lib:2", &["sleep 3"], None)),
        ],
        &e,
        2,
        false,
        None,
    );
    // lib and kill start on engines a and b; kill takes b down... or a: either way app,
    // bound to lib's engine, is refused when that engine is the lost one, and runs otherwise.
    let lost = r.engines()[1];
    if r.engines()[0] == lost {
        assert_eq!(r.statuses()[2], Status::Failed);
        assert!(
            r.seen[2][0].contains("that engine is unreachable"),
            "{:?}",
            r.seen
        );
    } else {
        assert_eq!(r.statuses()[2], Status::Succeeded);
    }
}

#[test]
fn an_interrupt_stops_everything_and_removes_the_build_containers() {
    let e = two_engines();
    let r = apply(
        &[
            ("a", pipeline("a", "base:1", &["sleep 60"], None)),
            ("b", pipeline("b", "base:1", &["sleep 60"], None)),
            ("c", pipeline("c", "base:1", &["echo c"], None)),
        ],
        &e,
        2,
        true,
        Some(Duration::from_secs(5)),
    );
    assert_eq!(
        r.statuses(),
        [Status::Interrupted, Status::Interrupted, Status::NotStarted]
    );
    assert_eq!(r.summary.exit, ExitStatus::Interrupted(Signal::Interrupt));
    assert_eq!(r.run_seen, ["interrupted"]);
    assert_eq!(e[0].containers() + e[1].containers(), 0);
    assert!(e[0].count("remove_named") >= 1 && e[1].count("remove_named") >= 1);
}

/// The graph and names of independent one-step pipelines.
fn independent(names: &[&str]) -> (crate::graph::Graph, Vec<String>) {
    let folder = Folder::new();
    let pipelines: Vec<Pipeline> = names
        .iter()
        .map(|n| folder.load(n, &pipeline(n, "base:1", &["true"], None)))
        .collect();
    let graph = crate::graph::build(&pipelines).unwrap();
    (graph, pipelines.iter().map(|p| p.name.clone()).collect())
}

#[test]
fn the_state_machine_places_by_load_and_refuses_when_no_engine_is_left() {
    let (graph, names) = independent(&["w", "x", "y", "z"]);
    let mut s = Scheduler::new(&graph, names, 2, 8, false);
    let start = |d: Option<Decision>| match d {
        Some(Decision::Start {
            pipeline, engine, ..
        }) => (pipeline.0, engine.0),
        other => panic!("expected a start, got {other:?}"),
    };
    assert_eq!(start(s.next()), (0, 0));
    assert_eq!(start(s.next()), (1, 1));
    let lost = |why: &str| Finish::Failed {
        exit: ExitStatus::StepFailed,
        detail: "step".into(),
        lost: Some(why.into()),
    };
    let c = s.finish(BuildId(0), lost("gone"));
    assert_eq!(c.lost_engine, Some((EngineId(0), "gone".into())));
    assert_eq!(start(s.next()), (2, 1), "the lost engine gets no new work");
    let c = s.finish(BuildId(1), lost("gone too"));
    assert_eq!(c.lost_engine, Some((EngineId(1), "gone too".into())));
    let c = s.finish(BuildId(2), lost("again"));
    assert_eq!(c.lost_engine, None, "an engine is lost once");
    match s.next() {
        Some(Decision::Refused {
            pipeline: BuildId(3),
            why,
        }) => {
            assert_eq!(why, "no engine is reachable")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let summary = s.summary();
    assert_eq!(summary.exit, ExitStatus::EngineFailed);
    assert!(summary
        .outcomes
        .iter()
        .all(|o| o.status == Status::Failed && o.exit == Some(ExitStatus::EngineFailed)));
}

#[test]
fn a_platform_build_goes_to_an_engine_of_its_platform_and_is_emulated_only_without_one() {
    let (graph, names) = independent(&["a", "b", "c", "d"]);
    let mut s = Scheduler::new(&graph, names, 2, 8, false);
    let pl = |s: &str| Some(Platform::parse(s).unwrap());
    // Engine 0 is amd64, engine 1 arm64; `d` names no platform.
    s.prefer_native(
        vec![
            pl("linux/arm64"),
            pl("linux/arm64/v8"),
            pl("linux/riscv64"),
            None,
        ],
        vec![pl("linux/amd64"), pl("linux/arm64")],
    );
    let start = |d: Option<Decision>| match d {
        Some(Decision::Start {
            pipeline, engine, ..
        }) => (pipeline.0, engine.0),
        other => panic!("expected a start, got {other:?}"),
    };
    assert_eq!(start(s.next()), (0, 1), "arm64 goes to the arm64 engine");
    assert_eq!(
        start(s.next()),
        (1, 1),
        "even when that engine is busier: emulation is the last resort"
    );
    assert!(
        !s.emulated(BuildId(1), EngineId(1)),
        "a variant matches the engine's bare arch"
    );
    assert_eq!(
        start(s.next()),
        (2, 0),
        "no riscv64 engine: the least loaded"
    );
    assert!(s.emulated(BuildId(2), EngineId(0)));
    assert_eq!(start(s.next()), (3, 0), "no platform: by load, as before");
    assert!(!s.emulated(BuildId(3), EngineId(0)));
}

#[test]
fn a_multi_platform_pipeline_is_published_once_all_its_builds_succeeded() {
    let (graph, names) = independent(&["amd", "arm", "other"]);
    let ok = || {
        Finish::Succeeded(Applied {
            image: "sha256:i".into(),
            tags: Vec::new(),
            pushed: Vec::new(),
            made: None,
        })
    };
    let failed = || Finish::Failed {
        exit: ExitStatus::StepFailed,
        detail: "step".into(),
        lost: None,
    };
    let scheduler = |fail_fast| {
        let mut s = Scheduler::new(&graph, names.clone(), 1, 8, fail_fast);
        s.publish_groups(vec![vec![BuildId(0), BuildId(1)]]);
        for _ in 0..3 {
            assert!(matches!(s.next(), Some(Decision::Start { .. })));
        }
        s
    };
    // Both builds succeed: published after the second, and the run succeeds.
    let mut s = scheduler(true);
    assert_eq!(s.finish(BuildId(0), ok()).publish, None);
    assert_eq!(s.finish(BuildId(1), ok()).publish, Some(GroupId(0)));
    assert_eq!(s.built(GroupId(0)).len(), 2);
    s.published(GroupId(0), Ok(Vec::new()));
    assert_eq!(s.finish(BuildId(2), ok()).publish, None);
    let summary = s.summary();
    assert_eq!(summary.indexes[0].status, Status::Succeeded);
    assert_eq!(summary.exit, ExitStatus::Success);
    // One build fails: nothing of the pipeline is published, whatever the other does.
    let mut s = scheduler(false);
    s.finish(BuildId(0), failed());
    assert_eq!(s.finish(BuildId(1), ok()).publish, None);
    let summary = s.summary();
    assert_eq!(summary.indexes[0].status, Status::Skipped);
    assert!(summary.indexes[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("`amd` failed"));
    // The publication fails: its exit status is the run's, and fail-fast stops the rest.
    let mut s = scheduler(true);
    s.finish(BuildId(0), ok());
    s.finish(BuildId(1), ok());
    let c = s.published(
        GroupId(0),
        Err((ExitStatus::PublishFailed, "push failed".into())),
    );
    assert!(c.stopping.is_some());
    s.finish(BuildId(2), ok());
    let summary = s.summary();
    assert_eq!(summary.indexes[0].status, Status::Failed);
    assert_eq!(summary.exit, ExitStatus::PublishFailed);
    // An interrupt while publishing: the publication is interrupted, the run exits by the signal.
    let mut s = scheduler(true);
    s.finish(BuildId(0), ok());
    s.finish(BuildId(1), ok());
    let running = s.interrupt(Signal::Terminate);
    assert_eq!(running, [BuildId(2)]);
    let summary = s.summary();
    assert_eq!(summary.indexes[0].status, Status::Interrupted);
    assert_eq!(summary.exit, ExitStatus::Interrupted(Signal::Terminate));
}
