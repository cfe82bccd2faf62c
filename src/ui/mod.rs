//! Rendering events for people: live output on a terminal, plain timestamped lines in CI logs.
//! Everything goes to stderr; only results (image id, pushed digests) go to stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use console::style;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Progress;
pub(crate) use crate::engine::short;
use crate::engine::{EngineError, OutputStream, Progress as Transfer};
use crate::error::ExitStatus;
use crate::error::{CliError, Signal};
use crate::execute::events::{Event, Sink, StepOutcome};
use crate::execute::{Applied, ApplyError};
use crate::model::Pipeline;
use crate::schedule::{Run, Status, Summary};

mod heartbeat;

use heartbeat::Heartbeat;

/// The human renderer.
pub(crate) struct Ui {
    tty: bool,
    /// Colour on: a terminal, and `NO_COLOR` unset.
    color: bool,
    /// Prefix of every line (the pipeline's name when several run).
    prefix: String,
    bar: Mutex<Option<ProgressBar>>,
    /// False for one of several pipelines running at once: their spinners would fight.
    live: bool,
    /// Plain mode: a line at least every interval while something long runs quietly.
    beat: Option<Heartbeat>,
}

/// How often plain mode says that something long is still running: every 10 s, or
/// `PIPELINE_PROGRESS_INTERVAL` seconds.
fn beat_interval() -> Duration {
    std::env::var("PIPELINE_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}

/// A plain (CI log) line: an RFC 3339 timestamp, the pipeline's name when several run.
fn plain(prefix: &str, text: &str) -> String {
    let ts = humantime::format_rfc3339_seconds(SystemTime::now());
    if prefix.is_empty() {
        format!("{ts} {text}")
    } else {
        format!("{ts} [{prefix}] {text}")
    }
}

fn heartbeat(tty: bool, prefix: &str) -> Option<Heartbeat> {
    if tty {
        return None;
    }
    let prefix = prefix.to_string();
    Some(Heartbeat::new(
        beat_interval(),
        Box::new(move |text: &str| {
            let _ = writeln!(std::io::stderr().lock(), "{}", plain(&prefix, text));
        }),
    ))
}

impl Ui {
    pub(crate) fn new(mode: Progress) -> Self {
        let tty = match mode {
            Progress::Auto => std::io::stderr().is_terminal(),
            Progress::Tty => true,
            Progress::Plain => false,
        };
        let color = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        console::set_colors_enabled_stderr(color);
        console::set_colors_enabled(color);
        Self {
            tty,
            color,
            prefix: String::new(),
            bar: Mutex::new(None),
            live: true,
            beat: heartbeat(tty, ""),
        }
    }

    /// The renderer of one pipeline of a run: same style; with several pipelines every line
    /// is prefixed with `[name]` and there is no live spinner (they would fight).
    pub(crate) fn for_pipeline(&self, name: &str, several: bool) -> Ui {
        let prefix = if several {
            name.to_string()
        } else {
            String::new()
        };
        Ui {
            tty: self.tty,
            color: self.color,
            beat: heartbeat(self.tty, &prefix),
            prefix,
            bar: Mutex::new(None),
            live: !several,
        }
    }

    /// Prints a file's diagnostics, coloured on a terminal that wants colour.
    pub(crate) fn diagnostics(&self, report: &crate::diag::Report) {
        self.stop_spin();
        let rendered = report.render_styled(self.color);
        let _ = write!(std::io::stderr().lock(), "{rendered}");
    }

    /// Prints one line to stderr, above any progress bar.
    pub(crate) fn line(&self, text: &str) {
        let line = match (self.tty, self.prefix.is_empty()) {
            (true, true) => text.to_string(),
            (true, false) => format!("[{}] {text}", self.prefix),
            (false, _) => plain(&self.prefix, text),
        };
        if let Some(beat) = &self.beat {
            beat.printed();
        }
        let bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match bar.as_ref() {
            Some(b) => b.println(line),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }

    fn beat(&self, f: impl FnOnce(&Heartbeat)) {
        if let Some(b) = &self.beat {
            f(b);
        }
    }

    fn spin(&self, message: String) {
        if !self.tty || !self.live {
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        b.set_message(message);
    }

    fn stop_spin(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }

    pub(crate) fn error(&self, text: &str) {
        self.stop_spin();
        self.line(&format!("{} {text}", style("error:").red().bold()));
    }

    pub(crate) fn hint(&self, text: &str) {
        self.line(&format!("{} {text}", style("hint:").cyan()));
    }
}

/// ` 12.0 MiB/30.5 MiB` for a layer in transfer, else nothing.
fn bytes_done(p: &Transfer) -> String {
    match (p.current, p.total) {
        (Some(c), Some(t)) if t > 0 => format!(" {}/{}", mib(c), mib(t)),
        (Some(c), _) if c > 0 => format!(" {}", mib(c)),
        _ => String::new(),
    }
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn secs(d: Duration) -> String {
    crate::execute::events::rounded(d)
}

impl Sink for Ui {
    fn event(&self, e: Event) {
        match e {
            Event::BaseReady {
                reference,
                id,
                pulled,
            } => self.base_ready(&reference, &id, pulled),
            Event::CopyFromReady {
                index,
                reference,
                id,
                pulled,
            } => {
                let how = if pulled { "pulled" } else { "present" };
                self.line(&format!(
                    "step {index} copies from {reference} {how} ({id})"
                ));
            }
            Event::PullProgress(p) => self.pull_progress(&p),
            Event::StepCached { index, total, name } => {
                self.line(&format!(
                    "{} [{index}/{total}] {name}",
                    style("cached").green()
                ));
            }
            Event::StepStarted { index, total, name } => {
                self.beat(|b| b.begin(format!("step {index} `{name}`")));
                self.line(&format!(
                    "{} [{index}/{total}] {name}",
                    style("step").bold()
                ));
            }
            Event::StepOutput {
                index,
                stream,
                line,
            } => self.step_output(index, stream, &line),
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => self.step_finished(index, outcome, duration),
            Event::Checkpoint { after_step, image } => {
                self.line(&format!(
                    "checkpoint after step {after_step} ({})",
                    short(&image)
                ));
            }
            Event::Committed {
                image,
                tags,
                reused,
            } => self.committed(&image, &tags, reused),
            Event::ImageWritten { digest, .. } => {
                self.line(&format!("wrote image {digest}"));
            }
            Event::KeptFailed { image, step, cli } => {
                self.line(&format!(
                    "kept the container of step {step} as {image}; enter it with:"
                ));
                self.line(&format!(
                    "  {cli} run -it --rm --entrypoint /bin/sh {image}"
                ));
            }
            Event::Warning(w) => self.line(&format!("{} {w}", style("warning:").yellow())),
            Event::Emulated { platform, engine } => {
                self.line(&format!("building {platform} on {engine} by emulation"));
            }
            Event::Waiting(w) => self.line(&format!("waiting: {w}")),
            // The `pushed` line that follows names the index; the report lists its images.
            Event::IndexListed { .. } => {}
            e @ (Event::PushStarted { .. }
            | Event::PushProgress { .. }
            | Event::PushRetry { .. }
            | Event::Pushed { .. }
            | Event::PushSkipped { .. }
            | Event::Written { .. }
            | Event::PlatformPushed { .. }) => self.push_event(e),
            e @ (Event::CacheRemote { .. }
            | Event::CacheImported { .. }
            | Event::CacheExported { .. }) => self.cache_event(e),
            e @ (Event::Started { .. }
            | Event::Succeeded { .. }
            | Event::Failed { .. }
            | Event::NotRun { .. }
            | Event::EngineLost { .. }
            | Event::Stopping { .. }
            | Event::Interrupted { .. }
            | Event::LeftoversRemoved { .. }) => self.run_event(e),
        }
    }
}

impl Ui {
    fn base_ready(&self, reference: &str, id: &str, pulled: bool) {
        self.beat(Heartbeat::end);
        self.stop_spin();
        let how = if pulled { "pulled" } else { "present" };
        self.line(&format!("base {reference} {how} ({})", short(id)));
    }

    fn pull_progress(&self, p: &Transfer) {
        self.beat(|b| {
            b.begin("pull".into());
            b.progress(p.id.as_deref(), p.current, p.total);
        });
        if self.tty {
            let layer = p.id.as_ref().map(|i| format!("{i}: ")).unwrap_or_default();
            self.spin(format!("pull {layer}{}{}", p.status, bytes_done(p)));
        }
    }

    fn step_output(&self, index: usize, stream: OutputStream, line: &str) {
        if self.tty {
            let bar = match stream {
                OutputStream::Stdout => style("│").dim(),
                OutputStream::Stderr => style("│").red(),
            };
            self.line(&format!("  {bar} {line}"));
        } else {
            self.line(&format!("[step {index}] {line}"));
        }
    }

    fn step_finished(&self, index: usize, outcome: StepOutcome, duration: Duration) {
        self.beat(Heartbeat::end);
        let took = secs(duration);
        self.line(&match outcome {
            StepOutcome::Succeeded => {
                format!("{} step {index} in {took}", style("done").green())
            }
            StepOutcome::Failed { exit_code } => format!(
                "{} step {index}: exit code {exit_code} after {took}",
                style("failed").red()
            ),
            StepOutcome::TimedOut => {
                format!("{} step {index} after {took}", style("timed out").red())
            }
            StepOutcome::Error => format!("{} step {index} after {took}", style("failed").red()),
        });
    }

    fn committed(&self, image: &str, tags: &[String], reused: bool) {
        let how = if reused { "unchanged" } else { "committed" };
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!(" as {}", tags.join(", "))
        };
        self.line(&format!(
            "{} {how} {}{tags}",
            style("image").bold(),
            short(image)
        ));
    }

    /// Pushes: started, progress, retries, done (of a tag, or of a platform's image).
    fn push_event(&self, e: Event) {
        match e {
            Event::PushStarted { repository, tag } => {
                self.beat(|b| b.begin(format!("push {repository}:{tag}")));
                if self.tty {
                    self.spin(format!("push {repository}:{tag}"));
                } else {
                    self.line(&format!("push {repository}:{tag}"));
                }
            }
            Event::PushProgress {
                repository,
                tag,
                progress,
            } => {
                self.beat(|b| b.progress(progress.id.as_deref(), progress.current, progress.total));
                if self.tty {
                    let layer = progress
                        .id
                        .as_ref()
                        .map(|i| format!(" {i}"))
                        .unwrap_or_default();
                    self.spin(format!(
                        "push {repository}:{tag}{layer} {}{}",
                        progress.status,
                        bytes_done(&progress)
                    ));
                }
            }
            Event::PushRetry {
                repository,
                tag,
                attempt,
                error,
                delay,
            } => {
                self.line(&format!(
                    "{} push {repository}:{tag} attempt {attempt} failed ({error}); retrying in {}",
                    style("retry").yellow(),
                    secs(delay)
                ));
            }
            Event::Pushed {
                repository,
                tag,
                digest,
                attempts,
                up_to_date,
            } => self.pushed(
                &format!("{repository}:{tag}@{digest}"),
                attempts,
                up_to_date,
            ),
            Event::Written { output, digest } => {
                self.line(&format!("{} {output}@{digest}", style("wrote").green()));
            }
            Event::PushSkipped { repository, tag } => {
                self.line(&format!("skipped push {repository}:{tag} (--no-push)"));
            }
            Event::PlatformPushed {
                repository,
                platform,
                digest,
            } => {
                self.beat(Heartbeat::end);
                self.stop_spin();
                self.line(&format!(
                    "{} {platform} image {repository}@{digest}",
                    style("pushed").green()
                ));
            }
            _ => {}
        }
    }

    fn pushed(&self, reference: &str, attempts: u32, up_to_date: bool) {
        self.beat(Heartbeat::end);
        self.stop_spin();
        if up_to_date {
            self.line(&format!("{} {reference}", style("up to date").green()));
        } else {
            let tries = if attempts > 1 {
                format!(" (after {attempts} attempts)")
            } else {
                String::new()
            };
            self.line(&format!("{} {reference}{tries}", style("pushed").green()));
        }
    }

    /// The remote cache: off (and why), an entry pulled, entries pushed.
    fn cache_event(&self, e: Event) {
        match e {
            Event::CacheRemote {
                repository,
                unavailable: Some(why),
                ..
            } => self.line(&format!(
                "{} remote cache {repository} is not used: {why}; the build goes on without it",
                style("warning:").yellow()
            )),
            Event::CacheImported {
                reference,
                steps,
                last,
            } => {
                self.stop_spin();
                let what = if last {
                    "the final image".to_string()
                } else {
                    format!("a checkpoint after step {steps}")
                };
                self.line(&format!("cache pulled {what} from {reference}"));
            }
            Event::CacheExported {
                repository,
                keys,
                duration,
            } if !keys.is_empty() => {
                self.line(&format!(
                    "cache pushed {} to {repository} ({})",
                    plural(keys.len(), "entry", "entries"),
                    secs(duration)
                ));
            }
            _ => {}
        }
    }

    /// How a pipeline of the run started and ended, and the run's own events.
    fn run_event(&self, e: Event) {
        match e {
            Event::Started { engine, after } => {
                let how = match after {
                    Some((producer, None)) => format!(" (after `{producer}`, same engine)"),
                    Some((producer, Some(pulled))) => {
                        format!(" (after `{producer}`, pulling `{pulled}`)")
                    }
                    None => String::new(),
                };
                self.line(&format!("start on {engine}{how}"));
            }
            Event::Succeeded {
                applied,
                engine,
                duration,
            } => {
                self.stop_spin();
                print_applied(&applied, &self.prefix);
                self.line(&format!("succeeded on {engine} in {}", secs(duration)));
            }
            Event::Failed { error, pipeline } => {
                self.beat(Heartbeat::end);
                self.explain(&error, &pipeline);
            }
            Event::NotRun { status, why } => match status {
                Status::Failed => self.error(&format!("cannot start: {why}")),
                _ => self.line(&why),
            },
            Event::EngineLost { endpoint, why } => self.error(&format!(
                "engine {endpoint} is unreachable ({why}): the pipelines on it fail, the others go on"
            )),
            Event::Stopping { why, running } => self.line(&format!(
                "{why}; starting nothing new, waiting for {running} running {}",
                plural(running, "pipeline", "pipelines")
            )),
            Event::Interrupted { signal } => {
                let name = match signal {
                    Signal::Interrupt => "interrupted",
                    Signal::Terminate => "terminated",
                };
                self.error(&format!("{name}: removing the build containers"));
            }
            Event::LeftoversRemoved { endpoint, names } => self.line(&format!(
                "removed {} left by runs that are gone from {endpoint}: {}",
                plural(names.len(), "build container", "build containers"),
                names.join(", ")
            )),
            _ => {}
        }
    }
}

impl Ui {
    /// Prints the error with what to do next.
    pub(crate) fn cli_error(&self, error: &CliError) {
        let ui = self;
        match error {
            CliError::Invalid(reports) => {
                for r in reports {
                    ui.diagnostics(r);
                }
            }
            CliError::Graph(errors) => {
                for e in errors {
                    ui.error(&e.to_string());
                }
            }
            CliError::WouldFail(fails) => {
                for (pipeline, b) in fails {
                    ui.error(&format!("apply would fail: pipeline `{pipeline}`: {b}"));
                }
            }
            CliError::Bases(errors) => {
                for e in errors {
                    ui.error(&e.to_string());
                }
            }
            CliError::MissingPasswords(logins) => {
                for l in logins {
                    ui.error(&format!(
                        "the environment variable `{}` (password_env for user `{}`) is not set",
                        l.password_env, l.username
                    ));
                }
            }
            CliError::NoEngine(errors) => {
                for e in errors {
                    ui.error(&e.to_string());
                }
                ui.hint(START_ENGINE);
            }
            CliError::Engine(e @ EngineError::Unreachable { .. }) => {
                ui.error(&e.to_string());
                ui.hint(START_ENGINE);
            }
            CliError::Engine(e) => {
                ui.error(&e.to_string());
                if let Some(hint) = e.hint() {
                    ui.hint(hint);
                }
            }
            CliError::Detailed(inner) => self.cli_error(inner),
            other => ui.error(&other.to_string()),
        }
    }
}

/// What to do when no engine answers.
pub(crate) const START_ENGINE: &str = "start the Docker engine (`dockerd`, `systemctl start docker`) or point DOCKER_HOST / --engine at a running one";

impl Ui {
    /// Prints an apply error with what the user needs next: the last output lines, what was
    /// pushed, where the image is, how to retry.
    fn explain(&self, e: &ApplyError, p: &Pipeline) {
        self.error(&e.to_string());
        if let Some(hint) = e.engine_error().and_then(EngineError::hint) {
            self.hint(hint);
        }
        match e {
            ApplyError::StepFailed { tail, .. } | ApplyError::StepTimedOut { tail, .. } => {
                if !tail.is_empty() {
                    self.line("last output:");
                    for l in tail {
                        self.line(&format!("  {l}"));
                    }
                }
                self.hint("fix the step and apply again: the build resumes from the last checkpoint before it");
            }
            ApplyError::CopyOwner { .. } => {
                self.hint("add the user or group to the image in an earlier step, or give numeric ids, then apply again");
            }
            ApplyError::CopySource { .. } => {
                self.hint("nothing of this step was cached; leave the copy source alone while apply runs, then apply again");
            }
            ApplyError::MountSource { .. } => {
                self.hint("nothing of this step was cached; leave the mounted folder alone while apply runs, then apply again");
            }
            ApplyError::Push {
                repository,
                tag,
                source,
                image,
                pushed,
                cli,
                ..
            } => {
                if let EngineError::Auth(_) = **source {
                    let user = p
                        .publish
                        .iter()
                        .find(|t| t.repository.repository() == *repository)
                        .and_then(|t| t.login.as_ref())
                        .map(|l| format!("user `{}`", l.username))
                        .unwrap_or_else(|| "the docker config's credentials (or none)".into());
                    self.line(&format!("the registry refused {user} for `{repository}`"));
                }
                if pushed.is_empty() {
                    self.line("nothing was pushed");
                } else {
                    self.line("pushed before the failure:");
                    for p in pushed {
                        self.line(&format!("  {}:{}@{}", p.repository, p.tag, p.digest));
                    }
                }
                self.line(&format!("the image is kept in the engine as {image}"));
                self.hint(&format!(
                    "apply again to retry (the build is cached), or push by hand: {cli} push {repository}:{tag}"
                ));
            }
            ApplyError::BaseLacks(_) => {
                self.line("no step ran");
            }
            ApplyError::BaseMissing { reference, cli } => {
                self.hint(&format!("load it (`{cli} pull`, `{cli} load`, `{cli} import`) or set `pull = \"missing\"` for `{reference}`"));
            }
            _ => {}
        }
    }
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`, `1.3 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut n = bytes as f64 / 1024.0;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    format!("{n:.1} {}", UNITS[unit])
}

/// `1 step`, `2 steps`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The summary of a run of several builds, one line per build and per multi-platform
/// pipeline's publication.
pub(crate) fn render_summary(run: &Run<'_>, summary: &Summary, engines: &[String]) -> String {
    let count = |s: Status| summary.outcomes.iter().filter(|o| o.status == s).count();
    let mut out = format!(
        "summary: {} succeeded, {} failed, {} skipped, {} not started in {} on {}\n",
        count(Status::Succeeded),
        count(Status::Failed) + count(Status::Interrupted),
        count(Status::Skipped),
        count(Status::NotStarted),
        secs(summary.elapsed),
        plural(engines.len(), "engine", "engines")
    );
    let width = run.builds.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (p, o) in run.builds.iter().zip(&summary.outcomes) {
        let engine = o
            .engine
            .map_or_else(|| "-".into(), |e| engines[e.0].clone());
        let took = match (o.started, o.finished) {
            (Some(s), Some(f)) => secs(f.saturating_sub(s)),
            _ => "-".into(),
        };
        let what = match (&o.status, &o.applied, &o.detail) {
            (Status::Succeeded, Some(a), _) => format!("image {}", short(&a.image)),
            (Status::Failed | Status::Interrupted, _, Some(d)) => {
                format!("exit {}: {d}", o.exit.map_or(1, ExitStatus::code))
            }
            (_, _, Some(d)) => d.clone(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<11} {:<width$}  {engine}  {took}  {what}\n",
            status_word(o.status),
            p.name
        ));
    }
    for (g, o) in run.groups.iter().zip(&summary.indexes) {
        let what = match (&o.status, &o.detail) {
            (Status::Succeeded, _) => format!(
                "{} published",
                plural(o.pushed.len(), "index tag", "index tags")
            ),
            (Status::Failed | Status::Interrupted, Some(d)) => {
                format!("exit {}: {d}", o.exit.map_or(1, ExitStatus::code))
            }
            (_, Some(d)) => d.clone(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<11} {}  index  {what}\n",
            status_word(o.status),
            g.pipeline.name
        ));
    }
    out
}

/// A status as the summary and the report name it.
fn status_word(status: Status) -> &'static str {
    match status {
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::NotStarted => "not_started",
        Status::Interrupted => "interrupted",
    }
}

/// Prints what an apply produced on stdout, for scripts: `image ID`, `tagged REF` and
/// `pushed REPO:TAG@DIGEST` lines (`up-to-date REPO:TAG@DIGEST` for a tag the registry
/// already held). With several pipelines each line starts with `[NAME] `.
fn print_applied(applied: &Applied, pipeline: &str) {
    let name = if pipeline.is_empty() {
        String::new()
    } else {
        format!("[{pipeline}] ")
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{name}image {}", applied.image);
    for t in &applied.tags {
        let _ = writeln!(out, "{name}tagged {t}");
    }
    for p in &applied.pushed {
        let _ = writeln!(out, "{name}{}", pushed_line(p));
    }
}

/// `pushed REPO:TAG@DIGEST`, or `up-to-date REPO:TAG@DIGEST` for a tag the registry held.
fn pushed_line(p: &crate::execute::Pushed) -> String {
    let how = if p.up_to_date { "up-to-date" } else { "pushed" };
    format!("{how} {}:{}@{}", p.repository, p.tag, p.digest)
}

/// Prints the tags a multi-platform pipeline's index publication pushed on stdout as they
/// are pushed, as [`print_applied`] does for a build: `[NAME] pushed REPO:TAG@DIGEST`, the
/// digest the index's.
pub(crate) struct IndexLines(pub(crate) String);

impl Sink for IndexLines {
    fn event(&self, e: Event) {
        if let Event::Pushed {
            repository,
            tag,
            digest,
            attempts,
            up_to_date,
        } = e
        {
            let line = pushed_line(&crate::execute::Pushed {
                repository,
                tag,
                digest,
                attempts,
                up_to_date,
            });
            let _ = writeln!(std::io::stdout().lock(), "[{}] {line}", self.0);
        }
    }
}
