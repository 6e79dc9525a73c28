//! The runner's modules import each other in layers: no module reaches one that reaches it
//! back, so each part can be built and tested without the engine above it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` with the other top-level modules its files name as
/// `crate::<module>` (tests left out: they may reach anything).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".rs"))
        else {
            continue;
        };
        if matches!(name, "lib" | "testing" | "layers") {
            continue;
        }
        let mut files = vec![path.clone()];
        let dir = src.join(name);
        if dir.is_dir() {
            for sub in std::fs::read_dir(&dir).unwrap() {
                let sub = sub.unwrap().path();
                if sub.file_name().is_some_and(|n| n != "tests.rs") {
                    files.push(sub);
                }
            }
        }
        let mut uses = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // Code before a file's test module only.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !module.is_empty() && module != name {
                    uses.insert(module);
                }
            }
            // `use crate::{a, b}` groups.
            for (i, _) in code.match_indices("use crate::{") {
                let group = &code[i + "use crate::{".len()..];
                let group = &group[..group.find('}').unwrap_or(0)];
                for module in group.split(',').map(str::trim) {
                    let module = module.split("::").next().unwrap_or("");
                    if !module.is_empty() && module != name {
                        uses.insert(module.to_string());
                    }
                }
            }
        }
        graph.insert(name.to_string(), uses);
    }
    graph
}

/// A cycle through `from`, as the modules on it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == from {
                let mut found = path.clone();
                found.push(next.clone());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_two_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    assert!(graph["engine"].contains("workspace"), "{graph:?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_parts_never_reach_the_engine() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    for part in ["workspace", "agents", "announcer", "gates", "guard"] {
        for above in ["engine", "worker", "foreground"] {
            assert!(
                !graph[part].contains(above),
                "{part} imports {above}: {:?}",
                graph[part]
            );
        }
    }
}
