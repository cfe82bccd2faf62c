//! The image the tool writes during `apply` (layers, config, manifest in its store): the
//! config Docker's commit stores, the base's layers kept, the steps named in its history, a
//! cached apply giving the same image, and in reproducible mode one digest on engines that
//! share nothing (two fresh dockerds and Podman).

use std::path::Path;

use serde_json::Value;
use sha2::Digest as _;

use crate::harness::{copy_dir, output_text, read_report, unique, Project};
use crate::support::daemons::Daemon;
use crate::support::engine::{docker, image_inspect, require_image};
use crate::support::image::{assert_same_config, layer_entries, Made};
use crate::support::podman::Podman;

/// The reproducible images' epoch in these tests.
const EPOCH: &str = "1700000000";

/// The busybox example (steps, a folder copy) with a file copy added, local tag `tag`, and
/// nothing to publish.
fn busybox_example(project: &Project, tag: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/busybox");
    copy_dir(&dir, project.path());
    let text = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
    let (text, _publish) = text.split_once("[[publish]]").unwrap();
    let text = text
        .replace("example/busybox-web:latest", tag)
        .replace(
            "[commit]\n",
            "[[step]]\ncopy = { src = \"files/app.conf\", dest = \"/etc/app.conf\", mode = \"0600\" }\n\n[commit]\n",
        );
    assert!(text.contains("/etc/app.conf") && text.contains(tag));
    project.pipeline(&text);
}

/// Runs `apply pipeline.toml --report REPORT ARGS` with `SOURCE_DATE_EPOCH` set, through
/// `cmd`; returns the report and the image the tool wrote.
fn apply(project: &Project, mut cmd: assert_cmd::Command, report: &str) -> (Value, Made) {
    let out = cmd.env("SOURCE_DATE_EPOCH", EPOCH).output().unwrap();
    assert!(out.status.success(), "apply failed:\n{}", output_text(&out));
    let report = read_report(&project.path().join(report));
    let made = Made::of_report(&project.user_cache(), &report);
    (report, made)
}

#[test]
// One scenario told in order: each apply reads the store the one before left.
#[allow(clippy::too_many_lines)]
fn the_image_the_tool_writes_has_the_engines_config_the_base_layers_and_named_steps() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("made");
    let tag = format!("{name}:1");
    busybox_example(&project, &tag);
    let greeting = format!("--var=greeting={name}");
    let args = |report: &'static str, more: &[&'static str]| {
        let mut a = vec!["apply", "pipeline.toml", "--report", report, &greeting];
        a.extend_from_slice(more);
        project.cmd(&a)
    };
    let (report, made) = apply(&project, args("r1.json", &["--no-cache"]), "r1.json");
    let engine_image = image_inspect(report["image"]["id"].as_str().unwrap());
    assert_same_config(&made, &engine_image["Config"]);
    assert_eq!(
        made.manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        made.config["author"],
        "Pipeline Example <example@example.com>"
    );
    assert_eq!(made.config["created"], "2023-11-14T22:13:20Z", "the epoch");
    assert_eq!(made.config["architecture"], engine_image["Architecture"]);
    assert_eq!(made.config["os"], "linux");
    let base = image_inspect("busybox:latest");
    let base_layers: Vec<String> =
        serde_json::from_value(base["RootFS"]["Layers"].clone()).unwrap();
    let ids = made.diff_ids();
    assert!(ids.len() > base_layers.len(), "{ids:?}");
    assert_eq!(
        ids[..base_layers.len()],
        base_layers[..],
        "base layers kept"
    );
    assert_eq!(made.manifest["layers"].as_array().unwrap().len(), ids.len());
    let history = made.history();
    let ours = &history[history.len() - (ids.len() - base_layers.len())..];
    assert!(
        ours.iter().all(|h| h.starts_with("pipeline: step")),
        "{history:?}"
    );
    assert!(ours.join(" ").contains("make folders"), "{history:?}");
    for h in &made.config["history"].as_array().unwrap()[history.len() - ours.len()..] {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z");
    }

    // The steps' layer holds what they made, clamped, and nothing of the engine's own: the
    // build container's init (`/sbin/docker-init`, and `/sbin` made for it in this base).
    let top = made.top_layer();
    let sha = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
    let file = |path: &str| {
        top.get(path.as_bytes())
            .unwrap_or_else(|| panic!("{path}: {top:?}"))
    };
    assert_eq!(
        file("srv/www/index.html").6,
        sha(&format!("{name} from pipeline\n"))
    );
    let (copied, folder) = (file("etc/app.conf"), file("etc/app/app.conf"));
    assert_eq!(
        (copied.1 & 0o7777, copied.2, &copied.6),
        (0o600, 0, &folder.6)
    );
    assert!(top.values().all(|e| e.5 <= 1_700_000_000), "{top:?}");
    assert!(!top.keys().any(|p| p.starts_with(b"sbin")), "{top:?}");
    let cleanup = Remove(vec![tag.clone()]);

    // Cached: the layers come from the store's records, the same image.
    let (report, again) = apply(&project, args("r2.json", &[]), "r2.json");
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["cached"] == true),
        "{report:#}"
    );
    assert_eq!(
        again.digest, made.digest,
        "a cached apply writes the same image"
    );

    // Without the records (another machine's cache, an older version): the engine's own
    // layers of the cached image, above the base's.
    std::fs::remove_dir_all(made.blobs.join("records").join("chains")).unwrap();
    let (report, exported) = apply(&project, args("r3.json", &[]), "r3.json");
    let engine_image = image_inspect(report["image"]["id"].as_str().unwrap());
    let engine_ids: Vec<String> =
        serde_json::from_value(engine_image["RootFS"]["Layers"].clone()).unwrap();
    assert_eq!(exported.diff_ids(), engine_ids);
    assert_same_config(&exported, &engine_image["Config"]);

    // `pipeline diff` explains the difference: the engine's layer has other times.
    let diff = |x: &str, y: &str| {
        let out = project.cmd(&["diff", x, y]).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        diff("r1.json", "r2.json"),
        format!("the same image: {}\n", made.digest)
    );
    let text = diff("r1.json", &exported.digest);
    assert!(text.contains("config `rootfs.diff_ids["), "{text}");
    assert!(
        text.contains("`srv/www/index.html`: mtime 1700000000 | "),
        "{text}"
    );
    drop(cleanup);
}

/// Removes local images however the test ends.
struct Remove(Vec<String>);

impl Drop for Remove {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = docker(&["rmi", "-f", image]);
        }
    }
}

#[test]
fn a_reproducible_image_has_one_digest_on_two_fresh_dockerds_and_on_podman() {
    require_image("busybox:latest");
    let d1 = Daemon::start();
    let d2 = Daemon::start();
    let podman = Podman::start();
    d1.load_image("busybox:latest");
    d2.load_image("busybox:latest");
    podman.load_image("busybox:latest");
    let mut made = Vec::new();
    for (engine, host) in [
        ("dockerd 1", d1.host.as_str()),
        ("dockerd 2", d2.host.as_str()),
        ("podman", podman.host.as_str()),
    ] {
        let project = Project::new();
        busybox_example(&project, "example/busybox-web:latest");
        let cmd = project.cmd_on(
            host,
            &[
                "apply",
                "pipeline.toml",
                "--no-cache",
                "--report",
                "report.json",
            ],
        );
        let (_, image) = apply(&project, cmd, "report.json");
        made.push((engine, image, project));
    }
    let (first, reference, _) = &made[0];
    let mut problems = Vec::new();
    for (engine, image, _) in &made[1..] {
        if image.digest != reference.digest {
            problems.push(format!(
                "{first} and {engine} wrote different images:\nconfigs:\n{}\n{}\nlayer entries that differ:\n{}",
                reference.config,
                image.config,
                layer_entries(reference, image).join("\n")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
