//! `apply --metadata-file PATH` (as kaniko's `--digest-file` and bake's `--metadata-file`):
//! every reference the apply pushed (or found up to date) with its digest, indexes included,
//! and every image it committed with its local tags. Made from the run report.

use serde::Serialize;

use super::{ManifestRecord, PushStatus, RunReport, RunStatus};

/// The version of the metadata file's format: bumped when a field changes meaning or goes
/// away.
pub(crate) const METADATA_FORMAT: u32 = 1;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Metadata {
    pub(crate) format_version: u32,
    /// How the run ended (as in the run report).
    pub(crate) status: RunStatus,
    pub(crate) exit_code: u8,
    /// Every tag in a registry: a build's image (`kind = "manifest"`) or a multi-platform
    /// pipeline's index (`kind = "index"`, with each platform's manifest).
    pub(crate) pushed: Vec<PushedReference>,
    /// Every image committed in the engine, with its local tags.
    pub(crate) images: Vec<LocalImage>,
}

/// One tag in a registry.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PushedReference {
    /// `REPOSITORY:TAG@DIGEST`: pulls exactly this.
    pub(crate) reference: String,
    pub(crate) repository: String,
    pub(crate) tag: String,
    pub(crate) digest: String,
    /// `manifest` or `index`.
    pub(crate) kind: &'static str,
    pub(crate) pipeline: String,
    /// The pipeline's `[matrix]` values (`null`: its file has no matrix).
    pub(crate) variant: Option<crate::model::Variant>,
    /// The registry already held it: nothing was uploaded.
    pub(crate) up_to_date: bool,
    /// For an index: each platform's manifest it lists (pushed by this run or already held).
    pub(crate) manifests: Vec<ManifestRecord>,
}

/// An image committed in the engine.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct LocalImage {
    /// The build (`NAME`, or `NAME@os/arch` for one platform of several).
    pub(crate) pipeline: String,
    /// The pipeline's `[matrix]` values (`null`: its file has no matrix).
    pub(crate) variant: Option<crate::model::Variant>,
    /// The engine's image id.
    pub(crate) id: String,
    /// Its local tags (`[commit] tags`).
    pub(crate) tags: Vec<String>,
    /// The manifest digest of the image the tool wrote for it, when it wrote one.
    pub(crate) manifest_digest: Option<String>,
}

impl Metadata {
    pub(crate) fn of(report: &RunReport) -> Self {
        let mut pushed = Vec::new();
        let mut images = Vec::new();
        for entry in &report.pipelines {
            let r = &entry.report;
            if let Some(image) = &r.image {
                images.push(LocalImage {
                    pipeline: r.pipeline.clone(),
                    variant: r.variant.clone(),
                    id: image.id.clone(),
                    tags: image.tags.clone(),
                    manifest_digest: image.manifest_digest.clone(),
                });
            }
            for p in &r.pushes {
                let up_to_date = p.status == PushStatus::UpToDate;
                if let (Some(digest), PushStatus::Pushed | PushStatus::UpToDate) =
                    (&p.digest, p.status)
                {
                    pushed.push(PushedReference {
                        reference: format!("{}:{}@{digest}", p.repository, p.tag),
                        repository: p.repository.clone(),
                        tag: p.tag.clone(),
                        digest: digest.clone(),
                        kind: "manifest",
                        pipeline: r.pipeline.clone(),
                        variant: r.variant.clone(),
                        up_to_date,
                        manifests: Vec::new(),
                    });
                }
            }
        }
        for x in &report.indexes {
            let p = &x.pushed;
            pushed.push(PushedReference {
                reference: format!("{}:{}@{}", p.repository, p.tag, p.digest),
                repository: p.repository.clone(),
                tag: p.tag.clone(),
                digest: p.digest.clone(),
                kind: "index",
                pipeline: x.pipeline.clone(),
                variant: x.variant.clone(),
                up_to_date: p.up_to_date,
                manifests: x.manifests.clone(),
            });
        }
        Self {
            format_version: METADATA_FORMAT,
            status: report.status,
            exit_code: report.exit_code,
            pushed,
            images,
        }
    }
}
