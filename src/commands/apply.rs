use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ApplyArgs;
use crate::engine::docker::DockerEngine;
use crate::engine::{Engine, EngineError};
use crate::execute::{self, ApplyError, Options};
use crate::exit;
use crate::model::Pipeline;
use crate::report::{Recorder, Tee};
use crate::ui::Ui;

pub async fn run(args: ApplyArgs, ui: &Ui) -> u8 {
    // Handlers first: from here on an interrupt cleans up instead of killing the process.
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        ui.error("cannot install signal handlers");
        return exit::INTERNAL;
    };
    let pipelines = match super::load_all(&args.files, &args.vars) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::check_passwords(&pipelines, ui) {
        return code;
    }
    // Several pipelines, or chosen engines: the dependency graph, in parallel (src/schedule.rs).
    if pipelines.len() > 1 || !args.engines.is_empty() {
        let interrupt = async {
            tokio::select! {
                _ = sigint.recv() => exit::SIGINT,
                _ = sigterm.recv() => exit::SIGTERM,
            }
        };
        let request = crate::schedule::Request::from_args(&args);
        return crate::schedule::apply_cli(&pipelines, request, ui, explain, interrupt).await;
    }
    let engine = match DockerEngine::connect().await {
        Ok(e) => e,
        Err(e) => {
            ui.error(&e.to_string());
            ui.hint("start the Docker engine (`dockerd`, `systemctl start docker`) or point DOCKER_HOST at a running one");
            // The report says why nothing ran.
            if let (Some(path), Some(p)) = (&args.report, pipelines.first()) {
                let report =
                    Recorder::new(p, "").finish("failed", exit::ENGINE, Some(e.to_string()));
                super::save_report(path, serde_json::to_vec_pretty(&report), ui);
            }
            return exit::ENGINE;
        }
    };
    match pipelines.first() {
        Some(p) => apply_one(&engine, p, &args, ui, &mut sigint, &mut sigterm).await,
        None => {
            ui.error("no pipeline files to apply (a folder needs `*.toml` files)");
            exit::USAGE
        }
    }
}

async fn apply_one(
    engine: &DockerEngine,
    p: &Pipeline,
    args: &ApplyArgs,
    ui: &Ui,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> u8 {
    let opts = Options {
        no_cache: args.no_cache,
        keep_failed: args.keep_failed,
        attempts: args.attempts,
        retry_delay: args.retry_delay,
        run_name: execute::run_name(&p.name, &execute::run_id()),
    };
    let recorder = Recorder::new(p, &opts.run_name);
    let sink = Tee(vec![ui, &recorder]);
    let outcome = tokio::select! {
        r = execute::apply(engine, p, &opts, &sink) => Ok(r),
        _ = sigint.recv() => Err(exit::SIGINT),
        _ = sigterm.recv() => Err(exit::SIGTERM),
    };
    let (status, code, error) = match outcome {
        Ok(Ok(applied)) => {
            crate::ui::print_applied(&applied);
            ("succeeded", exit::OK, None)
        }
        Ok(Err(e)) => {
            explain(&e, p, ui, &recorder);
            ("failed", exit::of(&e), Some(e.to_string()))
        }
        Err(code) => {
            ui.error("interrupted: removing the build containers");
            // The work future is gone; a create may still be landing, so sweep twice.
            for delay in [0, 500] {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                if let Err(e) = engine.remove_containers_named(&opts.run_name).await {
                    ui.error(&format!(
                        "could not remove the containers named `{}*`: {e}",
                        opts.run_name
                    ));
                }
            }
            ("interrupted", code, Some("interrupted".into()))
        }
    };
    if let Some(path) = &args.report {
        let report = recorder.finish(status, code, error);
        super::save_report(path, serde_json::to_vec_pretty(&report), ui);
    }
    code
}

/// Prints an apply error with what the user needs next: the last output lines, what was
/// pushed, where the image is, how to retry.
fn explain(e: &ApplyError, p: &Pipeline, ui: &Ui, recorder: &Recorder) {
    ui.error(&e.to_string());
    match e {
        ApplyError::StepFailed { tail, .. } | ApplyError::StepTimedOut { tail, .. } => {
            if !tail.is_empty() {
                ui.line("last output:");
                for l in tail {
                    ui.line(&format!("  {l}"));
                }
            }
            ui.hint("fix the step and apply again: the build resumes from the last checkpoint before it");
        }
        ApplyError::CopySource { .. } => {
            ui.hint("nothing of this step was cached; leave the copy source alone while apply runs, then apply again");
        }
        ApplyError::Push {
            repository,
            tag,
            attempts,
            source,
            image,
            pushed,
        } => {
            recorder.push_failed(repository, tag, *attempts);
            if let EngineError::Auth(_) = **source {
                let user = p
                    .publish
                    .iter()
                    .find(|t| t.repository.repository() == *repository)
                    .and_then(|t| t.login.as_ref())
                    .map(|l| format!("user `{}`", l.username))
                    .unwrap_or_else(|| "the docker config's credentials (or none)".into());
                ui.line(&format!("the registry refused {user} for `{repository}`"));
            }
            if pushed.is_empty() {
                ui.line("nothing was pushed");
            } else {
                ui.line("pushed before the failure:");
                for p in pushed {
                    ui.line(&format!("  {}:{}@{}", p.repository, p.tag, p.digest));
                }
            }
            ui.line(&format!("the image is kept in the engine as {image}"));
            ui.hint(&format!(
                "apply again to retry (the build is cached), or push by hand: docker push {repository}:{tag}"
            ));
        }
        ApplyError::BaseMissing { reference } => {
            ui.hint(&format!("load it (`docker pull`, `docker load`, `docker import`) or set `pull = \"missing\"` for `{reference}`"));
        }
        _ => {}
    }
}
