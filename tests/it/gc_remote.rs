//! `gc --remote`: the tags of a remote step cache that the newest apply of their pipeline no
//! longer uses are deleted from the registry (when it allows deletion), and nothing else.

use crate::cache::plan_keys;
use crate::fanout::run;
use crate::harness::{output_text, unique, Project};
use crate::remote::pipeline;
use crate::support::daemons::Daemon;
use crate::support::engine::{docker, require_image};
use crate::support::registry::Registry;

/// Two applies of a pipeline cached in `REG/cache/NAME`, the second with its last step
/// edited; returns the keys of each.
fn two_applies(reg: &Registry, project: &Project, u: &str) -> (Vec<String>, Vec<String>) {
    require_image("busybox:latest");
    reg.push_local("busybox:latest", "busybox:latest");
    let cache = format!("{}/cache/{u}", reg.addr);
    project.pipeline(&pipeline(u, &reg.addr, &cache, "one"));
    let first = plan_keys(project, &[]);
    let out = run(project, &["apply", "pipeline.toml"]);
    assert!(out.status.success(), "{}", output_text(&out));
    project.pipeline(&pipeline(u, &reg.addr, &cache, "two"));
    let second = plan_keys(project, &[]);
    let out = run(project, &["apply", "pipeline.toml"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(first[0], second[0], "the slow step is shared");
    (first, second)
}

/// A registry after [`two_applies`] of a pipeline cached in its `cache/NAME`.
struct Applied {
    reg: Registry,
    project: Project,
    u: String,
    first: Vec<String>,
    second: Vec<String>,
    /// `cache/NAME`, and with the registry's address.
    repository: String,
    cache: String,
}

fn applied(reg: Registry, prefix: &str) -> Applied {
    let u = unique(prefix);
    let project = Project::new();
    let (first, second) = two_applies(&reg, &project, &u);
    let repository = format!("cache/{u}");
    let cache = format!("{}/{repository}", reg.addr);
    Applied {
        reg,
        project,
        u,
        first,
        second,
        repository,
        cache,
    }
}

fn cleanup(reg: &Registry, u: &str) {
    let _ = docker(&["rmi", &format!("{}/{u}:1", reg.addr)]);
}

#[test]
fn gc_remote_deletes_what_the_newest_apply_no_longer_uses_and_nothing_else() {
    let a = applied(Registry::start(), "gcr");
    // A tag no index knows, and one that shares the old final image's manifest.
    a.reg
        .push_local("busybox:latest", &format!("{}:stranger", a.repository));
    a.reg.copy_tag(&a.repository, &a.first[2], "pinned");
    let before = a.reg.tags(&a.repository);

    let out = run(&a.project, &["gc", "--remote", &a.cache, "--dry-run"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("would delete {}:{}", a.cache, a.first[1])),
        "{text}"
    );
    assert!(
        text.contains(&format!("kept {}:{}", a.cache, a.first[2])),
        "shares `pinned`: {text}"
    );
    assert!(
        text.contains("left 2 tags that no pipeline's index lists"),
        "{text}"
    );
    assert_eq!(
        a.reg.tags(&a.repository),
        before,
        "a dry run deletes nothing"
    );

    let out = run(&a.project, &["gc", "--remote", &a.cache]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let after = a.reg.tags(&a.repository);
    assert!(!after.contains(&a.first[1]), "{after:?}\n{text}");
    assert!(
        !after.contains(&format!("{}.sig", a.first[1])),
        "its signature went with it: {after:?}\n{text}"
    );
    for kept in a.second.iter().chain([&a.first[2]]) {
        assert!(after.contains(kept), "{kept} kept: {after:?}\n{text}");
    }
    for other in ["stranger", "pinned"] {
        assert!(after.contains(&other.to_string()), "{after:?}");
    }
    assert_eq!(after.len(), before.len() - 2, "{before:?} -> {after:?}");
    // The index forgot it: a second collection has nothing more to delete.
    let out = run(&a.project, &["gc", "--remote", &a.cache]);
    assert!(
        !output_text(&out).contains("deleted"),
        "{}",
        output_text(&out)
    );

    // What is left still serves a fresh runner: everything cached, nothing built.
    let runner = Daemon::start();
    let out = run(
        &a.project,
        &["plan", "--engine", &runner.engine_arg, "pipeline.toml"],
    );
    let text = output_text(&out);
    assert!(text.contains("no changes"), "{text}");
    cleanup(&a.reg, &a.u);
}

#[test]
fn gc_remote_says_clearly_when_the_registry_does_not_allow_deletion() {
    let a = applied(Registry::start_without_delete(), "gcrno");
    let out = run(&a.project, &["gc", "--remote", &a.cache]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("does not allow deletion")
            && text.contains("REGISTRY_STORAGE_DELETE_ENABLED"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(a.reg.tags(&a.repository).contains(&a.first[1]));
    cleanup(&a.reg, &a.u);
}

/// A manifest list of `children` (digest, size) for linux/amd64 and linux/arm64.
fn index_of(children: &[(String, u64)]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = children
        .iter()
        .zip(["amd64", "arm64"])
        .map(|((digest, size), arch)| {
            serde_json::json!({
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": manifests,
    }))
    .unwrap()
}

/// What users published into the cache repository is never deleted: a tag of theirs that
/// points at an entry gc would delete (`last-good`, which starts like the tool's index tags),
/// and the platform manifests a published index lists.
#[test]
fn gc_remote_never_deletes_what_a_user_tag_or_index_refers_to() {
    let a = applied(Registry::start(), "gcrusr");
    // The a.first apply's last checkpoint and final image both go, unless something refers to them.
    a.reg.copy_tag(&a.repository, &a.first[1], "last-good");
    let size = |tag: &str| {
        let r = a.reg.get(
            &format!("/v2/{}/manifests/{tag}", a.repository),
            &[(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )],
        );
        r.body.len() as u64
    };
    let digest = |tag: &str| a.reg.manifest_digest(&a.repository, tag).unwrap();
    let final_image = (digest(&a.first[2]), size(&a.first[2]));
    // A published two-platform image whose amd64 manifest is the old final image.
    let other = (digest(&a.second[2]), size(&a.second[2]));
    a.reg.put_manifest(
        &a.repository,
        "release",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &index_of(&[final_image, other]),
    );
    let out = run(&a.project, &["gc", "--remote", &a.cache]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "kept {}:{}: its manifest is also `last-good`",
            a.cache, a.first[1]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "kept {}:{}: the index `release` lists its manifest",
            a.cache, a.first[2]
        )),
        "{text}"
    );
    // Both still pull.
    for reference in ["last-good", "release"] {
        let image = format!("{}:{reference}", a.cache);
        let pulled = docker(&["pull", &image]);
        assert!(
            pulled.status.success(),
            "{image}: {}",
            String::from_utf8_lossy(&pulled.stderr)
        );
        let _ = docker(&["rmi", &image]);
    }
    cleanup(&a.reg, &a.u);
}
