//! How a command ends: an [`ExitStatus`] when it ran to its end, a [`CliError`] when it could
//! not. Both map to the documented exit codes here and nowhere else (README.md, "Exit codes");
//! errors are rendered once, by [`crate::run`] (through `ui`).

use crate::credentials::CredentialError;
use crate::diag;
use crate::engine::EngineError;
pub(crate) use crate::execute::events::Signal;
use crate::execute::ApplyError;
use crate::graph::GraphError;
use crate::model::Login;
use crate::observe::{BuildBaseError, ObserveError};
use crate::plan::Blocker;
use crate::registry::{DeleteError, RegistryError};

/// The end of a command that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Everything succeeded; for `plan --detailed-exitcode`: nothing would change.
    Success,
    /// `plan --detailed-exitcode`: apply would change something.
    Changes,
    /// A step failed: non-zero exit, timeout, or a copy source that is unreadable or changed
    /// during apply; or the first `run` step cannot run on its base (found before any step).
    StepFailed,
    /// Publishing failed; the committed image is kept in the engine.
    PublishFailed,
    /// The engine failed or is unreachable, or the base image is missing or cannot be pulled.
    EngineFailed,
    /// Invalid input found while running (a missing secret or password variable).
    Usage,
    Interrupted(Signal),
}

impl ExitStatus {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Changes | ExitStatus::Usage => 2,
            ExitStatus::StepFailed => 3,
            ExitStatus::PublishFailed => 4,
            ExitStatus::EngineFailed => 5,
            ExitStatus::Interrupted(Signal::Interrupt) => 130,
            ExitStatus::Interrupted(Signal::Terminate) => 143,
        }
    }

    /// How an apply error ends the run.
    pub(crate) fn of(e: &ApplyError) -> Self {
        use ApplyError::*;
        match e {
            // The engine went away (or restarted) under the step: an engine error.
            StepEngine {
                source: EngineError::Connection { .. },
                ..
            } => ExitStatus::EngineFailed,
            StepFailed { .. }
            | StepTimedOut { .. }
            | StepEngine { .. }
            | CopySource { .. }
            | CopyOwner { .. }
            | MountSource { .. }
            | BaseLacks(_) => ExitStatus::StepFailed,
            Push { .. } | Output { .. } => ExitStatus::PublishFailed,
            Credentials(_) | Secret { .. } => ExitStatus::Usage,
            BaseMissing { .. } | Pull { .. } | Commit(_) | Engine(_) => ExitStatus::EngineFailed,
        }
    }
}

/// Why a command could not run to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The command line itself (clap's own errors are printed by clap).
    #[error("{0}")]
    Usage(String),
    /// Pipeline files with problems: every diagnostic of every file.
    #[error("invalid pipeline files")]
    Invalid(Vec<diag::Report>),
    #[error("the pipelines cannot be ordered")]
    Graph(Vec<GraphError>),
    #[error("password variables are not set")]
    MissingPasswords(Vec<Login>),
    /// The base of a platform's build has no image for it, or cannot be found.
    #[error("the base images of the platforms cannot be found")]
    Bases(Vec<BuildBaseError>),
    /// No engine answered.
    #[error("no engine is reachable")]
    NoEngine(Vec<EngineError>),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("cannot plan `{pipeline}`: {source}")]
    Plan {
        pipeline: String,
        #[source]
        source: ObserveError,
    },
    /// `plan`: apply is certain to fail, for these reasons (by pipeline).
    #[error("apply would fail")]
    WouldFail(Vec<(String, Blocker)>),
    /// The process could not set itself up (the async runtime, signal handlers).
    #[error("cannot start: {what}: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A registry refused or failed what `gc --remote` asked of it before it deleted anything.
    #[error("`{repository}`: {source}; nothing was deleted")]
    Registry {
        repository: String,
        source: RegistryError,
    },
    /// `gc --remote` could not delete an unused entry.
    #[error("cannot delete `{reference}` from `{host}`: {source}")]
    Delete {
        reference: String,
        host: String,
        source: DeleteError,
    },
    /// `gc` could not read or clean the blob store.
    #[error("cannot collect the blob store `{}`: {source}", path.display())]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lock file: missing, stale or unreadable, or a base it cannot pin.
    #[error("{0}")]
    Lock(String),
    /// `plan --detailed-exitcode`: any error exits 1.
    #[error(transparent)]
    Detailed(Box<CliError>),
}

impl CliError {
    /// The process exit code.
    pub(crate) fn code(&self) -> u8 {
        match self {
            CliError::Usage(_)
            | CliError::Invalid(_)
            | CliError::Graph(_)
            | CliError::MissingPasswords(_)
            | CliError::Credentials(_)
            | CliError::Lock(_) => 2,
            CliError::Registry { .. } | CliError::Delete { .. } => 4,
            // The first problem decides: a file asking for a platform its base lacks is the
            // user's to fix (2); a base the engine and registry cannot provide is theirs (5).
            CliError::Bases(errors) => match errors.first() {
                Some(e) if e.error.is_engine_failure() => 5,
                _ => 2,
            },
            CliError::NoEngine(_) | CliError::Engine(_) | CliError::Plan { .. } => 5,
            CliError::Runtime { .. }
            | CliError::Store { .. }
            | CliError::Detailed(_)
            | CliError::WouldFail(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CliError;
    use crate::registry::{DeleteError, RegistryError};

    #[test]
    fn a_registry_failure_of_gc_keeps_its_cause_typed_and_exits_4() {
        let e = CliError::Delete {
            reference: "r/cache:k1".into(),
            host: "127.0.0.1:5000".into(),
            source: DeleteError::NotAllowed { status: 405 },
        };
        assert_eq!(e.code(), 4);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "cannot delete `r/cache:k1` from `127.0.0.1:5000`: the registry does not allow \
                 deletion (HTTP 405)"
            ),
            "{text}"
        );
        let cause = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<DeleteError>());
        assert!(
            matches!(cause, Some(DeleteError::NotAllowed { status: 405 })),
            "{cause:?}"
        );
        let e = CliError::Registry {
            repository: "r/cache".into(),
            source: RegistryError::Auth("401".into()),
        };
        assert_eq!(e.code(), 4);
        assert_eq!(
            e.to_string(),
            "`r/cache`: the registry refused the credentials: 401; nothing was deleted"
        );
        let cause = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<RegistryError>());
        assert!(matches!(cause, Some(RegistryError::Auth(_))), "{cause:?}");
    }
}
