//! Builds for several platforms: a pipeline with more than one platform becomes one build per
//! platform, its templates rendered for that platform (see [`crate::plan::platforms`]).

use crate::config::{self, Overrides};
use crate::diag::{Code, Diagnostic, Report};
use crate::model::{Action, CopySpec, Pipeline};
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
            linked_as(&mut b, &p);
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
    errors.extend(copies_per_platform(&mut builds, &groups));
    if errors.is_empty() {
        Ok((builds, groups))
    } else {
        Err(errors)
    }
}

/// The copies of `b` (loaded again for another platform) linked to the pipelines of the run
/// as those of `p` (the pipeline as loaded with the run) are.
fn linked_as(b: &mut Pipeline, p: &Pipeline) {
    for (step, first) in b.steps.iter_mut().zip(&p.steps) {
        if let (Action::Copy(c), Action::Copy(f)) = (&mut step.action, &first.action) {
            if let (Some(from), Some(linked)) = (c.from.as_mut(), f.from.as_ref()) {
                if from.text == linked.text && linked.pipeline.is_some() {
                    from.pipeline.clone_from(&linked.pipeline);
                    from.reference.clone_from(&linked.reference);
                }
            }
        }
    }
}

/// Points every copy out of a pipeline built for several platforms at its build for the
/// copying build's platform (the first platform's, for a build for the engine's platform):
/// that build's local tag holds the image. A pipeline not built for that platform, or whose
/// builds keep no local tag, is an error.
fn copies_per_platform(builds: &mut [Pipeline], groups: &[Group]) -> Vec<Report> {
    let mut errors = Vec::new();
    for i in 0..builds.len() {
        let platform = builds[i].platform.clone();
        for k in 0..builds[i].steps.len() {
            let Action::Copy(CopySpec {
                from: Some(from), ..
            }) = &builds[i].steps[k].action
            else {
                continue;
            };
            let Some(group) = groups
                .iter()
                .find(|g| from.pipeline.as_deref() == Some(g.pipeline.name.as_str()))
            else {
                continue;
            };
            let producer =
                group.builds.iter().copied().find(|&j| {
                    platform.is_none() || builds[j].platform.as_ref() == platform.as_ref()
                });
            let problem = match producer.map(|j| (j, builds[j].commit.tags.first().cloned())) {
                Some((j, Some(tag))) => {
                    let name = builds[j].name.clone();
                    if let Action::Copy(CopySpec {
                        from: Some(from), ..
                    }) = &mut builds[i].steps[k].action
                    {
                        from.pipeline = Some(name);
                        from.reference = Some(tag);
                    }
                    continue;
                }
                Some((_, None)) => format!(
                    "`{}` copies from `{}`, which is built for several platforms and keeps no \
                     local tag: its builds' images cannot be found",
                    builds[i].name, group.pipeline.name
                ),
                None => format!(
                    "`{}` copies from `{}`, which is not built for {}",
                    builds[i].name,
                    group.pipeline.name,
                    platform
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string)
                ),
            };
            errors.push(Report {
                file: builds[i].file.display().to_string(),
                source: String::new(),
                diagnostics: vec![Diagnostic::new(Code::UnknownFrom, problem).hint(
                    "give the pipeline copied from `[commit] tags` and the platforms of the \
                     pipelines that copy from it",
                )],
            });
        }
    }
    errors
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

    /// Loads the files (`NAME`, text) of one run, linked as the run links them, and expands
    /// them into builds; the problems' messages on failure.
    fn run_of(files: &[(&str, &str)]) -> Result<Vec<Pipeline>, Vec<String>> {
        let folder = tempfile::tempdir().unwrap();
        let paths: Vec<std::path::PathBuf> = files
            .iter()
            .map(|(name, text)| {
                let path = folder.path().join(format!("{name}.toml"));
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect();
        let loaded = config::load_all(&paths, &Overrides::default()).expect("valid files");
        expand(loaded.pipelines, &Overrides::default())
            .map(|(builds, _)| builds)
            .map_err(|reports| {
                reports
                    .iter()
                    .flat_map(|r| r.diagnostics.iter().map(|d| d.message.clone()))
                    .collect()
            })
    }

    #[test]
    fn a_copy_out_of_a_multi_platform_pipeline_takes_its_build_for_the_same_platform() {
        let app = r#"name = "app"
platforms = ["linux/amd64", "linux/arm64"]
[base]
image = "scratch"
[[step]]
copy = { from = "tool", src = "/out", dest = "/out" }
"#;
        let tool = |platforms: &str, keeps: &str| {
            format!(
                "name = \"tool\"\nplatforms = {platforms}\n[base]\nimage = \"base:1\"\n\
                 [[step]]\nrun = \"make\"\n{keeps}\n"
            )
        };
        let tagged = "[commit]\ntags = [\"tool:1\"]";
        let published = "[[publish]]\nrepository = \"127.0.0.1:5000/tool\"\ntags = [\"1\"]";
        let both = r#"["linux/amd64", "linux/arm64"]"#;
        let builds = run_of(&[("app", app), ("tool", &tool(both, tagged))]).unwrap();
        let copied: Vec<(String, String, String)> = builds
            .iter()
            .filter(|b| b.name.starts_with("app@"))
            .map(|b| match &b.steps[0].action {
                Action::Copy(CopySpec { from: Some(f), .. }) => (
                    b.name.clone(),
                    f.pipeline.clone().unwrap_or_default(),
                    f.reference
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            copied,
            [
                (
                    "app@linux/amd64".to_string(),
                    "tool@linux/amd64".to_string(),
                    "tool:1-linux-amd64".to_string()
                ),
                (
                    "app@linux/arm64".into(),
                    "tool@linux/arm64".into(),
                    "tool:1-linux-arm64".into()
                ),
            ]
        );
        // (tool's platforms, where its image goes, what the problem says)
        let cases = [
            (
                r#"["linux/amd64", "linux/arm/v7"]"#,
                tagged,
                "which is not built for linux/arm64",
            ),
            (both, published, "keeps no local tag"),
        ];
        for (platforms, tags, want) in cases {
            let problems = run_of(&[("app", app), ("tool", &tool(platforms, tags))]).unwrap_err();
            assert!(
                problems.iter().any(|m| m.contains(want)),
                "{platforms} {tags}: {problems:?}"
            );
        }
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
