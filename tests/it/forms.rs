//! Config forms people know from Dockerfiles and Compose, and references two files of one run
//! would both produce.

use std::path::Path;

use pipeline::config::{self, Overrides};

use crate::harness::{output_text, Project};

fn config_of(text: &str) -> pipeline::model::ConfigChanges {
    let file = format!("[base]\nimage = \"busybox\"\n[commit.config]\n{text}\n");
    config::load_str(
        Path::new("pipeline.toml"),
        &file,
        Path::new("/"),
        &Overrides::default(),
    )
    .unwrap_or_else(|d| panic!("{text}: {d:?}"))
    .commit
    .config
}

#[test]
fn a_string_cmd_or_entrypoint_is_the_shell_form_of_a_dockerfile() {
    let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()];
    let c = config_of(r#"cmd = "nginx -g 'daemon off;'""#);
    assert_eq!(c.cmd, Some(sh("nginx -g 'daemon off;'")));
    let c = config_of(r#"entrypoint = "exec /app --port {{ 80 + 1 }}""#);
    assert_eq!(c.entrypoint, Some(sh("exec /app --port 81")));
    let c = config_of(r#"cmd = ["nginx", "-g", "daemon off;"]"#);
    assert_eq!(
        c.cmd,
        Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()])
    );
    // The file's own shell, as a Dockerfile's SHELL before CMD.
    let c = config_of("shell = [\"/bin/bash\", \"-eu\", \"-c\"]\ncmd = \"run.sh\"");
    assert_eq!(
        c.cmd,
        Some(vec![
            "/bin/bash".into(),
            "-eu".into(),
            "-c".into(),
            "run.sh".into()
        ])
    );
}

#[test]
fn a_healthcheck_test_is_also_taken_in_composes_form() {
    let test = |t: &str| {
        config_of(&format!("healthcheck = {{ test = {t} }}"))
            .healthcheck
            .expect("a health check")
            .test
    };
    for (written, expected) in [
        (
            r#"["CMD", "curl", "-f", "localhost"]"#,
            &["CMD", "curl", "-f", "localhost"][..],
        ),
        (
            r#"["CMD-SHELL", "curl -f localhost || exit 1"]"#,
            &["CMD-SHELL", "curl -f localhost || exit 1"],
        ),
        (r#"["NONE"]"#, &["NONE"]),
        (
            r#"["curl", "-f", "localhost"]"#,
            &["CMD", "curl", "-f", "localhost"],
        ),
        (
            r#""curl -f localhost""#,
            &["CMD-SHELL", "curl -f localhost"],
        ),
        (r#""none""#, &["NONE"]),
    ] {
        assert_eq!(test(written), expected, "{written}");
    }
    let p = Project::new();
    p.pipeline(
        "[base]\nimage = \"busybox\"\n[commit.config]\nhealthcheck = { test = [\"CMD\"] }\n",
    );
    let out = p.cmd(&["validate", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("error[empty-command]"), "{text}");
}

#[test]
fn two_files_producing_one_reference_is_a_located_error() {
    let p = Project::new();
    let file = |name: &str, tags: &str, publish: &str| {
        format!(
            "name = \"{name}\"\n[base]\nimage = \"busybox\"\n[commit]\ntags = [{tags}]\n\n[[publish]]\nrepository = \"localhost:5000/{publish}\"\ntags = [\"1.0\"]\n"
        )
    };
    p.file("a.toml", file("a", "\"app:a\"", "team/app"));
    p.file("b.toml", file("b", "\"app:b\"", "team/app"));
    let out = p.cmd(&["validate", "a.toml", "b.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("error[duplicate-target]: `localhost:5000/team/app:1.0` is produced by two files: `a.toml` publishes it too (line 9)"),
        "{text}"
    );
    assert!(text.contains("b.toml:9:"), "{text}");
    // The same local tag, in a folder.
    p.file("a.toml", file("a", "\"app:1\"", "a"));
    p.file("b.toml", file("b", "\"x:2\", \"app:1\"", "b"));
    let out = p.cmd(&["validate", "."]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("`app:1` is produced by two files"), "{text}");
    assert!(text.contains("b.toml:5:16"), "{text}");
    // Distinct tags are fine.
    p.file("b.toml", file("b", "\"app:2\"", "b"));
    let out = p.cmd(&["validate", "."]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}
