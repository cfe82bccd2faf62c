//! `[matrix]`: one file, a pipeline per combination of values. Expansion and names, types,
//! selection with `--var`, duplicates across variants, diagnostics reported once, a matrix
//! inherited through `extends`, and the variants in `validate` and `plan --resolved`.

use crate::harness::{output_text, Project};

const WEB: &str = r#"[vars]
registry = "127.0.0.1:5000"

[matrix]
flavor = ["slim", "full"]
debian = ["bookworm", "trixie"]

[base]
image = "debian:{{ debian }}"

[[step]]
run = "echo {{ flavor }}"

[[publish]]
repository = "{{ registry }}/web"
tags = ["{{ debian }}-{{ flavor }}"]
"#;

/// Runs the binary in the project; its exit code and its output, the folder's path as `[DIR]`.
fn run(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let out = p.cmd(args).output().unwrap();
    let text = output_text(&out).replace(&p.path().display().to_string(), "[DIR]");
    (out.status.code(), text)
}

fn validate_json(p: &Project, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["validate", "--format", "json"];
    all.extend_from_slice(args);
    let out = p.cmd(&all).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)))
}

/// Each variant's name and variant object, as `validate --format json` lists them.
fn variants(doc: &serde_json::Value) -> Vec<(String, String)> {
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["pipeline"].as_str().unwrap_or("").to_string(),
                f["variant"].to_string(),
            )
        })
        .collect()
}

#[test]
fn a_matrix_file_is_one_pipeline_per_combination_the_first_key_slowest() {
    let p = Project::new();
    p.file("web.toml", WEB);
    let doc = validate_json(&p, &["web.toml"]);
    assert_eq!(doc["valid"], true, "{doc}");
    assert_eq!(
        variants(&doc),
        [
            (
                "web-slim-bookworm",
                r#"{"debian":"bookworm","flavor":"slim"}"#
            ),
            ("web-slim-trixie", r#"{"debian":"trixie","flavor":"slim"}"#),
            (
                "web-full-bookworm",
                r#"{"debian":"bookworm","flavor":"full"}"#
            ),
            ("web-full-trixie", r#"{"debian":"trixie","flavor":"full"}"#),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["file"] == "web.toml"));
    // The text output spells each variant as the file with its values, in matrix key order.
    let (code, text) = run(&p, &["validate", "web.toml"]);
    assert_eq!(code, Some(0), "{text}");
    for v in [
        "web.toml[flavor=slim,debian=bookworm]: ok",
        "web.toml[flavor=full,debian=trixie]: ok",
    ] {
        assert!(text.contains(v), "no {v:?} in {text}");
    }
    // A file without a matrix has a null variant.
    p.file("plain.toml", "[base]\nimage = \"busybox:latest\"\n");
    let doc = validate_json(&p, &["plain.toml"]);
    assert_eq!(doc["files"][0]["variant"], serde_json::Value::Null);
}

#[test]
fn names_are_templates_or_the_stem_and_the_values_made_safe() {
    let p = Project::new();
    let body = "[matrix]\nv = [\"1.0 rc\", \"2/x\"]\nlatest = [true]\n[base]\nimage = \"busybox:latest\"\n";
    p.file("app.toml", body);
    p.file(
        "named.toml",
        format!("name = \"n-{{{{ v | replace(' ', '') }}}}\"\n{body}"),
    );
    let names: Vec<String> = variants(&validate_json(&p, &["app.toml", "named.toml"]))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        ["app-1.0-rc-true", "app-2-x-true", "n-1.0rc", "n-2/x"]
    );
}

#[test]
fn matrix_values_are_typed_and_problems_are_located() {
    let p = Project::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "[vars]\njobs = 2\n[matrix]\njobs = [1, \"two\"]\n",
            "error[invalid-matrix]: matrix key `jobs` takes an integer, and `\"two\"` is not one",
            "pipeline.toml:4:8",
        ),
        (
            "[matrix]\nx = [true, \"a\"]\n",
            "error[invalid-matrix]: matrix key `x` takes a bool, and `\"a\"` is not one",
            "pipeline.toml:2:5",
        ),
        (
            "[matrix]\nx = []\n",
            "error[invalid-matrix]: matrix key `x` has no values",
            "pipeline.toml:2:5",
        ),
        (
            "[matrix]\na = [1, 2, 3, 4, 5, 6, 7, 8]\nb = [1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
            "error[invalid-matrix]: the matrix makes more than 64 variants",
            "pipeline.toml:3:5",
        ),
        (
            "[matrix]\nx = \"a\"\n",
            "error[invalid-type]",
            "pipeline.toml:2:5",
        ),
    ];
    for (matrix, error, place) in cases {
        p.pipeline(&format!("{matrix}[base]\nimage = \"busybox:latest\"\n"));
        let (code, text) = run(&p, &["validate", "pipeline.toml"]);
        assert_eq!(code, Some(2), "{matrix}: {text}");
        assert!(text.contains(error), "{matrix}: no {error:?} in {text}");
        assert!(text.contains(place), "{matrix}: no {place:?} in {text}");
    }
}

#[test]
fn a_var_for_a_matrix_key_selects_the_variants_with_that_value() {
    let p = Project::new();
    p.file("web.toml", WEB);
    for (args, expect) in [
        (
            &["--var", "debian=trixie"][..],
            &["web-slim-trixie", "web-full-trixie"][..],
        ),
        (
            &["--var", "debian=trixie", "--var", "flavor=full"][..],
            &["web-full-trixie"][..],
        ),
    ] {
        let mut all = args.to_vec();
        all.push("web.toml");
        let names: Vec<String> = variants(&validate_json(&p, &all))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, expect, "{args:?}");
    }
    // A var file and the environment select too.
    p.file("ci.toml", "flavor = \"slim\"\n");
    let out = p
        .cmd(&[
            "validate",
            "--format",
            "json",
            "--var-file",
            "ci.toml",
            "web.toml",
        ])
        .env("PIPELINE_VAR_debian", "bookworm")
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(variants(&doc).len(), 1, "{doc}");
    assert_eq!(doc["files"][0]["pipeline"], "web-slim-bookworm");
    let (code, text) = run(&p, &["validate", "--var", "flavor=fat", "web.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(
            "error[matrix-value]: `--var flavor=fat`: `fat` is not a value of matrix key `flavor`"
        ),
        "{text}"
    );
    assert!(text.contains("web.toml:5:10"), "{text}");
    assert!(text.contains("hint: give one of `slim`, `full`"), "{text}");
    assert!(!text.contains("unknown-variable"), "{text}");
}

#[test]
fn two_variants_with_one_name_or_one_target_are_errors_at_the_line() {
    let p = Project::new();
    p.file(
        "d.toml",
        "name = \"d-{{ a }}\"\n[matrix]\na = [\"x\"]\nb = [\"1\", \"2\"]\n[base]\nimage = \"busybox:latest\"\n",
    );
    let (code, text) = run(&p, &["validate", "d.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(
            "error[duplicate-name]: `d.toml[a=x,b=1]` and `d.toml[a=x,b=2]` are both named `d-x`"
        ),
        "{text}"
    );
    assert!(text.contains("d.toml:1:8"), "{text}");
    p.file(
        "t.toml",
        "[matrix]\na = [\"x\", \"y\"]\n[base]\nimage = \"busybox:latest\"\n[[publish]]\nrepository = \"127.0.0.1:5000/t\"\ntags = [\"1\"]\n",
    );
    let (code, text) = run(&p, &["validate", "t.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(
            "error[duplicate-target]: `127.0.0.1:5000/t:1` is produced by two variants: `t.toml[a=x]` publishes it too (line 7) (in `t.toml[a=y]`)"
        ),
        "{text}"
    );
    assert!(text.contains("t.toml:7:9"), "{text}");
    assert!(text.contains("this variant publishes it"), "{text}");
}

#[test]
fn a_problem_of_every_variant_is_reported_once_others_name_their_variants() {
    let p = Project::new();
    p.pipeline(
        r#"[matrix]
arch = ["amd64", "arm64", "s390x"]

[base]
image = "busybox:latest"

[[step]]
run = "echo {{ greeting }}"

[commit]
tags = ["{% if arch == 's390x' %}Bad Tag{% else %}app:{{ arch }}{% endif %}"]
"#,
    );
    let (code, text) = run(&p, &["validate", "pipeline.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(
        text.matches("error[undefined-variable]: undefined variable `greeting`\n")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("pipeline.toml:8:7"), "{text}");
    let only = text
        .lines()
        .find(|l| l.starts_with("error[invalid-reference]"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(only.ends_with("(in `pipeline.toml[arch=s390x]`)"), "{only}");
    assert_eq!(text.matches("error[").count(), 2, "{text}");
}

#[test]
fn a_matrix_is_inherited_through_extends_and_merges_key_by_key() {
    let p = Project::new();
    p.file(
        "common.toml",
        "[matrix]\ndebian = [\"bookworm\", \"trixie\"]\n[base]\nimage = \"debian:{{ debian }}\"\n[commit]\ntags = [\"{{ debian }}:{{ nope }}\"]\n",
    );
    p.file(
        "app.toml",
        "extends = [\"common.toml\"]\n[matrix]\nflavor = [\"slim\"]\n[commit]\ntags = [\"app:{{ debian }}-{{ flavor }}\"]\n",
    );
    let doc = validate_json(&p, &["app.toml"]);
    assert_eq!(doc["valid"], true, "{doc}");
    assert_eq!(
        variants(&doc),
        [
            (
                "app-bookworm-slim",
                r#"{"debian":"bookworm","flavor":"slim"}"#
            ),
            ("app-trixie-slim", r#"{"debian":"trixie","flavor":"slim"}"#),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // A problem in the inherited part: once, in the extended file, at its line.
    p.file(
        "bad.toml",
        "extends = [\"common.toml\"]\n[matrix]\nflavor = [\"slim\", \"full\"]\n",
    );
    let (code, text) = run(&p, &["validate", "bad.toml"]);
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(
        text.matches("error[undefined-variable]").count(),
        1,
        "{text}"
    );
    assert!(text.contains("common.toml:6:9"), "{text}");
    assert!(
        text.contains("(in `[DIR]/bad.toml`, which extends this file)")
            || text.contains("(in `bad.toml`, which extends this file)"),
        "{text}"
    );
    // The folder applies `app.toml` and `bad.toml`; `common.toml` is skipped.
}

#[test]
fn plan_resolved_shows_each_variant_with_its_values() {
    let p = Project::new();
    p.file("web.toml", WEB);
    let out = p
        .cmd(&["plan", "--resolved", "--var", "debian=trixie", "web.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    insta::assert_snapshot!("resolved", stdout);
}

#[test]
fn the_team_example_validates_as_three_pipelines() {
    let p = Project::new();
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/team");
    let doc = validate_json(&p, &[folder]);
    assert_eq!(doc["valid"], true, "{doc}");
    let names: Vec<String> = variants(&doc).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["tools", "web-en", "web-fr"]);
}
