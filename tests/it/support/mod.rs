//! Support code for the integration tests: a real Docker engine (`engine`), throwaway
//! registries (`registry`), a fault-injecting TCP proxy (`proxy`), extra engines (`daemons`)
//! and a Podman service (`podman`).
//! Everything here panics with a hint instead of skipping: a missing engine is a failure.
#![allow(dead_code)]

pub(crate) mod daemons;
pub(crate) mod engine;
pub(crate) mod hostile_registry;
pub(crate) mod podman;
pub(crate) mod proxy;
pub(crate) mod registry;
