//! Copies out of other images (`copy = { from = ..., src = ... }`): before any step runs, each
//! source image is made present (pulled like a base when missing) and pinned by its id, and
//! its `src` checked; when the step runs, `src` is read through the engine's archive endpoint
//! from a container created from that id and never started (nothing runs in the source image,
//! so it may lack a shell), which is removed again whatever happens.

use super::base::pulled;
use super::{ApplyError, Options};
use crate::engine::{ContainerSpec, Engine, EngineError};
use crate::execute::events::{Event, Sink};
use crate::model::{Action, CopyFrom, CopySpec, Pipeline};

/// `p` with the source images of its copies pinned (see [`pin`]); `None` when no step copies
/// out of another image.
pub(crate) async fn pinned<E: Engine>(
    engine: &E,
    p: &Pipeline,
    run_name: &str,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<Option<Pipeline>, ApplyError> {
    let needed = p
        .steps
        .iter()
        .any(|s| matches!(&s.action, Action::Copy(c) if c.from.is_some()));
    if !needed {
        return Ok(None);
    }
    let mut copy = p.clone();
    pin(engine, &mut copy, run_name, opts, sink).await?;
    Ok(Some(copy))
}

/// Pins every copy's source image in `p` (its id, written into the step, which the step's key
/// then covers) and checks that its `src` exists, before any step runs.
async fn pin<E: Engine>(
    engine: &E,
    p: &mut Pipeline,
    run_name: &str,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(), ApplyError> {
    for (i, step) in p.steps.iter_mut().enumerate() {
        let Action::Copy(CopySpec {
            from: Some(from), ..
        }) = &mut step.action
        else {
            continue;
        };
        let missing = |why: String| ApplyError::CopySource {
            index: i + 1,
            name: step.name.clone(),
            source: std::io::Error::other(why),
        };
        let (id, pulled) = present(engine, from, opts, sink).await?;
        let container = format!("{run_name}-from-{}", i + 1);
        let src = &from.src;
        let exists = with_container(engine, &container, &id, |c| async move {
            engine.path_exists(&c, src).await
        })
        .await?;
        if !exists {
            return Err(missing(format!(
                "`{}` is not in the image `{}` ({id}) that `from` ({}) names",
                from.src, from.text, from.at
            )));
        }
        sink.event(Event::CopyFromReady {
            index: i + 1,
            reference: from.text.clone(),
            id: id.clone(),
            pulled,
        });
        from.image = Some(id);
    }
    Ok(())
}

/// The id of the image `from` names, pulled when the engine lacks it; whether it was pulled.
async fn present<E: Engine>(
    engine: &E,
    from: &CopyFrom,
    opts: &Options,
    sink: &dyn Sink,
) -> Result<(String, bool), ApplyError> {
    let reference = from
        .reference
        .as_ref()
        .ok_or_else(|| EngineError::Other(format!("`{}` names no image", from.text)))?;
    if let Some(info) = engine.inspect_image(&reference.to_string()).await? {
        return Ok((info.id, false));
    }
    let info = pulled(engine, reference, None, opts, sink).await?;
    Ok((info.id, true))
}

/// Runs `f` with a container created (never started) from `image`, removing it afterwards
/// whether `f` succeeded or not.
async fn with_container<E, F, Fut, T>(
    engine: &E,
    name: &str,
    image: &str,
    f: F,
) -> Result<T, EngineError>
where
    E: Engine,
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    let spec = ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    let result = f(id.clone()).await;
    let removed = engine.remove_container(&id).await;
    let value = result?;
    removed?;
    Ok(value)
}

/// Copies `c`'s source (`from.src` in the pinned image) into container `into` at `/`: the
/// engine's archive of it is renamed to land at `dest` as it arrives, and uploaded as it is
/// renamed, so memory stays bounded whatever its size. `Ok(Err(_))`: the archive of the source
/// was unusable (the copy's problem, not the engine's).
pub(crate) async fn copy<E: Engine>(
    engine: &E,
    from: &CopyFrom,
    container: &str,
    into: &str,
    c: &CopySpec,
    create_dest: bool,
) -> Result<std::io::Result<()>, EngineError> {
    let image = from
        .image
        .as_deref()
        .ok_or_else(|| EngineError::Other(format!("the image `{}` was not pinned", from.text)))?;
    with_container(engine, container, image, |source| async move {
        let tar = engine.download(&source, &from.src).await?;
        let (archive, source_error) = crate::archive::from::stream(tar, c, c.owner, create_dest);
        let uploaded = engine.upload(into, "/", archive).await;
        // An unusable archive fails the upload: say so, not what the engine saw.
        if let Some(e) = source_error.take() {
            return Ok(Err(e));
        }
        uploaded.map(Ok)
    })
    .await
}
