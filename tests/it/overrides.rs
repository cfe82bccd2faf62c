//! `--set PATH=VALUE` over any key of the file, and `plan --resolved`, which prints the files
//! as the tool reads them with where each value came from.

use std::path::Path;

use pipeline::config::{self, Overrides};
use pipeline::model::{Action, Command};

use crate::harness::{output_text, Project};

const FILE: &str = r#"[vars]
version = "1.0"
debug = false
also = ["stable"]

[base]
image = "debian:bookworm"

[[step]]
name = "build"
run = "make VERSION={{ version }}{% if debug %} DEBUG=1{% endif %}"

[[step]]
run = "true"

[commit]
tags = ["app:{{ version }}"]

[commit.config]
labels = { "org.opencontainers.image.version" = "{{ version }}" }

[[publish]]
repository = "localhost:5000/app"
tags = ["{{ version }}", "{{ also }}", "{% if debug %}debug{% endif %}"]
"#;

fn sets(pairs: &[(&str, &str)]) -> Overrides {
    Overrides {
        sets: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Overrides::default()
    }
}

fn load(o: &Overrides) -> Result<pipeline::model::Pipeline, Vec<pipeline::diag::Diagnostic>> {
    config::load_str(Path::new("pipeline.toml"), FILE, Path::new("/"), o)
}

#[test]
fn set_changes_any_key_typed_by_the_schema() {
    let p = load(&sets(&[
        ("base.image", "debian:trixie"),
        ("step.0.run", "make {{ version }} check"),
        ("step.1.checkpoint", "true"),
        ("image.level", "9"),
        ("commit.config.labels.\"org.example.team\"", "core"),
        ("publish.0.tags", "[\"2\", \"latest\"]"),
        ("name", "123"),
        (
            "commit.config.healthcheck",
            "{ test = [\"CMD\", \"true\"] }",
        ),
    ]))
    .unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(p.base.image.to_string(), "debian:trixie");
    assert_eq!(
        p.steps[0].action,
        Action::Run(Command::Shell("make 1.0 check".into()))
    );
    assert_eq!(p.steps[1].checkpoint, Some(true));
    assert_eq!(p.image.level, Some(9));
    assert_eq!(p.commit.config.labels["org.example.team"], "core");
    assert_eq!(
        p.commit.config.labels["org.opencontainers.image.version"],
        "1.0"
    );
    assert_eq!(p.publish[0].tags, ["2", "latest"]);
    assert_eq!(p.name, "123");
    assert_eq!(p.commit.config.healthcheck.unwrap().test, ["CMD", "true"]);
}

#[test]
fn a_set_that_does_not_fit_names_the_flag() {
    for (path, value, expected) in [
        (
            "base.imag",
            "x",
            "`--set base.imag=x`: `base` has no key `imag`: did you mean `image`?",
        ),
        (
            "step.5.run",
            "x",
            "`--set step.5.run=x`: `step` has 2 items (indexes start at 0)",
        ),
        (
            "image.level",
            "high",
            "`--set image.level=high`: `image.level` must be an integer, not a string",
        ),
        (
            "step.0.checkpoint",
            "maybe",
            "`--set step.0.checkpoint=maybe`",
        ),
        (
            "base.pull",
            "sometimes",
            "`--set base.pull=sometimes`: `sometimes` is not a valid value",
        ),
        ("base.image", "Debian", "`--set base.image=Debian`"),
        (
            "vars.version",
            "2",
            "variables are given with `--var NAME=VALUE`",
        ),
        ("step.0", "x", "is a whole item"),
    ] {
        let d = load(&sets(&[(path, value)])).expect_err(path);
        let text = format!("{d:?}");
        assert!(
            text.contains(expected),
            "{path}: lacks `{expected}`: {text}"
        );
        assert!(
            d.iter()
                .all(|d| d.span.is_none() || !d.message.contains("--set")),
            "{path}: a --set problem points into the file: {d:?}"
        );
    }
    let p = Project::new();
    p.pipeline(FILE);
    let out = p
        .cmd(&["validate", "--set", "base.imgae=x", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("error[invalid-set]"), "{text}");
}

#[test]
fn plan_resolved_prints_the_files_with_where_each_value_came_from() {
    let p = Project::new();
    p.file("app.toml", FILE);
    p.file("ci.toml", "debug = true\n");
    let out = p
        .cmd(&[
            "plan",
            "--resolved",
            "--var",
            "version=2.0",
            "--var-file",
            "ci.toml",
            "--set",
            "base.image=debian:trixie",
            "--set",
            "step.1.run=echo {{ env.PIPELINE_TEST_USER | default('nobody') }}",
            "app.toml",
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The output is TOML.
    toml::from_str::<toml::Value>(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    insta::assert_snapshot!("resolved", stdout);
}
