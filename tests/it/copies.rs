//! Copies on the real engine: the image holds exactly the bytes its cache key was computed
//! from, file names arrive byte-exact, every destination `validate` accepts works, and a
//! folder copy owns the folder it creates, as `COPY --chown` does.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{output_text, unique, Project};
use crate::support::engine::{containers_named, docker, image_exists, remove_image, require_image};

/// A busybox pipeline with `steps`, committed as `NAME:t`.
fn pipeline(name: &str, steps: &str) -> String {
    format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n{steps}\n\
         [commit]\nmessage = \"copies\"\ntags = [\"{name}:t\"]\n"
    )
}

/// Runs `script` with `sh -c` in a throwaway container of `image`; returns its raw stdout.
fn run_in(image: &str, script: &str) -> Vec<u8> {
    let out = docker(&["run", "--rm", image, "sh", "-c", script]);
    assert!(
        out.status.success(),
        "`{script}` failed in {image}:\n{}",
        output_text(&out)
    );
    out.stdout
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The name of the first build container whose name starts with `prefix`, once it exists.
fn wait_for_container(prefix: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(name) = containers_named(prefix).into_iter().next() {
            return name;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("apply ended ({status}) before its build container {prefix}* existed");
        }
        assert!(
            Instant::now() < deadline,
            "no container {prefix}* after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_source_file_changed_after_its_key_fails_the_step_and_caches_nothing() {
    require_image("busybox:latest");
    let name = unique("copies-tamper");
    let project = Project::new();
    project.file("files/a.conf", "original\n");
    project.file("files/b.conf", "other\n");
    // The first step waits for /tmp/go, which the test creates after changing the source:
    // the keys are computed before the build container exists, the copy runs after the wait.
    project.pipeline(&pipeline(
        &name,
        &format!(
            "[[step]]\nrun = \"echo {name}; i=0; while [ ! -e /tmp/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\"\n\
             [[step]]\ncopy = {{ src = \"files\", dest = \"/etc/app\" }}\n"
        ),
    ));
    let mut child = project
        .std_cmd(&["apply", "pipeline.toml"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("pipeline-{name}-");
    let container = wait_for_container(&prefix, &mut child);
    // Same size, other bytes: only the content tells.
    project.file("files/a.conf", "tampered\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !docker(&["exec", &container, "touch", "/tmp/go"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "cannot exec in {container}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("step 2") && text.contains("a.conf") && text.contains("changed"),
        "the error names the step and the file:\n{text}"
    );
    assert!(
        !image_exists(&format!("{name}:t")),
        "an image was committed"
    );
    assert_eq!(containers_named(&prefix), Vec::<String>::new());
    // Nothing is cached under the key of the original content: restored, the copy runs again.
    project.file("files/a.conf", "original\n");
    let out = project
        .cmd(&["plan", "pipeline.toml", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let plan = crate::harness::single_plan(&out.stdout);
    assert_ne!(plan["steps"][1]["status"], "cached", "{plan:#}");
}

#[test]
fn file_names_that_are_not_utf8_arrive_byte_exact_and_apart() {
    let name = unique("copies-names");
    let project = Project::new();
    std::fs::create_dir(project.path().join("names")).unwrap();
    for (byte, content) in [(0xfe, "A"), (0xff, "B")] {
        let file = [b'a', byte];
        let path = project.path().join("names").join(OsStr::from_bytes(&file));
        std::fs::write(path, content).unwrap();
    }
    project.pipeline(&pipeline(
        &name,
        "[[step]]\ncopy = { src = \"names\", dest = \"/names\" }\n",
    ));
    require_image("busybox:latest");
    project.apply_ok(&name, &[]);
    let image = format!("{name}:t");
    let listing = run_in(
        &image,
        "for f in /names/*; do printf '%s=' \"$f\"; cat \"$f\"; echo; done",
    );
    assert_eq!(
        listing,
        b"/names/a\xfe=A\n/names/a\xff=B\n",
        "{}",
        String::from_utf8_lossy(&listing)
    );
    remove_image(&image);
}

#[test]
fn a_folder_copied_to_the_root_lands_in_the_root() {
    let name = unique("copies-root");
    let project = Project::new();
    project.file("tree/top.txt", "top\n");
    project.file("tree/sub/nested.txt", "nested\n");
    project.file("single.txt", "single\n");
    project.pipeline(&pipeline(
        &name,
        "[[step]]\ncopy = { src = \"tree\", dest = \"/\" }\n\
         [[step]]\ncopy = { src = \"single.txt\", dest = \"/\" }\n",
    ));
    require_image("busybox:latest");
    project.apply_ok(&name, &[]);
    let image = format!("{name}:t");
    let out = run_in(
        &image,
        "cat /top.txt /sub/nested.txt /single.txt; stat -c '%a %u:%g' /",
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "top\nnested\nsingle\n755 0:0\n"
    );
    remove_image(&image);
}

#[test]
fn destinations_with_dot_segments_doubled_slashes_or_nul_are_located_validate_errors() {
    let project = Project::new();
    project.file("f.txt", "x");
    let dests = ["/a/../b/", "/a/./b", "/a//b", "/a\\u0000b", "/etc/.."];
    let steps: String = dests
        .iter()
        .map(|d| format!("[[step]]\ncopy = {{ src = \"f.txt\", dest = \"{d}\" }}\n"))
        .collect();
    project.pipeline(&format!("[base]\nimage = \"busybox:latest\"\n{steps}"));
    let out = project
        .cmd(&["validate", "pipeline.toml"])
        .output()
        .unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        text.matches("error[invalid-destination]").count(),
        dests.len(),
        "{text}"
    );
    for line in [4, 6, 8, 10, 12] {
        assert!(
            text.contains(&format!("pipeline.toml:{line}:")),
            "no diagnostic at line {line}:\n{text}"
        );
    }
    assert!(
        text.contains("`/b/`"),
        "the hint names the plain path:\n{text}"
    );
}

#[test]
fn a_folder_copy_owns_the_folder_it_creates_but_not_its_parents_nor_an_existing_folder() {
    let name = unique("copies-owner");
    let project = Project::new();
    chmod(&project.file("cakes/one.txt", "1\n"), 0o644);
    chmod(&project.file("cakes/sub/two.txt", "2\n"), 0o644);
    chmod(&project.path().join("cakes/sub"), 0o755);
    chmod(&project.path().join("cakes"), 0o750);
    chmod(&project.file("single.txt", "single\n"), 0o644);
    project.pipeline(&pipeline(
        &name,
        "[[step]]\ncopy = { src = \"cakes\", dest = \"/tmp/made/cakes\", owner = \"42:42\" }\n\
         [[step]]\ncopy = { src = \"cakes\", dest = \"/tmp\", owner = \"43:43\" }\n\
         [[step]]\ncopy = { src = \"single.txt\", dest = \"/srv/new/single.txt\", owner = \"44\" }\n",
    ));
    require_image("busybox:latest");
    project.apply_ok(&name, &[]);
    let image = format!("{name}:t");
    let out = run_in(
        &image,
        "stat -c '%a %u:%g %n' /tmp /tmp/made /tmp/made/cakes /tmp/made/cakes/one.txt \
         /tmp/made/cakes/sub /tmp/made/cakes/sub/two.txt /tmp/one.txt /srv/new /srv/new/single.txt",
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "1777 0:0 /tmp\n\
         755 0:0 /tmp/made\n\
         750 42:42 /tmp/made/cakes\n\
         644 42:42 /tmp/made/cakes/one.txt\n\
         755 42:42 /tmp/made/cakes/sub\n\
         644 42:42 /tmp/made/cakes/sub/two.txt\n\
         644 43:43 /tmp/one.txt\n\
         755 0:0 /srv/new\n\
         644 44:44 /srv/new/single.txt\n"
    );
    remove_image(&image);
}

#[test]
fn a_file_copied_onto_an_existing_folder_fails_and_leaves_the_folder_alone() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cp-onto-dir");
    project.file("passwd.conf", "not a folder\n");
    project.pipeline(&pipeline(
        &name,
        "[[step]]\ncopy = { src = \"passwd.conf\", dest = \"/etc\" }\n",
    ));
    let out = project.cmd(&["apply", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("step 1"), "{text}");
    assert!(!image_exists(&format!("{name}:t")), "{text}");
    assert!(containers_named(&format!("pipeline-{name}-")).is_empty());
}
