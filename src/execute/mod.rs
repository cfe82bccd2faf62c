//! Walks a pipeline against an engine: base, steps (with the cache and checkpoints), commit,
//! tags, pushes. Reports progress as [`events::Event`]s and never prints. One file per operation:
//! `apply.rs` runs them in order; `base.rs` makes the base present, `remote.rs` pulls and pushes
//! remote cache entries, `build.rs` runs the steps and commits, `made.rs` writes the tool's
//! own image (each checkpoint's layer, then config and manifest), `publish.rs` and `index.rs`
//! push, `secrets.rs` reads secret values, `names.rs` names what a run creates.

mod apply;
mod base;
mod build;
mod copy_from;
mod error;
pub(crate) mod events;
pub(crate) mod index;
pub(crate) mod layers;
pub(crate) mod leftovers;
mod locks;
mod made;
mod masks;
mod names;
mod output;
mod outputs;
mod owner;
mod publish;
mod remote;
mod retry;
mod secrets;
#[cfg(test)]
mod tests;
pub(crate) mod volumes;

use std::time::Duration;

use crate::cache;

pub(crate) use apply::apply;
pub(crate) use error::ApplyError;
pub(crate) use names::{engine_name, run_id, run_name, RUN_PREFIX};

/// Every kind of record the tool keeps in its blob store, with what one names: what `gc`
/// collects the store by.
pub(crate) const STORE_RECORDS: &[crate::image::collect::RecordKind] = &[
    (
        crate::image::save::IMAGE_RECORD,
        crate::image::save::record_names,
    ),
    (layers::BASE_RECORD, layers::base_names),
    (
        crate::image::compress::STORED_RECORD,
        crate::image::compress::stored_names,
    ),
    (made::CHAIN_RECORD, made::chain_names),
    // Where a blob was pushed: names no blob, a hint kept for the keep duration.
    (crate::registry::push::PUSHED_RECORD, |_| {
        Some(crate::image::collect::Names::default())
    }),
];

/// How apply behaves.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) no_cache: bool,
    /// Commit a failed step's container as a debug image instead of discarding it.
    pub(crate) keep_failed: bool,
    /// Attempts for a push or pull that fails with a transient error.
    pub(crate) attempts: u32,
    /// First retry delay; it doubles on each retry, up to 30 s, with jitter.
    pub(crate) retry_delay: Duration,
    /// Where checkpoint notes are recorded for `plan`; `None`: nowhere.
    pub(crate) notes: Option<cache::NoteStore>,
    /// The blob store the tool's images live in, which its pusher pushes from; `None`: the
    /// engine pushes.
    pub(crate) store: Option<crate::image::store::BlobStore>,
    /// Push nothing: no publish target, no index, no remote cache entry.
    pub(crate) no_push: bool,
}

/// One tag in a registry.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Pushed {
    pub(crate) repository: String,
    pub(crate) tag: String,
    pub(crate) digest: String,
    pub(crate) attempts: u32,
    pub(crate) up_to_date: bool,
}

/// What a successful apply produced.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) image: String,
    pub(crate) tags: Vec<String>,
    pub(crate) pushed: Vec<Pushed>,
    /// The image the tool wrote (in [`Options::store`]); `None` when it wrote none (no store,
    /// a part it could not have): the engine's image is the one published.
    pub(crate) made: Option<Box<crate::image::Image>>,
}
