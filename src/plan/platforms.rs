//! Builds for several platforms. A pipeline with more than one platform becomes one build per
//! platform: its templates rendered for that platform (`{{ platform.arch }}`), its own cache
//! keys, containers and report entry, and a base image that is the base's manifest for that
//! platform (read from the base's index). Its publish targets stay with the pipeline: they are
//! published once every platform is built, as one index per tag.

use crate::config::{self, Overrides};
use crate::diag::Report;
use crate::model::{Pipeline, Platform};
use crate::registry::IndexEntry;

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

#[cfg(test)]
mod tests {
    use super::*;
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
            d.iter().any(|d| d.code == "undefined-variable"
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
        assert!(d.iter().any(|d| d.code == "invalid-platform"), "{d:?}");
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
