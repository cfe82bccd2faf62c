//! The registry-backed step cache: a fresh runner (a brand-new `dockerd` with an empty data
//! root) skips what another runner built and pushed to a throwaway cache registry.

use std::process::{Output, Stdio};

use serde_json::Value;

use crate::cache::plan_keys;
use crate::harness::{
    output_text, read_report, unique, Project, CACHE_SIGNING_ENV, CACHE_VERIFY_KEY,
    OTHER_SIGNING_KEY, OTHER_VERIFY_KEY,
};
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
/// `cache`, whose entries the test's trusted key signs.
pub(crate) fn pipeline(name: &str, reg: &str, cache: &str, last: &str) -> String {
    let publish = format!("[[publish]]\nrepository = \"{reg}/{name}\"\ntags = [\"1\"]\n");
    steps(name, reg, cache, (name, last), CACHE_VERIFY_KEY) + &publish
}

/// Pipeline `name` (no publish target): its slow first step writes `files.0` into `/one`, its
/// last `files.1` into `/two`; cached in `cache`, trusting `verify_key`.
fn steps(name: &str, reg: &str, cache: &str, files: (&str, &str), verify_key: &str) -> String {
    let (one, two) = files;
    format!(
        r#"name = "{name}"
[base]
image = "{reg}/busybox:latest"

[[step]]
name = "slow"
run = "echo {one} > /one && sleep 1.2"

[[step]]
name = "last"
run = "echo {two} > /two"

[commit]
config = {{ cmd = ["cat", "/two"] }}

[cache]
remote = "{cache}"
checkpoint_after = "800ms"
verify_key = "{verify_key}"
signing_key_env = "{CACHE_SIGNING_ENV}"

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

/// Container creates and images brought in (pulled, or loaded as the tool imports remote
/// entries) of one engine between two unix times.
fn counts(d: &Daemon, since: &str, until: &str) -> (usize, usize) {
    let creates = events_of(&mut d.command(), since, until)
        .iter()
        .filter(|e| e["Action"] == "create")
        .count();
    let pulls = events_filtered(
        &mut d.command(),
        since,
        until,
        &["type=image", "event=pull", "event=load"],
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

/// What `plan` says on the engine `d` (else the main one).
fn plan_on(project: &Project, d: Option<&Daemon>) -> String {
    let mut args = vec!["plan"];
    if let Some(d) = d {
        args.extend(["--engine", d.engine_arg.as_str()]);
    }
    args.push("pipeline.toml");
    output_text(&project.std_cmd(&args).output().unwrap())
}

fn report(project: &Project) -> Value {
    read_report(&project.path().join("r.json"))
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
    exported.sort();
    // Beside the entries, the pipeline's index (what its newest apply used) for `gc --remote`.
    let index = cache_index_tags(&mut exported);
    assert_eq!(index.len(), 1, "{index:?}");
    // Each entry beside its signature.
    let (signatures, entries): (Vec<String>, Vec<String>) =
        exported.into_iter().partition(|t| t.ends_with(".sig"));
    let exported = entries;
    assert_eq!(
        signatures,
        exported
            .iter()
            .map(|k| format!("{k}.sig"))
            .collect::<Vec<_>>()
    );
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
    let plan_text = plan_on(&project, Some(&b));
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
        "one container, one image brought in: {text}"
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
    let plan = crate::harness::single_plan(&plan.stdout);
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

/// What an untrusted job with push rights to the cache can do: apply its own version of the
/// pipeline (same name, its own first step) with its own key, then put its entries and
/// signatures under the main branch's keys. The main branch's next apply on a fresh cache
/// uses none of it: a planted final image is not published, a planted checkpoint is not
/// resumed from, whether unsigned or signed by another key.
#[test]
fn entries_no_trusted_apply_signed_are_never_used() {
    let reg = registry_with_busybox();
    // (what is planted: the final image or the checkpoint after step 1; with its signature)
    for (last, signed) in [(true, false), (true, true), (false, false), (false, true)] {
        let case = format!("final image {last}, signed by another key {signed}");
        let u = unique("rmtplant");
        let repository = format!("cache/{u}");
        let cache = format!("{}/{repository}", reg.addr);
        let attacker = Project::new();
        attacker.pipeline(&steps(
            &u,
            &reg.addr,
            &cache,
            ("evil", "two"),
            OTHER_VERIFY_KEY,
        ));
        let planted = plan_keys(&attacker, &[]);
        let out = attacker
            .std_cmd(&["apply", "pipeline.toml"])
            .env(CACHE_SIGNING_ENV, OTHER_SIGNING_KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{case}: {}", output_text(&out));
        let project = Project::new();
        project.pipeline(&pipeline(&u, &reg.addr, &cache, "two"));
        let keys = plan_keys(&project, &[]);
        let (from, to) = if last {
            (&planted[2], &keys[2])
        } else {
            (&planted[0], &keys[0])
        };
        reg.copy_tag(&repository, from, to);
        if signed {
            reg.copy_tag(&repository, &format!("{from}.sig"), &format!("{to}.sig"));
        }
        // The main branch applies on an engine without its entries.
        for key in planted.iter().chain(&keys) {
            let _ = docker(&["rmi", &format!("pipeline-cache:{key}")]);
        }
        let why = if signed {
            "its signature does not verify with `verify_key`"
        } else {
            "it is not signed"
        };
        let plan_text = plan_on(&project, None);
        assert!(
            plan_text.contains(&format!("ignored `{cache}:{to}`: {why}"))
                && plan_text.contains("[1/2] slow: will run"),
            "{case}: {plan_text}"
        );
        let out = apply(&project, None, &["--report", "r.json"]);
        let text = output_text(&out);
        assert!(out.status.success(), "{case}: {text}");
        let r = report(&project);
        assert_eq!(r["steps"][0]["cached"], false, "{case}: {r:#}");
        assert!(
            r["cache_remote"]["imported"].as_array().unwrap().is_empty(),
            "{case}: {r:#}"
        );
        assert!(
            text.contains(&format!(
                "ignored what no trusted apply signed (built instead): `{cache}:{to}`: {why}"
            )),
            "{case}: {text}"
        );
        let published = format!("{}/{u}:1", reg.addr);
        assert_eq!(
            docker_ok(&["run", "--rm", &published, "cat", "/one", "/two"]),
            format!("{u}\ntwo"),
            "{case}"
        );
        // What it pushed replaced the planted entry: a fresh runner now uses that.
        let plan_text = plan_on(&project, Some(&Daemon::start()));
        assert!(plan_text.contains("cached (remote)"), "{case}: {plan_text}");
        assert!(!plan_text.contains("ignored"), "{case}: {plan_text}");
        let _ = docker(&["rmi", &published]);
        for key in planted.iter().chain(&keys) {
            let _ = docker(&["rmi", &format!("pipeline-cache:{key}")]);
        }
    }
}

/// Without `verify_key` (and without a signing key to derive it from), nothing of the remote
/// cache is used or written: one warning says why. Without the signing key, nothing is pushed.
#[test]
fn a_remote_cache_without_a_verify_key_is_not_used() {
    let reg = registry_with_busybox();
    let u = unique("rmtnokey");
    let repository = format!("cache/{u}");
    let cache = format!("{}/{repository}", reg.addr);
    let project = Project::new();
    let toml = pipeline(&u, &reg.addr, &cache, "two")
        .replace(&format!("verify_key = \"{CACHE_VERIFY_KEY}\"\n"), "")
        .replace(&format!("signing_key_env = \"{CACHE_SIGNING_ENV}\"\n"), "");
    project.pipeline(&toml);
    let out = apply(&project, None, &["--report", "r.json"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("has no `verify_key`").count(), 1, "{text}");
    assert!(reg.tags(&repository).is_empty(), "{text}");
    assert_eq!(report(&project)["cache_remote"]["status"], "unavailable");
    // With the key to verify but not the one to sign (a job that is not trusted), the cache
    // is read and nothing is pushed: one warning says why.
    project.pipeline(&pipeline(&u, &reg.addr, &cache, "three"));
    let out = project
        .std_cmd(&["apply", "pipeline.toml"])
        .env_remove(CACHE_SIGNING_ENV)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("nothing pushed: this job has no signing key")
            .count(),
        1,
        "{text}"
    );
    assert!(reg.tags(&repository).is_empty(), "{text}");
    let _ = docker(&["rmi", &format!("{}/{u}:1", reg.addr)]);
}

/// The layer digests of a manifest, bottom first, and its config digest.
fn blobs_of(manifest: &Value) -> (Vec<String>, String) {
    let layers = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    let config = manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string();
    (layers, config)
}

#[test]
fn a_cache_on_another_registry_gets_the_published_layers_not_a_second_compression() {
    let reg = registry_with_busybox();
    let cache_reg = Registry::start();
    let u = unique("rmt-own");
    let cache = format!("{}/cache/{u}", cache_reg.addr);
    let project = Project::new();
    project.pipeline(&pipeline(&u, &reg.addr, &cache, "two"));
    let out = apply(&project, None, &[]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("cache pushed 3 entries"), "{text}");

    let (published, published_config) = blobs_of(&reg.manifest(&u, "1"));
    let mut tags = cache_reg.tags(&format!("cache/{u}"));
    cache_index_tags(&mut tags);
    let entries: Vec<(Vec<String>, String)> = tags
        .iter()
        .filter(|t| !t.ends_with(".sig"))
        .map(|t| blobs_of(&cache_reg.manifest(&format!("cache/{u}"), t)))
        .collect();
    assert_eq!(entries.len(), 3, "{tags:?}");
    // The final entry is the published image, blob for blob (one compression of each layer:
    // an engine's push compresses again, to other bytes); each checkpoint's layers are the
    // bottom of it.
    assert!(
        entries
            .iter()
            .any(|(layers, config)| layers == &published && config == &published_config),
        "no entry is the published image {published:?}: {entries:?}"
    );
    for (layers, _) in &entries {
        assert!(
            published.starts_with(layers),
            "{layers:?} is not the bottom of {published:?}"
        );
    }

    // A fresh engine imports the checkpoint the tool pushed (its image id is the one the
    // entry's config names) and runs only the changed step.
    // A fresh runner: an empty engine and an empty user cache folder (no blob store).
    project.pipeline(&pipeline(&u, &reg.addr, &cache, "three"));
    let b = Daemon::start();
    let fresh_store = tempfile::tempdir().unwrap();
    let since = unix_now();
    let out = project
        .std_cmd(&[
            "apply",
            "--engine",
            b.engine_arg.as_str(),
            "--report",
            "r.json",
            "pipeline.toml",
        ])
        .env_remove("DOCKER_HOST")
        .env("XDG_CACHE_HOME", fresh_store.path())
        .stdin(Stdio::null())
        .output()
        .expect("run pipeline");
    let until = unix_now();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cache pulled a checkpoint after step 1"),
        "{text}"
    );
    // Downloaded by the tool and loaded, not pulled by the engine.
    let brought = |event: &str| {
        events_filtered(&mut b.command(), &since, &until, &["type=image", event]).len()
    };
    assert_eq!(
        (brought("event=load"), brought("event=pull")),
        (1, 0),
        "{text}"
    );
    let r = report(&project);
    assert_eq!(r["steps"][0]["cached"], true, "{r:#}");
    // The image on the downloaded checkpoint is published with the checkpoint's blobs.
    let (on_b, _) = blobs_of(&reg.manifest(&u, "1"));
    let (checkpoint, _) = entries
        .iter()
        .filter(|(layers, _)| layers.len() < published.len())
        .max_by_key(|(layers, _)| layers.len())
        .expect("a checkpoint entry");
    assert!(on_b.starts_with(checkpoint), "{on_b:?} on {checkpoint:?}");
    let published = format!("{}/{u}:1", reg.addr);
    assert_eq!(b.docker_ok(&["run", "--rm", &published]), "three");
    let _ = docker(&["rmi", &published, &format!("{}/busybox:latest", reg.addr)]);
}
