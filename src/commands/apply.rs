use tokio::signal::unix::{signal, Signal as Handler, SignalKind};

use crate::cli::ApplyArgs;
use crate::engine::Engine;
use crate::error::{CliError, ExitStatus, Signal};
use crate::execute::events::Sink;
use crate::front::{self, Prepared};
use crate::report::{self, IndexRecorder, Recorder, Tee};
use crate::schedule::{self, Run, Sinks};
use crate::ui::{self, Ui};

pub(super) async fn run(args: ApplyArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    // Handlers first: from here on an interrupt cleans up instead of killing the process.
    let handler = |kind| {
        signal(kind).map_err(|source| CliError::Runtime {
            what: "signal handlers",
            source,
        })
    };
    let mut sigint = handler(SignalKind::interrupt())?;
    let mut sigterm = handler(SignalKind::terminate())?;
    let (prepared, settings) = prepare(&args, ui).await?;
    let settings = front::run_settings(&args, &settings, prepared.engines.len());
    let Prepared {
        builds,
        groups,
        graph,
        engines,
        ..
    } = &prepared;
    let run_names = schedule::run_names(builds);
    let run = Run {
        builds,
        graph,
        groups,
        run_names: &run_names,
    };
    let several = builds.len() > 1;
    if several {
        announce(&run, engines.len(), settings.jobs, ui);
    }
    let uis: Vec<Ui> = builds
        .iter()
        .map(|p| ui.for_pipeline(&p.name, several))
        .collect();
    let recorders: Vec<Recorder> = builds
        .iter()
        .zip(&run_names)
        .map(|(p, name)| Recorder::new(p, name))
        .collect();
    let tees: Vec<Tee<'_>> = uis
        .iter()
        .zip(&recorders)
        .map(|(u, r)| Tee(vec![u as &dyn Sink, r]))
        .collect();
    let group_uis: Vec<Ui> = groups
        .iter()
        .map(|g| ui.for_pipeline(&g.pipeline.name, true))
        .collect();
    let published: Vec<IndexRecorder> = groups.iter().map(|_| IndexRecorder::default()).collect();
    let index_lines: Vec<ui::IndexLines> = groups
        .iter()
        .map(|g| ui::IndexLines(g.pipeline.name.clone()))
        .collect();
    let group_tees: Vec<Tee<'_>> = group_uis
        .iter()
        .zip(&published)
        .zip(&index_lines)
        .map(|((u, r), l)| Tee(vec![u as &dyn Sink, r, l]))
        .collect();
    let build_sinks: Vec<&dyn Sink> = tees.iter().map(|t| t as &dyn Sink).collect();
    let group_sinks: Vec<&dyn Sink> = group_tees.iter().map(|t| t as &dyn Sink).collect();
    let sinks = Sinks {
        builds: &build_sinks,
        groups: &group_sinks,
        run: ui,
    };
    let interrupt = interrupted(&mut sigint, &mut sigterm);
    let summary = schedule::run(run, engines, &settings, sinks, interrupt).await;
    let endpoints: Vec<String> = engines.iter().map(|e| e.endpoint().to_string()).collect();
    if several {
        for line in ui::render_summary(&run, &summary, &endpoints).lines() {
            ui.line(line);
        }
    }
    if args.report.is_some() || args.metadata_file.is_some() {
        let record = report::RunRecord {
            run: &run,
            engines: &endpoints,
            summary: &summary,
            recorders: &recorders,
            published: &published,
        };
        let document = report::of_run(&record);
        if let Some(path) = &args.report {
            save(path, &document, ui);
        }
        if let Some(path) = &args.metadata_file {
            save(path, &report::Metadata::of(&document), ui);
        }
    }
    Ok(summary.exit)
}

/// Resolves the arguments and prepares the run; a refused run writes the report that says
/// why nothing ran.
async fn prepare(args: &ApplyArgs, ui: &Ui) -> Result<(Prepared, front::Settings), CliError> {
    let prepared = match front::Settings::apply(args) {
        Ok(settings) => front::prepare(&settings, ui)
            .await
            .map(|prepared| (prepared, settings)),
        Err(e) => Err(e.into()),
    };
    prepared.map_err(|refused| {
        if let Some(path) = &args.report {
            let document = match (&refused.error, refused.builds.as_slice()) {
                (CliError::NoEngine(errors), builds) if !builds.is_empty() => {
                    match errors.first() {
                        Some(first) => report::of_unreached(builds, first),
                        None => report::of_refused(&refused.error),
                    }
                }
                (error, _) => report::of_refused(error),
            };
            save(path, &document, ui);
        }
        refused.error
    })
}

/// The first SIGINT or SIGTERM.
async fn interrupted(sigint: &mut Handler, sigterm: &mut Handler) -> Signal {
    tokio::select! {
        _ = sigint.recv() => Signal::Interrupt,
        _ = sigterm.recv() => Signal::Terminate,
    }
}

/// Says what a run of several builds will do.
fn announce(run: &Run<'_>, engines: usize, jobs: usize, ui: &Ui) {
    let order: Vec<&str> = run
        .graph
        .order
        .iter()
        .map(|&i| run.builds[i].name.as_str())
        .collect();
    ui.line(&format!(
        "{} pipelines in {} on {}, up to {jobs} at a time: {}",
        run.builds.len(),
        ui::plural(run.graph.stages(), "stage", "stages"),
        ui::plural(engines, "engine", "engines"),
        order.join(", ")
    ));
}

/// Writes the run report; a failure to write it is reported, never fatal.
fn save(path: &std::path::Path, document: &impl serde::Serialize, ui: &Ui) {
    if let Err(e) = report::save(path, document) {
        ui.error(&format!("cannot write `{}`: {e}", path.display()));
    }
}
