//! Issue 4: the step cache, checkpoints, plan and gc, counted with the engine's own events.

use crate::harness::{output_text, unique, Project};
use crate::support::engine::{
    container_creates, docker, docker_ok, exec_starts, image_inspect, require_image,
    with_container_name_prefix, EventRecorder,
};
use crate::support::registry::Registry;

/// Runs `pipeline apply` and returns (container creates, exec starts, output) for this
/// pipeline's containers only (tests run in parallel).
fn apply_counting(project: &Project, name: &str, args: &[&str]) -> (usize, usize, String) {
    let recorder = EventRecorder::start();
    let out = project
        .cmd(&[&["apply", "pipeline.toml"], args].concat())
        .output()
        .unwrap();
    let events = recorder.stop();
    let text = output_text(&out);
    assert!(out.status.success(), "apply failed:\n{text}");
    let ours = with_container_name_prefix(&events, &format!("pipeline-{name}-"));
    (container_creates(&ours), exec_starts(&ours), text)
}

fn small_steps(name: &str, nonce: &str, last: &str, extra: &str) -> String {
    format!(
        r#"
name = "{name}"
[base]
image = "busybox:latest"
pull = "never"
[[step]]
run = "echo {nonce} > /nonce"
[[step]]
run = "mkdir -p /app && echo two > /app/two"
[[step]]
run = "echo {last} > /app/last"
{extra}
[commit]
author = "Cache Test <c@example.com>"
message = "{{{{ message }}}}"
[vars]
message = "first"
"#
    )
}

/// Marks the step whose command starts with `run_prefix` with `checkpoint = true`.
fn checkpoint_step(toml: &str, run_prefix: &str) -> String {
    toml.replacen(
        &format!("[[step]]\nrun = \"{run_prefix}"),
        &format!("[[step]]\ncheckpoint = true\nrun = \"{run_prefix}"),
        1,
    )
}

#[test]
fn unchanged_reapply_starts_no_container_and_runs_no_exec() {
    require_image("busybox:latest");
    let reg = Registry::start();
    let project = Project::new();
    let name = unique("cache-noop");
    let publish = format!(
        "[[publish]]\nrepository = \"{}/cache/{name}\"\ntags = [\"a\", \"b\"]\n",
        reg.addr
    );
    project.pipeline(&small_steps(&name, &unique("nonce"), "three", &publish));

    // Cold: several small steps share one container.
    let (creates, execs, text) = apply_counting(&project, &name, &[]);
    assert_eq!(
        creates, 1,
        "a cold apply of small steps uses one container:\n{text}"
    );
    assert_eq!(execs, 3, "{text}");

    let (creates, execs, text) = apply_counting(&project, &name, &[]);
    assert_eq!(
        (creates, execs),
        (0, 0),
        "an unchanged re-apply ran something:\n{text}"
    );
    assert_eq!(text.matches("cached [").count(), 3, "{text}");
    assert_eq!(
        text.matches("up to date").count(),
        2,
        "pushes should be up to date:\n{text}"
    );
    assert!(text.contains("image unchanged"), "{text}");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("up-to-date "))
            .count()
            == 2
            && !text.lines().any(|l| l.starts_with("pushed ")),
        "stdout says up-to-date, as stderr does:\n{text}"
    );

    // --no-cache really runs everything again.
    let (creates, execs, _) = apply_counting(&project, &name, &["--no-cache"]);
    assert_eq!((creates, execs), (1, 3));
}

#[test]
fn editing_the_last_step_after_checkpoints_runs_only_that_step() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-edit");
    let nonce = unique("nonce");
    let with_checkpoints = |last: &str| {
        let toml = small_steps(&name, &nonce, last, "");
        checkpoint_step(&checkpoint_step(&toml, "mkdir"), "echo nonce")
    };
    project.pipeline(&with_checkpoints("v1"));
    let (_, execs, text) = apply_counting(&project, &name, &[]);
    assert_eq!(execs, 3, "{text}");

    project.pipeline(&with_checkpoints("v2"));
    let plan = project
        .cmd(&["plan", "pipeline.toml", "--detailed-exitcode"])
        .output()
        .unwrap();
    let plan_text = output_text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{plan_text}");
    assert!(
        plan_text.contains("[3/3]") && plan_text.contains("changed: command"),
        "{plan_text}"
    );
    assert_eq!(plan_text.matches(": cached").count(), 2, "{plan_text}");

    let (creates, execs, text) = apply_counting(&project, &name, &[]);
    assert_eq!(execs, 1, "only the edited step may run:\n{text}");
    assert_eq!(creates, 1, "{text}");
    let image = text
        .lines()
        .find_map(|l| l.strip_prefix("image "))
        .unwrap()
        .to_string();
    assert_eq!(
        docker_ok(&["run", "--rm", &image, "cat", "/app/last", "/app/two"]),
        "v2\ntwo"
    );

    let plan = project
        .cmd(&["plan", "pipeline.toml", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", output_text(&plan));
}

#[test]
fn a_commit_only_change_runs_no_step() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-commit");
    project.pipeline(&small_steps(&name, &unique("nonce"), "x", ""));
    apply_counting(&project, &name, &[]);
    let (_, execs, text) = apply_counting(&project, &name, &["--var", "message=second"]);
    assert_eq!(execs, 0, "a commit-only change ran a step:\n{text}");
    let image = text
        .lines()
        .find_map(|l| l.strip_prefix("image "))
        .unwrap()
        .to_string();
    let inspect = image_inspect(&image);
    assert_eq!(inspect["Comment"], "second");
    assert_eq!(docker_ok(&["run", "--rm", &image, "cat", "/app/last"]), "x");
}

#[test]
fn a_failed_step_is_never_cached() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-fail");
    let toml = format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\n[[step]]\ncheckpoint = true\nrun = \"echo {} > /n\"\n[[step]]\nrun = \"test -f /ok\"\n",
        unique("nonce")
    );
    project.pipeline(&toml);
    for round in 0..2 {
        let recorder = EventRecorder::start();
        let out = project.cmd(&["apply", "pipeline.toml"]).output().unwrap();
        let events = with_container_name_prefix(&recorder.stop(), &format!("pipeline-{name}-"));
        assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
        // First round: both steps; second: the checkpointed first step is cached, the
        // failed one runs again.
        assert_eq!(
            exec_starts(&events),
            if round == 0 { 2 } else { 1 },
            "round {round}: {}",
            output_text(&out)
        );
    }
}

#[test]
fn changed_copy_content_with_the_old_mtime_is_not_served_from_the_cache() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-copy");
    let file = project.file("files/conf.txt", "alpha\n");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\n[[step]]\ncheckpoint = true\nrun = \"echo {}\"\n[[step]]\ncopy = {{ src = \"files/conf.txt\", dest = \"/etc/conf.txt\" }}\n",
        unique("nonce")
    ));
    apply_counting(&project, &name, &[]);
    // Same size, same mtime, different content.
    std::fs::write(&file, "bravo\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);

    let plan = project
        .cmd(&["plan", "pipeline.toml", "--format", "json"])
        .output()
        .unwrap();
    let plan = crate::harness::single_plan(&plan.stdout);
    assert_eq!(plan["steps"][0]["status"], "cached", "{plan:#}");
    assert_eq!(plan["steps"][1]["status"], "run", "{plan:#}");
    assert!(
        plan["steps"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("copied content"),
        "{plan:#}"
    );

    let (_, _, text) = apply_counting(&project, &name, &[]);
    let image = text
        .lines()
        .find_map(|l| l.strip_prefix("image "))
        .unwrap()
        .to_string();
    assert_eq!(
        docker_ok(&["run", "--rm", &image, "cat", "/etc/conf.txt"]),
        "bravo"
    );
}

#[test]
fn editing_the_vimrc_never_reinstalls_vim() {
    require_image("debian:bookworm");
    let project = Project::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/debian-vim");
    // The example without its publish target: this test is about the build.
    let example = std::fs::read_to_string(src.join("pipeline.toml")).unwrap();
    let build_only = &example[..example.find("[[publish]]").expect("the example publishes")];
    let name = unique("debian-vim");
    project.file("pipeline.toml", format!("name = \"{name}\"\n{build_only}"));
    project.file("files/vimrc", "set number\n");
    let name = name.as_str();
    let args = ["--var", "version=cache-test"];
    apply_counting(&project, name, &args);
    project.file(
        "files/vimrc",
        format!("set number\n\" {}\n", unique("edit")),
    );
    let (creates, execs, text) = apply_counting(&project, name, &args);
    assert!(text.contains("cached [1/2] install vim"), "{text}");
    assert_eq!(execs, 0, "vim was reinstalled:\n{text}");
    assert_eq!(creates, 1, "{text}");
    docker(&["rmi", "myvim:cache-test"]);
}

/// Keys of every step and of the commit, from `plan --format json`.
pub(crate) fn plan_keys(project: &Project, args: &[&str]) -> Vec<String> {
    let out = project
        .cmd(&[&["plan", "pipeline.toml", "--format", "json"], args].concat())
        .output()
        .unwrap();
    let plan = crate::harness::single_plan(&out.stdout);
    let mut keys: Vec<String> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect();
    keys.push(plan["commit"]["key"].as_str().unwrap().to_string());
    keys
}

#[test]
fn slow_steps_checkpoint_by_time_and_each_checkpoint_is_one_layer() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-timing");
    // Far apart, so that a loaded machine never makes a fast step look slow: the fast steps
    // take about 0.3 s there, the slow one sleeps 2.5 s.
    let toml = |last: &str| {
        format!(
            "name = \"{name}\"\n[cache]\ncheckpoint_after = \"1500ms\"\n[base]\nimage = \"busybox:latest\"\n\
             [[step]]\nrun = \"echo {nonce} > /a; sleep 2.5\"\n[[step]]\nrun = \"echo b > /b\"\n[[step]]\nrun = \"echo {last} > /c\"\n",
            nonce = "n"
        )
        .replace("echo n >", &format!("echo {name} >"))
    };
    project.pipeline(&toml("one"));
    let (_, _, text) = apply_counting(&project, &name, &[]);
    assert!(text.contains("checkpoint after step 1"), "{text}");
    let image = text
        .lines()
        .find_map(|l| l.strip_prefix("image "))
        .unwrap()
        .to_string();
    let base_layers = image_inspect("busybox:latest")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    let layers = image_inspect(&image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        layers,
        base_layers + 2,
        "one layer for the slow step's checkpoint, one for the rest"
    );

    project.pipeline(&toml("two"));
    let (creates, execs, text) = apply_counting(&project, &name, &[]);
    assert_eq!(
        (creates, execs),
        (1, 2),
        "resume after the slow step's checkpoint:\n{text}"
    );
}

/// Applies the small pipeline with last step "old", then with "new"; returns both key chains
/// (three steps with a checkpoint after the second, then the commit).
fn apply_old_then_new(project: &Project, name: &str) -> (Vec<String>, Vec<String>) {
    let nonce = unique("nonce");
    let mut keys = Vec::new();
    for last in ["old", "new"] {
        project.pipeline(&checkpoint_step(
            &small_steps(name, &nonce, last, ""),
            "mkdir",
        ));
        apply_counting(project, name, &[]);
        keys.push(plan_keys(project, &[]));
    }
    let new = keys.pop().unwrap_or_default();
    (keys.pop().unwrap_or_default(), new)
}

#[test]
fn gc_removes_only_entries_the_newest_apply_no_longer_uses() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-gc");
    let (old, new) = apply_old_then_new(&project, &name);
    assert_eq!(old[..2], new[..2], "the first two steps are shared");
    // The notes of the checkpoints of all steps, old and new.
    let note_of = |k: &str| {
        let id = docker_ok(&["images", "-q", "--no-trunc", &format!("pipeline-cache:{k}")]);
        let hex = id.trim_start_matches("sha256:").to_string();
        project
            .user_cache()
            .join(format!("pipeline/notes/{hex}.json"))
    };
    let (old_note, new_note) = (note_of(&old[2]), note_of(&new[2]));
    assert!(
        old_note.is_file() && new_note.is_file(),
        "{old_note:?} {new_note:?}"
    );

    let dry = project.cmd(&["gc", "--dry-run"]).output().unwrap();
    let dry_text = output_text(&dry);
    assert!(dry.status.success(), "{dry_text}");
    for k in &old[2..] {
        assert!(
            dry_text.contains(k.as_str()),
            "superseded entry {k} not listed:\n{dry_text}"
        );
    }
    for k in &new {
        assert!(
            !dry_text.contains(k.as_str()),
            "current entry {k} listed:\n{dry_text}"
        );
    }
    let listed = |k: &str| docker_ok(&["images", "-q", &format!("pipeline-cache:{k}")]);
    assert!(!listed(&old[3]).is_empty(), "--dry-run removed something");

    let gc = project.cmd(&["gc"]).output().unwrap();
    assert!(gc.status.success(), "{}", output_text(&gc));
    assert!(
        listed(&old[3]).is_empty(),
        "superseded commit entry still there"
    );
    assert!(
        !old_note.exists(),
        "gc kept the note of an entry it removed"
    );
    assert!(
        new_note.is_file(),
        "gc removed the note of an entry it kept"
    );
    // The newest apply is still fully cached.
    let (creates, execs, text) = apply_counting(&project, &name, &[]);
    assert_eq!((creates, execs), (0, 0), "{text}");
}

#[test]
fn gc_keeps_what_the_newest_apply_produced_even_without_steps() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-gc-nosteps");
    project.pipeline(&format!(
        "name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\n[commit]\nmessage = \"{name}\"\n[commit.config]\nlabels = {{ only = \"config\" }}\n"
    ));
    let (creates, _, text) = apply_counting(&project, &name, &[]);
    assert_eq!(
        creates, 1,
        "a commit of config alone needs one (never started) container:\n{text}"
    );
    let gc = project.cmd(&["gc"]).output().unwrap();
    assert!(gc.status.success(), "{}", output_text(&gc));
    let (creates, execs, text) = apply_counting(&project, &name, &[]);
    assert_eq!(
        (creates, execs),
        (0, 0),
        "gc removed the newest apply's image:\n{text}"
    );
}

#[test]
fn gc_keeps_an_entry_a_container_uses_says_so_and_removes_the_rest() {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique("cache-gc-busy");
    let (old, _) = apply_old_then_new(&project, &name);
    // A container (an apply in progress, say) uses the superseded final image.
    let holder = format!("{name}-holder");
    docker_ok(&[
        "create",
        "--name",
        &holder,
        &format!("pipeline-cache:{}", old[3]),
    ]);
    let gc = project.cmd(&["gc"]).output().unwrap();
    let text = output_text(&gc);
    docker_ok(&["rm", "-f", &holder]);
    assert!(
        gc.status.success(),
        "gc stopped at the entry in use:\n{text}"
    );
    assert!(
        text.contains(&format!("kept pipeline-cache:{}", old[3])) && text.contains("in use"),
        "{text}"
    );
    let listed = |k: &str| docker_ok(&["images", "-q", &format!("pipeline-cache:{k}")]);
    assert!(
        listed(&old[2]).is_empty(),
        "gc did not go on past the entry in use:\n{text}"
    );
}
