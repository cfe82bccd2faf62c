use std::collections::BTreeSet;

use crate::cache::{self, RemoteHoldings, RemoteVerdict, LAST_PREFIX};
use crate::cli::GcArgs;
use crate::engine::{Engine, CACHE_REPOSITORY};
use crate::error::{CliError, ExitStatus};
use crate::image::collect;
use crate::image::store::BlobStore;
use crate::model::Login;
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryError};
use crate::ui::{plural, short, size, Ui};

pub(super) async fn run(args: GcArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    if let Some(reference) = &args.remote {
        return remote(&args, reference, ui).await;
    }
    let engines = crate::front::engines(&args.engines, ui).await?;
    let several = engines.len() > 1;
    let notes = crate::cache::NoteStore::user();
    let mut removed_any = false;
    // What a dry run would remove from each engine: the store is judged as it would be after.
    let mut going = Vec::new();
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
        let unused = crate::observe::unused(engine).await?;
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
        // An entry goes by its tags, the image with the last of them.
        let ids = unused
            .into_iter()
            .filter(|_| args.dry_run)
            .flat_map(|(id, keys)| {
                let tags = keys.into_iter().map(|k| format!("{CACHE_REPOSITORY}:{k}"));
                std::iter::once(id).chain(tags)
            });
        going.push((engine, ids.collect()));
    }
    if let Some(store) = BlobStore::user() {
        // An engine that did not answer may hold any image the records name.
        let all_answered = args.engines.is_empty() || engines.len() == args.engines.len();
        if !all_answered {
            ui.line("the blob store keeps what images may need: an engine is left out");
        }
        removed_any |= blob_store(&args, &store, &going, all_answered).await?;
    }
    if !removed_any {
        ui.line("nothing to remove");
    }
    Ok(ExitStatus::Success)
}

/// Collects the blob store (see `image::collect` for the rule): lists what it would remove
/// with `--dry-run`, else removes it; then one summary line. Returns whether there was any.
/// Unless `all_answered`, every image a record names counts as held.
async fn blob_store<E: Engine>(
    args: &GcArgs,
    store: &BlobStore,
    engines: &[(&E, BTreeSet<String>)],
    all_answered: bool,
) -> Result<bool, CliError> {
    let failed = |source| CliError::Store {
        path: store.root().to_path_buf(),
        source,
    };
    let kinds = crate::execute::STORE_RECORDS;
    let ids = collect::images(store, kinds).map_err(failed)?;
    let held = if all_answered {
        crate::observe::held(engines, &ids).await?
    } else {
        ids
    };
    let policy = collect::Policy {
        keep: args.keep_duration,
        budget: args.keep_storage,
    };
    let now = std::time::SystemTime::now();
    let sweep =
        collect::survey(store, kinds, policy, &|id| held.contains(id), now).map_err(failed)?;
    if sweep.is_empty() {
        return Ok(false);
    }
    let freed = if args.dry_run {
        for (digest, d) in &sweep.blobs {
            println!("would remove blob {digest} ({})", size(d.bytes));
        }
        sweep.size()
    } else {
        sweep.remove().map_err(failed)?
    };
    println!("{}", summary(&freed, store.root(), args.dry_run));
    Ok(true)
}

/// `removed 12 blobs, 3 records and 1 temporary file (1.3 GiB) from the blob store PATH`.
fn summary(freed: &collect::Freed, root: &std::path::Path, dry_run: bool) -> String {
    let parts: Vec<String> = [
        (freed.blobs, "blob", "blobs"),
        (freed.records, "record", "records"),
        (freed.temporary, "temporary file", "temporary files"),
    ]
    .into_iter()
    .filter(|(n, ..)| *n > 0)
    .map(|(n, one, many)| plural(n, one, many))
    .collect();
    let what = match parts.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    format!(
        "{verb} {what} ({}) from the blob store {}",
        size(freed.bytes),
        root.display()
    )
}

/// `--remote-username` with `--remote-password-env`, whose variable must be set.
fn remote_login(args: &GcArgs) -> Result<Option<Login>, CliError> {
    let login = match (&args.remote_username, &args.remote_password_env) {
        (Some(username), Some(password_env)) => Some(Login {
            username: username.clone(),
            password_env: password_env.clone(),
        }),
        _ => None,
    };
    if let Some(l) = &login {
        if !crate::credentials::missing_passwords([l]).is_empty() {
            return Err(CliError::MissingPasswords(vec![l.clone()]));
        }
    }
    Ok(login)
}

/// `gc --remote REF`: deletes the cache tags of `REF` (entries and their signatures) that
/// some pipeline's applies pushed and its newest apply no longer uses (as the index each
/// apply writes under the pipeline's `last-` tag records). Tags no index lists are left
/// alone; a manifest that a kept tag shares (deleting a manifest deletes all its tags) or that
/// an index under any tag lists is kept.
async fn remote(args: &GcArgs, reference: &str, ui: &Ui) -> Result<ExitStatus, CliError> {
    let repo = ImageRef::parse(reference)
        .map_err(|e| CliError::Usage(format!("--remote `{reference}`: {e}")))?;
    if repo.tag.is_some() || repo.digest.is_some() {
        return Err(CliError::Usage(format!(
            "--remote `{reference}` names a tag or digest: give the repository alone"
        )));
    }
    let login = remote_login(args)?;
    let host = repo.registry_host().to_string();
    let creds = crate::credentials::resolve(&host, login.as_ref()).await?;
    let registry = Registry::new(&host, creds.as_ref(), "linux", "amd64");
    let repository = repo.repository();
    let failed = |source: RegistryError| CliError::Registry {
        repository: repository.clone(),
        source,
    };
    let tags = registry.tags(&repository).await.map_err(failed)?;
    let (indexes, held) = holdings(&registry, &repository, &tags)
        .await
        .map_err(failed)?;
    let verdicts = cache::remote_unused(&held);
    let unknown = held.unknown();
    let mut deleted_digests = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for (tag, verdict) in &verdicts {
        let digest = &held.digests[tag];
        let at = format!("{repository}:{tag}");
        match verdict {
            RemoteVerdict::Shared { with } => ui.line(&format!(
                "kept {at}: its manifest is also `{with}`, which is kept"
            )),
            RemoteVerdict::Referenced { by } => {
                ui.line(&format!("kept {at}: the index `{by}` lists its manifest"))
            }
            RemoteVerdict::Delete if args.dry_run => {
                println!("would delete {at} ({})", short(digest))
            }
            RemoteVerdict::Delete => {
                if deleted_digests.insert(digest.clone()) {
                    if let Err(source) = registry.delete(&repository, digest).await {
                        return Err(CliError::Delete {
                            reference: at,
                            host: host.clone(),
                            source,
                        });
                    }
                }
                deleted.insert(tag.clone());
                println!("deleted {at} ({})", short(digest));
            }
        }
    }
    // The indexes forget what is gone.
    for (tag, index) in &indexes {
        if args.dry_run || !index.owned.iter().any(|k| deleted.contains(k)) {
            continue;
        }
        let mut index = index.clone();
        index.owned.retain(|k| !deleted.contains(k));
        registry
            .put_index(&format!("{repository}:{tag}"), &index)
            .await
            .map_err(failed)?;
    }
    if verdicts.is_empty() {
        ui.line(&format!(
            "nothing to delete in `{repository}` ({}, {} of pipelines)",
            plural(tags.len(), "tag", "tags"),
            plural(indexes.len(), "index", "indexes")
        ));
    }
    if unknown > 0 {
        ui.line(&format!(
            "left {} that no pipeline's index lists",
            plural(unknown, "tag", "tags")
        ));
    }
    Ok(ExitStatus::Success)
}

/// How many nested indexes `gc --remote` reads below one tag before it gives up (and keeps
/// everything).
const NESTED_INDEXES: usize = 64;

/// Reads a remote cache repository: the pipelines' indexes (with their tags), every other
/// tag's manifest digest, and every manifest an index under any tag lists (nested indexes
/// too). A tag under the index prefix that holds no index (a user's `last-good`) is a tag
/// like any other. Any manifest it cannot read is an error: nothing is deleted then.
async fn holdings(
    registry: &Registry,
    repository: &str,
    tags: &[String],
) -> Result<(Vec<(String, cache::RemoteIndex)>, RemoteHoldings), RegistryError> {
    let mut indexes = Vec::new();
    let mut held = RemoteHoldings::default();
    for tag in tags {
        let at = format!("{repository}:{tag}");
        if tag.starts_with(LAST_PREFIX) {
            if let Some(index) = registry.index(&at).await? {
                held.indexes.push(index.clone());
                indexes.push((tag.clone(), index));
                continue;
            }
        }
        let Some((digest, mut listed)) = registry.references(&at).await? else {
            continue;
        };
        held.digests.insert(tag.clone(), digest);
        let mut nested = 0;
        while let Some((digest, media_type)) = listed.pop() {
            held.referenced.entry(digest.clone()).or_insert(tag.clone());
            if !media_type.contains("manifest.list") && !media_type.contains("image.index") {
                continue;
            }
            nested += 1;
            if nested > NESTED_INDEXES {
                return Err(RegistryError::Unavailable(format!(
                    "`{at}` nests more than {NESTED_INDEXES} indexes"
                )));
            }
            if let Some((_, more)) = registry
                .references(&format!("{repository}@{digest}"))
                .await?
            {
                listed.extend(more);
            }
        }
    }
    Ok((indexes, held))
}

/// Removes (or, with `dry_run`, lists) the cache mount volumes; one a container uses is kept
/// and said so. Returns whether there was any.
async fn cache_mounts(
    engine: &impl Engine,
    dry_run: bool,
    on: &str,
    ui: &Ui,
) -> Result<bool, CliError> {
    use crate::execute::volumes::{
        LABEL_PATH, LABEL_PIPELINE, LABEL_PLATFORM, MARKER, MARKER_VALUE,
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_summary_names_what_went_and_its_size() {
        let freed = |blobs, records, temporary, bytes| collect::Freed {
            blobs,
            records,
            temporary,
            bytes,
        };
        let root = std::path::Path::new("/c/pipeline/blobs");
        let cases = [
            (
                freed(12, 3, 1, 1_395_864_371),
                false,
                "removed 12 blobs, 3 records and 1 temporary file (1.3 GiB) from the blob store \
                 /c/pipeline/blobs",
            ),
            (
                freed(1, 1, 0, 2048),
                true,
                "would remove 1 blob and 1 record (2.0 KiB) from the blob store /c/pipeline/blobs",
            ),
            (
                freed(0, 2, 0, 300),
                false,
                "removed 2 records (300 B) from the blob store /c/pipeline/blobs",
            ),
            (
                freed(0, 0, 0, 0),
                false,
                "removed nothing (0 B) from the blob store /c/pipeline/blobs",
            ),
        ];
        for (f, dry_run, want) in cases {
            assert_eq!(summary(&f, root, dry_run), want);
        }
    }
}
