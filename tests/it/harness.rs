//! A small builder for running the `pipeline` binary on pipeline files in a temporary folder.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// The variable the test pipelines name in `[cache] signing_key_env`.
pub(crate) const CACHE_SIGNING_ENV: &str = "PIPELINE_CACHE_KEY";
/// The trusted writer's private key (every command gets it in [`CACHE_SIGNING_ENV`] unless a
/// test takes it away), and its public key, which the test pipelines name in `verify_key`
/// (docs/ci.md's example too).
pub(crate) const CACHE_SIGNING_KEY: &str =
    "MC4CAQAwBQYDK2VwBCIEIHOmJogNgYkA8RC59KqMSOay8XrgbETz2An1ehpv/4Do";
pub(crate) const CACHE_VERIFY_KEY: &str = "ed25519:nWh7PHYAJ/PovnTJj7Mdatpq0UOM0aAc9sv3Kyz9a84=";
/// Someone else's key pair: what an untrusted job may sign with.
pub(crate) const OTHER_SIGNING_KEY: &str =
    "MC4CAQAwBQYDK2VwBCIEIK9wc30FWjXkfLK0Nmziiey0D8YohVDkR3Nv5fkmxUqg";
pub(crate) const OTHER_VERIFY_KEY: &str = "ed25519:ZEsfF2Lbg1p9TYFavwP+0SP8+2zaDa3j272j8kwOLiA=";

/// A temporary folder holding pipeline files and the files they copy.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating folders); returns its path.
    pub(crate) fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes `pipeline.toml`.
    pub(crate) fn pipeline(&self, toml: &str) -> PathBuf {
        self.file("pipeline.toml", toml)
    }

    /// The user cache folder the binary is given (`XDG_CACHE_HOME`): checkpoint notes land in
    /// `pipeline/notes/` below it.
    pub(crate) fn user_cache(&self) -> PathBuf {
        self.dir.path().join(".cache")
    }

    /// The binary, run in the folder with plain output, an empty docker config (so the
    /// developer's credentials never leak into a test) and a user cache of its own.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::from_std(self.std_cmd(args));
        cmd.timeout(std::time::Duration::from_secs(600));
        cmd
    }

    /// The same as [`Project::cmd`], as a plain command that can run in the background.
    pub(crate) fn std_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("pipeline"));
        cmd.current_dir(self.dir.path())
            .env("PIPELINE_PROGRESS", "plain")
            .env("DOCKER_CONFIG", self.dir.path().join(".docker-config"))
            .env("XDG_CACHE_HOME", self.user_cache())
            .env(CACHE_SIGNING_ENV, CACHE_SIGNING_KEY)
            .env_remove("NO_COLOR")
            .args(args);
        cmd
    }
}

impl Project {
    /// The binary against the engine at `host` (`DOCKER_HOST`, no TLS settings inherited).
    pub(crate) fn cmd_on(&self, host: &str, args: &[&str]) -> Command {
        let mut c = self.cmd(args);
        c.env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env("DOCKER_HOST", host);
        c
    }

    /// Applies `pipeline.toml` with `args`; panics unless it succeeds and leaves no container
    /// of pipeline `name` behind. Returns stdout and stderr.
    pub(crate) fn apply_ok(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec!["apply", "pipeline.toml"];
        all.extend_from_slice(args);
        let out = self.cmd(&all).output().unwrap();
        let text = output_text(&out);
        assert!(out.status.success(), "apply failed:\n{text}");
        let left = crate::support::engine::containers_named(&format!("pipeline-{name}-"));
        assert!(left.is_empty(), "containers left behind: {left:?}");
        text
    }

    /// Starts `apply pipeline.toml --report report.json ARGS` in the background; the child and
    /// a channel of its output lines (stderr and stdout).
    pub(crate) fn spawn_apply(
        &self,
        args: &[&str],
    ) -> (std::process::Child, mpsc::Receiver<String>) {
        let mut all = vec!["apply", "pipeline.toml", "--report", "report.json"];
        all.extend_from_slice(args);
        spawn(self.std_cmd(&all))
    }
}

/// Starts `cmd` in the background; the child and a channel of its output lines (stderr and
/// stdout).
pub(crate) fn spawn(
    mut cmd: std::process::Command,
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipeline");
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    (child, rx)
}

/// Waits for a line containing `needle`; returns everything read so far.
pub(crate) fn wait_for_line(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no line with `{needle}` within {limit:?}:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Waits for the child to exit within `limit`; kills it and returns `None` when it does not.
pub(crate) fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one build of a run report (`apply --report`) of one single-platform pipeline: the
/// document's only entry of `pipelines`.
pub(crate) fn read_report(path: &Path) -> serde_json::Value {
    let document = read_json(path);
    assert_eq!(document["format_version"], 2, "{document:#}");
    match document["pipelines"].as_array().map(Vec::as_slice) {
        Some([one]) => one.clone(),
        _ => panic!("not the report of one build: {document:#}"),
    }
}

/// The plan of the one pipeline in `plan --format json` output (`pipelines[0].plan`).
pub(crate) fn single_plan(stdout: &[u8]) -> serde_json::Value {
    let document: serde_json::Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(stdout));
    });
    assert_eq!(document["format_version"], 1, "{document:#}");
    match document["pipelines"].as_array().map(Vec::as_slice) {
        Some([one]) => one["plan"].clone(),
        _ => panic!("not the plan of one pipeline: {document:#}"),
    }
}

/// A JSON file (a run report), parsed.
pub(crate) fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copies the folder `from` (files and folders, recursively) into `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A name unique to this test process and call, for images, repositories and tags.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos & 0xffff
    )
}

/// Stdout and stderr of a finished command, as text.
pub(crate) fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A pipeline named `name` on the local `busybox:latest` (never pulled); `body` holds its
/// steps, commit and the rest.
pub(crate) fn busybox_pipeline(name: &str, body: &str) -> String {
    format!("name = \"{name}\"\n[base]\nimage = \"busybox:latest\"\npull = \"never\"\n{body}")
}

/// Runs `pipeline ARGS`; returns its output (stdout, then stderr) and its peak RSS in KiB.
/// The peak is what GNU `time` (installed by `scripts/setup.sh`) reads of the tool's process,
/// which `time` forks from itself: a child this test process spawned directly would be
/// charged the test process's own peak too (the kernel keeps the high-water mark of the memory
/// a process had before `exec`, and a spawned child starts on its parent's).
pub(crate) fn measured(project: &Project, args: &[&str]) -> (String, u64) {
    let tool = project.std_cmd(args);
    let peak_file = project.path().join(".peak-rss");
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&peak_file)
        .arg(tool.get_program())
        .args(tool.get_args())
        .stdin(std::process::Stdio::null());
    if let Some(dir) = tool.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (key, value) in tool.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let out = cmd
        .output()
        .expect("run pipeline under /usr/bin/time (scripts/setup.sh installs it)");
    let text = output_text(&out);
    let peak = std::fs::read_to_string(&peak_file)
        .unwrap_or_else(|e| panic!("no peak RSS from /usr/bin/time ({e}):\n{text}"));
    // `time` writes "Command exited with non-zero status N" before the figure on failure.
    let kib = peak
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("unreadable peak RSS {peak:?}:\n{text}"));
    (text, kib)
}
