//! Copies out of other images (`copy = { from = ..., src = ... }`) on the real engine: from an
//! image reference and from another pipeline of the same apply (which runs first), owner and
//! mode kept unless the step sets them, the key following the source image, a missing `src`
//! failing before any step runs, and an unknown `from` refused by `validate`.

use crate::harness::{measured, output_text, unique, Project};
use crate::support::engine::{containers_named, docker, remove_image, require_image};

/// Runs `script` in a throwaway container of `image`; its stdout.
fn run_in(image: &str, script: &str) -> String {
    let out = docker(&["run", "--rm", image, "sh", "-c", script]);
    assert!(
        out.status.success(),
        "`{script}` failed in {image}:\n{}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A busybox pipeline named `name` with `steps`, tagged `name:t`.
fn pipeline(name: &str, steps: &str) -> String {
    format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n{steps}\n\
         [commit]\ntags = [\"{name}:t\"]\n"
    )
}

#[test]
fn a_file_from_an_image_reference_keeps_its_mode_and_owner_unless_the_step_sets_them() {
    require_image("busybox:latest");
    // (owner, mode, what `stat` shows for the copied busybox binary)
    let cases = [
        ("", "", "0 0 755"),
        ("owner = \"5:6\", ", "", "5 6 755"),
        ("owner = \"5:6\", ", "mode = \"0700\", ", "5 6 700"),
    ];
    for (owner, mode, want) in cases {
        let name = unique("copyfrom-ref");
        let project = Project::new();
        project.pipeline(&pipeline(
            &name,
            &format!(
                "[[step]]\ncopy = {{ from = \"busybox:latest\", src = \"/bin/busybox\", \
                 dest = \"/app/busybox\", {owner}{mode}}}\n"
            ),
        ));
        let id = crate::support::engine::image_inspect("busybox:latest")["Id"]
            .as_str()
            .unwrap()
            .to_string();
        let plan = output_text(&project.cmd(&["plan", "pipeline.toml"]).output().unwrap());
        assert!(
            plan.contains(&format!(
                "copies from `busybox:latest`: present ({})",
                &id.trim_start_matches("sha256:")[..12]
            )),
            "{plan}"
        );
        let text = project.apply_ok(&name, &["--report", "r.json"]);
        let image = format!("{name}:t");
        assert!(
            text.contains("copies from busybox:latest present (sha256:"),
            "{text}"
        );
        let report = crate::harness::read_report(&project.path().join("r.json"));
        assert_eq!(
            report["steps"][0]["copies_from"],
            serde_json::json!({ "reference": "busybox:latest", "id": id, "pulled": false }),
            "{report:#}"
        );
        let got = run_in(
            &image,
            "stat -c '%u %g %a' /app/busybox && /app/busybox true",
        );
        assert_eq!(got, want, "{owner}{mode}");
        // Unchanged: the copy is served from the cache.
        let again = project.apply_ok(&name, &[]);
        assert!(again.contains("cached"), "{again}");
        remove_image(&image);
    }
}

/// The builder writes `/out` (a file owned 7:8, mode 0640, holding `content`); the app copies
/// it from the builder by the builder's name.
fn two_pipelines(project: &Project, builder: &str, app: &str, content: &str) {
    project.file(
        "builder.toml",
        pipeline(
            builder,
            &format!(
                "[[step]]\nrun = \"mkdir /out && echo {content} > /out/f && chown 7:8 /out/f && chmod 0640 /out/f\"\n"
            ),
        ),
    );
    project.file(
        "app.toml",
        pipeline(
            app,
            &format!(
                "[[step]]\nname = \"from builder\"\ncopy = {{ from = \"{builder}\", src = \"/out\", dest = \"/srv/out\" }}\n"
            ),
        ),
    );
}

#[test]
fn files_from_a_pipeline_of_the_same_apply_follow_its_image() {
    require_image("busybox:latest");
    let builder = unique("copyfrom-builder");
    let app = unique("copyfrom-app");
    let project = Project::new();
    let apply = |project: &Project| {
        // The app is given first: the graph still runs the builder before it.
        let out = project
            .cmd(&["apply", "app.toml", "builder.toml"])
            .output()
            .unwrap();
        let text = output_text(&out);
        assert!(out.status.success(), "apply failed:\n{text}");
        for n in [&builder, &app] {
            let left = containers_named(&format!("pipeline-{n}-"));
            assert!(left.is_empty(), "containers left behind: {left:?}");
        }
        text
    };
    // Contents unique to this run: the cache is content-addressed, shared by every run.
    let (one, two) = (format!("one-{builder}"), format!("two-{builder}"));
    two_pipelines(&project, &builder, &app, &one);
    apply(&project);
    let image = format!("{app}:t");
    let got = run_in(&image, "stat -c '%u %g %a' /srv/out/f && cat /srv/out/f");
    assert_eq!(got, format!("7 8 640\n{one}"));
    // Nothing changed: plan knows the builder leaves its image, and the copy step is cached.
    let plan = |project: &Project| {
        output_text(
            &project
                .cmd(&["plan", "app.toml", "builder.toml"])
                .output()
                .unwrap(),
        )
    };
    let planned = plan(&project);
    assert!(
        planned.contains("[1/1] from builder: cached")
            && planned.contains(&format!(
                "copies from `{builder}` of this apply: its current image ("
            )),
        "{planned}"
    );
    let text = apply(&project);
    assert!(text.contains("cached [1/1] from builder"), "{text}");
    // The builder's image changes: the copy runs again and takes the new file.
    two_pipelines(&project, &builder, &app, &two);
    let planned = plan(&project);
    assert!(
        planned.contains("[1/1] from builder: will run")
            && planned.contains(&format!(
                "copies from `{builder}` of this apply: the new image it will make"
            )),
        "{planned}"
    );
    let text = apply(&project);
    assert!(!text.contains("cached [1/1] from builder"), "{text}");
    assert_eq!(run_in(&image, "cat /srv/out/f"), two);
    remove_image(&image);
    remove_image(&format!("{builder}:t"));
}

/// Largest resident set an apply that copies a 256 MiB file out of another image may reach.
const COPY_RSS_LIMIT_KIB: u64 = 64 << 10;

#[test]
fn a_big_file_from_another_image_is_copied_in_bounded_memory() {
    require_image("busybox:latest");
    let builder = unique("copyfrom-bigsrc");
    let app = unique("copyfrom-bigdst");
    let project = Project::new();
    project.file(
        "builder.toml",
        pipeline(
            &builder,
            &format!(
                "[[step]]\nrun = \"head -c 268435456 /dev/zero > /big && echo {builder} >> /big\"\n"
            ),
        ),
    );
    project.file(
        "app.toml",
        pipeline(
            &app,
            &format!(
                "[[step]]\ncopy = {{ from = \"{builder}\", src = \"/big\", dest = \"/big\" }}\n"
            ),
        ),
    );
    let (text, rss_kib) = measured(&project, &["apply", "builder.toml", "app.toml"]);
    let image = format!("{app}:t");
    let got = run_in(
        &image,
        &format!("wc -c < /big && tail -c {} /big", builder.len() + 1),
    );
    assert_eq!(
        got,
        format!("{}\n{builder}", 268_435_456 + builder.len() + 1),
        "{text}"
    );
    assert!(
        rss_kib < COPY_RSS_LIMIT_KIB,
        "the apply reached {rss_kib} KiB copying 256 MiB (limit {COPY_RSS_LIMIT_KIB} KiB):\n{text}"
    );
    eprintln!("copy of 256 MiB from another image: peak RSS {rss_kib} KiB");
    for n in [&builder, &app] {
        assert!(containers_named(&format!("pipeline-{n}-")).is_empty());
        remove_image(&format!("{n}:t"));
    }
}

#[test]
fn a_src_missing_in_the_image_fails_before_any_step_runs() {
    require_image("busybox:latest");
    let name = unique("copyfrom-missing");
    let project = Project::new();
    project.pipeline(&pipeline(
        &name,
        "[[step]]\nname = \"first\"\nrun = \"echo ran-$((40+2))\"\n\
         [[step]]\ncopy = { from = \"busybox:latest\", src = \"/no/such/file\", dest = \"/x\" }\n",
    ));
    let out = project.cmd(&["apply", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("ran-42"), "a step ran:\n{text}");
    assert!(text.contains("/no/such/file"), "{text}");
    assert!(text.contains("sha256:"), "no image digest named:\n{text}");
    assert!(containers_named(&format!("pipeline-{name}-")).is_empty());
}

#[test]
fn an_unknown_from_is_a_located_diagnostic() {
    let project = Project::new();
    project.pipeline(&pipeline(
        "app",
        "[[step]]\ncopy = { from = \"No Such Thing\", src = \"/a\", dest = \"/a\" }\n",
    ));
    let out = project
        .cmd(&["validate", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("unknown-from"), "{text}");
    assert!(text.contains("pipeline.toml:6"), "{text}");
    assert!(text.contains("names no pipeline of this run"), "{text}");
}
