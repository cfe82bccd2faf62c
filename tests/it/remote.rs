//! The registry-backed step cache: a fresh runner (a brand-new `dockerd` with an empty data
//! root) skips what another runner built and pushed to a throwaway cache registry.

use std::process::{Output, Stdio};

use serde_json::Value;

use crate::harness::{output_text, read_json, unique, Project};
use crate::support::daemons::{events_filtered, events_of, unix_now, Daemon};
use crate::support::engine::{docker, docker_ok, require_image};
use crate::support::registry::{free_port, Registry};

/// A registry holding `busybox:latest` as `REG/busybox:latest`, so fresh runners can get it.
fn registry_with_busybox() -> Registry {
    require_image("busybox:latest");
    let reg = Registry::start();
    let base = format!("{}/busybox:latest", reg.addr);
    docker_ok(&["tag", "busybox:latest", &base]);
    docker_ok(&["push", &base]);
    reg
}

/// Two steps (a slow one, so a checkpoint follows it), published to `REG/NAME`, cached in
/// `cache`.
pub(crate) fn pipeline(name: &str, reg: &str, cache: &str, last: &str) -> String {
    format!(
        r#"name = "{name}"
[base]
image = "{reg}/busybox:latest"

[[step]]
name = "slow"
run = "echo {name} > /one && sleep 1.2"

[[step]]
name = "last"
run = "echo {last} > /two"

[commit]
config = {{ cmd = ["cat", "/two"] }}

[[publish]]
repository = "{reg}/{name}"
tags = ["1"]

[cache]
remote = "{cache}"
checkpoint_after = "800ms"
"#
    )
}

fn apply(project: &Project, engine: Option<&Daemon>, extra: &[&str]) -> Output {
    let mut args = vec!["apply"];
    if let Some(d) = engine {
        args.extend(["--engine", d.engine_arg.as_str()]);
    }
    args.extend(extra);
    args.push("pipeline.toml");
    project
        .std_cmd(&args)
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run pipeline")
}

/// Container creates and image pulls of one engine between two unix times.
fn counts(d: &Daemon, since: &str, until: &str) -> (usize, usize) {
    let creates = events_of(&mut d.command(), since, until)
        .iter()
        .filter(|e| e["Action"] == "create")
        .count();
    let pulls = events_filtered(
        &mut d.command(),
        since,
        until,
        &["type=image", "event=pull"],
    )
    .len();
    (creates, pulls)
}

/// Takes the index tags (`last-...`) out of `tags`; returns them.
fn cache_index_tags(tags: &mut Vec<String>) -> Vec<String> {
    let (index, entries) = tags.drain(..).partition(|t| t.starts_with("last-"));
    *tags = entries;
    index
}

fn report(project: &Project) -> Value {
    read_json(&project.path().join("r.json"))
}

#[test]
fn a_fresh_runner_reuses_what_another_runner_built() {
    let reg = registry_with_busybox();
    let u = unique("rmt");
    let cache = format!("{}/cache/{u}", reg.addr);
    let project = Project::new();
    project.pipeline(&pipeline(&u, &reg.addr, &cache, "two"));

    // Runner A (the main engine) builds, publishes and exports.
    let started = std::time::Instant::now();
    let a = apply(&project, None, &[]);
    let cold = started.elapsed();
    assert!(a.status.success(), "{}", output_text(&a));
    let mut exported = reg.tags(&format!("cache/{u}"));
    // Beside the entries, the pipeline's index (what its newest apply used) for `gc --remote`.
    let index = cache_index_tags(&mut exported);
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(
        exported.len(),
        3,
        "two checkpoints and the final image: {exported:?}"
    );
    assert!(
        output_text(&a).contains("cache pushed 3 entries"),
        "{}",
        output_text(&a)
    );

    // Runner B: unchanged, empty engine: nothing created, nothing pulled, tags up to date.
    let b = Daemon::start();
    let plan = project
        .std_cmd(&["plan", "--engine", &b.engine_arg, "pipeline.toml"])
        .output()
        .unwrap();
    let plan_text = output_text(&plan);
    assert!(plan_text.contains("cached (remote)"), "{plan_text}");
    assert!(plan_text.contains("in the remote cache"), "{plan_text}");
    assert!(plan_text.contains("up to date"), "{plan_text}");
    let since = unix_now();
    let started = std::time::Instant::now();
    let out = apply(&project, Some(&b), &["--report", "r.json"]);
    let warm = started.elapsed();
    let until = unix_now();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("up-to-date"), "{text}");
    assert_eq!(counts(&b, &since, &until), (0, 0), "{text}");
    assert_eq!(
        b.docker_ok(&["images", "-q"]),
        "",
        "no image reached runner B"
    );
    let r = report(&project);
    assert_eq!(r["cache_remote"]["status"], "ok", "{r:#}");
    assert_eq!(r["pushes"][0]["status"], "up_to_date", "{r:#}");
    eprintln!("cold apply on runner A: {cold:?}; unchanged on fresh runner B: {warm:?}");
    drop(b);

    // Runner C: the last step changed: the checkpoint after step 1 is pulled, step 2 runs.
    project.pipeline(&pipeline(&u, &reg.addr, &cache, "three"));
    let c = Daemon::start();
    let since = unix_now();
    let out = apply(&project, Some(&c), &["--report", "r.json"]);
    let until = unix_now();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cache pulled a checkpoint after step 1"),
        "{text}"
    );
    assert!(
        !text.contains("sleep 1.2") || !text.contains("[1/2] slow"),
        "{text}"
    );
    assert_eq!(
        counts(&c, &since, &until),
        (1, 1),
        "one container, one pull: {text}"
    );
    let r = report(&project);
    assert_eq!(r["steps"][0]["cached"], true, "{r:#}");
    assert_eq!(r["steps"][1]["cached"], false, "{r:#}");
    assert_eq!(
        r["cache_remote"]["imported"].as_array().unwrap().len(),
        1,
        "{r:#}"
    );
    let published = format!("{}/{u}:1", reg.addr);
    assert_eq!(c.docker_ok(&["run", "--rm", &published]), "three");
    let _ = docker(&["rmi", &published, &format!("{}/busybox:latest", reg.addr)]);
}

#[test]
fn a_cache_registry_that_is_down_only_warns() {
    let reg = registry_with_busybox();
    let u = unique("rmtdown");
    let down = format!("127.0.0.1:{}/cache/{u}", free_port());
    let project = Project::new();
    project.pipeline(&pipeline(&u, &reg.addr, &down, "two"));
    let out = apply(&project, None, &["--report", "r.json"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("is not used").count(),
        1,
        "one clear warning: {text}"
    );
    let r = report(&project);
    assert_eq!(r["cache_remote"]["status"], "unavailable", "{r:#}");
    let _ = docker(&["rmi", &format!("{}/{u}:1", reg.addr)]);
}

#[test]
fn read_mode_pushes_nothing_to_the_cache() {
    let reg = registry_with_busybox();
    let u = unique("rmtread");
    let cache = format!("{}/cache/{u}", reg.addr);
    let project = Project::new();
    project.pipeline(&pipeline(&u, &reg.addr, "127.0.0.1:1/unused", "two"));
    let out = apply(
        &project,
        None,
        &["--cache-remote", &cache, "--cache-remote-mode", "read"],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(reg.tags(&format!("cache/{u}")).is_empty());
    let _ = docker(&["rmi", &format!("{}/{u}:1", reg.addr)]);
}

#[test]
fn a_forged_cache_entry_is_not_trusted() {
    let reg = registry_with_busybox();
    let u = unique("rmtforged");
    let cache = format!("{}/cache/{u}", reg.addr);
    let project = Project::new();
    project.pipeline(&pipeline(&u, &reg.addr, &cache, "two"));
    let plan = project
        .std_cmd(&["plan", "--format", "json", "pipeline.toml"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", output_text(&plan));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let commit_key = plan["commit"]["key"].as_str().unwrap().to_string();
    // An unrelated image (not built on the base) under the final and step keys.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("two"), "forged\n").unwrap();
    let forged = format!("{u}-forged:1");
    let tar = std::process::Command::new("tar")
        .args(["-C", dir.path().to_str().unwrap(), "-c", "."])
        .output()
        .unwrap();
    let mut import = std::process::Command::new(crate::support::engine::docker_bin())
        .args(["import", "-", &forged])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut import.stdin.take().unwrap(), &tar.stdout).unwrap();
    assert!(import.wait().unwrap().success());
    let step_keys: Vec<String> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect();
    for key in step_keys.iter().chain([&commit_key]) {
        let target = format!("{cache}:{key}");
        docker_ok(&["tag", &forged, &target]);
        docker_ok(&["push", &target]);
        let _ = docker(&["rmi", &target]);
    }
    let out = apply(&project, None, &["--report", "r.json"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let r = report(&project);
    assert_eq!(
        r["steps"][1]["cached"], false,
        "the forged entry is ignored: {r:#}"
    );
    assert!(
        r["cache_remote"]["imported"].as_array().unwrap().is_empty(),
        "{r:#}"
    );
    let published = format!("{}/{u}:1", reg.addr);
    assert_eq!(docker_ok(&["run", "--rm", &published]), "two");
    let _ = docker(&["rmi", &published, &forged]);
}
