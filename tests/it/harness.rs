//! A small builder for running the `pipeline` binary on pipeline files in a temporary folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use assert_cmd::Command;

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
            .env_remove("NO_COLOR")
            .args(args);
        cmd
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
