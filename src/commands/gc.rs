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
    }
    if !removed_any {
        ui.line("nothing to remove");
    }
    Ok(ExitStatus::Success)
}
