//! The JSON run report (`apply --report FILE`), written on success, failure and interrupt.
//! Its format is documented in README.md ("Run report"). It never holds a secret: step output
//! is not recorded, only statuses, codes, durations, ids and digests.

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::engine::EngineError;
use crate::error::ExitStatus;
use crate::execute::events::{Event, Sink, StepOutcome};
use crate::execute::{ApplyError, Pushed};
use crate::model::Pipeline;
use crate::schedule::{Run, Status, Summary};

mod metadata;
pub(crate) use metadata::Metadata;

/// How a run (or one pipeline of it) ended, as the report says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
    Skipped,
    NotStarted,
}

impl From<Status> for RunStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Succeeded => RunStatus::Succeeded,
            Status::Failed => RunStatus::Failed,
            Status::Skipped => RunStatus::Skipped,
            Status::NotStarted => RunStatus::NotStarted,
            Status::Interrupted => RunStatus::Interrupted,
        }
    }
}

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepStatus {
    NotRun,
    Cached,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Error,
    Interrupted,
}

/// What happened to one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PushStatus {
    Pushed,
    UpToDate,
    Failed,
    /// `apply --no-push`.
    Skipped,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    pub(crate) pipeline: String,
    pub(crate) file: String,
    /// The pipeline's `[matrix]` values (`null`: its file has no matrix).
    pub(crate) variant: Option<crate::model::Variant>,
    /// Prefix of the names of every container this run created (`pipeline-<runid>`); empty
    /// when the run never reached the engine.
    pub(crate) run_name: String,
    /// `succeeded`, `failed`, `interrupted`; in a multi-pipeline report also `skipped`
    /// and `not_started`.
    pub(crate) status: RunStatus,
    pub(crate) exit_code: u8,
    pub(crate) error: Option<String>,
    pub(crate) started_at: String,
    pub(crate) duration_ms: u128,
    pub(crate) base: Option<BaseRecord>,
    pub(crate) steps: Vec<StepRecord>,
    pub(crate) image: Option<ImageRecord>,
    pub(crate) pushes: Vec<PushRecord>,
    /// The remote cache, when the pipeline has one.
    pub(crate) cache_remote: Option<CacheRemoteRecord>,
    /// Where the image was written besides registries (`oci:PATH`, `tar:PATH`).
    pub(crate) outputs: Vec<OutputRecord>,
}

/// An output the image was written to.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct OutputRecord {
    /// `oci:PATH` or `tar:PATH`.
    pub(crate) output: String,
    /// The manifest (or index) the output names.
    pub(crate) digest: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct CacheRemoteRecord {
    pub(crate) repository: String,
    #[schemars(with = "String")]
    pub(crate) mode: crate::model::RemoteMode,
    /// `ok`, or `unavailable` (down, slow, refused credentials: the build went on without it).
    pub(crate) status: &'static str,
    pub(crate) error: Option<String>,
    /// Entries pulled (`repository:key`).
    pub(crate) imported: Vec<String>,
    /// Keys pushed.
    pub(crate) exported: Vec<String>,
}

/// An image a build read: its base, or the image a copy step read files from.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct BaseRecord {
    pub(crate) reference: String,
    pub(crate) id: String,
    pub(crate) pulled: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct StepRecord {
    pub(crate) index: usize,
    pub(crate) name: String,
    /// `cached`, `succeeded`, `failed`, `timed_out`, `error`, `interrupted` or `not_run`.
    pub(crate) status: StepStatus,
    pub(crate) cached: bool,
    pub(crate) exit_code: Option<i64>,
    pub(crate) duration_ms: Option<u128>,
    /// For a copy out of another image: that image, pinned by id before any step ran.
    pub(crate) copies_from: Option<BaseRecord>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct ImageRecord {
    pub(crate) id: String,
    pub(crate) tags: Vec<String>,
    pub(crate) reused: bool,
    /// The manifest digest of the image the tool wrote (layers, config, manifest), when it
    /// wrote one: the same for the same input in reproducible mode, on any engine.
    pub(crate) manifest_digest: Option<String>,
    /// The digest of that image's config.
    pub(crate) config_digest: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct PushRecord {
    pub(crate) repository: String,
    pub(crate) tag: String,
    /// Manifest digest in that registry (`sha256:...`), when the push succeeded.
    pub(crate) digest: Option<String>,
    /// `pushed`, `up_to_date` or `failed`.
    pub(crate) status: PushStatus,
    pub(crate) attempts: u32,
}

/// Collects events into a report.
pub(crate) struct Recorder {
    started: Instant,
    /// The prefix of the names of the containers the build creates, reported once it started.
    run_name: String,
    state: Mutex<Report>,
}

impl Recorder {
    /// The recorder of one build, whose containers' names start with `run_name`.
    pub(crate) fn new(pipeline: &Pipeline, run_name: &str) -> Self {
        let steps = pipeline
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepRecord {
                index: i + 1,
                name: s.name.clone(),
                status: StepStatus::NotRun,
                cached: false,
                exit_code: None,
                duration_ms: None,
                copies_from: None,
            })
            .collect();
        Self {
            started: Instant::now(),
            run_name: run_name.to_string(),
            state: Mutex::new(Report {
                pipeline: pipeline.name.clone(),
                file: pipeline.file.display().to_string(),
                variant: pipeline.variant.clone(),
                run_name: String::new(),
                status: RunStatus::Running,
                exit_code: 0,
                error: None,
                started_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                duration_ms: 0,
                base: None,
                steps,
                image: None,
                pushes: Vec::new(),
                cache_remote: None,
                outputs: Vec::new(),
            }),
        }
    }

    /// The final report.
    pub(crate) fn finish(&self, status: RunStatus, exit_code: u8, error: Option<String>) -> Report {
        let mut r = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        r.status = status;
        if status == RunStatus::Interrupted {
            for s in r
                .steps
                .iter_mut()
                .filter(|s| s.status == StepStatus::Running)
            {
                s.status = StepStatus::Interrupted;
            }
        }
        r.exit_code = exit_code;
        r.error = error;
        r.duration_ms = self.started.elapsed().as_millis();
        r
    }
}

impl Report {
    /// Step `index` (from 1) copies out of image `reference`, pinned to `id`.
    fn copied_from(&mut self, index: usize, reference: String, id: String, pulled: bool) {
        if let Some(s) = self.steps.get_mut(index - 1) {
            s.copies_from = Some(BaseRecord {
                reference,
                id,
                pulled,
            });
        }
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
                });
            }
            Event::CopyFromReady {
                index,
                reference,
                id,
                pulled,
            } => r.copied_from(index, reference, id, pulled),
            Event::StepCached { index, .. } => {
                if let Some(s) = r.steps.get_mut(index - 1) {
                    s.status = StepStatus::Cached;
                    s.cached = true;
                }
            }
            Event::StepStarted { index, .. } => {
                if let Some(s) = r.steps.get_mut(index - 1) {
                    s.status = StepStatus::Running;
                }
            }
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => {
                if let Some(s) = r.steps.get_mut(index - 1) {
                    step_finished(s, outcome, duration);
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
                    manifest_digest: None,
                    config_digest: None,
                });
            }
            Event::ImageWritten { digest, config } => {
                if let Some(i) = r.image.as_mut() {
                    i.manifest_digest = Some(digest);
                    i.config_digest = Some(config);
                }
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
                status: if up_to_date {
                    PushStatus::UpToDate
                } else {
                    PushStatus::Pushed
                },
                attempts,
            }),
            Event::Written { output, digest } => r.outputs.push(OutputRecord { output, digest }),
            Event::PushSkipped { repository, tag } => r.pushes.push(PushRecord {
                repository,
                tag,
                digest: None,
                status: PushStatus::Skipped,
                attempts: 0,
            }),
            e @ (Event::CacheRemote { .. }
            | Event::CacheImported { .. }
            | Event::CacheExported { .. }) => cache_event(&mut r, e),
            Event::Started { .. } => {
                r.run_name.clone_from(&self.run_name);
                r.started_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            }
            Event::Failed { error, .. } => push_failed(&mut r, &error),
            _ => {}
        }
    }
}

/// How a step ended.
fn step_finished(s: &mut StepRecord, outcome: StepOutcome, duration: std::time::Duration) {
    s.duration_ms = Some(duration.as_millis());
    s.status = match outcome {
        StepOutcome::Succeeded => StepStatus::Succeeded,
        StepOutcome::Failed { .. } => StepStatus::Failed,
        StepOutcome::TimedOut => StepStatus::TimedOut,
        StepOutcome::Error => StepStatus::Error,
    };
    s.exit_code = match outcome {
        StepOutcome::Succeeded => Some(0),
        StepOutcome::Failed { exit_code } => Some(exit_code),
        _ => None,
    };
}

/// The remote cache: used (or not, and why), entries pulled and pushed.
fn cache_event(r: &mut Report, e: Event) {
    match e {
        Event::CacheRemote {
            repository,
            mode,
            unavailable,
        } => {
            let rec = r.cache_remote.get_or_insert(CacheRemoteRecord {
                repository,
                mode,
                status: "ok",
                error: None,
                imported: Vec::new(),
                exported: Vec::new(),
            });
            if unavailable.is_some() {
                rec.status = "unavailable";
                rec.error = unavailable;
            }
        }
        Event::CacheImported { reference, .. } => {
            if let Some(rec) = &mut r.cache_remote {
                rec.imported.push(reference);
            }
        }
        Event::CacheExported { keys, .. } => {
            if let Some(rec) = &mut r.cache_remote {
                rec.exported.extend(keys);
            }
        }
        _ => {}
    }
}

/// A failed push is a push record too.
fn push_failed(r: &mut Report, error: &ApplyError) {
    if let ApplyError::Push {
        repository,
        tag,
        attempts,
        ..
    } = error
    {
        r.pushes.push(PushRecord {
            repository: repository.clone(),
            tag: tag.clone(),
            digest: None,
            status: PushStatus::Failed,
            attempts: *attempts,
        });
    }
}

/// Sends every event to each sink in turn.
pub(crate) struct Tee<'a>(pub Vec<&'a dyn Sink>);

impl Sink for Tee<'_> {
    fn event(&self, e: Event) {
        for s in &self.0 {
            s.event(e.clone());
        }
    }
}

/// One build in the JSON run report.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Entry {
    /// The engine it ran on.
    pub(crate) engine: Option<String>,
    #[serde(flatten)]
    pub(crate) report: Report,
}

/// The version of the run report's format: bumped when a field changes meaning or goes away.
pub(crate) const REPORT_FORMAT: u32 = 2;

/// The JSON run report (`--report`), one shape for every run: one file or many, one platform
/// or several, refused or run. Each build is an entry of `pipelines`, in command-line order:
/// the build's own record plus the engine it ran on.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct RunReport {
    /// [`REPORT_FORMAT`].
    pub(crate) format_version: u32,
    /// The tool's version.
    pub(crate) tool_version: String,
    pub(crate) status: RunStatus,
    pub(crate) exit_code: u8,
    /// Why the run failed (the first failure), or null.
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: u128,
    pub(crate) engines: Vec<String>,
    /// Pipeline names in the order the graph allows.
    pub(crate) order: Vec<String>,
    pub(crate) pipelines: Vec<Entry>,
    /// The indexes multi-platform pipelines published (their builds are among `pipelines`,
    /// as `NAME@os/arch`).
    pub(crate) indexes: Vec<IndexRecord>,
    /// How publishing each multi-platform pipeline's indexes ended.
    pub(crate) publishing: Vec<PublishRecord>,
    /// The outputs multi-platform pipelines wrote (a single-platform pipeline's are in its
    /// entry of `pipelines`).
    pub(crate) outputs: Vec<GroupOutputRecord>,
    /// A run refused before anything ran: every problem of every file, located.
    pub(crate) diagnostics: Vec<Problem>,
}

impl RunReport {
    /// A report with no build, no index and no problem yet.
    fn new(status: RunStatus, exit_code: u8, error: Option<String>) -> Self {
        Self {
            format_version: REPORT_FORMAT,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            status,
            exit_code,
            error,
            duration_ms: 0,
            engines: Vec::new(),
            order: Vec::new(),
            pipelines: Vec::new(),
            indexes: Vec::new(),
            publishing: Vec::new(),
            outputs: Vec::new(),
            diagnostics: Vec::new(),
        }
    }
}

/// One tag of a multi-platform pipeline: the index it holds.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct IndexRecord {
    pub(crate) pipeline: String,
    /// The pipeline's `[matrix]` values (`null`: its file has no matrix).
    pub(crate) variant: Option<crate::model::Variant>,
    pub(crate) platforms: Vec<String>,
    #[serde(flatten)]
    pub(crate) pushed: Pushed,
    /// Each platform's manifest the index lists, whether this run pushed it or the registry
    /// held it already (an index found up to date lists them too).
    pub(crate) manifests: Vec<ManifestRecord>,
}

/// One platform's manifest under an index.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct ManifestRecord {
    /// `os/arch[/variant]`.
    pub(crate) platform: String,
    pub(crate) digest: String,
}

/// Collects the index tags a multi-platform pipeline's publication pushed (or found up to
/// date) and the outputs it wrote, as they happen: an interrupted publication still reports
/// what it published.
#[derive(Default)]
pub(crate) struct IndexRecorder {
    pushed: Mutex<Vec<Pushed>>,
    /// Per index tag (repository, tag): the images it lists.
    listed: Mutex<Vec<(String, String, Vec<ManifestRecord>)>>,
    outputs: Mutex<Vec<OutputRecord>>,
}

impl Sink for IndexRecorder {
    fn event(&self, e: Event) {
        match e {
            Event::Pushed {
                repository,
                tag,
                digest,
                attempts,
                up_to_date,
            } => self
                .pushed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Pushed {
                    repository,
                    tag,
                    digest,
                    attempts,
                    up_to_date,
                }),
            Event::Written { output, digest } => self
                .outputs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(OutputRecord { output, digest }),
            Event::IndexListed {
                repository,
                tag,
                manifests,
            } => self.listed.lock().unwrap_or_else(|e| e.into_inner()).push((
                repository,
                tag,
                manifests
                    .into_iter()
                    .map(|(platform, digest)| ManifestRecord { platform, digest })
                    .collect(),
            )),
            _ => {}
        }
    }
}

/// An output a multi-platform pipeline wrote (every platform's image under an index).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct GroupOutputRecord {
    pub(crate) pipeline: String,
    #[serde(flatten)]
    pub(crate) written: OutputRecord,
}

/// How publishing a multi-platform pipeline's indexes ended.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct PublishRecord {
    pub(crate) pipeline: String,
    /// `succeeded`, `failed`, `interrupted`, `skipped` (a build failed) or `not_started`.
    pub(crate) status: RunStatus,
    pub(crate) exit_code: u8,
    pub(crate) error: Option<String>,
}

/// What [`of_run`] reports: the run, where it ran, how it ended, and what was recorded.
pub(crate) struct RunRecord<'a> {
    pub(crate) run: &'a Run<'a>,
    pub(crate) engines: &'a [String],
    pub(crate) summary: &'a Summary,
    /// By build.
    pub(crate) recorders: &'a [Recorder],
    /// By multi-platform pipeline.
    pub(crate) published: &'a [IndexRecorder],
}

/// The report of a run.
pub(crate) fn of_run(record: &RunRecord<'_>) -> RunReport {
    let RunRecord {
        run,
        engines,
        summary,
        recorders,
        published: _,
    } = record;
    let status = match summary.exit {
        ExitStatus::Success => RunStatus::Succeeded,
        ExitStatus::Interrupted(_) => RunStatus::Interrupted,
        _ => RunStatus::Failed,
    };
    let first_error = summary
        .outcomes
        .iter()
        .map(|o| &o.detail)
        .chain(summary.indexes.iter().map(|o| &o.detail))
        .find_map(Clone::clone);
    let error = (status != RunStatus::Succeeded)
        .then_some(first_error)
        .flatten();
    let mut report = RunReport::new(status, summary.exit.code(), error);
    report.duration_ms = summary.elapsed.as_millis();
    report.engines = engines.to_vec();
    report.order = run
        .graph
        .order
        .iter()
        .map(|&i| run.builds[i].name.clone())
        .collect();
    report.pipelines = recorders
        .iter()
        .zip(&summary.outcomes)
        .map(|(r, o)| {
            let code = o.exit.map_or(0, ExitStatus::code);
            let mut report = r.finish(o.status.into(), code, o.detail.clone());
            // Its own run, not until the report is written (the others may run longer).
            report.duration_ms = match (o.started, o.finished) {
                (Some(s), Some(f)) => f.saturating_sub(s).as_millis(),
                _ => 0,
            };
            Entry {
                engine: o.engine.map(|e| engines[e.0].clone()),
                report,
            }
        })
        .collect();
    add_groups(&mut report, record);
    report
}

/// What the multi-platform pipelines of a run published and wrote, and how each publication
/// ended.
fn add_groups(report: &mut RunReport, record: &RunRecord<'_>) {
    let groups = record.run.groups.iter().zip(record.published);
    for ((g, recorder), outcome) in groups.zip(&record.summary.indexes) {
        let platforms: Vec<String> = g
            .pipeline
            .platforms
            .iter()
            .map(ToString::to_string)
            .collect();
        let pushed = recorder
            .pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let written = recorder
            .outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let listed = recorder
            .listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        report
            .outputs
            .extend(written.into_iter().map(|written| GroupOutputRecord {
                pipeline: g.pipeline.name.clone(),
                written,
            }));
        report.indexes.extend(pushed.into_iter().map(|pushed| {
            IndexRecord {
                pipeline: g.pipeline.name.clone(),
                variant: g.pipeline.variant.clone(),
                platforms: platforms.clone(),
                manifests: listed
                    .iter()
                    .find(|(r, t, _)| *r == pushed.repository && *t == pushed.tag)
                    .map(|(_, _, m)| m.clone())
                    .unwrap_or_default(),
                pushed,
            }
        }));
        report.publishing.push(PublishRecord {
            pipeline: g.pipeline.name.clone(),
            status: outcome.status.into(),
            exit_code: outcome.exit.map_or(0, ExitStatus::code),
            error: outcome.detail.clone(),
        });
    }
}

/// The report of a run that reached no engine: every pipeline failed with `error`.
pub(crate) fn of_unreached(pipelines: &[Pipeline], error: &EngineError) -> RunReport {
    let code = ExitStatus::EngineFailed.code();
    let mut report = RunReport::new(RunStatus::Failed, code, Some(error.to_string()));
    report.order = pipelines.iter().map(|p| p.name.clone()).collect();
    report.pipelines = pipelines
        .iter()
        .map(|p| Entry {
            engine: None,
            report: Recorder::new(p, "").finish(RunStatus::Failed, code, Some(error.to_string())),
        })
        .collect();
    report
}

/// Writes a JSON document to `path`, pretty-printed.
pub(crate) fn save(path: &std::path::Path, document: &impl Serialize) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(document).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

/// One located diagnostic, as the machine documents give it (the run report, `validate
/// --format json`, errors under `--format json`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Problem {
    pub(crate) file: String,
    /// 1-based, when the problem has a place in the file.
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    #[schemars(with = "String")]
    pub(crate) code: crate::diag::Code,
    /// Always `error`: every diagnostic refuses the file.
    pub(crate) severity: &'static str,
    pub(crate) message: String,
    /// What to write instead, when the diagnostic knows.
    pub(crate) hint: Option<String>,
}

/// Every diagnostic of `reports`, located.
pub(crate) fn problems(reports: &[crate::diag::Report]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for r in reports {
        for d in &r.diagnostics {
            let place = d.span.as_ref().map(|s| {
                let before = &r.source.as_bytes()[..s.start.min(r.source.len())];
                let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
                (line, column)
            });
            problems.push(Problem {
                file: r.file.clone(),
                line: place.map(|p| p.0),
                column: place.map(|p| p.1),
                code: d.code,
                severity: "error",
                message: d.message.clone(),
                hint: d.hint.as_deref().map(str::to_string),
            });
        }
    }
    problems
}

/// What went wrong, in one line: every graph, base or password problem joined.
pub(crate) fn error_text(error: &crate::error::CliError) -> String {
    use crate::error::CliError;
    let joined = |items: Vec<String>| items.join("; ");
    match error {
        CliError::Graph(errors) => joined(errors.iter().map(ToString::to_string).collect()),
        CliError::Bases(errors) => joined(errors.iter().map(ToString::to_string).collect()),
        CliError::MissingPasswords(logins) => joined(
            logins
                .iter()
                .map(|l| format!("the environment variable `{}` is not set", l.password_env))
                .collect(),
        ),
        CliError::WouldFail(fails) => joined(
            fails
                .iter()
                .map(|(pipeline, b)| format!("apply would fail: pipeline `{pipeline}`: {b}"))
                .collect(),
        ),
        CliError::Detailed(inner) => error_text(inner),
        other => other.to_string(),
    }
}

/// The diagnostics of `error`, when it is about invalid files.
pub(crate) fn problems_of(error: &crate::error::CliError) -> Vec<Problem> {
    match error {
        crate::error::CliError::Invalid(reports) => problems(reports),
        crate::error::CliError::Detailed(inner) => problems_of(inner),
        _ => Vec::new(),
    }
}

/// The report of a run refused with `error`.
pub(crate) fn of_refused(error: &crate::error::CliError) -> RunReport {
    let mut report = RunReport::new(RunStatus::Failed, error.code(), Some(error_text(error)));
    report.diagnostics = problems_of(error);
    report
}

/// The version of the documents `validate --format json` and `plan --format json` print, and
/// of the error document: bumped when a field changes meaning or goes away.
pub(crate) const DOCUMENT_FORMAT: u32 = 1;

/// Why a command failed, as every document under `--format json` gives it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ErrorObject {
    /// What kind of failure (`invalid`, `usage`, `graph`, `no-engine`, ...): stable.
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// The process exit code.
    pub(crate) exit_code: u8,
    /// For invalid files: every problem, located.
    pub(crate) diagnostics: Vec<Problem>,
}

impl ErrorObject {
    pub(crate) fn of(error: &crate::error::CliError) -> Self {
        Self {
            code: error_kind(error),
            message: error_text(error),
            exit_code: error.code(),
            diagnostics: problems_of(error),
        }
    }
}

/// The stable name of a kind of failure.
fn error_kind(error: &crate::error::CliError) -> &'static str {
    use crate::error::CliError::*;
    match error {
        Usage(_) => "usage",
        Invalid(_) => "invalid",
        Graph(_) => "graph",
        MissingPasswords(_) => "missing-password",
        Bases(_) => "bases",
        NoEngine(_) => "no-engine",
        Engine(_) => "engine",
        Credentials(_) => "credentials",
        Plan { .. } => "plan",
        WouldFail(_) => "would-fail",
        Runtime { .. } => "runtime",
        Registry { .. } => "registry",
        Delete { .. } => "delete",
        Store { .. } => "store",
        Lock(_) => "lock",
        Detailed(inner) => error_kind(inner),
    }
}

/// What a command under `--format json` prints on stdout when it fails before its own
/// document: `{"format_version": 1, "error": {...}}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ErrorDocument {
    pub(crate) format_version: u32,
    pub(crate) error: ErrorObject,
}

impl ErrorDocument {
    pub(crate) fn of(error: &crate::error::CliError) -> Self {
        Self {
            format_version: DOCUMENT_FORMAT,
            error: ErrorObject::of(error),
        }
    }
}

/// `validate --format json`: each file with its diagnostics.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ValidateDocument {
    pub(crate) format_version: u32,
    /// Every file is valid and the files form a graph.
    pub(crate) valid: bool,
    pub(crate) files: Vec<FileRecord>,
    /// Why validation failed, or null.
    pub(crate) error: Option<ErrorObject>,
}

/// One file `validate` read.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct FileRecord {
    pub(crate) file: String,
    /// The pipeline's `[matrix]` values: a file with a matrix has a record per variant
    /// (`null`: no matrix).
    pub(crate) variant: Option<crate::model::Variant>,
    /// The pipeline's name, when the file is valid.
    pub(crate) pipeline: Option<String>,
    pub(crate) steps: Option<usize>,
    pub(crate) publish_targets: Option<usize>,
    /// The platforms it builds for (`os/arch`); empty: the engine's.
    pub(crate) platforms: Vec<String>,
    pub(crate) diagnostics: Vec<Problem>,
}

impl ValidateDocument {
    /// The document of valid `pipelines`.
    pub(crate) fn valid(pipelines: &[&Pipeline]) -> Self {
        let files = pipelines
            .iter()
            .map(|p| FileRecord {
                file: crate::diag::clean(&p.file.display().to_string()),
                variant: p.variant.clone(),
                pipeline: Some(p.name.clone()),
                steps: Some(p.steps.len()),
                publish_targets: Some(p.publish.len()),
                platforms: p.platforms.iter().map(ToString::to_string).collect(),
                diagnostics: Vec::new(),
            })
            .collect();
        Self {
            format_version: DOCUMENT_FORMAT,
            valid: true,
            files,
            error: None,
        }
    }

    /// The document of a validation that failed with `error`: the files with problems.
    pub(crate) fn invalid(error: &crate::error::CliError) -> Self {
        let mut files: Vec<FileRecord> = Vec::new();
        for problem in problems_of(error) {
            match files.iter_mut().find(|f| f.file == problem.file) {
                Some(f) => f.diagnostics.push(problem),
                None => files.push(FileRecord {
                    file: problem.file.clone(),
                    variant: None,
                    pipeline: None,
                    steps: None,
                    publish_targets: None,
                    platforms: Vec::new(),
                    diagnostics: vec![problem],
                }),
            }
        }
        Self {
            format_version: DOCUMENT_FORMAT,
            valid: false,
            files,
            error: Some(ErrorObject::of(error)),
        }
    }
}

/// Prints a document on stdout, pretty-printed, with a final newline.
pub(crate) fn print(document: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(document).unwrap_or_default()
    );
}
