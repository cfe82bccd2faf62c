//! Feeds arbitrary text to the loader and validator: parse, structural check, templates and
//! the semantic checks. Anything but a panic (or a hang) is fine; rendering the diagnostics
//! is part of the target, so a span that cannot be shown is a crash too.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pipeline::config::{load_str, Overrides};
use pipeline::diag::Report;

fn dir() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join("pipeline-fuzz-dir");
        let _ = std::fs::create_dir_all(d.join("files"));
        let _ = std::fs::write(d.join("files/app.conf"), "x\n");
        d.canonicalize().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let overrides = Overrides::default();
    if let Err(diagnostics) = load_str(Path::new("fuzz.toml"), source, dir(), &overrides) {
        assert!(!diagnostics.is_empty());
        let report = Report {
            file: "fuzz.toml".into(),
            source: source.to_string(),
            diagnostics,
        };
        let _ = report.render();
    }
});
