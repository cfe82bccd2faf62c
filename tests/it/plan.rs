//! `plan` says no when `apply` is certain to fail before it could succeed: a base it may not
//! pull, a base its registry does not have, publish credentials the registry refuses. It
//! exits 1 with the reason, also with `--detailed-exitcode` (so the docs' `|| test $? -eq 2`
//! fails the job), and apply fails on the same thing.

use crate::harness::{busybox_pipeline, output_text, unique, Project};
use crate::support::engine::require_image;
use crate::support::registry::Registry;

/// Runs `plan` (with `args`) and `apply` on `pipeline.toml`: their exit codes and outputs.
fn plan_and_apply(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Vec<(Option<i32>, String)> {
    let mut runs = Vec::new();
    for command in [
        vec!["plan", "pipeline.toml"],
        vec!["plan", "--detailed-exitcode", "pipeline.toml"],
        vec!["plan", "--format", "json", "pipeline.toml"],
        vec!["apply", "pipeline.toml"],
    ] {
        let mut all = command.clone();
        all.extend_from_slice(args);
        let mut cmd = p.cmd(&all);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        runs.push((out.status.code(), output_text(&out)));
    }
    runs
}

/// Every plan exits 1 naming `reason`, the JSON plan lists it under `fails` as `kind`, and
/// apply exits `apply_code`.
fn assert_says_no(runs: &[(Option<i32>, String)], reason: &str, kind: &str, apply_code: i32) {
    for (code, text) in &runs[..3] {
        assert_eq!(*code, Some(1), "{text}");
        assert!(text.contains(reason), "{text}");
    }
    assert!(runs[0].1.contains("apply would fail"), "{}", runs[0].1);
    assert!(
        runs[2].1.contains(&format!("\"reason\": \"{kind}\"")),
        "{}",
        runs[2].1
    );
    assert_eq!(runs[3].0, Some(apply_code), "{}", runs[3].1);
}

#[test]
fn a_base_missing_under_pull_never_fails_the_plan() {
    require_image("busybox:latest");
    let p = Project::new();
    let name = unique("plan-never");
    p.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"{name}:absent\"\npull = \"never\"\n\
         [[step]]\nrun = \"true\"\n"
    ));
    let runs = plan_and_apply(&p, &[], &[]);
    assert_says_no(
        &runs,
        &format!("base image `{name}:absent` is not in the engine and `pull = \"never\"`"),
        "base_missing",
        5,
    );
    assert!(!runs[0].1.contains(": will pull"), "{}", runs[0].1);
    // Offline too: the engine alone tells.
    let out = p
        .cmd(&["plan", "--offline", "pipeline.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
}

#[test]
fn a_base_its_reachable_registry_does_not_have_fails_the_plan() {
    let reg = Registry::start();
    let p = Project::new();
    let name = unique("plan-nomanifest");
    let base = format!("{}/{name}:1", reg.addr);
    p.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"{base}\"\n[[step]]\nrun = \"true\"\n"
    ));
    let runs = plan_and_apply(&p, &[], &[]);
    assert_says_no(
        &runs,
        &format!("base image `{base}` must be pulled and its registry has no such manifest"),
        "base_not_in_registry",
        5,
    );
    // Once the registry has it, the plan pulls it and passes.
    require_image("busybox:latest");
    reg.push_local("busybox:latest", &format!("{name}:1"));
    let out = p.cmd(&["plan", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("base     {base}: will pull")),
        "{text}"
    );
}

#[test]
fn publish_credentials_the_registry_refuses_fail_the_plan() {
    require_image("busybox:latest");
    let reg = Registry::start_with_auth("planner", "right-pass");
    let p = Project::new();
    let name = unique("plan-refused");
    let repository = format!("{}/private/{name}", reg.addr);
    p.pipeline(&busybox_pipeline(
        &name,
        &format!(
            "[[step]]\nrun = \"true\"\n[[publish]]\nrepository = \"{repository}\"\n\
             tags = [\"1\"]\nusername = \"planner\"\npassword_env = \"PLAN_TEST_PASSWORD\"\n"
        ),
    ));
    let runs = plan_and_apply(&p, &[], &[("PLAN_TEST_PASSWORD", "wrong-pass")]);
    assert_says_no(
        &runs,
        &format!("the registry refused the credentials for `{repository}:1`"),
        "publish_refused",
        4,
    );
    // The right password: the plan passes (2: apply would push).
    let out = p
        .cmd(&["plan", "--detailed-exitcode", "pipeline.toml"])
        .env("PLAN_TEST_PASSWORD", "right-pass")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}
