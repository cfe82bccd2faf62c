//! Rendering events for people: live output on a terminal, plain timestamped lines in CI logs.
//! Everything goes to stderr; only results (image id, pushed digests) go to stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use console::style;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Progress;
use crate::events::{Event, Sink, StepOutcome};

/// The human renderer.
pub struct Ui {
    tty: bool,
    /// Prefix of every line (the pipeline's name when several run).
    prefix: String,
    bar: Mutex<Option<ProgressBar>>,
    /// False for one of several pipelines running at once: their spinners would fight.
    live: bool,
}

impl Ui {
    pub fn new(mode: Progress) -> Self {
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
            prefix: String::new(),
            bar: Mutex::new(None),
            live: true,
        }
    }

    /// The renderer of one of several pipelines running at once: same style, every line
    /// prefixed with `[prefix]`, no live spinner.
    pub fn for_pipeline(&self, prefix: impl Into<String>) -> Ui {
        Ui {
            tty: self.tty,
            prefix: prefix.into(),
            bar: Mutex::new(None),
            live: false,
        }
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Prints one line to stderr, above any progress bar.
    pub fn line(&self, text: &str) {
        let text = if self.prefix.is_empty() {
            text.to_string()
        } else {
            format!("[{}] {text}", self.prefix)
        };
        let line = if self.tty {
            text
        } else {
            format!(
                "{} {text}",
                humantime::format_rfc3339_seconds(SystemTime::now())
            )
        };
        let bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match bar.as_ref() {
            Some(b) => b.println(line),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
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

    pub fn error(&self, text: &str) {
        self.stop_spin();
        self.line(&format!("{} {text}", style("error:").red().bold()));
    }

    pub fn hint(&self, text: &str) {
        self.line(&format!("{} {text}", style("hint:").cyan()));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Sink for Ui {
    fn event(&self, e: Event) {
        match e {
            Event::BaseReady {
                reference,
                id,
                pulled,
            } => {
                self.stop_spin();
                let how = if pulled { "pulled" } else { "present" };
                self.line(&format!("base {reference} {how} ({})", short(&id)));
            }
            Event::PullProgress(p) => {
                let layer = p.id.map(|i| format!("{i}: ")).unwrap_or_default();
                if self.tty {
                    self.spin(format!("pull {layer}{}", p.status));
                }
            }
            Event::StepCached { index, total, name } => {
                self.line(&format!(
                    "{} [{index}/{total}] {name}",
                    style("cached").green()
                ));
            }
            Event::StepStarted { index, total, name } => {
                self.line(&format!(
                    "{} [{index}/{total}] {name}",
                    style("step").bold()
                ));
            }
            Event::StepOutput { index, line, .. } => {
                if self.tty {
                    self.line(&format!("  {} {line}", style("│").dim()));
                } else {
                    self.line(&format!("[step {index}] {line}"));
                }
            }
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => match outcome {
                StepOutcome::Succeeded => self.line(&format!(
                    "{} step {index} in {}",
                    style("done").green(),
                    secs(duration)
                )),
                StepOutcome::Failed { exit_code } => self.line(&format!(
                    "{} step {index}: exit code {exit_code} after {}",
                    style("failed").red(),
                    secs(duration)
                )),
                StepOutcome::TimedOut => self.line(&format!(
                    "{} step {index} after {}",
                    style("timed out").red(),
                    secs(duration)
                )),
                StepOutcome::Error => self.line(&format!(
                    "{} step {index} after {}",
                    style("failed").red(),
                    secs(duration)
                )),
            },
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
            } => {
                let how = if reused { "unchanged" } else { "committed" };
                let tags = if tags.is_empty() {
                    String::new()
                } else {
                    format!(" as {}", tags.join(", "))
                };
                self.line(&format!(
                    "{} {how} {}{tags}",
                    style("image").bold(),
                    short(&image)
                ));
            }
            Event::PushStarted { repository, tag } => {
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
                if self.tty {
                    let layer = progress.id.map(|i| format!(" {i}")).unwrap_or_default();
                    self.spin(format!(
                        "push {repository}:{tag}{layer} {}",
                        progress.status
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
                    humantime::format_duration(delay)
                ));
            }
            Event::Pushed {
                repository,
                tag,
                digest,
                attempts,
                up_to_date,
            } => {
                self.stop_spin();
                if up_to_date {
                    self.line(&format!(
                        "{} {repository}:{tag}@{digest}",
                        style("up to date").green()
                    ));
                } else {
                    let tries = if attempts > 1 {
                        format!(" (after {attempts} attempts)")
                    } else {
                        String::new()
                    };
                    self.line(&format!(
                        "{} {repository}:{tag}@{digest}{tries}",
                        style("pushed").green()
                    ));
                }
            }
            Event::KeptFailed { image, step } => {
                self.line(&format!(
                    "kept the container of step {step} as {image}; enter it with:"
                ));
                self.line(&format!(
                    "  docker run -it --rm --entrypoint /bin/sh {image}"
                ));
            }
            Event::Warning(w) => self.line(&format!("{} {w}", style("warning:").yellow())),
        }
    }
}

/// Prints what an apply produced on stdout, for scripts: `image ID`, `tagged REF` and
/// `pushed REPO:TAG@DIGEST` lines.
pub fn print_applied(applied: &crate::execute::Applied) {
    println!("image {}", applied.image);
    for t in &applied.tags {
        println!("tagged {t}");
    }
    for p in &applied.pushed {
        println!("pushed {}:{}@{}", p.repository, p.tag, p.digest);
    }
}

/// The short form of an image id, as docker prints it.
pub fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}
