//! Documentation cannot rot: every TOML block in README.md is a valid pipeline, and the
//! manual page and completion scripts come from the binary itself.

use crate::harness::{output_text, Project};

#[test]
fn every_toml_block_in_the_readme_validates() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(!blocks.is_empty(), "README.md has no TOML block");
    for block in blocks {
        let project = Project::new();
        project.file("files/vimrc", "set number\n");
        // What the `extends` example extends.
        project.file(
            "common.toml",
            "[vars]\nregistry = \"localhost:5000\"\n[base]\nimage = \"debian:bookworm\"\n",
        );
        // A block with a context one level up lives in a folder below its sources.
        let file = if block.starts_with("context = \"..\"") {
            "images/pipeline.toml"
        } else {
            "pipeline.toml"
        };
        project.file(file, block);
        let out = project.cmd(&["validate", file]).output().unwrap();
        assert!(
            out.status.success(),
            "README block does not validate:\n{block}\n{}",
            output_text(&out)
        );
    }
}

#[test]
fn the_binary_prints_its_manual_page_and_completion_scripts() {
    let project = Project::new();
    for (args, expect) in [
        (&["man"][..], ".TH pipeline 1"),
        (&["man", "plan"][..], ".TH pipeline-plan 1"),
        (&["completions", "bash"][..], "_pipeline()"),
        (&["completions", "zsh"][..], "#compdef pipeline"),
        (&["completions", "fish"][..], "complete -c pipeline"),
    ] {
        let out = project.cmd(args).output().unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {text}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(expect),
            "{args:?}: no {expect:?} in {text}"
        );
    }
    let out = project.cmd(&["man", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}
