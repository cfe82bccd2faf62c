//! Several pipelines applied at once over one or more engines.
//!
//! The pipelines of one apply form a [`Graph`]; a pipeline starts when its producer (if any)
//! succeeded and a job slot is free (`--jobs`). It is placed on the least loaded reachable
//! engine; a dependent that is not on its producer's engine pulls the producer's published
//! image (`pull = always`, so this run's image, never a stale copy), and one whose producer
//! publishes nothing runs on the producer's engine. Everything runs in ONE task: the
//! [`Engine`] futures are not `Send`.
//!
//! Failure policy: `fail_fast` (default) starts nothing new after a failure and lets the
//! running pipelines finish; `keep_going` goes on with everything that does not depend on the
//! failure. Dependents of a failed pipeline are skipped. An engine that stops answering fails
//! only the pipelines on it: it gets no new work, and the failure does not stop the others.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::engine::docker::{DockerEngine, TlsDir};
use crate::engine::Engine;
use crate::events::{Event, Sink};
use crate::execute::{self, Applied, ApplyError, Options};
use crate::exit;
use crate::graph::Graph;
use crate::model::{Pipeline, PullPolicy};
use crate::reference::ImageRef;
use crate::report::{Recorder, Report, Tee};
use crate::ui::{short, Ui};

/// Prints an apply error with what the user needs next (the command layer's `explain`).
pub type Explain = fn(&ApplyError, &Pipeline, &Ui, &Recorder);

/// How to reach one engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSpec {
    /// The URL without options: `unix:///var/run/docker.sock`, `tcp://10.0.0.5:2376`, `ssh://me@host`.
    pub url: String,
    /// Client certificate folder when the engine is reached over TLS.
    pub tls: Option<PathBuf>,
}

impl std::fmt::Display for EngineSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)?;
        if self.tls.is_some() {
            f.write_str(" (tls)")?;
        }
        Ok(())
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The docker CLI's certificate folder: `DOCKER_CERT_PATH`, else `~/.docker`.
fn default_cert_path() -> PathBuf {
    env_nonempty("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env_nonempty("HOME").unwrap_or_else(|| "/root".into())).join(".docker")
        })
}

/// Parses `--engine URL[?tls=1&cert_path=DIR]`.
///
/// `unix://PATH`, `ssh://[USER@]HOST` (a port goes in `~/.ssh/config`), `tcp://HOST:PORT` and `https://HOST:PORT`. A
/// `tcp://` engine uses TLS as the docker CLI does: when `DOCKER_TLS_VERIFY` is set (non-empty),
/// with the certificates (`ca.pem`, `cert.pem`, `key.pem`) in `DOCKER_CERT_PATH` or `~/.docker`.
/// Per engine, `?tls=1` turns TLS on, `?tls=0` off, and `?cert_path=DIR` names the folder (and
/// implies `tls=1`). `https://` always uses TLS.
pub fn parse_engine(text: &str) -> Result<EngineSpec, String> {
    let (url, query) = match text.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (text, None),
    };
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if !["unix", "tcp", "https", "http", "ssh"].contains(&scheme) {
        return Err(format!(
            "`{text}`: an engine is unix://PATH, tcp://HOST:PORT, https://HOST:PORT or ssh://[USER@]HOST"
        ));
    }
    if url.len() <= scheme.len() + 3 {
        return Err(format!("`{text}`: the address is empty"));
    }
    if scheme == "ssh" {
        let host = &url["ssh://".len()..];
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if host.contains(':') {
            return Err(format!(
                "`{text}`: the engine client cannot pass an ssh port; give it in ~/.ssh/config \
                 (`Host builder` / `HostName ...` / `Port ...`) and use ssh://USER@builder"
            ));
        }
    }
    let mut tls: Option<bool> = None;
    let mut cert_path: Option<PathBuf> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("tls", v)) => {
                tls = Some(match v {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("`{text}`: tls is 1 or 0, not `{v}`")),
                })
            }
            Some(("cert_path", v)) if !v.is_empty() => cert_path = Some(PathBuf::from(v)),
            _ => {
                return Err(format!(
                    "`{text}`: unknown engine option `{pair}` (known: tls=1|0, cert_path=DIR)"
                ))
            }
        }
    }
    let tcp = matches!(scheme, "tcp" | "http" | "https");
    if !tcp && (tls.is_some() || cert_path.is_some()) {
        return Err(format!(
            "`{text}`: TLS options apply to tcp:// and https:// engines only"
        ));
    }
    let use_tls = match (scheme, tls) {
        ("https", Some(false)) => {
            return Err(format!("`{text}`: https:// always uses TLS"));
        }
        ("https", _) => true,
        ("http", None) => false,
        (_, Some(t)) => t,
        ("tcp", None) => cert_path.is_some() || env_nonempty("DOCKER_TLS_VERIFY").is_some(),
        _ => false,
    };
    let tls = use_tls.then(|| cert_path.unwrap_or_else(default_cert_path));
    Ok(EngineSpec {
        url: url.to_string(),
        tls,
    })
}

/// The engine used without `--engine`: `DOCKER_HOST`, else the local socket.
pub fn default_engine() -> Result<EngineSpec, String> {
    parse_engine(
        &env_nonempty("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
    )
}

/// `--jobs` when not given: four pipelines per engine (they mostly wait on the engine).
pub fn default_jobs(engines: usize) -> usize {
    4 * engines.max(1)
}

/// Connects to one engine.
pub async fn connect(spec: &EngineSpec) -> Result<DockerEngine, crate::engine::EngineError> {
    let tls = spec.tls.clone().map(TlsDir);
    DockerEngine::connect_url(&spec.url, tls.as_ref()).await
}

/// What every apply shares.
#[derive(Debug, Clone)]
pub struct Settings {
    pub jobs: usize,
    pub fail_fast: bool,
    pub no_cache: bool,
    pub keep_failed: bool,
    pub attempts: u32,
    pub retry_delay: Duration,
}

/// How one pipeline ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Succeeded,
    Failed,
    /// Its dependency failed or was skipped.
    Skipped,
    /// `--fail-fast` stopped the run before it started.
    NotStarted,
    Interrupted,
}

impl Status {
    fn word(&self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::NotStarted => "not_started",
            Status::Interrupted => "interrupted",
        }
    }
}

/// The result of one pipeline.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    /// Index of the engine it ran on.
    pub engine: Option<usize>,
    pub code: Option<u8>,
    /// The error, or why it was skipped / not started.
    pub detail: Option<String>,
    pub applied: Option<Applied>,
    /// Offsets from the start of the run.
    pub started: Option<Duration>,
    pub finished: Option<Duration>,
}

impl Outcome {
    /// A pipeline that never ran on an engine: skipped, not started, or refused a start.
    fn not_run(status: Status, detail: String) -> Self {
        Self {
            status,
            engine: None,
            code: None,
            detail: Some(detail),
            applied: None,
            started: None,
            finished: None,
        }
    }
}

/// The result of the whole run.
#[derive(Debug)]
pub struct Summary {
    /// By pipeline index (command-line order).
    pub outcomes: Vec<Outcome>,
    /// The exit code: 0, the code of the first pipeline to fail, or the signal's.
    pub code: u8,
    pub elapsed: Duration,
    /// Engines found unreachable during the run (by index).
    pub lost_engines: Vec<usize>,
}

/// Per-pipeline state the running futures borrow.
struct Slot {
    run_name: String,
    recorder: OnceLock<Recorder>,
    ui: Ui,
}

/// Warns when a dependent's base is not the image its producer made in this run.
struct BaseCheck<'a> {
    expected: Option<String>,
    ui: &'a Ui,
}

impl Sink for BaseCheck<'_> {
    fn event(&self, e: Event) {
        if let (Event::BaseReady { reference, id, .. }, Some(expected)) = (&e, &self.expected) {
            if id != expected {
                self.ui.line(&format!(
                    "warning: base `{reference}` is {} but this run built {}",
                    short(id),
                    short(expected)
                ));
            }
        }
    }
}

/// Whether `engine` still answers (a cheap inspect of an image that does not exist).
async fn answers<E: Engine>(engine: &E) -> Result<(), String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        engine.inspect_image("pipeline-engine-probe:absent"),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

/// Applies `pipelines` (validated, with their `graph`) over `engines`. `interrupt` resolves
/// to an exit code (130, 143) when the run must stop: running pipelines are dropped and their
/// containers removed.
#[allow(clippy::too_many_arguments)]
pub async fn run<E: Engine>(
    pipelines: &[Pipeline],
    graph: &Graph,
    engines: &[E],
    settings: &Settings,
    ui: &Ui,
    explain: Explain,
    interrupt: impl Future<Output = u8>,
) -> (Summary, Vec<Option<Recorder>>) {
    let t0 = Instant::now();
    let n = pipelines.len();
    let id = crate::execute::run_id();
    let slots: Vec<Slot> = pipelines
        .iter()
        .enumerate()
        .map(|(i, p)| Slot {
            run_name: format!("{}{i:x}", crate::execute::run_name(&p.name, &id)),
            recorder: OnceLock::new(),
            ui: if n > 1 {
                ui.for_pipeline(p.name.clone())
            } else {
                ui.for_pipeline(String::new())
            },
        })
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    let mut started = vec![false; n];
    let mut running_on = vec![0usize; engines.len()];
    let mut assigned = vec![0usize; engines.len()];
    let mut down: BTreeMap<usize, String> = BTreeMap::new();
    let mut first_failure: Option<u8> = None;
    let mut stopping: Option<String> = None;
    let jobs = settings.jobs.max(1);
    let mut running = FuturesUnordered::new();
    tokio::pin!(interrupt);

    let mut interrupted = None;
    loop {
        // Start whatever is ready, in graph order, while slots are free.
        while running.len() < jobs && stopping.is_none() {
            let next = graph.order.iter().copied().find(|&i| {
                !started[i]
                    && outcomes[i].is_none()
                    && graph.nodes[i].dependency.as_ref().is_none_or(|d| {
                        matches!(&outcomes[d.producer], Some(o) if o.status == Status::Succeeded)
                    })
            });
            let Some(i) = next else { break };
            let node = &graph.nodes[i];
            let mut p = pipelines[i].clone();
            let mut expected = None;
            // Where the producer ran, and whether other engines can pull its result.
            let producer = node.dependency.as_ref().map(|d| {
                let o = outcomes[d.producer].as_ref().expect("producer finished");
                (d, o.engine.expect("a succeeded pipeline ran somewhere"), o)
            });
            let choice: Result<usize, String> = match &producer {
                Some((d, pe, _)) if d.pull_from.is_none() => match down.get(pe) {
                    Some(why) => Err(format!(
                        "it builds on `{}`, which is not published, so it must run on the engine of `{}` ({}), and that engine is unreachable: {why}",
                        d.reference, graph.nodes[d.producer].name, engines[*pe].endpoint()
                    )),
                    None => Ok(*pe),
                },
                _ => (0..engines.len())
                    .filter(|e| !down.contains_key(e))
                    .min_by_key(|&e| {
                        let not_producer = producer.as_ref().is_none_or(|(_, pe, _)| *pe != e);
                        (running_on[e], assigned[e], not_producer, e)
                    })
                    .ok_or_else(|| "no engine is reachable".to_string()),
            };
            let e = match choice {
                Ok(e) => e,
                Err(why) => {
                    slots[i].ui.error(&format!("cannot start: {why}"));
                    if first_failure.is_none() {
                        first_failure = Some(exit::ENGINE);
                    }
                    outcomes[i] = Some(Outcome {
                        code: Some(exit::ENGINE),
                        finished: Some(t0.elapsed()),
                        ..Outcome::not_run(Status::Failed, why)
                    });
                    skip_dependents(graph, i, &mut outcomes, &slots);
                    continue;
                }
            };
            if let Some((d, pe, o)) = &producer {
                expected = o.applied.as_ref().map(|a| a.image.clone());
                if *pe == e {
                    // The producer tagged this run's image in this engine.
                    p.base.pull = PullPolicy::Never;
                } else if let Some(from) = &d.pull_from {
                    // Pull this run's push, never a stale copy of the same tag.
                    if let Ok(r) = ImageRef::parse(from) {
                        if r.to_string() != p.base.image.to_string() {
                            p.base.login = d.login.clone();
                        }
                        p.base.image = r;
                    }
                    p.base.pull = PullPolicy::Always;
                }
            }
            started[i] = true;
            running_on[e] += 1;
            assigned[e] += 1;
            let slot = &slots[i];
            let _ = slot.recorder.set(Recorder::new(&p, &slot.run_name));
            let how = match &producer {
                Some((d, pe, _)) if *pe == e => {
                    format!(" (after `{}`, same engine)", graph.nodes[d.producer].name)
                }
                Some((d, _, _)) => format!(
                    " (after `{}`, pulling `{}`)",
                    graph.nodes[d.producer].name, p.base.image
                ),
                None => String::new(),
            };
            slot.ui
                .line(&format!("start on {}{how}", engines[e].endpoint()));
            let opts = Options {
                no_cache: settings.no_cache,
                keep_failed: settings.keep_failed,
                attempts: settings.attempts,
                retry_delay: settings.retry_delay,
                run_name: slot.run_name.clone(),
            };
            let engine = &engines[e];
            let start = t0.elapsed();
            running.push(async move {
                let recorder = slot.recorder.get().expect("set above");
                let check = BaseCheck {
                    expected,
                    ui: &slot.ui,
                };
                let sink = Tee(vec![&slot.ui, recorder, &check]);
                let result = execute::apply(engine, &p, &opts, &sink).await;
                match &result {
                    Ok(applied) => {
                        crate::ui::print_applied(applied);
                    }
                    Err(err) => explain(err, &p, &slot.ui, recorder),
                }
                // Did the engine go away? Asked here, so the other pipelines keep streaming.
                let lost = match &result {
                    Err(_) => answers(engine).await.err(),
                    Ok(_) => None,
                };
                (i, e, start, result, lost)
            });
        }
        if running.is_empty() {
            break;
        }
        let (i, e, start, result, lost) = tokio::select! {
            code = &mut interrupt => { interrupted = Some(code); break; }
            Some(r) = running.next() => r,
        };
        running_on[e] -= 1;
        let finished = Some(t0.elapsed());
        match result {
            Ok(applied) => {
                slots[i].ui.line(&format!(
                    "succeeded on {} in {:.1}s",
                    engines[e].endpoint(),
                    (t0.elapsed() - start).as_secs_f64()
                ));
                outcomes[i] = Some(Outcome {
                    status: Status::Succeeded,
                    engine: Some(e),
                    code: Some(exit::OK),
                    detail: None,
                    applied: Some(applied),
                    started: Some(start),
                    finished,
                });
            }
            Err(err) => {
                let mut detail = err.to_string();
                // Did the engine go away? Then only its pipelines fail.
                let lost = match (down.get(&e), lost) {
                    (Some(why), _) => Some(why.clone()),
                    (None, Some(why)) => {
                        ui.error(&format!(
                            "engine {} is unreachable ({why}): the pipelines on it fail, the others go on",
                            engines[e].endpoint()
                        ));
                        down.insert(e, why.clone());
                        Some(why)
                    }
                    (None, None) => None,
                };
                // A lost engine is an engine error (5), whatever the step saw.
                let code = if lost.is_some() {
                    exit::ENGINE
                } else {
                    exit::of(&err)
                };
                if let Some(why) = &lost {
                    detail = format!(
                        "engine {} became unreachable ({why}): {detail}",
                        engines[e].endpoint()
                    );
                }
                if first_failure.is_none() {
                    first_failure = Some(code);
                }
                outcomes[i] = Some(Outcome {
                    status: Status::Failed,
                    engine: Some(e),
                    code: Some(code),
                    detail: Some(detail),
                    applied: None,
                    started: Some(start),
                    finished,
                });
                skip_dependents(graph, i, &mut outcomes, &slots);
                if settings.fail_fast && lost.is_none() && stopping.is_none() {
                    let why = format!("--fail-fast: `{}` failed", pipelines[i].name);
                    if !running.is_empty() {
                        ui.line(&format!(
                            "{why}; starting nothing new, waiting for {} running pipeline(s)",
                            running.len()
                        ));
                    }
                    stopping = Some(why);
                }
            }
        }
    }

    drop(running);
    if let Some(code) = interrupted {
        ui.error("interrupted: removing the build containers");
        for i in 0..n {
            if started[i] && outcomes[i].is_none() {
                outcomes[i] = Some(Outcome {
                    status: Status::Interrupted,
                    engine: None,
                    code: Some(code),
                    detail: Some("interrupted".into()),
                    applied: None,
                    started: None,
                    finished: Some(t0.elapsed()),
                });
            }
        }
        // The work futures are gone; a create may still be landing, so sweep twice.
        for delay in [0, 500] {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            for (i, slot) in slots.iter().enumerate() {
                if !matches!(&outcomes[i], Some(o) if o.status == Status::Interrupted) {
                    continue;
                }
                for engine in engines {
                    if let Err(e) = engine.remove_containers_named(&slot.run_name).await {
                        slot.ui.error(&format!(
                            "could not remove the containers named `{}*` on {}: {e}",
                            slot.run_name,
                            engine.endpoint()
                        ));
                    }
                }
            }
        }
    }
    for outcome in outcomes.iter_mut() {
        if outcome.is_none() {
            let why = interrupted
                .map(|_| "interrupted before it started".to_string())
                .or_else(|| stopping.clone())
                .unwrap_or_else(|| "not started".into());
            *outcome = Some(Outcome::not_run(Status::NotStarted, why));
        }
    }
    let code = interrupted.or(first_failure).unwrap_or(exit::OK);
    let recorders = slots.into_iter().map(|s| s.recorder.into_inner()).collect();
    (
        Summary {
            outcomes: outcomes.into_iter().map(|o| o.expect("all set")).collect(),
            code,
            elapsed: t0.elapsed(),
            lost_engines: down.keys().copied().collect(),
        },
        recorders,
    )
}

/// Marks every pipeline built (transitively) on `failed` as skipped.
fn skip_dependents(graph: &Graph, failed: usize, outcomes: &mut [Option<Outcome>], slots: &[Slot]) {
    for d in graph.descendants(failed) {
        if outcomes[d].is_none() {
            let why = format!(
                "skipped: it builds on `{}`, which failed",
                graph.nodes[failed].name
            );
            slots[d].ui.line(&why);
            outcomes[d] = Some(Outcome::not_run(Status::Skipped, why));
        }
    }
}

/// The summary, one line per pipeline, for people.
pub fn render_summary<E: Engine>(
    pipelines: &[Pipeline],
    summary: &Summary,
    engines: &[E],
) -> String {
    let count = |s: Status| summary.outcomes.iter().filter(|o| o.status == s).count();
    let mut out = format!(
        "summary: {} succeeded, {} failed, {} skipped, {} not started in {:.1}s on {} engine(s)\n",
        count(Status::Succeeded),
        count(Status::Failed) + count(Status::Interrupted),
        count(Status::Skipped),
        count(Status::NotStarted),
        summary.elapsed.as_secs_f64(),
        engines.len()
    );
    let width = pipelines.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (p, o) in pipelines.iter().zip(&summary.outcomes) {
        let engine = o
            .engine
            .map(|e| engines[e].endpoint().to_string())
            .unwrap_or_else(|| "-".into());
        let took = match (o.started, o.finished) {
            (Some(s), Some(f)) => format!("{:.1}s", (f - s).as_secs_f64()),
            _ => "-".into(),
        };
        let what = match (&o.status, &o.applied, &o.detail) {
            (Status::Succeeded, Some(a), _) => format!("image {}", short(&a.image)),
            (Status::Failed | Status::Interrupted, _, Some(d)) => {
                format!("exit {}: {d}", o.code.unwrap_or(exit::INTERNAL))
            }
            (_, _, Some(d)) => d.clone(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<11} {:<width$}  {engine}  {took}  {what}\n",
            o.status.word(),
            p.name,
        ));
    }
    out
}

/// One pipeline in the JSON report of a multi-pipeline apply.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The engine it ran on.
    pub engine: Option<String>,
    #[serde(flatten)]
    pub report: Report,
}

/// The JSON report of a multi-pipeline apply (`--report`): one entry per pipeline, in
/// command-line order, each the single-pipeline report plus the engine it ran on.
#[derive(Debug, Serialize)]
pub struct MultiReport {
    pub report_version: u32,
    pub status: String,
    pub exit_code: u8,
    pub duration_ms: u128,
    pub engines: Vec<String>,
    /// Pipeline names in the order the graph allows.
    pub order: Vec<String>,
    pub pipelines: Vec<Entry>,
}

/// The report of every pipeline; for one pipeline, the single-pipeline report itself.
pub fn report_json<E: Engine>(
    pipelines: &[Pipeline],
    graph: &Graph,
    engines: &[E],
    summary: &Summary,
    recorders: Vec<Option<Recorder>>,
) -> serde_json::Result<Vec<u8>> {
    let reports: Vec<Report> = pipelines
        .iter()
        .zip(recorders)
        .zip(&summary.outcomes)
        .map(|((p, r), o)| {
            let r = r.unwrap_or_else(|| Recorder::new(p, ""));
            let mut report = r.finish(o.status.word(), o.code.unwrap_or(0), o.detail.clone());
            // Its own run, not until the report is written (the others may run longer).
            report.duration_ms = match (o.started, o.finished) {
                (Some(s), Some(f)) => (f - s).as_millis(),
                _ => 0,
            };
            report
        })
        .collect();
    if reports.len() == 1 {
        return serde_json::to_vec_pretty(&reports[0]);
    }
    let status = if summary.code == exit::OK {
        "succeeded"
    } else if summary
        .outcomes
        .iter()
        .any(|o| o.status == Status::Interrupted)
    {
        "interrupted"
    } else {
        "failed"
    };
    serde_json::to_vec_pretty(&MultiReport {
        report_version: 1,
        status: status.into(),
        exit_code: summary.code,
        duration_ms: summary.elapsed.as_millis(),
        engines: engines.iter().map(|e| e.endpoint().to_string()).collect(),
        order: graph
            .order
            .iter()
            .map(|&i| pipelines[i].name.clone())
            .collect(),
        pipelines: reports
            .into_iter()
            .zip(&summary.outcomes)
            .map(|(report, o)| Entry {
                engine: o.engine.map(|e| engines[e].endpoint().to_string()),
                report,
            })
            .collect(),
    })
}

/// What `apply` needs from its command line to run several pipelines.
pub struct Request<'a> {
    pub engines: &'a [String],
    pub settings: Settings,
    pub report: Option<&'a std::path::Path>,
}

impl<'a> Request<'a> {
    /// From `apply`'s command line.
    pub fn from_args(args: &'a crate::cli::ApplyArgs) -> Self {
        Request {
            engines: &args.engines,
            settings: Settings {
                // 0: decided once the engines are known.
                jobs: args.jobs.map_or(0, |j| j as usize),
                fail_fast: !args.keep_going,
                no_cache: args.no_cache,
                keep_failed: args.keep_failed,
                attempts: args.attempts,
                retry_delay: args.retry_delay,
            },
            report: args.report.as_deref(),
        }
    }
}

/// The command-layer entry: checks the graph, connects every engine, runs, prints the summary,
/// writes the report. Returns the exit code.
pub async fn apply_cli(
    pipelines: &[Pipeline],
    req: Request<'_>,
    ui: &Ui,
    explain: Explain,
    interrupt: impl Future<Output = u8>,
) -> u8 {
    let graph = match crate::graph::build(pipelines) {
        Ok(g) => g,
        Err(errors) => {
            for e in errors {
                ui.error(&e.to_string());
            }
            return exit::USAGE;
        }
    };
    let specs: Result<Vec<EngineSpec>, String> = if req.engines.is_empty() {
        default_engine().map(|e| vec![e])
    } else {
        req.engines.iter().map(|e| parse_engine(e)).collect()
    };
    let specs = match specs {
        Ok(s) => s,
        Err(e) => {
            ui.error(&format!("--engine {e}"));
            return exit::USAGE;
        }
    };
    for (k, s) in specs.iter().enumerate() {
        if specs[..k].iter().any(|o| o.url == s.url) {
            ui.error(&format!("--engine `{}` is given twice", s.url));
            return exit::USAGE;
        }
    }
    let connected = futures_util::future::join_all(specs.iter().map(connect)).await;
    let mut engines = Vec::new();
    for (spec, c) in specs.iter().zip(connected) {
        match c {
            Ok(e) => engines.push(e),
            Err(e) => ui.error(&format!("{e} (engine {spec} is left out)")),
        }
    }
    if engines.is_empty() {
        ui.hint("start the Docker engine (`dockerd`, `systemctl start docker`) or point DOCKER_HOST / --engine at a running one");
        // The report says why nothing ran.
        if let Some(path) = req.report {
            let summary = Summary {
                outcomes: pipelines
                    .iter()
                    .map(|_| Outcome {
                        status: Status::Failed,
                        engine: None,
                        code: Some(exit::ENGINE),
                        detail: Some("no engine is reachable".into()),
                        applied: None,
                        started: None,
                        finished: None,
                    })
                    .collect(),
                code: exit::ENGINE,
                elapsed: Duration::ZERO,
                lost_engines: Vec::new(),
            };
            let none: Vec<Option<Recorder>> = pipelines.iter().map(|_| None).collect();
            crate::commands::save_report(
                path,
                report_json(pipelines, &graph, &engines, &summary, none),
                ui,
            );
        }
        return exit::ENGINE;
    }
    let mut settings = req.settings;
    if settings.jobs == 0 {
        settings.jobs = default_jobs(engines.len());
    }
    if pipelines.len() > 1 {
        ui.line(&format!(
            "{} pipelines in {} stage(s) on {} engine(s), up to {} at a time: {}",
            pipelines.len(),
            graph.stages(),
            engines.len(),
            settings.jobs,
            graph
                .order
                .iter()
                .map(|&i| pipelines[i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let (summary, recorders) = run(
        pipelines, &graph, &engines, &settings, ui, explain, interrupt,
    )
    .await;
    if pipelines.len() > 1 {
        for line in render_summary(pipelines, &summary, &engines).lines() {
            ui.line(line);
        }
    }
    if let Some(path) = req.report {
        let json = report_json(pipelines, &graph, &engines, &summary, recorders);
        crate::commands::save_report(path, json, ui);
    }
    summary.code
}
