//! Builds for several platforms. A pipeline with more than one platform becomes one build per
//! platform: its templates rendered for that platform (`{{ platform.arch }}`), its own cache
//! keys, containers and report entry, and a base image that is the base's manifest for that
//! platform (read from the base's index). Its publish targets stay with the pipeline: they are
//! published once every platform is built, as one index per tag.

use crate::config::{self, Overrides};
use crate::credentials;
use crate::diag::Report;
use crate::engine::Engine;
use crate::model::{Pipeline, Platform};
use crate::reference::ImageRef;
use crate::registry::{IndexEntry, Manifest, Registry};

/// A pipeline built for several platforms, and where its builds are among the run's.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The pipeline as loaded (for its first platform), with its publish targets.
    pub(crate) pipeline: Pipeline,
    /// Indexes of its builds among the run's pipelines, in the order of its platforms.
    pub(crate) builds: Vec<usize>,
}

/// The name of one platform's build: `NAME@os/arch`.
pub(crate) fn build_name(pipeline: &str, platform: &Platform) -> String {
    format!("{pipeline}@{platform}")
}

/// One build per (pipeline, platform); pipelines with one platform or none stay as they are.
/// A multi-platform pipeline's builds publish nothing themselves (see [`Group`]), and their
/// local tags get the platform as a suffix (`app:1-linux-arm64`): a local name holds one
/// image, so the platforms cannot share it.
pub(crate) fn expand(
    pipelines: Vec<Pipeline>,
    overrides: &Overrides,
) -> Result<(Vec<Pipeline>, Vec<Group>), Vec<Report>> {
    let mut builds = Vec::new();
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for p in pipelines {
        if p.platforms.len() < 2 {
            builds.push(p);
            continue;
        }
        let mut group = Group {
            pipeline: p.clone(),
            builds: Vec::new(),
        };
        for platform in &p.platforms {
            let loaded = if Some(platform) == p.platform.as_ref() {
                Ok(p.clone())
            } else {
                let o = Overrides {
                    platform: Some(platform.clone()),
                    ..overrides.clone()
                };
                config::load(&p.file, &o)
            };
            let mut b = match loaded {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            b.name = build_name(&p.name, platform);
            b.publish.clear();
            let suffix = platform.to_string().replace('/', "-");
            for t in &mut b.commit.tags {
                t.tag = Some(format!("{}-{suffix}", t.tag.as_deref().unwrap_or("latest")));
            }
            group.builds.push(builds.len());
            builds.push(b);
        }
        groups.push(group);
    }
    if errors.is_empty() {
        Ok((builds, groups))
    } else {
        Err(errors)
    }
}

/// Points every build that names its platform at the base's manifest for that platform,
/// by digest (`repo@sha256:...`): read from the base's index, or the base itself when it is
/// one image of that platform. A base that has no image for the platform is an error, found
/// before anything runs. A base its registry cannot tell about is checked in `engine`.
pub(crate) async fn resolve_bases<E: Engine>(
    builds: &mut [Pipeline],
    engine: &E,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for b in builds.iter_mut() {
        let Some(platform) = b.platform.clone() else {
            continue;
        };
        if let Err(e) = resolve_base(b, &platform, engine).await {
            errors.push(format!("`{}`: {e}", b.name));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

async fn resolve_base<E: Engine>(
    b: &mut Pipeline,
    platform: &Platform,
    engine: &E,
) -> Result<(), String> {
    let reference = b.base.image.to_string();
    let host = b.base.image.registry_host();
    let creds = credentials::resolve(host, b.base.login.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let registry = Registry::new(host, creds.as_ref(), &platform.os, &platform.arch);
    let read = registry.manifest(&reference).await;
    let digest = match read {
        Ok(Some(Manifest::Index { entries, .. })) => {
            let found = entries.iter().find(|e| {
                platform.matches(
                    &e.platform.os,
                    &e.platform.arch,
                    e.platform.variant.as_deref(),
                )
            });
            match found {
                Some(e) => e.digest.clone(),
                None => {
                    let has: Vec<String> = entries.iter().map(|e| e.platform.to_string()).collect();
                    return Err(format!(
                        "base image `{reference}` has no image for {platform} (its index lists {})",
                        if has.is_empty() {
                            "no platform".to_string()
                        } else {
                            has.join(", ")
                        }
                    ));
                }
            }
        }
        Ok(Some(Manifest::Image(e))) => {
            let p = &e.platform;
            if !platform.matches(&p.os, &p.arch, p.variant.as_deref()) {
                return Err(mismatch(&reference, p, platform));
            }
            e.digest
        }
        // Not in a registry that answers: the engine's copy must be of this platform.
        Ok(None) | Err(_) => {
            let local = engine
                .inspect_image(&reference)
                .await
                .map_err(|e| e.to_string())?;
            let why = match &read {
                Err(e) => format!("its registry cannot be read ({e})"),
                _ => "its registry has no such manifest".to_string(),
            };
            return match local.and_then(|i| i.platform) {
                Some(p) if platform.matches(&p.os, &p.arch, p.variant.as_deref()) => Ok(()),
                Some(p) => Err(format!("{}; {why}", mismatch(&reference, &p, platform))),
                None => Err(format!(
                    "base image `{reference}` is not in the engine and {why}: its image for {platform} cannot be found"
                )),
            };
        }
    };
    let pinned = format!("{}@{digest}", b.base.image.repository());
    b.base.image = ImageRef::parse(&pinned).map_err(|e| format!("`{pinned}`: {e}"))?;
    Ok(())
}

fn mismatch(reference: &str, has: &Platform, wants: &Platform) -> String {
    format!(
        "base image `{reference}` is a single-platform image for {has}, not {wants}: build {wants} from a base whose tag is a multi-platform index, or leave {wants} out of `platforms`"
    )
}

/// True when an index's `entries` are exactly the images of `built`: one per platform, each
/// a manifest the image already has in the repository (`known`: its digests there).
pub(crate) fn index_matches(entries: &[IndexEntry], built: &[(&Platform, Vec<String>)]) -> bool {
    entries.len() == built.len()
        && built.iter().all(|(platform, known)| {
            entries.iter().any(|e| {
                known.contains(&e.digest)
                    && platform.matches(
                        &e.platform.os,
                        &e.platform.arch,
                        e.platform.variant.as_deref(),
                    )
            })
        })
}

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

/// What publishing a multi-platform pipeline would do to one tag.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct IndexPlan {
    pub(crate) repository: String,
    pub(crate) tag: String,
    pub(crate) platforms: Vec<String>,
    pub(crate) status: super::PushStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
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
                Some(image) => digests_in(engine, image, &repository).await,
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
            let (status, reason) = if offline {
                (super::PushStatus::Unknown, Some("offline".to_string()))
            } else {
                match registry.manifest(&format!("{repository}:{tag}")).await {
                    Ok(None) => (super::PushStatus::New, None),
                    Ok(Some(Manifest::Index { entries, .. }))
                        if index_matches(&entries, &known) =>
                    {
                        (super::PushStatus::UpToDate, None)
                    }
                    Ok(Some(_)) => (super::PushStatus::Changed, None),
                    Err(e) => (super::PushStatus::Unknown, Some(e.to_string())),
                }
            };
            out.push(IndexPlan {
                repository: repository.clone(),
                tag: tag.clone(),
                platforms: platforms.clone(),
                status,
                reason,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Code;
    use crate::testing::Folder;

    #[test]
    fn each_platform_is_a_build_rendered_for_it_with_keys_of_its_own() {
        let folder = Folder::new();
        let p = folder.load(
            "app",
            r#"platforms = ["linux/amd64", "linux/arm64/v8"]
[base]
image = "base:1"
[[step]]
run = "fetch tool-{{ platform.os }}-{{ platform.arch }}{{ platform.variant }}"
[commit]
tags = ["app:1"]
[[publish]]
repository = "127.0.0.1:5000/app"
tags = ["1"]
"#,
        );
        let (builds, groups) = expand(vec![p], &Overrides::default()).unwrap();
        let names: Vec<&str> = builds.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["app@linux/amd64", "app@linux/arm64/v8"]);
        let runs: Vec<String> = builds
            .iter()
            .map(|b| format!("{:?}", b.steps[0].action))
            .collect();
        assert!(runs[0].contains("tool-linux-amd64\""), "{runs:?}");
        assert!(runs[1].contains("tool-linux-arm64v8\""), "{runs:?}");
        assert!(builds.iter().all(|b| b.publish.is_empty()));
        assert_eq!(builds[1].commit.tags[0].to_string(), "app:1-linux-arm64-v8");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].builds, [0, 1]);
        assert_eq!(groups[0].pipeline.publish.len(), 1);
        // Same base id (as a fake engine could say): the platform still keeps the keys apart.
        let inputs = |b: &Pipeline| {
            b.steps
                .iter()
                .map(|s| crate::cache::StepInputs::of(s).unwrap())
                .collect::<Vec<_>>()
        };
        let (a, _) = super::super::keys(&builds[0], &inputs(&builds[0]), Some("sha256:b"));
        let (b, _) = super::super::keys(&builds[1], &inputs(&builds[1]), Some("sha256:b"));
        assert_ne!(a, b);
    }

    #[test]
    fn platform_in_a_template_needs_platforms_and_bad_platforms_are_diagnostics() {
        let path = std::path::Path::new("p.toml");
        let dir = std::path::Path::new("/");
        let text = "[base]\nimage = \"b\"\n[[step]]\nrun = \"echo {{ platform.arch }}\"\n";
        let d = config::load_str(path, text, dir, &Overrides::default()).unwrap_err();
        assert!(
            d.iter().any(|d| d.code == Code::UndefinedVariable
                && d.hint.as_deref().is_some_and(|h| h.contains("--platform"))),
            "{d:?}"
        );
        let o = Overrides {
            platforms: vec!["linux/arm64".into()],
            ..Default::default()
        };
        let p = config::load_str(path, text, dir, &o).unwrap();
        assert_eq!(p.platform, Some(Platform::parse("linux/arm64").unwrap()));
        let bad = format!("platforms = [\"x86\"]\n{text}");
        let d = config::load_str(path, &bad, dir, &Overrides::default()).unwrap_err();
        assert!(d.iter().any(|d| d.code == Code::InvalidPlatform), "{d:?}");
    }

    #[test]
    fn an_index_matches_only_the_same_images_for_the_same_platforms() {
        let pl = |s: &str| Platform::parse(s).unwrap();
        let entry = |d: &str, p: &str| IndexEntry {
            digest: d.into(),
            media_type: String::new(),
            size: 1,
            platform: pl(p),
        };
        let (amd, arm) = (pl("linux/amd64"), pl("linux/arm64"));
        let built = [
            (&amd, vec!["sha256:a".to_string()]),
            (&arm, vec!["sha256:b".into()]),
        ];
        let same = [
            entry("sha256:a", "linux/amd64"),
            entry("sha256:b", "linux/arm64/v8"),
        ];
        assert!(index_matches(&same, &built));
        let swapped = [
            entry("sha256:b", "linux/amd64"),
            entry("sha256:a", "linux/arm64"),
        ];
        assert!(!index_matches(&swapped, &built));
        assert!(!index_matches(&same[..1], &built));
    }
}
