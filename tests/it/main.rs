//! The one integration test binary. Hermetic tests (config, docs) always run; the tests that
//! need a real Docker engine and real registries run with `--features engine-tests` (what
//! `bash scripts/test.sh` and CI use), and there they fail, never skip, when the engine is
//! not reachable.

mod support;

mod harness;

mod config;
mod context;
mod docs;
mod hostile;
mod layers;

#[cfg(feature = "engine-tests")]
mod apply;
#[cfg(feature = "engine-tests")]
mod cache;
#[cfg(feature = "engine-tests")]
mod ci;
#[cfg(feature = "engine-tests")]
mod copies;
#[cfg(feature = "engine-tests")]
mod fanout;
#[cfg(feature = "engine-tests")]
mod faults;
#[cfg(feature = "engine-tests")]
mod gc_remote;
#[cfg(feature = "engine-tests")]
mod history;
#[cfg(feature = "engine-tests")]
mod lifetime;
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
#[cfg(feature = "engine-tests")]
mod remote;
#[cfg(feature = "engine-tests")]
mod secrets;
