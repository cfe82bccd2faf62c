//! Locks of `sharing = "locked"` cache mounts. The lock of a volume is a container named after
//! it: the engine refuses a second container of that name, whichever host or process asks.
//! The lock container lives as a build container does (it reads an input this process holds
//! open, `AutoRemove`): when its owner dies, however it dies, the engine removes it and the
//! lock is free. What an owner can still leave (killed between the create and the start, an
//! engine restart) is stale: stopped, or created and never started for a while. A waiter
//! removes a stale lock and takes it; a running one is never touched.

use std::time::Duration;

use crate::engine::{ContainerSpec, ContainerState, Engine, EngineError};
use crate::execute::events::{Event, Sink};

/// A lock container created and never started for longer than this belongs to a run that
/// is gone: a live run starts it right after creating it.
pub(crate) const CREATED_GRACE_SECS: i64 = 30;

/// How often a waiter asks again.
const POLL: Duration = Duration::from_millis(250);

/// Takes the lock `name`, waiting while another apply holds it; returns the lock container's
/// id, to remove when done. `template` gives the image (with `cat`) the container runs.
pub(crate) async fn acquire<E: Engine>(
    engine: &E,
    name: &str,
    template: &ContainerSpec,
    what: &str,
    sink: &dyn Sink,
) -> Result<String, EngineError> {
    let spec = ContainerSpec {
        name: name.to_string(),
        image: template.image.clone(),
        image_entrypoint: template.image_entrypoint,
        image_cmd: template.image_cmd,
        network: Some("none".into()),
        ..Default::default()
    };
    let mut said = false;
    loop {
        match engine.create_container(&spec).await {
            Ok(id) => {
                if let Err(e) = engine.start_container(&id).await {
                    let _ = engine.remove_container(&id).await;
                    return Err(e);
                }
                return Ok(id);
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        let holder = engine
            .list_containers_named(name)
            .await?
            .into_iter()
            .find(|c| c.name == name);
        match holder {
            // Released in the meantime.
            None => continue,
            Some(c) if is_stale(c.state, super::leftovers::now() - c.created) => {
                engine.remove_container(&c.id).await?;
                continue;
            }
            Some(_) => {}
        }
        if !said {
            said = true;
            sink.event(Event::Waiting(format!(
                "{what} is locked by another apply (lock `{name}`)"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a lock container in `state`, created `age` seconds ago, belongs to a run that is
/// gone.
pub(crate) fn is_stale(state: ContainerState, age: i64) -> bool {
    match state {
        ContainerState::Stopped => true,
        ContainerState::Created => age > CREATED_GRACE_SECS,
        ContainerState::Alive | ContainerState::Removing => false,
    }
}
