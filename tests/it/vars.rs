//! Typed, declared variables: values given from outside are converted to the declared type,
//! unknown names are refused with a did-you-mean, undefined values can be tested and
//! defaulted, and tags can come from lists and conditions.

use std::path::Path;

use pipeline::config::{self, Overrides};
use pipeline::model::{Action, Command, Pipeline};

use crate::harness::{output_text, Project};

fn load(text: &str, overrides: &Overrides) -> Result<Pipeline, String> {
    config::load_str(Path::new("pipeline.toml"), text, Path::new("/"), overrides)
        .map_err(|d| format!("{d:#?}"))
}

fn vars(pairs: &[(&str, &str)]) -> Overrides {
    Overrides {
        vars: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Overrides::default()
    }
}

/// The first step's shell command.
fn command(p: &Pipeline) -> String {
    match &p.steps[0].action {
        Action::Run(Command::Shell(s)) => s.clone(),
        other => panic!("not a shell step: {other:?}"),
    }
}

const TYPED: &str = r#"[vars]
debug = false
jobs = 2
ratio = 0.5
name = "app"
arches = ["amd64", "arm64"]
registry = { type = "string" }
level = { type = "integer", default = 3, description = "how hard" }

[base]
image = "busybox"

[[step]]
run = "echo {{ debug }} {{ jobs + 1 }} {{ ratio }} {{ name }} {{ arches | join(',') }} {{ registry | default('none') }} {{ level }}{% if debug %} DEBUG{% endif %}"
"#;

#[test]
fn declared_types_convert_the_values_given_on_the_command_line() {
    let table: [(&[(&str, &str)], &str); 4] = [
        (&[], "echo false 3 0.5 app amd64,arm64 none 3"),
        (
            &[("debug", "true"), ("jobs", "7"), ("ratio", "2")],
            "echo true 8 2.0 app amd64,arm64 none 3 DEBUG",
        ),
        (
            &[
                ("arches", "riscv64"),
                ("registry", "r:5000"),
                ("level", "9"),
            ],
            "echo false 3 0.5 app riscv64 r:5000 9",
        ),
        (
            &[("arches", "[\"a\", \"b,c\"]"), ("name", "true")],
            "echo false 3 0.5 true a,b,c none 3",
        ),
    ];
    for (given, expected) in table {
        let p = load(TYPED, &vars(given)).unwrap_or_else(|e| panic!("{given:?}: {e}"));
        assert_eq!(command(&p), expected, "{given:?}");
    }
}

#[test]
fn a_value_that_does_not_fit_its_type_is_located_at_the_declaration() {
    for (name, value, expected) in [
        (
            "debug",
            "maybe",
            "`--var debug=maybe`: `debug` is a bool, and `maybe` is not `true` or `false`",
        ),
        (
            "jobs",
            "2.5",
            "`jobs` is an integer, and `2.5` is not an integer",
        ),
        ("ratio", "x", "`ratio` is a number, and `x` is not a number"),
        ("level", "high", "`level` is an integer"),
    ] {
        let e = load(TYPED, &vars(&[(name, value)])).expect_err(name);
        assert!(e.contains("VarType"), "{name}: {e}");
        assert!(e.contains(expected), "{name}: {e}");
        let line = TYPED.lines().position(|l| l.starts_with(name)).unwrap();
        let at = TYPED.lines().take(line).map(|l| l.len() + 1).sum::<usize>();
        let start = at + name.len() + 3;
        assert!(
            e.contains(&format!("{start}..")),
            "{name}: not at its declaration ({start}): {e}"
        );
    }
}

#[test]
fn values_from_var_files_and_the_environment_are_typed_and_ordered() {
    let p = Project::new();
    p.pipeline(TYPED);
    p.file("ci.toml", "debug = true\njobs = 5\n");
    p.file("bad.toml", "debug = \"yes\"\n");
    let out = p
        .cmd(&[
            "plan",
            "--resolved",
            "--var-file",
            "ci.toml",
            "--var",
            "jobs=6",
            "pipeline.toml",
        ])
        .env("PIPELINE_VAR_name", "from-env")
        .env("PIPELINE_VAR_jobs", "4")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("run = \"echo true 7 0.5 from-env"), "{text}");
    assert!(text.contains("debug = true  # ci.toml:1"), "{text}");
    assert!(text.contains("jobs = 6  # --var"), "{text}");
    assert!(
        text.contains("name = \"from-env\"  # PIPELINE_VAR_name"),
        "{text}"
    );
    let out = p
        .cmd(&["validate", "--var-file", "bad.toml", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains(
            "error[var-type]: `bad.toml` line 1: `debug` is a bool, and a string is not a bool"
        ),
        "{text}"
    );
    let out = p
        .cmd(&["validate", "pipeline.toml"])
        .env("PIPELINE_VAR_jobs", "many")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("`PIPELINE_VAR_jobs=many`"), "{text}");
}

#[test]
fn a_value_for_an_undeclared_name_is_an_error_with_a_did_you_mean() {
    let p = Project::new();
    p.pipeline("[vars]\nversion = \"1.0\"\n[base]\nimage = \"busybox:{{ version }}\"\n");
    p.file("vars.toml", "version = \"2.0\"\nverison = \"3.0\"\n");
    for (args, env, expected) in [
        (
            vec!["--var", "verison=3.0"],
            None,
            "error[unknown-variable]: `--var verison=3.0`: no pipeline declares a variable `verison`",
        ),
        (vec!["--var-file", "vars.toml"], None, "vars.toml:2:1"),
        (
            vec![],
            Some(("PIPELINE_VAR_verison", "3.0")),
            "`PIPELINE_VAR_verison=3.0`: no pipeline declares",
        ),
    ] {
        let mut all = vec!["validate"];
        all.extend(args);
        all.push("pipeline.toml");
        let mut cmd = p.cmd(&all);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains(expected), "lacks `{expected}`:\n{text}");
        assert!(text.contains("did you mean `version`?"), "{text}");
    }
    // A name another file of the run declares is fine.
    p.file(
        "other.toml",
        "[vars]\nverison = \"x\"\n[base]\nimage = \"busybox:{{ verison }}\"\n",
    );
    let out = p
        .cmd(&[
            "validate",
            "--var",
            "verison=3.0",
            "pipeline.toml",
            "other.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

#[test]
fn default_is_defined_and_if_work_with_undefined_values() {
    let base = "[vars]\nopt = { type = \"string\" }\nversion = \"1\"\n[base]\nimage = \"busybox\"\n[[step]]\n";
    let ok = [
        (
            r#"run = "echo {{ env.PIPELINE_TEST_SURELY_UNSET | default('none') }}""#,
            "echo none",
        ),
        (
            r#"run = "echo {{ env.PIPELINE_TEST_SURELY_UNSET | d('x') }}""#,
            "echo x",
        ),
        (
            r#"run = "echo {% if env.PIPELINE_TEST_SURELY_UNSET is defined %}set{% else %}unset{% endif %}""#,
            "echo unset",
        ),
        (
            r#"run = "echo {% if env.PIPELINE_TEST_SURELY_UNSET %}set{% endif %}.""#,
            "echo .",
        ),
        (r#"run = "echo {{ opt | default(version) }}""#, "echo 1"),
        (
            r#"run = "echo {{ 'yes' if opt is defined else 'no' }}""#,
            "echo no",
        ),
        (
            r#"run = "echo {% if opt %}{{ opt }}{% endif %}.""#,
            "echo .",
        ),
    ];
    for (step, expected) in ok {
        let p = load(&format!("{base}{step}\n"), &Overrides::default())
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(command(&p), expected, "{step}");
    }
    for (step, message, hint) in [
        (
            r#"run = "echo {{ opt }}""#,
            "undefined variable `opt`",
            "declared without a value: pass `--var opt=VALUE`",
        ),
        (
            r#"run = "echo {{ env.PIPELINE_TEST_SURELY_UNSET }}""#,
            "undefined variable `env.PIPELINE_TEST_SURELY_UNSET`",
            "is not set",
        ),
        (
            r#"run = "echo {{ verison }}""#,
            "undefined variable `verison`",
            "did you mean `version`?",
        ),
        (
            r#"run = "echo {% if nope is defined %}x{% endif %}""#,
            "undefined variable `nope`",
            "declare it under [vars]",
        ),
    ] {
        let e = load(&format!("{base}{step}\n"), &Overrides::default()).expect_err(step);
        assert!(
            e.contains("UndefinedVariable") && e.contains(message),
            "{step}: {e}"
        );
        assert!(e.contains(hint), "{step}: {e}");
    }
}

#[test]
fn list_variables_expand_into_tags_and_empty_tags_are_left_out() {
    let text = r#"[vars]
versions = ["1.2", "1.2.3"]
branch = "dev"
[base]
image = "busybox"
[commit]
tags = ["app:{{ branch }}", "{% if branch == 'main' %}app:latest{% endif %}"]
[[publish]]
repository = "localhost:5000/app"
tags = ["{{ versions }}", "{% if branch == 'main' %}latest{% endif %}"]
[[publish]]
repository = "localhost:5000/nightly"
tags = ["{% if branch == 'main' %}nightly{% endif %}"]
"#;
    let p = load(text, &Overrides::default()).unwrap();
    let tags: Vec<String> = p.commit.tags.iter().map(ToString::to_string).collect();
    assert_eq!(tags, ["app:dev"]);
    assert_eq!(
        p.publish.len(),
        1,
        "a target with every tag empty pushes nothing"
    );
    assert_eq!(p.publish[0].tags, ["1.2", "1.2.3"]);
    let p = load(text, &vars(&[("branch", "main"), ("versions", "2")])).unwrap();
    assert_eq!(p.commit.tags.len(), 2);
    assert_eq!(p.publish[0].tags, ["2", "latest"]);
    assert_eq!(p.publish[1].tags, ["nightly"]);
    // Elsewhere a list is consumed at once, never printed.
    let e = load(
        "[vars]\npkgs = [\"a\"]\n[base]\nimage = \"busybox\"\n[[step]]\nrun = \"apt-get install {{ pkgs }}\"\n",
        &Overrides::default(),
    )
    .expect_err("a list printed");
    assert!(e.contains("`pkgs` is a list"), "{e}");
    assert!(e.contains("join"), "{e}");
}
