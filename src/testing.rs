//! Helpers for the crate's own tests: pipelines loaded from text in a temporary folder, and a
//! fake engine holding a base image.

use crate::config::{self, Overrides};
use crate::engine::fake::FakeEngine;
use crate::engine::ImageConfig;
use crate::model::Pipeline;

/// A temporary folder for pipeline files.
pub(crate) struct Folder(tempfile::TempDir);

impl Folder {
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    /// Writes a file `rel` (e.g. a copy's source) in the folder.
    pub(crate) fn file(&self, rel: &str, contents: &str) {
        std::fs::write(self.0.path().join(rel), contents).expect("write file");
    }

    /// Writes `NAME.toml` and loads it.
    pub(crate) fn load(&self, name: &str, toml: &str) -> Pipeline {
        let path = self.0.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml).expect("write pipeline");
        config::load(&path, &Overrides::default()).unwrap_or_else(|r| panic!("{}", r.render()))
    }
}

/// A fake engine holding `base:1` (command `sh`).
pub(crate) fn engine() -> FakeEngine {
    FakeEngine::with_image(
        "base:1",
        ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        },
    )
}

/// A single-threaded runtime whose clock starts paused (sleeps end at once, in order).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}
