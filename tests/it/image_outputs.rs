//! Outputs besides registries and `--no-push`: `apply --output oci:PATH --output tar:PATH`
//! and `[[output]]` tables write the image; Docker and Podman load the tar and run it,
//! skopeo reads the layout and the pushed image; `--no-push` pushes nothing and says so in
//! the output, the report and the plan.

use std::process::Command;

use serde_json::Value;

use crate::harness::{busybox_pipeline, output_text, read_report, unique, Project};
use crate::support::engine::{docker, docker_ok, remove_image, require_engine};
use crate::support::podman::Podman;
use crate::support::registry::Registry;

fn skopeo(args: &[&str]) -> Value {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo's JSON")
}

fn pipeline(name: &str, repository: &str, outputs: &str) -> String {
    busybox_pipeline(
        name,
        &format!(
            "[[step]]\nrun = \"echo {name} > /content\"\n\n\
             [commit]\ntags = [\"{name}:1\"]\nconfig = {{ cmd = [\"cat\", \"/content\"] }}\n\n\
             [[publish]]\nrepository = \"{repository}\"\ntags = [\"1\"]\n\n{outputs}"
        ),
    )
}

#[test]
fn no_push_writes_a_layout_and_a_tar_that_docker_podman_and_skopeo_read() {
    require_engine();
    let reg = Registry::start();
    let name = unique("out");
    let p = Project::new();
    let repository = format!("{}/out/{name}", reg.addr);
    // One output from the file (inside its folder), two from the command line.
    p.pipeline(&pipeline(
        &name,
        &repository,
        "[[output]]\ntype = \"oci\"\npath = \"build/layout\"\n",
    ));
    let tar = p.path().join("elsewhere/image.tar");
    let cli_layout = p.path().join("cli-layout");
    let plan = p
        .std_cmd(&[
            "plan",
            "pipeline.toml",
            "--no-push",
            "--output",
            &format!("tar:{}", tar.display()),
        ])
        .output()
        .unwrap();
    let plan_text = output_text(&plan);
    assert!(plan.status.success(), "{plan_text}");
    assert!(
        plan_text.contains(&format!("publish  {repository}:1: skipped (--no-push)")),
        "{plan_text}"
    );
    assert!(plan_text.contains("output   oci:"), "{plan_text}");
    assert!(
        plan_text.contains(&format!("output   tar:{}", tar.display())),
        "{plan_text}"
    );

    let out = p
        .std_cmd(&[
            "apply",
            "pipeline.toml",
            "--no-push",
            "--report",
            "r.json",
            "--output",
            &format!("tar:{}", tar.display()),
            "--output",
            &format!("oci:{}", cli_layout.display()),
        ])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("skipped push {repository}:1 (--no-push)")),
        "{text}"
    );
    assert!(
        reg.tags(&format!("out/{name}")).is_empty(),
        "nothing pushed"
    );
    let report = read_report(&p.path().join("r.json"));
    assert_eq!(report["pushes"][0]["status"], "skipped", "{report:#}");
    let outputs = report["outputs"].as_array().expect("outputs in the report");
    assert_eq!(outputs.len(), 3, "{report:#}");
    let digest = outputs[0]["digest"].as_str().unwrap().to_string();
    assert!(
        outputs.iter().all(|o| o["digest"] == digest.as_str()),
        "{report:#}"
    );
    for o in outputs {
        assert!(
            text.contains(&format!("wrote {}@{digest}", o["output"].as_str().unwrap())),
            "{text}"
        );
    }

    // skopeo reads both layouts: the same manifest.
    for layout in [p.path().join("build/layout"), cli_layout] {
        let inspected = skopeo(&["inspect", &format!("oci:{}", layout.display())]);
        assert_eq!(inspected["Digest"], digest.as_str(), "{inspected:#}");
    }

    // Docker loads the tar (without the local name it had, so the name comes from the tar).
    let local = format!("{name}:1");
    remove_image(&local);
    let loaded = docker_ok(&["load", "-i", &tar.display().to_string()]);
    assert!(loaded.contains(&local), "{loaded}");
    assert_eq!(docker_ok(&["run", "--rm", &local]).trim(), name);
    remove_image(&local);

    // So does Podman.
    let podman = Podman::start();
    let loaded = podman.docker_ok(&["load", "-i", &tar.display().to_string()]);
    assert!(loaded.contains(&name), "{loaded}");
    let ran = podman.docker(&["run", "--rm", &local]);
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout).trim(),
        name,
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

#[test]
fn skopeo_reads_the_image_the_tool_pushed() {
    require_engine();
    let reg = Registry::start();
    let name = unique("outpush");
    let p = Project::new();
    let repository = format!("{}/out/{name}", reg.addr);
    p.pipeline(&pipeline(&name, &repository, ""));
    let out = p
        .std_cmd(&["apply", "pipeline.toml", "--report", "r.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let report = read_report(&p.path().join("r.json"));
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{repository}:1"),
    ]);
    assert_eq!(
        inspected["Digest"], report["pushes"][0]["digest"],
        "{inspected:#}"
    );
    assert_eq!(inspected["Architecture"], "amd64");
    let _ = docker(&["rmi", &format!("{repository}:1")]);
    remove_image(&format!("{name}:1"));
}
