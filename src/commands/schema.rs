use crate::config::raw::PipelineFile;
use crate::error::ExitStatus;

/// The JSON Schema of the pipeline file format, as committed in `schemas/pipeline.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(PipelineFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

pub(super) fn run() -> ExitStatus {
    print!("{}", schema_json());
    ExitStatus::Success
}
