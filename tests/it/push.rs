//! The tool's own pusher against real registries: the image it writes (here: the engine's
//! image read from its export into the blob store) reaches a plain and an htpasswd registry,
//! pulls back with docker and runs; a second repository of the same registry mounts the
//! blobs instead of uploading them again; a failed push leaves no tag.

use std::path::Path;

use serde_json::Value;

use crate::harness::{busybox_pipeline, output_text, read_report, unique, Project};
use crate::support::engine::{docker, docker_ok, remove_image, require_engine};
use crate::support::proxy::{FaultMode, FaultProxy};
use crate::support::registry::{base64, Registry};

/// A busybox pipeline whose image prints `name`, published to `targets` (`[[publish]]`
/// tables, written out).
fn pipeline(name: &str, targets: &str) -> String {
    busybox_pipeline(
        name,
        &format!(
            "[[step]]\nname = \"content\"\nrun = \"echo {name} > /content\"\n\n\
             [commit]\nconfig = {{ cmd = [\"cat\", \"/content\"] }}\n\n{targets}"
        ),
    )
}

fn target(repository: &str, login: Option<&str>) -> String {
    let mut t = format!("[[publish]]\nrepository = \"{repository}\"\ntags = [\"1\", \"latest\"]\n");
    if let Some(user) = login {
        t += &format!("username = \"{user}\"\npassword_env = \"PUSH_TEST_PASSWORD\"\n");
    }
    t + "\n"
}

fn apply(p: &Project, password: &str) -> (std::process::Output, String, Value) {
    let out = p
        .std_cmd(&["apply", "pipeline.toml", "--report", "r.json"])
        .env("PUSH_TEST_PASSWORD", password)
        .output()
        .unwrap();
    let text = output_text(&out);
    let report = read_report(&p.path().join("r.json"));
    (out, text, report)
}

/// A docker config (for the CLI only, in the test's folder) that logs in to `reg`.
fn docker_config(dir: &Path, reg: &Registry) -> String {
    let config = dir.join("cli-config");
    std::fs::create_dir_all(&config).unwrap();
    if let Some((user, password)) = &reg.credentials {
        let auth = base64(format!("{user}:{password}").as_bytes());
        std::fs::write(
            config.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
        )
        .unwrap();
    }
    config.display().to_string()
}

/// Pulls `reference` with the docker CLI (with `config`) and runs it; what it prints.
fn pull_and_run(config: &str, reference: &str) -> String {
    let pulled = docker(&["--config", config, "pull", "-q", reference]);
    assert!(
        pulled.status.success(),
        "pull {reference}: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let out = docker_ok(&["run", "--rm", reference]);
    remove_image(reference);
    out.trim().to_string()
}

/// The manifest `repository:tag` holds, as the registry serves it.
fn manifest(reg: &Registry, repository: &str, tag: &str) -> (Value, Vec<u8>) {
    let mut headers: Vec<(&str, &str)> = vec![(
        "Accept",
        "application/vnd.docker.distribution.manifest.v2+json",
    )];
    let auth;
    if let Some((user, password)) = &reg.credentials {
        auth = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        headers.push(("Authorization", &auth));
    }
    let resp = reg.get(&format!("/v2/{repository}/manifests/{tag}"), &headers);
    assert_eq!(resp.status, 200, "{repository}:{tag}: {}", resp.text());
    (serde_json::from_slice(&resp.body).unwrap(), resp.body)
}

#[test]
fn the_tools_image_reaches_plain_and_htpasswd_registries_and_pulls_back_and_runs() {
    require_engine();
    let cases: [(&str, Registry); 2] = [
        ("plain", Registry::start()),
        ("htpasswd", Registry::start_with_auth("pusher", "s3cret-pw")),
    ];
    for (label, reg) in &cases {
        let name = unique(&format!("push-{label}"));
        let p = Project::new();
        let repository = format!("{}/team/{name}", reg.addr);
        let login = reg.credentials.as_ref().map(|(u, _)| u.as_str());
        p.pipeline(&pipeline(&name, &target(&repository, login)));
        let password = reg.credentials.as_ref().map_or("", |(_, pw)| pw.as_str());
        let (out, text, report) = apply(&p, password);
        assert!(out.status.success(), "{label}: {text}");
        // The manifest in the registry is the one the tool wrote into its store: the same
        // bytes, its digest the one reported, its blobs there.
        let (m, bytes) = manifest(reg, &format!("team/{name}"), "1");
        let digest = format!("sha256:{}", hex_sha256(&bytes));
        let store = p.user_cache().join("pipeline/blobs/sha256");
        assert!(
            store.join(&digest["sha256:".len()..]).is_file(),
            "{label}: the pushed manifest is the store's"
        );
        for push in report["pushes"].as_array().unwrap() {
            assert_eq!(push["status"], "pushed", "{label}: {report:#}");
            assert_eq!(push["digest"], digest.as_str(), "{label}: {report:#}");
        }
        assert!(
            text.contains(&format!("pushed {repository}:1@{digest}")),
            "{label}: {text}"
        );
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert!(!text.contains(password) || password.is_empty());
        let config = docker_config(p.path(), reg);
        assert_eq!(pull_and_run(&config, &format!("{repository}:1")), name);
        // Unchanged: the registry holds the manifest; nothing is pushed again.
        let (out, text, report) = apply(&p, password);
        assert!(out.status.success(), "{label}: {text}");
        assert!(
            report["pushes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["status"] == "up_to_date" && x["digest"] == digest.as_str()),
            "{label}: {report:#}"
        );
        remove_image(&format!("{repository}:1"));
        remove_image(&format!("{repository}:latest"));
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn a_second_repository_of_the_same_registry_mounts_the_blobs_instead_of_uploading_them() {
    require_engine();
    let reg = Registry::start();
    // Both pushes go through a proxy that counts what the tool sends.
    let proxy = FaultProxy::start(&reg.addr, FaultMode::PassThrough);
    let name = unique("push-mount");
    let p = Project::new();
    p.pipeline(&pipeline(
        &name,
        &target(&format!("{}/a/{name}", proxy.addr), None),
    ));
    let (out, text, _) = apply(&p, "");
    assert!(out.status.success(), "{text}");
    let first = proxy.bytes_upstream();
    let layers: u64 = manifest(&reg, &format!("a/{name}"), "1").0["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert!(layers > 500_000, "busybox's layer is about 1 MB: {layers}");
    assert!(first > layers, "the first push uploads the layers: {first}");
    p.pipeline(&pipeline(
        &name,
        &target(&format!("{}/b/{name}", proxy.addr), None),
    ));
    let (out, text, _) = apply(&p, "");
    assert!(out.status.success(), "{text}");
    let second = proxy.bytes_upstream() - first;
    assert!(
        second < layers / 4,
        "the layers were uploaded again ({second} bytes sent, layers {layers})"
    );
    let config = docker_config(p.path(), &reg);
    assert_eq!(
        pull_and_run(&config, &format!("{}/b/{name}:1", reg.addr)),
        name
    );
    for r in ["a", "b"] {
        remove_image(&format!("{}/{r}/{name}:1", proxy.addr));
        remove_image(&format!("{}/{r}/{name}:latest", proxy.addr));
    }
}

#[test]
fn a_push_that_fails_names_the_registry_and_blob_and_leaves_no_tag() {
    require_engine();
    let reg = Registry::start();
    // Every upload is cut after 64 kB: the layer never arrives, so no manifest may.
    let proxy = FaultProxy::start(&reg.addr, FaultMode::ResetAfterBytes(64 * 1024));
    let name = unique("push-cut");
    let p = Project::new();
    let repository = format!("{}/cut/{name}", proxy.addr);
    p.pipeline(&pipeline(&name, &target(&repository, None)));
    let out = p
        .std_cmd(&[
            "apply",
            "pipeline.toml",
            "--attempts",
            "2",
            "--retry-delay",
            "50ms",
        ])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains(&format!("registry `{}`", proxy.addr)) && text.contains("blob `sha256:"),
        "{text}"
    );
    assert!(
        reg.tags(&format!("cut/{name}")).is_empty(),
        "a tag was left"
    );
    remove_image(&format!("{repository}:1"));
    remove_image(&format!("{repository}:latest"));
}
