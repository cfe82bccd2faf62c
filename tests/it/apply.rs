//! Issue 2 acceptance: `pipeline apply` end to end on the real engine and real registries,
//! checked by reading back what the registry holds and pulling it.

use std::path::Path;

use serde_json::Value;

use crate::harness::{copy_dir, output_text, read_report, unique, Project};
use crate::support::engine::{containers_named, docker, docker_ok, image_inspect, require_image};
use crate::support::image::{assert_same_config, Made};
use crate::support::registry::Registry;

const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Copies an example folder into the project.
fn copy_example(name: &str, project: &Project) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    copy_dir(&src, project.path());
}

/// The manifest and config a registry holds for `repository:tag`.
fn registry_image(reg: &Registry, repository: &str, tag: &str) -> (String, Value, Value) {
    let resp = reg.get(
        &format!("/v2/{repository}/manifests/{tag}"),
        &[("Accept", MANIFEST_V2)],
    );
    assert_eq!(
        resp.status,
        200,
        "manifest {repository}:{tag}: {}",
        resp.text()
    );
    let digest = resp
        .header("Docker-Content-Digest")
        .expect("digest header")
        .to_string();
    let manifest: Value = serde_json::from_slice(&resp.body).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let resp = reg.get(&format!("/v2/{repository}/blobs/{config_digest}"), &[]);
    assert_eq!(resp.status, 200);
    (
        digest,
        manifest,
        serde_json::from_slice(&resp.body).unwrap(),
    )
}

/// `pushed REPO:TAG@DIGEST` lines of stdout.
fn pushed(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pushed "))
        .filter_map(|l| l.split_once('@'))
        .map(|(r, d)| (r.to_string(), d.to_string()))
        .collect()
}

#[test]
fn debian_vim_example_is_published_and_pulled_back_with_vim_author_and_base_layers() {
    require_image("debian:bookworm");
    let reg = Registry::start();
    let project = Project::new();
    copy_example("debian-vim", &project);
    // A unique local tag so that parallel runs of this test do not race on `myvim:1.1`.
    let version = unique("v");
    let out = project
        .cmd(&[
            "apply",
            "pipeline.toml",
            "--var",
            &format!("registry={}", reg.addr),
            "--var",
            &format!("version={version}"),
        ])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "apply failed:\n{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let repo = format!("{}/atguiguwh/myvim", reg.addr);

    // Each tag reached the registry, with the manifest digest the tool printed.
    let reported = pushed(&stdout);
    assert_eq!(reported.len(), 2, "two pushes expected:\n{stdout}");
    for tag in [version.as_str(), "latest"] {
        let (digest, manifest, config) = registry_image(&reg, "atguiguwh/myvim", tag);
        assert!(
            reported.contains(&(format!("{repo}:{tag}"), digest.clone())),
            "{tag}: {digest} not in\n{stdout}"
        );
        assert_eq!(config["author"], "zzyy <zzyy@example.com>");
        let history = config["history"].as_array().unwrap();
        assert_eq!(
            history.last().unwrap()["comment"],
            format!("debian with vim {version}")
        );
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["vim"]));
        let env: Vec<&str> = config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"EDITOR=vim"), "{env:?}");
        assert!(
            !env.iter().any(|e| e.starts_with("DEBIAN_FRONTEND")),
            "step env leaked: {env:?}"
        );
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            version.as_str()
        );
        // The base's layers stay at the bottom.
        let base = image_inspect("debian:bookworm");
        let base_layers = base["RootFS"]["Layers"].as_array().unwrap();
        let layers = config["rootfs"]["diff_ids"].as_array().unwrap();
        assert!(layers.len() > base_layers.len(), "no layer added");
        assert_eq!(&layers[..base_layers.len()], &base_layers[..]);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), layers.len());
    }

    // Pulled back from the registry, it runs vim and carries the vimrc.
    let reference = format!("{repo}:{version}");
    docker_ok(&["pull", &reference]);
    let vim = docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &reference,
        "-c",
        "vim --version | head -1; cat /root/.vimrc",
    ]);
    assert!(vim.contains("VIM - Vi IMproved"), "{vim}");
    assert!(vim.contains("syntax on"), "{vim}");
    let inspect = image_inspect(&reference);
    assert_eq!(inspect["Author"], "zzyy <zzyy@example.com>");
    // Nothing of the build container leaked: no tool command, no tool labels.
    assert_eq!(
        inspect["Config"]["Entrypoint"]
            .as_array()
            .map_or(0, |a| a.len()),
        0
    );
    assert!(
        !inspect["Config"].to_string().contains("sleep"),
        "{}",
        inspect["Config"]
    );
    assert!(
        containers_named("pipeline-debian-vim-").is_empty(),
        "build containers left behind"
    );
    docker(&[
        "rmi",
        &reference,
        &format!("{repo}:latest"),
        &format!("myvim:{version}"),
    ]);
}

#[test]
// One scenario told in order: each check reads what the step before it left.
#[allow(clippy::too_many_lines)]
fn busybox_pipeline_copies_files_sets_config_keeps_base_cmd_and_cleans_up() {
    require_image("busybox:latest");
    let reg = Registry::start();
    let project = Project::new();
    let name = unique("bb-apply");
    project.file("files/app.conf", "port=8080\n");
    project.file("files/sub/nested.txt", "nested\n");
    project.file("files/run.sh", "#!/bin/sh\necho run\n");
    std::fs::set_permissions(
        project.path().join("files/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    project.file("single.txt", "single\n");
    let tag = unique("t");
    project.pipeline(&format!(
        r#"
name = "{name}"
[vars]
who = "world"
[base]
image = "busybox:latest"
pull = "never"

[[step]]
name = "write"
run = "mkdir -p /srv && echo 'hello {{{{ who }}}}' > /srv/index.html && echo $STEP_ONLY > /srv/env.txt && echo {name} > /srv/nonce"
env = {{ STEP_ONLY = "from-step-env" }}

[[step]]
copy = {{ src = "files", dest = "/etc/app" }}

[[step]]
copy = {{ src = "single.txt", dest = "/opt/", mode = "0600", owner = "42:42" }}

[[step]]
name = "as nobody in /tmp"
run = ["/bin/sh", "-c", "id -u > /tmp/whoami; pwd > /tmp/pwd"]
user = "nobody"
workdir = "/tmp"

[commit]
author = "Tester <t@example.com>"
message = "busybox test"
tags = ["{name}:{tag}"]

[commit.config]
expose = [8080, "53/udp"]
env = {{ APP_MODE = "prod", PATH = "/opt/tools:$PATH", PRICE = "\\$5" }}
labels = {{ team = "platform" }}
workdir = "/srv"
volumes = ["/data"]
stop_signal = "SIGQUIT"
shell = ["/bin/sh", "-ec"]
onbuild = ["RUN echo built on me"]
healthcheck = {{ test = "wget -q -O- localhost:8080 || exit 1", interval = "15s", timeout = "3s", start_period = "5s", retries = 4 }}

[[publish]]
repository = "{addr}/test/{name}"
tags = ["{tag}", "stable"]
"#,
        addr = reg.addr
    ));
    // Reproducible, so that the tool writes the image layer by layer (compared below).
    let out = project
        .cmd(&["apply", "pipeline.toml", "--report", "report.json"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "apply failed:\n{text}");
    // Live, labelled step output in plain mode, with timestamps.
    assert!(
        text.lines()
            .any(|l| l.starts_with("20") && l.contains("step [4/4] as nobody in /tmp")),
        "{text}"
    );

    let local = format!("{name}:{tag}");
    let inspect = image_inspect(&local);
    let config = &inspect["Config"];
    // The image the tool writes says what the engine's commit stored.
    let report = read_report(&project.path().join("report.json"));
    assert_same_config(&Made::of_report(&project.user_cache(), &report), config);
    assert_eq!(inspect["Author"], "Tester <t@example.com>");
    assert_eq!(inspect["Comment"], "busybox test");
    // The base's CMD stays (busybox imports with CMD ["sh"]); nothing of the tool leaks.
    assert_eq!(config["Cmd"], serde_json::json!(["sh"]), "{config}");
    // An unset entrypoint stays unset (null), as `docker commit` leaves it.
    assert!(config["Entrypoint"].is_null(), "{config}");
    assert_eq!(config["WorkingDir"], "/srv");
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some()
            && config["ExposedPorts"].get("53/udp").is_some(),
        "{config}"
    );
    assert!(config["Volumes"].get("/data").is_some(), "{config}");
    assert_eq!(config["Labels"], serde_json::json!({"team": "platform"}));
    assert_eq!(config["StopSignal"], "SIGQUIT", "{config}");
    assert_eq!(
        config["Shell"],
        serde_json::json!(["/bin/sh", "-ec"]),
        "{config}"
    );
    assert_eq!(
        config["OnBuild"],
        serde_json::json!(["RUN echo built on me"]),
        "{config}"
    );
    assert_eq!(
        config["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD-SHELL", "wget -q -O- localhost:8080 || exit 1"],
            "Interval": 15_000_000_000u64,
            "Timeout": 3_000_000_000u64,
            "StartPeriod": 5_000_000_000u64,
            "Retries": 4
        }),
        "{config}"
    );
    let env = config["Env"].to_string();
    assert!(
        env.contains("APP_MODE=prod") && !env.contains("STEP_ONLY"),
        "{env}"
    );
    // `$PATH` expands as in a Dockerfile ENV (the imported base sets no PATH: the engine's
    // default), `\$` is a literal dollar; the image still finds `sh` and `ls`.
    assert!(
        env.contains(
            "PATH=/opt/tools:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ) && env.contains("PRICE=$5"),
        "{env}"
    );
    docker_ok(&["run", "--rm", &local, "ls", "/"]);

    let files = docker_ok(&[
        "run", "--rm", "--user", "0", &local, "sh", "-c",
        "cat /srv/index.html /srv/env.txt /etc/app/app.conf /etc/app/sub/nested.txt /tmp/whoami /tmp/pwd; \
         stat -c '%a %u:%g %n' /etc/app/run.sh /opt/single.txt",
    ]);
    for expected in [
        "hello world",
        "from-step-env",
        "port=8080",
        "nested",
        "42",
        "/tmp",
        "755 0:0 /etc/app/run.sh",
        "600 42:42 /opt/single.txt",
    ] {
        assert!(
            files.contains(expected),
            "missing `{expected}` in:\n{files}"
        );
    }

    // Both tags in the registry, same digest as printed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for t in [tag.as_str(), "stable"] {
        let digest = reg
            .manifest_digest(&format!("test/{name}"), t)
            .expect("pushed");
        assert!(
            stdout.contains(&format!("{}/test/{name}:{t}@{digest}", reg.addr)),
            "{stdout}"
        );
    }
    assert!(
        containers_named(&format!("pipeline-{name}-")).is_empty(),
        "build containers left behind"
    );
    docker(&["rmi", &local]);
}

#[test]
fn publishes_to_a_registry_with_htpasswd_auth_using_password_env() {
    require_image("busybox:latest");
    let reg = Registry::start_with_auth("zzyybuy", "s3cret-pass");
    let project = Project::new();
    let name = unique("bb-auth");
    project.pipeline(&format!(
        r#"
name = "{name}"
[base]
image = "busybox:latest"
[[step]]
run = "echo {name} > /id"
[[publish]]
repository = "{addr}/private/{name}"
tags = ["1"]
username = "zzyybuy"
password_env = "TEST_REGISTRY_PASSWORD"
"#,
        addr = reg.addr
    ));
    // Without the variable: refused before anything runs, by name.
    let out = project
        .cmd(&["apply", "pipeline.toml"])
        .env_remove("TEST_REGISTRY_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(output_text(&out).contains("TEST_REGISTRY_PASSWORD"));

    // A wrong password: plan says the registry refused it, not that it is unreachable, and
    // fails as apply would.
    let out = project
        .cmd(&["plan", "pipeline.toml"])
        .env("TEST_REGISTRY_PASSWORD", "wrong-pass")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("refused the credentials") && !text.contains("not reachable"),
        "{text}"
    );

    let out = project
        .cmd(&["apply", "pipeline.toml"])
        .env("TEST_REGISTRY_PASSWORD", "s3cret-pass")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("s3cret-pass"), "password printed:\n{text}");
    assert!(reg
        .manifest_digest(&format!("private/{name}"), "1")
        .is_some());
    // The user's docker config was not written.
    assert!(
        !project.path().join(".docker-config").exists(),
        "the docker config was written"
    );
}

#[test]
fn failing_step_names_step_exit_code_and_last_lines_and_pushes_nothing() {
    require_image("busybox:latest");
    let reg = Registry::start();
    let project = Project::new();
    let name = unique("bb-fail");
    project.pipeline(&format!(
        r#"
name = "{name}"
[base]
image = "busybox:latest"
[[step]]
name = "breaks"
run = "echo first line; echo second line >&2; exit 7"
[[publish]]
repository = "{addr}/fail/{name}"
tags = ["1"]
"#,
        addr = reg.addr
    ));
    let out = project.cmd(&["apply", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("step 1 `breaks` failed with exit code 7"),
        "{text}"
    );
    assert!(text.contains("second line"), "{text}");
    assert!(
        reg.tags(&format!("fail/{name}")).is_empty(),
        "something was pushed"
    );
    assert!(
        containers_named(&format!("pipeline-{name}-")).is_empty(),
        "build containers left behind"
    );
}

#[test]
fn a_private_base_is_pulled_with_its_credentials() {
    require_image("busybox:latest");
    let reg = Registry::start_with_auth("puller", "pull-pass");
    let project = Project::new();
    let name = unique("bb-private");
    // Put a base image into the private registry with the docker CLI, logged in through a
    // throwaway docker config, then forget it locally.
    let base = format!("{}/bases/{name}:1", reg.addr);
    let login_dir = tempfile::tempdir().unwrap();
    let cfg = login_dir.path().to_str().unwrap();
    docker_ok(&["tag", "busybox:latest", &base]);
    let login = std::process::Command::new(crate::support::engine::docker_bin())
        .args([
            "--config",
            cfg,
            "login",
            "-u",
            "puller",
            "--password-stdin",
            &reg.addr,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"pull-pass")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(login.status.success(), "{}", output_text(&login));
    let push = docker(&["--config", cfg, "push", &base]);
    assert!(push.status.success(), "{}", output_text(&push));
    docker_ok(&["rmi", &base]);

    project.pipeline(&format!(
        r#"
name = "{name}"
[base]
image = "{base}"
pull = "always"
username = "puller"
password_env = "BASE_PASSWORD"
[[step]]
run = "echo built > /built"
[commit]
tags = ["{name}:1"]
"#
    ));
    let out = project
        .cmd(&["apply", "pipeline.toml"])
        .env("BASE_PASSWORD", "pull-pass")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pulled"), "{text}");
    assert_eq!(
        docker_ok(&["run", "--rm", &format!("{name}:1"), "cat", "/built"]),
        "built"
    );

    // Without credentials the pull is refused, and the error says so.
    docker(&["rmi", &base, &format!("{name}:1")]);
    let out = project
        .cmd(&["apply", "pipeline.toml"])
        .env("BASE_PASSWORD", "wrong")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains(&base) && !text.contains("wrong\n"), "{text}");
}

#[test]
fn the_busybox_example_applies_and_serves_its_page() {
    require_image("busybox:latest");
    let reg = Registry::start();
    let project = Project::new();
    copy_example("busybox", &project);
    let greeting = unique("hi");
    let out = project
        .cmd(&[
            "apply",
            "pipeline.toml",
            "--var",
            &format!("registry={}", reg.addr),
            "--var",
            &format!("greeting={greeting}"),
        ])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        reg.manifest_digest("examples/busybox-web", "latest")
            .is_some(),
        "{text}"
    );
    let page = docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        "example/busybox-web:latest",
        "/srv/www/index.html",
        "/etc/app/app.conf",
    ]);
    assert!(
        page.contains(&format!("{greeting} from pipeline")) && page.contains("port=8080"),
        "{page}"
    );
}

#[test]
fn a_base_without_command_or_entrypoint_gets_nothing_of_the_build_container() {
    require_image("busybox:latest");
    let name = unique("bb-nocmd");
    // An import without `--change` has neither CMD nor ENTRYPOINT.
    let exporter = docker_ok(&["create", "busybox:latest"]);
    let export = std::process::Command::new(crate::support::engine::docker_bin())
        .args(["export", exporter.trim()])
        .output()
        .unwrap();
    docker_ok(&["rm", "-f", exporter.trim()]);
    let mut import = std::process::Command::new(crate::support::engine::docker_bin())
        .args(["import", "-", &format!("{name}-base:1")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(import.stdin.as_mut().unwrap(), &export.stdout).unwrap();
    drop(import.stdin.take());
    assert!(import.wait().unwrap().success());
    let project = Project::new();
    project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"{name}-base:1\"\npull = \"never\"\n\
         [[step]]\nrun = \"echo hi > /hi\"\n[commit]\ntags = [\"{name}:1\"]\n"
    ));
    // Reproducible, so that the tool writes the image layer by layer (compared below).
    let out = project
        .cmd(&["apply", "pipeline.toml", "--report", "report.json"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let config = &image_inspect(&format!("{name}:1"))["Config"];
    let report = read_report(&project.path().join("report.json"));
    assert_same_config(&Made::of_report(&project.user_cache(), &report), config);
    // Nothing of the build container (`cat`); Docker's commit stores these as empty lists.
    for key in ["Cmd", "Entrypoint"] {
        let value = config[key].as_array().cloned().unwrap_or_default();
        assert!(value.is_empty(), "{key}: {config}");
    }
    docker_ok(&["rmi", &format!("{name}:1"), &format!("{name}-base:1")]);
}

#[test]
fn string_commands_and_compose_health_checks_match_docker_commit_change() {
    require_image("busybox:latest");
    let name = unique("bb-forms");
    let project = Project::new();
    project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n\
         [[step]]\nrun = \"true\"\n[commit]\ntags = [\"{name}:1\"]\n[commit.config]\n\
         entrypoint = \"exec /bin/env\"\ncmd = \"httpd -f -p 8080 -h '/srv/my www'\"\n\
         healthcheck = {{ test = [\"CMD-SHELL\", \"wget -q -O- localhost:8080 || exit 1\"] }}\n"
    ));
    project.apply_ok(&name, &[]);
    // The same changes as `docker commit --change` takes them, from a container of the base.
    let holder = docker_ok(&["create", "busybox:latest", "true"]);
    docker_ok(&[
        "commit",
        "--change",
        "ENTRYPOINT exec /bin/env",
        "--change",
        "CMD httpd -f -p 8080 -h '/srv/my www'",
        "--change",
        "HEALTHCHECK CMD wget -q -O- localhost:8080 || exit 1",
        holder.trim(),
        &format!("{name}-docker:1"),
    ]);
    docker_ok(&["rm", "-f", holder.trim()]);
    let ours = &image_inspect(&format!("{name}:1"))["Config"];
    let docker = &image_inspect(&format!("{name}-docker:1"))["Config"];
    for key in ["Cmd", "Entrypoint"] {
        assert_eq!(ours[key], docker[key], "{key}");
    }
    assert_eq!(ours["Healthcheck"]["Test"], docker["Healthcheck"]["Test"]);
    assert_eq!(ours["Cmd"][0], "/bin/sh", "{ours}");
    docker_ok(&["rmi", &format!("{name}:1"), &format!("{name}-docker:1")]);
}

/// The two-stage example: a Debian builder compiles a static binary, a `scratch` image gets
/// only that binary, is published, pulled back and run; a change to the source plans the
/// compile and the copy again while the compiler stays cached.
#[test]
fn static_hello_example_ships_a_static_binary_in_a_scratch_image_under_10_mb() {
    require_image("debian:bookworm");
    let reg = Registry::start();
    let project = Project::new();
    copy_example("static-hello", &project);
    let version = unique("v");
    let vars = example_vars(&reg, &version);
    let args = |command: &'static str| {
        let mut a = vec![command, "."];
        a.extend(vars.iter().map(String::as_str));
        a
    };
    let out = project.cmd(&args("apply")).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "apply failed:\n{text}");
    let published = format!("{}/example/hello:{version}", reg.addr);
    let (_, manifest, config) = registry_image(&reg, "example/hello", &version);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer, the copy: {manifest:#}");
    let size: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert!(size < 10 << 20, "{size} bytes compressed");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/hello"])
    );
    let local = format!("example/hello:{version}");
    let _ = docker(&["rmi", &local]);
    assert_eq!(
        docker_ok(&["run", "--rm", &published, "pull-back"]).trim(),
        "hello from pull-back"
    );
    let inspect = image_inspect(&published);
    assert!(inspect["Size"].as_u64().unwrap() < 10 << 20, "{inspect:#}");

    // Unchanged: the copy knows the builder's image before it runs, so nothing would run.
    let plan = project.cmd(&args("plan")).output().unwrap();
    let plan_text = output_text(&plan);
    assert!(plan_text.contains("[1/1] binary: cached"), "{plan_text}");

    // A change to the source: the compiler stays cached, the compile and the copy run again.
    let source = project.path().join("src/hello.c");
    let mut c = std::fs::read_to_string(&source).unwrap();
    c.push_str("/* changed */\n");
    std::fs::write(&source, c).unwrap();
    let plan = project.cmd(&args("plan")).output().unwrap();
    let plan_text = output_text(&plan);
    for line in [
        "[1/3] compiler: cached",
        "[2/3] source: will run",
        "[3/3] compile: will run",
        "[1/1] binary: will run",
    ] {
        assert!(plan_text.contains(line), "{line:?} in\n{plan_text}");
    }
    let _ = docker(&["rmi", &published]);
}

/// The team folder: a shared file extended by a matrix file and another pipeline. Its lock
/// pins the engine's own bases, whose ids differ per machine, so it is made here first (as the
/// example's README says); `apply --locked` then builds every variant, the metadata file names
/// each variant's pushed digest, and each image runs.
#[test]
fn team_example_applies_every_variant_locked_and_the_metadata_names_them() {
    require_image("busybox:latest");
    require_image("debian:bookworm");
    let reg = Registry::start();
    let project = Project::new();
    copy_example("team", &project);
    let version = unique("v");
    let vars = example_vars(&reg, &version);
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(vars.iter().map(String::as_str));
        let out = project.cmd(&all).output().unwrap();
        let text = output_text(&out);
        assert!(out.status.success(), "{args:?} failed:\n{text}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), text)
    };
    let (_, text) = run(&["lock", "."]);
    assert!(text.contains("wrote ./pipeline.lock"), "{text}");
    // The plan as JSON: one entry per variant, each with its variant object.
    let (plan, _) = run(&["plan", "--format", "json", "--locked", "."]);
    let plan: Value = serde_json::from_str(&plan).unwrap();
    let entries: Vec<(String, String)> = plan["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["variant"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("tools", "null"),
            ("web-en", r#"{"lang":"en"}"#),
            ("web-fr", r#"{"lang":"fr"}"#)
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "{plan:#}"
    );
    let metadata = project.path().join("metadata.json");
    let metadata_arg = metadata.display().to_string();
    let (_, text) = run(&["apply", "--locked", "--metadata-file", &metadata_arg, "."]);
    let doc = crate::harness::read_json(&metadata);
    let mut pushed: Vec<(String, Value, String)> = doc["pushed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pipeline"].as_str().unwrap().to_string(),
                p["variant"].clone(),
                p["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pushed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(pushed.len(), 3, "{doc:#}\n{text}");
    for ((name, variant, reference), expect) in pushed.iter().zip([
        (
            None,
            "hello from the team tools on Debian GNU/Linux 12 (bookworm)".to_string(),
        ),
        (Some("en"), format!("hello from web-en {version}")),
        (Some("fr"), format!("bonjour from web-fr {version}")),
    ]) {
        let (lang, line) = expect;
        match lang {
            Some(lang) => {
                assert_eq!(variant["lang"], lang, "{name}: {doc:#}");
                assert!(
                    reference.contains(&format!(":{version}-{lang}@sha256:")),
                    "{reference}"
                );
            }
            None => assert!(variant.is_null(), "{name}: {doc:#}"),
        }
        runs_as_pushed(&reg, reference, lang.is_some(), &line);
        let _ = docker(&["rmi", reference]);
    }
    for image in doc["images"].as_array().unwrap() {
        for tag in image["tags"].as_array().unwrap() {
            let _ = docker(&["rmi", tag.as_str().unwrap()]);
        }
    }
}

/// The image `reference` (`REPO:TAG@DIGEST`) is what the registry holds under its tag, and
/// prints `line` (its web root's page, or its own command's output).
fn runs_as_pushed(reg: &Registry, reference: &str, web: bool, line: &str) {
    let (repository, digest) = reference.split_once('@').unwrap();
    let (repo, tag) = repository.rsplit_once(':').unwrap();
    let path = repo.split_once('/').unwrap().1;
    assert_eq!(registry_image(reg, path, tag).0, digest, "{reference}");
    let mut args = vec!["run", "--rm", reference];
    if web {
        args.extend(["cat", "/srv/www/index.html"]);
    }
    assert_eq!(docker_ok(&args).trim(), line, "{reference}");
}

/// `--var registry=ADDR --var version=VERSION`, as the examples take them.
fn example_vars(reg: &Registry, version: &str) -> [String; 4] {
    [
        "--var".to_string(),
        format!("registry={}", reg.addr),
        "--var".to_string(),
        format!("version={version}"),
    ]
}
