//! The cache images `gc` removes: read from the engine, decided by their pointers and notes.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::{CacheImage, CheckpointComment, LAST_PREFIX};
use crate::engine::{Engine, EngineError};

/// Cache images no longer used by the newest apply of their pipeline. Kept, per pipeline:
/// the image its newest apply produced (the `last-*` pointer tag) with its ancestors and the
/// checkpoint of all its steps (same layers, needed when only the commit changes next), and
/// the newest checkpoint with its ancestors (what a failed apply will resume from).
pub(crate) async fn unused<E: Engine>(
    engine: &E,
) -> Result<Vec<(String, Vec<String>)>, EngineError> {
    let cache = engine.list_cache().await?;
    let mut info: HashMap<&str, (Option<CheckpointComment>, SystemTime, Vec<String>)> =
        HashMap::new();
    for c in &cache {
        if let Some(i) = engine.inspect_image(&c.id).await? {
            let created = humantime::parse_rfc3339_weak(&i.created).unwrap_or(UNIX_EPOCH);
            info.insert(
                c.id.as_str(),
                (CheckpointComment::parse(&i.comment), created, i.layers),
            );
        }
    }
    let by_id: HashMap<&str, &CacheImage> = cache.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut keep: HashSet<String> = HashSet::new();
    let keep_with_ancestors = |id: &str, keep: &mut HashSet<String>| {
        let mut cur = by_id.get(id).copied();
        while let Some(c) = cur {
            if !keep.insert(c.id.clone()) {
                break;
            }
            cur = by_id.get(c.parent.as_str()).copied();
        }
    };
    // What the newest applies produced.
    let finals: Vec<&CacheImage> = cache
        .iter()
        .filter(|c| c.keys.iter().any(|k| k.starts_with(LAST_PREFIX)))
        .collect();
    for f in &finals {
        keep_with_ancestors(&f.id, &mut keep);
        let layers = info.get(f.id.as_str()).map(|i| &i.2);
        let all_steps = info
            .iter()
            .filter(|(_, (note, _, l))| note.is_some() && Some(l) == layers)
            .max_by_key(|(_, (_, created, _))| *created);
        if let Some((id, _)) = all_steps {
            keep_with_ancestors(id, &mut keep);
        }
    }
    // The newest checkpoint of each pipeline.
    let mut newest: HashMap<&str, (&str, SystemTime)> = HashMap::new();
    for (id, (note, created, _)) in &info {
        if let Some(n) = note {
            let slot = newest.entry(n.pipeline.as_str()).or_insert((id, *created));
            if *created > slot.1 {
                *slot = (id, *created);
            }
        }
    }
    for (id, _) in newest.values() {
        keep_with_ancestors(id, &mut keep);
    }
    Ok(cache
        .iter()
        .filter(|c| !keep.contains(&c.id))
        .map(|c| (c.id.clone(), c.keys.clone()))
        .collect())
}
