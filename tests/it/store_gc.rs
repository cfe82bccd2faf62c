//! `gc` collects the local blob store: once no engine holds the images a build's records name
//! and those records are old, the build's blobs go (the base's stay while the engine holds
//! the base), and the next apply writes them again, giving the same reproducible image.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::cache::plan_keys;
use crate::harness::{busybox_pipeline, output_text, read_report, unique, Project};
use crate::support::engine::{docker, engine_address, image_inspect, require_image};
use crate::support::image::Made;
use crate::support::registry::Registry;

/// The reproducible images' epoch in this test.
const EPOCH: &str = "1700000000";

/// Older than any keep duration or grace of the collector's.
const AGED: Duration = Duration::from_secs(7 * 24 * 60 * 60);

fn apply(p: &Project, report: &str) -> (Value, Made) {
    let out = p
        .std_cmd(&["apply", "pipeline.toml", "--report", report])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(out.status.success(), "apply failed:\n{}", output_text(&out));
    let report = read_report(&p.path().join(report));
    let made = Made::of_report(&p.user_cache(), &report);
    (report, made)
}

fn gc(p: &Project, args: &[&str]) -> String {
    let out = p.cmd(&[&["gc"], args].concat()).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "gc failed:\n{text}");
    text
}

/// Every file below `dir`, ages it by [`AGED`].
fn age_all(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            age_all(&path);
        } else {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(SystemTime::now() - AGED).unwrap();
        }
    }
}

fn blob(store: &Path, digest: &str) -> PathBuf {
    store
        .join("sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// Removes the built image and every checkpoint of `keys` from the engine.
fn remove_build(id: &str, keys: &[String]) {
    for key in keys {
        let _ = docker(&["rmi", "-f", &format!("pipeline-cache:{key}")]);
    }
    let _ = docker(&["rmi", "-f", id]);
}

/// The blobs of the image `made`: the base's layers, and the build's (manifest, config, its
/// layers).
fn blobs_of(made: &Made) -> (Vec<String>, Vec<String>) {
    let layers: Vec<String> = made.manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let base_layers = image_inspect("busybox:latest")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    let (base, built) = layers.split_at(base_layers);
    assert!(!built.is_empty(), "{layers:?}");
    let config = made.manifest["config"]["digest"].as_str().unwrap();
    let build = [made.digest.as_str(), config]
        .into_iter()
        .chain(built.iter().map(String::as_str))
        .map(str::to_string)
        .collect();
    (base.to_vec(), build)
}

#[test]
fn gc_removes_the_blobs_of_a_build_no_engine_holds_and_the_next_apply_writes_them_again() {
    require_image("busybox:latest");
    let reg = Registry::start();
    let p = Project::new();
    let name = unique("storegc");
    let repository = format!("{}/storegc/{name}", reg.addr);
    p.pipeline(&busybox_pipeline(
        &name,
        &format!(
            "[[step]]\nrun = \"echo {name} > /content\"\n\n\
             [[publish]]\nrepository = \"{repository}\"\ntags = [\"1\"]\n"
        ),
    ));
    let keys = plan_keys(&p, &[]);
    let (first, made) = apply(&p, "r1.json");
    let id = first["image"]["id"].as_str().unwrap().to_string();
    let pushed = first["pushes"][0]["digest"].clone();
    assert_eq!(pushed, Value::from(made.digest.clone()), "{first:#}");
    let (base, build_blobs) = blobs_of(&made);

    // No blob goes, even aged, while the engine holds the build (the pushes' hints do).
    age_all(&made.blobs);
    let text = gc(&p, &["--dry-run"]);
    assert!(!text.contains("would remove blob"), "{text}");

    remove_build(&id, &keys);
    // An engine given that does not answer may hold the build: nothing of it goes.
    let missing = format!("unix://{}", p.path().join("no-engine.sock").display());
    let engine = engine_address();
    let text = gc(
        &p,
        &["--dry-run", "--engine", &engine, "--engine", &missing],
    );
    assert!(text.contains("an engine is left out"), "{text}");
    assert!(!text.contains("would remove blob"), "{text}");
    let text = gc(&p, &["--dry-run"]);
    for digest in &build_blobs {
        assert!(
            text.contains(&format!("would remove blob {digest} (")),
            "{digest}: {text}"
        );
        assert!(
            blob(&made.blobs, digest).exists(),
            "a dry run removes nothing"
        );
    }
    let summary = format!("from the blob store {}", made.blobs.display());
    assert!(
        text.contains(&format!("would remove {} blobs", build_blobs.len())),
        "{text}"
    );
    assert!(text.contains(&summary), "{text}");

    let text = gc(&p, &[]);
    assert!(
        text.contains(&format!("removed {} blobs", build_blobs.len())),
        "{text}"
    );
    assert!(text.contains(&summary), "{text}");
    for digest in &build_blobs {
        assert!(
            !blob(&made.blobs, digest).exists(),
            "{digest} is still there"
        );
    }
    for digest in &base {
        assert!(
            blob(&made.blobs, digest).exists(),
            "the base's {digest} went"
        );
    }
    let text = gc(&p, &["--dry-run"]);
    assert!(
        !text.contains("from the blob store"),
        "a second gc finds nothing: {text}"
    );

    // The store forgot the build: the next apply compresses it again, into the same image.
    let (second, again) = apply(&p, "r2.json");
    assert_eq!(again.digest, made.digest);
    assert_eq!(second["pushes"][0]["digest"], pushed, "{second:#}");
    for digest in &build_blobs {
        assert!(
            blob(&made.blobs, digest).exists(),
            "{digest} was not written again"
        );
    }
    let text = gc(&p, &[]);
    assert!(
        !text.contains("from the blob store"),
        "what is new stays: {text}"
    );
    remove_build(second["image"]["id"].as_str().unwrap(), &keys);
}
