//! Building for several platforms: linux/amd64 natively and linux/arm64 by emulation (qemu
//! through binfmt_misc, set up by `scripts/setup.sh`), from the multi-platform base
//! `127.0.0.1:5000/busybox-multi:latest`, published as one index per tag.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{output_text, read_json, spawn, unique, wait_exit, wait_for_line, Project};
use crate::support::engine::{containers_named, docker, docker_ok, remove_image};
use crate::support::proxy::{FaultMode, FaultProxy};
use crate::support::registry::Registry;

/// The multi-platform base that `scripts/setup.sh` pushes (an index of amd64 and arm64).
const MULTI_BASE: &str = "127.0.0.1:5000/busybox-multi";

const INDEX_TYPES: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
                           application/vnd.oci.image.index.v1+json";

/// Fails loudly when the multi-platform base or arm64 emulation is missing.
fn require_multi_base() {
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-H",
            &format!("Accept: {INDEX_TYPES}"),
            "http://127.0.0.1:5000/v2/busybox-multi/manifests/latest",
        ])
        .output()
        .expect("run curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains("\"arm64\"") && body.contains("\"amd64\""),
        "{MULTI_BASE}:latest is not an index of amd64 and arm64: run `bash scripts/setup.sh` ({body})"
    );
}

/// A pipeline for `platforms` whose one step records the architecture it ran on.
fn pipeline(name: &str, base: &str, platforms: &str, reg: &str) -> String {
    format!(
        r#"name = "{name}"
platforms = {platforms}

[base]
image = "{base}"

[[step]]
name = "arch"
run = "echo {{{{ platform.arch }}}} $(uname -m) > /arch"

[commit]
config = {{ cmd = ["cat", "/arch"] }}

[[publish]]
repository = "{reg}/{name}"
tags = ["1", "latest"]
"#
    )
}

/// A registry of the test's own and a project whose `pipeline.toml` (named after `prefix`,
/// unique) builds for linux/amd64 and linux/arm64 on the base `busybox-multi:TAG` and
/// publishes there.
fn two_platforms(prefix: &str, tag: &str) -> (Registry, String, Project) {
    require_multi_base();
    let reg = Registry::start();
    let name = unique(prefix);
    let project = Project::new();
    project.pipeline(&pipeline(
        &name,
        &format!("{MULTI_BASE}:{tag}"),
        r#"["linux/amd64", "linux/arm64"]"#,
        &reg.addr,
    ));
    (reg, name, project)
}

/// The manifest `repository:tag` holds: an index, or a plain image manifest.
fn manifest(reg: &Registry, repository: &str, tag: &str) -> Value {
    let accept = format!("{INDEX_TYPES}, application/vnd.docker.distribution.manifest.v2+json");
    let resp = reg.get(
        &format!("/v2/{repository}/manifests/{tag}"),
        &[("Accept", &accept)],
    );
    assert_eq!(resp.status, 200, "{repository}:{tag}: {}", resp.text());
    serde_json::from_slice(&resp.body).expect("manifest JSON")
}

/// Pulls `reference` for `platform`; its image config's architecture and what it prints.
fn pulled(reference: &str, platform: &str) -> (String, String) {
    docker_ok(&["pull", "-q", "--platform", platform, reference]);
    let arch = docker_ok(&["image", "inspect", "-f", "{{.Architecture}}", reference]);
    let out = docker(&["run", "--rm", "--platform", platform, reference]);
    remove_image(reference);
    (
        arch.trim().to_string(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn two_platforms_publish_one_index_that_resolves_per_platform_and_cache_per_platform() {
    let (reg, name, project) = two_platforms("plt", "latest");

    let first = project
        .std_cmd(&["apply", "--report", "r.json", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&first);
    assert!(first.status.success(), "{text}");
    assert!(
        text.contains("building linux/arm64 on") && text.contains("by emulation"),
        "arm64 on an amd64 engine is said to be emulated: {text}"
    );
    assert!(!text.contains("building linux/amd64"), "{text}");

    // One index per tag, listing both platforms; `pushed` prints the index digest.
    let idx = manifest(&reg, &name, "1");
    assert_eq!(
        idx["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json",
        "{idx}"
    );
    let mut archs: Vec<&str> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort_unstable();
    assert_eq!(archs, ["amd64", "arm64"], "{idx}");
    let digest = reg.manifest_digest(&name, "1").unwrap();
    assert!(
        text.contains(&format!("pushed {}/{name}:1@{digest}", reg.addr)),
        "{text}"
    );
    assert_eq!(reg.manifest_digest(&name, "latest"), Some(digest.clone()));

    // The report has an entry per platform.
    let report = read_json(&project.path().join("r.json"));
    let text_report = report.to_string();
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            text_report.contains(&format!("{name}@{platform}")),
            "{report:#}"
        );
    }

    let indexes = report["indexes"].as_array().expect("indexes in the report");
    assert_eq!(indexes.len(), 2, "{report:#}");
    assert!(
        indexes.iter().all(|x| x["digest"] == digest.as_str()
            && x["platforms"] == serde_json::json!(["linux/amd64", "linux/arm64"])
            && x["up_to_date"] == false),
        "{report:#}"
    );

    // Unchanged: each platform is served by its own cache entry, the index is up to date.
    let plan = project
        .std_cmd(&["plan", "pipeline.toml"])
        .output()
        .unwrap();
    let plan_text = output_text(&plan);
    assert!(plan.status.success(), "{plan_text}");
    assert_eq!(plan_text.matches("cached").count(), 2, "{plan_text}");
    assert!(
        plan_text.contains(&format!(
            "publish  {}/{name}:1: index of 2 platforms: up to date",
            reg.addr
        )),
        "{plan_text}"
    );
    let again = project
        .std_cmd(&["apply", "pipeline.toml"])
        .output()
        .unwrap();
    let again_text = output_text(&again);
    assert!(again.status.success(), "{again_text}");
    assert!(!again_text.contains("done step"), "{again_text}");
    assert!(
        again_text.contains(&format!("up to date {}/{name}:1@{digest}", reg.addr)),
        "{again_text}"
    );
    assert_eq!(reg.manifest_digest(&name, "1"), Some(digest));
    // Each platform pulled from the one tag is built for its architecture, and its step ran
    // there (the template saw its platform).
    let reference = format!("{}/{name}:1", reg.addr);
    assert_eq!(
        pulled(&reference, "linux/arm64"),
        ("arm64".to_string(), "arm64 aarch64".to_string())
    );
    assert_eq!(
        pulled(&reference, "linux/amd64"),
        ("amd64".to_string(), "amd64 x86_64".to_string())
    );

    assert!(containers_named(&format!("pipeline-{name}")).is_empty());
}

#[test]
fn a_single_platform_base_that_does_not_match_fails_before_anything_runs() {
    let (reg, name, project) = two_platforms("pltx", "amd64");
    let out = project
        .std_cmd(&["apply", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "base image `{MULTI_BASE}:amd64` is a single-platform image for linux/amd64, not linux/arm64"
        )),
        "{text}"
    );
    assert!(!text.contains("step [1/1]"), "nothing ran: {text}");
    assert!(containers_named(&format!("pipeline-{name}")).is_empty());
    assert!(reg.tags(&name).is_empty());
}

#[test]
fn one_platform_from_the_command_line_publishes_a_plain_manifest() {
    require_multi_base();
    let reg = Registry::start();
    let name = unique("plt1");
    let project = Project::new();
    project.pipeline(&pipeline(
        &name,
        &format!("{MULTI_BASE}:latest"),
        r#"["linux/amd64", "linux/arm64"]"#,
        &reg.addr,
    ));
    let out = project
        .std_cmd(&["apply", "--platform", "linux/arm64", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let m = manifest(&reg, &name, "1");
    assert_eq!(
        m["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "one platform: a plain manifest, {m}"
    );
    assert_eq!(
        pulled(&format!("{}/{name}:1", reg.addr), "linux/arm64"),
        ("arm64".to_string(), "arm64 aarch64".to_string())
    );
}

#[test]
fn sigterm_while_publishing_an_index_exits_143_and_the_report_says_what_was_published() {
    require_multi_base();
    let reg = Registry::start();
    // The second target's registry hangs: publishing is still running when the signal comes.
    let hanging = Registry::start();
    let proxy = FaultProxy::start(&hanging.addr, FaultMode::Stall);
    let name = unique("pltsig");
    let project = Project::new();
    project.pipeline(&format!(
        r#"name = "{name}"
platforms = ["linux/amd64", "linux/arm64"]

[base]
image = "{MULTI_BASE}:latest"

[[step]]
run = "echo {{{{ platform.arch }}}} > /arch"

[[publish]]
repository = "{}/{name}"
tags = ["1"]

[[publish]]
repository = "{}/{name}"
tags = ["1"]
"#,
        reg.addr, proxy.addr
    ));
    let (mut child, rx) = project.spawn_apply(&[]);
    let first = format!("pushed {}/{name}:1@", reg.addr);
    wait_for_line(&rx, &first, Duration::from_secs(300));
    // Within the second target's publication (its registry never answers).
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("apply did not exit");
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(143), "{}", rest.join("\n"));
    let report = read_json(&project.path().join("report.json"));
    assert_eq!(report["status"], "interrupted", "{report:#}");
    assert_eq!(report["exit_code"], 143, "{report:#}");
    let builds = report["pipelines"].as_array().expect("pipelines");
    assert!(
        builds.iter().all(|b| b["status"] == "succeeded"),
        "{report:#}"
    );
    assert_eq!(
        report["publishing"][0]["status"], "interrupted",
        "{report:#}"
    );
    assert_eq!(report["publishing"][0]["exit_code"], 143, "{report:#}");
    // What was published: the first target's index, and nothing of the second.
    let indexes = report["indexes"].as_array().expect("indexes");
    let digest = reg.manifest_digest(&name, "1").expect("the first index");
    assert_eq!(indexes.len(), 1, "{report:#}");
    assert_eq!(
        indexes[0]["repository"],
        format!("{}/{name}", reg.addr),
        "{report:#}"
    );
    assert_eq!(indexes[0]["digest"], digest.as_str(), "{report:#}");
    assert!(hanging.tags(&name).is_empty());
    assert!(containers_named(&format!("pipeline-{name}")).is_empty());
}

#[test]
fn a_tag_names_the_old_index_or_the_new_one_even_when_the_apply_is_killed_in_between() {
    require_multi_base();
    let reg = Registry::start();
    let name = unique("pltkill");
    let project = Project::new();
    let write = |content: &str| {
        project.pipeline(&format!(
            r#"name = "{name}"
platforms = ["linux/amd64", "linux/arm64"]

[base]
image = "{MULTI_BASE}:latest"

[[step]]
run = "echo {content} > /content"

[[publish]]
repository = "{}/{name}"
tags = ["1"]
"#,
            reg.addr
        ))
    };
    write("old");
    let first = project
        .std_cmd(&["apply", "pipeline.toml"])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", output_text(&first));
    let old = reg.manifest_digest(&name, "1").expect("the first index");

    // The platforms' images are pushed, the index is not yet written: SIGKILL.
    write("new");
    let mut cmd = project.std_cmd(&["apply", "pipeline.toml"]);
    cmd.env("PIPELINE_TEST_HOLD_INDEX", "60");
    let (mut child, rx) = spawn(cmd);
    let seen = wait_for_line(&rx, "linux/arm64 image", Duration::from_secs(300));
    let seen = seen.join("\n");
    assert!(seen.contains("linux/amd64 image"), "{seen}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        reg.manifest_digest(&name, "1"),
        Some(old.clone()),
        "the tag moved before the index was written"
    );
    // Both platforms' new images are in the registry, by digest only: no tag names them.
    assert_eq!(reg.tags(&name), ["1"]);

    // Applied again, the index is written and the tag moves to it.
    let again = project
        .std_cmd(&["apply", "pipeline.toml"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", output_text(&again));
    let new = reg.manifest_digest(&name, "1").unwrap();
    assert_ne!(new, old);
    let idx = manifest(&reg, &name, "1");
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2, "{idx}");
    assert!(containers_named(&format!("pipeline-{name}")).is_empty());
}

#[test]
fn two_platforms_written_to_an_oci_layout_are_one_index_and_nothing_is_pushed() {
    let (reg, name, project) = two_platforms("pltout", "latest");
    let layout = project.path().join("layout");
    let out = project
        .std_cmd(&[
            "apply",
            "pipeline.toml",
            "--no-push",
            "--report",
            "r.json",
            "--output",
            &format!("oci:{}", layout.display()),
        ])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(reg.tags(&name).is_empty(), "--no-push pushed: {text}");
    let report = read_json(&project.path().join("r.json"));
    let outputs = report["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "{report:#}");
    assert_eq!(outputs[0]["pipeline"], name.as_str(), "{report:#}");
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{}", layout.display())])
        .output()
        .expect("skopeo");
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let mut archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort_unstable();
    assert_eq!(archs, ["amd64", "arm64"], "{index}");
    assert!(containers_named(&format!("pipeline-{name}")).is_empty());
}

/// A scratch image for two platforms takes each platform's files: from a two-platform
/// builder pipeline of the same apply (its build for that platform) and from a multi-platform
/// image reference (its manifest for that platform). Pulled back per platform, each image
/// holds the files of its own architecture, and its copied busybox runs there.
#[test]
fn a_two_platform_scratch_image_copies_each_platform_s_own_files() {
    require_multi_base();
    let reg = Registry::start();
    let builder = unique("pltb");
    let app = unique("plts");
    let project = Project::new();
    project.file(
        "builder.toml",
        format!(
            "name = \"{builder}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             [base]\nimage = \"{MULTI_BASE}:latest\"\n\
             [[step]]\nrun = \"mkdir /out && echo {builder} $(uname -m) > /out/arch\"\n\
             [commit]\ntags = [\"{builder}:t\"]\n"
        ),
    );
    project.file(
        "app.toml",
        format!(
            "name = \"{app}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             [base]\nimage = \"scratch\"\n\
             [[step]]\ncopy = {{ from = \"{builder}\", src = \"/out/arch\", dest = \"/arch\" }}\n\
             [[step]]\ncopy = {{ from = \"{MULTI_BASE}:latest\", src = \"/bin/busybox\", dest = \"/bin/busybox\" }}\n\
             [commit]\nconfig = {{ entrypoint = [\"/bin/busybox\"], cmd = [\"sh\", \"-c\", \"cat /arch; uname -m\"] }}\n\
             [[publish]]\nrepository = \"{}/{app}\"\ntags = [\"1\"]\n",
            reg.addr
        ),
    );
    let out = project
        .std_cmd(&["apply", "app.toml", "builder.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let idx = manifest(&reg, &app, "1");
    assert_eq!(idx["manifests"].as_array().map(Vec::len), Some(2), "{idx}");
    let reference = format!("{}/{app}:1", reg.addr);
    // (platform, architecture of the image config, what the image prints)
    let cases = [
        ("linux/amd64", "amd64", "x86_64"),
        ("linux/arm64", "arm64", "aarch64"),
    ];
    for (platform, arch, machine) in cases {
        assert_eq!(
            pulled(&reference, platform),
            (arch.to_string(), format!("{builder} {machine}\n{machine}")),
            "{platform}"
        );
    }
    assert!(containers_named(&format!("pipeline-{app}")).is_empty());
    for suffix in ["linux-amd64", "linux-arm64"] {
        remove_image(&format!("{builder}:t-{suffix}"));
    }
}

/// What one apply printed on stdout and wrote as its metadata file: the `[NAME] pushed` (or
/// `up-to-date`) lines as (how, `REPO:TAG`, digest), the image ids, and the metadata's
/// `pushed[]`.
struct Published {
    lines: Vec<(String, String, String)>,
    images: Vec<String>,
    metadata: Vec<Value>,
}

/// Applies `pipeline.toml` of `project` (pipeline `name`) with a metadata file and reads what
/// it published. Every stdout line must be one of the documented forms.
fn apply_published(project: &Project, name: &str) -> Published {
    let out = project
        .std_cmd(&["apply", "--metadata-file", "m.json", "pipeline.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut published = Published {
        lines: Vec::new(),
        images: Vec::new(),
        metadata: Vec::new(),
    };
    for line in stdout.lines() {
        let (who, rest) = line
            .strip_prefix('[')
            .and_then(|l| l.split_once("] "))
            .unwrap_or_else(|| panic!("no `[NAME] ` on stdout line {line:?}:\n{stdout}"));
        match rest.split_once(' ') {
            Some(("image", id)) if who.starts_with(&format!("{name}@linux/")) => {
                published.images.push(id.to_string());
            }
            Some((how @ ("pushed" | "up-to-date"), at)) if who == name => {
                let (reference, digest) = at.split_once('@').unwrap();
                published
                    .lines
                    .push((how.into(), reference.into(), digest.into()));
            }
            _ => panic!("stdout line {line:?} is none of the documented forms:\n{stdout}"),
        }
    }
    let metadata = read_json(&project.path().join("m.json"));
    published
        .metadata
        .clone_from(metadata["pushed"].as_array().unwrap());
    published
}

#[test]
fn the_index_lines_on_stdout_and_the_metadata_name_what_the_registry_holds_pushed_or_up_to_date() {
    let (reg, name, project) = two_platforms("pltstdout", "latest");
    // Images of their own (the step names the pipeline), so removing them at the end takes
    // nothing from the other tests, which build the same step.
    let file = project.path().join("pipeline.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("run = \"echo ", &format!("run = \"echo {name} ")),
    )
    .unwrap();
    let first = apply_published(&project, &name);
    let second = apply_published(&project, &name);
    for (run, how, p) in [(1, "pushed", &first), (2, "up-to-date", &second)] {
        assert_eq!(p.images.len(), 2, "run {run}: one image line per platform");
        // One line per tag, each with the digest the registry serves for it.
        let tags: Vec<&str> = p.lines.iter().map(|l| l.1.as_str()).collect();
        let wanted = [
            format!("{}/{name}:1", reg.addr),
            format!("{}/{name}:latest", reg.addr),
        ];
        assert_eq!(tags, wanted, "run {run}");
        for (said, reference, digest) in &p.lines {
            assert_eq!(said, how, "run {run}: {reference}");
            let tag = reference.rsplit_once(':').unwrap().1;
            assert_eq!(
                reg.manifest_digest(&name, tag).as_deref(),
                Some(digest.as_str()),
                "run {run}: {reference}"
            );
        }
        // The metadata lists the same references, each an index with the images it lists.
        let listed: Vec<String> = p.lines.iter().map(|(_, r, d)| format!("{r}@{d}")).collect();
        let metadata: Vec<&str> = p
            .metadata
            .iter()
            .map(|m| m["reference"].as_str().unwrap())
            .collect();
        assert_eq!(metadata, listed, "run {run}");
        for m in &p.metadata {
            assert_eq!(m["kind"], "index", "run {run}: {m}");
            assert_eq!(m["up_to_date"], run == 2, "run {run}: {m}");
            let index = manifest(&reg, &name, m["tag"].as_str().unwrap());
            let mut held: Vec<(String, String)> = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let p = &e["platform"];
                    (
                        format!(
                            "{}/{}",
                            p["os"].as_str().unwrap(),
                            p["architecture"].as_str().unwrap()
                        ),
                        e["digest"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            held.sort();
            let mut said: Vec<(String, String)> = m["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["platform"].as_str().unwrap().to_string(),
                        e["digest"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            said.sort();
            assert_eq!(said, held, "run {run}: {m}");
            // Each platform's manifest is in the repository under its digest.
            for (platform, digest) in &said {
                assert_eq!(
                    reg.manifest_digest(&name, digest).as_deref(),
                    Some(digest.as_str()),
                    "run {run}: {platform}"
                );
            }
        }
    }
    assert_eq!(first.metadata.len(), 2);
    for (a, b) in first.metadata.iter().zip(&second.metadata) {
        assert_eq!(a["digest"], b["digest"]);
        assert_eq!(
            a["manifests"], b["manifests"],
            "the up-to-date index lists the same images"
        );
    }
    for id in first.images.iter().chain(&second.images) {
        let _ = docker(&["rmi", "-f", id]);
    }
    assert!(containers_named(&format!("pipeline-{name}")).is_empty());
}
