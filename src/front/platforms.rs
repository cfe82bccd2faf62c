//! Builds for several platforms: a pipeline with more than one platform becomes one build per
//! platform, its templates rendered for that platform (see [`crate::plan::platforms`]).

use crate::config::{self, Overrides};
use crate::diag::Report;
use crate::model::Pipeline;
use crate::plan::platforms::{build_name, Group};

/// One build per (pipeline, platform); pipelines with one platform or none stay as they are.
/// A multi-platform pipeline's builds publish and write out nothing themselves (see
/// [`Group`]), and their
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
                    variant: p.variant.clone(),
                    ..overrides.clone()
                };
                config::load_reports(&p.file, &o).map(|mut b| b.remove(0))
            };
            let mut b = match loaded {
                Ok(b) => b,
                Err(e) => {
                    errors.extend(e);
                    continue;
                }
            };
            b.name = build_name(&p.name, platform);
            b.publish.clear();
            // Written once, of every platform's image, as the index is.
            b.outputs.clear();
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
        let (a, _) = crate::plan::keys(&builds[0], &inputs(&builds[0]), "sha256:b");
        let (b, _) = crate::plan::keys(&builds[1], &inputs(&builds[1]), "sha256:b");
        assert_ne!(a, b);
    }

    #[test]
    fn each_platform_of_a_variant_is_loaded_again_as_that_variant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.toml");
        std::fs::write(
            &path,
            r#"platforms = ["linux/amd64", "linux/arm64"]
[matrix]
flavor = ["slim", "full"]
[base]
image = "base:1"
[[step]]
run = "echo {{ flavor }} {{ platform.arch }}"
"#,
        )
        .unwrap();
        let variants = config::load_reports(&path, &Overrides::default()).unwrap();
        let (builds, groups) = expand(variants, &Overrides::default()).unwrap();
        let runs: Vec<String> = builds
            .iter()
            .map(|b| format!("{} {:?}", b.name, b.steps[0].action))
            .collect();
        assert_eq!(groups.len(), 2);
        for (run, want) in runs.iter().zip([
            "app-slim@linux/amd64",
            "app-slim@linux/arm64",
            "app-full@linux/amd64",
            "app-full@linux/arm64",
        ]) {
            assert!(run.starts_with(want), "{run}");
            let flavor = if want.contains("slim") {
                "slim"
            } else {
                "full"
            };
            let arch = want.rsplit('/').next().unwrap();
            assert!(run.contains(&format!("echo {flavor} {arch}")), "{run}");
        }
    }
}
