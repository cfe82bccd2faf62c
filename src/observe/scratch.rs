//! The empty base of a pipeline on `scratch`: an image with no layers, written by the tool
//! and loaded into the engine, as `FROM scratch` starts a Dockerfile from nothing.

use sha2::{Digest, Sha256};

use crate::engine::{Engine, EngineError, ImageInfo};
use crate::model::Pipeline;
use crate::reference::SCRATCH_REPOSITORY;

/// The empty image of one platform, as the engine holds it.
struct Empty {
    /// Its `docker load` archive.
    archive: Vec<u8>,
    /// Its id: the digest of its config, the same on every engine and machine, so cache keys
    /// built on it are too.
    id: String,
    /// The local tag it is loaded as: one per platform (`pipeline-scratch:linux-arm64`), so the
    /// builds of several platforms each find their own.
    tag: String,
}

/// The empty image for `os`/`arch`/`variant`.
fn empty_image(os: &str, arch: &str, variant: Option<&str>) -> Empty {
    // No `config`, no `Env`: as `FROM scratch`, the image has only what the pipeline sets.
    let mut config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [] },
    });
    let mut tag = format!("{SCRATCH_REPOSITORY}:{os}-{arch}");
    if let Some(v) = variant {
        config["variant"] = v.into();
        tag = format!("{tag}-{v}");
    }
    let config = config.to_string();
    let digest = hex::encode(Sha256::digest(config.as_bytes()));
    let config_name = format!("{digest}.json");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [],
    }])
    .to_string();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        (config_name.as_str(), &config),
        ("manifest.json", &manifest),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        // Writing into memory cannot fail.
        let _ = tar.append_data(&mut header, name, bytes.as_bytes());
    }
    Empty {
        archive: tar.into_inner().unwrap_or_default(),
        id: format!("sha256:{digest}"),
        tag,
    }
}

/// The empty image for the pipeline's platform, else the engine's.
async fn for_pipeline<E: Engine>(engine: &E, p: &Pipeline) -> Result<Empty, EngineError> {
    Ok(match &p.platform {
        Some(pl) => empty_image(&pl.os, &pl.arch, pl.variant.as_deref()),
        None => {
            let (os, arch) = engine.platform().await?;
            empty_image(&os, &arch, None)
        }
    })
}

/// What the empty base is, without loading it (`plan` changes nothing in the engine): the
/// engine's when it holds it, else what it will be.
pub(crate) async fn scratch_info<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<ImageInfo, EngineError> {
    let empty = for_pipeline(engine, p).await?;
    Ok(match engine.inspect_image(&empty.tag).await? {
        Some(info) if info.id == empty.id => info,
        _ => ImageInfo {
            id: empty.id,
            ..Default::default()
        },
    })
}

/// Loads the empty base into the engine unless it holds it already; what the engine says of it.
pub(crate) async fn ensure_scratch<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<ImageInfo, EngineError> {
    let empty = for_pipeline(engine, p).await?;
    if let Some(info) = engine.inspect_image(&empty.tag).await? {
        if info.id == empty.id {
            return Ok(info);
        }
    }
    engine.load_image(empty.archive, &empty.tag).await?;
    engine
        .inspect_image(&empty.tag)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("the loaded `{}`", empty.tag)))
}
