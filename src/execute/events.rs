//! What the executor reports while it works. The library never prints: the command layer
//! renders these events (terminal, plain lines) and collects them into the run report.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Applied, ApplyError};
use crate::engine::{OutputStream, Progress};
use crate::model::Pipeline;

#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// The base image is present (after a pull when one was needed).
    BaseReady {
        reference: String,
        id: String,
        pulled: bool,
    },
    /// The image a copy `from` reads is present, pinned by its id.
    CopyFromReady {
        index: usize,
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
    /// The tool wrote the image (layers, config and manifest in its store).
    ImageWritten {
        /// The manifest's digest: the image's digest in a registry it is pushed to as written.
        digest: String,
        /// The config's digest: the image id an engine that loads it gives it.
        config: String,
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
    /// The image was written to an output (`oci:PATH`, `tar:PATH`); `digest` is that of the
    /// manifest (or index) the output names.
    Written {
        output: String,
        digest: String,
    },
    /// A publish tag `apply --no-push` did not push.
    PushSkipped {
        repository: String,
        tag: String,
    },
    /// A debug image of a failed step, kept on request.
    KeptFailed {
        image: String,
        step: usize,
        /// The engine's command-line client (`docker`, `podman`), for the hint.
        cli: &'static str,
    },
    Warning(String),
    /// A platform's image of a multi-platform pipeline reached a registry (its tag then
    /// becomes an index of every platform's image).
    PlatformPushed {
        repository: String,
        platform: String,
        digest: String,
    },
    /// The index about to be reported for `repository:tag` (pushed or found up to date) lists
    /// these images: each one's platform (`os/arch[/variant]`) and manifest digest.
    IndexListed {
        repository: String,
        tag: String,
        manifests: Vec<(String, String)>,
    },
    /// A build runs for a platform that is not its engine's own: by emulation, slower.
    Emulated {
        platform: String,
        engine: String,
    },
    /// The build waits for something another apply holds (a locked cache mount).
    Waiting(String),
    /// The pipeline uses a remote cache; `unavailable` says why it stopped using it (down,
    /// slow, refused credentials): the build goes on without it.
    CacheRemote {
        repository: String,
        mode: crate::model::RemoteMode,
        unavailable: Option<String>,
    },
    /// A remote cache entry was pulled and is now a local cache entry.
    CacheImported {
        reference: String,
        /// The steps it holds.
        steps: usize,
        /// The final image rather than a checkpoint.
        last: bool,
    },
    /// Entries this apply made or used were pushed to the remote cache.
    CacheExported {
        repository: String,
        keys: Vec<String>,
        duration: Duration,
    },
    /// The pipeline starts on an engine; `after` names the pipeline it builds on and, when
    /// its image is pulled from a registry, the reference pulled.
    Started {
        engine: String,
        after: Option<(String, Option<String>)>,
    },
    /// The pipeline's apply succeeded.
    Succeeded {
        applied: Applied,
        engine: String,
        duration: Duration,
    },
    /// The pipeline's apply failed.
    Failed {
        error: Arc<ApplyError>,
        pipeline: Arc<Pipeline>,
    },
    /// The pipeline did not run: skipped, not started, or refused a start (failed).
    NotRun {
        status: Status,
        why: String,
    },
    /// Run-wide: an engine stopped answering; the pipelines on it fail, the others go on.
    EngineLost {
        endpoint: String,
        why: String,
    },
    /// Run-wide: `--fail-fast` starts nothing new and waits for the running pipelines.
    Stopping {
        why: String,
        running: usize,
    },
    /// Run-wide: a signal stops the run; build containers are being removed.
    Interrupted {
        signal: Signal,
    },
    /// Run-wide: build containers of runs that are gone were removed from an engine.
    LeftoversRemoved {
        endpoint: String,
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepOutcome {
    Succeeded,
    Failed { exit_code: i64 },
    TimedOut,
    Error,
}

/// Where events go.
pub(crate) trait Sink: Send + Sync {
    fn event(&self, e: Event);
}

impl<F: Fn(Event) + Send + Sync> Sink for F {
    fn event(&self, e: Event) {
        self(e)
    }
}

/// How one pipeline ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Succeeded,
    Failed,
    /// Its dependency failed or was skipped.
    Skipped,
    /// `--fail-fast` or an interrupt stopped the run before it started.
    NotStarted,
    Interrupted,
}

/// A signal that stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Interrupt,
    Terminate,
}

/// A duration as people read it, rounded to what matters at its size: `92ms`, `1.2s`,
/// `3m 4s`, `2h 5m`.
pub(crate) fn rounded(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    // Tenths of a second, rounded half up; under a minute they are shown.
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (ms + 500) / 1000;
    if secs < 3600 {
        return format!("{}m {}s", secs / 60, secs % 60);
    }
    let mins = (secs + 30) / 60;
    format!("{}h {}m", mins / 60, mins % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::rounded;

    #[test]
    fn durations_are_rounded_to_what_matters_at_their_size() {
        let ms = Duration::from_millis;
        let cases = [
            (Duration::ZERO, "0ms"),
            (Duration::from_nanos(92_013_973), "92ms"),
            (ms(999), "999ms"),
            (ms(1000), "1.0s"),
            (ms(1234), "1.2s"),
            (ms(1250), "1.3s"),
            (ms(59_940), "59.9s"),
            (ms(59_950), "1m 0s"),
            (ms(184_400), "3m 4s"),
            (ms(3_599_499), "59m 59s"),
            (ms(3_599_500), "1h 0m"),
            (Duration::from_mins(125), "2h 5m"),
            (Duration::from_hours(25), "25h 0m"),
        ];
        for (d, want) in cases {
            assert_eq!(rounded(d), want, "{d:?}");
        }
    }
}
