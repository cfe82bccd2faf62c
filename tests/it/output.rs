//! Step output through a real engine: in the order the step wrote it, carriage returns as line
//! ends, long lines cut.

use crate::harness::{busybox_pipeline, output_text, unique, Project};
use crate::support::engine::require_image;

/// Applies a pipeline of one step running `run` (`{name}` in it is the pipeline's unique name);
/// returns the exit code, the step's lines as the plain log shows them (`[step 1] LINE`,
/// without the timestamp), the whole output and the name.
fn apply_one_step(prefix: &str, run: &str) -> (Option<i32>, Vec<String>, String, String) {
    require_image("busybox:latest");
    let project = Project::new();
    let name = unique(prefix);
    let step = format!(
        "[[step]]\nrun = \"{}\"\n[commit]\nmessage = \"m\"\n",
        run.replace("{name}", &name)
    );
    project.pipeline(&busybox_pipeline(&name, &step));
    let out = project.cmd(&["apply", "pipeline.toml"]).output().unwrap();
    let text = output_text(&out);
    let lines = text
        .lines()
        .filter_map(|l| l.split_once(" [step 1] ").map(|(_, line)| line.to_string()))
        .collect();
    (out.status.code(), lines, text, name)
}

#[test]
fn stdout_and_stderr_of_a_shell_step_keep_the_order_they_were_written_in() {
    let (code, lines, text, _) = apply_one_step(
        "order",
        "for i in 1 2 3 4 5 6 7 8; do echo about to fail $i; ls /nonexistent-$i; done; exit 3",
    );
    assert_eq!(code, Some(3), "{text}");
    let expected: Vec<String> = (1..=8)
        .flat_map(|i| {
            [
                format!("about to fail {i}"),
                format!("ls: /nonexistent-{i}: No such file or directory"),
            ]
        })
        .collect();
    assert_eq!(lines, expected, "{text}");
}

#[test]
fn carriage_returns_end_lines_and_a_long_line_is_cut() {
    let (code, lines, text, name) = apply_one_step(
        "progress",
        r"printf ' 10%%\r 55%%\r100%%\r\n'; head -c 100000 /dev/zero | tr '\\0' y; echo; echo {name}",
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(lines[..3], [" 10%", " 55%", "100%"], "{text}");
    assert_eq!(
        lines[3],
        format!(
            "{}… ({} bytes cut)",
            "y".repeat(16 * 1024),
            100_000 - 16 * 1024
        )
    );
    assert_eq!(lines[4], name);
}
