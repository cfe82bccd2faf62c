use crate::config::raw::PipelineFile;
use crate::exit;

/// The JSON Schema of the pipeline file format, as committed in `schemas/pipeline.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(PipelineFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

pub fn run() -> u8 {
    print!("{}", schema_json());
    exit::OK
}
