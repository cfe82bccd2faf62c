//! The tool's own pusher against real registries: the image it writes (here: the engine's
//! image read from its export into the blob store) reaches a plain and an htpasswd registry,
//! pulls back with docker and runs; a second repository of the same registry mounts the
//! blobs instead of uploading them again, on a registry with a token service too (with a token
//! that also reads the first repository); a failed push leaves no tag.

use std::path::Path;

use serde_json::Value;

use crate::harness::{busybox_pipeline, output_text, read_report, unique, Project};
use crate::support::engine::{docker, docker_ok, remove_image, require_engine};
use crate::support::proxy::{FaultMode, FaultProxy};
use crate::support::registry::{base64, Registry};
use crate::support::token_server::{Grant, TokenServer};

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

/// A docker config (for the CLI only, in the test's folder) that logs in to `reg` as
/// `login` (user, password), when given.
fn docker_config(dir: &Path, reg: &Registry, login: Option<(&str, &str)>) -> String {
    let config = dir.join("cli-config");
    std::fs::create_dir_all(&config).unwrap();
    if let Some((user, password)) = login {
        let auth = base64(format!("{user}:{password}").as_bytes());
        std::fs::write(
            config.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
        )
        .unwrap();
    }
    config.display().to_string()
}

/// The login of a registry started with htpasswd credentials.
fn htpasswd_login(reg: &Registry) -> Option<(&str, &str)> {
    reg.credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()))
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
        let config = docker_config(p.path(), reg, htpasswd_login(reg));
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
    let config = docker_config(p.path(), &reg, None);
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

/// The blob requests the registry's log says it answered for `repository`: mounts it made
/// (`POST ?mount=` answered 201) and uploads it took (`PUT` of an upload).
fn mounts_and_uploads(reg: &Registry, repository: &str) -> (usize, usize) {
    let log = reg.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("response completed"))
        .filter(|l| l.contains(&format!("/v2/{repository}/blobs/uploads/")))
        .collect();
    let mounts = lines
        .iter()
        .filter(|l| {
            l.contains("http.request.method=POST")
                && l.contains("mount=sha256")
                && l.contains("http.response.status=201")
        })
        .count();
    let uploads = lines
        .iter()
        .filter(|l| l.contains("http.request.method=PUT") && l.contains("http.response.status=201"))
        .count();
    (mounts, uploads)
}

#[test]
fn on_a_token_registry_a_second_repository_mounts_with_a_token_that_also_reads_the_first() {
    require_engine();
    let (user, password) = ("pusher", "t0ken-pw");
    // What the token service grants when asked for the target and the source at once, and
    // whether the second push then mounts (else it uploads, and still succeeds).
    let cases = [
        (Grant::Asked, true),
        (Grant::PushOnly, false),
        (Grant::RefuseSeveral, false),
    ];
    for (grant, mounts) in cases {
        let tokens = TokenServer::start(user, password, Grant::Asked);
        let reg = Registry::start_with_tokens(&tokens);
        let name = unique("push-token");
        let p = Project::new();
        let (first, second) = (format!("a/{name}"), format!("b/{name}"));
        let publish = |repository: &str| {
            pipeline(
                &name,
                &target(&format!("{}/{repository}", reg.addr), Some(user)),
            )
        };
        p.pipeline(&publish(&first));
        let (out, text, _) = apply(&p, password);
        assert!(out.status.success(), "{grant:?}: {text}\n{}", reg.log());
        let (mounted, uploaded) = mounts_and_uploads(&reg, &first);
        assert!(
            mounted == 0 && uploaded >= 2,
            "{grant:?}: {mounted} {uploaded}"
        );

        tokens.set_grant(grant);
        let before = tokens.asked().len();
        p.pipeline(&publish(&second));
        let (out, text, report) = apply(&p, password);
        assert!(out.status.success(), "{grant:?}: {text}\n{}", reg.log());
        assert!(
            report["pushes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["status"] == "pushed"),
            "{grant:?}: {report:#}"
        );
        // One request named both repositories, with the pusher's credentials.
        let both = [
            format!("repository:{second}:pull,push"),
            format!("repository:{first}:pull"),
        ];
        let asked = tokens.asked();
        assert!(
            asked[before..]
                .iter()
                .any(|a| a.authenticated && a.scopes == both),
            "{grant:?}: {asked:#?}"
        );
        let (mounted, uploaded) = mounts_and_uploads(&reg, &second);
        if mounts {
            // Every blob (layers and config) mounted; not one uploaded.
            assert!(
                mounted >= 2 && uploaded == 0,
                "{grant:?}: {mounted} {uploaded}"
            );
        } else {
            assert!(
                mounted == 0 && uploaded >= 2,
                "{grant:?}: {mounted} {uploaded}"
            );
        }
        // The image is whole: it pulls (with a token to read it) and runs.
        tokens.set_grant(Grant::Asked);
        let config = docker_config(p.path(), &reg, Some((user, password)));
        let reference = format!("{}/{second}:1", reg.addr);
        assert_eq!(pull_and_run(&config, &reference), name, "{grant:?}");
        for r in [&first, &second] {
            remove_image(&format!("{}/{r}:1", reg.addr));
            remove_image(&format!("{}/{r}:latest", reg.addr));
        }
    }
}

#[test]
fn a_token_service_that_refuses_the_password_fails_the_push_naming_the_registry() {
    require_engine();
    let tokens = TokenServer::start("pusher", "the-right-pw", Grant::Asked);
    let reg = Registry::start_with_tokens(&tokens);
    let name = unique("push-token-refused");
    let p = Project::new();
    let repository = format!("{}/c/{name}", reg.addr);
    p.pipeline(&pipeline(&name, &target(&repository, Some("pusher"))));
    let wrong = unique("wrong-pw");
    let (out, text, _) = apply(&p, &wrong);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("refused the credentials") && text.contains(&reg.addr),
        "{text}"
    );
    assert!(!text.contains(&wrong), "the password was printed: {text}");
    assert!(
        tokens.asked().iter().any(|a| !a.authenticated),
        "the token service was not asked"
    );
    assert_eq!(mounts_and_uploads(&reg, &format!("c/{name}")), (0, 0));
    remove_image(&format!("{repository}:1"));
    remove_image(&format!("{repository}:latest"));
}
