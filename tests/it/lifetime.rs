//! The lifetime of build containers: a build container cannot outlive the tool that made it,
//! whatever ends the tool (SIGKILL, an engine restart), and what a run that is gone left
//! behind is removed by the next apply or by `gc`, never a container of a live run.

use std::time::{Duration, Instant};

use crate::faults::{pipeline, setup, BASE};
use crate::harness::{output_text, unique, wait_exit, wait_for_line, Project};
use crate::support::daemons::Daemon;
use crate::support::engine::{containers_named, docker, docker_ok, ContainersNamed};

/// How long a killed run's container may survive it.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// A pipeline whose one step holds the secret `TOKEN` (from `token.txt`) and sleeps a minute.
fn long_secret_step(p: &Project, name: &str, secret: &str) {
    p.file("token.txt", secret);
    p.pipeline(&pipeline(
        name,
        "[[step]]\nname = \"long\"\nsecrets = [\"TOKEN\"]\nrun = \"echo started; sleep 60\"\n",
        &format!("life/{name}:1"),
        "[secrets.TOKEN]\nfile = \"token.txt\"\n",
    ));
}

/// Polls `left` until it returns nothing; returns how long that took, or panics after
/// [`GONE_WITHIN`] with what is still there.
fn gone_within(what: &str, left: impl Fn() -> Vec<String>) -> Duration {
    let since = Instant::now();
    loop {
        let now = left();
        if now.is_empty() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < GONE_WITHIN,
            "{what} still there after {GONE_WITHIN:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_apply_leaves_no_container_holding_its_secret() {
    setup();
    let name = unique("life-kill");
    let secret = format!("killsecret-{}", unique("v"));
    let p = Project::new();
    long_secret_step(&p, &name, &secret);
    let prefix = format!("pipeline-{name}-");
    let (mut child, rx) = p.spawn_apply(&["--no-cache"]);
    wait_for_line(&rx, "started", Duration::from_secs(60));
    let during = containers_named(&prefix);
    assert_eq!(during.len(), 1, "one build container runs the step");
    let container = &during[0];
    // The probe works: while the run lives, its container holds the secret.
    assert_eq!(
        docker_ok(&["exec", container, "cat", "/run/secrets/TOKEN"]),
        secret
    );

    child.kill().expect("SIGKILL the apply");
    child.wait().unwrap();
    let took = gone_within("the killed run's container", || containers_named(&prefix));
    eprintln!("[lifetime] the killed run's container was gone {took:?} after SIGKILL");
    let read = docker(&["exec", container, "cat", "/run/secrets/TOKEN"]);
    assert!(
        !read.status.success(),
        "the secret is still readable: {}",
        output_text(&read)
    );

    // Neither gc nor the next apply finds anything of it (nor leaves anything of its own).
    let gc = p.cmd(&["gc"]).output().unwrap();
    assert!(gc.status.success(), "gc failed: {}", output_text(&gc));
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nrun = \"true\"\n",
        &format!("life/{name}:1"),
        "",
    ));
    let again = p.cmd(&["apply", "pipeline.toml"]).output().unwrap();
    assert!(again.status.success(), "{}", output_text(&again));
    let left = containers_named(&prefix);
    assert!(left.is_empty(), "containers left behind: {left:?}");
    // What keeps the build container tied to the tool never reaches the image.
    let config = &crate::support::engine::image_inspect(&format!("life/{name}:1"))["Config"];
    for key in ["OpenStdin", "StdinOnce", "AttachStdin"] {
        assert_eq!(config[key], false, "{key}: {config}");
    }
    assert!(
        !config["Entrypoint"].to_string().contains("cat"),
        "{config}"
    );
    crate::support::engine::remove_image(&format!("life/{name}:1"));
}

/// A build container's name for a run that never was.
fn build_name(pipeline: &str, n: u32) -> String {
    format!("pipeline-{pipeline}-0123456789abcd-{n}")
}

#[test]
fn apply_and_gc_remove_containers_of_runs_that_are_gone_and_keep_the_running_ones() {
    setup();
    let u = unique("life-left");
    let exited = build_name(&format!("{u}-exited"), 1);
    let running = build_name(&format!("{u}-running"), 2);
    let created = build_name(&format!("{u}-created"), 3);
    // Not a build container's name: never the tool's to remove.
    let foreign = format!("pipeline-{u}-mine");
    // Whatever happens below, the test's containers go.
    let _cleanup = ContainersNamed(format!("pipeline-{u}"));
    let make_exited = |name: &str| {
        docker_ok(&["run", "--name", name, BASE, "true"]);
    };
    make_exited(&exited);
    make_exited(&foreign);
    docker_ok(&[
        "run", "-d", "--init", "--name", &running, BASE, "sleep", "120",
    ]);
    docker_ok(&["create", "--name", &created, BASE, "true"]);
    let ours = format!("pipeline-{u}");
    let all = || {
        let mut names = containers_named(&ours);
        names.sort();
        names
    };
    let mut expected_after = vec![foreign.clone(), running.clone(), created.clone()];
    expected_after.sort();

    let p = Project::new();
    let dry = p.cmd(&["gc", "--dry-run"]).output().unwrap();
    let text = output_text(&dry);
    assert!(dry.status.success(), "{text}");
    assert!(
        text.contains(&format!("would remove container {exited}")),
        "{text}"
    );
    for kept in [&running, &created, &foreign] {
        assert!(
            !text.contains(kept.as_str()),
            "{kept} is not a leftover: {text}"
        );
    }
    assert_eq!(all().len(), 4, "a dry run removes nothing");

    // The next apply (of any pipeline) removes it.
    let name = unique("life-next");
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nrun = \"true\"\n",
        &format!("life/{name}:1"),
        "",
    ));
    let applied = p.cmd(&["apply", "pipeline.toml"]).output().unwrap();
    let text = output_text(&applied);
    assert!(applied.status.success(), "{text}");
    assert_eq!(all(), expected_after, "after apply:\n{text}");
    crate::support::engine::remove_image(&format!("life/{name}:1"));

    // So does gc.
    make_exited(&exited);
    let gc = p.cmd(&["gc"]).output().unwrap();
    let text = output_text(&gc);
    assert!(gc.status.success(), "{text}");
    assert!(
        text.contains(&format!("removed container {exited}")),
        "{text}"
    );
    assert_eq!(all(), expected_after, "after gc:\n{text}");
}

#[test]
fn an_engine_restart_mid_step_names_the_engine_and_leaves_no_container() {
    setup();
    let mut d = Daemon::start();
    d.load_image(BASE);
    let name = unique("life-restart");
    let p = Project::new();
    long_secret_step(&p, &name, &format!("restartsecret-{}", unique("v")));
    let prefix = format!("pipeline-{name}-");
    let on_daemon = |d: &Daemon| -> Vec<String> {
        d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .filter(|n| n.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    };
    let (mut child, rx) = p.spawn_apply(&["--no-cache", "--engine", &d.engine_arg]);
    wait_for_line(&rx, "started", Duration::from_secs(60));
    assert_eq!(on_daemon(&d).len(), 1, "one build container runs the step");
    let restarted = Instant::now();
    d.restart();
    eprintln!(
        "[lifetime] the engine restarted in {:?}",
        restarted.elapsed()
    );
    let status = wait_exit(&mut child, Duration::from_secs(60)).expect("apply did not exit");
    let text: Vec<String> = rx.try_iter().collect();
    let text = text.join("\n");
    eprintln!("[lifetime] apply after the restart: {status:?}\n{text}");
    assert_eq!(status.code(), Some(5), "an engine error:\n{text}");
    assert!(
        text.contains(&format!(
            "lost the connection to the Docker engine at `{}`",
            d.engine_arg
        )),
        "the error names the engine `{}`:\n{text}",
        d.engine_arg
    );
    let took = gone_within("the build container after the restart", || on_daemon(&d));
    eprintln!("[lifetime] no container left {took:?} after the apply exited");
    let gc = p.cmd(&["gc", "--engine", &d.engine_arg]).output().unwrap();
    assert!(gc.status.success(), "{}", output_text(&gc));
    assert!(on_daemon(&d).is_empty());
}

#[test]
fn a_build_container_stopped_from_outside_mid_step_is_an_engine_error_not_an_exit_code() {
    setup();
    let name = unique("life-stopped");
    let p = Project::new();
    long_secret_step(&p, &name, &format!("stoppedsecret-{}", unique("v")));
    let prefix = format!("pipeline-{name}-");
    let (mut child, rx) = p.spawn_apply(&["--no-cache"]);
    wait_for_line(&rx, "started", Duration::from_secs(60));
    let during = containers_named(&prefix);
    assert_eq!(during.len(), 1, "one build container runs the step");
    docker_ok(&["kill", &during[0]]);
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("apply did not exit");
    let text: Vec<String> = rx.try_iter().collect();
    let text = text.join("\n");
    assert_eq!(status.code(), Some(5), "an engine error:\n{text}");
    assert!(
        text.contains("the build container stopped during the command"),
        "{text}"
    );
    gone_within("the stopped build container", || containers_named(&prefix));
}
