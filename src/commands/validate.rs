use crate::cli::ValidateArgs;
use crate::error::{CliError, ExitStatus};
use crate::front::{self, Settings};
use crate::ui::{plural, Ui};

pub(super) async fn run(args: ValidateArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    // Every platform's templates render (a multi-platform file is checked once per platform),
    // and files given together form a dependency graph: no cycles, one producer per base.
    let prepared = front::prepare(&Settings::validate(&args), ui)
        .await
        .map_err(|r| r.error)?;
    // One line per file: a multi-platform pipeline as loaded, not per build.
    for (i, build) in prepared.builds.iter().enumerate() {
        let p = match prepared.groups.iter().find(|g| g.builds.contains(&i)) {
            Some(g) if g.builds.first() == Some(&i) => &g.pipeline,
            Some(_) => continue,
            None => build,
        };
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
