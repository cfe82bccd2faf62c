//! `pipeline lock`: writes `pipeline.lock` beside the files. Without `--update`, entries still
//! used are kept as they are, missing ones are read and unused ones dropped (as `cargo` treats
//! Cargo.lock); `--update` reads every entry again, `--update REF` that one.

use std::collections::BTreeMap;

use crate::cli::LockArgs;
use crate::error::{CliError, ExitStatus};
use crate::front::{self, locked, Settings};
use crate::lockfile::{LockFile, LockedBase, VERSION};
use crate::ui::Ui;

pub(super) async fn run(args: LockArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let settings = Settings::lock(&args);
    let prepared = front::prepare(&settings, ui).await.map_err(|r| r.error)?;
    let used = locked::external_bases(&prepared.builds, &prepared.graph);
    let (path, old) = locked::read(&settings.files)?;
    let old = old.unwrap_or_default();
    let update = match args.update.as_deref() {
        None => Update::Missing,
        Some("") => Update::All,
        Some(r) if used.contains_key(r) => Update::One(r),
        Some(r) => {
            return Err(CliError::Lock(format!(
                "`{r}` is the base of no pipeline here (the bases are {})",
                names(&used)
            )))
        }
    };
    let engines = front::engines(&args.engines.engines, ui).await?;
    let engine = engines
        .first()
        .ok_or_else(|| CliError::NoEngine(Vec::new()))?;
    let mut bases = Vec::new();
    for (reference, u) in &used {
        let kept = old.entry(reference).filter(|_| !update.reads(reference));
        let entry = match kept {
            Some(e) => e.clone(),
            None => crate::observe::lock_entry(engine, &u.base)
                .await
                .map_err(CliError::Lock)?,
        };
        ui.line(&describe(old.entry(reference), &entry));
        bases.push(entry);
    }
    for b in old
        .bases
        .iter()
        .filter(|b| !used.contains_key(&b.reference))
    {
        ui.line(&format!(
            "dropped {} (the base of no pipeline)",
            b.reference
        ));
    }
    let text = LockFile {
        version: VERSION,
        bases,
    }
    .render();
    let shown = crate::diag::clean(&path.display().to_string());
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        ui.line(&format!("{shown} is up to date"));
    } else {
        std::fs::write(&path, text)
            .map_err(|e| CliError::Lock(format!("cannot write `{shown}`: {e}")))?;
        ui.line(&format!("wrote {shown}"));
    }
    Ok(ExitStatus::Success)
}

/// Which entries are read again.
enum Update<'a> {
    /// Only those the lock lacks.
    Missing,
    All,
    One(&'a str),
}

impl Update<'_> {
    fn reads(&self, reference: &str) -> bool {
        match self {
            Update::Missing => false,
            Update::All => true,
            Update::One(r) => *r == reference,
        }
    }
}

/// One line per entry: what it pins, and whether that changed.
fn describe(old: Option<&LockedBase>, new: &LockedBase) -> String {
    let pin = |b: &LockedBase| {
        b.top_digest()
            .map(str::to_string)
            .or_else(|| b.platforms.first().map(|p| p.config.clone()))
            .unwrap_or_default()
    };
    let from = match new.source {
        crate::lockfile::Source::Registry => "",
        crate::lockfile::Source::Engine => " (the engine's image: no registry has it)",
    };
    match old {
        Some(o) if o == new => format!("kept {} {}{from}", new.reference, pin(new)),
        Some(o) => format!(
            "updated {}: {} -> {}{from}",
            new.reference,
            pin(o),
            pin(new)
        ),
        None => format!("locked {} {}{from}", new.reference, pin(new)),
    }
}

fn names(used: &BTreeMap<String, locked::Used>) -> String {
    let all: Vec<String> = used.keys().map(|r| format!("`{r}`")).collect();
    all.join(", ")
}
