//! Images made without running anything in them: copy-only steps on a base with no shell and
//! no `cat`, and on `scratch` (no base at all), as `FROM scratch` + `COPY` make them.

use std::path::Path;

use crate::harness::{output_text, unique, Project};
use crate::support::engine::{docker, docker_ok, image_inspect, remove_image, require_engine};

/// An image that holds only `/marker` (no shell, no `cat`, no /etc), made with `docker import`.
fn distroless_like(name: &str, dir: &Path) -> String {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("marker"), "base\n").unwrap();
    let tar = dir.join("rootfs.tar");
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
    let reference = format!("{name}-base:t");
    docker_ok(&["import", tar.to_str().unwrap(), &reference]);
    reference
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
