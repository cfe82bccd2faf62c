//! The build context: a pipeline's host paths resolve inside `context` (by default its own
//! folder), nothing outside it is read, and its `.dockerignore` and a copy's `exclude` keep
//! files out of the image and out of the step's key.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::time::Duration;

use crate::harness::{output_text, Project};

fn validate(p: &Project, file: &str) -> (Option<i32>, String) {
    let out = p
        .cmd(&["validate", file])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    (out.status.code(), output_text(&out))
}

/// `app/images/pipeline.toml` with `context = ".."` and `steps`.
fn app_pipeline(p: &Project, steps: &str) {
    p.file(
        "app/images/pipeline.toml",
        format!("context = \"..\"\n[base]\nimage = \"busybox:latest\"\n{steps}"),
    );
}

#[test]
fn sources_one_level_up_resolve_in_the_declared_context() {
    let p = Project::new();
    p.file("app/src/main.txt", "main");
    p.file("app/vendor/lib.txt", "lib");
    p.file("app/key.txt", "k");
    app_pipeline(
        &p,
        "[[step]]\ncopy = { src = \"src/main.txt\", dest = \"/main.txt\" }\n\
         [[step]]\nrun = \"true\"\nmounts = [{ src = \"vendor\", dest = \"/vendor\" }]\n\
         secrets = [\"k\"]\n[secrets.k]\nfile = \"key.txt\"\n",
    );
    let (code, text) = validate(&p, "app/images/pipeline.toml");
    assert_eq!(code, Some(0), "{text}");
    // Without `context`, the same sources are looked for beside the file.
    p.file(
        "app/images/pipeline.toml",
        "[base]\nimage = \"busybox:latest\"\n[[step]]\ncopy = { src = \"../src/main.txt\", dest = \"/m\" }\n",
    );
    let (code, text) = validate(&p, "app/images/pipeline.toml");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("copy source `../src/main.txt` is outside the pipeline's folder"),
        "{text}"
    );
    assert!(text.contains("context = \"..\""), "{text}");
}

#[test]
fn a_context_that_is_no_folder_is_a_located_diagnostic() {
    let p = Project::new();
    p.file("file.txt", "x");
    for (context, why) in [
        ("file.txt", "is not a folder"),
        ("missing", "cannot be read"),
    ] {
        p.pipeline(&format!(
            "context = \"{context}\"\n[base]\nimage = \"busybox:latest\"\n"
        ));
        let (code, text) = validate(&p, "pipeline.toml");
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("error[invalid-context]"), "{text}");
        assert!(
            text.contains(&format!("context `{context}` {why}")),
            "{text}"
        );
        assert!(text.contains("pipeline.toml:1:"), "{text}");
    }
}

#[test]
fn leaving_the_declared_context_is_refused_without_looking_outside() {
    let p = Project::new();
    p.file("app/src/a.txt", "a");
    p.file("outside/secret", "s");
    symlink("../../outside/secret", p.path().join("app/src/link")).unwrap();
    symlink("/nonexistent-outside", p.path().join("app/abs")).unwrap();
    app_pipeline(
        &p,
        "[[step]]\ncopy = { src = \"../outside/secret\", dest = \"/a\" }\n\
         [[step]]\ncopy = { src = \"src/link\", dest = \"/b\" }\n\
         [[step]]\ncopy = { src = \"abs/x\", dest = \"/c\" }\n\
         [[step]]\ncopy = { src = \"src/../../outside\", dest = \"/d\" }\n\
         [[step]]\nrun = \"true\"\nmounts = [{ src = \"../outside\", dest = \"/e\" }]\n\
         [secrets.k]\nfile = \"../outside/secret\"\n",
    );
    let (code, text) = validate(&p, "app/images/pipeline.toml");
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(text.matches("error[path-escapes]").count(), 6, "{text}");
    assert!(text.contains("is outside the build context `..`"), "{text}");
    assert!(!text.contains("does not exist"), "{text}");
}

/// Run as an unprivileged user, with the context's sibling folder unreadable: a path that
/// looked there would fail with "permission denied" (or "does not exist"), never "escapes".
#[test]
fn validate_never_touches_the_unreadable_sibling_of_the_context() {
    let p = Project::new();
    p.file("ctx/src/a.txt", "a");
    p.file("ctx/.dockerignore", "*.log\n");
    p.file("sibling/secret", "s");
    p.file("sibling/.dockerignore", "[\n");
    symlink("../../sibling/secret", p.path().join("ctx/src/link")).unwrap();
    p.file(
        "ctx/images/pipeline.toml",
        "context = \"..\"\n[base]\nimage = \"busybox:latest\"\n\
         [[step]]\ncopy = { src = \"../sibling/secret\", dest = \"/a\" }\n\
         [[step]]\ncopy = { src = \"src/link\", dest = \"/b\" }\n\
         [[step]]\ncopy = { src = \"src\", dest = \"/c\" }\n\
         [secrets.k]\nfile = \"../sibling/secret\"\n",
    );
    for dir in ["", "ctx", "ctx/src", "ctx/images"] {
        let path = p.path().join(dir);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let sibling = p.path().join("sibling");
    std::fs::set_permissions(&sibling, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(assert_cmd::cargo::cargo_bin("pipeline"))
        .args(["validate", "ctx/images/pipeline.toml"])
        .current_dir(p.path())
        .env("HOME", "/nonexistent")
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    std::fs::set_permissions(&sibling, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(text.matches("error[path-escapes]").count(), 3, "{text}");
    for word in ["denied", "does not exist", "invalid-ignore-file"] {
        assert!(!text.contains(word), "{word}:\n{text}");
    }
}

#[test]
fn the_ignore_file_is_read_at_the_context_root_only_and_checked() {
    let p = Project::new();
    p.file("app/src/a.txt", "a");
    p.file("app/src/debug.log", "l");
    // Beside the pipeline file but outside... no: inside the context, yet not at its root.
    p.file("app/images/.dockerignore", "[\n");
    p.file(
        "app/.dockerignore",
        "# build output\nsrc/*.log\n\n!src/keep.log\n",
    );
    app_pipeline(
        &p,
        "[[step]]\ncopy = { src = \"src\", dest = \"/src\" }\n\
         [[step]]\ncopy = { src = \"src/debug.log\", dest = \"/d\" }\n",
    );
    let (code, text) = validate(&p, "app/images/pipeline.toml");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("error[ignored-source]"), "{text}");
    assert!(
        text.contains("copy source `src/debug.log` is excluded by `.dockerignore`"),
        "{text}"
    );
    assert!(text.contains("`!src/debug.log`"), "{text}");
    assert_eq!(text.matches("error[").count(), 1, "{text}");

    // A pattern Docker refuses names the ignore file's line.
    p.file("app/.dockerignore", "ok\n\n[abc\n");
    let (code, text) = validate(&p, "app/images/pipeline.toml");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("error[invalid-ignore-file]"), "{text}");
    assert!(text.contains(".dockerignore:3: pattern `[abc`"), "{text}");

    // A symlink that leaves the context is not followed.
    std::fs::remove_file(p.path().join("app/.dockerignore")).unwrap();
    p.file("elsewhere", "[\n");
    symlink("../elsewhere", p.path().join("app/.dockerignore")).unwrap();
    let (code, text) = validate(&p, "app/images/pipeline.toml");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("ignore file `.dockerignore` is outside the build context `..`"),
        "{text}"
    );
}

#[test]
fn exclude_patterns_are_checked_where_they_are_written() {
    let p = Project::new();
    p.file("src/a.txt", "a");
    p.pipeline(
        "[base]\nimage = \"busybox:latest\"\n[[step]]\n\
         copy = { src = \"src\", dest = \"/s\", exclude = [\"*.md\", \"[x\", \"!\"] }\n",
    );
    let (code, text) = validate(&p, "pipeline.toml");
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(text.matches("error[invalid-pattern]").count(), 2, "{text}");
    assert!(
        text.contains("pattern `[x`: a `[` without its `]`"),
        "{text}"
    );
    assert!(text.contains("pipeline.toml:4:"), "{text}");
}

#[test]
fn several_sources_need_a_folder_destination_and_a_glob_must_match() {
    let p = Project::new();
    p.file("files/a.txt", "a");
    p.file("files/b.txt", "b");
    p.file("files/c.md", "c");
    p.file(".dockerignore", "files/c.md\n");
    p.pipeline(
        "[base]\nimage = \"busybox:latest\"\n\
         [[step]]\ncopy = { src = \"files/*.txt\", dest = \"/etc/x\" }\n\
         [[step]]\ncopy = { src = [\"files/a.txt\", \"files/b.txt\"], dest = \"/y\" }\n\
         [[step]]\ncopy = { src = \"files/*.rs\", dest = \"/z/\" }\n\
         [[step]]\ncopy = { src = \"files/*.md\", dest = \"/z/\" }\n\
         [[step]]\ncopy = { src = \"../*.txt\", dest = \"/z/\" }\n\
         [[step]]\ncopy = { src = \"files/[a.txt\", dest = \"/z/\" }\n\
         [[step]]\ncopy = { src = [\"files/*.txt\", \"files\"], dest = \"/ok/\" }\n",
    );
    let (code, text) = validate(&p, "pipeline.toml");
    assert_eq!(code, Some(2), "{text}");
    for want in [
        "`files/*.txt` is 2 sources: the destination must be a folder",
        "hint: end it with `/`: `\"/etc/x/\"`",
        "`files/a.txt, files/b.txt` is 2 sources",
        "copy source `files/*.rs` matches nothing",
        "copy source `files/*.md` matches only ignored or excluded files",
        "copy source `../*.txt` is outside the pipeline's folder",
        "error[invalid-pattern]: pattern `[a.txt`",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    assert_eq!(text.matches("error[").count(), 6, "{text}");
}

#[cfg(feature = "engine-tests")]
mod engine {
    use crate::harness::{output_text, unique, Project};
    use crate::support::engine::{docker, remove_image, require_image};

    fn listing(image: &str, paths: &str) -> String {
        let out = docker(&[
            "run",
            "--rm",
            image,
            "sh",
            "-c",
            &format!("find {paths} | sort; cat /app/a.txt"),
        ]);
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A context one level up, its `.dockerignore` (with an exception and `**`) and a copy's
    /// `exclude`: the image holds only what they keep, and a change to an ignored or
    /// excluded file leaves the copy cached.
    #[test]
    fn ignored_and_excluded_files_stay_out_of_the_image_and_the_key() {
        require_image("busybox:latest");
        let name = unique("context-ignore");
        let p = Project::new();
        // Contents unique to the run: cache entries of earlier runs never match.
        p.file("app/src/a.txt", format!("a1 {name}\n"));
        p.file("app/src/debug.log", "log\n");
        p.file("app/src/deep/er/trace.log", "log\n");
        p.file("app/src/notes.md", "md\n");
        p.file("app/src/sub/b.txt", "b\n");
        p.file("app/build/junk.o", "o\n");
        p.file("app/build/keep.txt", "keep\n");
        p.file("app/.dockerignore", "**/*.log\nbuild\n!build/keep.txt\n");
        p.file(
            "app/images/pipeline.toml",
            format!(
                "name = \"{name}\"\ncontext = \"..\"\n[base]\nimage = \"busybox:latest\"\n\
                 pull = \"never\"\n\
                 [[step]]\ncopy = {{ src = \"src\", dest = \"/app\", exclude = [\"*.md\"] }}\n\
                 [[step]]\ncopy = {{ src = \"build\", dest = \"/build\" }}\n\
                 [commit]\ntags = [\"{name}:t\"]\n"
            ),
        );
        let apply = |p: &Project| {
            let out = p
                .cmd(&["apply", "app/images/pipeline.toml"])
                .output()
                .unwrap();
            let text = output_text(&out);
            assert!(out.status.success(), "{text}");
            text
        };
        apply(&p);
        let image = format!("{name}:t");
        assert_eq!(
            listing(&image, "/app /build"),
            format!(
                "/app\n/app/a.txt\n/app/deep\n/app/deep/er\n/app/sub\n/app/sub/b.txt\n\
                 /build\n/build/keep.txt\na1 {name}\n"
            )
        );

        // Ignored and excluded files changed: nothing of the image changes, both copies
        // are cached.
        p.file("app/src/debug.log", "log 2\n");
        p.file("app/src/notes.md", "md 2\n");
        p.file("app/build/junk.o", "o 2\n");
        let second = apply(&p);
        assert!(second.contains("cached [1/2]"), "{second}");
        assert!(second.contains("cached [2/2]"), "{second}");

        // A kept file changed: the copy runs again.
        p.file("app/src/a.txt", format!("a2 {name}\n"));
        let third = apply(&p);
        assert!(!third.contains("cached [1/2]"), "{third}");
        assert!(listing(&image, "/app/a.txt").ends_with(&format!("a2 {name}\n")));
        remove_image(&image);
    }

    /// Globs (`*`, `**`) and several sources land in one folder as `COPY a b/*.conf /d/`
    /// does; a new file the glob matches is a changed step.
    #[test]
    fn globs_and_several_sources_land_in_one_folder_and_their_file_set_is_the_key() {
        require_image("busybox:latest");
        let name = unique("context-glob");
        let p = Project::new();
        p.file("files/a.txt", format!("{name}\n"));
        p.file("files/b.txt", "b\n");
        p.file("files/c.md", "c\n");
        p.file("conf/x/app.conf", "app\n");
        p.file("conf/y/z/db.conf", "db\n");
        p.file("tree/t1", "t1\n");
        p.pipeline(&format!(
            "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n\
             [[step]]\ncopy = {{ src = \"files/*.txt\", dest = \"/txt/\" }}\n\
             [[step]]\ncopy = {{ src = [\"conf/**/*.conf\", \"tree\", \"files/c.md\"], \
             dest = \"/etc/app/\", exclude = [\"y/**\"] }}\n\
             [commit]\ntags = [\"{name}:t\"]\n"
        ));
        p.apply_ok(&name, &[]);
        let image = format!("{name}:t");
        let out = docker(&[
            "run",
            "--rm",
            &image,
            "sh",
            "-c",
            "find /txt /etc/app | sort",
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/etc/app\n/etc/app/app.conf\n/etc/app/c.md\n/etc/app/t1\n\
             /txt\n/txt/a.txt\n/txt/b.txt\n"
        );
        // Unchanged: cached. A new match: the copy runs again and brings it.
        let second = p.apply_ok(&name, &[]);
        assert!(second.contains("cached [1/2]"), "{second}");
        p.file("files/new.txt", format!("new {name}\n"));
        let third = p.apply_ok(&name, &[]);
        assert!(!third.contains("cached [1/2]"), "{third}");
        let out = docker(&["run", "--rm", &image, "cat", "/txt/new.txt"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("new {name}\n")
        );
        remove_image(&image);
    }

    /// `owner = "name:group"` resolves in the image as the step finds it (a user an earlier
    /// step added included); a name the image lacks fails the step, naming where it is written.
    #[test]
    fn owner_names_resolve_in_the_image_and_an_unknown_one_fails_located() {
        require_image("busybox:latest");
        let name = unique("context-owner");
        let p = Project::new();
        p.file("f.txt", format!("{name}\n"));
        let steps = "[[step]]\nrun = \"echo 'app:x:1000:1000::/:/bin/sh' >> /etc/passwd && \
                     echo 'staff:x:50:' >> /etc/group\"\n\
                     [[step]]\ncopy = { src = \"f.txt\", dest = \"/a\", owner = \"app:staff\" }\n\
                     [[step]]\ncopy = { src = \"f.txt\", dest = \"/b\", owner = \"nobody\" }\n\
                     [[step]]\ncopy = { src = \"f.txt\", dest = \"/c\", owner = \"app:42\" }\n";
        p.pipeline(&format!(
            "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n\
             {steps}[commit]\ntags = [\"{name}:t\"]\n"
        ));
        p.apply_ok(&name, &[]);
        let image = format!("{name}:t");
        let out = docker(&[
            "run", "--rm", &image, "stat", "-c", "%n %u:%g", "/a", "/b", "/c",
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/a 1000:50\n/b 42:42\n/c 1000:42\n"
        );
        remove_image(&image);

        p.pipeline(&format!(
            "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n\
             [[step]]\ncopy = {{ src = \"f.txt\", dest = \"/a\", owner = \"ghost:staff\" }}\n"
        ));
        let out = p.cmd(&["apply", "pipeline.toml"]).output().unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(
            text.contains("hint: add the user or group to the image"),
            "{text}"
        );
        assert!(!text.contains("copy source"), "{text}");
        assert!(
            text.contains("owner `ghost:staff` (pipeline.toml:6:46): no user `ghost` in the image's /etc/passwd"),
            "{text}"
        );
    }
}
