use crate::cli::ValidateArgs;
use crate::error::{CliError, ExitStatus};
use crate::ui::{plural, Ui};

pub(super) fn run(args: ValidateArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let pipelines = super::load_all(&args.files, &args.vars, ui)?;
    // Files given together also form a dependency graph: no cycles, one producer per base.
    crate::graph::build(&pipelines).map_err(CliError::Graph)?;
    // Every platform's templates render (a multi-platform file is checked once per platform).
    super::platform_builds(pipelines.clone(), &args.vars)?;
    for p in pipelines {
        let platforms = if p.platforms.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = p.platforms.iter().map(ToString::to_string).collect();
            format!(", for {}", list.join(", "))
        };
        ui.line(&format!(
            "{}: ok ({}, {}{platforms})",
            crate::diag::clean(&p.file.display().to_string()),
            plural(p.steps.len(), "step", "steps"),
            plural(p.publish.len(), "publish target", "publish targets")
        ));
    }
    Ok(ExitStatus::Success)
}
