//! `pipeline`: a version-controlled TOML file in, a published container image out.
//!
//! Data flows parse -> validate -> plan -> execute: [`config`] reads the file as written and
//! checks it into a [`model::Pipeline`], `plan` decides what to do from what the engine holds,
//! `execute` does it through the `engine` boundary and reports `events`, which the command
//! layer renders (`ui`) and records (`report`). `schedule` runs one pipeline or a graph of
//! several over one or more engines. The public API is what the tests, the fuzz target and
//! the benchmarks need: [`run`], [`config`], [`diag`], [`model`] and [`schema_json`].

mod archive;
mod cache;
mod cli;
mod commands;
pub mod config;
mod credentials;
pub mod diag;
mod engine;
mod error;
mod execute;
mod front;
mod fsread;
mod graph;
mod lockfile;
// The image writer's types; the layer writer and the pushes build on them.
#[allow(dead_code)]
mod image;
pub mod model;
mod observe;
mod plan;
pub mod reference;
mod registry;
mod report;
mod schedule;
mod signing;
#[cfg(test)]
mod testing;
mod tls;
mod ui;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use commands::{document_schema, schema_json, DOCUMENTS};

/// Parses the arguments, runs the command, renders its error if it failed, and returns the
/// process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let ui = ui::Ui::new(cli.progress);
    tls::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = error::CliError::Runtime {
                what: "the async runtime",
                source: e,
            };
            ui.cli_error(&e);
            return ExitCode::from(e.code());
        }
    };
    let code = match runtime.block_on(commands::dispatch(cli, &ui)) {
        Ok(status) => status.code(),
        Err(e) => {
            ui.cli_error(&e);
            e.code()
        }
    };
    // Blocking tasks (archive writers) must not keep the process alive after an interrupt.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}
