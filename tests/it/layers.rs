//! The modules of `src/` import each other without cycles, and the layers that describe the
//! file (config, diag, model, reference) know nothing of the async runtime, the engine client
//! or anything above them. Read from the source text: every `crate::NAME` path (also inside
//! `use crate::{...}` groups) is an import of the top-level module NAME.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules it imports -> the files that import them.
type Imports = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The modules that describe the pipeline file: pure, whatever runs it.
const PURE: [&str; 4] = ["config", "diag", "model", "reference"];

/// What the pure modules (and everything they import) must never import.
const ABOVE_PURE: [&str; 7] = [
    "engine", "execute", "schedule", "commands", "ui", "observe", "front",
];

/// Crates the pure modules must not use.
const IMPURE_CRATES: [&str; 2] = ["tokio", "bollard"];

#[test]
fn the_modules_of_src_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (imports, _) = read_tree(&src);
    assert!(imports.len() > 10, "too few modules read: {imports:?}");
    if let Some(cycle) = find_cycle(&imports) {
        panic!("{}", describe(&cycle, &imports));
    }
}

#[test]
fn the_file_layers_know_nothing_of_the_runtime_or_the_layers_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (imports, crates) = read_tree(&src);
    let problems = impurities(&imports, &crates);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_cycle_in_a_fixture_tree_is_found_and_named_with_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod alpha;\nmod beta;\nmod gamma;\nmod delta;\n");
    write(
        "alpha.rs",
        "use crate::beta::Thing;\n// crate::delta in a comment is no import\n",
    );
    write("beta/mod.rs", "mod inner;\n");
    write(
        "beta/inner.rs",
        "use crate::{\n    delta,\n    gamma::{self, Other},\n};\n",
    );
    write(
        "gamma.rs",
        "/// [`crate::beta`]\nfn f() { crate::alpha::g(); }\n",
    );
    write("delta.rs", "fn f() -> &'static str { \"crate::alpha\" }\n");
    let (imports, _) = read_tree(dir.path());
    let edges = |m: &str| -> Vec<&str> { imports[m].keys().map(String::as_str).collect() };
    assert_eq!(edges("alpha"), ["beta"]);
    assert_eq!(edges("beta"), ["delta", "gamma"]);
    assert_eq!(edges("gamma"), ["alpha"]);
    assert!(edges("delta").is_empty(), "a string is no import");
    let cycle = find_cycle(&imports).expect("a cycle");
    assert_eq!(cycle, ["alpha", "beta", "gamma", "alpha"]);
    let text = describe(&cycle, &imports);
    assert!(text.contains("alpha -> beta -> gamma -> alpha"), "{text}");
    assert!(text.contains("beta -> gamma (beta/inner.rs)"), "{text}");
    // Without the closing edge, no cycle.
    write("gamma.rs", "fn f() {}\n");
    let (imports, _) = read_tree(dir.path());
    assert_eq!(find_cycle(&imports), None);
}

#[test]
fn a_pure_layer_that_reaches_the_runtime_in_a_fixture_tree_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "");
    write("model.rs", "use crate::helpers::x;\n");
    write("helpers.rs", "use crate::engine::Engine;\n");
    write("engine/mod.rs", "");
    write(
        "config/mod.rs",
        "async fn f() { tokio::task::yield_now().await }\n",
    );
    write("diag.rs", "");
    let (imports, crates) = read_tree(dir.path());
    let problems = impurities(&imports, &crates).join("\n");
    assert!(
        problems.contains("`model` reaches `engine` through model -> helpers -> engine"),
        "{problems}"
    );
    assert!(
        problems.contains("`config` uses `tokio` (config/mod.rs)"),
        "{problems}"
    );
}

/// Reads every `.rs` file under `src`: the imports between top-level modules, and the external
/// crates each top-level module names (by file).
fn read_tree(src: &Path) -> (Imports, Imports) {
    let mut files = Vec::new();
    collect(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|rel| top_module(rel)).collect();
    let mut imports = Imports::new();
    let mut crates = Imports::new();
    for rel in &files {
        let Some(module) = top_module(rel) else {
            continue;
        };
        let text = code_only(&std::fs::read_to_string(src.join(rel)).unwrap());
        let entry = imports.entry(module.clone()).or_default();
        for target in crate_paths(&text) {
            if target != module && modules.contains(&target) {
                entry.entry(target).or_default().insert(rel.clone());
            }
        }
        for name in IMPURE_CRATES {
            if names_crate(&text, name) {
                crates
                    .entry(module.clone())
                    .or_default()
                    .entry(name.to_string())
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    (imports, crates)
}

/// Every `.rs` file below `dir`, as a path relative to `root` with `/` separators.
fn collect(dir: &Path, out: &mut Vec<String>) {
    let root = dir.to_path_buf();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path.strip_prefix(&root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
}

/// The top-level module a file belongs to (`engine/docker.rs` -> `engine`); `None` for the
/// crate root.
fn top_module(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The text without comments and without the contents of string and char literals, so that
/// neither documentation nor messages count as imports.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'#' | b'"')) && !ident_before(b, i) => {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[open + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| open + 1 + p + close.len());
                out.push_str("\"\"");
                i = end;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                i += 1;
            }
            // A char literal ('"', '\''), not a lifetime ('a).
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                out.push_str("' '");
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// The first segment after every `crate::`, and every item of a `crate::{...}` group.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let boundary = !ident_before(rest.as_bytes(), at);
        rest = &rest[at + "crate::".len()..];
        if !boundary {
            continue;
        }
        let after = rest.trim_start();
        if let Some(group) = after.strip_prefix('{') {
            // Items at depth 0 of the group: `a`, `b::{c, d}`, `e as f`.
            let mut depth = 0usize;
            let mut items = vec![String::new()];
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(String::new()),
                    _ => {}
                }
                if let Some(item) = items.last_mut() {
                    item.push(c);
                }
            }
            for item in items {
                let word: String = item
                    .trim_start_matches([',', ' ', '\n', '\t', '\r'])
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !word.is_empty() {
                    out.insert(word);
                }
            }
        } else {
            let word: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() {
                out.insert(word);
            }
        }
    }
    out
}

/// Whether the code names the external crate `name` (`use name::...`, `name::path`).
fn names_crate(code: &str, name: &str) -> bool {
    let pattern = format!("{name}::");
    code.match_indices(&pattern).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        // `crate::tokio` or `x::tokio` would be a module of ours or another path.
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

/// A cycle of imports, as module names with the first repeated at the end.
fn find_cycle(imports: &Imports) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        m: &str,
        imports: &Imports,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(m.to_string(), Mark::Open);
        path.push(m.to_string());
        for next in imports.get(m).into_iter().flat_map(BTreeMap::keys) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, imports, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in imports.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(m, imports, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The cycle and, for each of its imports, the files that make it.
fn describe(cycle: &[String], imports: &Imports) -> String {
    let mut text = format!(
        "modules import each other in a cycle: {}",
        cycle.join(" -> ")
    );
    for pair in cycle.windows(2) {
        let files: Vec<&str> = imports[&pair[0]][&pair[1]]
            .iter()
            .map(String::as_str)
            .collect();
        text.push_str(&format!(
            "\n  {} -> {} ({})",
            pair[0],
            pair[1],
            files.join(", ")
        ));
    }
    text
}

/// What the pure modules (and the modules they import, transitively) must not reach.
fn impurities(imports: &Imports, crates: &Imports) -> Vec<String> {
    let mut problems = Vec::new();
    for root in PURE {
        // Breadth first, remembering how each module was reached.
        let mut via: BTreeMap<String, Vec<String>> = BTreeMap::new();
        via.insert(root.to_string(), vec![root.to_string()]);
        let mut queue = vec![root.to_string()];
        while let Some(m) = queue.first().cloned() {
            queue.remove(0);
            for next in imports.get(&m).into_iter().flat_map(BTreeMap::keys) {
                if !via.contains_key(next) {
                    let mut path = via[&m].clone();
                    path.push(next.clone());
                    via.insert(next.clone(), path);
                    queue.push(next.clone());
                }
            }
        }
        for (m, path) in &via {
            if ABOVE_PURE.contains(&m.as_str()) {
                problems.push(format!(
                    "`{root}` reaches `{m}` through {}",
                    path.join(" -> ")
                ));
            }
            for (name, files) in crates.get(m).into_iter().flatten() {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                problems.push(format!(
                    "`{m}` uses `{name}` ({}){}",
                    files.join(", "),
                    if m == root {
                        String::new()
                    } else {
                        format!(", reached from `{root}` through {}", path.join(" -> "))
                    }
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}
