//! How an apply fails: one variant per thing that failed, its cause kept as the source.

use std::time::Duration;

use super::Pushed;
use crate::credentials::CredentialError;
use crate::engine::EngineError;
use crate::observe::ObserveError;

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("step {index} `{name}` failed with exit code {code}")]
    StepFailed {
        index: usize,
        name: String,
        code: i64,
        tail: Vec<String>,
    },
    #[error("step {index} `{name}` exceeded its timeout of {}", humantime::format_duration(*.timeout))]
    StepTimedOut {
        index: usize,
        name: String,
        timeout: Duration,
        tail: Vec<String>,
    },
    #[error("step {index} `{name}`: {source}")]
    StepEngine {
        index: usize,
        name: String,
        #[source]
        source: EngineError,
    },
    #[error("step {index} `{name}`: copy source: {source}")]
    CopySource {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("step {index} `{name}`: {source}")]
    CopyOwner {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("step {index} `{name}`: mounted folder: {source}")]
    MountSource {
        index: usize,
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// The first `run` step needs what its base lacks: found before any step ran.
    #[error("{0}")]
    BaseLacks(Box<crate::plan::needs::Lack>),
    #[error("base image `{reference}` is not in the engine and `pull = \"never\"`")]
    BaseMissing {
        reference: String,
        /// The engine's command-line client (`docker`, `podman`), for the hint.
        cli: &'static str,
    },
    #[error("cannot pull base image `{reference}`: {source}")]
    Pull {
        reference: String,
        #[source]
        source: EngineError,
    },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("secret `{name}`: {source}")]
    Secret {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("cannot commit the image: {0}")]
    Commit(#[source] EngineError),
    #[error("push of `{repository}:{tag}` failed after {attempts} attempt(s): {source}")]
    Push {
        repository: String,
        tag: String,
        attempts: u32,
        #[source]
        source: Box<EngineError>,
        /// The committed image, kept in the engine.
        image: String,
        /// What reached a registry before the failure.
        pushed: Vec<Pushed>,
        /// The engine's command-line client (`docker`, `podman`), for the hint.
        cli: &'static str,
    },
    #[error("cannot write the image to `{output}`: {source}")]
    Output {
        output: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl ApplyError {
    /// The engine's failure behind this one, when there is one.
    pub(crate) fn engine_error(&self) -> Option<&EngineError> {
        match self {
            ApplyError::StepEngine { source, .. }
            | ApplyError::Pull { source, .. }
            | ApplyError::Commit(source)
            | ApplyError::Engine(source) => Some(source),
            ApplyError::Push { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ObserveError> for ApplyError {
    fn from(e: ObserveError) -> Self {
        match e {
            ObserveError::Engine(e) => ApplyError::Engine(e),
            ObserveError::Credentials(e) => ApplyError::Credentials(e),
            ObserveError::CopySource {
                index,
                name,
                source,
            } => ApplyError::CopySource {
                index,
                name,
                source,
            },
        }
    }
}

/// Why a secret's value cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error("the environment variable `{0}` is not set")]
    NotSet(String),
    #[error("cannot read `{}`: {source}", .path.display())]
    Unreadable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The blocking task that reads the secrets died.
    #[error("cannot read the secrets: {0}")]
    Reader(#[source] tokio::task::JoinError),
}
