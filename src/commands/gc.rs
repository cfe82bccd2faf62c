use crate::cli::GcArgs;
use crate::engine::{Engine, CACHE_REPOSITORY};
use crate::error::{CliError, ExitStatus};
use crate::ui::{short, Ui};

pub(super) async fn run(args: GcArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let engines = super::engines(&args.engines, ui).await?;
    let several = engines.len() > 1;
    let notes = crate::cache::NoteStore::user();
    let mut removed_any = false;
    for engine in &engines {
        let on = if several {
            format!(" on {}", engine.endpoint())
        } else {
            String::new()
        };
        // Build containers of runs that are gone (never one a live run may use).
        let leftovers = crate::execute::leftovers::find(engine).await?;
        for c in &leftovers {
            if args.dry_run {
                println!("would remove container {}{on}", c.name);
                continue;
            }
            engine.remove_container(&c.id).await?;
            println!("removed container {}{on}", c.name);
        }
        removed_any |= !leftovers.is_empty();
        let unused = crate::cache::unused(engine).await?;
        for (id, keys) in &unused {
            let mut all_removed = !args.dry_run;
            for key in keys {
                let reference = format!("{CACHE_REPOSITORY}:{key}");
                if args.dry_run {
                    println!("would remove {reference} ({}){on}", short(id));
                    continue;
                }
                match engine.remove_image(&reference).await {
                    Ok(()) => println!("removed {reference} ({}){on}", short(id)),
                    // An apply running now uses it: leave it, go on with the rest.
                    Err(e) if e.is_conflict() => {
                        all_removed = false;
                        ui.line(&format!(
                            "kept {reference} ({}){on}: in use by a container ({e})",
                            short(id)
                        ))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // No longer a cache entry: its note explains nothing any more.
            if let (true, Some(store)) = (all_removed, &notes) {
                store.remove(id);
            }
        }
        removed_any |= !unused.is_empty();
        if args.mounts {
            removed_any |= cache_mounts(engine, args.dry_run, &on, ui).await?;
        }
    }
    if !removed_any {
        ui.line("nothing to remove");
    }
    Ok(ExitStatus::Success)
}

/// Removes (or, with `dry_run`, lists) the cache mount volumes; one a container uses is kept
/// and said so. Returns whether there was any.
async fn cache_mounts(
    engine: &impl Engine,
    dry_run: bool,
    on: &str,
    ui: &Ui,
) -> Result<bool, CliError> {
    use crate::volumes::{LABEL_PATH, LABEL_PIPELINE, LABEL_PLATFORM, MARKER, MARKER_VALUE};
    let volumes = engine.list_volumes(MARKER, MARKER_VALUE).await?;
    for v in &volumes {
        // Labels are anyone's to set: shown cleaned of control characters.
        let label = |k: &str| crate::diag::clean(v.labels.get(k).map_or("?", String::as_str));
        let what = format!(
            "cache mount {} (pipeline {}, {}, {}){on}",
            crate::diag::clean(&v.name),
            label(LABEL_PIPELINE),
            label(LABEL_PATH),
            label(LABEL_PLATFORM)
        );
        if dry_run {
            println!("would remove {what}");
            continue;
        }
        match engine.remove_volume(&v.name).await {
            Ok(()) => println!("removed {what}"),
            Err(e) if e.is_conflict() => ui.line(&format!("kept {what}: in use ({e})")),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(!volumes.is_empty())
}
