//! The JSON run report (`apply --report FILE`), written on success, failure and interrupt.
//! Its format is documented in README.md ("Run report"). It never holds a secret: step output
//! is not recorded, only statuses, codes, durations, ids and digests.

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::events::{Event, Sink, StepOutcome};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Format version of this report.
    pub report_version: u32,
    /// The tool's version.
    pub tool_version: String,
    pub pipeline: String,
    pub file: String,
    /// Prefix of the names of every container this run created (`pipeline-<runid>`); empty
    /// when the run never reached the engine.
    pub run_name: String,
    /// `succeeded`, `failed` or `interrupted`.
    pub status: String,
    pub exit_code: u8,
    pub error: Option<String>,
    pub started_at: String,
    pub duration_ms: u128,
    pub base: Option<BaseRecord>,
    pub steps: Vec<StepRecord>,
    pub image: Option<ImageRecord>,
    pub pushes: Vec<PushRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaseRecord {
    pub reference: String,
    pub id: String,
    pub pulled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub index: usize,
    pub name: String,
    /// `cached`, `succeeded`, `failed`, `timed_out`, `error`, `interrupted` or `not_run`.
    pub status: String,
    pub cached: bool,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<u128>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageRecord {
    pub id: String,
    pub tags: Vec<String>,
    pub reused: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushRecord {
    pub repository: String,
    pub tag: String,
    /// Manifest digest in that registry (`sha256:...`), when the push succeeded.
    pub digest: Option<String>,
    /// `pushed`, `up_to_date` or `failed`.
    pub status: String,
    pub attempts: u32,
}

/// Collects events into a report.
pub struct Recorder {
    started: Instant,
    state: Mutex<Report>,
}

impl Recorder {
    pub fn new(pipeline: &crate::model::Pipeline, run_name: &str) -> Self {
        let steps = pipeline
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepRecord {
                index: i + 1,
                name: s.name.clone(),
                status: "not_run".into(),
                cached: false,
                exit_code: None,
                duration_ms: None,
            })
            .collect();
        Self {
            started: Instant::now(),
            state: Mutex::new(Report {
                report_version: 1,
                tool_version: env!("CARGO_PKG_VERSION").into(),
                pipeline: pipeline.name.clone(),
                file: pipeline.file.display().to_string(),
                run_name: run_name.into(),
                status: "running".into(),
                exit_code: 0,
                error: None,
                started_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                duration_ms: 0,
                base: None,
                steps,
                image: None,
                pushes: Vec::new(),
            }),
        }
    }

    /// The final report.
    pub fn finish(&self, status: &str, exit_code: u8, error: Option<String>) -> Report {
        let mut r = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        r.status = status.into();
        if status == "interrupted" {
            for s in r.steps.iter_mut().filter(|s| s.status == "running") {
                s.status = "interrupted".into();
            }
        }
        r.exit_code = exit_code;
        r.error = error;
        r.duration_ms = self.started.elapsed().as_millis();
        r
    }
}

impl Sink for Recorder {
    fn event(&self, e: Event) {
        let mut r = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match e {
            Event::BaseReady {
                reference,
                id,
                pulled,
            } => {
                r.base = Some(BaseRecord {
                    reference,
                    id,
                    pulled,
                })
            }
            Event::StepCached { index, .. } => {
                if let Some(s) = r.steps.get_mut(index - 1) {
                    s.status = "cached".into();
                    s.cached = true;
                }
            }
            Event::StepStarted { index, .. } => {
                if let Some(s) = r.steps.get_mut(index - 1) {
                    s.status = "running".into();
                }
            }
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => {
                if let Some(s) = r.steps.get_mut(index - 1) {
                    s.duration_ms = Some(duration.as_millis());
                    s.status = match outcome {
                        StepOutcome::Succeeded => "succeeded",
                        StepOutcome::Failed { .. } => "failed",
                        StepOutcome::TimedOut => "timed_out",
                        StepOutcome::Error => "error",
                    }
                    .into();
                    s.exit_code = match outcome {
                        StepOutcome::Succeeded => Some(0),
                        StepOutcome::Failed { exit_code } => Some(exit_code),
                        _ => None,
                    };
                }
            }
            Event::Committed {
                image,
                tags,
                reused,
            } => {
                r.image = Some(ImageRecord {
                    id: image,
                    tags,
                    reused,
                })
            }
            Event::Pushed {
                repository,
                tag,
                digest,
                attempts,
                up_to_date,
            } => r.pushes.push(PushRecord {
                repository,
                tag,
                digest: Some(digest),
                status: if up_to_date { "up_to_date" } else { "pushed" }.into(),
                attempts,
            }),
            _ => {}
        }
    }
}

impl Recorder {
    /// Records a push that failed for good.
    pub fn push_failed(&self, repository: &str, tag: &str, attempts: u32) {
        let mut r = self.state.lock().unwrap_or_else(|e| e.into_inner());
        r.pushes.push(PushRecord {
            repository: repository.into(),
            tag: tag.into(),
            digest: None,
            status: "failed".into(),
            attempts,
        });
    }
}

/// Sends every event to each sink in turn.
pub struct Tee<'a>(pub Vec<&'a dyn Sink>);

impl Sink for Tee<'_> {
    fn event(&self, e: Event) {
        for s in &self.0 {
            s.event(e.clone());
        }
    }
}
