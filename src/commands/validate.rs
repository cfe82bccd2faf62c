use crate::cli::{Format, ValidateArgs};
use crate::error::{CliError, ExitStatus};
use crate::front::{self, Prepared, Settings};
use crate::model::Pipeline;
use crate::report::{self, ValidateDocument};
use crate::ui::{plural, Ui};

pub(super) async fn run(args: ValidateArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    // Every platform's templates render (a multi-platform file is checked once per platform),
    // and files given together form a dependency graph: no cycles, one producer per base.
    let prepared = front::prepare(&Settings::validate(&args), ui).await;
    let prepared = match (prepared, args.format) {
        (Ok(prepared), _) => prepared,
        (Err(refused), Format::Json) => {
            report::print(&ValidateDocument::invalid(&refused.error));
            return Err(refused.error);
        }
        (Err(refused), Format::Text) => return Err(refused.error),
    };
    let files = files(&prepared);
    if args.format == Format::Json {
        report::print(&ValidateDocument::valid(&files));
        return Ok(ExitStatus::Success);
    }
    for p in files {
        let platforms = if p.platforms.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = p.platforms.iter().map(ToString::to_string).collect();
            format!(", for {}", list.join(", "))
        };
        ui.line(&format!(
            "{}: ok ({}, {}{platforms})",
            crate::diag::clean(&p.shown()),
            plural(p.steps.len(), "step", "steps"),
            plural(p.publish.len(), "publish target", "publish targets")
        ));
    }
    Ok(ExitStatus::Success)
}

/// One pipeline per file: a multi-platform pipeline as loaded, not per build.
fn files(prepared: &Prepared) -> Vec<&Pipeline> {
    let mut files = Vec::new();
    for (i, build) in prepared.builds.iter().enumerate() {
        match prepared.groups.iter().find(|g| g.builds.contains(&i)) {
            Some(g) if g.builds.first() == Some(&i) => files.push(&g.pipeline),
            Some(_) => {}
            None => files.push(build),
        }
    }
    files
}
