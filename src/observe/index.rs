//! What the registries hold under a multi-platform pipeline's tags: for `plan`, and for the
//! publishing of its indexes (an index that already lists exactly its images is up to date).

use crate::credentials;
use crate::engine::Engine;
use crate::plan::platforms::{index_matches, Group, IndexPlan};
use crate::plan::{Blocker, PushStatus};
use crate::registry::{Manifest, Registry, RegistryError};

/// The digests `image` has in `repository` (from pushes or pulls), as the engine recorded them.
pub(crate) async fn digests_in<E: Engine>(
    engine: &E,
    image: &str,
    repository: &str,
) -> Vec<String> {
    let prefix = format!("{repository}@");
    match engine.inspect_image(image).await {
        Ok(Some(i)) => i
            .repo_digests
            .into_iter()
            .filter_map(|d| d.strip_prefix(&prefix).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The manifest digest of the tool's own image of engine image `image`, when the store
/// holds one (the tool pushes that manifest, not the engine's).
pub(super) fn own_digest(image: &str, p: &crate::model::Pipeline) -> Option<String> {
    let store = crate::image::store::BlobStore::user()?;
    let compression = crate::image::compress::Compression::of(&p.image);
    crate::image::save::recorded_image(&store, image, compression).map(|i| i.manifest.digest)
}

/// Plans the indexes of a group: `images` are its builds' reusable final images (`None`: that
/// platform builds a new one), in the order of its platforms.
pub(crate) async fn plan_index<E: Engine>(
    engine: &E,
    group: &Group,
    images: &[Option<String>],
    offline: bool,
) -> Vec<IndexPlan> {
    let p = &group.pipeline;
    let platforms: Vec<String> = p.platforms.iter().map(ToString::to_string).collect();
    let mut out = Vec::new();
    for target in &p.publish {
        let repository = target.repository.repository();
        let host = target.repository.registry_host();
        let mut known = Vec::new();
        for (platform, image) in p.platforms.iter().zip(images) {
            let digests = match image {
                Some(image) => {
                    let mut d = digests_in(engine, image, &repository).await;
                    d.extend(own_digest(image, p));
                    d
                }
                None => Vec::new(),
            };
            known.push((platform, digests));
        }
        let creds = if offline {
            None
        } else {
            credentials::resolve(host, target.login.as_ref())
                .await
                .ok()
                .flatten()
        };
        // Manifests are read raw here, so the client's platform choice is never used.
        let registry = Registry::new(host, creds.as_ref(), "linux", "amd64");
        for tag in &target.tags {
            let mut fails = None;
            let (status, reason) = if offline {
                (PushStatus::Unknown, Some("offline".to_string()))
            } else {
                match registry.manifest(&format!("{repository}:{tag}")).await {
                    Ok(None) => (PushStatus::New, None),
                    Ok(Some(Manifest::Index { entries, .. }))
                        if index_matches(&entries, &known) =>
                    {
                        (PushStatus::UpToDate, None)
                    }
                    Ok(Some(_)) => (PushStatus::Changed, None),
                    Err(e) => {
                        if let RegistryError::Auth(_) = e {
                            fails = Some(Blocker::PublishRefused {
                                repository: repository.clone(),
                                tag: tag.clone(),
                            });
                        }
                        (PushStatus::Unknown, Some(e.to_string()))
                    }
                }
            };
            out.push(IndexPlan {
                repository: repository.clone(),
                tag: tag.clone(),
                platforms: platforms.clone(),
                status,
                reason,
                fails,
            });
        }
    }
    out
}
