//! The executor and the cache lookup against the in-memory fake engine: no daemon needed.

use super::*;
use crate::cache::StepInputs;
use crate::engine::fake::FakeEngine;
use crate::engine::Engine;
use crate::execute::events::Event;
use crate::model::Pipeline;
use crate::observe;
use crate::plan::StepStatus;
use crate::testing::{engine, runtime, Folder};

fn options() -> Options {
    Options {
        no_cache: false,
        keep_failed: false,
        attempts: 2,
        retry_delay: std::time::Duration::from_millis(1),
        notes: None,
        store: None,
        no_push: false,
    }
}

fn run(engine: &FakeEngine, p: &Pipeline) -> Result<Applied, ApplyError> {
    runtime().block_on(apply(
        engine,
        p,
        "pipeline-test-run",
        &options(),
        &|_e: Event| {},
    ))
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

#[test]
fn cold_apply_uses_one_container_and_pushes_every_tag_in_order() {
    let f = Folder::new();
    let p = f.load("p", THREE_STEPS);
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
    let f = Folder::new();
    let p = f.load("p", THREE_STEPS);
    let e = engine();
    run(&e, &p).unwrap();
    e.clear_calls();
    let applied = run(&e, &p).unwrap();
    // Nothing is asked of the base either: its first `run` step ran on it before.
    assert_eq!(
        (
            e.count("create"),
            e.count("exec"),
            e.count("push"),
            e.count("commit"),
            e.count("stat")
        ),
        (0, 0, 0, 0, 0),
        "{:?}",
        e.calls()
    );
    assert!(applied.pushed.iter().all(|p| p.up_to_date));
}

#[test]
fn commit_only_change_commits_without_starting_a_container() {
    let f = Folder::new();
    let e = engine();
    run(&e, &f.load("p", THREE_STEPS)).unwrap();
    e.clear_calls();
    run(&e, &f.load("p", &THREE_STEPS.replace("\"m1\"", "\"m2\""))).unwrap();
    assert_eq!(
        (e.count("exec"), e.count("start"), e.count("commit")),
        (0, 0, 1),
        "{:?}",
        e.calls()
    );
}

#[test]
fn a_failing_step_stops_the_run_removes_the_container_and_pushes_nothing() {
    let f = Folder::new();
    let p = f.load("p", &THREE_STEPS.replace("echo two", "exit 9"));
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
fn plan_and_apply_share_one_lookup_and_plan_says_why_a_step_misses() {
    let f = Folder::new();
    let e = engine();
    let p = f.load("p", THREE_STEPS);
    run(&e, &p).unwrap();
    let rt = runtime();
    let unchanged = rt
        .block_on(observe::plan(&e, &p, &Default::default(), None))
        .unwrap();
    assert!(unchanged.is_noop(), "{unchanged:?}");
    assert!(unchanged
        .steps
        .iter()
        .all(|s| s.status == StepStatus::Cached));
    let edited = f.load("p", &THREE_STEPS.replace("echo one", "echo ONE"));
    let plan = rt
        .block_on(observe::plan(&e, &edited, &Default::default(), None))
        .unwrap();
    assert!(!plan.is_noop());
    assert!(plan
        .steps
        .iter()
        .all(|s| matches!(s.status, StepStatus::Run { .. })));
    // What apply then does matches the plan: every step runs.
    e.clear_calls();
    run(&e, &edited).unwrap();
    assert_eq!(e.count("exec"), 3, "{:?}", e.calls());
}

/// Hex runs of 16 characters or more: what a digest of an input looks like.
fn long_hex(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() >= 16)
        .map(str::to_string)
        .collect()
}

#[test]
fn checkpoint_comments_name_the_steps_and_the_input_digests_stay_in_the_local_notes() {
    let f = Folder::new();
    let notes = tempfile::tempdir().unwrap();
    let opts = Options {
        notes: Some(cache::NoteStore::at(notes.path())),
        ..options()
    };
    let toml = r#"
[vars]
pin = "4711"
[base]
image = "base:1"
[[step]]
name = "install vim"
checkpoint = true
run = "echo {{ pin }}"
env = { PIN = "{{ pin }}" }
[[step]]
run = "echo {{ pin }} > /pin"
[commit]
message = "m"
"#;
    let p = f.load("p", toml);
    assert_eq!(
        p.steps[1].name, "echo {{ pin }} > /pin",
        "never the rendered text"
    );
    let e = engine();
    let checkpoints = std::sync::Mutex::new(Vec::new());
    let sink = |ev: Event| {
        if let Event::Checkpoint { image, .. } = ev {
            checkpoints.lock().unwrap().push(image);
        }
    };
    let rt = runtime();
    rt.block_on(apply(&e, &p, "pipeline-test-run", &opts, &sink))
        .unwrap();
    let checkpoints = checkpoints.into_inner().unwrap();
    assert_eq!(checkpoints.len(), 2);
    let comments: Vec<String> = checkpoints
        .iter()
        .map(|id| rt.block_on(e.inspect_image(id)).unwrap().unwrap().comment)
        .collect();
    assert_eq!(
        comments,
        [
            "pipeline p: step 1 (install vim)",
            "pipeline p: step 2 (echo {{ pin }} > /pin)"
        ]
    );
    for c in &comments {
        assert!(!c.contains("4711") && long_hex(c).is_empty(), "{c}");
    }
    for id in &checkpoints {
        assert!(
            opts.notes.as_ref().unwrap().read(id).is_some(),
            "no note for {id}"
        );
    }

    // The notes explain a miss; without them, plan says less but still plans.
    let edited = f.load(
        "p",
        &toml.replace("echo {{ pin }}\"", "echo {{ pin }} again\""),
    );
    let with_notes = observe::PlanOptions {
        notes: opts.notes.clone(),
        ..Default::default()
    };
    let plan = rt
        .block_on(observe::plan(&e, &edited, &with_notes, None))
        .unwrap();
    assert_eq!(
        plan.steps[0].status,
        StepStatus::Run {
            reason: "changed: command".into()
        }
    );
    let plan = rt
        .block_on(observe::plan(&e, &edited, &Default::default(), None))
        .unwrap();
    assert_eq!(
        plan.steps[0].status,
        StepStatus::Run {
            reason: "not in the cache".into()
        }
    );
}

/// A secret file that turns into a FIFO after validation: apply reads it without blocking.
#[test]
fn a_secret_file_that_became_a_fifo_fails_the_apply_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "[base]\nimage = \"base:1\"\n[[step]]\nrun = \"true\"\nsecrets = [\"token\"]\n\
         [secrets.token]\nfile = \"token\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "s3cret").unwrap();
    let pipeline = crate::config::load(&path, &crate::config::Overrides::default())
        .unwrap_or_else(|r| panic!("{}", r.render()));
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("token"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let e = engine();
    let started = std::time::Instant::now();
    // A real clock: a paused one would jump to the timeout while the read is on the
    // blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            apply(
                &e,
                &pipeline,
                "pipeline-test-run",
                &options(),
                &|_e: Event| {},
            ),
        )
        .await
    });
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    match result {
        Ok(Err(ApplyError::Secret { name, source })) => {
            assert_eq!(name, "token");
            let detail = source.to_string();
            assert!(detail.contains("a FIFO, not a regular file"), "{detail}");
        }
        Ok(other) => panic!("expected a secret error, got {other:?}"),
        Err(elapsed) => panic!("apply blocked on a FIFO secret ({elapsed})"),
    }
}

#[test]
fn steps_share_a_container_while_their_options_are_the_same() {
    let f = Folder::new();
    let p = f.load(
        "p",
        r#"
[base]
image = "base:1"
[[step]]
run = "echo plain"
[[step]]
run = "echo cached one"
cache = ["/c"]
[[step]]
run = "echo cached two"
cache = ["/c"]
[[step]]
run = "echo offline"
network = "none"
"#,
    );
    let e = engine();
    run(&e, &p).expect("apply");
    // plain | cached one, cached two | offline: a checkpoint before each new container.
    assert_eq!(e.count("create"), 3, "{:?}", e.calls());
    assert_eq!(e.count("create_volume"), 1, "{:?}", e.calls());
    assert_eq!(e.count("exec"), 4);
    assert_eq!(e.containers(), 0, "containers left behind");
    // The cache's path is part of the key; the network too.
    let inputs: Vec<StepInputs> = p.steps.iter().map(|s| StepInputs::of(s).unwrap()).collect();
    assert!(inputs[1].fields.contains_key("cache paths"));
    assert!(inputs[3].fields.contains_key("network"));
    assert!(
        !inputs[0].fields.contains_key("network"),
        "keys of plain steps stay as they were"
    );
}

#[test]
fn plan_says_apply_would_fail_on_a_base_that_may_not_be_pulled_also_offline() {
    let f = Folder::new();
    let e = engine();
    let p = f.load(
        "p",
        "[base]\nimage = \"absent:1\"\npull = \"never\"\n[[step]]\nrun = \"true\"\n",
    );
    let rt = runtime();
    let blocked = crate::plan::Blocker::BaseMissing {
        reference: "absent:1".into(),
    };
    for offline in [false, true] {
        let opts = observe::PlanOptions {
            look: observe::Look {
                no_cache: false,
                offline,
            },
            ..Default::default()
        };
        let plan = rt.block_on(observe::plan(&e, &p, &opts, None)).unwrap();
        assert_eq!(
            plan.fails,
            std::slice::from_ref(&blocked),
            "offline: {offline}"
        );
    }
    // Apply fails on exactly that, before anything runs.
    match run(&e, &p) {
        Err(ApplyError::BaseMissing { reference, .. }) => assert_eq!(reference, "absent:1"),
        other => panic!("expected the base to be missing, got {other:?}"),
    }
    assert_eq!(e.count("create"), 0);
    // Present in the engine, the same file is fine.
    let present = f.load(
        "q",
        "[base]\nimage = \"base:1\"\npull = \"never\"\n[[step]]\nrun = \"true\"\n",
    );
    let plan = rt
        .block_on(observe::plan(&e, &present, &Default::default(), None))
        .unwrap();
    assert!(plan.fails.is_empty(), "{plan:?}");
}

#[test]
fn a_run_step_a_shell_less_base_cannot_start_fails_before_any_step_and_plan_says_so() {
    let f = Folder::new();
    f.file("app.txt", "x");
    let toml = "[base]\nimage = \"base:1\"\n\
                [[step]]\ncopy = { src = \"app.txt\", dest = \"/app/\" }\n\
                [[step]]\nname = \"greet\"\nrun = \"echo hi\"\n\
                [commit]\ntags = [\"app:1\"]\n";
    let p = f.load("p", toml);
    let e = engine().without_bin();
    let events = std::sync::Mutex::new(Vec::new());
    let result = runtime().block_on(apply(
        &e,
        &p,
        "pipeline-test-run",
        &options(),
        &|ev: Event| events.lock().unwrap().push(format!("{ev:?}")),
    ));
    let lack = match result {
        Err(ApplyError::BaseLacks(lack)) => lack,
        other => panic!("expected the base to lack a shell, got {other:?}"),
    };
    assert_eq!((lack.step, lack.name.as_str()), (2, "greet"));
    assert!(lack.at.ends_with("p.toml:7:7"), "{}", lack.at);
    let what: Vec<&str> = lack.missing.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(what, ["cat", "/bin/sh"]);
    let events = events.into_inner().unwrap();
    assert!(
        !events.iter().any(|e| e.starts_with("StepStarted")),
        "no step started: {events:?}"
    );
    assert_eq!(
        (e.count("upload"), e.count("start"), e.count("exec")),
        (0, 0, 0),
        "nothing of the pipeline ran: {:?}",
        e.calls()
    );
    assert_eq!(e.containers(), 0, "containers left behind");
    // Plan says the same, from a container of the base that it removes again.
    let opts = observe::PlanOptions {
        look_in_base: Some("pipeline-p-plan-1".into()),
        ..Default::default()
    };
    let plan = runtime()
        .block_on(observe::plan(&e, &p, &opts, None))
        .unwrap();
    assert_eq!(
        plan.fails,
        [crate::plan::Blocker::BaseLacks(*lack)],
        "{:?}",
        e.calls()
    );
    assert_eq!(e.containers(), 0, "plan leaves no container");
    // A base with a shell: nothing to say, and apply runs.
    let e = engine();
    let plan = runtime()
        .block_on(observe::plan(&e, &p, &opts, None))
        .unwrap();
    assert_eq!(plan.fails, []);
    run(&e, &p).expect("apply");
}
