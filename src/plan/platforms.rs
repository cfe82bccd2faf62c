//! Builds for several platforms. A pipeline with more than one platform becomes one build per
//! platform: its templates rendered for that platform (`{{ platform.arch }}`), its own cache
//! keys, containers and report entry, and a base image that is the base's manifest for that
//! platform (read from the base's index). Its publish targets stay with the pipeline: they are
//! published once every platform is built, as one index per tag.

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
    use crate::config::{self, Overrides};
    use crate::diag::Code;

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
