//! What the executor reports while it works. The library never prints: the command layer
//! renders these events (terminal, plain lines) and collects them into the run report.

use std::time::Duration;

use serde::Serialize;

use crate::engine::{OutputStream, Progress};

#[derive(Debug, Clone)]
pub enum Event {
    /// The base image is present (after a pull when one was needed).
    BaseReady {
        reference: String,
        id: String,
        pulled: bool,
    },
    PullProgress(Progress),
    /// Steps served from the cache, before anything runs.
    StepCached {
        index: usize,
        total: usize,
        name: String,
    },
    StepStarted {
        index: usize,
        total: usize,
        name: String,
    },
    /// One line of a step's output, secrets already redacted.
    StepOutput {
        index: usize,
        stream: OutputStream,
        line: String,
    },
    StepFinished {
        index: usize,
        outcome: StepOutcome,
        duration: Duration,
    },
    /// A checkpoint image now holds the steps up to `after_step`.
    Checkpoint {
        after_step: usize,
        image: String,
    },
    /// The final image exists (reused when nothing changed).
    Committed {
        image: String,
        tags: Vec<String>,
        reused: bool,
    },
    PushStarted {
        repository: String,
        tag: String,
    },
    PushProgress {
        repository: String,
        tag: String,
        progress: Progress,
    },
    PushRetry {
        repository: String,
        tag: String,
        attempt: u32,
        error: String,
        delay: Duration,
    },
    Pushed {
        repository: String,
        tag: String,
        digest: String,
        attempts: u32,
        up_to_date: bool,
    },
    /// A debug image of a failed step, kept on request.
    KeptFailed {
        image: String,
        step: usize,
    },
    Warning(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    Failed { exit_code: i64 },
    TimedOut,
    Error,
}

/// Where events go.
pub trait Sink: Send + Sync {
    fn event(&self, e: Event);
}

impl<F: Fn(Event) + Send + Sync> Sink for F {
    fn event(&self, e: Event) {
        self(e)
    }
}
