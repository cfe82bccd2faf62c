//! The config language: located diagnostics for every mistake at once, the committed JSON
//! Schema, and no panic or hang on any input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline::config::{self, Overrides};
use pipeline::diag::Report;

use crate::harness::{copy_dir, output_text, Project};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `examples/*/pipeline.toml`, sorted.
fn examples() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path().join("pipeline.toml"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no examples/*/pipeline.toml found");
    found
}

/// Every `tests/it/bad/*.toml`, sorted.
fn bad_files() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join("tests/it/bad"))
        .expect("tests/it/bad/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    found.sort();
    found
}

/// The rendered diagnostics of one bad file, with the path shown as `bad/NAME.toml` and the
/// folder as `[DIR]`, so that the text is the same on every machine.
fn rendered(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    match config::load(path, &Overrides::default()) {
        Ok(_) => panic!("{} is valid, but it is meant to be bad", path.display()),
        Err(mut report) => {
            report.file = format!("bad/{name}");
            let dir = path.parent().unwrap().canonicalize().unwrap();
            report.render().replace(&dir.display().to_string(), "[DIR]")
        }
    }
}

// ---- 1. every mistake at once, located ------------------------------------------------

#[test]
fn three_mistakes_give_three_located_diagnostics_in_one_run() {
    let file = root().join("tests/it/bad/three-mistakes.toml");
    let out = assert_cmd::Command::cargo_bin("pipeline")
        .unwrap()
        .args(["validate", file.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error[")).collect();
    assert_eq!(errors.len(), 3, "expected 3 diagnostics:\n{stderr}");
    for (code, at, hint) in [
        (
            "error[unknown-key]",
            "three-mistakes.toml:4:1",
            "did you mean `pull`?",
        ),
        (
            "error[invalid-type]",
            "three-mistakes.toml:10:8",
            "[\"latest\"]",
        ),
        (
            "error[undefined-variable]",
            "three-mistakes.toml:7:7",
            "--var greting=VALUE",
        ),
    ] {
        assert!(stderr.contains(code), "no {code} in:\n{stderr}");
        assert!(stderr.contains(at), "no location {at} in:\n{stderr}");
        assert!(stderr.contains(hint), "no hint {hint} in:\n{stderr}");
    }
    // The source line with a marker under the span.
    assert!(
        stderr.contains("tags = \"latest\"\n   │        ^^^^^^^^"),
        "{stderr}"
    );
}

#[test]
fn every_bad_file_fails_with_coded_located_diagnostics() {
    for file in bad_files() {
        let Err(report) = config::load(&file, &Overrides::default()) else {
            panic!("{} should not validate", file.display())
        };
        assert!(!report.diagnostics.is_empty());
        for d in &report.diagnostics {
            assert!(
                d.span.is_some(),
                "{}: diagnostic without a location: {d:?}",
                file.display()
            );
        }
    }
}

#[test]
fn the_codes_the_issue_lists_are_all_covered() {
    let mut codes = std::collections::BTreeSet::new();
    for file in bad_files() {
        if let Err(r) = config::load(&file, &Overrides::default()) {
            codes.extend(r.diagnostics.iter().map(|d| d.code.as_str()));
        }
    }
    for code in [
        "toml-syntax",
        "unknown-key",
        "invalid-type",
        "missing-key",
        "invalid-value",
        "step-action",
        "empty-tags",
        "invalid-reference",
        "invalid-tag",
        "duplicate-target",
        "incomplete-credentials",
        "path-not-found",
        "path-escapes",
        "invalid-env-name",
        "invalid-port",
        "undefined-variable",
        "template-syntax",
    ] {
        assert!(
            codes.contains(code),
            "no bad file produces `{code}`: {codes:?}"
        );
    }
}

#[test]
fn structural_mistakes_hide_no_other_problem_and_a_misspelt_key_is_one_error() {
    let report = config::load(
        &root().join("tests/it/bad/phases.toml"),
        &Overrides::default(),
    )
    .expect_err("phases.toml is bad");
    let codes: Vec<&str> = report.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "unknown-key",
            "invalid-value",
            "unknown-key",
            "unknown-key",
            "undefined-variable",
            "invalid-duration",
            "invalid-reference",
            "tag-in-repository",
        ],
        "{}",
        report.render()
    );
    let text = report.render();
    assert!(text.contains("did you mean `image`?"), "{text}");
    assert!(text.contains("did you mean `dest`?"), "{text}");
    // Before the first syntax error, the semantic checks run too.
    let parsed = config::load_str(
        Path::new("pipeline.toml"),
        "[base]\nimage = \"debian:{{ tag }\"\n[[step]]\nrun = = \"x\"\n",
        &root(),
        &Overrides::default(),
    )
    .expect_err("syntax error");
    let codes: Vec<&str> = parsed.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["toml-syntax", "toml-syntax", "template-syntax"]);
}

#[test]
fn plan_and_apply_validate_first_and_stop_on_errors() {
    let file = root().join("tests/it/bad/three-mistakes.toml");
    for cmd in ["plan", "apply"] {
        let out = assert_cmd::Command::cargo_bin("pipeline")
            .unwrap()
            .args([cmd, file.to_str().unwrap()])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {text}");
        assert_eq!(text.matches("error[").count(), 3, "{cmd}: {text}");
    }
}

#[test]
fn references_outside_the_distribution_grammar_are_located_validate_errors() {
    let p = Project::new();
    p.pipeline(
        "[base]\nimage = \"busybox\"\n[commit]\ntags = [\"ux/a..b:1\"]\n[[publish]]\nrepository = \"localhost:5000/A/b\"\ntags = [\"-x\"]\n",
    );
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        text.matches("error[invalid-reference]").count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches("error[invalid-tag]").count(), 1, "{text}");
    assert!(text.contains("pipeline.toml:4:9"), "{text}");
    assert!(text.contains("must be lowercase"), "{text}");
}

#[test]
fn the_full_image_config_is_checked() {
    let p = Project::new();
    p.pipeline(
        r#"[base]
image = "busybox"
[commit.config]
stop_signal = "SIGNOPE"
shell = []
onbuild = ["FROM x", "RUN make", "BOGUS y"]
healthcheck = { test = "true", interval = "soon", retries = -1 }
"#,
    );
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for code in [
        "error[invalid-signal]",
        "error[empty-command]",
        "error[invalid-duration]",
        "error[invalid-value]",
    ] {
        assert!(text.contains(code), "{code}: {text}");
    }
    assert_eq!(text.matches("error[invalid-onbuild]").count(), 2, "{text}");
    p.pipeline(
        r#"[base]
image = "busybox"
[commit.config]
stop_signal = "term"
shell = ["/bin/bash", "-c"]
onbuild = ["RUN make"]
healthcheck = { test = "none" }
"#,
    );
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn hints_use_the_value_written_and_messages_are_the_tools_own() {
    let p = Project::new();
    p.pipeline(
        "[base]\nimage = \"busybox\"\n[[step]]\nrun = \"true\"\ntimeout = \"5 minuts\"\n[commit.config]\nvolumes = \"/data\"\n",
    );
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("e.g. `[\"/data\"]`"), "{text}");
    assert!(
        !text.contains("latest"),
        "a hint copied from elsewhere: {text}"
    );
    assert!(text.contains("unknown unit `minuts`"), "{text}");
    assert!(
        !text.contains("few variations"),
        "the parser's own text leaked: {text}"
    );
}

#[test]
fn diagnostics_are_coloured_on_a_terminal_unless_no_color() {
    let p = Project::new();
    p.pipeline("[base]\nimage = \"busybox\"\npul = \"always\"\n");
    let out = p
        .cmd(&["--progress", "tty", "validate", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("\u{1b}["), "no colour on a terminal: {text}");
    let out = p
        .cmd(&["--progress", "tty", "validate", "pipeline.toml"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(
        text.contains("error[unknown-key]") && !text.contains("\u{1b}["),
        "{text}"
    );
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    assert!(
        !output_text(&out).contains("\u{1b}["),
        "colour in plain mode"
    );
}

#[test]
fn the_report_is_written_when_the_file_is_invalid() {
    let file = root().join("tests/it/bad/three-mistakes.toml");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = assert_cmd::Command::cargo_bin("pipeline")
        .unwrap()
        .args([
            "apply",
            "--report",
            report.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written")).unwrap();
    assert_eq!(r["status"], "failed", "{r:#}");
    assert_eq!(r["exit_code"], 2, "{r:#}");
    let problems = r["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(problems.len(), 3, "{r:#}");
    assert!(
        problems.iter().all(|p| p["line"].as_u64().is_some()
            && p["code"].as_str().is_some()
            && p["file"].as_str().unwrap().ends_with("three-mistakes.toml")),
        "{r:#}"
    );
}

#[test]
fn a_missing_password_variable_is_named_before_anything_runs() {
    let p = Project::new();
    p.pipeline(
        r#"
[base]
image = "busybox:latest"

[[step]]
run = "true"

[[publish]]
repository = "localhost:5000/app"
tags = ["1"]
username = "ci"
password_env = "PIPELINE_TEST_UNSET_PASSWORD"
"#,
    );
    let out = p
        .cmd(&["plan", "pipeline.toml"])
        .env_remove("PIPELINE_TEST_UNSET_PASSWORD")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("PIPELINE_TEST_UNSET_PASSWORD"), "{text}");
}

#[test]
fn vars_come_from_the_file_var_files_and_the_command_line() {
    let p = Project::new();
    p.pipeline(
        r#"
[vars]
release = "bookworm"
greeting = { type = "string" }
who = { type = "string" }
version = { type = "integer" }

[base]
image = "debian:{{ release }}"

[[step]]
run = "echo {{ greeting }} {{ who }}"

[commit]
tags = ["app:{{ version }}"]
"#,
    );
    p.file("vars.toml", "greeting = \"hi\"\nversion = 3\n");
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("undefined variables `greeting` and `who`"),
        "{text}"
    );
    assert!(text.contains("undefined variable `version`"), "{text}");
    p.cmd(&[
        "validate",
        "--var-file",
        "vars.toml",
        "--var",
        "who=world",
        "pipeline.toml",
    ])
    .assert()
    .code(0);
}

#[test]
fn environment_variables_only_through_env() {
    let p = Project::new();
    p.pipeline("[base]\nimage = \"debian:{{ PIPELINE_TEST_TAG }}\"\n[[step]]\nrun = \"true\"\n");
    let out = p
        .cmd(&["validate", "pipeline.toml"])
        .env("PIPELINE_TEST_TAG", "bookworm")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    p.pipeline(
        "[base]\nimage = \"debian:{{ env.PIPELINE_TEST_TAG }}\"\n[[step]]\nrun = \"true\"\n",
    );
    p.cmd(&["validate", "pipeline.toml"])
        .env("PIPELINE_TEST_TAG", "bookworm")
        .assert()
        .code(0);
}

// ---- 3. the JSON Schema ---------------------------------------------------------------

#[test]
fn the_committed_schema_is_the_binarys() {
    let committed =
        std::fs::read_to_string(root().join("schemas/pipeline.schema.json")).unwrap_or_default();
    assert!(
        committed == pipeline::schema_json(),
        "schemas/pipeline.schema.json is stale: run `cargo run -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn every_example_has_a_schema_line_validates_against_the_schema_and_loads() {
    let schema: serde_json::Value = serde_json::from_str(&pipeline::schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    for example in examples() {
        let text = std::fs::read_to_string(&example).unwrap();
        assert!(
            text.starts_with("#:schema "),
            "{} does not start with a `#:schema` line",
            example.display()
        );
        let value: toml::Value = toml::from_str(&text).unwrap();
        let json = serde_json::to_value(&value).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not match the schema:\n{}",
            example.display(),
            errors.join("\n")
        );
        if let Err(report) = config::load(&example, &Overrides::default()) {
            panic!(
                "{} does not validate:\n{}",
                example.display(),
                report.render()
            );
        }
    }
}

#[test]
fn the_schema_rejects_what_validate_rejects_structurally() {
    let schema: serde_json::Value = serde_json::from_str(&pipeline::schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for bad in [
        "[base]\nimage = \"a\"\n[[step]]\nrnu = \"x\"\n",
        "[base]\nimage = \"a\"\n[commit]\ntags = \"latest\"\n",
        "[base]\nimage = \"a\"\npull = \"sometimes\"\n",
        "[[step]]\nrun = \"x\"\n",
    ] {
        let json = serde_json::to_value(toml::from_str::<toml::Value>(bad).unwrap()).unwrap();
        assert!(!validator.is_valid(&json), "the schema accepts:\n{bad}");
        assert!(
            !config::parse(bad).diagnostics.is_empty(),
            "validate accepts:\n{bad}"
        );
    }
}

// ---- 5. snapshots of rendered diagnostics -----------------------------------------------

#[test]
fn rendered_diagnostics_of_bad_files() {
    for file in bad_files() {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(name, rendered(&file));
    }
}

// ---- 4. no panic, no hang -----------------------------------------------------------------

/// A small deterministic generator (xorshift), so the mangled cases are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mangled copies of `source`: deleted bytes, stray brackets and braces, `{{`, invalid UTF-8,
/// NUL, truncation, duplicated lines.
fn mangle(source: &[u8], rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    const INSERTS: &[&[u8]] = &[
        b"[",
        b"]",
        b"{",
        b"}",
        b"[[",
        b"]]",
        b"{{",
        b"}}",
        b"{%",
        b"%}",
        b"\"",
        b"'",
        b"=",
        b"\0",
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"\n",
        b"#",
        b".",
        b"\\",
        b"{{ x }}",
        b"{{ env. }}",
        b"[step]",
        b"[[step]]",
        b"\"\"\"",
        b"1e999",
        b"-",
        b"\r",
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let mut s = source.to_vec();
        let edits = 1 + rng.below(4);
        for _ in 0..edits {
            if s.is_empty() {
                break;
            }
            let at = rng.below(s.len());
            match (i + rng.below(5)) % 5 {
                0 => {
                    let len = 1 + rng.below(12);
                    s.drain(at..(at + len).min(s.len()));
                }
                1 | 2 => {
                    let ins = INSERTS[rng.below(INSERTS.len())];
                    s.splice(at..at, ins.iter().copied());
                }
                3 => s.truncate(at),
                _ => {
                    // Duplicate a line somewhere else.
                    let start = s[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    let end = s[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(s.len(), |p| at + p + 1);
                    let line = s[start..end].to_vec();
                    let to = rng.below(s.len());
                    s.splice(to..to, line);
                }
            }
        }
        out.push(s);
    }
    out
}

/// Inputs that once broke the loader (found by the fuzzer or by hand); each must give a
/// diagnostic, not a panic.
const REGRESSIONS: &[&str] = &[
    "",
    "\0",
    "[",
    "{{",
    "[base]\nimage = \"{{\"\n",
    "[base]\nimage = \"{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}\"\n",
    // Exponential recursion: only the template fuel limit stops it.
    "[base]\nimage = \"{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}\"\n",
    "[base]\nimage = \"a\"\n[vars]\nx = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
    "[base]\nimage = \"a\"\n[[step]]\ncopy = { src = \"\", dest = \"/\" }\n",
    "[base]\nimage = \"a\"\n[[step]]\ncopy = { src = \"/\", dest = \"\" }\n",
    "[base]\nimage = \"a\"\n[[step]]\nrun = []\n",
    "[base]\nimage = \"a\"\n[[step]]\nrun = [\"\"]\n",
    "[base]\nimage = \"\"\n",
    "[base]\nimage = \"a\"\n[commit.config]\nexpose = [-1, 9223372036854775807, \"/\", \"1/\"]\n",
    "[base]\nimage = \"a\"\n[secrets.x]\n[[step]]\nrun = \"x\"\nsecrets = [\"x\", \"y\"]\n",
    "[base]\nimage = \"a\"\n[cache]\ncheckpoint_after = \"0s\"\n",
    "[base]\nimage = \"a\"\n[[step]]\nrun = \"x\"\ntimeout = \"99999999999999999999h\"\n",
    "base = 1\nstep = 2\npublish = {}\n",
    "[base]\nimage = 2024-01-01\n[vars]\nd = 1979-05-27T07:32:00Z\n",
    "[base]\nimage = \"a\"\n[[publish]]\nrepository = \"{{ 'x' * 3 }}\"\ntags = [\"é\"]\n",
    // Template bombs: a lazily repeated list printed (GBs), nested repetition (minutes), a
    // huge string at once.
    "[base]\nimage = \"{% set a = 'a'*50000 %}{{ [a]*50000 }}\"\n",
    "[base]\nimage = \"{{ [[[['x']*1000]*1000]*1000] }}\"\n",
    "[base]\nimage = \"{{ 'x' * 100000000 }}\"\n",
];

/// Loads `bytes` as a pipeline file in `dir` with the library, as `validate` does.
fn load_bytes(dir: &Path, bytes: &[u8]) -> Result<(), Report> {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, bytes).unwrap();
    config::load(&path, &Overrides::default()).map(|_| ())
}

#[test]
fn mangled_examples_give_diagnostics_never_a_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for example in examples() {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(example.parent().unwrap(), tmp.path());
        let source = std::fs::read(&example).unwrap();
        let mut cases = mangle(&source, &mut rng, 120);
        cases.extend(REGRESSIONS.iter().map(|s| s.as_bytes().to_vec()));
        for case in cases {
            let shown = String::from_utf8_lossy(&case).into_owned();
            let outcome = std::panic::catch_unwind(|| {
                load_bytes(tmp.path(), &case).map_err(|r| (r.diagnostics.len(), r.render()))
            });
            match outcome {
                Err(_) => panic!("the loader panicked on:\n{shown}"),
                Ok(Err((n, text))) => {
                    assert!(
                        n > 0 && text.contains("error["),
                        "no diagnostic for:\n{shown}"
                    )
                }
                Ok(Ok(())) => {}
            }
        }
    }
}

#[test]
fn mangled_examples_through_the_binary_exit_0_or_2() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for example in examples() {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(example.parent().unwrap(), tmp.path());
        let source = std::fs::read(&example).unwrap();
        let mut cases = mangle(&source, &mut rng, 10);
        cases.extend(REGRESSIONS.iter().take(8).map(|s| s.as_bytes().to_vec()));
        for case in cases {
            std::fs::write(tmp.path().join("pipeline.toml"), &case).unwrap();
            let out = assert_cmd::Command::cargo_bin("pipeline")
                .unwrap()
                .current_dir(tmp.path())
                .args(["validate", "pipeline.toml"])
                .timeout(Duration::from_secs(20))
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&case);
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => {}
                Some(2) => assert!(stderr.contains("error["), "exit 2 without a diagnostic for:\n{shown}\n{stderr}"),
                other => panic!("exit {other:?} (101 is a panic, None a timeout/signal) for:\n{shown}\n{stderr}"),
            }
        }
    }
}

#[test]
fn step_container_options_are_checked_with_located_hints() {
    let p = Project::new();
    p.file("vendor/a.txt", "a");
    p.file("notes.txt", "n");
    p.file("token", "t");
    p.pipeline(
        r#"[base]
image = "busybox:latest"

[secrets.TOKEN]
file = "token"

[[step]]
run = "true"
cache = ["var/cache", "/var/cache/apt", { path = "/var/cache/apt/archives", sharing = "lockd" }]
mounts = [{ src = "notes.txt", dest = "/notes" }, { src = "vendor", dest = "/src/./vendor" }]
tmpfs = ["/run", "/"]
network = "nne"

[[step]]
copy = { src = "vendor", dest = "/vendor" }
cache = ["/root/.cache"]

[[step]]
run = "true"
cache = [{ path = "/x", mode = "0700" }]
tmpfs = ["/scratch", "/scratch/"]
"#,
    );
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for expected in [
        "error[relative-path]: cache path `var/cache` must be an absolute path",
        "error[invalid-value]: `lockd` is not a valid value",
        "did you mean `locked`?",
        "error[mount-not-folder]: mount source `notes.txt` is not a folder",
        "error[invalid-destination]: mount destination `/src/./vendor` holds a `.` segment",
        "write the plain path `/src/vendor`",
        "error[invalid-destination]: tmpfs path cannot be `/`",
        "error[mount-overlap]: `/run` overlaps `/run/secrets`, where secrets are placed",
        "error[invalid-value]: `nne` is not a valid value",
        "did you mean `none`?",
        "error[step-option]: `cache` applies to `run` steps only",
        "error[unknown-key]: unknown key `mode`",
        "error[mount-overlap]: `/scratch` is mounted twice",
    ] {
        assert!(text.contains(expected), "lacks `{expected}`:\n{text}");
    }
    assert!(
        text.contains("mount points `/var/cache/apt` and"),
        "nested cache paths overlap:\n{text}"
    );
}

#[test]
fn image_settings_are_checked_with_located_diagnostics() {
    let load = |text: &str| {
        config::load_str(
            Path::new("pipeline.toml"),
            text,
            &root(),
            &Overrides::default(),
        )
    };
    let ok = load(
        "[base]\nimage = \"busybox\"\n[image]\ncompression = \"zstd\"\nlevel = 19\nreproducible = true\nepoch = 1700000000\n",
    )
    .expect("valid");
    assert_eq!(
        ok.image.compression,
        pipeline::model::LayerCompression::Zstd
    );
    assert_eq!(ok.image.level, Some(19));
    assert_eq!(ok.image.epoch, Some(1_700_000_000));
    assert!(ok.image.reproducible);
    let defaults = load("[base]\nimage = \"busybox\"\n").expect("valid");
    assert_eq!(defaults.image, pipeline::model::ImageSettings::default());
    let bad = load("[base]\nimage = \"busybox\"\n[image]\nlevel = 10\nepoch = -1\n")
        .expect_err("gzip has no level 10");
    let codes: Vec<&str> = bad.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["invalid-image-setting", "invalid-image-setting"]);
    let text = format!("{bad:?}");
    assert!(text.contains("level 10 is outside gzip's levels"), "{text}");
    let unknown = load("[base]\nimage = \"busybox\"\n[image]\ncompression = \"brotli\"\n")
        .expect_err("no brotli");
    assert_eq!(unknown[0].code.as_str(), "invalid-value", "{unknown:?}");
}

// ---- remote cache keys ----------------------------------------------------------------------

#[test]
fn keygen_prints_a_secret_on_stdout_and_the_verify_key_line_for_the_file() {
    let project = Project::new();
    let out = project.cmd(&["keygen"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let secret = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        secret.lines().count(),
        1,
        "only the secret on stdout: {secret}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("verify_key = \"ed25519:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        !stderr.contains(secret.trim()),
        "the secret only once: {stderr}"
    );
    // The line is valid in a file, and two runs make two key pairs.
    project.pipeline(&format!(
        "[base]\nimage = \"busybox:latest\"\n[[step]]\nrun = \"true\"\n\
         [cache]\nremote = \"registry.example.com/team/cache\"\n{line}\n\
         signing_key_env = \"CACHE_KEY\"\n"
    ));
    let out = project
        .cmd(&["validate", "pipeline.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let again = project.cmd(&["keygen"]).output().unwrap();
    assert_ne!(again.stdout, out.stdout);
    assert_ne!(String::from_utf8_lossy(&again.stdout), secret);
}

#[test]
fn outputs_stay_inside_the_pipelines_folder_and_need_a_type_and_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::os::unix::fs::symlink("/tmp", root.join("out")).unwrap();
    let load = |text: &str| {
        config::load_str(
            Path::new("pipeline.toml"),
            text,
            &root,
            &Overrides::default(),
        )
    };
    let ok = load(
        "[base]\nimage = \"busybox\"\n[[output]]\ntype = \"tar\"\npath = \"build/app.tar\"\n[[output]]\ntype = \"oci\"\npath = \"build/app\"\n",
    )
    .expect("valid");
    let outputs: Vec<String> = ok.outputs.iter().map(ToString::to_string).collect();
    assert_eq!(
        outputs,
        [
            format!("tar:{}", root.join("build/app.tar").display()),
            format!("oci:{}", root.join("build/app").display())
        ]
    );
    for (path, why) in [
        ("../app.tar", "a `..`"),
        ("/tmp/app.tar", "an absolute path"),
        ("out/app.tar", "a symlink out of the folder"),
        ("./app.tar", "a `.`"),
    ] {
        let bad = load(&format!(
            "[base]\nimage = \"busybox\"\n[[output]]\ntype = \"tar\"\npath = \"{path}\"\n"
        ))
        .expect_err(why);
        assert_eq!(bad[0].code.as_str(), "invalid-output", "{why}: {bad:?}");
        assert!(bad[0].span.is_some(), "{why}: located");
    }
    let missing =
        load("[base]\nimage = \"busybox\"\n[[output]]\ntype = \"tar\"\n").expect_err("no path");
    assert_eq!(missing[0].code.as_str(), "missing-key", "{missing:?}");
    let kind = load("[base]\nimage = \"busybox\"\n[[output]]\ntype = \"zip\"\npath = \"a\"\n")
        .expect_err("no zip");
    assert_eq!(kind[0].code.as_str(), "invalid-value", "{kind:?}");
}
