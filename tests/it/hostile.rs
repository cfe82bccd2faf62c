//! Pipeline files from strangers: whatever a file (or what it names) is, `validate` reads
//! nothing outside the pipeline's folder, leaks nothing, ends quickly in bounded memory, and
//! says what is wrong. No engine is needed.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{output_text, Project};

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs the binary with a short timeout; returns the exit code and all output.
fn run(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let out = p
        .cmd(args)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    (out.status.code(), output_text(&out))
}

const VALID: &str = "[base]\nimage = \"busybox:latest\"\n[[step]]\nrun = \"true\"\n";

// ---- non-regular files never block ------------------------------------------------------

#[test]
fn a_fifo_as_pipeline_file_fails_fast_with_a_clear_message() {
    let p = Project::new();
    mkfifo(&p.path().join("fifo.toml"));
    let start = Instant::now();
    let (code, text) = run(&p, &["validate", "fifo.toml"]);
    assert!(start.elapsed() < Duration::from_secs(10), "{text}");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("cannot read `fifo.toml`: a FIFO, not a regular file"),
        "{text}"
    );
}

#[test]
fn a_fifo_as_var_file_fails_fast_with_a_clear_message() {
    let p = Project::new();
    p.pipeline(VALID);
    mkfifo(&p.path().join("vars.toml"));
    let (code, text) = run(
        &p,
        &["validate", "--var-file", "vars.toml", "pipeline.toml"],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("a FIFO, not a regular file"), "{text}");
}

#[test]
fn a_fifo_as_secret_file_is_a_diagnostic() {
    let p = Project::new();
    p.pipeline(&format!(
        "{VALID}secrets = [\"token\"]\n[secrets.token]\nfile = \"token\"\n"
    ));
    mkfifo(&p.path().join("token"));
    let (code, text) = run(&p, &["validate", "pipeline.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("error[invalid-secret-file]"), "{text}");
    assert!(
        text.contains("secret file `token`: a FIFO, not a regular file"),
        "{text}"
    );
}

#[test]
fn a_huge_pipeline_file_is_refused_before_it_is_read_whole() {
    let p = Project::new();
    let mut big = VALID.as_bytes().to_vec();
    big.extend(std::iter::repeat_n(b'#', 2 << 20));
    p.file("big.toml", &big);
    let (code, text) = run(&p, &["validate", "big.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("larger than the limit of 1 MiB"), "{text}");
}

// ---- folder expansion -------------------------------------------------------------------

#[test]
fn a_symlink_in_a_folder_that_leaves_it_is_refused_and_nothing_is_echoed() {
    let p = Project::new();
    p.file("pipelines/a.toml", VALID);
    for target in ["/proc/self/environ", "/dev/zero", "/etc/shadow"] {
        let link = p.path().join("pipelines/zz.toml");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let start = Instant::now();
        let out = p
            .cmd(&["validate", "pipelines/"])
            .env("PIPELINE_TEST_CANARY", "canary-7f3a9")
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        let text = output_text(&out);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{target}: {text}"
        );
        assert_eq!(out.status.code(), Some(2), "{target}: {text}");
        assert!(text.contains("error[path-escapes]"), "{target}: {text}");
        assert!(
            text.contains("`pipelines/zz.toml` is a symlink to a file outside `pipelines/`"),
            "{target}: {text}"
        );
        assert!(!text.contains("canary-7f3a9"), "{target}: {text}");
        assert!(!text.contains("root:"), "{target}: {text}");
    }
}

#[test]
fn symlinks_inside_the_folder_and_files_named_anywhere_are_loaded() {
    let p = Project::new();
    p.file("pipelines/real/app.toml", VALID);
    std::os::unix::fs::symlink("real/app.toml", p.path().join("pipelines/app.toml")).unwrap();
    std::fs::create_dir(p.path().join("pipelines/dir.toml")).unwrap();
    let (code, text) = run(&p, &["validate", "pipelines/"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("pipelines/app.toml: ok"), "{text}");
    // The user named it: a file anywhere is loaded.
    let elsewhere = Project::new();
    let file = elsewhere.file("other.toml", VALID);
    let (code, text) = run(&p, &["validate", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_shared_var_file_in_a_folder_of_pipelines_is_not_a_pipeline() {
    let p = Project::new();
    p.file(
        "multi/app.toml",
        "[vars]\ntag = { type = \"string\" }\n[base]\nimage = \"busybox:{{ tag }}\"\n[[step]]\nrun = \"true\"\n",
    );
    p.file("multi/common.toml", "tag = \"1.36\"\n");
    let (code, text) = run(
        &p,
        &["validate", "--var-file", "multi/common.toml", "multi/"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("multi/app.toml: ok"), "{text}");
    assert!(
        text.contains("note: skipped `multi/common.toml`: given with --var-file"),
        "{text}"
    );
    // Without --var-file it is still no pipeline: it has no `base`.
    let (code, text) = run(&p, &["validate", "--var", "tag=1", "multi/"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "note: skipped `multi/common.toml`: no `base` or `extends` key, so not a pipeline"
        ),
        "{text}"
    );
    // Named explicitly, a file without `base` is a pipeline with a missing key.
    let (code, text) = run(&p, &["validate", "multi/common.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("missing key `base`"), "{text}");
    // A folder with no pipeline at all is an error.
    std::fs::remove_file(p.path().join("multi/app.toml")).unwrap();
    let (code, text) = run(&p, &["validate", "multi/"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("no pipeline files"), "{text}");
}

// ---- diagnostics echo at most a part of the offending line --------------------------------

#[test]
fn a_file_of_one_huge_line_or_binary_junk_is_never_dumped_whole() {
    let p = Project::new();
    let mut long = b"[base]\nimage = \"".to_vec();
    long.extend(std::iter::repeat_n(b'A', 400_000));
    long.extend(b"{{ nope }}\"\n");
    let mut junk = long.clone();
    junk.extend(b"\x1b[2J\x1b]52;c;ZXZpbA==\x07 = 1\n");
    junk.extend((0u8..=255).cycle().take(100_000));
    for (name, bytes) in [("long.toml", long), ("junk.toml", junk)] {
        p.file(name, &bytes);
        let (code, text) = run(&p, &["validate", name]);
        assert_eq!(code, Some(2), "{text}");
        assert!(
            text.len() < 10_000,
            "{name}: {} bytes of output",
            text.len()
        );
        assert!(text.contains("only part of it is shown"), "{name}: {text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{name}: control characters in:\n{text:?}"
        );
    }
}

// ---- template resource bombs ---------------------------------------------------------------

/// `validate` on a file whose `base.image` is `template`, in at most 1 GiB of address space.
fn validate_template(template: &str) -> (Option<i32>, String, Duration) {
    let p = Project::new();
    p.pipeline(&format!("[base]\nimage = '''{template}'''\n"));
    let start = Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" validate pipeline.toml")
        .arg(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(p.path())
        .output()
        .unwrap();
    (out.status.code(), output_text(&out), start.elapsed())
}

#[test]
fn template_bombs_give_a_diagnostic_within_a_second_in_bounded_memory() {
    let chain = format!("{{{{ 'a'{} }}}}", " ~ 'a'".repeat(100_000));
    let elifs = format!("{{% if 0 %}}{}{{% endif %}}", "{% elif 0 %}".repeat(50_000));
    let cases: Vec<(&str, &str)> = vec![
        (
            "{% set a = 'a'*50000 %}{{ [a]*50000 }}",
            "error[template-unsupported]",
        ),
        (
            "{{ [[[['x']*1000]*1000]*1000] }}",
            "error[template-unsupported]",
        ),
        ("{{ 'x' * 100000000 }}", "ran out of fuel"),
        (
            "{% set a = 'a'*50000 %}{{ ([a]*50000) ~ '' }}",
            "error[template-unsupported]",
        ),
        (
            "{% set a = 'a'*50000 %}{{ '%s'|format(a, a, a, a) }}",
            "unknown filter `format`",
        ),
        (
            "{% set a = 'a'*900000 %}{% set b = a ~ a ~ a %}{{ b ~ b ~ b ~ b }}",
            "ran out of fuel",
        ),
        (
            "{% macro f(n) %}{{ f(n-1) }}{{ f(n-1) }}{% endmacro %}{{ f(60) }}",
            "`{% macro` is not supported",
        ),
        (
            "{{ range(99999999)|length }}",
            "function calls are not supported",
        ),
        // minijinja's compiler recurses once per operator: these overflowed the stack.
        (&chain, "error[template-too-complex]"),
        (&elifs, "error[template-too-complex]"),
    ];
    for (template, expected) in cases {
        let (code, text, took) = validate_template(template);
        let shown: String = template.chars().take(80).collect();
        assert_eq!(code, Some(2), "{shown}: {text}");
        assert!(text.contains(expected), "{shown}: {text}");
        assert!(took < Duration::from_secs(5), "{shown} took {took:?}");
    }
}

#[test]
fn many_small_templates_share_one_budget() {
    let p = Project::new();
    let mut file = String::from("[base]\nimage = \"busybox\"\n");
    for _ in 0..2_000 {
        file.push_str("[[step]]\nrun = \"{{ 'a' * 60000 }}\"\n");
    }
    p.pipeline(&file);
    let start = Instant::now();
    let (code, text) = run(&p, &["validate", "pipeline.toml"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("no fuel is left"), "{text}");
}

#[test]
fn ordinary_templates_still_work() {
    let p = Project::new();
    p.pipeline(
        r#"
[vars]
arch = "arm64"
version = "1.2.3"

[base]
image = "busybox:{{ version | replace('.', '-') }}"

[[step]]
run = "echo {{ {'amd64': 'x86_64', 'arm64': 'aarch64'}[arch] }} {{ 'yes' if arch in ['amd64', 'arm64'] else 'no' }}"

[[step]]
run = "{% set major = version | first %}{% if major == '1' %}echo one{% else %}echo other{% endif %} {{ env.HOME | length > 0 }}"

[commit]
message = "{{ arch | upper }} {{ (version ~ '-' ~ arch) | title }} {{ env['HOME'] | default('x') }}"
"#,
    );
    let (code, text) = run(&p, &["validate", "pipeline.toml"]);
    assert_eq!(code, Some(0), "{text}");
}

// ---- the variable behind a secret is never templated ----------------------------------------

#[test]
fn templating_the_variable_behind_a_secret_is_a_located_diagnostic() {
    let p = Project::new();
    p.pipeline(
        r#"[base]
image = "busybox:latest"

[[step]]
run = "wget --header 'token: {{ env.PIPELINE_TEST_TOKEN }}' http://x/"
env = { T = "{{ env['PIPELINE_TEST_TOKEN'] }}" }

[secrets.token]
env = "PIPELINE_TEST_TOKEN"
"#,
    );
    for command in ["validate", "plan"] {
        let out = p
            .cmd(&[command, "pipeline.toml"])
            .env("PIPELINE_TEST_TOKEN", "hunter2-b7c1")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .timeout(Duration::from_secs(20))
            .output()
            .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {text}");
        assert_eq!(
            text.matches("error[secret-in-template]").count(),
            2,
            "{command}: {text}"
        );
        for expected in [
            "the template reads `PIPELINE_TEST_TOKEN`, the variable of secret `token`",
            "pipeline.toml:5:7",
            "pipeline.toml:6:13",
            "reads secret `token`",
            "secret `token` is read from `PIPELINE_TEST_TOKEN`",
            "hint: list the secret in the step, `secrets = [\"token\"]`, and read `/run/secrets/token`",
        ] {
            assert!(text.contains(expected), "{command}: no {expected:?} in:\n{text}");
        }
        assert!(!text.contains("hunter2-b7c1"), "{command}: {text}");
    }
}

// ---- validate looks at nothing outside the pipeline's folder -------------------------------

#[test]
fn paths_that_leave_the_folder_are_refused_without_probing_the_host() {
    let p = Project::new();
    std::os::unix::fs::symlink("/nonexistent-outside", p.path().join("out")).unwrap();
    std::os::unix::fs::symlink("..", p.path().join("up")).unwrap();
    p.pipeline(
        r#"[base]
image = "busybox:latest"

[[step]]
copy = { src = "../../nonexistent-outside/id_rsa", dest = "/a" }

[[step]]
copy = { src = "out/id_rsa", dest = "/b" }

[[step]]
copy = { src = "up/nonexistent", dest = "/c" }

[secrets.key]
file = "/nonexistent-outside/key"
"#,
    );
    let (code, text) = run(&p, &["validate", "pipeline.toml"]);
    assert_eq!(code, Some(2), "{text}");
    // "does not exist" would tell whether a file outside exists.
    assert_eq!(text.matches("error[path-escapes]").count(), 4, "{text}");
    assert!(!text.contains("does not exist"), "{text}");
}

// ---- read-only mounts stay inside the folder ----------------------------------------------

#[test]
fn a_mount_source_outside_the_folder_is_refused_without_looking_outside() {
    let p = Project::new();
    p.file("inside/vendor/a.txt", "a");
    std::os::unix::fs::symlink("/nonexistent-outside", p.path().join("inside/out")).unwrap();
    std::os::unix::fs::symlink("vendor", p.path().join("inside/ok")).unwrap();
    p.file(
        "inside/pipeline.toml",
        "[base]\nimage = \"busybox:latest\"\n[[step]]\nrun = \"true\"\nmounts = [\n  \
         { src = \"../\", dest = \"/a\" },\n  { src = \"/etc\", dest = \"/b\" },\n  \
         { src = \"out\", dest = \"/c\" },\n  { src = \"vendor/../..\", dest = \"/d\" },\n  \
         { src = \"ok\", dest = \"/e\" },\n]\n",
    );
    let (code, text) = run(&p, &["validate", "inside/pipeline.toml"]);
    assert_eq!(code, Some(2), "{text}");
    for src in ["../", "/etc", "out", "vendor/../.."] {
        assert!(
            text.contains(&format!(
                "mount source `{src}` is outside the pipeline's folder"
            )),
            "{src}:\n{text}"
        );
    }
    assert_eq!(text.matches("error[path-escapes]").count(), 4, "{text}");
    assert!(
        !text.contains("`ok`"),
        "a link inside the folder is fine:\n{text}"
    );
}
