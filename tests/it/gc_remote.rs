//! `gc --remote`: the tags of a remote step cache that the newest apply of their pipeline no
//! longer uses are deleted from the registry (when it allows deletion), and nothing else.

use std::process::Command;

use crate::cache::plan_keys;
use crate::fanout::run;
use crate::harness::{output_text, unique, Project};
use crate::remote::pipeline;
use crate::support::daemons::Daemon;
use crate::support::engine::{docker, require_image};
use crate::support::registry::Registry;

/// Two applies of a pipeline cached in `REG/cache/NAME`, the second with its last step
/// edited; returns the keys of each.
fn two_applies(reg: &Registry, project: &Project, u: &str) -> (Vec<String>, Vec<String>) {
    require_image("busybox:latest");
    reg.push_local("busybox:latest", "busybox:latest");
    let cache = format!("{}/cache/{u}", reg.addr);
    project.pipeline(&pipeline(u, &reg.addr, &cache, "one"));
    let first = plan_keys(project, &[]);
    let out = run(project, &["apply", "pipeline.toml"]);
    assert!(out.status.success(), "{}", output_text(&out));
    project.pipeline(&pipeline(u, &reg.addr, &cache, "two"));
    let second = plan_keys(project, &[]);
    let out = run(project, &["apply", "pipeline.toml"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(first[0], second[0], "the slow step is shared");
    (first, second)
}

/// Puts the manifest of `repository:from` under `to` as well (the same digest).
fn retag(reg: &Registry, repository: &str, from: &str, to: &str) {
    let url = format!("{}/v2/{repository}/manifests", reg.url());
    let accept = "application/vnd.docker.distribution.manifest.v2+json";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.json");
    let get = Command::new("curl")
        .args(["-sf", "-H", &format!("Accept: {accept}"), "-o"])
        .arg(&file)
        .arg(format!("{url}/{from}"))
        .status()
        .expect("curl");
    assert!(get.success());
    let put = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", &format!("Content-Type: {accept}")])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{url}/{to}"))
        .status()
        .expect("curl");
    assert!(put.success());
}

fn cleanup(reg: &Registry, u: &str) {
    let _ = docker(&["rmi", &format!("{}/{u}:1", reg.addr)]);
}

#[test]
fn gc_remote_deletes_what_the_newest_apply_no_longer_uses_and_nothing_else() {
    let reg = Registry::start();
    let u = unique("gcr");
    let project = Project::new();
    let (first, second) = two_applies(&reg, &project, &u);
    let repository = format!("cache/{u}");
    let cache = format!("{}/{repository}", reg.addr);
    // A tag no index knows, and one that shares the old final image's manifest.
    reg.push_local("busybox:latest", &format!("{repository}:stranger"));
    retag(&reg, &repository, &first[2], "pinned");
    let before = reg.tags(&repository);

    let out = run(&project, &["gc", "--remote", &cache, "--dry-run"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("would delete {cache}:{}", first[1])),
        "{text}"
    );
    assert!(
        text.contains(&format!("kept {cache}:{}", first[2])),
        "shares `pinned`: {text}"
    );
    assert!(
        text.contains("left 2 tags that no pipeline's index lists"),
        "{text}"
    );
    assert_eq!(reg.tags(&repository), before, "a dry run deletes nothing");

    let out = run(&project, &["gc", "--remote", &cache]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let after = reg.tags(&repository);
    assert!(!after.contains(&first[1]), "{after:?}\n{text}");
    for kept in second.iter().chain([&first[2]]) {
        assert!(after.contains(kept), "{kept} kept: {after:?}\n{text}");
    }
    for other in ["stranger", "pinned"] {
        assert!(after.contains(&other.to_string()), "{after:?}");
    }
    assert_eq!(after.len(), before.len() - 1, "{before:?} -> {after:?}");
    // The index forgot it: a second collection has nothing more to delete.
    let out = run(&project, &["gc", "--remote", &cache]);
    assert!(
        !output_text(&out).contains("deleted"),
        "{}",
        output_text(&out)
    );

    // What is left still serves a fresh runner: everything cached, nothing built.
    let runner = Daemon::start();
    let out = run(
        &project,
        &["plan", "--engine", &runner.engine_arg, "pipeline.toml"],
    );
    let text = output_text(&out);
    assert!(text.contains("no changes"), "{text}");
    cleanup(&reg, &u);
}

#[test]
fn gc_remote_says_clearly_when_the_registry_does_not_allow_deletion() {
    let reg = Registry::start_without_delete();
    let u = unique("gcrno");
    let project = Project::new();
    let (first, _) = two_applies(&reg, &project, &u);
    let repository = format!("cache/{u}");
    let cache = format!("{}/{repository}", reg.addr);
    let out = run(&project, &["gc", "--remote", &cache]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("does not allow deletion")
            && text.contains("REGISTRY_STORAGE_DELETE_ENABLED"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(reg.tags(&repository).contains(&first[1]));
    cleanup(&reg, &u);
}
