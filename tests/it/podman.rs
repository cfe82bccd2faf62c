//! Podman through its Docker-compatible API (`podman system service`): the same pipeline gives
//! the same image as on Docker, the cache, `plan` and `gc` work the same, and Podman's own
//! setup problems are named with what to do.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{output_text, unique, Project, CACHE_SIGNING_ENV, CACHE_VERIFY_KEY};
use crate::support::engine::{docker_ok, require_image};
use crate::support::image::saved_top_layer;
use crate::support::podman::{Podman, PodmanSetup};

const DOCKER: &str = "unix:///var/run/docker.sock";

fn cmd(project: &Project, args: &[&str]) -> assert_cmd::Command {
    let mut c = project.cmd_on(DOCKER, args);
    c.env("PODMAN_TEST_TOKEN", "s3cr3t-value")
        .timeout(Duration::from_secs(180));
    c
}

/// The busybox example with every `[commit.config]` key both engines can store, awkward
/// values included, a secret and a step env that must not reach the image.
fn every_key_pipeline(name: &str, repository: &str, step: &str) -> String {
    format!(
        r#"name = "{name}"
[base]
image = "busybox:latest"
pull = "never"

[[step]]
name = "make folders"
run = "mkdir -p /srv/www /etc/app"
env = {{ STEP_ONLY = "must not reach the image" }}

[[step]]
name = "greeting"
run = ["/bin/sh", "-c", "echo '{step}' > /srv/www/index.html"]

[[step]]
copy = {{ src = "files/", dest = "/etc/app/" }}

[[step]]
name = "read the secret"
run = "test -s /run/secrets/token"
secrets = ["token"]

[commit]
author = "Pipeline Example <example@example.com>"
message = "busybox web root, every key"
tags = ["{name}:latest"]

[commit.config]
entrypoint = ["/bin/sh", "-c"]
cmd = ["httpd -f -p 8080 -h \"/srv/www\""]
env = {{ SPACED = "a b  c", QUOTED = '"both ends"', TRAILING = "x ", EMPTY = "", DOLLAR = '\$HOME', EXPANDED = "/opt/bin:$PATH" }}
workdir = "/srv/www"
expose = [8080, "53/udp"]
labels = {{ "org.opencontainers.image.title" = "busybox-web", "with space" = "a \"quoted\" value ", "empty" = "" }}
user = "42:42"
volumes = ["/data", "/var/cache/app"]
stop_signal = "SIGQUIT"

[[publish]]
repository = "{repository}"
tags = ["latest"]

[secrets.token]
env = "PODMAN_TEST_TOKEN"
"#
    )
}

fn inspect(out: String) -> Value {
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v.as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("one image")
}

fn sorted(v: &Value) -> Vec<String> {
    let mut items: Vec<String> = match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        Value::Object(o) => o.keys().cloned().collect(),
        _ => Vec::new(),
    };
    items.sort();
    items
}

/// Applies on one engine; returns the stdout. Asserts success, a `sha256:` id and a plan
/// that says nothing would change right after.
fn apply_and_plan(project: &Project, file: &str, engine: &str) -> String {
    let out = cmd(project, &["apply", "--engine", engine, file])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "apply on {engine}: {text}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.lines().any(|l| l.starts_with("image sha256:")),
        "the image id is sha256:-prefixed on {engine}: {stdout}"
    );
    let plan = cmd(
        project,
        &["plan", "--detailed-exitcode", "--engine", engine, file],
    )
    .output()
    .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan right after apply on {engine}: {}",
        output_text(&plan)
    );
    stdout
}

#[test]
// One scenario told in order: each check reads what the step before it left.
#[allow(clippy::too_many_lines)]
fn the_same_pipeline_gives_the_same_image_on_docker_and_podman_and_caches_alike() {
    require_image("busybox:latest");
    let podman = Podman::start();
    podman.load_image("busybox:latest");
    let project = Project::new();
    project.file("files/app.conf", "listen 8080\n");
    let name = unique("podman-same");
    let mut configs = Vec::new();
    for (engine, kind) in [(DOCKER, "docker"), (podman.host.as_str(), "podman")] {
        let repository = format!("127.0.0.1:5000/podman-test/{name}-{kind}");
        let file = format!("{kind}.toml");
        project.file(
            &file,
            // The step names the run: no other run's pipeline can hold the same images
            // (a leftover `last-` pointer would keep them from gc).
            every_key_pipeline(
                &format!("{name}-{kind}"),
                &repository,
                &format!("hello {name}"),
            ),
        );
        let stdout = apply_and_plan(&project, &file, engine);
        assert!(
            stdout.contains(&format!("pushed {repository}:latest@sha256:")),
            "{stdout}"
        );
        // An unchanged apply is all cache hits and finds the registry up to date.
        let again = cmd(&project, &["apply", "--engine", engine, &file])
            .output()
            .unwrap();
        let again_text = String::from_utf8_lossy(&again.stdout).to_string();
        assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
        assert!(
            again_text.contains(&format!("up-to-date {repository}:latest@sha256:")),
            "second apply on {engine}: {again_text}"
        );
        let tag = format!("{name}-{kind}:latest");
        let image = match kind {
            "docker" => inspect(docker_ok(&["image", "inspect", &tag])),
            _ => inspect(podman.docker_ok(&["image", "inspect", &tag])),
        };
        configs.push(image);
    }
    let (d, p) = (&configs[0], &configs[1]);
    for key in ["Entrypoint", "Cmd", "WorkingDir", "User", "Labels"] {
        assert_eq!(
            d["Config"][key], p["Config"][key],
            "{key}: docker {d:#} podman {p:#}"
        );
    }
    for key in ["Env", "ExposedPorts", "Volumes"] {
        assert_eq!(
            sorted(&d["Config"][key]),
            sorted(&p["Config"][key]),
            "{key}: docker {d:#} podman {p:#}"
        );
    }
    assert_eq!(d["Author"], p["Author"]);
    assert_eq!(d["Comment"], p["Comment"]);
    assert_eq!(
        sorted(&p["Config"]["Env"]),
        [
            "DOLLAR=$HOME",
            "EMPTY=",
            "EXPANDED=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "QUOTED=\"both ends\"",
            "SPACED=a b  c",
            "TRAILING=x ",
        ],
        "nothing of the build container (TERM, container=podman, step env) reaches the image"
    );
    assert_eq!(p["Config"]["Labels"]["with space"], "a \"quoted\" value ");
    assert_eq!(
        p["Config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    // Podman stores a stop signal by number.
    assert!(
        ["SIGQUIT", "3"].contains(&p["Config"]["StopSignal"].as_str().unwrap_or("")),
        "{p:#}"
    );

    // gc finds, on both, the entries an edited pipeline no longer uses.
    for (engine, kind) in [(DOCKER, "docker"), (podman.host.as_str(), "podman")] {
        let repository = format!("127.0.0.1:5000/podman-test/{name}-{kind}");
        let file = format!("{kind}.toml");
        project.file(
            &file,
            every_key_pipeline(
                &format!("{name}-{kind}"),
                &repository,
                &format!("changed {name}"),
            ),
        );
        let out = cmd(&project, &["apply", "--engine", engine, &file])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let old = &configs[usize::from(kind != "docker")]["Id"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")[..12]
            .to_string();
        let dry = cmd(&project, &["gc", "--dry-run", "--engine", engine])
            .output()
            .unwrap();
        let dry_text = String::from_utf8_lossy(&dry.stdout).to_string();
        assert_eq!(dry.status.code(), Some(0), "{}", output_text(&dry));
        assert!(
            dry_text
                .lines()
                .any(|l| l.starts_with("would remove pipeline-cache:") && l.contains(old.as_str())),
            "gc --dry-run on {engine} lists the old final image {old}: {dry_text}"
        );
    }
    // On the Podman engine of this test alone, gc for real.
    let gc = cmd(&project, &["gc", "--engine", &podman.host])
        .output()
        .unwrap();
    assert_eq!(gc.status.code(), Some(0), "{}", output_text(&gc));
    let removed = String::from_utf8_lossy(&gc.stdout).to_string();
    assert!(removed.contains("removed pipeline-cache:"), "{removed}");
    let again = cmd(&project, &["gc", "--dry-run", "--engine", &podman.host])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("would remove"),
        "{}",
        output_text(&again)
    );
    assert_eq!(
        podman.containers(),
        Vec::<String>::new(),
        "no container is left"
    );
}

#[test]
fn what_podman_cannot_store_is_an_engine_error_not_a_different_image() {
    require_image("busybox:latest");
    let podman = Podman::start();
    podman.load_image("busybox:latest");
    let project = Project::new();
    let name = unique("podman-cannot");
    let file = project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n\
         [[step]]\nrun = \"true\"\n[commit]\ntags = [\"{name}:1\"]\n[commit.config]\n\
         healthcheck = {{ test = \"true\", interval = \"30s\" }}\n"
    ));
    let out = cmd(
        &project,
        &["apply", "--engine", &podman.host, file.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("healthcheck") && text.contains("Docker engine"),
        "{text}"
    );
    assert!(!podman
        .docker(&["image", "inspect", &format!("{name}:1")])
        .status
        .success());
    assert_eq!(podman.containers(), Vec::<String>::new());
}

/// Whether this machine's hard limits allow Podman's default container ulimits (nofile
/// 1048576, nproc 4194304); sandboxes often do not.
fn podman_default_ulimits_fit() -> bool {
    let hard = |resource| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given.
        let ok = unsafe { libc::getrlimit(resource, &raw mut limit) } == 0;
        if ok {
            limit.rlim_max
        } else {
            0
        }
    };
    hard(libc::RLIMIT_NOFILE) >= 1_048_576 && hard(libc::RLIMIT_NPROC) >= 4_194_304
}

#[test]
fn podman_setup_problems_name_the_fix() {
    require_image("busybox:latest");
    // A registry on 127.0.0.1 that registries.conf does not mark insecure.
    let strict = Podman::start_with(PodmanSetup {
        insecure: Vec::new(),
        ..Default::default()
    });
    let project = Project::new();
    let name = unique("podman-https");
    let file = project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"127.0.0.1:5000/podman-test/none:1\"\n\
         [[step]]\nrun = \"true\"\n"
    ));
    let out = cmd(
        &project,
        &["apply", "--engine", &strict.host, file.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("registries.conf") && text.contains("insecure = true"),
        "{text}"
    );
    drop(strict);

    // No init binary (no `catatonit` package).
    let bare = Podman::start_with(PodmanSetup {
        without_init: true,
        ..Default::default()
    });
    bare.load_image("busybox:latest");
    let file = project.pipeline(&format!(
        "name = \"{name}-init\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n\
         [[step]]\nrun = \"true\"\n"
    ));
    let out = cmd(
        &project,
        &["apply", "--engine", &bare.host, file.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("catatonit"), "{text}");
    assert_eq!(bare.containers(), Vec::<String>::new());
    drop(bare);

    // Podman's default ulimits, higher than this machine kind allows.
    let unlimited = Podman::start_with(PodmanSetup {
        without_ulimits: true,
        ..Default::default()
    });
    unlimited.load_image("busybox:latest");
    let out = cmd(
        &project,
        &["apply", "--engine", &unlimited.host, file.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    if podman_default_ulimits_fit() {
        assert_eq!(out.status.code(), Some(0), "{text}");
    } else {
        assert_eq!(out.status.code(), Some(5), "{text}");
        assert!(
            text.contains("default_ulimits") && !text.contains("authentication"),
            "{text}"
        );
    }
    assert_eq!(unlimited.containers(), Vec::<String>::new());
}

#[test]
fn a_graph_runs_over_docker_and_podman_at_once() {
    require_image("busybox:latest");
    let podman = Podman::start();
    podman.load_image("busybox:latest");
    let project = Project::new();
    let name = unique("podman-mixed");
    let base_repo = format!("127.0.0.1:5000/podman-test/{name}-base");
    let pipeline = |n: &str, base: &str, pull: &str, publish: &str| {
        format!(
            "name = \"{name}-{n}\"\n[base]\nimage = \"{base}\"\npull = \"{pull}\"\n\
             [[step]]\nrun = \"echo {n} > /{n}.txt\"\n[commit]\nmessage = \"{n}\"\n\
             [commit.config]\nenv = {{ PART = \"{n}\" }}\n\
             [[publish]]\nrepository = \"{publish}\"\ntags = [\"1\"]\n"
        )
    };
    let base = project.file(
        "base.toml",
        pipeline("base", "busybox:latest", "never", &base_repo),
    );
    let other = project.file(
        "other.toml",
        pipeline(
            "other",
            "busybox:latest",
            "never",
            &format!("127.0.0.1:5000/podman-test/{name}-other"),
        ),
    );
    let app = project.file(
        "app.toml",
        pipeline(
            "app",
            &format!("{base_repo}:1"),
            "missing",
            &format!("127.0.0.1:5000/podman-test/{name}-app"),
        ),
    );
    let report = project.path().join("report.json");
    let out = cmd(
        &project,
        &[
            "apply",
            "--engine",
            DOCKER,
            "--engine",
            &podman.host,
            "--report",
            report.to_str().unwrap(),
            base.to_str().unwrap(),
            other.to_str().unwrap(),
            app.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let engines: std::collections::BTreeSet<String> = r["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["engine"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        engines.contains(DOCKER) && engines.contains(&podman.host),
        "both engines ran pipelines: {r:#}"
    );
    // The app carries the base's file and env whichever engine built it.
    let pulled = docker_ok(&["pull", &format!("127.0.0.1:5000/podman-test/{name}-app:1")]);
    assert!(!pulled.is_empty());
    let env = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        &format!("127.0.0.1:5000/podman-test/{name}-app:1"),
    ]);
    assert_eq!(env, "[\"PART=app\"]", "{text}");
    let files = docker_ok(&[
        "run",
        "--rm",
        &format!("127.0.0.1:5000/podman-test/{name}-app:1"),
        "cat",
        "/base.txt",
        "/app.txt",
    ]);
    assert_eq!(files, "base\napp");
    assert_eq!(podman.containers(), Vec::<String>::new());
}

#[test]
fn the_remote_cache_serves_a_podman_engine_that_lost_its_local_cache() {
    require_image("busybox:latest");
    let podman = Podman::start();
    podman.load_image("busybox:latest");
    let project = Project::new();
    let name = unique("podman-remote");
    let file = project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n\
         [[step]]\nrun = \"echo {name} > /nonce\"\n[commit]\nmessage = \"remote\"\n\
         [commit.config]\ncmd = [\"cat\", \"/nonce\"]\n\
         [cache]\nremote = \"127.0.0.1:5000/podman-test/{name}-cache\"\n\
         verify_key = \"{CACHE_VERIFY_KEY}\"\nsigning_key_env = \"{CACHE_SIGNING_ENV}\"\n"
    ));
    let file = file.to_str().unwrap();
    let first = cmd(&project, &["apply", "--engine", &podman.host, file])
        .output()
        .unwrap();
    let first_text = output_text(&first);
    assert_eq!(first.status.code(), Some(0), "{first_text}");
    assert!(first_text.contains("cache pushed"), "{first_text}");
    let id = String::from_utf8_lossy(&first.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("image ").map(str::to_string))
        .expect("image id on stdout");
    // The engine forgets its cache entries (a fresh runner).
    let tags = podman.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for tag in tags.lines().filter(|t| t.contains("pipeline-cache:")) {
        podman.docker_ok(&["rmi", tag]);
    }
    assert!(
        !podman.docker(&["image", "inspect", &id]).status.success(),
        "the image went with its last tag: the apply must bring it from the remote cache"
    );
    let plan = cmd(&project, &["plan", "--engine", &podman.host, file])
        .output()
        .unwrap();
    let plan_text = output_text(&plan);
    assert!(
        plan_text.contains("cached (remote)") && plan_text.contains("in the remote cache"),
        "the final image is trusted from the remote cache: {plan_text}"
    );
    let again = cmd(&project, &["apply", "--engine", &podman.host, file])
        .output()
        .unwrap();
    let again_text = output_text(&again);
    assert_eq!(again.status.code(), Some(0), "{again_text}");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains(&format!("image {id}")),
        "the same image, not a new commit: {again_text}"
    );
    assert_eq!(podman.containers(), Vec::<String>::new());
}

#[test]
// One scenario told in order: each check reads what the step before it left.
#[allow(clippy::too_many_lines)]
fn a_scratch_image_built_on_podman_is_pushed_and_runs_where_it_is_pulled() {
    require_image("busybox:latest");
    let podman = Podman::start();
    let project = Project::new();
    let name = unique("podman-scratch");
    let repository = format!("127.0.0.1:5000/podman-test/{name}");
    let busybox =
        std::fs::read("/bin/busybox").expect("the host's static /bin/busybox (busybox-static)");
    let bin = project.file("root/bin/busybox", busybox);
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    project.file("files/app.txt", format!("hello {name}\n"));
    project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"scratch\"\n\
         [[step]]\nname = \"busybox\"\ncopy = {{ src = \"root\", dest = \"/\" }}\n\
         [[step]]\nname = \"app\"\ncopy = {{ src = \"files/app.txt\", dest = \"/app/app.txt\" }}\n\
         [commit]\nmessage = \"scratch on podman\"\ntags = [\"{name}:t\"]\n\
         [commit.config]\nentrypoint = [\"/bin/busybox\"]\ncmd = [\"cat\", \"/app/app.txt\"]\n\
         [[publish]]\nrepository = \"{repository}\"\ntags = [\"1\"]\n"
    ));
    let stdout = apply_and_plan(&project, "pipeline.toml", &podman.host);
    assert!(
        stdout.contains(&format!("pushed {repository}:1@sha256:")),
        "{stdout}"
    );
    // Nothing of a base: one layer, the two copies' (no checkpoint between them), no Env.
    let image = inspect(podman.docker_ok(&["image", "inspect", &format!("{name}:t")]));
    assert_eq!(
        image["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "{image:#}"
    );
    assert!(image["Config"]["Env"].is_null(), "{image:#}");
    // `/` holds the copies and nothing else: none of Podman's mount points.
    let export = podman.docker(&["save", &format!("{name}:t")]);
    assert!(export.status.success(), "{export:?}");
    let mut entries: Vec<String> = saved_top_layer(&export.stdout)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    entries.sort();
    assert_eq!(entries, ["app/", "app/app.txt", "bin/", "bin/busybox"]);
    // Pulled into the Docker engine, it runs.
    let reference = format!("{repository}:1");
    docker_ok(&["pull", &reference]);
    let out = docker_ok(&["run", "--rm", &reference]);
    assert_eq!(out, format!("hello {name}"));
    let listed = docker_ok(&["run", "--rm", &reference, "ls", "/app", "/bin"]);
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        ["/app:", "app.txt", "/bin:", "busybox"],
        "what the copies added"
    );
    crate::support::engine::remove_image(&reference);
    // The image, as a base: a busybox binary without its applet links has no `/bin/sh` and no
    // `cat`, and Podman is asked as Docker is, before anything runs.
    project.file(
        "on-it.toml",
        format!(
            "name = \"{name}-on-it\"\n[base]\nimage = \"{name}:t\"\npull = \"never\"\n\
             [[step]]\nrun = \"echo hi\"\n[commit]\ntags = [\"{name}-on-it:t\"]\n"
        ),
    );
    let plan = cmd(&project, &["plan", "--engine", &podman.host, "on-it.toml"])
        .output()
        .unwrap();
    let plan_text = output_text(&plan);
    assert_eq!(plan.status.code(), Some(1), "{plan_text}");
    let apply = cmd(&project, &["apply", "--engine", &podman.host, "on-it.toml"])
        .output()
        .unwrap();
    let apply_text = output_text(&apply);
    assert_eq!(apply.status.code(), Some(3), "{apply_text}");
    for said in [&plan_text, &apply_text] {
        assert!(
            said.contains("`/bin/sh` is missing")
                && said.contains("`cat` is not on the image's PATH"),
            "{said}"
        );
    }
    assert_eq!(
        podman.containers(),
        Vec::<String>::new(),
        "no container is left"
    );
}
