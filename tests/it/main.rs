//! The one integration test binary. Engine tests run against the real Docker engine and real
//! registries; they fail (never skip) when the engine is not reachable.

mod support;

mod harness;

mod apply;
mod cache;
mod config;
mod docs;
mod executor;
mod faults;
mod hostile;
mod multi;
