//! `extends = [...]`: files applied under a pipeline file (tables merge, arrays and scalars
//! replace), located diagnostics through them, cycles, and folders that hold shared files.

use std::path::PathBuf;

use pipeline::config::{self, Overrides};
use pipeline::diag::Report;
use pipeline::model::{Action, Command};

use crate::harness::{output_text, Project};

const COMMON: &str = r#"[vars]
version = "1.0"
registry = "localhost:5000"

[base]
image = "busybox:latest"
pull = "never"

[[step]]
run = "echo common"

[commit]
author = "team <team@example.com>"

[commit.config]
env = { MODE = "common", KEEP = "yes" }
labels = { team = "core" }
"#;

fn load(p: &Project, file: &str, o: &Overrides) -> Result<pipeline::model::Pipeline, Vec<Report>> {
    config::load_all(&[p.path().join(file)], o).map(|mut l| l.pipelines.remove(0))
}

fn rendered(p: &Project, reports: &[Report]) -> String {
    let text: String = reports.iter().map(Report::render).collect();
    text.replace(&p.path().display().to_string(), "[DIR]")
}

#[test]
fn tables_merge_key_by_key_and_arrays_and_scalars_replace() {
    let p = Project::new();
    p.file("common.toml", COMMON);
    p.file(
        "app.toml",
        r#"extends = ["common.toml"]
[vars]
version = "2.0"

[[step]]
run = "echo app {{ version }} {{ registry }}"

[commit.config]
env = { MODE = "app" }
"#,
    );
    let app = load(&p, "app.toml", &Overrides::default())
        .unwrap_or_else(|r| panic!("{}", rendered(&p, &r)));
    assert_eq!(app.base.image.to_string(), "busybox:latest");
    // `[[step]]` is an array: the file's steps replace the common ones.
    assert_eq!(app.steps.len(), 1);
    assert_eq!(
        app.steps[0].action,
        Action::Run(Command::Shell("echo app 2.0 localhost:5000".into()))
    );
    assert_eq!(
        app.commit.author.as_deref(),
        Some("team <team@example.com>")
    );
    // `env` is an inline table: merged key by key.
    let env = &app.commit.config.env;
    assert_eq!(env.get("MODE").map(String::as_str), Some("app"), "{env:?}");
    assert_eq!(env.get("KEEP").map(String::as_str), Some("yes"), "{env:?}");
    assert_eq!(app.commit.config.labels["team"], "core");
}

#[test]
fn extended_files_apply_in_order_each_once_and_may_extend_others() {
    let p = Project::new();
    p.file("shared/base.toml", COMMON);
    p.file(
        "shared/debug.toml",
        "extends = [\"base.toml\"]\n[base]\nimage = \"debian:bookworm\"\n",
    );
    p.file(
        "shared/labels.toml",
        "extends = [\"base.toml\"]\n[commit.config]\nlabels = { tier = \"2\" }\n",
    );
    p.file(
        "app.toml",
        "extends = [\"shared/debug.toml\", \"shared/labels.toml\"]\n",
    );
    let app = load(&p, "app.toml", &Overrides::default())
        .unwrap_or_else(|r| panic!("{}", rendered(&p, &r)));
    // base.toml is applied once, first: labels.toml does not undo debug.toml's image.
    assert_eq!(app.base.image.to_string(), "debian:bookworm");
    assert_eq!(app.commit.config.labels["team"], "core");
    assert_eq!(app.commit.config.labels["tier"], "2");
    // --set applies to the merged result.
    let o = Overrides {
        sets: vec![("base.image".into(), "busybox:latest".into())],
        ..Overrides::default()
    };
    let app = load(&p, "app.toml", &o).unwrap_or_else(|r| panic!("{}", rendered(&p, &r)));
    assert_eq!(app.base.image.to_string(), "busybox:latest");
}

#[test]
fn a_bad_inherited_value_is_reported_in_the_file_and_line_it_came_from() {
    let p = Project::new();
    p.file(
        "common.toml",
        "[base]\nimage = \"Busybox:latest\"\n\n[commit]\nauthor = \"{{ nope }}\"\n",
    );
    p.file(
        "app.toml",
        "extends = [\"common.toml\"]\n[[step]]\nrnu = \"x\"\n",
    );
    let reports = load(&p, "app.toml", &Overrides::default()).unwrap_err();
    let files: Vec<String> = reports
        .iter()
        .map(|r| {
            PathBuf::from(&r.file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(files, ["app.toml", "common.toml"]);
    insta::assert_snapshot!("inherited", rendered(&p, &reports));
}

#[test]
fn cycles_missing_files_and_files_outside_the_folder_are_located() {
    for (name, files, expected) in [
        (
            "cycle",
            vec![
                ("app.toml", "extends = [\"a.toml\"]\n"),
                ("a.toml", "extends = [\"b.toml\"]\n"),
                ("b.toml", "\n\nextends = [\"a.toml\"]\n"),
            ],
            "error[extends-cycle]: a cycle of extended files: `a.toml` extends `b.toml` extends `a.toml`",
        ),
        (
            "self",
            vec![("app.toml", "extends = [\"app.toml\"]\n[base]\nimage = \"x\"\n")],
            "error[extends-cycle]",
        ),
        (
            "missing",
            vec![("app.toml", "extends = [\"nope.toml\"]\n")],
            "error[unreadable-file]: cannot read `nope.toml`",
        ),
        (
            "outside",
            vec![("app.toml", "extends = [\"../common.toml\"]\n")],
            "error[path-escapes]: `../common.toml` is outside the pipeline's folder",
        ),
    ] {
        let p = Project::new();
        let sub = p.path().join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(p.path().join("common.toml"), COMMON).unwrap();
        for (file, text) in files {
            std::fs::write(sub.join(file), text).unwrap();
        }
        let reports = config::load_all(&[sub.join("app.toml")], &Overrides::default())
            .expect_err(name);
        let text = rendered(&p, &reports);
        assert!(text.contains(expected), "{name}: lacks `{expected}`:\n{text}");
        assert!(text.contains(".toml:"), "{name}: not located:\n{text}");
    }
}

#[test]
fn a_folder_skips_the_files_its_pipelines_extend_and_plan_resolved_names_them() {
    let p = Project::new();
    p.file("ci/common.toml", COMMON);
    p.file(
        "ci/app.toml",
        "extends = [\"common.toml\"]\n[commit]\nmessage = \"app {{ version }}\"\n",
    );
    let loaded = config::load_all(&[p.path().join("ci")], &Overrides::default())
        .unwrap_or_else(|r| panic!("{}", rendered(&p, &r)));
    assert_eq!(loaded.pipelines.len(), 1);
    assert_eq!(loaded.pipelines[0].name, "app");
    assert_eq!(
        loaded.skipped[0].reason,
        "extended by another file, so not applied on its own"
    );
    let out = p
        .cmd(&["plan", "--resolved", "--var", "version=3", "ci"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    toml::from_str::<toml::Value>(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    insta::assert_snapshot!("resolved", stdout);
}

#[cfg(feature = "engine-tests")]
#[test]
fn a_folder_with_a_common_file_applies_each_pipeline_on_top_of_it() {
    use crate::harness::unique;
    use crate::support::engine::{containers_named, image_inspect, remove_image, require_engine};
    require_engine();
    let p = Project::new();
    let name = unique("extends");
    p.file(
        "ci/common.toml",
        r#"[vars]
variant = "none"

[base]
image = "busybox:latest"
pull = "never"

[[step]]
run = "echo common > /common"

[commit]
author = "team <team@example.com>"
tags = ["{{ image }}:{{ variant }}"]

[commit.config]
env = { FROM = "common", VARIANT = "{{ variant }}" }
"#
        .replace("{{ image }}", &name),
    );
    for variant in ["slim", "full"] {
        p.file(
            &format!("ci/{variant}.toml"),
            format!(
                "extends = [\"common.toml\"]\nname = \"{name}-{variant}\"\n[vars]\nvariant = \"{variant}\"\n"
            ),
        );
    }
    let out = p.cmd(&["apply", "ci"]).output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("skipped `ci/common.toml`: extended by another file"),
        "{text}"
    );
    for variant in ["slim", "full"] {
        let image = format!("{name}:{variant}");
        let inspect = image_inspect(&image);
        assert_eq!(inspect["Author"], "team <team@example.com>", "{image}");
        let env = inspect["Config"]["Env"].to_string();
        assert!(env.contains("FROM=common"), "{image}: {env}");
        assert!(
            env.contains(&format!("VARIANT={variant}")),
            "{image}: {env}"
        );
        remove_image(&image);
    }
    let left = containers_named(&format!("pipeline-{name}"));
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

#[test]
fn a_target_two_files_inherit_is_reported_where_it_is_written() {
    let p = Project::new();
    p.file(
        "ci/common.toml",
        format!("{COMMON}\n[[publish]]\nrepository = \"localhost:5000/app\"\ntags = [\"1\"]\n"),
    );
    p.file("ci/a.toml", "extends = [\"common.toml\"]\n");
    p.file("ci/b.toml", "extends = [\"common.toml\"]\n");
    let reports = config::load_all(&[p.path().join("ci")], &Overrides::default()).unwrap_err();
    let text = rendered(&p, &reports);
    assert!(text.contains("error[duplicate-target]"), "{text}");
    assert!(text.contains("[DIR]/ci/common.toml:21:"), "{text}");
    assert!(text.contains("(line 21)"), "{text}");
}
