//! The empty base of a pipeline on `scratch`: an image with no layers, written by the tool
//! and loaded into the engine, as `FROM scratch` starts a Dockerfile from nothing.

use sha2::{Digest, Sha256};

use crate::engine::{Engine, EngineError, ImageInfo};
use crate::model::Pipeline;
use crate::reference::SCRATCH_REFERENCE;

/// The empty image for `os`/`arch`: its `docker load` archive and its id (the digest of its
/// config, the same on every engine and machine, so cache keys built on it are too).
fn empty_image(os: &str, arch: &str) -> (Vec<u8>, String) {
    // No `config`, no `Env`: as `FROM scratch`, the image has only what the pipeline sets.
    let config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [] },
    })
    .to_string();
    let digest = hex::encode(Sha256::digest(config.as_bytes()));
    let config_name = format!("{digest}.json");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [SCRATCH_REFERENCE],
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
    (
        tar.into_inner().unwrap_or_default(),
        format!("sha256:{digest}"),
    )
}

/// The empty image for the pipeline's platform, else the engine's.
async fn for_pipeline<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<(Vec<u8>, String), EngineError> {
    let (os, arch) = match &p.platform {
        Some(pl) => (pl.os.clone(), pl.arch.clone()),
        None => engine.platform().await?,
    };
    Ok(empty_image(&os, &arch))
}

/// What the empty base will be, without loading it: `plan` changes nothing in the engine.
pub(crate) async fn scratch_info<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<ImageInfo, EngineError> {
    let id = for_pipeline(engine, p).await?.1;
    Ok(ImageInfo {
        id,
        ..Default::default()
    })
}

/// Loads the empty base into the engine unless it holds it already; what the engine says of it.
pub(crate) async fn ensure_scratch<E: Engine>(
    engine: &E,
    p: &Pipeline,
) -> Result<ImageInfo, EngineError> {
    let (archive, id) = for_pipeline(engine, p).await?;
    if let Some(info) = engine.inspect_image(SCRATCH_REFERENCE).await? {
        if info.id == id {
            return Ok(info);
        }
    }
    engine.load_image(archive, SCRATCH_REFERENCE).await?;
    engine
        .inspect_image(SCRATCH_REFERENCE)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("the loaded `{SCRATCH_REFERENCE}`")))
}
