//! Support code for the integration tests: a real Docker engine (`engine`), throwaway
//! registries (`registry`), a fault-injecting TCP proxy (`proxy`), extra engines (`daemons`),
//! a Podman service (`podman`), the images the tool writes (`image`) and a token service for
//! token-auth registries (`token_server`).
//! Everything here panics with a hint instead of skipping: a missing engine is a failure.
#![allow(dead_code)]

pub(crate) mod daemons;
pub(crate) mod engine;
pub(crate) mod hostile_registry;
pub(crate) mod image;
pub(crate) mod podman;
pub(crate) mod proxy;
pub(crate) mod registry;
pub(crate) mod token_server;
