//! Which engine images the engines hold: what keeps the blob store's records of them live
//! (see `image::collect`).

use std::collections::BTreeSet;

use crate::engine::{Engine, EngineError};

/// The images of `ids` (ids or local tags) that some engine of `engines` holds; an engine's
/// `going` images (what the same `gc --dry-run` would remove from it) count as gone.
pub(crate) async fn held<E: Engine>(
    engines: &[(&E, BTreeSet<String>)],
    ids: &BTreeSet<String>,
) -> Result<BTreeSet<String>, EngineError> {
    let mut out = BTreeSet::new();
    for id in ids {
        for (engine, going) in engines {
            if going.contains(id) {
                continue;
            }
            if engine.inspect_image(id).await?.is_some() {
                out.insert(id.clone());
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;

    /// A case, what engine a is about to remove, what b is, what is held.
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );

    #[tokio::test]
    async fn an_image_is_held_when_some_engine_has_it_and_is_not_about_to_remove_it() {
        // Both fakes hold `sha256:base`.
        let a = FakeEngine::with_image("a:1", Default::default()).named("a");
        let b = FakeEngine::with_image("b:1", Default::default()).named("b");
        let ids: BTreeSet<String> = ["sha256:base", "sha256:other"].map(String::from).into();
        let set =
            |ids: &[&str]| -> BTreeSet<String> { ids.iter().map(|s| (*s).to_string()).collect() };
        // (case, what a is about to remove, what b is, what is held)
        let cases: [Case; 3] = [
            ("both hold it", &[], &[], &["sha256:base"]),
            (
                "one is about to remove it",
                &["sha256:base"],
                &[],
                &["sha256:base"],
            ),
            ("both are", &["sha256:base"], &["sha256:base"], &[]),
        ];
        for (what, going_a, going_b, want) in cases {
            let engines = [(&a, set(going_a)), (&b, set(going_b))];
            let got = held(&engines, &ids).await.unwrap();
            assert_eq!(got, set(want), "{what}");
        }
        b.set_down(true);
        assert!(
            held(&[(&b, BTreeSet::new())], &ids).await.is_err(),
            "an engine that cannot answer is an error, not an image gone"
        );
    }
}
