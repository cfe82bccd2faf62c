//! Build containers of runs that are gone. A build container normally goes with its run (it
//! stops and removes itself when the tool's process ends, see the Docker engine's
//! `create_container`), but a run can still leave one: killed between a create and the
//! attach of its input, by an engine restart the container is not removed after, or by an
//! older version of the tool. `apply` (at its start, beside the run) and `gc` remove them.
//!
//! Several applies share an engine, so only what no live run can be using goes: a container
//! with a build container's name that is stopped (exited, dead), or that was created and never
//! started long ago. A running container is never touched: its run may be alive.

use super::RUN_PREFIX;
use crate::engine::{ContainerInfo, ContainerState, Engine, EngineError};

/// A container created and not started for longer than this is a leftover. A live run starts
/// its container (or, when only the commit changed, commits and removes it) right after the
/// create: a slow engine takes seconds, never minutes.
const CREATED_GRACE_SECS: i64 = 600;

/// True for the names [`super::run_name`] gives build containers:
/// `pipeline-<pipeline>-<run id>-<n>`, the run id in hex.
pub(crate) fn is_build_container(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(RUN_PREFIX) else {
        return false;
    };
    let Some((rest, n)) = rest.rsplit_once('-') else {
        return false;
    };
    let Some((pipeline, run)) = rest.rsplit_once('-') else {
        return false;
    };
    !pipeline.is_empty()
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && run.len() >= 5
        && run
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// True when `c` belongs to a run that is gone, at `now` (unix seconds): a build container,
/// or the lock container of a locked cache mount.
pub(crate) fn is_leftover(c: &ContainerInfo, now: i64) -> bool {
    if crate::execute::volumes::is_lock(&c.name) {
        return super::locks::is_stale(c.state, now - c.created);
    }
    is_build_container(&c.name)
        && match c.state {
            ContainerState::Stopped => true,
            ContainerState::Created => now - c.created > CREATED_GRACE_SECS,
            ContainerState::Alive | ContainerState::Removing => false,
        }
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The build containers of runs that are gone, by name.
pub(crate) async fn find<E: Engine>(engine: &E) -> Result<Vec<ContainerInfo>, EngineError> {
    let now = now();
    let mut found: Vec<ContainerInfo> = engine
        .list_containers_named(RUN_PREFIX)
        .await?
        .into_iter()
        .filter(|c| is_leftover(c, now))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Removes the build containers of runs that are gone; returns their names.
pub(crate) async fn remove<E: Engine>(engine: &E) -> Result<Vec<String>, EngineError> {
    let mut removed = Vec::new();
    for c in find(engine).await? {
        engine.remove_container(&c.id).await?;
        removed.push(c.name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;

    #[test]
    fn only_names_of_build_containers_count() {
        let run = super::super::run_name("my app", "18c2f3a4b51a2b");
        assert!(is_build_container(&format!("{run}-1")));
        assert!(
            is_build_container(&format!("{run}2-13")),
            "several pipelines"
        );
        assert!(is_build_container("pipeline-a-b-c-18c2f3a4b51a2b-2"));
        for other in [
            "pipeline-web",
            "pipeline-web-1",
            "pipeline--18c2f3a4b51a2b-1",
            "pipeline-web-prod-1",
            "pipeline-web-18C2F3A4B51A2B-1",
            "pipeline-web-18c2f3a4b51a2b-",
            "pipeline-web-18c2f3a4b51a2b-x",
            "other-web-18c2f3a4b51a2b-1",
        ] {
            assert!(!is_build_container(other), "{other}");
        }
    }

    fn container(name: &str, state: ContainerState, created: i64) -> ContainerInfo {
        ContainerInfo {
            id: name.into(),
            name: name.into(),
            state,
            created,
        }
    }

    #[test]
    fn stopped_and_long_created_containers_are_leftovers_running_ones_never() {
        let now = 1_000_000;
        let name = "pipeline-p-18c2f3a4b51a2b-1";
        let left = |state, created| is_leftover(&container(name, state, created), now);
        assert!(left(ContainerState::Stopped, now));
        assert!(left(ContainerState::Created, now - 3600));
        assert!(
            !left(ContainerState::Created, now - 5),
            "a live run may start it"
        );
        assert!(
            !left(ContainerState::Alive, now - 86_400),
            "a live run may use it"
        );
        assert!(!left(ContainerState::Removing, now - 3600));
        let lock = "pipeline-lock.0123456789abcdef0123";
        let lock_left = |state, created| is_leftover(&container(lock, state, created), now);
        assert!(lock_left(ContainerState::Stopped, now));
        assert!(lock_left(ContainerState::Created, now - 60));
        assert!(!lock_left(ContainerState::Created, now - 2));
        assert!(!lock_left(ContainerState::Alive, now - 86_400));
        let foreign = container("pipeline-web", ContainerState::Stopped, 0);
        assert!(!is_leftover(&foreign, now));
    }

    #[test]
    fn remove_takes_only_the_leftovers() {
        let fake = FakeEngine::default();
        let now = now();
        fake.add_container("pipeline-a-18c2f3a4b51a2b-1", ContainerState::Stopped, now);
        fake.add_container("pipeline-b-18c2f3a4b51a2b-1", ContainerState::Alive, 0);
        fake.add_container("pipeline-c-18c2f3a4b51a2b-1", ContainerState::Created, now);
        fake.add_container("pipeline-d-18c2f3a4b51a2b-1", ContainerState::Created, 0);
        fake.add_container("pipeline-mine", ContainerState::Stopped, 0);
        let removed = crate::testing::runtime().block_on(remove(&fake)).unwrap();
        assert_eq!(
            removed,
            ["pipeline-a-18c2f3a4b51a2b-1", "pipeline-d-18c2f3a4b51a2b-1"]
        );
        assert_eq!(
            fake.container_names(),
            [
                "pipeline-b-18c2f3a4b51a2b-1",
                "pipeline-c-18c2f3a4b51a2b-1",
                "pipeline-mine"
            ]
        );
    }
}
