//! Which of the paths the first `run` step needs (see [`crate::plan::needs`]) an image lacks,
//! asked of a container created from it and never started, through the engine's archive
//! endpoint (as a copy's destination is): nothing runs in the image, and one container
//! answers every question.

use crate::engine::{ContainerSpec, Engine, EngineError, ImageInfo};
use crate::model::Pipeline;
use crate::plan::needs::{first_run, Lack, Missing, Want};

/// What of `wants` container `id` lacks: each want none of whose paths exists. A path the
/// engine cannot tell about counts as present: the step-time error stays the fallback. The
/// engine answers one question of a container at a time (each mounts its file system), so a
/// want's paths are asked in turn, the likeliest first, until one exists: `cat` and `/bin/sh`
/// on a usual base cost one question each.
pub(crate) async fn missing<E: Engine>(engine: &E, id: &str, wants: &[Want]) -> Vec<Missing> {
    let mut out = Vec::new();
    for w in wants {
        let mut paths: Vec<&String> = w.paths.iter().collect();
        paths.sort_by_key(|p| !(p.starts_with("/bin/") || p.starts_with("/usr/bin/")));
        let mut found = false;
        for path in paths {
            if engine.path_exists(id, path).await.unwrap_or(true) {
                found = true;
                break;
            }
        }
        if !found {
            out.push(w.missing.clone());
        }
    }
    out
}

/// For `plan`: what the first `run` step of `p` needs and `base` lacks, asked of a container
/// named `name` made from the base (created, never started, then removed); `None` when
/// nothing is lacking or nothing is to look for (the step is among the `steps_cached`).
pub(crate) async fn lacks<E: Engine>(
    engine: &E,
    p: &Pipeline,
    base: &ImageInfo,
    steps_cached: usize,
    name: &str,
) -> Result<Option<Lack>, EngineError> {
    let Some(needs) = first_run(p, steps_cached, &base.config) else {
        return Ok(None);
    };
    let spec = ContainerSpec {
        name: name.to_string(),
        image: base.id.clone(),
        image_entrypoint: base
            .config
            .entrypoint
            .as_ref()
            .is_some_and(|e| !e.is_empty()),
        image_cmd: base.config.cmd.as_ref().is_some_and(|c| !c.is_empty()),
        platform: p.platform.as_ref().map(ToString::to_string),
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    let missing = missing(engine, &id, &needs.wants).await;
    engine.remove_container(&id).await?;
    Ok((!missing.is_empty()).then(|| needs.lack(p, &base.id, missing)))
}
