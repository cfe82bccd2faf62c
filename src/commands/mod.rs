//! One file per subcommand: glue between the CLI, the library and the renderers.

mod apply;
mod gc;
mod plan;
mod schema;
mod validate;

use std::path::PathBuf;

use crate::cli::{Cli, Command, VarArgs};
use crate::config::{self, Overrides};
use crate::engine::docker::DockerEngine;
use crate::exit;
use crate::model::Pipeline;
use crate::ui::Ui;

pub use schema::schema_json;

pub async fn dispatch(cli: Cli) -> u8 {
    let ui = Ui::new(cli.progress);
    match cli.command {
        Command::Apply(args) => apply::run(args, &ui).await,
        Command::Plan(args) => plan::run(args, &ui).await,
        Command::Validate(args) => validate::run(args),
        Command::Schema => schema::run(),
        Command::Gc(args) => gc::run(args, &ui).await,
    }
}

fn overrides(v: &VarArgs) -> Overrides {
    Overrides {
        var_files: v.var_files.clone(),
        vars: v.vars.clone(),
    }
}

/// Loads and validates every file; prints every diagnostic of every file on failure, and
/// which files were skipped as not pipelines.
fn load_all(files: &[PathBuf], vars: &VarArgs) -> Result<Vec<Pipeline>, u8> {
    let loaded = config::load_all(files, &overrides(vars)).map_err(|reports| {
        for r in reports {
            eprint!("{}", r.render());
        }
        exit::USAGE
    })?;
    for s in &loaded.skipped {
        let file = crate::diag::clean(&s.file.display().to_string());
        eprintln!("note: skipped `{file}`: {}", s.reason);
    }
    if loaded.pipelines.is_empty() {
        eprintln!("error: no pipeline files (a folder needs `*.toml` files with a `[base]` table)");
        return Err(exit::USAGE);
    }
    Ok(loaded.pipelines)
}

/// Checks that every `password_env` variable is set, before anything runs.
fn check_passwords(pipelines: &[Pipeline], ui: &Ui) -> Result<(), u8> {
    let logins = pipelines.iter().flat_map(|p| {
        p.base
            .login
            .iter()
            .chain(p.publish.iter().filter_map(|t| t.login.as_ref()))
    });
    let missing = crate::credentials::missing_passwords(logins);
    for l in &missing {
        ui.error(&format!(
            "the environment variable `{}` (password_env for user `{}`) is not set",
            l.password_env, l.username
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(exit::USAGE)
    }
}

async fn connect(ui: &Ui) -> Result<DockerEngine, u8> {
    DockerEngine::connect().await.map_err(|e| {
        ui.error(&e.to_string());
        ui.hint("start the Docker engine (`dockerd`, `systemctl start docker`) or point DOCKER_HOST at a running one");
        exit::ENGINE
    })
}

/// Writes a JSON run report; a failure to write it is reported, never fatal.
pub(crate) fn save_report(path: &std::path::Path, json: serde_json::Result<Vec<u8>>, ui: &Ui) {
    let written = json
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(path, json));
    if let Err(e) = written {
        ui.error(&format!(
            "cannot write the report to `{}`: {e}",
            path.display()
        ));
    }
}
