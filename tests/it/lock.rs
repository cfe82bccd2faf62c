//! `pipeline.lock`: `lock` pins each base by digest, `plan` says when a base moved, `apply
//! --locked` builds on exactly the locked image (pulled by digest), `lock --update` moves an
//! entry, and a missing, lacking or stale lock is refused. Against the registry at
//! 127.0.0.1:5000, under repositories of the test's own.

use crate::harness::{output_text, read_report, single_plan, unique, Project};
use crate::support::engine::{docker, docker_ok, image_inspect, require_image};

const REGISTRY: &str = "127.0.0.1:5000";

/// The images a test made, removed when it ends.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = docker(&["rmi", "-f", i]);
        }
    }
}

/// Builds busybox with the label `lock.test=VALUE` as `reference`, pushes it and returns its
/// manifest digest and image id.
fn push_variant(reference: &str, value: &str, made: &mut Images) -> (String, String) {
    require_image("busybox:latest");
    let dockerfile = format!("FROM busybox:latest\nLABEL lock.test={value}\n");
    let out = std::process::Command::new(crate::support::engine::docker_bin())
        .args(["build", "-q", "-t", reference, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(dockerfile.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "docker build: {}", output_text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    made.0.push(id.clone());
    docker_ok(&["push", reference]);
    let repository = reference.rsplit_once(':').unwrap().0;
    let digests = image_inspect(reference)["RepoDigests"].clone();
    let digest = digests
        .as_array()
        .unwrap()
        .iter()
        .find_map(|d| d.as_str()?.strip_prefix(&format!("{repository}@")))
        .unwrap()
        .to_string();
    (digest, id)
}

fn pipeline(name: &str, base: &str) -> String {
    format!("name = \"{name}\"\n[base]\nimage = \"{base}\"\n\n[[step]]\nrun = \"echo hi > /hi\"\n")
}

#[test]
fn the_lock_pins_the_base_for_plan_apply_and_update() {
    let mut made = Images(Vec::new());
    let repository = format!("{REGISTRY}/{}", unique("lock-base"));
    let reference = format!("{repository}:1");
    let (old, old_id) = push_variant(&reference, "old", &mut made);
    let project = Project::new();
    let name = unique("lock");
    project.pipeline(&pipeline(&name, &reference));
    let lock_path = project.path().join("pipeline.lock");

    let out = project.cmd(&["lock", "."]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let first = std::fs::read_to_string(&lock_path).unwrap();
    assert!(first.starts_with("# pipeline.lock"), "{first}");
    assert!(first.contains("version = 1"), "{first}");
    assert!(
        first.contains(&format!("reference = \"{reference}\"")),
        "{first}"
    );
    assert!(first.contains("source = \"registry\""), "{first}");
    assert!(first.contains(&format!("manifest = \"{old}\"")), "{first}");
    assert!(first.contains(&format!("config = \"{old_id}\"")), "{first}");
    // Nothing moved: the same bytes.
    let out = project.cmd(&["lock", "."]).output().unwrap();
    assert!(
        output_text(&out).contains("is up to date"),
        "{}",
        output_text(&out)
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), first);

    // The tag moves; the engine keeps neither image, so the locked one must be pulled.
    let (new, _) = push_variant(&reference, "new", &mut made);
    docker_ok(&["rmi", "-f", &old_id]);
    // In the text, and as data: the document's `locks` and the plan's `base.lock`.
    let (moved, plan) = moved_in_plan(&project, "base", &reference, (&old, &new));
    assert_eq!(plan["base"]["lock"], moved, "{plan:#}");

    let out = project
        .cmd(&["apply", "--locked", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("base {repository}@{old} pulled")),
        "apply --locked pulls the locked digest:\n{text}"
    );
    let image = text
        .lines()
        .find_map(|l| l.split("image committed ").nth(1))
        .unwrap_or_else(|| panic!("no committed image in:\n{text}"))
        .trim()
        .to_string();
    made.0.push(image.clone());
    made.0.push(old_id);
    let label = &image_inspect(&image)["Config"]["Labels"]["lock.test"];
    assert_eq!(label, "old", "built on the locked base:\n{text}");

    // `--update REF` moves the entry; plan no longer says the base moved.
    update_moves(&project, "base", &reference, (&old, &new));
    let updated = std::fs::read_to_string(&lock_path).unwrap();
    assert!(
        updated.contains(&format!("manifest = \"{new}\"")),
        "{updated}"
    );
    let (_, plan) = plan_json(&project, &[]);
    assert_eq!(plan["base"]["lock"]["moved"], false, "{plan:#}");
    assert_eq!(plan["base"]["lock"]["current"], new.as_str(), "{plan:#}");
}

/// `plan` says that the entry `reference` of `kind` (`base`, `copy`) moved from `was` to `now`,
/// in its text and in its JSON document's `locks`: that entry, and the document's one plan.
fn moved_in_plan(
    project: &Project,
    kind: &str,
    reference: &str,
    (was, now): (&str, &str),
) -> (serde_json::Value, serde_json::Value) {
    let out = project.cmd(&["plan", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    let noun = if kind == "copy" { "copy source" } else { kind };
    assert!(
        text.contains(&format!("{noun} moved: {reference}: {was} -> {now}")),
        "{text}"
    );
    let moved = serde_json::json!({
        "kind": kind, "reference": reference, "locked": was, "current": now, "moved": true
    });
    let (document, plan) = plan_json(project, &[]);
    let locks = document["locks"].as_array().unwrap();
    assert!(locks.contains(&moved), "{document:#}");
    (moved, plan)
}

/// `lock --update REFERENCE .` moves the entry of `kind` (`base`, `copy`) from `was` to `now`,
/// and `plan` no longer says it moved.
fn update_moves(project: &Project, kind: &str, reference: &str, (was, now): (&str, &str)) {
    let out = project
        .cmd(&["lock", "--update", reference, "."])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let noun = if kind == "copy" { "copy source " } else { "" };
    assert!(
        text.contains(&format!("updated {noun}{reference}: {was} -> {now}")),
        "{text}"
    );
    let out = project.cmd(&["plan", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(" moved: "), "{text}");
}

/// `plan --locked` and `apply --locked` refuse the lock (`case`) with exit 2, saying each of
/// `wants`.
fn refused(project: &Project, case: &str, wants: &[&str]) {
    for command in ["plan", "apply"] {
        let out = project
            .cmd(&[command, "--locked", "pipeline.toml"])
            .output()
            .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{case}, {command}:\n{text}");
        for w in wants {
            assert!(text.contains(w), "{case}, {command}: wants {w}:\n{text}");
        }
    }
}

/// `plan --format json pipeline.toml` with `args`, which must succeed: the document and its one
/// plan.
fn plan_json(project: &Project, args: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let mut all = vec!["plan", "--format", "json"];
    all.extend_from_slice(args);
    all.push("pipeline.toml");
    let out = project.cmd(&all).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (document, single_plan(&out.stdout))
}

#[test]
fn locked_refuses_a_missing_lacking_or_stale_lock() {
    let mut made = Images(Vec::new());
    let reference = format!("{REGISTRY}/{}:1", unique("lock-refused"));
    push_variant(&reference, "refused", &mut made);
    let project = Project::new();
    project.pipeline(&pipeline(&unique("lock"), &reference));
    let lock_path = project.path().join("pipeline.lock");
    let out = project.cmd(&["lock", "."]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let good = std::fs::read_to_string(&lock_path).unwrap();
    let stale =
        format!("{good}\n[[base]]\nreference = \"{REGISTRY}/gone:1\"\nsource = \"registry\"\n");
    let cases: [(&str, Option<String>, &str); 4] = [
        ("missing", None, "pipeline.lock` is missing"),
        (
            "lacking",
            Some("version = 1\n".into()),
            &format!("has no entry for base `{reference}`"),
        ),
        (
            "stale",
            Some(stale),
            &format!("its entry for `{REGISTRY}/gone:1` is the base of no pipeline"),
        ),
        ("unreadable", Some("version = 7\n".into()), "version 7"),
    ];
    for (case, lock, wants) in &cases {
        match lock {
            Some(text) => std::fs::write(&lock_path, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&lock_path);
            }
        }
        refused(&project, case, &[wants]);
    }
}

#[test]
fn a_base_only_the_engine_has_is_locked_to_its_image_id() {
    require_image("busybox:latest");
    let project = Project::new();
    project.pipeline(&pipeline(&unique("lock"), "busybox:latest"));
    let out = project.cmd(&["lock", "."]).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("the engine's image: no registry has it"),
        "{text}"
    );
    let id = image_inspect("busybox:latest")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let lock = std::fs::read_to_string(project.path().join("pipeline.lock")).unwrap();
    assert!(lock.contains("source = \"engine\""), "{lock}");
    assert!(lock.contains(&format!("config = \"{id}\"")), "{lock}");
    let out = project
        .cmd(&["plan", "--locked", "pipeline.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

/// A pipeline on the engine's `busybox:latest` that copies `/etc/passwd` out of `source`.
fn copying(name: &str, source: &str) -> String {
    format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\n\n[[step]]\nrun = \"echo hi > /hi\"\n\n\
         [[step]]\ncopy = {{ from = \"{source}\", src = \"/etc/passwd\", dest = \"/copied\" }}\n"
    )
}

#[test]
fn the_lock_pins_an_image_copies_read_from_as_it_pins_a_base() {
    let mut made = Images(Vec::new());
    let repository = format!("{REGISTRY}/{}", unique("lock-copy"));
    let source = format!("{repository}:1");
    let (old, old_id) = push_variant(&source, "old", &mut made);
    let project = Project::new();
    project.pipeline(&copying(&unique("lockcopy"), &source));
    let lock_path = project.path().join("pipeline.lock");

    let out = project.cmd(&["lock", "."]).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("locked copy source {source} {old}")),
        "{text}"
    );
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    // The bases come first, then the copy sources.
    let (bases, copies) = lock.split_at(lock.find("[[copy]]").unwrap_or(lock.len()));
    assert!(bases.contains("reference = \"busybox:latest\""), "{lock}");
    for line in [
        format!("reference = \"{source}\"\nsource = \"registry\"\n"),
        format!("manifest = \"{old}\"\nconfig = \"{old_id}\"\n"),
    ] {
        assert!(copies.contains(&line), "{line} in:\n{lock}");
    }

    // The tag moves, and the engine keeps neither image: the locked one must be pulled.
    let (new, new_id) = push_variant(&source, "new", &mut made);
    docker_ok(&["rmi", "-f", &old_id]);
    let (moved, plan) = moved_in_plan(&project, "copy", &source, (&old, &new));
    assert_eq!(plan["steps"][1]["copies_from"]["lock"], moved, "{plan:#}");
    let (_, plan) = plan_json(&project, &["--locked"]);
    let pinned = &plan["steps"][1]["copies_from"]["pinned"];
    assert_eq!(pinned, &format!("{repository}@{old}").as_str(), "{plan:#}");

    let out = project
        .cmd(&["apply", "--locked", "--report", "r.json", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("step 2 copies from {source} pulled ({old_id})")),
        "apply --locked reads the locked image, pulled by digest:\n{text}"
    );
    let report = read_report(&project.path().join("r.json"));
    made.0
        .extend(report["image"]["id"].as_str().map(str::to_string));
    assert_eq!(
        report["steps"][1]["copies_from"]["id"],
        old_id.as_str(),
        "{report:#}"
    );
    assert_ne!(old_id, new_id);

    // A lock without the copy entry (as one written before copies were locked) is refused
    // with what to run, not as unreadable.
    std::fs::write(&lock_path, bases).unwrap();
    let wants = format!("has no entry for copy source `{source}`");
    refused(
        &project,
        "no copy entry",
        &[&wants, "run `pipeline lock` to add it"],
    );

    // `lock` adds it again as it is now; `--update REF` moves a kept entry.
    std::fs::write(&lock_path, &lock).unwrap();
    update_moves(&project, "copy", &source, (&old, &new));
}
