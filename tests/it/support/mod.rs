//! Support code for the integration tests: a real Docker engine (`engine`), throwaway
//! registries (`registry`), a fault-injecting TCP proxy (`proxy`) and extra engines (`daemons`).
//! Everything here panics with a hint instead of skipping: a missing engine is a failure.
#![allow(dead_code)]

pub mod daemons;
pub mod engine;
pub mod proxy;
pub mod registry;
