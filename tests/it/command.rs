//! The committed image's `Cmd` and `Entrypoint` for every base config (neither, `CMD` only,
//! `ENTRYPOINT` only, both) and every file config (none, `cmd`, `entrypoint`, both, `cmd =
//! []`): what `docker commit --change` of a container of the same base gives, computed here
//! from real commits. Where Docker's commit cannot give the Dockerfile's result (it takes the
//! container's own command when the change leaves the command empty), the test says what the
//! tool gives instead, as the README documents it.

use serde_json::{json, Value};

use crate::harness::{output_text, unique, Project};
use crate::support::engine::{docker, docker_ok, remove_image, require_image};

/// The base configs, as `docker import --change` instructions.
const BASES: [(&str, &[&str]); 4] = [
    ("neither", &[]),
    ("cmd", &["CMD [\"sh\", \"-c\", \"echo base-cmd\"]"]),
    ("entrypoint", &["ENTRYPOINT [\"/bin/echo\", \"base-ep\"]"]),
    (
        "both",
        &[
            "ENTRYPOINT [\"/bin/echo\", \"base-ep\"]",
            "CMD [\"base-arg\"]",
        ],
    ),
];

/// The file configs: `[commit.config]` lines, and the same as `docker commit --change`s.
const FILES: [(&str, &str, &[&str]); 5] = [
    ("none", "", &[]),
    (
        "cmd",
        "cmd = [\"echo\", \"file-cmd\"]",
        &["CMD [\"echo\", \"file-cmd\"]"],
    ),
    (
        "entrypoint",
        "entrypoint = [\"/bin/echo\", \"file-ep\"]",
        &["ENTRYPOINT [\"/bin/echo\", \"file-ep\"]"],
    ),
    (
        "both",
        "entrypoint = [\"/bin/echo\", \"file-ep\"]\ncmd = [\"file-arg\"]",
        &[
            "ENTRYPOINT [\"/bin/echo\", \"file-ep\"]",
            "CMD [\"file-arg\"]",
        ],
    ),
    ("unset", "cmd = []", &["CMD []"]),
];

/// `Cmd` and `Entrypoint` of an image, as JSON (`null`, `[]` or a list).
fn command_of(image: &str) -> (Value, Value) {
    let text = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}}\t{{json .Config.Entrypoint}}",
        image,
    ]);
    // JSON text holds no raw tab.
    let (cmd, entrypoint) = text.split_once('\t').expect("two values");
    (
        serde_json::from_str(cmd).unwrap(),
        serde_json::from_str(entrypoint).unwrap(),
    )
}

/// Removes what the test made, however it ends.
struct Made(Vec<(&'static str, String)>);

impl Drop for Made {
    fn drop(&mut self) {
        for (what, name) in self.0.iter().rev() {
            match *what {
                "rm" => drop(docker(&["rm", "-f", name])),
                _ => remove_image(name),
            }
        }
    }
}

/// What the tool is expected to commit for `base` x `file`, from Docker's commit of a
/// container of the same base (`reference`).
fn expected(base: &str, file: &str, reference: (Value, Value)) -> (Value, Value) {
    let (cmd, entrypoint) = reference;
    match (base, file) {
        // Docker's commit would keep the container's own command; a Dockerfile keeps none.
        // Docker cannot store both as null: they are empty lists (the same at run time).
        ("neither", "none") => (json!([]), json!([])),
        // `CMD []` unsets the command, as in a Dockerfile (Docker's commit keeps the
        // container's instead); an unset entrypoint is stored as `[]`.
        (_, "unset") => (
            json!([]),
            if entrypoint.is_null() {
                json!([])
            } else {
                entrypoint
            },
        ),
        // Built on a base with neither, the entrypoint is `[]` rather than null.
        ("neither", "cmd") => (cmd, json!([])),
        _ => (cmd, entrypoint),
    }
}

#[test]
fn cmd_and_entrypoint_are_what_docker_commit_gives_for_every_base_and_file_config() {
    require_image("busybox:latest");
    let id = unique("command");
    let mut made = Made(Vec::new());
    // One root file system (busybox's), imported four times with different configs.
    let project = Project::new();
    let rootfs = project.path().join("rootfs.tar");
    let source = docker_ok(&["create", "busybox:latest", "sh"]);
    made.0.push(("rm", source.clone()));
    let out = docker(&["export", "-o", rootfs.to_str().unwrap(), &source]);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut pipelines = Vec::new();
    for (base, changes) in BASES {
        let image = format!("{id}-base-{base}:1");
        let mut args = vec!["import".to_string()];
        for c in changes {
            args.extend(["--change".to_string(), c.to_string()]);
        }
        args.extend([rootfs.to_str().unwrap().to_string(), image.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        made.0.push(("rmi", image.clone()));
        // The reference container: the base's own config, or a command where it has none
        // (Docker creates no container without one).
        let container = format!("{id}-ref-{base}");
        let mut create = vec!["create", "--name", &container, &image];
        if changes.is_empty() {
            create.push("sh");
        }
        docker_ok(&create);
        made.0.push(("rm", container.clone()));
        for (file, config, file_changes) in FILES {
            let reference = format!("{id}-ref-{base}-{file}:1");
            let mut args = vec!["commit".to_string()];
            for c in file_changes {
                args.extend(["--change".to_string(), c.to_string()]);
            }
            args.extend([container.clone(), reference.clone()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker_ok(&args);
            made.0.push(("rmi", reference.clone()));
            let name = format!("{id}-{base}-{file}");
            let tag = format!("{name}:1");
            made.0.push(("rmi", tag.clone()));
            project.file(
                &format!("images/{base}-{file}.toml"),
                format!(
                    "name = \"{name}\"\n[vars]\nmessage = \"first\"\n\
                     [base]\nimage = \"{image}\"\npull = \"never\"\n\n\
                     [[step]]\nrun = \"true\"\n\n\
                     [commit]\nmessage = \"{{{{ message }}}}\"\ntags = [\"{tag}\"]\n\n\
                     [commit.config]\n{config}\n"
                ),
            );
            pipelines.push((base, file, reference, tag));
        }
    }
    // Built (a container runs the step, then commits), then with another commit message,
    // the steps from the cache (a container that never starts commits): the same config.
    let again = ["apply", "--var", "message=second", "images"];
    for args in [&["apply", "--no-cache", "images"][..], &again[..]] {
        let out = project.cmd(args).output().unwrap();
        let text = output_text(&out);
        assert!(out.status.success(), "{args:?}: {text}");
        let mut wrong = Vec::new();
        for (base, file, reference, tag) in &pipelines {
            let want = expected(base, file, command_of(reference));
            let got = command_of(tag);
            if got != want {
                wrong.push(format!(
                    "base {base}, file {file}: cmd {} entrypoint {}, want cmd {} entrypoint {}",
                    got.0, got.1, want.0, want.1
                ));
            }
        }
        assert!(wrong.is_empty(), "{args:?}:\n{}", wrong.join("\n"));
    }
}
