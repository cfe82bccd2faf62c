//! What the publish targets' registries hold under the pipeline's tags.

use super::index::own_digest;
use crate::credentials::{self, CredentialError};
use crate::engine::{Engine, EngineError, ImageInfo};
use crate::model::Pipeline;
use crate::plan::{TagSeen, TagState};

/// Asks each publish target's registry for each of its tags, in the order written; with
/// `image`, also whether each tag holds that image (the engine's, or the tool's own of it).
pub(crate) async fn publish_tags<E: Engine>(
    engine: &E,
    p: &Pipeline,
    image: Option<&ImageInfo>,
) -> Result<Vec<TagSeen>, CredentialError> {
    let mut out = Vec::new();
    // The manifest the tool pushes for the image (its own of the engine's), read once.
    let own = image.and_then(|info| own_digest(&info.id, p));
    for t in &p.publish {
        let repository = t.repository.repository();
        let creds = credentials::resolve(t.repository.registry_host(), t.login.as_ref()).await?;
        for tag in &t.tags {
            let asked = engine
                .remote_digest(&format!("{repository}:{tag}"), creds.clone())
                .await;
            let state = match asked {
                Ok(digest) => {
                    let published = match (image, &digest) {
                        (Some(_), Some(d)) if own.as_ref() == Some(d) => true,
                        (Some(info), Some(d)) => engine
                            .is_published(info, &repository, d, creds.clone())
                            .await
                            .unwrap_or(false),
                        _ => false,
                    };
                    TagState::Holds { digest, published }
                }
                Err(EngineError::Auth(why)) => TagState::Refused(why),
                Err(e) => TagState::Unreachable(e.to_string()),
            };
            out.push(TagSeen {
                repository: repository.clone(),
                tag: tag.clone(),
                state,
            });
        }
    }
    Ok(out)
}
