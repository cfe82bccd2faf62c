//! Faults, interrupts and secrets against the real engine and real registries: every failure
//! ends in bounded time with a clear message, the documented exit code, a run report, no build
//! container left behind and the built image kept; a secret never shows up anywhere.
//!
//! Every test names its pipeline and repositories uniquely, so the tests can run in parallel
//! with each other and with the other modules. Leftover containers are checked by the run's
//! own name prefix (`run_name` in the report), never by a global count.

use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{read_report, unique, wait_exit, wait_for_line, Project};
use crate::support::engine::{self, containers_named, docker, docker_ok};
use crate::support::proxy::{FaultMode, FaultProxy};
use crate::support::registry::{free_port, Registry};

pub(crate) const BASE: &str = "busybox:latest";

/// Exit codes (src/exit.rs, README "Exit codes").
const STEP: i32 = 3;
const PUBLISH: i32 = 4;
const ENGINE: i32 = 5;

/// Fast retries, so a fault test ends quickly (the engine adds its own layer-upload retries).
const FAST_RETRY: &[&str] = &["--attempts", "2", "--retry-delay", "100ms"];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// The run report's one build (`pipelines[0]`).
    report: Value,
    /// The whole run report.
    document: Value,
    report_text: String,
}

impl Run {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the exit code is `code`.
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "expected exit code {code}, got {}:\n{}",
            self.code,
            self.text()
        );
        self
    }

    fn expect_text(&self, needle: &str) -> &Self {
        assert!(
            self.text().contains(needle),
            "output lacks `{needle}`:\n{}",
            self.text()
        );
        self
    }

    fn expect_within(&self, limit: Duration) -> &Self {
        assert!(
            self.elapsed < limit,
            "took {:?} (limit {limit:?}):\n{}",
            self.elapsed,
            self.text()
        );
        self
    }

    /// The run's container name prefix, from the report.
    fn run_name(&self) -> String {
        self.report["run_name"]
            .as_str()
            .expect("report has run_name")
            .to_string()
    }

    /// No container of this run is left in the engine.
    fn expect_no_container_left(&self) -> &Self {
        let prefix = self.run_name();
        assert!(
            prefix.starts_with("pipeline-"),
            "report has no run_name: {}",
            self.report_text
        );
        let left = containers_named(&format!("{prefix}-"));
        assert!(left.is_empty(), "containers left behind: {left:?}");
        self
    }
}

/// `pipeline apply pipeline.toml --report report.json ARGS` in the project, with `envs`.
fn apply(project: &Project, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let report_path = project.path().join("report.json");
    let _ = std::fs::remove_file(&report_path);
    let mut all = vec!["apply", "pipeline.toml", "--report", "report.json"];
    all.extend_from_slice(args);
    let mut cmd = project.cmd(&all);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run pipeline");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let report_text = std::fs::read_to_string(&report_path)
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}{stderr}"));
    let document: Value = serde_json::from_str(&report_text).expect("report is JSON");
    let report = document["pipelines"][0].clone();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr,
        elapsed,
        report,
        document,
        report_text,
    };
    eprintln!(
        "[faults] {} exit {} in {:.2}s\n{}",
        run.report["pipeline"].as_str().unwrap_or("?"),
        run.code,
        run.elapsed.as_secs_f64(),
        run.text()
    );
    run
}

/// A pipeline file: unique name, busybox base, the given steps, a local tag, extra TOML.
pub(crate) fn pipeline(name: &str, steps: &str, tag: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\n\n[base]\nimage = \"{BASE}\"\npull = \"never\"\n\n{steps}\n\
         [commit]\ntags = [\"{tag}\"]\n\n{extra}\n"
    )
}

pub(crate) fn setup() {
    engine::require_engine();
    engine::require_image(BASE);
}

fn report_steps(r: &Run) -> Vec<Value> {
    r.report["steps"].as_array().expect("steps").clone()
}

// ---------------------------------------------------------------------------------------------
// Step failures
// ---------------------------------------------------------------------------------------------

#[test]
fn failing_step_names_the_step_code_and_output_and_keeps_earlier_steps_cached() {
    setup();
    let name = unique("faults-fail");
    let tag = format!("faults/{name}:1");
    let p = Project::new();
    // Unique content: cache keys do not depend on the pipeline's name.
    let good = format!(
        "[[step]]\nname = \"prepare\"\nrun = \"echo prepared-{name} > /prepared\"\ncheckpoint = true\n"
    );
    p.pipeline(&pipeline(
        &name,
        &format!("{good}\n[[step]]\nname = \"explode\"\nrun = \"echo first line; echo the-last-words >&2; exit 7\"\n"),
        &tag,
        "",
    ));
    let r = apply(&p, &[], &[]);
    r.expect_code(STEP)
        .expect_text("explode")
        .expect_text("exit code 7")
        .expect_text("the-last-words")
        .expect_within(Duration::from_secs(60))
        .expect_no_container_left();
    let steps = report_steps(&r);
    assert_eq!(r.report["status"], "failed");
    assert_eq!(r.report["exit_code"], 3);
    assert_eq!(steps[0]["status"], "succeeded");
    assert_eq!(steps[1]["status"], "failed");
    assert_eq!(steps[1]["exit_code"], 7);
    assert!(r.report["image"].is_null());
    assert!(!engine::image_exists(&tag), "no image is tagged on failure");

    // Fix the step: the first one comes from the cache.
    p.pipeline(&pipeline(
        &name,
        &format!("{good}\n[[step]]\nname = \"explode\"\nrun = \"cat /prepared\"\n"),
        &tag,
        "",
    ));
    let r = apply(&p, &[], &[]);
    r.expect_code(0)
        .expect_text(&format!("prepared-{name}"))
        .expect_no_container_left();
    let steps = report_steps(&r);
    assert_eq!(steps[0]["status"], "cached");
    assert_eq!(steps[0]["cached"], true);
    assert_eq!(steps[1]["status"], "succeeded");
    engine::remove_image(&tag);
}

#[test]
fn keep_failed_commits_a_debug_image_and_prints_how_to_enter_it() {
    setup();
    let name = unique("faults-keep");
    let tag = format!("faults/{name}:1");
    let p = Project::new();
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nname = \"half done\"\nrun = \"echo evidence > /evidence; exit 4\"\n",
        &tag,
        "",
    ));
    let r = apply(&p, &["--keep-failed"], &[]);
    r.expect_code(STEP).expect_no_container_left();
    expect_debug_image_with_evidence(&r);
}

/// The `docker run -it ... IMAGE sh` line a kept failure prints, and the debug image it names
/// holding `/evidence` written by the failed step; the image is removed afterwards.
fn expect_debug_image_with_evidence(r: &Run) {
    let text = r.text();
    let line = text
        .lines()
        .find(|l| l.contains("docker run -it"))
        .unwrap_or_else(|| panic!("no `docker run -it` line:\n{text}"));
    let cmd = &line[line.find("docker run").unwrap()..];
    assert!(cmd.trim_end().ends_with(|c: char| !c.is_whitespace()));
    assert!(cmd.contains("sh"), "{cmd}");
    let image = cmd.split_whitespace().last().unwrap().to_string();
    // The debug image holds the failed step's work.
    let out = docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/cat",
        &image,
        "/evidence",
    ]);
    assert_eq!(out, "evidence");
    engine::remove_image(&image);
}

#[test]
fn keep_failed_keeps_a_timed_out_step_as_a_debug_image() {
    setup();
    let name = unique("faults-keep-timeout");
    let tag = format!("faults/{name}:1");
    let p = Project::new();
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nname = \"stuck\"\nrun = \"echo evidence > /evidence; sleep 60\"\ntimeout = \"2s\"\n",
        &tag,
        "",
    ));
    let r = apply(&p, &["--keep-failed"], &[]);
    r.expect_code(STEP)
        .expect_text("`stuck` exceeded its timeout of 2s")
        .expect_within(Duration::from_secs(30))
        .expect_no_container_left();
    assert_eq!(report_steps(&r)[0]["status"], "timed_out");
    expect_debug_image_with_evidence(&r);
}

#[test]
fn step_timeout_stops_the_step_in_bounded_time() {
    setup();
    let name = unique("faults-timeout");
    let tag = format!("faults/{name}:1");
    let p = Project::new();
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nname = \"slow\"\nrun = \"echo started; sleep 60\"\ntimeout = \"2s\"\n",
        &tag,
        "",
    ));
    let r = apply(&p, &[], &[]);
    r.expect_code(STEP)
        .expect_text("`slow` exceeded its timeout of 2s")
        .expect_text("started")
        .expect_within(Duration::from_secs(20))
        .expect_no_container_left();
    assert_eq!(report_steps(&r)[0]["status"], "timed_out");
}

// ---------------------------------------------------------------------------------------------
// Engine faults
// ---------------------------------------------------------------------------------------------

#[test]
fn unreachable_engine_names_the_socket_and_how_to_start_it() {
    let name = unique("faults-noengine");
    let p = Project::new();
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nrun = \"true\"\n",
        &format!("faults/{name}:1"),
        "",
    ));
    let r = apply(&p, &[], &[("DOCKER_HOST", "unix:///nonexistent.sock")]);
    r.expect_code(ENGINE)
        .expect_text("/nonexistent.sock")
        .expect_text("start the Docker engine")
        .expect_within(Duration::from_secs(10));
    assert_eq!(r.report["status"], "failed");
    assert_eq!(r.report["exit_code"], 5);

    // A TCP endpoint where nothing listens: refused, also quickly.
    let port = free_port();
    let host = format!("tcp://127.0.0.1:{port}");
    let r = apply(&p, &[], &[("DOCKER_HOST", host.as_str())]);
    r.expect_code(ENGINE)
        .expect_text(&host)
        .expect_within(Duration::from_secs(25));
}

#[test]
fn missing_base_with_pull_never_is_an_engine_error() {
    setup();
    let name = unique("faults-nobase");
    let p = Project::new();
    let missing = format!("faults-missing/{name}:nope");
    p.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"{missing}\"\npull = \"never\"\n\n\
         [[step]]\nrun = \"true\"\n\n[commit]\ntags = [\"faults/{name}:1\"]\n"
    ));
    let r = apply(&p, &[], &[]);
    r.expect_code(ENGINE)
        .expect_text(&missing)
        .expect_text("is not in the engine")
        .expect_within(Duration::from_secs(15))
        .expect_no_container_left();
}

// ---------------------------------------------------------------------------------------------
// Publishing faults
// ---------------------------------------------------------------------------------------------

/// A one-step pipeline publishing `tags` to each repository in `targets` ((repo, login)).
fn publishing_pipeline(name: &str, tag: &str, targets: &[(&str, Option<(&str, &str)>)]) -> String {
    let mut extra = String::new();
    for (repo, login) in targets {
        extra.push_str(&format!(
            "[[publish]]\nrepository = \"{repo}\"\ntags = [\"1\", \"latest\"]\n"
        ));
        if let Some((user, env)) = login {
            extra.push_str(&format!(
                "username = \"{user}\"\npassword_env = \"{env}\"\n"
            ));
        }
        extra.push('\n');
    }
    pipeline(
        name,
        &format!("[[step]]\nname = \"content\"\nrun = \"echo {name} > /content\"\n"),
        tag,
        &extra,
    )
}

/// The checks every failed publish shares: exit 4, names registry and repository, bounded,
/// no container, the image kept and tagged, a way to push it again, the report's pushes.
fn expect_publish_failure(r: &Run, tag: &str, repository: &str, limit: Duration) {
    r.expect_code(PUBLISH)
        .expect_text(repository)
        .expect_text("kept in the engine")
        .expect_text("docker push")
        .expect_within(limit)
        .expect_no_container_left();
    let image = r.report["image"]["id"].as_str().expect("report image id");
    let kept = engine::image_inspect(tag);
    assert_eq!(
        kept["Id"].as_str(),
        Some(image),
        "the tag names the built image"
    );
    assert_eq!(r.report["status"], "failed");
    assert_eq!(r.report["exit_code"], 4);
    let pushes = r.report["pushes"].as_array().unwrap();
    let failed: Vec<_> = pushes.iter().filter(|p| p["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "exactly one failed push: {pushes:?}");
    assert_eq!(failed[0]["repository"], repository);
    assert!(failed[0]["digest"].is_null());
}

#[test]
fn registry_down_fails_after_bounded_retries_and_reports_what_reached_the_other_registry() {
    setup();
    let name = unique("faults-down");
    let tag = format!("faults/{name}:1");
    let good = Registry::start();
    let good_repo = format!("{}/faults/{name}", good.addr);
    let down_repo = format!("127.0.0.1:{}/faults/{name}", free_port());
    let p = Project::new();
    p.pipeline(&publishing_pipeline(
        &name,
        &tag,
        &[(&good_repo, None), (&down_repo, None)],
    ));
    let r = apply(&p, FAST_RETRY, &[]);
    expect_publish_failure(&r, &tag, &down_repo, Duration::from_secs(60));
    r.expect_text("pushed before the failure");
    // The report lists exactly what reached which registry.
    let pushes = r.report["pushes"].as_array().unwrap();
    let ok: Vec<_> = pushes.iter().filter(|p| p["status"] == "pushed").collect();
    assert_eq!(ok.len(), 2, "{pushes:?}");
    for p in &ok {
        assert_eq!(p["repository"], good_repo.as_str());
        let t = p["tag"].as_str().unwrap();
        assert_eq!(
            p["digest"].as_str(),
            good.manifest_digest(&format!("faults/{name}"), t)
                .as_deref(),
            "digest of {t}"
        );
    }
    let failed = pushes.iter().find(|p| p["status"] == "failed").unwrap();
    assert_eq!(failed["tag"], "1");
    assert_eq!(failed["attempts"], 2);
    engine::remove_image(&tag);
}

#[test]
fn nothing_is_pushed_when_a_step_fails() {
    setup();
    let name = unique("faults-nopush");
    let reg = Registry::start();
    let repo = format!("{}/faults/{name}", reg.addr);
    let p = Project::new();
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nrun = \"exit 1\"\n",
        &format!("faults/{name}:1"),
        &format!("[[publish]]\nrepository = \"{repo}\"\ntags = [\"1\"]\n"),
    ));
    let r = apply(&p, &[], &[]);
    r.expect_code(STEP).expect_no_container_left();
    assert!(reg.tags(&format!("faults/{name}")).is_empty());
    assert_eq!(r.report["pushes"].as_array().unwrap().len(), 0);
}

#[test]
fn refused_authentication_names_the_user_and_never_the_password() {
    setup();
    let name = unique("faults-auth");
    let tag = format!("faults/{name}:1");
    let reg = Registry::start_with_auth("alice", "the-right-password");
    let repo = format!("{}/faults/{name}", reg.addr);
    let wrong = format!("wrong-{}", unique("pw"));
    let p = Project::new();
    p.pipeline(&publishing_pipeline(
        &name,
        &tag,
        &[(&repo, Some(("alice", "FAULTS_REGISTRY_PW")))],
    ));
    let r = apply(&p, FAST_RETRY, &[("FAULTS_REGISTRY_PW", wrong.as_str())]);
    expect_publish_failure(&r, &tag, &repo, Duration::from_secs(60));
    r.expect_text("authentication refused").expect_text("alice");
    assert!(!r.text().contains(&wrong), "the password was printed");
    assert!(
        !r.report_text.contains(&wrong),
        "the password is in the report"
    );
    assert!(reg.tags(&format!("faults/{name}")).is_empty());
    // Refused credentials are not retried.
    let failed = r.report["pushes"].as_array().unwrap()[0].clone();
    assert_eq!(failed["attempts"], 1);
    engine::remove_image(&tag);
}

fn proxied_publish_failure(mode: FaultMode, label: &str) {
    setup();
    let name = unique(&format!("faults-{label}"));
    let tag = format!("faults/{name}:1");
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr, mode);
    let repo = format!("{}/faults/{name}", proxy.addr);
    let p = Project::new();
    p.pipeline(&publishing_pipeline(&name, &tag, &[(&repo, None)]));
    let r = apply(&p, FAST_RETRY, &[]);
    expect_publish_failure(&r, &tag, &repo, Duration::from_secs(150));
    assert!(proxy.faults() > 0, "the proxy injected no fault");
    let failed = r.report["pushes"].as_array().unwrap()[0].clone();
    assert_eq!(failed["attempts"], 2, "a transient fault is retried");
    r.expect_text("retry");

    // Nothing lost: once the registry is reachable, applying again publishes the kept image
    // (the build comes from the cache).
    let direct = format!("{}/faults/{name}", reg.addr);
    p.pipeline(&publishing_pipeline(&name, &tag, &[(&direct, None)]));
    let again = apply(&p, &[], &[]);
    again.expect_code(0).expect_no_container_left();
    // The same image, reused (a concurrent `pipeline gc` keeps what the newest apply made).
    assert_eq!(again.report["image"]["reused"], true, "{}", again.text());
    assert_eq!(again.report["image"]["id"], r.report["image"]["id"]);
    assert_eq!(reg.tags(&format!("faults/{name}")).len(), 2);
    let content = docker_ok(&["run", "--rm", "--entrypoint", "/bin/cat", &tag, "/content"]);
    assert_eq!(content, name);
    engine::remove_image(&tag);
}

#[test]
fn registry_answering_500_fails_clearly_and_a_rerun_publishes() {
    proxied_publish_failure(FaultMode::Http500 { times: 1_000_000 }, "http500");
}

#[test]
fn registry_resetting_mid_push_fails_clearly_and_a_rerun_publishes() {
    // The busybox layer is about 2 MB: resetting after 64 kB cuts every upload midway.
    proxied_publish_failure(FaultMode::ResetAfterBytes(64 * 1024), "reset");
}

#[test]
fn one_transient_500_is_retried_and_the_push_succeeds() {
    setup();
    let name = unique("faults-500once");
    let tag = format!("faults/{name}:1");
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr, FaultMode::Http500 { times: 1 });
    let repo = format!("{}/faults/{name}", proxy.addr);
    let p = Project::new();
    p.pipeline(&publishing_pipeline(&name, &tag, &[(&repo, None)]));
    let r = apply(&p, &["--attempts", "3", "--retry-delay", "100ms"], &[]);
    r.expect_code(0)
        .expect_within(Duration::from_secs(90))
        .expect_no_container_left();
    assert!(proxy.faults() >= 1);
    let pushes = r.report["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 2);
    assert!(pushes.iter().all(|p| p["status"] == "pushed"));
    assert_eq!(reg.tags(&format!("faults/{name}")).len(), 2);
    engine::remove_image(&tag);
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

fn sha256_hex(data: &[u8]) -> String {
    // The busybox applet computes it inside; compute it here with the host's sha256sum.
    let mut child = StdCommand::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), data).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_are_readable_during_their_step_and_found_nowhere_else() {
    setup();
    let name = unique("faults-secret");
    let tag = format!("faults/{name}:1");
    let env_secret = format!("envsecret-{}", unique("v"));
    let file_secret = format!("filesecret-{}", unique("v"));
    let p = Project::new();
    p.file("token.txt", &file_secret);
    let steps = "\
[[step]]
name = \"use the secrets\"
secrets = [\"API\", \"TOKEN\"]
run = \"sha256sum /run/secrets/API /run/secrets/TOKEN; echo api=$(cat /run/secrets/API); cat /run/secrets/TOKEN >&2; echo; echo done > /used\"
checkpoint = true

[[step]]
name = \"after\"
run = \"test ! -e /run/secrets/API && test ! -e /run/secrets/TOKEN && echo secrets-gone\"
";
    p.pipeline(&pipeline(
        &name,
        steps,
        &tag,
        "[secrets.API]\nenv = \"FAULTS_API_SECRET\"\n\n[secrets.TOKEN]\nfile = \"token.txt\"\n",
    ));
    let r = apply(
        &p,
        &["--no-cache"],
        &[("FAULTS_API_SECRET", env_secret.as_str())],
    );
    r.expect_code(0)
        .expect_text("secrets-gone")
        .expect_no_container_left();
    // The step read the values (their hashes match), and its output was redacted.
    r.expect_text(&sha256_hex(env_secret.as_bytes()))
        .expect_text(&sha256_hex(file_secret.as_bytes()))
        .expect_text("api=******");

    let image = r.report["image"]["id"].as_str().unwrap().to_string();
    // Every image of the build: the final one and its locally built ancestors (checkpoints).
    let mut images: Vec<String> = docker_ok(&["history", "-q", "--no-trunc", &image])
        .lines()
        .filter(|l| l.starts_with("sha256:"))
        .map(str::to_string)
        .collect();
    assert!(images.len() >= 2, "a checkpoint was built: {images:?}");
    images.dedup();
    // And every cache image in the engine (the secret is unique to this test).
    let cache = docker_ok(&["images", "pipeline-cache", "-q", "--no-trunc"]);
    let save_dir = tempfile::tempdir().unwrap();
    let tar = save_dir.path().join("image.tar");
    let mut save = vec!["save", "-o", tar.to_str().unwrap()];
    save.extend(images.iter().map(String::as_str));
    docker_ok(&save);
    let saved = std::fs::read(&tar).unwrap();
    // The saved image is a tar of tars (layer.tar inside): search the layers unpacked too.
    let mut blobs = vec![saved.clone()];
    let unpack = save_dir.path().join("unpacked");
    std::fs::create_dir_all(&unpack).unwrap();
    let ok = StdCommand::new("tar")
        .args(["-xf", tar.to_str().unwrap(), "-C", unpack.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    collect_files(&unpack, &mut blobs);
    assert!(blobs.len() > 3, "the saved image unpacked into its files");

    let mut inspected = String::new();
    for id in images.iter().map(String::as_str).chain(cache.lines()) {
        inspected.push_str(&String::from_utf8_lossy(
            &docker(&["image", "inspect", id]).stdout,
        ));
        inspected.push_str(&String::from_utf8_lossy(
            &docker(&["history", "--no-trunc", id]).stdout,
        ));
    }
    for secret in [&env_secret, &file_secret] {
        assert!(!r.text().contains(secret.as_str()), "secret in the output");
        assert!(
            !r.report_text.contains(secret.as_str()),
            "secret in the report"
        );
        assert!(
            !inspected.contains(secret.as_str()),
            "secret in an image config or history"
        );
        for b in &blobs {
            assert!(!contains(b, secret.as_bytes()), "secret in the saved image");
        }
    }
    // The search itself works: the image does hold what the step wrote.
    assert!(blobs.iter().any(|b| contains(b, b"done\n")));
    engine::remove_image(&tag);
}

fn collect_files(dir: &Path, out: &mut Vec<Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.is_file() {
            out.push(std::fs::read(&path).unwrap());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

fn interrupt_long_step(signal: &str, expected: i32) {
    setup();
    let name = unique("faults-sig");
    let p = Project::new();
    p.pipeline(&pipeline(
        &name,
        "[[step]]\nname = \"long\"\nrun = \"echo sleeping; sleep 30\"\n",
        &format!("faults/{name}:1"),
        "",
    ));
    let (mut child, rx) = p.spawn_apply(&[]);
    wait_for_line(&rx, "step [1/1]", Duration::from_secs(60));
    wait_for_line(&rx, "sleeping", Duration::from_secs(30));
    let during = containers_named("pipeline-");
    let sent = Instant::now();
    let ok = StdCommand::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("apply did not exit");
    let took = sent.elapsed();
    let rest: Vec<String> = rx.try_iter().collect();
    eprintln!(
        "[faults] {signal}: exit {status:?} after {took:?}\n{}",
        rest.join("\n")
    );
    assert_eq!(status.code(), Some(expected), "{}", rest.join("\n"));
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
    let report = read_report(&p.path().join("report.json"));
    assert_eq!(report["status"], "interrupted");
    assert_eq!(report["exit_code"], expected);
    assert_eq!(report["steps"][0]["status"], "interrupted");
    let prefix = format!("{}-", report["run_name"].as_str().unwrap());
    assert!(
        during.iter().any(|n| n.starts_with(&prefix)),
        "the build container {prefix}* existed during the step: {during:?}"
    );
    let left = containers_named(&prefix);
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

#[test]
fn sigint_during_a_long_step_removes_the_container_and_exits_130() {
    interrupt_long_step("-INT", 130);
}

#[test]
fn sigterm_during_a_long_step_removes_the_container_and_exits_143() {
    interrupt_long_step("-TERM", 143);
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

#[test]
fn report_of_a_successful_publish_has_every_field() {
    setup();
    let name = unique("faults-report");
    let tag = format!("faults/{name}:1");
    let reg = Registry::start();
    let repo = format!("{}/faults/{name}", reg.addr);
    let p = Project::new();
    p.pipeline(&publishing_pipeline(&name, &tag, &[(&repo, None)]));
    let r = apply(&p, &[], &[]);
    r.expect_code(0).expect_no_container_left();
    let rep = &r.report;
    assert_eq!(r.document["format_version"], 2);
    assert_eq!(r.document["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r.document["status"], "succeeded");
    assert!(r.document["error"].is_null());
    assert_eq!(rep["pipeline"], name.as_str());
    assert_eq!(rep["status"], "succeeded");
    assert_eq!(rep["exit_code"], 0);
    assert!(rep["error"].is_null());
    assert!(rep["duration_ms"].as_u64().is_some());
    assert!(rep["started_at"].as_str().unwrap().contains('T'));
    assert_eq!(rep["base"]["reference"], BASE);
    let step = &rep["steps"][0];
    assert_eq!(step["index"], 1);
    assert_eq!(step["name"], "content");
    assert_eq!(step["status"], "succeeded");
    assert_eq!(step["cached"], false);
    assert_eq!(step["exit_code"], 0);
    assert!(step["duration_ms"].as_u64().is_some());
    let id = rep["image"]["id"].as_str().unwrap();
    assert_eq!(engine::image_inspect(&tag)["Id"].as_str(), Some(id));
    assert_eq!(rep["image"]["tags"][0], tag.as_str());
    let pushes = rep["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 2);
    for (push, t) in pushes.iter().zip(["1", "latest"]) {
        assert_eq!(push["repository"], repo.as_str());
        assert_eq!(push["tag"], t);
        assert_eq!(push["status"], "pushed");
        assert_eq!(push["attempts"], 1);
        assert_eq!(
            push["digest"].as_str(),
            reg.manifest_digest(&format!("faults/{name}"), t).as_deref()
        );
    }
    engine::remove_image(&tag);
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

struct Finished {
    code: Option<i32>,
    text: String,
    report: Value,
}

fn run_together(projects: &[&Project]) -> Vec<Finished> {
    let mut children: Vec<_> = projects.iter().map(|p| p.spawn_apply(&[])).collect();
    let mut out = Vec::new();
    for ((child, rx), p) in children.iter_mut().zip(projects) {
        let status = wait_exit(child, Duration::from_secs(180)).expect("apply hung");
        std::thread::sleep(Duration::from_millis(50));
        let text = rx.try_iter().collect::<Vec<_>>().join("\n");
        let report = read_report(&p.path().join("report.json"));
        eprintln!(
            "[faults] concurrent apply: exit {:?}\n{text}",
            status.code()
        );
        out.push(Finished {
            code: status.code(),
            text,
            report,
        });
    }
    out
}

#[test]
fn two_different_pipelines_at_once_do_not_interfere() {
    setup();
    let reg = Registry::start();
    let names = [unique("faults-par-a"), unique("faults-par-b")];
    let projects = [Project::new(), Project::new()];
    for (p, name) in projects.iter().zip(&names) {
        let repo = format!("{}/faults/{name}", reg.addr);
        p.pipeline(&publishing_pipeline(
            name,
            &format!("faults/{name}:1"),
            &[(&repo, None)],
        ));
    }
    let done = run_together(&[&projects[0], &projects[1]]);
    for (f, name) in done.iter().zip(&names) {
        assert_eq!(f.code, Some(0), "{}", f.text);
        let prefix = format!("{}-", f.report["run_name"].as_str().unwrap());
        assert!(containers_named(&prefix).is_empty());
        let tag = format!("faults/{name}:1");
        let content = docker_ok(&["run", "--rm", "--entrypoint", "/bin/cat", &tag, "/content"]);
        assert_eq!(&content, name, "each image holds its own pipeline's work");
        assert_eq!(reg.tags(&format!("faults/{name}")).len(), 2);
        engine::remove_image(&tag);
    }
}

#[test]
fn the_same_pipeline_twice_at_once_both_succeed_or_one_fails_clearly() {
    setup();
    let reg = Registry::start();
    let name = unique("faults-same");
    let tag = format!("faults/{name}:1");
    let repo = format!("{}/faults/{name}", reg.addr);
    let toml = publishing_pipeline(&name, &tag, &[(&repo, None)]);
    let projects = [Project::new(), Project::new()];
    for p in &projects {
        p.pipeline(&toml);
    }
    let done = run_together(&[&projects[0], &projects[1]]);
    let mut ok = 0;
    for f in &done {
        let prefix = format!("{}-", f.report["run_name"].as_str().unwrap());
        assert!(containers_named(&prefix).is_empty());
        match f.code {
            Some(0) => ok += 1,
            Some(c) => {
                assert!(
                    f.text.contains("error:"),
                    "a failure must explain itself:\n{}",
                    f.text
                );
                assert!([3, 4, 5].contains(&c), "exit {c}:\n{}", f.text);
            }
            None => panic!("killed:\n{}", f.text),
        }
    }
    assert!(
        ok >= 1,
        "at least one apply succeeds:\n{}\n---\n{}",
        done[0].text,
        done[1].text
    );
    // Nothing corrupted: the tag and the registry hold a complete, runnable image.
    let content = docker_ok(&["run", "--rm", "--entrypoint", "/bin/cat", &tag, "/content"]);
    assert_eq!(content, name);
    let digest = reg
        .manifest_digest(&format!("faults/{name}"), "1")
        .expect("pushed");
    docker_ok(&["pull", &format!("{repo}@{digest}")]);
    engine::remove_image(&format!("{repo}@{digest}"));
    engine::remove_image(&tag);
}

#[test]
fn sigint_during_a_push_exits_130_and_keeps_the_image() {
    setup();
    let name = unique("faults-sigpush");
    let tag = format!("faults/{name}:1");
    let reg = Registry::start();
    // A registry that keeps failing: the engine retries the upload for a long while, so the
    // interrupt lands in the middle of the push.
    let proxy = FaultProxy::start(&reg.addr, FaultMode::Http500 { times: 1000 });
    let repo = format!("{}/faults/{name}", proxy.addr);
    let p = Project::new();
    p.pipeline(&publishing_pipeline(&name, &tag, &[(&repo, None)]));
    let (mut child, rx) = p.spawn_apply(&[]);
    wait_for_line(&rx, &format!("push {repo}"), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    assert!(StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("apply did not exit");
    let took = sent.elapsed();
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(130), "{}", rest.join("\n"));
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
    let report = read_report(&p.path().join("report.json"));
    assert_eq!(report["status"], "interrupted");
    assert_eq!(report["steps"][0]["status"], "succeeded", "{report:#}");
    let prefix = format!("{}-", report["run_name"].as_str().unwrap());
    assert!(
        containers_named(&prefix).is_empty(),
        "containers left behind"
    );
    // Nothing lost: the committed image stays, tagged.
    assert!(engine::image_exists(&tag), "the built image is gone");
    assert!(reg.tags(&format!("faults/{name}")).is_empty());
    engine::remove_image(&tag);
}

#[test]
fn a_base_without_cat_is_named_as_the_reason_the_step_failed_when_a_copy_might_have_brought_it() {
    setup();
    let name = unique("faults-nocat");
    let image = format!("faults/{name}-base:1");
    // An image holding only a static busybox binary under another name: no `cat` on its PATH.
    let root = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", root.path().join("bb"))
        .expect("/bin/busybox (busybox-static; scripts/setup.sh installs it)");
    let tar = root.path().join("root.tar");
    let out = StdCommand::new("tar")
        .args(["-C"])
        .arg(root.path())
        .args(["-cf"])
        .arg(&tar)
        .arg("bb")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {out:?}");
    docker_ok(&[
        "import",
        "-c",
        "CMD [\"/bb\", \"sh\"]",
        tar.to_str().unwrap(),
        &image,
    ]);
    let p = Project::new();
    // A copy into a folder of the PATH might bring `cat`: the check before the steps lets the
    // step start, and the step's own failure is explained.
    p.file("note.txt", "not cat\n");
    p.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"{image}\"\npull = \"never\"\n\n\
         [[step]]\ncopy = {{ src = \"note.txt\", dest = \"/usr/bin/\" }}\n\n\
         [[step]]\nrun = [\"/bb\", \"echo\", \"hi\"]\n\n[commit]\ntags = [\"faults/{name}:1\"]\n"
    ));
    // The engine may refuse the first command or start it in a container already stopping:
    // a few runs meet both orders.
    for _ in 0..4 {
        let r = apply(&p, &[], &[]);
        r.expect_code(STEP)
            .expect_text(&format!(
                "the image (from `{image}`) has no `cat` on its PATH"
            ))
            .expect_no_container_left();
    }
    engine::remove_image(&image);
}
