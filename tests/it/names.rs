//! Names a file gives images: references as Docker reads them (a repository is lowercase),
//! none in the repositories only the tool writes (its step cache, its debug images), no
//! `[[publish]]` into the remote step cache, and no publish target of a multi-platform
//! pipeline that depends on the platform. All refused by `validate` with a located code.

use crate::harness::{output_text, Project};

/// `validate` of `toml`: its exit code and output.
fn validate(toml: &str, args: &[&str]) -> (Option<i32>, String) {
    let p = Project::new();
    p.pipeline(toml);
    let out = p
        .cmd(&[&["validate"], args, &["pipeline.toml"]].concat())
        .output()
        .unwrap();
    (out.status.code(), output_text(&out))
}

/// A file whose only mistake is `line` (the 5th line, at `column`), or none.
fn with_line(line: &str) -> String {
    format!("[base]\nimage = \"busybox\"\n[commit]\n[[publish]]\n{line}\n")
}

#[test]
fn names_docker_refuses_and_names_only_the_tool_writes_are_located_errors() {
    // (the 5th line, the code it gives, a word of the message; None: valid)
    let table: &[(&str, Option<(&str, &str)>)] = &[
        (
            "repository = \"FOO/bar\"",
            Some(("invalid-reference", "must be lowercase")),
        ),
        (
            "repository = \"Team/app\"",
            Some(("invalid-reference", "must be lowercase")),
        ),
        ("repository = \"Registry.Example.com/team/app\"", None),
        ("repository = \"localhost:5000/team/app\"", None),
        (
            "repository = \"pipeline-cache\"",
            Some(("reserved-name", "step cache")),
        ),
        (
            "repository = \"docker.io/library/pipeline-cache\"",
            Some(("reserved-name", "step cache")),
        ),
        (
            "repository = \"localhost/pipeline-debug\"",
            Some(("reserved-name", "--keep-failed")),
        ),
        ("repository = \"127.0.0.1:5000/pipeline-cache\"", None),
        ("repository = \"team/pipeline-cache-mirror\"", None),
    ];
    for (line, want) in table {
        let (code, text) = validate(&with_line(&format!("{line}\ntags = [\"1\"]")), &[]);
        match want {
            None => assert_eq!(code, Some(0), "{line}: {text}"),
            Some((diag, word)) => {
                assert_eq!(code, Some(2), "{line}: {text}");
                assert_eq!(
                    text.matches("error[").count(),
                    1,
                    "{line}: one error:\n{text}"
                );
                assert!(text.contains(&format!("error[{diag}]")), "{line}: {text}");
                assert!(text.contains(word), "{line}: {text}");
                assert!(text.contains("pipeline.toml:5:14"), "{line}: {text}");
            }
        }
    }
}

#[test]
fn local_tags_in_the_tools_own_repositories_are_refused_where_they_are_written() {
    let tags = [
        ("\"FOO/bar:1\"", "invalid-reference"),
        ("\"pipeline-cache:0123abcd\"", "reserved-name"),
        ("\"pipeline-cache:last-0123\"", "reserved-name"),
        ("\"library/pipeline-cache\"", "reserved-name"),
        ("\"pipeline-debug:app-step1\"", "reserved-name"),
        ("\"myapp:1\"", ""),
    ];
    let list: Vec<&str> = tags.iter().map(|(t, _)| *t).collect();
    let (code, text) = validate(
        &format!(
            "[base]\nimage = \"busybox\"\n[commit]\ntags = [\n{}\n]\n",
            list.join(",\n")
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    for (i, (tag, diag)) in tags.iter().enumerate() {
        let at = format!("pipeline.toml:{}:1", 5 + i);
        if diag.is_empty() {
            assert!(!text.contains(&at), "{tag} is fine:\n{text}");
        } else {
            let entry = text
                .split("error[")
                .find(|e| e.contains(&at))
                .unwrap_or_else(|| panic!("{tag}: no error at {at}:\n{text}"));
            assert!(entry.starts_with(&format!("{diag}]")), "{tag}:\n{entry}");
        }
    }
}

#[test]
fn a_publish_into_the_remote_step_cache_is_refused_from_the_file_and_the_command_line() {
    let cache = "[cache]\nremote = \"127.0.0.1:5000/team/app-cache\"\n";
    for (repository, refused) in [
        ("127.0.0.1:5000/team/app-cache", true),
        ("127.0.0.1:5000/team/app", false),
        ("localhost:5000/team/app-cache", false),
    ] {
        let toml = format!(
            "[base]\nimage = \"busybox\"\n\n[[publish]]\nrepository = \"{repository}\"\ntags = [\"1\"]\n\n{cache}"
        );
        let (code, text) = validate(&toml, &[]);
        if refused {
            assert_eq!(code, Some(2), "{text}");
            assert!(text.contains("error[publish-into-cache]"), "{text}");
            assert!(text.contains("pipeline.toml:5:14"), "{text}");
        } else {
            assert_eq!(code, Some(0), "{repository}: {text}");
        }
    }
    // `--cache-remote` names the cache on the command line: refused before any engine or
    // registry is asked (`plan --offline` here, which would otherwise need the engine).
    let p = Project::new();
    p.pipeline(
        "[base]\nimage = \"busybox\"\n[[publish]]\nrepository = \"127.0.0.1:5000/team/app\"\ntags = [\"1\"]\n",
    );
    let out = p
        .cmd(&[
            "plan",
            "--offline",
            "--cache-remote",
            "127.0.0.1:5000/team/app",
            "pipeline.toml",
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--cache-remote") && text.contains("publishes to `127.0.0.1:5000/team/app`"),
        "{text}"
    );
}

#[test]
fn a_publish_target_of_a_multi_platform_pipeline_may_not_depend_on_the_platform() {
    let file = |platforms: &str, repository: &str, tags: &str| {
        format!(
            "{platforms}\n[base]\nimage = \"busybox\"\n[[publish]]\nrepository = \"{repository}\"\ntags = [{tags}]\n"
        )
    };
    let two = "platforms = [\"linux/amd64\", \"linux/arm64\"]";
    let one = "platforms = [\"linux/arm64\"]";
    let arch = "127.0.0.1:5000/app-{{ platform.arch }}";
    let plain = "127.0.0.1:5000/app";
    // (file, extra arguments, the places refused)
    let table: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (file(two, arch, "\"1\""), vec![], vec!["pipeline.toml:5:14"]),
        (
            file(two, plain, "\"1-{{ platform.arch }}\", \"latest\""),
            vec![],
            vec!["pipeline.toml:6:9"],
        ),
        (
            file(
                two,
                "127.0.0.1:5000/{% if platform.os == 'linux' %}app{% endif %}",
                "\"1\"",
            ),
            vec![],
            vec!["pipeline.toml:5:14"],
        ),
        (file(two, plain, "\"1\""), vec![], vec![]),
        // One platform: the names are that platform's, which is meaningful.
        (file(one, arch, "\"{{ platform.arch }}\""), vec![], vec![]),
        (
            file(two, arch, "\"1\""),
            vec!["--platform", "linux/arm64"],
            vec![],
        ),
    ];
    for (toml, args, refused) in table {
        let (code, text) = validate(&toml, &args);
        if refused.is_empty() {
            assert_eq!(code, Some(0), "{toml}{args:?}: {text}");
            continue;
        }
        assert_eq!(code, Some(2), "{toml}: {text}");
        assert_eq!(
            text.matches("error[platform-in-publish]").count(),
            refused.len(),
            "{toml}: {text}"
        );
        for at in refused {
            assert!(text.contains(at), "{toml}: {at} in\n{text}");
        }
        assert!(
            text.contains("--platform"),
            "the hint names the way out: {text}"
        );
    }
}
