//! Images made without running anything in them: copy-only steps on a base with no shell and
//! no `cat`, and on `scratch` (no base at all), as `FROM scratch` + `COPY` make them; and a
//! `run` step such a base cannot start, refused before anything runs.

use std::path::Path;

use crate::harness::{output_text, read_report, unique, Project};
use crate::support::engine::{
    containers_named, docker, docker_ok, image_inspect, remove_image, require_engine,
};

/// An image that holds only `/marker` (no shell, no `cat`, no /etc), made with `docker import`.
fn distroless_like(name: &str, dir: &Path) -> String {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("marker"), "base\n").unwrap();
    import(&root, &format!("{name}-base:t"))
}

/// The folder `root` as an image (`docker import` of its tar: no config, no Env) named
/// `reference`; returns the reference.
fn import(root: &Path, reference: &str) -> String {
    let tar = root.with_extension("tar");
    let out = std::process::Command::new("tar")
        .args([
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", output_text(&out));
    docker_ok(&["import", tar.to_str().unwrap(), reference]);
    reference.to_string()
}

/// The bytes of `path` in `image`, read through a container that is created, never started.
fn file_in(image: &str, path: &str) -> Vec<u8> {
    let id = docker_ok(&["create", image, "none"]);
    let out = docker(&["cp", &format!("{id}:{path}"), "-"]);
    docker_ok(&["rm", &id]);
    assert!(
        out.status.success(),
        "docker cp {path}: {}",
        output_text(&out)
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
    bytes
}

/// A pipeline named `name` on `base` that copies `files/app.txt` to `/app/app.txt`.
fn copy_pipeline(name: &str, base: &str) -> String {
    format!(
        "name = \"{name}\"\n[base]\nimage = \"{base}\"\npull = \"never\"\n\
         [[step]]\nname = \"app\"\ncopy = {{ src = \"files/app.txt\", dest = \"/app/app.txt\" }}\n\
         [commit]\nmessage = \"scratch\"\ntags = [\"{name}:t\"]\n"
    )
}

#[test]
fn a_copy_onto_a_base_with_no_shell_and_no_cat_runs_nothing_and_caches() {
    require_engine();
    let name = unique("scratch-distroless");
    let project = Project::new();
    let base = distroless_like(&name, project.path());
    project.file("files/app.txt", "hello\n");
    project.pipeline(&copy_pipeline(&name, &base));
    let text = project.apply_ok(&name, &[]);
    let image = format!("{name}:t");
    assert_eq!(file_in(&image, "/app/app.txt"), b"hello\n", "{text}");
    assert_eq!(file_in(&image, "/marker"), b"base\n");
    let layers = image_inspect(&image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(layers, 2, "the base's layer and the copy's");
    // A second apply: the copy is cached, the image the same.
    let id = image_inspect(&image)["Id"].clone();
    let again = project.apply_ok(&name, &[]);
    assert!(again.contains("cached [1/1] app"), "{again}");
    assert_eq!(image_inspect(&image)["Id"], id, "{again}");
    remove_image(&image);
    remove_image(&base);
}

#[test]
fn a_scratch_image_holds_only_what_its_copies_add_and_runs_a_copied_static_binary() {
    require_engine();
    let name = unique("scratch-empty");
    let project = Project::new();
    let busybox =
        std::fs::read("/bin/busybox").expect("the host's static /bin/busybox (busybox-static)");
    let bin = project.file("root/bin/busybox", busybox);
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"scratch\"\n\
         [[step]]\nname = \"app\"\ncopy = {{ src = \"root\", dest = \"/\" }}\n\
         [commit]\nmessage = \"scratch\"\ntags = [\"{name}:t\"]\n\
         [commit.config]\nentrypoint = [\"/bin/busybox\"]\n"
    ));
    let text = project.apply_ok(&name, &[]);
    let image = format!("{name}:t");
    let inspect = image_inspect(&image);
    // As `FROM scratch` + one `COPY`: one layer, no Env.
    assert_eq!(
        inspect["RootFS"]["Layers"].as_array().unwrap().len(),
        1,
        "{text}"
    );
    assert!(inspect["Config"]["Env"].is_null(), "{inspect:#}");
    let out = docker_ok(&["run", "--rm", &image, "echo", "from-scratch"]);
    assert_eq!(out, "from-scratch");
    let again = project.apply_ok(&name, &[]);
    assert!(again.contains("cached [1/1] app"), "{again}");
    remove_image(&image);
}

#[test]
fn a_run_step_on_scratch_is_a_located_validate_error() {
    let project = Project::new();
    project.pipeline(
        "name = \"scratch-run\"\n[base]\nimage = \"scratch\"\n\
         [[step]]\nrun = \"echo hi\"\n[commit]\ntags = [\"scratch-run:t\"]\n",
    );
    let out = project
        .cmd(&["validate", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("run-on-scratch"), "{text}");
    assert!(text.contains("pipeline.toml:5"), "{text}");
    assert!(text.contains("nothing can run on `scratch`"), "{text}");
}

/// What a base holds, for the table of bases and steps.
#[derive(Debug, Clone, Copy)]
enum Base {
    /// `busybox:latest`: a shell, `cat`, every applet in /bin.
    Busybox,
    /// Only a static `/bin/busybox` (no applet links): no `/bin/sh`, no `cat`.
    ShellLess,
    Scratch,
}

/// How an apply of a base and a step ends.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    /// Refused before any step ran, naming these missing paths or programs.
    Lacks(&'static [&'static str]),
    /// The validate error `run-on-scratch`.
    RunOnScratch,
}

/// A folder `bin/` with the host's static busybox and its `sh` and `cat` links.
fn busybox_bin(project: &Project) {
    let busybox =
        std::fs::read("/bin/busybox").expect("the host's static /bin/busybox (busybox-static)");
    let bin = project.file("bin/busybox", busybox);
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for link in ["sh", "cat"] {
        std::os::unix::fs::symlink("busybox", project.path().join("bin").join(link)).unwrap();
    }
}

/// An image that holds only a static `/bin/busybox`, made with `docker import`: no shell, no
/// `cat`, no Env.
fn only_a_static_binary(name: &str, dir: &Path) -> String {
    let root = dir.join("only-binary");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    import(&root, &format!("{name}-static:t"))
}

#[test]
// One table: each row's plan, apply and what they leave, told in order.
#[allow(clippy::too_many_lines)]
fn a_run_step_its_base_cannot_start_is_refused_by_plan_and_before_any_step_of_apply() {
    use Outcome::{Lacks, Ok, RunOnScratch};
    require_engine();
    crate::support::engine::require_image("busybox:latest");
    let name = unique("shellless");
    let project = Project::new();
    project.file("files/app.txt", "app\n");
    busybox_bin(&project);
    let static_base = only_a_static_binary(&name, project.path());
    let steps = [
        ("string run", "run = \"echo ran > /ran\""),
        ("array run, present", "run = [\"/bin/busybox\", \"true\"]"),
        ("array run, missing", "run = [\"no-such-tool\", \"x\"]"),
        (
            "busybox copied to /bin, then a string run",
            "copy = { src = \"bin\", dest = \"/bin\" }\n[[step]]\nrun = \"echo ran > /ran\"",
        ),
    ];
    let table: [(Base, [Outcome; 4]); 3] = [
        (Base::Busybox, [Ok, Ok, Lacks(&["no-such-tool"]), Ok]),
        (
            Base::ShellLess,
            [
                Lacks(&["cat", "/bin/sh"]),
                Lacks(&["cat"]),
                Lacks(&["cat", "no-such-tool"]),
                Ok,
            ],
        ),
        (Base::Scratch, [RunOnScratch; 4]),
    ];
    for (base, outcomes) in table {
        for ((what, step), outcome) in steps.iter().zip(outcomes) {
            let case = format!("{base:?}, {what}");
            let pipeline = format!("{name}-{}", unique("row"));
            let reference = match base {
                Base::Busybox => "busybox:latest",
                Base::ShellLess => static_base.as_str(),
                Base::Scratch => "scratch",
            };
            // A first copy, to tell whether anything of the pipeline ran.
            project.pipeline(&format!(
                "name = \"{pipeline}\"\n[base]\nimage = \"{reference}\"\npull = \"never\"\n\
                 [[step]]\nname = \"first copy\"\n\
                 copy = {{ src = \"files/app.txt\", dest = \"/app/app.txt\" }}\n\
                 [[step]]\nname = \"the run\"\n{step}\n\
                 [commit]\ntags = [\"{pipeline}:t\"]\n"
            ));
            let leftovers = || containers_named(&format!("pipeline-{pipeline}-"));
            let plan = project.cmd(&["plan", "pipeline.toml"]).output().unwrap();
            let plan_text = output_text(&plan);
            assert!(leftovers().is_empty(), "{case}: plan left a container");
            match outcome {
                Ok => {
                    assert_eq!(plan.status.code(), Some(0), "{case}: {plan_text}");
                    let text = project.apply_ok(&pipeline, &[]);
                    if what.contains("string") {
                        assert_eq!(
                            file_in(&format!("{pipeline}:t"), "/ran"),
                            b"ran\n",
                            "{text}"
                        );
                    }
                    remove_image(&format!("{pipeline}:t"));
                }
                RunOnScratch => {
                    assert_eq!(plan.status.code(), Some(2), "{case}: {plan_text}");
                    assert!(plan_text.contains("run-on-scratch"), "{case}: {plan_text}");
                    let out = project.cmd(&["apply", "pipeline.toml"]).output().unwrap();
                    assert_eq!(out.status.code(), Some(2), "{case}: {}", output_text(&out));
                    assert!(leftovers().is_empty(), "{case}");
                }
                Lacks(missing) => {
                    assert_eq!(plan.status.code(), Some(1), "{case}: {plan_text}");
                    let refusal = format!(
                        "apply would fail: pipeline `{pipeline}`: step 2 `the run` (pipeline.toml:"
                    );
                    assert!(plan_text.contains(&refusal), "{case}: {plan_text}");
                    let out = project
                        .cmd(&["apply", "pipeline.toml", "--report", "report.json"])
                        .output()
                        .unwrap();
                    let text = output_text(&out);
                    assert_eq!(out.status.code(), Some(3), "{case}: {text}");
                    for said in [&plan_text, &text] {
                        assert!(
                            said.contains(&format!("cannot run on base `{reference}` (")),
                            "{case}: {said}"
                        );
                        for m in missing {
                            assert!(said.contains(&format!("`{m}` ")), "{case}: {m}: {said}");
                        }
                    }
                    assert!(text.contains("no step ran"), "{case}: {text}");
                    let report = read_report(&project.path().join("report.json"));
                    let statuses: Vec<&str> = report["steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["status"].as_str().unwrap())
                        .collect();
                    assert_eq!(statuses, ["not_run"; 2], "{case}: {report:#}");
                    assert!(leftovers().is_empty(), "{case}: apply left a container");
                }
            }
        }
    }
    remove_image(&static_base);
}
