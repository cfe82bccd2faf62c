//! Publishing a multi-platform pipeline: each platform's image is pushed from the engine that
//! built it, then every tag becomes one index (a Docker manifest list) of those images, each
//! with its platform. A tag that already holds an index of exactly these images is up to date.

use super::publish::push_tag;
use super::{ApplyError, Options, Pushed};
use crate::credentials;
use crate::engine::{Engine, EngineError};
use crate::execute::events::{Event, Sink};
use crate::model::{Pipeline, Platform};
use crate::plan::platforms;
use crate::registry::{IndexEntry, Manifest, Registry, RegistryError};

/// One platform's build: the engine that holds its image.
pub(crate) struct Built<'a, E: Engine> {
    pub(crate) engine: &'a E,
    pub(crate) image: String,
    pub(crate) platform: Platform,
}

/// Publishes `p`'s targets as indexes of `built`, in the order written.
pub(crate) async fn publish_index<E: Engine>(
    p: &Pipeline,
    built: &[Built<'_, E>],
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Vec<Pushed>, ApplyError> {
    let mut out = Vec::new();
    for target in &p.publish {
        let repository = target.repository.repository();
        let host = target.repository.registry_host();
        let creds = credentials::resolve(host, target.login.as_ref()).await?;
        // Manifests are read raw here, so the client's platform choice is never used.
        let registry = Registry::new(host, creds.as_ref(), "linux", "amd64");
        let fail =
            |tag: &str, source: EngineError, attempts, pushed: &Vec<Pushed>| ApplyError::Push {
                repository: repository.clone(),
                tag: tag.to_string(),
                attempts,
                source: Box::new(source),
                image: built
                    .iter()
                    .map(|b| b.image.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                pushed: pushed.clone(),
                cli: built
                    .first()
                    .map(|b| b.engine.cli_name())
                    .unwrap_or("docker"),
            };
        let registry_error = |e: RegistryError| EngineError::Other(e.to_string());
        // What each image already is in this repository, when it was pushed there before.
        let mut known = Vec::new();
        for b in built {
            known.push((
                &b.platform,
                crate::observe::digests_in(b.engine, &b.image, &repository).await,
            ));
        }
        // Each platform's image is pushed once per repository, under its first tag that is
        // not up to date; its entry (digest, size, media type) is read back from the registry.
        let mut entries: Option<Vec<IndexEntry>> = None;
        for tag in &target.tags {
            let reference = format!("{repository}:{tag}");
            if let Ok(Some(Manifest::Index { digest, entries: e })) =
                registry.manifest(&reference).await
            {
                let same = platforms::index_matches(&e, &known);
                if same {
                    let entry = Pushed {
                        repository: repository.clone(),
                        tag: tag.clone(),
                        digest,
                        attempts: 0,
                        up_to_date: true,
                    };
                    sink.event(pushed_event(&entry));
                    out.push(entry);
                    continue;
                }
            }
            if entries.is_none() {
                let mut pushed = Vec::new();
                for b in built {
                    b.engine
                        .tag(&b.image, &repository, tag)
                        .await
                        .map_err(|e| fail(tag, e, 0, &out))?;
                    let (digest, _) =
                        push_tag(b.engine, &repository, tag, creds.clone(), opts, sink)
                            .await
                            .map_err(|(e, attempts)| fail(tag, e, attempts, &out))?;
                    let by_digest = format!("{repository}@{digest}");
                    let entry = match registry.manifest(&by_digest).await {
                        Ok(Some(Manifest::Image(e))) => e,
                        Ok(_) => {
                            return Err(fail(
                                tag,
                                EngineError::Other(format!(
                                    "`{by_digest}` is not the image just pushed"
                                )),
                                1,
                                &out,
                            ))
                        }
                        Err(e) => return Err(fail(tag, registry_error(e), 1, &out)),
                    };
                    sink.event(Event::PlatformPushed {
                        repository: repository.clone(),
                        platform: b.platform.to_string(),
                        digest: digest.clone(),
                    });
                    // The platform as the build names it: the engine may leave the variant
                    // out of the image config.
                    pushed.push(IndexEntry {
                        platform: Platform {
                            variant: b.platform.variant.clone().or(entry.platform.variant),
                            ..entry.platform
                        },
                        ..entry
                    });
                }
                entries = Some(pushed);
            }
            let list = entries.as_deref().unwrap_or_default();
            let digest = registry
                .push_index(&reference, list)
                .await
                .map_err(|e| fail(tag, registry_error(e), 1, &out))?;
            let entry = Pushed {
                repository: repository.clone(),
                tag: tag.clone(),
                digest,
                attempts: 1,
                up_to_date: false,
            };
            sink.event(pushed_event(&entry));
            out.push(entry);
        }
    }
    Ok(out)
}

fn pushed_event(p: &Pushed) -> Event {
    Event::Pushed {
        repository: p.repository.clone(),
        tag: p.tag.clone(),
        digest: p.digest.clone(),
        attempts: p.attempts,
        up_to_date: p.up_to_date,
    }
}
