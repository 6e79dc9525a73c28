//! Knowledge search quality: the documentation of a fictional web service (200 sections, in
//! `crates/testkit/fixtures/knowledge/docs-repo`) is pushed to the project's repository and
//! ingested, and each of the 20 questions of `queries.toml`, written the way an agent asks them,
//! must find the section that answers it among the first three results for at least 18 of them.

use std::path::{Path, PathBuf};

use codemill_core::knowledge::{is_knowledge_file, sections};

use super::harness::{Env, HELLO_GATE, engineer};
use super::knowledge::push_docs;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/knowledge")
}

/// Every file below `root` as (path relative to `root` with `/` separators, text), sorted.
fn files_below(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path.strip_prefix(root).unwrap();
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_questions_find_their_section_in_the_top_three() {
    let docs = files_below(&fixture().join("docs-repo"));
    let counted: usize = docs
        .iter()
        .filter(|(path, _)| is_knowledge_file(path))
        .map(|(path, text)| sections(path, text).len())
        .sum();
    assert_eq!(counted, 200, "sections in the fixture's documentation");

    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let files: Vec<(&str, Option<&str>)> = docs
        .iter()
        .map(|(path, text)| (path.as_str(), Some(text.as_str())))
        .collect();
    push_docs(&env, &files);
    let report = env.json(&["knowledge", "ingest", "P", "--json"]);
    assert_eq!(report["added"], 200, "{report}");
    let all = env.json(&["knowledge", "list", "P", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 200);

    let queries: toml::Table =
        toml::from_str(&std::fs::read_to_string(fixture().join("queries.toml")).unwrap()).unwrap();
    let queries = queries["query"].as_array().unwrap();
    assert_eq!(queries.len(), 20);
    let mut found = 0;
    let mut misses = Vec::new();
    for q in queries {
        let text = |key: &str| q[key].as_str().unwrap().to_string();
        let (query, wanted) = (
            text("query"),
            format!("{} › {}", text("path"), text("section")),
        );
        assert!(
            all.as_array().unwrap().iter().any(|k| k["title"] == wanted),
            "{query:?} expects {wanted:?}, which is no entry"
        );
        let hits = env.json(&["knowledge", "search", "P", &query, "--limit", "3", "--json"]);
        let titles: Vec<String> = hits
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["entry"]["title"].as_str().unwrap().to_string())
            .collect();
        if titles.contains(&wanted) {
            found += 1;
        } else {
            misses.push((query, wanted, titles));
        }
    }
    println!(
        "knowledge search: top-3 hit rate {found}/{} ({}%)",
        queries.len(),
        found * 100 / queries.len()
    );
    for (query, wanted, titles) in &misses {
        println!("  missed {query:?}: wanted {wanted:?}, got {titles:?}");
    }
    assert!(found >= 18, "top-3 hit rate {found}/{}", queries.len());
}
