//! The one integration test binary. Hermetic tests (config, docs) always run; the tests that
//! need a real Docker engine and real registries run with `--features engine-tests` (what
//! `bash scripts/test.sh` and CI use), and there they fail, never skip, when the engine is
//! not reachable.

// Clippy's pedantic set (Cargo.toml) less what only these tests do on purpose.
#![allow(
    clippy::duration_suboptimal_units,
    reason = "timeouts in seconds compare at a glance with the logs and with each other"
)]
#![allow(
    clippy::manual_assert,
    clippy::match_wild_err_arm,
    reason = "a test fails with `panic!` where that reads best, and a caught panic's payload is not `Debug`"
)]
#![allow(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "suffixes the tests match (`.sig` tags, file names) are written by the tool in one case"
)]
#![allow(
    clippy::format_collect,
    clippy::cast_possible_truncation,
    reason = "fixtures build small texts and counts; no test input nears 2^32"
)]

mod support;

mod harness;

mod config;
mod context;
mod docs;
mod extends;
mod forms;
mod hostile;
mod layers;
mod lean;
mod machine;
mod matrix;
mod names;
mod overrides;
mod vars;

#[cfg(feature = "engine-tests")]
mod apply;
#[cfg(feature = "engine-tests")]
mod cache;
#[cfg(feature = "engine-tests")]
mod ci;
#[cfg(feature = "engine-tests")]
mod command;
#[cfg(feature = "engine-tests")]
mod copies;
#[cfg(feature = "engine-tests")]
mod copy_from;
#[cfg(feature = "engine-tests")]
mod fanout;
#[cfg(feature = "engine-tests")]
mod faults;
#[cfg(feature = "engine-tests")]
mod gc_remote;
#[cfg(feature = "engine-tests")]
mod history;
#[cfg(feature = "engine-tests")]
mod image_outputs;
#[cfg(feature = "engine-tests")]
mod lifetime;
#[cfg(feature = "engine-tests")]
mod lock;
#[cfg(feature = "engine-tests")]
mod made;
#[cfg(feature = "engine-tests")]
mod mount_points;
#[cfg(feature = "engine-tests")]
mod mounts;
#[cfg(feature = "engine-tests")]
mod multi;
#[cfg(feature = "engine-tests")]
mod offline;
#[cfg(feature = "engine-tests")]
mod output;
#[cfg(feature = "engine-tests")]
mod plan;
#[cfg(feature = "engine-tests")]
mod platforms;
#[cfg(feature = "engine-tests")]
mod podman;
mod push;
#[cfg(feature = "engine-tests")]
mod registry_limits;
#[cfg(feature = "engine-tests")]
mod remote;
#[cfg(feature = "engine-tests")]
mod scratch;
#[cfg(feature = "engine-tests")]
mod secrets;
#[cfg(feature = "engine-tests")]
mod store_gc;
