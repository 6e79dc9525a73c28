//! Hand-run benchmark of a split ticket: wall time from queueing a ticket whose plan is a
//! four-node graph (A; B and C after A; D after B and C) until its stack is proposed, with one
//! worker loop (the baseline) and with two, in the same run. Each sub-task's implement step
//! takes a scripted model `BENCH_SPLIT_AGENT_MS` (default 1500) to answer, as a real agent would
//! spend its time waiting on a model, so the two independent sub-tasks can overlap.
//!
//! Run with `cargo bench -p codemill --bench subtasks`. It drives the real binary (`codemill
//! worker --concurrency N`) against the scripted model server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use codemill_testkit::{Match, ModelServer, Reply, Rule, Script, ToolCall};
use common::{codemill, run_ok};
use serde_json::{Value, json};

const GATE: &str = "[[gates]]\nname = \"tree\"\ncommand = [\"test\", \"-d\", \".\"]\n";
const GRAPH: &str = "```json\n{\"subtasks\": [\n\
 {\"id\": \"A\", \"title\": \"Part A\", \"goal\": \"Goal-A\", \"criteria\": [\"a\"], \"files\": [\"a.txt\"]},\n\
 {\"id\": \"B\", \"title\": \"Part B\", \"goal\": \"Goal-B\", \"criteria\": [\"b\"], \"files\": [\"b.txt\"], \"depends_on\": [\"A\"]},\n\
 {\"id\": \"C\", \"title\": \"Part C\", \"goal\": \"Goal-C\", \"criteria\": [\"c\"], \"files\": [\"c.txt\"], \"depends_on\": [\"A\"]},\n\
 {\"id\": \"D\", \"title\": \"Part D\", \"goal\": \"Goal-D\", \"criteria\": [\"d\"], \"files\": [\"d.txt\"], \"depends_on\": [\"B\", \"C\"]}\n\
]}\n```\n";

fn main() {
    let agent_ms: u64 = std::env::var("BENCH_SPLIT_AGENT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(ModelServer::start(Script::new(rules(agent_ms))))
        .unwrap();
    println!(
        "split ticket: 4 sub-tasks (A; B, C after A; D after B, C), implement {agent_ms} ms each"
    );
    println!("{:>8} {:>10} {:>12}", "workers", "wall s", "model calls");
    let mut walls = Vec::new();
    for loops in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let home = setup(dir.path(), &server.base_url());
        let calls_before = server.requests().len();
        let started = Instant::now();
        run_ok(codemill(&home).args(["enqueue", "P-1"]));
        let mut worker = codemill(&home)
            .args([
                "worker",
                "--concurrency",
                &loops.to_string(),
                "--poll-ms",
                "50",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            let show: Value =
                serde_json::from_str(&run_ok(codemill(&home).args(["show", "P-1", "--json"])))
                    .unwrap();
            let state = show["job"]["state"].as_str().unwrap_or("").to_string();
            if state == "awaiting_approval" {
                assert_eq!(show["job"]["stack"].as_array().map(Vec::len), Some(4));
                break;
            }
            assert!(
                !["needs_attention", "rejected", "cancelled"].contains(&state.as_str()),
                "{show}"
            );
            assert!(started.elapsed() < Duration::from_secs(600), "{show}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let wall = started.elapsed().as_secs_f64();
        let _ = worker.kill();
        let _ = worker.wait();
        let calls = server.requests().len() - calls_before;
        println!("{loops:>8} {wall:>10.2} {calls:>12}");
        walls.push(wall);
    }
    println!(
        "2 workers / 1 worker: {:.2}x wall time ({:.2}x faster)",
        walls[1] / walls[0],
        walls[0] / walls[1]
    );
}

/// The planner splits the ticket; each sub-task's engineer takes `agent_ms` to write its file.
fn rules(agent_ms: u64) -> Vec<Rule> {
    let stage = |name: &str, turn: usize| Match {
        first_user_contains: Some(format!("codemill stage: {name}")),
        turn: Some(turn),
        ..Match::default()
    };
    let mut rules = vec![
        Rule::new(
            "readiness",
            stage("readiness", 0),
            Reply::text("```json\n{\"ready\": true, \"questions\": []}\n```"),
        ),
        Rule::new("research", stage("research", 0), Reply::text("Notes.")),
        Rule::new(
            "plan: sub-task",
            Match {
                contains: Some("Sub-task ".into()),
                ..stage("plan", 0)
            },
            Reply::text("Plan: one file."),
        ),
        Rule::new("plan: split", stage("plan", 0), Reply::text(GRAPH)),
    ];
    for part in ["A", "B", "C", "D"] {
        rules.push(
            Rule::new(
                format!("implement {part}"),
                Match {
                    contains: Some(format!("Goal-{part}")),
                    ..stage("implement", 0)
                },
                Reply::Message {
                    text: Some("Writing.".into()),
                    tool_calls: vec![ToolCall::new(
                        "write_file",
                        json!({"path": format!("{}.txt", part.to_lowercase()), "content": "x\n"}),
                    )],
                    usage: None,
                },
            )
            .after(Duration::from_millis(agent_ms)),
        );
    }
    rules.extend([
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

/// A home with project P on a fresh remote and ticket P-1.
fn setup(dir: &Path, model: &str) -> PathBuf {
    let home = common::home_with_project(dir, model, "P", GATE, "");
    run_ok(codemill(&home).args([
        "ticket",
        "add",
        "P",
        "--title",
        "Build four parts",
        "--body",
        "Four parts.\n\nAcceptance: all four files exist.",
    ]));
    home
}
