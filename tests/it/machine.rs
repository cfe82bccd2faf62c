//! Output for machines: one document shape per command under `--format json` (validate,
//! plan, errors), the run report and the metadata file, each checked against its JSON Schema
//! in `schemas/` (which must match what the tool generates).

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{output_text, Project};

/// The committed schema of document `name`.
fn schema(name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{name}.schema.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Fails unless `document` is valid under the committed schema `name`.
fn assert_valid(name: &str, document: &Value) {
    let validator = jsonschema::validator_for(&schema(name)).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{document:#}");
}

/// Runs the binary in `p` with an engine that cannot be reached: exit code and stdout as JSON.
fn json_of(p: &Project, args: &[&str]) -> (Option<i32>, Value) {
    let out = p
        .std_cmd(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let document = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is no JSON document ({e}):\n{}", output_text(&out)));
    (out.status.code(), document)
}

const VALID: &str = "[base]\nimage = \"busybox:latest\"\n[[step]]\nrun = \"true\"\n";
const INVALID: &str = "[base]\nimage = \"busybox:latest\"\npul = \"never\"\n";

#[test]
fn the_committed_schemas_are_the_generated_ones() {
    for name in pipeline::DOCUMENTS {
        let generated: Value =
            serde_json::from_str(&pipeline::document_schema(name).unwrap()).unwrap();
        assert_eq!(
            schema(name),
            generated,
            "schemas/{name}.schema.json is stale: `pipeline schema {name} > schemas/{name}.schema.json`"
        );
    }
}

#[test]
fn validate_json_lists_each_file_with_its_located_diagnostics() {
    let p = Project::new();
    p.file("ok.toml", VALID);
    p.file("bad.toml", INVALID);
    let (code, doc) = json_of(&p, &["validate", "--format", "json", "ok.toml"]);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_valid("validate", &doc);
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["files"][0]["file"], "ok.toml");
    assert_eq!(doc["files"][0]["steps"], 1);
    assert!(doc["error"].is_null());

    let (code, doc) = json_of(&p, &["validate", "--format", "json", "ok.toml", "bad.toml"]);
    assert_eq!(code, Some(2), "{doc:#}");
    assert_valid("validate", &doc);
    assert_eq!(doc["valid"], false);
    let d = &doc["files"][0]["diagnostics"][0];
    assert_eq!(doc["files"][0]["file"], "bad.toml", "{doc:#}");
    assert_eq!(d["code"], "unknown-key");
    assert_eq!(d["severity"], "error");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(d["hint"], "did you mean `pull`?");
    assert_eq!(doc["error"]["code"], "invalid");
    assert_eq!(doc["error"]["exit_code"], 2);
}

#[test]
fn errors_under_format_json_are_one_json_document_on_stdout() {
    let p = Project::new();
    p.pipeline(INVALID);
    let (code, doc) = json_of(&p, &["plan", "--format", "json", "pipeline.toml"]);
    assert_eq!(code, Some(2), "{doc:#}");
    assert_valid("error", &doc);
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["error"]["code"], "invalid");
    assert_eq!(doc["error"]["exit_code"], 2);
    assert_eq!(doc["error"]["diagnostics"][0]["code"], "unknown-key");
    // No engine: the error is JSON too.
    p.pipeline(VALID);
    let (code, doc) = json_of(&p, &["plan", "--format", "json", "pipeline.toml"]);
    assert_eq!(code, Some(5), "{doc:#}");
    assert_valid("error", &doc);
    assert_eq!(doc["error"]["code"], "no-engine");
    assert_eq!(doc["error"]["diagnostics"], serde_json::json!([]));
}

#[test]
fn the_report_of_a_refused_or_unreached_run_has_the_one_shape() {
    let p = Project::new();
    for (toml, code, pipelines) in [(INVALID, 2, 0), (VALID, 5, 1)] {
        p.pipeline(toml);
        let out = p
            .std_cmd(&[
                "apply",
                "pipeline.toml",
                "--report",
                "r.json",
                "--metadata-file",
                "m.json",
            ])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", output_text(&out));
        let report: Value =
            serde_json::from_slice(&std::fs::read(p.path().join("r.json")).unwrap()).unwrap();
        assert_valid("report", &report);
        assert_eq!(report["format_version"], 2);
        assert_eq!(report["exit_code"], code);
        assert_eq!(
            report["pipelines"].as_array().unwrap().len(),
            pipelines,
            "{report:#}"
        );
    }
}

#[cfg(feature = "engine-tests")]
mod engine {
    use super::{assert_valid, Value};
    use crate::harness::{busybox_pipeline, output_text, read_json, unique, Project};
    use crate::support::registry::Registry;

    /// One file, one platform: the plan, the report and the metadata file have the shape of
    /// many, stdout has the `image`/`tagged`/`pushed` lines, and the metadata file names
    /// every pushed reference with the digest the registry holds.
    #[test]
    fn one_file_gets_the_documents_of_many_and_the_metadata_names_each_push() {
        let name = unique("machine");
        let reg = Registry::start();
        let repository = format!("{}/machine/{name}", reg.addr);
        let p = Project::new();
        p.pipeline(&busybox_pipeline(
            &name,
            &format!(
                "[[step]]\nrun = \"echo {name} > /m\"\n[commit]\ntags = [\"{name}:1\"]\n\
                 [[publish]]\nrepository = \"{repository}\"\ntags = [\"1\", \"2\"]\n"
            ),
        ));
        let out = p
            .std_cmd(&["plan", "--format", "json", "pipeline.toml"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_valid("plan", &plan);
        assert_eq!(plan["pipelines"][0]["name"], name.as_str());
        let out = p
            .std_cmd(&[
                "apply",
                "pipeline.toml",
                "--report",
                "r.json",
                "--metadata-file",
                "m.json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let report = read_json(&p.path().join("r.json"));
        assert_valid("report", &report);
        let metadata = read_json(&p.path().join("m.json"));
        assert_valid("metadata", &metadata);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = report["pipelines"][0]["image"]["id"].as_str().unwrap();
        assert!(stdout.contains(&format!("image {id}\n")), "{stdout}");
        assert_eq!(metadata["images"][0]["id"], id);
        assert_eq!(metadata["images"][0]["tags"][0], format!("{name}:1"));
        let pushed = metadata["pushed"].as_array().unwrap();
        assert_eq!(pushed.len(), 2, "{metadata:#}");
        for (p, tag) in pushed.iter().zip(["1", "2"]) {
            let digest = reg
                .manifest_digest(&format!("machine/{name}"), tag)
                .unwrap();
            assert_eq!(p["digest"], digest.as_str());
            assert_eq!(p["kind"], "manifest");
            let reference = format!("{repository}:{tag}@{digest}");
            assert_eq!(p["reference"], reference.as_str());
            assert!(
                stdout.contains(&format!("pushed {reference}\n")),
                "{stdout}"
            );
        }
        crate::support::engine::remove_image(&format!("{name}:1"));
    }
}
