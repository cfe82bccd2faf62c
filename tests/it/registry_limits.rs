//! Registries that send too much: a 512 MiB image config, a 512 MiB manifest, tag pages
//! without end. Each read stops at its limit with an error that names the registry and what
//! was too big, and the tool's memory stays near its usual level.

use crate::harness::{measured, unique, Project, CACHE_VERIFY_KEY};
use crate::support::engine::require_image;
use crate::support::hostile_registry::{HostileRegistry, HUGE};

/// Largest resident set a run may reach here (a plan usually stays far below).
const RSS_LIMIT_KIB: u64 = 128 << 10;

#[test]
fn a_registry_that_sends_too_much_is_refused_in_bounded_memory() {
    require_image("busybox:latest");
    let hostile = HostileRegistry::start();
    let addr = &hostile.addr;
    let project = Project::new();
    let u = unique("limits");
    let pipeline = |cache: &str| {
        format!(
            // A step of its own: nothing in the engine's cache serves it.
            "name = \"{u}\"\n[base]\nimage = \"busybox:latest\"\n[[step]]\nrun = \"echo {u}\"\n\
             [cache]\nremote = \"{addr}/{cache}\"\nverify_key = \"{CACHE_VERIFY_KEY}\"\n"
        )
    };
    project.file("config.toml", pipeline("bigconfig"));
    project.file("manifest.toml", pipeline("bigmanifest"));
    // A base the engine lacks: plan asks its registry whether it has it.
    project.file(
        "base.toml",
        format!("[base]\nimage = \"{addr}/nodigest:1\"\n[[step]]\nrun = \"true\"\n"),
    );
    let endless = format!("{addr}/endless");
    let config_url = format!(
        "http://{addr}/v2/bigconfig/blobs/sha256:{}1",
        "0".repeat(63)
    );
    let manifest_url = format!("http://{addr}/v2/bigmanifest/manifests/");
    let cases: [(&str, Vec<&str>, Vec<String>); 4] = [
        (
            "a signed entry whose image config is 512 MiB",
            vec!["plan", "config.toml"],
            vec![format!(
                "the image config at {config_url} is larger than the limit of 8 MiB: refused"
            )],
        ),
        (
            "a 512 MiB manifest",
            vec!["plan", "manifest.toml"],
            vec![
                format!("the manifest at {manifest_url}"),
                ".sig is larger than the limit of 4 MiB: refused".into(),
            ],
        ),
        (
            "a 512 MiB manifest whose HEAD names no digest",
            vec!["plan", "base.toml"],
            vec![format!("base     {addr}/nodigest:1: will pull")],
        ),
        (
            "tag pages without end",
            vec!["gc", "--remote", &endless],
            vec![format!(
                "`{endless}` lists more than 100000 tags (100 pages): refused"
            )],
        ),
    ];
    for (what, args, expected) in &cases {
        let started = std::time::Instant::now();
        let (text, rss) = measured(&project, args);
        eprintln!(
            "{what}: peak RSS {} MiB in {:?}",
            rss >> 10,
            started.elapsed()
        );
        for e in expected {
            assert!(text.contains(e.as_str()), "{what}: `{e}` in\n{text}");
        }
        assert!(!text.contains("panicked"), "{what}: {text}");
        assert!(rss < RSS_LIMIT_KIB, "{what}: {rss} KiB\n{text}");
    }
    assert!(
        hostile.sent() < HUGE,
        "the huge bodies were not read whole: {} bytes sent",
        hostile.sent()
    );
}
