//! `pipeline`: a version-controlled TOML file in, a published container image out.
//!
//! Data flows parse -> validate -> plan -> execute: [`config`] reads the file as written,
//! [`model`] checks it, [`plan`] decides what to do from what the engine holds, [`execute`]
//! does it through the [`engine`] boundary and reports [`events`], which the command layer
//! renders ([`ui`]) and records ([`report`]).

pub mod archive;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod diag;
pub mod engine;
pub mod events;
pub mod execute;
pub mod exit;
pub mod fsread;
pub mod graph;
pub mod model;
pub mod plan;
pub mod reference;
pub mod report;
pub mod schedule;
pub mod ui;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Parses the arguments, runs the command and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let code = runtime.block_on(commands::dispatch(cli));
    // Blocking tasks (archive writers) must not keep the process alive after an interrupt.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}
