use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ApplyArgs;
use crate::engine::Engine;
use crate::error::{CliError, ExitStatus, Signal};
use crate::events::Sink;
use crate::execute::Options;
use crate::report::{self, Recorder, Tee};
use crate::schedule::{self, Settings};
use crate::ui::{self, Ui};

pub(super) async fn run(args: ApplyArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    // Handlers first: from here on an interrupt cleans up instead of killing the process.
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return Err(CliError::Runtime("cannot install signal handlers".into()));
    };
    let checked = super::load_all(&args.files, &args.vars, ui).and_then(|mut pipelines| {
        super::remote_cache(
            &mut pipelines,
            args.cache_remote.as_deref(),
            args.cache_remote_mode,
        )?;
        super::check_passwords(&pipelines)?;
        let graph = crate::graph::build(&pipelines).map_err(CliError::Graph)?;
        Ok((pipelines, graph))
    });
    let (pipelines, graph) = match checked {
        Ok(c) => c,
        Err(e) => {
            // The report says why nothing ran.
            if let Some(path) = &args.report {
                save(path, report::of_refused(&e), ui);
            }
            return Err(e);
        }
    };
    let engines = match super::engines(&args.engines, ui).await {
        Ok(e) => e,
        Err(e) => {
            // The report says why nothing ran.
            if let (Some(path), CliError::NoEngine(errors)) = (&args.report, &e) {
                if let Some(first) = errors.first() {
                    save(path, report::of_unreached(&pipelines, first), ui);
                }
            }
            return Err(e);
        }
    };
    if let Err(e) = super::mounts_reachable(&pipelines, &engines) {
        if let Some(path) = &args.report {
            save(path, report::of_refused(&e), ui);
        }
        return Err(e);
    }
    let settings = Settings {
        jobs: args
            .jobs
            .map_or_else(|| schedule::default_jobs(engines.len()), |j| j as usize),
        fail_fast: !args.keep_going,
        options: Options {
            no_cache: args.no_cache,
            keep_failed: args.keep_failed,
            attempts: args.attempts,
            retry_delay: args.retry_delay,
            run_name: String::new(),
            notes: crate::cache::NoteStore::user(),
        },
    };
    let several = pipelines.len() > 1;
    if several {
        ui.line(&format!(
            "{} pipelines in {} on {}, up to {} at a time: {}",
            pipelines.len(),
            ui::plural(graph.stages(), "stage", "stages"),
            ui::plural(engines.len(), "engine", "engines"),
            settings.jobs,
            graph
                .order
                .iter()
                .map(|&i| pipelines[i].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let uis: Vec<Ui> = pipelines
        .iter()
        .map(|p| ui.for_pipeline(&p.name, several))
        .collect();
    let recorders: Vec<Recorder> = pipelines.iter().map(Recorder::new).collect();
    let tees: Vec<Tee<'_>> = uis
        .iter()
        .zip(&recorders)
        .map(|(u, r)| Tee(vec![u as &dyn Sink, r]))
        .collect();
    let sinks: Vec<&dyn Sink> = tees.iter().map(|t| t as &dyn Sink).collect();
    let interrupt = async {
        tokio::select! {
            _ = sigint.recv() => Signal::Interrupt,
            _ = sigterm.recv() => Signal::Terminate,
        }
    };
    let summary = schedule::run(
        &pipelines, &graph, &engines, &settings, &sinks, ui, interrupt,
    )
    .await;
    let endpoints: Vec<String> = engines.iter().map(|e| e.endpoint().to_string()).collect();
    if several {
        for line in ui::render_summary(&pipelines, &summary, &endpoints).lines() {
            ui.line(line);
        }
    }
    if let Some(path) = &args.report {
        let json = report::of_run(&pipelines, &graph, &endpoints, &summary, &recorders);
        save(path, json, ui);
    }
    Ok(summary.exit)
}

/// Writes the run report; a failure to write it is reported, never fatal.
fn save(path: &std::path::Path, json: serde_json::Result<Vec<u8>>, ui: &Ui) {
    if let Err(e) = report::save(path, json) {
        ui.error(&format!(
            "cannot write the report to `{}`: {e}",
            path.display()
        ));
    }
}
