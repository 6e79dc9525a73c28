//! Hand-run benchmark of the merge queue: entries landed per gate run when each entry is tested
//! alone (`batch = 1`, the baseline) and when entries are tested in batches of 4 and a red batch
//! is bisected, on the same queue in the same run: N approved tickets of the local forge, one of
//! them red once the first has landed (the gate fails when both are in).
//!
//! Run with `cargo bench -p codemill --bench merge_queue` (`BENCH_MERGE_ENTRIES`, default 12).
//! It drives the real binary against the scripted model server on 127.0.0.1; the setup (each
//! ticket's pipeline up to its approval) is not timed, `codemill merge` is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use codemill_testkit::{Match, ModelServer, Reply, Rule, Script, ToolCall};
use common::{codemill, run_ok};
use serde_json::{Value, json};

/// Red when alpha.txt is in and a file asks for no alpha: two changes that pass alone.
const GATE: &str = "[[gates]]\nname = \"together\"\ncommand = [\"sh\", \"-c\", \"if [ -e alpha.txt ] && grep -qs needs-no-alpha *.txt; then exit 1; fi\"]\n";

fn main() {
    let entries: usize = std::env::var("BENCH_MERGE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
        .max(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(ModelServer::start(Script::new(rules(entries))))
        .unwrap();
    println!("merge queue: {entries} approved entries, the third one red on top of the first");
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>18} {:>10}",
        "batch", "gate runs", "merged", "ejected", "entries/gate run", "wall s"
    );
    let mut rows = Vec::new();
    for batch in [1u32, 4] {
        let dir = tempfile::tempdir().unwrap();
        let home = setup(dir.path(), &server.base_url(), entries, batch);
        let keys: Vec<String> = (1..=entries).map(|n| format!("B-{n}")).collect();
        let started = Instant::now();
        let out = codemill(&home)
            .arg("merge")
            .args(&keys)
            .arg("--json")
            .output()
            .unwrap();
        let wall = started.elapsed().as_secs_f64();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let runs = report["gate_runs"].as_u64().unwrap();
        let count = |state: &str| {
            report["outcomes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["state"] == state)
                .count()
        };
        let (merged, ejected) = (count("merged"), count("ejected"));
        assert_eq!(
            (merged, ejected),
            (entries - 1, 1),
            "every entry settled, the red one out"
        );
        let per_run = (merged + ejected) as f64 / runs as f64;
        println!("{batch:>6} {runs:>10} {merged:>8} {ejected:>8} {per_run:>18.2} {wall:>10.2}");
        rows.push((per_run, wall));
    }
    println!(
        "batch 4 / batch 1: {:.2}x entries per gate run, {:.2}x wall time",
        rows[1].0 / rows[0].0,
        rows[1].1 / rows[0].1
    );
}

fn word(n: usize) -> String {
    match n {
        1 => "alpha".into(),
        3 => "gamma".into(),
        n => format!("entry{n}"),
    }
}

/// The scripted engineer: each ticket writes its own file; gamma's asks for no alpha.
fn rules(entries: usize) -> Vec<Rule> {
    let stage = |name: &str, turn: usize| Match {
        first_user_contains: Some(format!("codemill stage: {name}")),
        turn: Some(turn),
        ..Match::default()
    };
    let mut rules = vec![Rule::new(
        "readiness",
        stage("readiness", 0),
        Reply::text("```json\n{\"ready\": true, \"questions\": []}\n```"),
    )];
    for n in 1..=entries {
        let w = word(n);
        let content = if w == "gamma" {
            "needs-no-alpha\n".to_string()
        } else {
            format!("{w}\n")
        };
        rules.push(Rule::new(
            format!("implement {w}"),
            Match {
                contains: Some(format!("Add {w}.")),
                ..stage("implement", 0)
            },
            Reply::Message {
                text: Some("Writing.".into()),
                tool_calls: vec![ToolCall::new(
                    "write_file",
                    json!({"path": format!("{w}.txt"), "content": content}),
                )],
                usage: None,
            },
        ));
    }
    rules.extend([
        Rule::new("research", stage("research", 0), Reply::text("Notes.")),
        Rule::new("plan", stage("plan", 0), Reply::text("Plan: one file.")),
        Rule::new(
            "implement done",
            stage("implement", 1),
            Reply::text("Done."),
        ),
        Rule::new(
            "review",
            stage("review", 0),
            Reply::text("```json\n{\"findings\": []}\n```"),
        ),
    ]);
    rules
}

/// A home with project B on a fresh remote, `entries` tickets run and approved.
fn setup(dir: &Path, model: &str, entries: usize, batch: u32) -> PathBuf {
    let extra = format!("[projects.B.merge_queue]\nbatch = {batch}\n");
    let home = common::home_with_project(dir, model, "B", GATE, &extra);
    for n in 1..=entries {
        let w = word(n);
        run_ok(codemill(&home).args([
            "ticket",
            "add",
            "B",
            "--title",
            &format!("Add {w}"),
            "--body",
            &format!("Add {w}.\n\nAcceptance: the file exists."),
        ]));
        let key = format!("B-{n}");
        run_ok(codemill(&home).args(["run", &key]));
        run_ok(codemill(&home).args(["approve", &key]));
    }
    home
}
