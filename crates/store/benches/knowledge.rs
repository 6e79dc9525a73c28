//! Knowledge search benchmark: the 200 documentation sections of the fixture repository
//! (`crates/testkit/fixtures/knowledge/docs-repo`, split as `knowledge ingest` splits them) in a
//! fresh SQLite store, and in a PostgreSQL one too when `CODEMILL_TEST_POSTGRES_URL` names a
//! server (a database is created for the run and dropped after). The 20 written questions of
//! `queries.toml` are searched over and over (five results, as `codemill knowledge search`
//! asks), against reading one entry by id in the same run. Prints the top-3 hit rate, p50, p95
//! and max of each in ms, the ratio of search to reading by id, and whether search p95 is under
//! the 20 ms the project aims for.
//!
//! Run with `cargo bench -p codemill-store --bench knowledge`. Size: `BENCH_ROUNDS` (default
//! 100), each round every question once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use codemill_core::knowledge::{is_knowledge_file, sections};
use codemill_store::{KnowledgeSource, KnowledgeTag, NewKnowledge, Store};
use sqlx::Connection;

const POSTGRES_URL: &str = "CODEMILL_TEST_POSTGRES_URL";
const PROJECT: &str = "BENCH";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/knowledge")
}

/// One section as `knowledge ingest` makes it an entry.
struct Section {
    title: String,
    body: String,
    source: KnowledgeSource,
}

/// The documentation sections of the fixture repository, file by file.
fn fixture_sections() -> Vec<Section> {
    let root = fixture().join("docs-repo");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path
                    .strip_prefix(&root)
                    .unwrap()
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push((name, path));
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for (name, path) in files.iter().filter(|(n, _)| is_knowledge_file(n)) {
        let text = std::fs::read_to_string(path).unwrap();
        for s in sections(name, &text) {
            out.push(Section {
                title: if s.heading == *name {
                    name.clone()
                } else {
                    format!("{name} › {}", s.heading)
                },
                body: s.body,
                source: KnowledgeSource {
                    path: name.clone(),
                    lines: Some((s.first_line, s.last_line)),
                    commit: None,
                    hash: None,
                },
            });
        }
    }
    out
}

/// The written questions: (query, the title of the entry that answers it).
fn questions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fixture().join("queries.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    table["query"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let field = |k: &str| q[k].as_str().unwrap().to_string();
            (
                field("query"),
                format!("{} › {}", field("path"), field("section")),
            )
        })
        .collect()
}

fn pct(ms: &[f64], p: f64) -> f64 {
    let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
    ms[i.min(ms.len() - 1)]
}

fn line(name: &str, ms: &[f64]) -> String {
    format!(
        "{name:<34} p50 {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms",
        pct(ms, 0.5),
        pct(ms, 0.95),
        ms[ms.len() - 1]
    )
}

async fn run(backend: &str, store: &Store, docs: &[Section], questions: &[(String, String)]) {
    let rounds = env_num("BENCH_ROUNDS", 100).max(1);
    let loaded = Instant::now();
    let mut ids = Vec::with_capacity(docs.len());
    for d in docs {
        let row = store
            .add_knowledge(&NewKnowledge {
                project: PROJECT,
                title: &d.title,
                body: &d.body,
                tag: KnowledgeTag::Human,
                sources: std::slice::from_ref(&d.source),
                author: "ingest",
                origin: Some(&d.title),
            })
            .await
            .unwrap();
        ids.push(row.id);
    }
    let load_s = loaded.elapsed().as_secs_f64();

    // Quality, and a warm-up of the store's caches at the same time.
    let mut found = 0;
    for (query, wanted) in questions {
        let hits = store.search_knowledge(PROJECT, query, 3).await.unwrap();
        if hits.iter().any(|h| h.entry.title == *wanted) {
            found += 1;
        }
        store.knowledge(ids[0]).await.unwrap().unwrap();
    }
    println!(
        "{backend}: {} entries loaded in {load_s:.2} s; top-3 hit rate {found}/{}",
        ids.len(),
        questions.len()
    );

    let mut search = Vec::with_capacity(rounds * questions.len());
    let mut read = Vec::with_capacity(rounds * questions.len());
    for round in 0..rounds {
        for (i, (query, _)) in questions.iter().enumerate() {
            let start = Instant::now();
            let hits = store.search_knowledge(PROJECT, query, 5).await.unwrap();
            search.push(start.elapsed().as_secs_f64() * 1000.0);
            assert!(!hits.is_empty(), "{query:?} found nothing");

            let id = ids[(round * questions.len() + i * 7) % ids.len()];
            let start = Instant::now();
            let row = store.knowledge(id).await.unwrap();
            read.push(start.elapsed().as_secs_f64() * 1000.0);
            assert!(row.is_some());
        }
    }
    search.sort_by(f64::total_cmp);
    read.sort_by(f64::total_cmp);
    let under = if pct(&search, 0.95) < 20.0 {
        "yes"
    } else {
        "NO"
    };
    println!(
        "  {}  ×{:.1} of reading by id · p95 < 20 ms: {under}",
        line(
            &format!("search ({} questions × {rounds})", questions.len()),
            &search
        ),
        pct(&search, 0.5) / pct(&read, 0.5)
    );
    println!("  {}", line("read one entry by id (baseline)", &read));
}

/// `postgres://user:pw@host:port/db?params` with another database.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

async fn admin(url: &str, sql: String) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

fn main() {
    let docs = fixture_sections();
    let questions = questions();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("codemill.db")).await.unwrap();
        run("SQLite", &store, &docs, &questions).await;

        match std::env::var(POSTGRES_URL) {
            Ok(admin_url) => {
                let name = format!("codemill_b_{}", uuid::Uuid::new_v4().simple());
                admin(&admin_url, format!("CREATE DATABASE {name}")).await;
                let store = Store::connect_postgres(&with_database(&admin_url, &name))
                    .await
                    .unwrap();
                run("PostgreSQL", &store, &docs, &questions).await;
                drop(store);
                admin(
                    &admin_url,
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await;
            }
            Err(_) => println!("PostgreSQL: skipped ({POSTGRES_URL} is not set)"),
        }
    });
}
