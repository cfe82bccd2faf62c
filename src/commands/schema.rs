use crate::cli::Document;
use crate::config::raw::PipelineFile;
use crate::error::ExitStatus;
use crate::report;

/// The JSON Schema of the pipeline file format, as committed in `schemas/pipeline.schema.json`.
pub fn schema_json() -> String {
    pretty(&schemars::schema_for!(PipelineFile))
}

/// The documents for machines, by the name of their schema in `schemas/` (`NAME.schema.json`).
pub const DOCUMENTS: [&str; 5] = ["report", "metadata", "plan", "validate", "error"];

/// The JSON Schema of the document `name` (one of [`DOCUMENTS`]), as committed in
/// `schemas/NAME.schema.json`.
pub fn document_schema(name: &str) -> Option<String> {
    let schema = match name {
        "report" => schemars::schema_for!(report::RunReport),
        "metadata" => schemars::schema_for!(report::Metadata),
        "plan" => super::plan::document_schema(),
        "validate" => schemars::schema_for!(report::ValidateDocument),
        "error" => schemars::schema_for!(report::ErrorDocument),
        _ => return None,
    };
    Some(pretty(&schema))
}

fn pretty(schema: &schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

pub(super) fn run(document: Document) -> ExitStatus {
    let name = match document {
        Document::Pipeline => {
            print!("{}", schema_json());
            return ExitStatus::Success;
        }
        Document::Report => "report",
        Document::Metadata => "metadata",
        Document::Plan => "plan",
        Document::Validate => "validate",
        Document::Error => "error",
    };
    print!("{}", document_schema(name).unwrap_or_default());
    ExitStatus::Success
}
