//! `pipeline man [COMMAND]`: the manual page (roff) generated from the clap types.

use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::error::{CliError, ExitStatus};

pub(super) fn run(args: &ManArgs) -> Result<ExitStatus, CliError> {
    print!("{}", page(args.command.as_deref())?);
    Ok(ExitStatus::Success)
}

/// The page of the whole tool, or of one of its subcommands (titled `pipeline-NAME`).
fn page(subcommand: Option<&str>) -> Result<String, CliError> {
    let mut tool = Cli::command();
    tool.build();
    let (command, title) = match subcommand {
        None => (tool, "pipeline".to_string()),
        Some(name) => {
            let Some(found) = tool.find_subcommand(name) else {
                let names: Vec<&str> = tool
                    .get_subcommands()
                    .map(clap::Command::get_name)
                    .collect();
                return Err(CliError::Usage(format!(
                    "`pipeline man` knows no command `{name}`: write one of {}",
                    names.join(", ")
                )));
            };
            (found.clone(), format!("pipeline-{name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .title(title)
        .render(&mut out)
        .map_err(|source| CliError::Runtime {
            what: "the manual page",
            source,
        })?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use crate::error::CliError;

    #[test]
    fn the_page_of_the_tool_lists_its_commands() {
        let page = super::page(None).unwrap();
        assert!(page.contains(".TH pipeline 1"), "{page}");
        for command in ["apply", "plan", "validate", "schema", "gc"] {
            assert!(page.contains(command), "no `{command}` in\n{page}");
        }
    }

    #[test]
    fn a_command_has_a_page_of_its_own_with_its_options() {
        let page = super::page(Some("apply")).unwrap();
        assert!(page.contains(".TH pipeline-apply 1"), "{page}");
        assert!(page.contains("cache"), "{page}");
        let Err(CliError::Usage(why)) = super::page(Some("aply")) else {
            panic!("an unknown command is a usage error");
        };
        assert!(
            why.contains("no command `aply`") && why.contains("apply, plan"),
            "{why}"
        );
    }
}
