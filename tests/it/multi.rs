//! Issue 7: many pipelines applied as a dependency graph, in parallel, across several real
//! Docker engines on this machine (extra `dockerd` instances, one of them over TCP + TLS).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{output_text, read_json, unique, Project};
use crate::support::daemons::{events_of, unix_now, Daemon};
use crate::support::engine::{docker, docker_bin, docker_ok, require_image};
use crate::support::registry::Registry;

const MAIN: &str = "unix:///var/run/docker.sock";

/// A busybox pipeline file.
fn pipeline(
    name: &str,
    base: &str,
    pull: &str,
    steps: &[&str],
    tags: &[&str],
    publish: Option<(&str, &str)>,
) -> String {
    let mut t = format!("name = \"{name}\"\n\n[base]\nimage = \"{base}\"\npull = \"{pull}\"\n\n");
    for s in steps {
        t += &format!("[[step]]\nrun = '{s}'\n\n");
    }
    t += "[commit]\nmessage = \"multi test\"\n";
    if !tags.is_empty() {
        let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
        t += &format!("tags = [{}]\n", tags.join(", "));
    }
    t += "\n";
    if let Some((repo, tag)) = publish {
        t += &format!("[[publish]]\nrepository = \"{repo}\"\ntags = [\"{tag}\"]\n");
    }
    t
}

fn cmd(project: &Project, args: &[&str]) -> assert_cmd::Command {
    let mut c = project.cmd_on(MAIN, args);
    c.timeout(Duration::from_secs(110));
    c
}

/// The report entry of pipeline `name`.
fn entry<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .find(|p| p["pipeline"] == name)
        .unwrap_or_else(|| panic!("no report entry for {name}: {r:#}"))
}

fn start_and_end(e: &Value) -> (std::time::SystemTime, std::time::SystemTime) {
    let start = humantime::parse_rfc3339(e["started_at"].as_str().unwrap()).unwrap();
    let end = start + Duration::from_millis(e["duration_ms"].as_u64().unwrap());
    (start, end)
}

#[test]
fn cycles_and_ambiguous_producers_are_validation_errors_that_name_the_files() {
    let project = Project::new();
    let c1 = project.file(
        "c1.toml",
        pipeline("c1", "mt/c2:1", "never", &["true"], &["mt/c1:1"], None),
    );
    let c2 = project.file(
        "c2.toml",
        pipeline("c2", "mt/c1:1", "never", &["true"], &["mt/c2:1"], None),
    );
    // Nothing reaches an engine: the graph is checked first.
    for sub in ["apply", "plan", "validate"] {
        let out = cmd(&project, &[sub, c1.to_str().unwrap(), c2.to_str().unwrap()])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{sub}: {text}");
        assert!(
            text.contains("cycle") && text.contains("c1.toml") && text.contains("c2.toml"),
            "{text}"
        );
    }
    let p1 = project.file(
        "p1.toml",
        pipeline(
            "p1",
            "busybox:latest",
            "never",
            &["true"],
            &["mt/x:1"],
            None,
        ),
    );
    let p2 = project.file(
        "p2.toml",
        pipeline(
            "p2",
            "busybox:latest",
            "never",
            &["true"],
            &["mt/x:1"],
            None,
        ),
    );
    let p3 = project.file(
        "p3.toml",
        pipeline("p3", "mt/x:1", "never", &["true"], &[], None),
    );
    let out = cmd(
        &project,
        &[
            "apply",
            p1.to_str().unwrap(),
            p2.to_str().unwrap(),
            p3.to_str().unwrap(),
        ],
    )
    .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    // Two files producing one reference is an error of its own, located in the second file.
    assert!(
        text.contains("p1.toml")
            && text.contains("p2.toml")
            && text.contains("error[duplicate-target]")
            && text.contains("produced by two files"),
        "{text}"
    );
    // A pipeline built on its own previous result is not a cycle.
    let own = project.file(
        "own.toml",
        pipeline("own", "mt/own:1", "never", &["true"], &["mt/own:1"], None),
    );
    let ok = cmd(
        &project,
        &["plan", own.to_str().unwrap(), p3.to_str().unwrap()],
    )
    .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    .output()
    .unwrap();
    assert!(!output_text(&ok).contains("cycle"), "{}", output_text(&ok));
}

#[test]
fn plan_shows_the_graph_and_the_order_in_text_and_json() {
    require_image("busybox:latest");
    let u = unique("mtplan");
    let project = Project::new();
    let base_tag = format!("{u}-base:1");
    let app = project.file(
        "1-app.toml",
        pipeline(
            &format!("{u}-app"),
            &base_tag,
            "missing",
            &["true"],
            &[],
            None,
        ),
    );
    let base = project.file(
        "2-base.toml",
        pipeline(
            &format!("{u}-base"),
            "busybox:latest",
            "never",
            &["true"],
            &[&base_tag],
            None,
        ),
    );
    let other = project.file(
        "3-other.toml",
        pipeline(
            &format!("{u}-other"),
            "busybox:latest",
            "never",
            &["true"],
            &[],
            None,
        ),
    );
    let files = [
        app.to_str().unwrap(),
        base.to_str().unwrap(),
        other.to_str().unwrap(),
    ];
    let out = cmd(&project, &[&["plan"][..], &files].concat())
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("graph: 3 pipelines, 2 stages"), "{text}");
    assert!(
        text.contains(&format!("order: {u}-base, {u}-other, {u}-app")),
        "the producer comes first: {text}"
    );
    assert!(text.contains("not published"), "{text}");
    let out = cmd(
        &project,
        &[&["plan", "--format", "json"][..], &files].concat(),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["graph"]["order"], serde_json::json!([1, 2, 0]));
    assert_eq!(v["graph"]["nodes"][0]["dependency"]["producer"], 1);
    assert_eq!(v["plans"].as_array().unwrap().len(), 3);
    // The folder form is the same as the files.
    let out = cmd(&project, &["plan", project.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output_text(&out).contains(&format!("order: {u}-base, {u}-other, {u}-app")),
        "{}",
        output_text(&out)
    );
}

#[test]
// One scenario told in order: each check reads what the step before it left.
#[allow(clippy::too_many_lines)]
fn failures_skip_dependents_and_fail_fast_or_keep_going_decide_the_rest() {
    require_image("busybox:latest");
    let u = unique("mtfail");
    let project = Project::new();
    let bad_tag = format!("{u}-bad:1");
    let bad = project.file(
        "1-bad.toml",
        pipeline(
            &format!("{u}-bad"),
            "busybox:latest",
            "never",
            &["echo broken; exit 7"],
            &[&bad_tag],
            None,
        ),
    );
    let ok = project.file(
        "2-ok.toml",
        pipeline(
            &format!("{u}-ok"),
            "busybox:latest",
            "never",
            &["echo fine"],
            &[],
            None,
        ),
    );
    let dep = project.file(
        "3-dep.toml",
        pipeline(
            &format!("{u}-dep"),
            &bad_tag,
            "missing",
            &["true"],
            &[],
            None,
        ),
    );
    let files = [
        bad.to_str().unwrap(),
        ok.to_str().unwrap(),
        dep.to_str().unwrap(),
    ];
    let rep = project.path().join("keep.json");
    let out = cmd(
        &project,
        &[
            &[
                "apply",
                "--no-cache",
                "--keep-going",
                "--report",
                rep.to_str().unwrap(),
            ][..],
            &files,
        ]
        .concat(),
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "the failed step's code: {text}");
    let r = read_json(&rep);
    assert_eq!(entry(&r, &format!("{u}-bad"))["status"], "failed", "{r:#}");
    assert_eq!(
        entry(&r, &format!("{u}-ok"))["status"],
        "succeeded",
        "{r:#}"
    );
    assert_eq!(entry(&r, &format!("{u}-dep"))["status"], "skipped", "{r:#}");
    assert!(
        text.contains(&format!("[{u}-bad] ")),
        "every line carries its pipeline: {text}"
    );
    assert!(
        text.contains("summary: 1 succeeded, 1 failed, 1 skipped"),
        "{text}"
    );
    assert!(
        text.contains(&format!("it builds on `{u}-bad`, which failed")),
        "{text}"
    );
    // Fail fast (the default) with one job: nothing starts after the failure.
    let rep = project.path().join("fast.json");
    let out = cmd(
        &project,
        &[
            &[
                "apply",
                "--no-cache",
                "--jobs",
                "1",
                "--report",
                rep.to_str().unwrap(),
            ][..],
            &files,
        ]
        .concat(),
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let r = read_json(&rep);
    assert_eq!(
        entry(&r, &format!("{u}-ok"))["status"],
        "not_started",
        "{r:#}"
    );
    assert_eq!(entry(&r, &format!("{u}-dep"))["status"], "skipped", "{r:#}");
    assert!(
        !text.contains("echo fine") && !text.contains(&format!("[{u}-ok] start")),
        "{text}"
    );
}

/// Container `create` events of this run (container names carry `marker`).
fn creates(events: &[Value], marker: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["Action"] == "create"
                && e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("pipeline-") && n.contains(marker))
        })
        .count()
}

/// The acceptance check of issue 7: six pipelines (four independent 4-second ones, a base and
/// an app built on it) over three engines (the main one, a unix-socket one, a TLS one).
#[test]
// One scenario told in order: each check reads what the step before it left.
#[allow(clippy::too_many_lines)]
fn six_pipelines_over_three_engines_beat_serial_and_the_app_holds_this_runs_base() {
    require_image("busybox:latest");
    let reg = Registry::start();
    let d1 = Daemon::start();
    let d2 = Daemon::start_tls();
    for d in [&d1, &d2] {
        d.load_image("busybox:latest");
    }
    let u = unique("mt6");
    let token = unique("token");
    let project = Project::new();
    let base_ref = format!("{}/mt/{u}-base:1", reg.addr);
    let app_ref = format!("{}/mt/{u}-app:1", reg.addr);
    // A stale image under the base's name on every engine: the app must not build on it.
    docker_ok(&["tag", "busybox:latest", &base_ref]);
    for d in [&d1, &d2] {
        d.docker_ok(&["tag", "busybox:latest", &base_ref]);
    }
    let base = project.file(
        "base.toml",
        pipeline(
            &format!("{u}-base"),
            "busybox:latest",
            "never",
            &[&format!("echo {token} > /base-token"), "sleep 1"],
            &[],
            Some((&format!("{}/mt/{u}-base", reg.addr), "1")),
        ),
    );
    let mut files = vec![base.display().to_string()];
    for k in 1..=4 {
        files.push(
            project
                .file(
                    &format!("a{k}.toml"),
                    pipeline(
                        &format!("{u}-a{k}"),
                        "busybox:latest",
                        "never",
                        &["sleep 4"],
                        &[&format!("{u}-a{k}:1")],
                        None,
                    ),
                )
                .display()
                .to_string(),
        );
    }
    files.push(
        project
            .file(
                "app.toml",
                pipeline(
                    &format!("{u}-app"),
                    &base_ref,
                    "missing",
                    &["cp /base-token /app-saw && sleep 1"],
                    &[],
                    Some((&format!("{}/mt/{u}-app", reg.addr), "1")),
                ),
            )
            .display()
            .to_string(),
    );
    let files: Vec<&str> = files.iter().map(String::as_str).collect();

    // Parallel over three engines.
    let rep = project.path().join("parallel.json");
    let since = unix_now();
    let t = Instant::now();
    let out = cmd(
        &project,
        &[
            &[
                "apply",
                "--no-cache",
                "--jobs",
                "6",
                "--report",
                rep.to_str().unwrap(),
                "--engine",
                MAIN,
                "--engine",
                &d1.engine_arg,
                "--engine",
                &d2.engine_arg,
            ][..],
            &files,
        ]
        .concat(),
    )
    .output()
    .unwrap();
    let parallel = t.elapsed();
    let until = unix_now();
    let text = output_text(&out);
    assert!(out.status.success(), "parallel apply failed: {text}");
    let r = read_json(&rep);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert!(
        !text.contains("warning: base"),
        "the app's base is not this run's: {text}"
    );
    eprintln!("{text}");
    // Results on stdout say which pipeline they belong to.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("[{u}-app] image sha256:"))),
        "{stdout}"
    );

    // Order: the app started after its base finished.
    let (_, base_end) = start_and_end(entry(&r, &format!("{u}-base")));
    let (app_start, _) = start_and_end(entry(&r, &format!("{u}-app")));
    assert!(
        app_start >= base_end,
        "the app started before its base finished: {r:#}"
    );
    // Placement spreads the app to another engine than its base: the cross-engine path (pull
    // from the registry, over the stale copy) is what this checks.
    assert_ne!(
        entry(&r, &format!("{u}-app"))["engine"],
        entry(&r, &format!("{u}-base"))["engine"],
        "{r:#}"
    );
    // Placement: work landed on more than one engine, by the tool's report...
    let mut used: Vec<String> = r["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["engine"].as_str().unwrap().to_string())
        .collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 2, "all pipelines ran on one engine: {used:?}");
    // ...and by the engines' own event logs.
    let per_engine = [
        creates(
            &events_of(
                std::process::Command::new(docker_bin()).args(["-H", MAIN]),
                &since,
                &until,
            ),
            &u,
        ),
        creates(&d1.events(&since, &until), &u),
        creates(&d2.events(&since, &until), &u),
    ];
    let busy = per_engine.iter().filter(|&&n| n > 0).count();
    assert!(busy >= 2, "containers created per engine: {per_engine:?}");
    eprintln!("containers created per engine (main, unix, tls): {per_engine:?}; engines by report: {used:?}");

    // The app holds this run's base, pulled back from the registry.
    docker_ok(&["pull", &app_ref]);
    let saw = docker_ok(&["run", "--rm", &app_ref, "cat", "/app-saw"]);
    assert_eq!(saw, token, "the app was built on a stale base");
    docker_ok(&["pull", &base_ref]);
    let base_layers = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        &base_ref,
    ]);
    let app_layers = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        &app_ref,
    ]);
    let base_layers: Vec<String> = serde_json::from_str(&base_layers).unwrap();
    let app_layers: Vec<String> = serde_json::from_str(&app_layers).unwrap();
    assert_eq!(
        &app_layers[..base_layers.len()],
        &base_layers[..],
        "the app's lower layers are the base's"
    );

    // Serial: one job, one engine.
    let rep_serial = project.path().join("serial.json");
    let t = Instant::now();
    let out = cmd(
        &project,
        &[
            &[
                "apply",
                "--no-cache",
                "--jobs",
                "1",
                "--report",
                rep_serial.to_str().unwrap(),
                "--engine",
                MAIN,
            ][..],
            &files,
        ]
        .concat(),
    )
    .output()
    .unwrap();
    let serial = t.elapsed();
    assert!(
        out.status.success(),
        "serial apply failed: {}",
        output_text(&out)
    );
    eprintln!(
        "wall time: parallel over 3 engines {:.1}s, serial on one engine {:.1}s ({:.0}%)",
        parallel.as_secs_f64(),
        serial.as_secs_f64(),
        100.0 * parallel.as_secs_f64() / serial.as_secs_f64()
    );
    assert!(
        parallel.as_secs_f64() < 0.6 * serial.as_secs_f64(),
        "parallel {parallel:?} is not well under serial {serial:?}"
    );

    // An unpublished dependency runs on its producer's engine, whatever the load.
    let local_tag = format!("{u}-local:1");
    let token2 = unique("token2");
    let lbase = project.file(
        "l/1-lbase.toml",
        pipeline(
            &format!("{u}-lbase"),
            "busybox:latest",
            "never",
            &[&format!("echo {token2} > /t")],
            &[&local_tag],
            None,
        ),
    );
    let b1 = project.file(
        "l/2-b1.toml",
        pipeline(
            &format!("{u}-b1"),
            "busybox:latest",
            "never",
            &["sleep 2"],
            &[],
            None,
        ),
    );
    let b2 = project.file(
        "l/3-b2.toml",
        pipeline(
            &format!("{u}-b2"),
            "busybox:latest",
            "never",
            &["sleep 2"],
            &[],
            None,
        ),
    );
    let lapp = project.file(
        "l/4-lapp.toml",
        pipeline(
            &format!("{u}-lapp"),
            &local_tag,
            "missing",
            &["cp /t /t2"],
            &[&format!("{u}-lapp:1")],
            None,
        ),
    );
    let rep_local = project.path().join("local.json");
    let out = cmd(
        &project,
        &[
            "apply",
            "--no-cache",
            "--report",
            rep_local.to_str().unwrap(),
            "--engine",
            &d1.engine_arg,
            "--engine",
            &d2.engine_arg,
            lbase.to_str().unwrap(),
            b1.to_str().unwrap(),
            b2.to_str().unwrap(),
            lapp.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let r = read_json(&rep_local);
    let lbase_engine = entry(&r, &format!("{u}-lbase"))["engine"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        entry(&r, &format!("{u}-lapp"))["engine"],
        lbase_engine.as_str(),
        "{r:#}"
    );
    let holder = if lbase_engine == d1.engine_arg.split('?').next().unwrap() {
        &d1
    } else {
        &d2
    };
    assert_eq!(
        holder.docker_ok(&["run", "--rm", &format!("{u}-lapp:1"), "cat", "/t2"]),
        token2
    );

    // Nothing of this run is left on the main engine.
    for k in 1..=4 {
        let _ = docker(&["rmi", &format!("{u}-a{k}:1")]);
    }
    let _ = docker(&["rmi", &app_ref, &base_ref]);
}

#[test]
fn an_engine_that_goes_away_fails_only_its_pipelines() {
    require_image("busybox:latest");
    let mut d = Daemon::start();
    d.load_image("busybox:latest");
    let u = unique("mtgone");
    let project = Project::new();
    let on_main = project.file(
        "1.toml",
        pipeline(
            &format!("{u}-one"),
            "busybox:latest",
            "never",
            &["sleep 5"],
            &[],
            None,
        ),
    );
    let on_extra = project.file(
        "2.toml",
        pipeline(
            &format!("{u}-two"),
            "busybox:latest",
            "never",
            &["sleep 5"],
            &[],
            None,
        ),
    );
    let rep = project.path().join("r.json");
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("pipeline"));
    c.current_dir(project.path())
        .env("PIPELINE_PROGRESS", "plain")
        .env("DOCKER_CONFIG", project.path().join(".docker-config"))
        .env_remove("DOCKER_TLS_VERIFY")
        .args([
            "apply",
            "--no-cache",
            "--keep-going",
            "--report",
            rep.to_str().unwrap(),
            "--engine",
            MAIN,
            "--engine",
            &d.engine_arg,
            on_main.to_str().unwrap(),
            on_extra.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    d.kill();
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(5), "an engine error: {text}");
    assert!(text.contains("unreachable"), "a clear message: {text}");
    assert!(rep.exists(), "no report: {text}");
    let r = read_json(&rep);
    assert_eq!(
        entry(&r, &format!("{u}-one"))["status"],
        "succeeded",
        "{r:#}"
    );
    assert_eq!(entry(&r, &format!("{u}-two"))["status"], "failed", "{r:#}");
    assert!(
        entry(&r, &format!("{u}-two"))["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{r:#}"
    );
}

#[test]
fn an_interrupt_removes_the_build_containers_of_every_running_pipeline() {
    require_image("busybox:latest");
    let u = unique("mtint");
    let project = Project::new();
    let files: Vec<String> = (1..=3)
        .map(|k| {
            project
                .file(
                    &format!("{k}.toml"),
                    pipeline(
                        &format!("{u}-p{k}"),
                        "busybox:latest",
                        "never",
                        &["sleep 30"],
                        &[],
                        None,
                    ),
                )
                .display()
                .to_string()
        })
        .collect();
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("pipeline"));
    c.current_dir(project.path())
        .env("PIPELINE_PROGRESS", "plain")
        .env("DOCKER_CONFIG", project.path().join(".docker-config"))
        .env("DOCKER_HOST", MAIN)
        .args(["apply", "--no-cache"])
        .args(&files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    // Wait until all three build containers exist, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::support::engine::containers_named(&format!("pipeline-{u}")).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the build containers never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    let left = crate::support::engine::containers_named(&format!("pipeline-{u}"));
    assert!(left.is_empty(), "containers left behind: {left:?}\n{text}");
}
