//! One file per subcommand: glue between the CLI, the front end ([`crate::front`]), the library
//! and the renderers. Commands return how they ended; errors are rendered once, by
//! [`crate::run`].

mod apply;
mod completions;
mod diff;
mod gc;
mod keygen;
mod lock;
mod man;
mod plan;
mod schema;
mod validate;

use crate::cli::{Cli, Command};
use crate::error::{CliError, ExitStatus};
use crate::ui::Ui;

pub use schema::{document_schema, schema_json, DOCUMENTS};

pub(crate) async fn dispatch(cli: Cli, ui: &Ui) -> Result<ExitStatus, CliError> {
    match cli.command {
        Command::Apply(args) => apply::run(args, ui).await,
        Command::Plan(args) => plan::run(args, ui).await,
        Command::Validate(args) => validate::run(args, ui).await,
        Command::Schema(args) => Ok(schema::run(args.document)),
        Command::Gc(args) => gc::run(args, ui).await,
        Command::Keygen => keygen::run(ui),
        Command::Completions(args) => Ok(completions::run(&args)),
        Command::Man(args) => man::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Lock(args) => lock::run(args, ui).await,
    }
}
