//! A step's layer holds what the step wrote (and the folders above it), on Docker and on
//! Podman alike: never the mount points an engine makes for its container (`/dev`, `/proc`,
//! `/sys`, the `/etc/hosts` it mounts its own file on, ...) when the base lacks them.

use std::time::Duration;

use crate::harness::{output_text, unique, Project};
use crate::support::engine::{docker, remove_image, require_image};
use crate::support::image::saved_top_layer;
use crate::support::podman::Podman;

const DOCKER: &str = "unix:///var/run/docker.sock";

#[test]
fn a_step_layer_holds_only_what_the_step_wrote_on_docker_and_podman() {
    require_image("busybox:latest");
    require_image("debian:bookworm");
    let podman = Podman::start();
    podman.load_image("busybox:latest");
    podman.load_image("debian:bookworm");
    let project = Project::new();
    let name = unique("mount-points");
    let hosts = format!("10.9.9.9 {name}\n");
    project.file("files/hosts", &hosts);
    let made = format!("made-{name}");
    // (base, what Docker adds: the mount point of its init, in the folder the base has for it)
    let bases = [
        ("busybox:latest", vec!["sbin/", "sbin/docker-init"]),
        (
            "debian:bookworm",
            vec!["usr/", "usr/sbin/", "usr/sbin/docker-init"],
        ),
    ];
    // (step, its steps, what its layer holds: name and content). Each container runs a
    // command, so that the engine mounts what it mounts.
    let steps = [
        (
            "made",
            format!("[[step]]\nrun = \"touch /{made}\"\n"),
            vec![(made.clone(), String::new())],
        ),
        (
            "hosts",
            "[[step]]\ncopy = { src = \"files/hosts\", dest = \"/etc/hosts\" }\ncheckpoint = false\n\
             [[step]]\nrun = \"grep -q . /etc/hosts\"\n"
                .to_string(),
            vec![
                ("etc/".to_string(), String::new()),
                ("etc/hosts".to_string(), hosts.clone()),
            ],
        ),
    ];
    for (base, docker_init) in &bases {
        for (step, steps, wrote) in &steps {
            let engines = [(DOCKER, "docker"), (podman.host.as_str(), "podman")];
            for (engine, kind) in engines {
                let case = format!("{base} {step} on {kind}");
                let tag = format!("{name}-{kind}-{step}-{}:1", &base[..6]);
                project.file(
                    "pipeline.toml",
                    format!(
                        "name = \"{name}-{step}\"\n[base]\nimage = \"{base}\"\npull = \"never\"\n\
                         {steps}[commit]\ntags = [\"{tag}\"]\n"
                    ),
                );
                let out = project
                    .cmd_on(engine, &["apply", "pipeline.toml"])
                    .timeout(Duration::from_secs(300))
                    .output()
                    .unwrap();
                assert_eq!(out.status.code(), Some(0), "{case}: {}", output_text(&out));
                let export = if kind == "docker" {
                    docker(&["save", &tag])
                } else {
                    podman.docker(&["save", &tag])
                };
                assert!(export.status.success(), "{case}: {export:?}");
                let layer = saved_top_layer(&export.stdout);
                let mut want: Vec<(String, String)> = wrote.clone();
                if kind == "docker" {
                    want.extend(
                        docker_init
                            .iter()
                            .map(|p| ((*p).to_string(), String::new())),
                    );
                    want.sort();
                }
                let got: Vec<(String, String)> = layer
                    .iter()
                    .map(|(n, d)| (n.clone(), String::from_utf8_lossy(d).into_owned()))
                    .collect();
                let mut sorted = got.clone();
                sorted.sort();
                assert_eq!(sorted, want, "{case}: the step's layer holds {got:?}");
                if kind == "docker" {
                    remove_image(&tag);
                }
            }
        }
    }
    assert_eq!(podman.containers(), Vec::<String>::new());
}
