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

/// Cache images no longer used by the newest apply of their pipeline: everything except, per
/// pipeline, the newest checkpoint, its ancestors, and the newest final image built on them.
pub async fn collect<E: Engine>(
    engine: &E,
) -> Result<Vec<(String, Vec<String>)>, crate::engine::EngineError> {
    let cache = engine.list_cache().await?;
    let mut notes: HashMap<String, CheckpointNote> = HashMap::new();
    for c in &cache {
        if let Some(info) = engine.inspect_image(&c.id).await? {
            if let Some(note) = CheckpointNote::from_comment(&info.comment) {
                notes.insert(c.id.clone(), note);
            }
        }
    }
    let by_id: HashMap<&str, &crate::engine::CacheImage> =
        cache.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut keep: HashSet<String> = HashSet::new();
    let mut newest: HashMap<&str, &crate::engine::CacheImage> = HashMap::new();
    for c in &cache {
        if let Some(n) = notes.get(&c.id) {
            let slot = newest.entry(n.pipeline.as_str()).or_insert(c);
            if c.created > slot.created {
                *slot = c;
            }
        }
    }
    for tip in newest.values() {
        let mut cur = Some(*tip);
        while let Some(c) = cur {
            if !keep.insert(c.id.clone()) {
                break;
            }
            cur = by_id.get(c.parent.as_str()).copied();
        }
    }
    // Final images: keep the newest one whose parent is a kept checkpoint (or a tip's parent).
    let mut finals: Vec<&crate::engine::CacheImage> = cache
        .iter()
        .filter(|c| {
            !notes.contains_key(&c.id)
                && (keep.contains(&c.parent) || newest.values().any(|t| t.parent == c.parent))
        })
        .collect();
    finals.sort_by_key(|c| std::cmp::Reverse(c.created));
    let mut seen_parents = HashSet::new();
    for f in finals {
        if seen_parents.insert(f.parent.clone()) {
            keep.insert(f.id.clone());
        }
    }
    Ok(cache
        .iter()
        .filter(|c| !keep.contains(&c.id))
        .map(|c| (c.id.clone(), c.keys.clone()))
        .collect())
}
