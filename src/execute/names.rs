//! The names a run gives what it creates in an engine: its containers (`pipeline-NAME-RUNID`)
//! and the engine-safe form of a pipeline's name.

/// An id for one run: microseconds and the process id, in hex.
pub(crate) fn run_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "{:x}{:04x}",
        micros & 0xff_ffff_ffff,
        std::process::id() & 0xffff
    )
}

/// How the names of build containers start.
pub(crate) const RUN_PREFIX: &str = "pipeline-";

/// The name prefix of a run's containers: `pipeline-<pipeline name>-<run id>`, the pipeline
/// name reduced to what a container name may hold.
pub(crate) fn run_name(pipeline: &str, run_id: &str) -> String {
    format!("{RUN_PREFIX}{}-{run_id}", engine_name(pipeline))
}

/// A pipeline name reduced to what the engine's names (containers, volumes) may hold: at most
/// 40 letters, digits, `_`, `.` and `-`, others replaced by `-`; `unnamed` when empty.
pub(crate) fn engine_name(pipeline: &str) -> String {
    let safe: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if safe.is_empty() {
        "unnamed".to_string()
    } else {
        safe
    }
}
