//! The executor and planner against the in-memory fake engine: no daemon needed.

use pipeline::config::{self, Overrides};
use pipeline::engine::fake::FakeEngine;
use pipeline::engine::{Engine, ImageConfig};
use pipeline::events::Event;
use pipeline::execute::{apply, ApplyError, Options};
use pipeline::model::Pipeline;

use crate::harness::Project;

fn load(project: &Project, toml: &str) -> Pipeline {
    let path = project.pipeline(toml);
    config::load(&path, &Overrides::default()).unwrap_or_else(|r| panic!("{}", r.render()))
}

fn options() -> Options {
    Options {
        no_cache: false,
        keep_failed: false,
        attempts: 2,
        retry_delay: std::time::Duration::from_millis(1),
        run_name: "pipeline-test-run".into(),
    }
}

fn run(engine: &FakeEngine, p: &Pipeline) -> Result<pipeline::execute::Applied, ApplyError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(apply(engine, p, &options(), &|_e: Event| {}))
}

const THREE_STEPS: &str = r#"
[base]
image = "base:1"
[[step]]
run = "echo one"
[[step]]
run = "echo two"
[[step]]
checkpoint = false
run = "echo {{ last }}"
[commit]
message = "{{ message }}"
[vars]
last = "three"
message = "m1"
[[publish]]
repository = "registry.test:5000/app"
tags = ["1", "latest"]
"#;

fn engine() -> FakeEngine {
    FakeEngine::with_image(
        "base:1",
        ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        },
    )
}

#[test]
fn cold_apply_uses_one_container_and_pushes_every_tag_in_order() {
    let project = Project::new();
    let p = load(&project, THREE_STEPS);
    let e = engine();
    let applied = run(&e, &p).expect("apply");
    assert_eq!(e.count("create"), 1);
    assert_eq!(e.count("exec"), 3);
    let pushes: Vec<String> = e
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("push "))
        .collect();
    assert_eq!(
        pushes,
        [
            "push registry.test:5000/app:1",
            "push registry.test:5000/app:latest"
        ]
    );
    assert_eq!(applied.pushed.len(), 2);
    assert_eq!(e.containers(), 0, "containers left behind");
}

#[test]
fn reapply_runs_nothing_and_pushes_nothing() {
    let project = Project::new();
    let p = load(&project, THREE_STEPS);
    let e = engine();
    run(&e, &p).unwrap();
    e.clear_calls();
    let applied = run(&e, &p).unwrap();
    assert_eq!(
        (
            e.count("create"),
            e.count("exec"),
            e.count("push"),
            e.count("commit")
        ),
        (0, 0, 0, 0),
        "{:?}",
        e.calls()
    );
    assert!(applied.pushed.iter().all(|p| p.up_to_date));
}

#[test]
fn commit_only_change_commits_without_starting_a_container() {
    let project = Project::new();
    let e = engine();
    run(&e, &load(&project, THREE_STEPS)).unwrap();
    e.clear_calls();
    run(
        &e,
        &load(&project, &THREE_STEPS.replace("\"m1\"", "\"m2\"")),
    )
    .unwrap();
    assert_eq!(
        (e.count("exec"), e.count("start"), e.count("commit")),
        (0, 0, 1),
        "{:?}",
        e.calls()
    );
}

#[test]
fn a_failing_step_stops_the_run_removes_the_container_and_pushes_nothing() {
    let project = Project::new();
    let p = load(&project, &THREE_STEPS.replace("echo two", "exit 9"));
    let e = engine();
    match run(&e, &p) {
        Err(ApplyError::StepFailed { index, code, .. }) => assert_eq!((index, code), (2, 9)),
        other => panic!("expected a step failure, got {other:?}"),
    }
    assert_eq!(e.count("push"), 0);
    assert_eq!(e.count("exec"), 2);
    assert_eq!(e.containers(), 0);
}

#[test]
fn plan_reports_why_a_step_misses() {
    let project = Project::new();
    let e = engine();
    let p = load(&project, THREE_STEPS);
    run(&e, &p).unwrap();
    let edited = load(&project, &THREE_STEPS.replace("echo one", "echo ONE"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inputs: Vec<_> = edited
        .steps
        .iter()
        .map(|s| pipeline::cache::StepInputs::of(s).unwrap())
        .collect();
    let base = rt.block_on(e.inspect_image("base:1")).unwrap().unwrap();
    let obs = pipeline::plan::Observed {
        base_id: Some(base.id),
        cache: rt.block_on(e.list_cache()).unwrap(),
        ..Default::default()
    };
    let plan = pipeline::plan::build(&edited, &inputs, &obs);
    assert!(plan
        .steps
        .iter()
        .all(|s| matches!(s.status, pipeline::plan::StepStatus::Run { .. })));
    assert!(!plan.is_noop());
    let unchanged = pipeline::plan::build(
        &p,
        &p.steps
            .iter()
            .map(|s| pipeline::cache::StepInputs::of(s).unwrap())
            .collect::<Vec<_>>(),
        &obs,
    );
    assert!(unchanged
        .steps
        .iter()
        .all(|s| s.status == pipeline::plan::StepStatus::Cached));
}
