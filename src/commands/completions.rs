//! `pipeline completions SHELL`: a completion script generated from the clap types.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::ExitStatus;

pub(super) fn run(args: &CompletionsArgs) -> ExitStatus {
    print!("{}", script(args.shell));
    ExitStatus::Success
}

/// The completion script for `shell`.
fn script(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pipeline", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;
    use clap_complete::Shell;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_commands_and_their_flags() {
        for shell in Shell::value_variants() {
            let script = super::script(*shell);
            for word in [
                "apply",
                "plan",
                "validate",
                "gc",
                "completions",
                "man",
                "no-cache",
            ] {
                assert!(script.contains(word), "{shell}: no `{word}` in\n{script}");
            }
        }
    }
}
