//! The simulator's modules refer to each other one way only.
//!
//! Reads `simulator/src/**/*.rs` and extracts the `crate::<module>` paths of each top-level module
//! (`use` statements and paths in code, comments left out): the graph of top-level modules must
//! have no cycle. Inside the folder modules `cycle/`, `detailed/` and `onnx/`, each submodule may refer only
//! to submodules before it in the order below (through `super::<module>` or
//! `crate::<folder>::<module>`), never to its folder's facade (`mod.rs`).
//!
//! Run it alone with `cargo nextest run --release -p bitfusion-simulator --test module_graph`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The one-way orders inside the folder modules, first to last.
const ORDERS: [(&str, &[&str]); 3] = [
    ("cycle", &["problem", "tiling", "schedule", "timeline", "trace", "dma", "bounds", "flow", "evaluate", "search", "model"]),
    ("detailed", &["data", "datapath", "stepper"]),
    ("onnx", &["proto", "model", "shape", "import"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The file's code without comments (line comments, doc comments and block comments).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if let Some(r) = rest.strip_prefix("'\"'") {
            // A quote as a character literal opens no string.
            out.push_str("' '");
            rest = r;
        } else if rest.starts_with('"') {
            // Skip string literals (they may hold "//").
            let mut end = 1;
            let b = rest.as_bytes();
            while end < b.len() && b[end] != b'"' {
                end += if b[end] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            rest = rest.get(end + 1..).unwrap_or("");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The names that follow `prefix` (e.g. `crate::`) in `code`: one per path, or each top-level name
/// of a `prefix{a, b::c}` group.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        // A whole path segment: `crate::` must not be the tail of e.g. `my_crate::`.
        if code[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        out.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

/// The top-level module a file belongs to (`cycle` for `cycle/model.rs`), None for `lib.rs`.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if first == "lib.rs" { None } else { Some(first.trim_end_matches(".rs").to_string()) }
}

/// A cycle of the graph as `a -> b -> ... -> a`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, graph: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, path: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|x| x == m).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The graph of top-level modules: module -> the modules its files refer to.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src();
    let files = rust_files(&src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for f in &files {
        let Some(m) = top_module(&src, f) else { continue };
        let refs = names_after(&code(&std::fs::read_to_string(f).unwrap()), "crate::");
        let edges = graph.get_mut(&m).unwrap();
        edges.extend(refs.into_iter().filter(|r| *r != m && modules.contains(r)));
    }
    graph
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = module_graph();
    // The graph is not empty: the extraction sees the modules and their references.
    assert!(graph["cycle"].contains("memory") && graph["model"].contains("cycle") && graph["model"].contains("reference"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle in the simulator crate: {}", cycle.join(" -> "));
    }
}

#[test]
fn folder_modules_refer_only_to_earlier_submodules() {
    let src = src();
    for (folder, order) in ORDERS {
        let dir = src.join(folder);
        let mut on_disk: Vec<String> = rust_files(&dir).iter().map(|f| f.file_stem().unwrap().to_str().unwrap().to_string()).collect();
        on_disk.retain(|n| n != "mod");
        on_disk.sort();
        let mut listed: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "{folder}/: the files and the order in tests/module_graph.rs differ");
        for (i, name) in order.iter().enumerate() {
            let text = code(&std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap());
            let mut refs = names_after(&text, "super::");
            refs.extend(names_after(&text, &format!("crate::{folder}::")));
            // `use super::*` in a file's own test module refers to the file itself.
            refs.remove("*");
            for r in refs {
                match order.iter().position(|o| *o == r) {
                    Some(j) if j < i => {}
                    Some(_) => panic!("{folder}/{name}.rs refers to {folder}::{r}, which comes after it in the order {order:?}"),
                    None => panic!("{folder}/{name}.rs refers to {folder}::{r} (the facade or an unknown module): submodules refer only to earlier submodules"),
                }
            }
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    assert_eq!(names_after(&code("use crate::{a::B, c}; // crate::d\nlet x = crate::e::f(\"crate::g\");"), "crate::"), ["a", "c", "e"].iter().map(|s| s.to_string()).collect());
}
