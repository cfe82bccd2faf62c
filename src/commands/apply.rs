use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ApplyArgs;
use crate::engine::Engine;
use crate::error::{CliError, ExitStatus, Signal};
use crate::execute::events::Sink;
use crate::front::{self, Prepared};
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
    let prepared = match front::Settings::apply(&args) {
        Ok(settings) => front::prepare(&settings, ui)
            .await
            .map(|prepared| (prepared, settings)),
        Err(e) => Err(e.into()),
    };
    let (
        Prepared {
            builds: pipelines,
            groups,
            graph,
            engines,
        },
        settings,
    ) = match prepared {
        Ok(p) => p,
        Err(refused) => {
            // The report says why nothing ran.
            if let Some(path) = &args.report {
                let json = match (&refused.error, refused.builds.as_slice()) {
                    (CliError::NoEngine(errors), builds) if !builds.is_empty() => {
                        match errors.first() {
                            Some(first) => report::of_unreached(builds, first),
                            None => report::of_refused(&refused.error),
                        }
                    }
                    (error, _) => report::of_refused(error),
                };
                save(path, json, ui);
            }
            return Err(refused.error);
        }
    };
    let settings = front::run_settings(&args, &settings, engines.len());
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
    let mut summary = schedule::run(
        &pipelines, &graph, &engines, &settings, &sinks, ui, interrupt,
    )
    .await;
    let indexes = publish_indexes(&groups, &pipelines, &engines, &mut summary, &settings, ui).await;
    let endpoints: Vec<String> = engines.iter().map(|e| e.endpoint().to_string()).collect();
    if several {
        for line in ui::render_summary(&pipelines, &summary, &endpoints).lines() {
            ui.line(line);
        }
    }
    if let Some(path) = &args.report {
        let json = report::of_run(
            &pipelines, &graph, &endpoints, &summary, &recorders, indexes,
        );
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

/// Publishes each multi-platform pipeline whose platforms all built: one index per tag. A
/// failure sets the run's exit status (when it is still a success) and is explained.
async fn publish_indexes<E: Engine>(
    groups: &[crate::plan::platforms::Group],
    pipelines: &[crate::model::Pipeline],
    engines: &[E],
    summary: &mut schedule::Summary,
    settings: &Settings,
    ui: &Ui,
) -> Vec<report::IndexRecord> {
    let mut indexes = Vec::new();
    for g in groups {
        let built: Option<Vec<_>> = g
            .builds
            .iter()
            .map(|&i| {
                let o = &summary.outcomes[i];
                Some(crate::execute::index::Built {
                    engine: &engines[o.engine?],
                    image: o.applied.as_ref()?.image.clone(),
                    platform: pipelines[i].platform.clone()?,
                })
            })
            .collect();
        // A platform that failed fails the pipeline: nothing of it is published.
        let Some(built) = built else { continue };
        let sink = ui.for_pipeline(&g.pipeline.name, true);
        match crate::execute::index::publish_index(&g.pipeline, &built, &settings.options, &sink)
            .await
        {
            Ok(pushed) => {
                let platforms: Vec<String> = g
                    .pipeline
                    .platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                indexes.extend(pushed.into_iter().map(|pushed| report::IndexRecord {
                    pipeline: g.pipeline.name.clone(),
                    platforms: platforms.clone(),
                    pushed,
                }));
            }
            Err(error) => {
                if summary.exit == ExitStatus::Success {
                    summary.exit = ExitStatus::of(&error);
                }
                sink.event(crate::execute::events::Event::Failed {
                    error: std::sync::Arc::new(error),
                    pipeline: std::sync::Arc::new(g.pipeline.clone()),
                });
            }
        }
    }
    indexes
}
