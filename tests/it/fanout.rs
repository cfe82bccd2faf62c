//! Fan-out on a CI system: `plan --format json` gives a folder's graph in dependency waves and
//! `apply --only NAME FOLDER` applies one pipeline of it on a brand-new engine, taking the
//! image it builds on from the registry. Every job of a wave runs on its own fresh `dockerd`,
//! at the same time, as a CI matrix would.

use std::process::{Output, Stdio};

use serde_json::Value;

use crate::harness::{output_text, unique, Project};
use crate::support::daemons::{events_of, unix_now, Daemon};
use crate::support::engine::{docker, docker_ok, require_image};
use crate::support::registry::Registry;

/// A pipeline on `base` that writes `NAME` into `/NAME`, published to `REG/NAME:1`; `tags`
/// are extra local names.
fn pipeline(name: &str, base: &str, reg: &str, tags: &[&str]) -> String {
    let tags = if tags.is_empty() {
        String::new()
    } else {
        let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
        format!("[commit]\ntags = [{}]\n", tags.join(", "))
    };
    format!(
        r#"name = "{name}"
[base]
image = "{base}"

[[step]]
name = "mark {name}"
run = "echo {name} > /{name}"

{tags}
[[publish]]
repository = "{reg}/{name}"
tags = ["1"]
"#
    )
}

/// The binary on the project's files, on the engine its arguments name (never `DOCKER_HOST`).
pub(crate) fn run(project: &Project, args: &[&str]) -> Output {
    project
        .std_cmd(args)
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run pipeline")
}

#[test]
fn each_wave_runs_its_pipelines_on_separate_fresh_engines() {
    require_image("busybox:latest");
    let reg = Registry::start();
    let busybox = format!("{}/busybox:latest", reg.addr);
    docker_ok(&["tag", "busybox:latest", &busybox]);
    docker_ok(&["push", &busybox]);
    let u = unique("fan");
    let (base, app, tool, other) = (
        format!("{u}-base"),
        format!("{u}-app"),
        format!("{u}-tool"),
        format!("{u}-other"),
    );
    let project = Project::new();
    let local = format!("{base}:local");
    project.file(
        "images/base.toml",
        pipeline(&base, &busybox, &reg.addr, &[&local]),
    );
    // Built on the producer's published tag, and on its local tag (pulled from where it
    // publishes).
    project.file(
        "images/app.toml",
        pipeline(&app, &format!("{}/{base}:1", reg.addr), &reg.addr, &[]),
    );
    project.file("images/tool.toml", pipeline(&tool, &local, &reg.addr, &[]));
    project.file(
        "images/other.toml",
        pipeline(&other, &busybox, &reg.addr, &[]),
    );

    let plan = run(
        &project,
        &["plan", "--offline", "--format", "json", "images"],
    );
    assert!(plan.status.success(), "{}", output_text(&plan));
    let doc: Value = serde_json::from_slice(&plan.stdout).expect("one JSON document");
    assert_eq!(doc["format_version"], 1, "{doc:#}");
    let waves: Vec<Vec<String>> = serde_json::from_value(doc["waves"].clone()).unwrap();
    let mut first = waves[0].clone();
    first.sort();
    let mut expected = vec![base.clone(), other.clone()];
    expected.sort();
    assert_eq!(first, expected, "{doc:#}");
    assert_eq!(waves.len(), 2, "{doc:#}");
    assert_eq!(waves[1].len(), 2, "{doc:#}");
    let app_entry = doc["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == app.as_str())
        .unwrap();
    assert_eq!(app_entry["wave"], 2, "{doc:#}");
    assert_eq!(app_entry["builds_on"], base.as_str(), "{doc:#}");
    assert_eq!(app_entry["changes"], true, "{doc:#}");
    assert!(app_entry["plan"]["steps"].is_array(), "{doc:#}");

    // Each job of a wave on a brand-new engine, the jobs of a wave at once.
    let mut seconds = Vec::new();
    for wave in &waves {
        let engines: Vec<Daemon> = wave.iter().map(|_| Daemon::start()).collect();
        let since = unix_now();
        let started = std::time::Instant::now();
        let jobs: Vec<_> = wave
            .iter()
            .zip(&engines)
            .map(|(name, d)| {
                project
                    .std_cmd(&["apply", "--engine", &d.engine_arg, "--only", name, "images"])
                    .env_remove("DOCKER_HOST")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run pipeline")
            })
            .collect();
        for ((name, job), d) in wave.iter().zip(jobs).zip(&engines) {
            let out = job.wait_with_output().unwrap();
            let text = output_text(&out);
            assert!(out.status.success(), "{name}: {text}");
            // Only this pipeline's step ran here: one build container, nothing of its producer.
            let creates = events_of(&mut d.command(), &since, &unix_now())
                .iter()
                .filter(|e| e["Action"] == "create")
                .count();
            assert_eq!(creates, 1, "{name} built only itself: {text}");
        }
        seconds.push(started.elapsed().as_secs_f64());
    }
    eprintln!("wave durations on fresh engines (s): {seconds:?}");

    // The dependents carry their producer's layer and their own.
    let check = Daemon::start();
    for (name, files) in [(&app, [&base, &app]), (&tool, [&base, &tool])] {
        let image = format!("{}/{name}:1", reg.addr);
        let paths = files.map(|f| format!("/{f}"));
        let shown = check.docker_ok(&["run", "--rm", &image, "cat", &paths[0], &paths[1]]);
        assert_eq!(shown, format!("{}\n{}", files[0], files[1]));
    }
    let _ = docker(&["rmi", &busybox]);
}

#[test]
fn only_names_the_pipelines_it_knows_and_refuses_an_unpublished_producer() {
    let u = unique("fanonly");
    let project = Project::new();
    let local = format!("{u}-made:1");
    project.file(
        "images/made.toml",
        format!(
            "name = \"{u}-made\"\n[base]\nimage = \"busybox:latest\"\n[[step]]\nrun = \"true\"\n\
             [commit]\ntags = [\"{local}\"]\n"
        ),
    );
    project.file(
        "images/user.toml",
        format!("name = \"{u}-user\"\n[base]\nimage = \"{local}\"\n[[step]]\nrun = \"true\"\n"),
    );
    let out = run(&project, &["apply", "--only", "nope", "images"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--only `nope`: no pipeline has that name")
            && text.contains(&format!("{u}-made, {u}-user")),
        "{text}"
    );
    let out = run(
        &project,
        &["apply", "--only", &format!("{u}-user"), "images"],
    );
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("publishes to no registry"), "{text}");
}
