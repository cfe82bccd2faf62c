use std::collections::{HashMap, HashSet};

use crate::cache::CheckpointNote;
use crate::cli::GcArgs;
use crate::engine::{Engine, CACHE_REPOSITORY};
use crate::exit;
use crate::ui::{short, Ui};

pub async fn run(args: GcArgs, ui: &Ui) -> u8 {
    let engine = match super::connect(ui).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let doomed = match collect(&engine).await {
        Ok(d) => d,
        Err(e) => {
            ui.error(&e.to_string());
            return exit::ENGINE;
        }
    };
    for (id, keys) in &doomed {
        for key in keys {
            let reference = format!("{CACHE_REPOSITORY}:{key}");
            if args.dry_run {
                println!("would remove {reference} ({})", short(id));
            } else if let Err(e) = engine.remove_image(&reference).await {
                ui.error(&format!("cannot remove {reference}: {e}"));
                return exit::ENGINE;
            } else {
                println!("removed {reference} ({})", short(id));
            }
        }
    }
    if doomed.is_empty() {
        eprintln!("nothing to remove");
    }
    exit::OK
}

/// Cache images no longer used by the newest apply of their pipeline. Kept, per pipeline: the
/// newest checkpoint and its ancestors, and the newest final image whose layers are those of a
/// kept checkpoint (a final image and the checkpoint of its last step share their layers).
pub async fn collect<E: Engine>(
    engine: &E,
) -> Result<Vec<(String, Vec<String>)>, crate::engine::EngineError> {
    let cache = engine.list_cache().await?;
    let mut info: HashMap<&str, (Option<CheckpointNote>, std::time::SystemTime, Vec<String>)> =
        HashMap::new();
    for c in &cache {
        if let Some(i) = engine.inspect_image(&c.id).await? {
            let created =
                humantime::parse_rfc3339_weak(&i.created).unwrap_or(std::time::UNIX_EPOCH);
            info.insert(
                c.id.as_str(),
                (CheckpointNote::from_comment(&i.comment), created, i.layers),
            );
        }
    }
    let by_id: HashMap<&str, &crate::engine::CacheImage> =
        cache.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut newest: HashMap<&str, (&str, std::time::SystemTime)> = HashMap::new();
    for (id, (note, created, _)) in &info {
        if let Some(n) = note {
            let slot = newest.entry(n.pipeline.as_str()).or_insert((id, *created));
            if *created > slot.1 {
                *slot = (id, *created);
            }
        }
    }
    let mut keep: HashSet<String> = HashSet::new();
    for (tip, _) in newest.values() {
        let mut cur = by_id.get(tip).copied();
        while let Some(c) = cur {
            if !keep.insert(c.id.clone()) {
                break;
            }
            cur = by_id.get(c.parent.as_str()).copied();
        }
    }
    let kept_stacks: HashSet<&Vec<String>> = info
        .iter()
        .filter(|(id, (note, _, _))| note.is_some() && keep.contains(**id))
        .map(|(_, (_, _, layers))| layers)
        .collect();
    let mut newest_final: HashMap<&Vec<String>, (&str, std::time::SystemTime)> = HashMap::new();
    for (id, (note, created, layers)) in &info {
        if note.is_none() && kept_stacks.contains(layers) {
            let slot = newest_final.entry(layers).or_insert((id, *created));
            if *created > slot.1 {
                *slot = (id, *created);
            }
        }
    }
    keep.extend(newest_final.values().map(|(id, _)| id.to_string()));
    Ok(cache
        .iter()
        .filter(|c| !keep.contains(&c.id))
        .map(|c| (c.id.clone(), c.keys.clone()))
        .collect())
}
