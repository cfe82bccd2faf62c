use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ApplyArgs;
use crate::engine::Engine;
use crate::error::{CliError, ExitStatus, Signal};
use crate::execute::events::Sink;
use crate::execute::Options;
use crate::graph::Graph;
use crate::model::Pipeline;
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
    let checked = super::load_all(&args.files, &args.vars, ui).and_then(|pipelines| {
        // `--only`: the whole graph says what NAME builds on; then NAME runs alone, so only its
        // passwords are needed.
        let pipelines = match &args.only {
            Some(name) => {
                let graph = crate::graph::build(&pipelines).map_err(CliError::Graph)?;
                vec![only(&pipelines, &graph, name)?]
            }
            None => pipelines,
        };
        let (mut pipelines, groups) = super::platform_builds(pipelines, &args.vars)?;
        super::remote_cache(
            &mut pipelines,
            args.cache_remote.as_deref(),
            args.cache_remote_mode,
        )?;
        super::check_passwords(&pipelines)?;
        let published: Vec<_> = groups.iter().map(|g| g.pipeline.clone()).collect();
        super::check_passwords(&published)?;
        let graph = crate::graph::build(&pipelines).map_err(CliError::Graph)?;
        Ok((pipelines, graph, groups))
    });
    let (mut pipelines, graph, groups) = match checked {
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
    // Each platform's build starts from the base's image for that platform.
    if let Some(engine) = engines.first() {
        crate::observe::resolve_bases(&mut pipelines, engine)
            .await
            .map_err(|e| CliError::Usage(e.join("\n")))?;
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

/// `--only NAME`: the pipeline named NAME, ready to run alone on any engine: the image it
/// builds on comes from the registry its producer publishes to.
fn only(pipelines: &[Pipeline], graph: &Graph, name: &str) -> Result<Pipeline, CliError> {
    let found: Vec<usize> = (0..pipelines.len())
        .filter(|&i| pipelines[i].name == name)
        .collect();
    let i = match found.as_slice() {
        [i] => *i,
        [] => {
            let names: Vec<&str> = graph
                .order
                .iter()
                .map(|&i| pipelines[i].name.as_str())
                .collect();
            return Err(CliError::Usage(format!(
                "--only `{name}`: no pipeline has that name; the pipelines are: {}",
                names.join(", ")
            )));
        }
        several => {
            let files: Vec<&str> = several
                .iter()
                .map(|&i| graph.nodes[i].file.as_str())
                .collect();
            return Err(CliError::Usage(format!(
                "--only `{name}`: several pipelines have that name ({}); give them distinct `name`s",
                files.join(", ")
            )));
        }
    };
    let mut p = pipelines[i].clone();
    if let Some(d) = &graph.nodes[i].dependency {
        let producer = &pipelines[d.producer].name;
        let Some(from) = &d.pull_from else {
            return Err(CliError::Usage(format!(
                "--only `{name}`: it builds on `{}`, which `{producer}` makes but publishes to no \
                 registry, so no other job can pull it; publish it (`[[publish]]`) or apply the \
                 pipelines together",
                d.reference
            )));
        };
        schedule::pull_base(&mut p, d, from);
    }
    Ok(p)
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
