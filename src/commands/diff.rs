//! `pipeline diff A B`: what differs between two images the tool wrote (config fields, layer
//! entries and which of their fields), read from the local store.

use std::path::Path;

use crate::cli::DiffArgs;
use crate::error::{CliError, ExitStatus};
use crate::image::store::BlobStore;

/// Run reports are small; anything larger is not one.
const REPORT_LIMIT: u64 = 16 << 20;

pub(super) fn run(args: &DiffArgs) -> Result<ExitStatus, CliError> {
    let store = BlobStore::user()
        .ok_or_else(|| CliError::Usage("no store of images: set XDG_CACHE_HOME or HOME".into()))?;
    let (a, b) = (manifest(&args.a)?, manifest(&args.b)?);
    let lines = crate::image::compare::differences(&store, &a, &b).map_err(|e| {
        CliError::Usage(format!(
            "cannot compare `{a}` and `{b}` (images this user's applies wrote): {e}"
        ))
    })?;
    if lines.is_empty() {
        println!("the same image: {a}");
    }
    for line in lines {
        println!("{line}");
    }
    Ok(ExitStatus::Success)
}

/// The manifest digest `arg` names: itself, or the image of the run report at that path.
fn manifest(arg: &str) -> Result<String, CliError> {
    if arg.starts_with("sha256:") {
        return Ok(arg.to_string());
    }
    let bytes = crate::fsread::read_bounded(Path::new(arg), REPORT_LIMIT)
        .map_err(|e| CliError::Usage(format!("cannot read the run report `{arg}`: {e}")))?;
    let report: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::Usage(format!("`{arg}` is no run report: {e}")))?;
    let empty = Vec::new();
    let images: Vec<&str> = report["pipelines"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|p| p["image"]["manifest_digest"].as_str())
        .collect();
    match images.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => Err(CliError::Usage(format!(
            "the run report `{arg}` names no image the tool wrote \
             (`pipelines[].image.manifest_digest`)"
        ))),
        _ => Err(CliError::Usage(format!(
            "the run report `{arg}` names {} images the tool wrote: give one's digest instead",
            images.len()
        ))),
    }
}
