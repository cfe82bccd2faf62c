//! `pipeline.lock`: `lock` pins each base by digest, `plan` says when a base moved, `apply
//! --locked` builds on exactly the locked image (pulled by digest), `lock --update` moves an
//! entry, and a missing, lacking or stale lock is refused. Against the registry at
//! 127.0.0.1:5000, under repositories of the test's own.

use crate::harness::{output_text, unique, Project};
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
    let out = project.cmd(&["plan", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert!(
        text.contains(&format!("base moved: {reference}: {old} -> {new}")),
        "{text}"
    );

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
    let out = project
        .cmd(&["lock", "--update", &reference, "."])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("updated {reference}: {old} -> {new}")),
        "{text}"
    );
    let updated = std::fs::read_to_string(&lock_path).unwrap();
    assert!(
        updated.contains(&format!("manifest = \"{new}\"")),
        "{updated}"
    );
    let out = project.cmd(&["plan", "pipeline.toml"]).output().unwrap();
    assert!(
        !output_text(&out).contains("base moved"),
        "{}",
        output_text(&out)
    );
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
        for command in ["plan", "apply"] {
            let out = project
                .cmd(&[command, "--locked", "pipeline.toml"])
                .output()
                .unwrap();
            let text = output_text(&out);
            assert_eq!(out.status.code(), Some(2), "{case}, {command}:\n{text}");
            assert!(
                text.contains(wants),
                "{case}, {command}: wants {wants}:\n{text}"
            );
        }
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
