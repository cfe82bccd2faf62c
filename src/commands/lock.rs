//! `pipeline lock`: writes `pipeline.lock` beside the files. Without `--update`, entries still
//! used are kept as they are, missing ones are read and unused ones dropped (as `cargo` treats
//! Cargo.lock); `--update` reads every entry again, `--update REF` that one. Bases and the
//! images copies read from are locked alike.

use std::collections::BTreeMap;

use crate::cli::LockArgs;
use crate::error::{CliError, ExitStatus};
use crate::front::{self, locked, Settings};
use crate::lockfile::{Kind, LockFile, LockedImage, VERSION};
use crate::ui::Ui;

pub(super) async fn run(args: LockArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let settings = Settings::lock(&args);
    let prepared = front::prepare(&settings, ui).await.map_err(|r| r.error)?;
    let used = locked::external(&prepared.builds, &prepared.graph);
    let (path, old) = locked::read(&settings.files)?;
    let old = old.unwrap_or_default();
    let update = match args.update.as_deref() {
        None => Update::Missing,
        Some("") => Update::All,
        Some(r) if used.contains(r) => Update::One(r),
        Some(r) => {
            return Err(CliError::Lock(format!(
                "`{r}` is the base or copy source of no pipeline here (the bases are {}; the \
                 copy sources {})",
                names(&used.bases),
                names(&used.copies)
            )))
        }
    };
    let engines = front::engines(&args.engines.engines, ui).await?;
    let engine = engines
        .first()
        .ok_or_else(|| CliError::NoEngine(Vec::new()))?;
    let mut lock = LockFile {
        version: VERSION,
        ..LockFile::default()
    };
    for (kind, map) in used.all() {
        let mut entries = Vec::new();
        for (reference, u) in map {
            let kept = old
                .entry(kind, reference)
                .filter(|_| !update.reads(reference));
            let entry = match kept {
                Some(e) => e.clone(),
                None => crate::observe::lock_entry(engine, &u.image, u.login.as_ref())
                    .await
                    .map_err(CliError::Lock)?,
            };
            ui.line(&describe(kind, old.entry(kind, reference), &entry));
            entries.push(entry);
        }
        for b in old
            .entries(kind)
            .iter()
            .filter(|b| !map.contains_key(&b.reference))
        {
            let why = match kind {
                Kind::Base => "the base of no pipeline",
                Kind::Copy => "copied from by no pipeline",
            };
            ui.line(&format!("dropped {}{} ({why})", prefix(kind), b.reference));
        }
        match kind {
            Kind::Base => lock.bases = entries,
            Kind::Copy => lock.copies = entries,
        }
    }
    let text = lock.render();
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

/// How a line names an entry: a base by its reference alone, `copy source REF` otherwise.
fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Base => "",
        Kind::Copy => "copy source ",
    }
}

/// One line per entry: what it pins, and whether that changed.
fn describe(kind: Kind, old: Option<&LockedImage>, new: &LockedImage) -> String {
    let pin = |b: &LockedImage| {
        b.top_digest()
            .map(str::to_string)
            .or_else(|| b.platforms.first().map(|p| p.config.clone()))
            .unwrap_or_default()
    };
    let kind = prefix(kind);
    let from = match new.source {
        crate::lockfile::Source::Registry => "",
        crate::lockfile::Source::Engine => " (the engine's image: no registry has it)",
    };
    match old {
        Some(o) if o == new => format!("kept {kind}{} {}{from}", new.reference, pin(new)),
        Some(o) => format!(
            "updated {kind}{}: {} -> {}{from}",
            new.reference,
            pin(o),
            pin(new)
        ),
        None => format!("locked {kind}{} {}{from}", new.reference, pin(new)),
    }
}

fn names(used: &BTreeMap<String, locked::Used>) -> String {
    if used.is_empty() {
        return "none".to_string();
    }
    let all: Vec<String> = used.keys().map(|r| format!("`{r}`")).collect();
    all.join(", ")
}
