//! What a published image tells about how it was built: the names of its steps, never their
//! inputs nor a digest of them.

use std::io::Read;

use crate::harness::{busybox_pipeline, output_text, unique, Project};
use crate::support::engine::{docker, docker_ok, require_image};

/// Runs of 16 or more hex digits that are not a `sha256:` digest.
fn stray_hex(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric() && c != ':') {
        let word = word
            .strip_prefix("sha256:")
            .map_or(word, |d| if d.len() == 64 { "" } else { d });
        let mut run = String::new();
        for c in word.chars().chain([' ']) {
            if c.is_ascii_hexdigit() {
                run.push(c);
            } else {
                if run.len() >= 16 {
                    out.push(run.clone());
                }
                run.clear();
            }
        }
    }
    out
}

/// The text of every entry of a `docker save` archive but the layer contents.
fn saved_metadata(image: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.tar");
    docker_ok(&["save", "-o", file.to_str().unwrap(), image]);
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.ends_with("layer.tar") || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut text = String::new();
        if entry.read_to_string(&mut text).is_ok() {
            out.push((path, text));
        }
    }
    out
}

/// A pipeline whose first step writes `state` (its command) and has `PIN=4711` in its env.
/// `name` also makes the steps unique, so that no other test's checkpoint serves them.
fn pipeline(name: &str, state: &str) -> String {
    let body = format!(
        r#"
[[step]]
name = "write pin"
run = "mkdir -p /srv && echo {state} {name} > /srv/state"
env = {{ PIN = "4711" }}
[[step]]
name = "make folders"
checkpoint = true
run = "mkdir -p /srv/www"
[[step]]
copy = {{ src = "motd", dest = "/etc/motd" }}
[commit]
message = "history test"
tags = ["{name}:latest"]
"#
    );
    busybox_pipeline(name, &body)
}

#[test]
fn the_image_history_names_the_steps_and_holds_no_input_nor_a_digest_of_one() {
    require_image("busybox:latest");
    let project = Project::new();
    // The PIN must show nowhere, so the name may not hold it either.
    let name = unique("history").replace("4711", "47-11");
    project.file("motd", "welcome\n");
    project.pipeline(&pipeline(&name, "set"));
    let out = project.cmd(&["apply", "pipeline.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let image = format!("{name}:latest");

    let comments = docker_ok(&["history", "--no-trunc", "--format", "{{.Comment}}", &image]);
    assert!(
        comments
            .lines()
            .any(|l| l == format!("pipeline {name}: steps 1-2 (write pin; make folders)")),
        "the checkpoint's comment does not name its steps:\n{comments}"
    );
    let history = docker(&["history", "--no-trunc", &image]);
    let history = String::from_utf8_lossy(&history.stdout).into_owned();
    for text in [&comments, &history] {
        assert!(!text.contains("4711"), "{text}");
        assert!(!text.contains("checkpoint v1"), "{text}");
        assert_eq!(stray_hex(text), Vec::<String>::new(), "{text}");
    }

    // What `docker save` (and a push) carries: the config blob, the manifest, the layers' json.
    let saved = saved_metadata(&image);
    assert!(saved.iter().any(|(p, _)| p == "manifest.json"), "{saved:?}");
    for (path, text) in &saved {
        assert!(!text.contains("4711"), "{path}: {text}");
        let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
            continue;
        };
        for entry in json["history"].as_array().into_iter().flatten() {
            for field in ["comment", "created_by"] {
                let value = entry[field].as_str().unwrap_or_default();
                assert_eq!(stray_hex(value), Vec::<String>::new(), "{path}: {value}");
            }
        }
    }

    // The digests that explain a miss live in the user's cache instead.
    let notes = project.user_cache().join("pipeline/notes");
    let count = std::fs::read_dir(&notes).map_or(0, |d| d.count());
    assert_eq!(count, 2, "one note per checkpoint in {}", notes.display());
    project.pipeline(&pipeline(&name, "changed"));
    let plan = project.cmd(&["plan", "pipeline.toml"]).output().unwrap();
    let text = output_text(&plan);
    assert!(plan.status.success(), "{text}");
    assert!(
        text.contains("[1/3] write pin: will run (changed: command)"),
        "{text}"
    );
    docker(&["rmi", &image]);
}

#[test]
fn the_hex_check_finds_digests_of_inputs_but_not_image_digests() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert!(stray_hex(&format!("{digest} Imported from -")).is_empty());
    assert_eq!(
        stray_hex(r#"{"env":"0123456789abcdef"}"#),
        ["0123456789abcdef"]
    );
}
