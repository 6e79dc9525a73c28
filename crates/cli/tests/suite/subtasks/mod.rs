//! A ticket split into a graph of sub-tasks: the plan's graph becomes one job per sub-task on
//! linked tickets, independent ones run at the same time under two worker loops, the parent's
//! proposal is the stack of their commits, approving it opens one PR per sub-task based on the
//! one below, and the merge queue lands the stack on main in order.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use codemill_testkit::{Match, Reply, Rule};
use serde_json::Value;

use super::harness::{Env, KEY_VAR, at_turn, ready, write_call};

mod faults;
mod github;

/// Always green: the sub-tasks' files are checked by review, not by a gate.
pub(super) const GATE: &str = "[[gates]]\nname = \"tree\"\ncommand = [\"test\", \"-d\", \".\"]\n";

/// A; B and C after A; D after B and C.
pub(super) const GRAPH: &str = "Plan: four parts, B and C independent.\n\n```json\n{\"subtasks\": [\n\
 {\"id\": \"A\", \"title\": \"Part A\", \"goal\": \"Goal-A: write a.txt.\", \"criteria\": [\"a.txt exists\"], \"files\": [\"a.txt\"], \"depends_on\": []},\n\
 {\"id\": \"B\", \"title\": \"Part B\", \"goal\": \"Goal-B: write b.txt.\", \"criteria\": [\"b.txt exists\"], \"files\": [\"b.txt\"], \"depends_on\": [\"A\"]},\n\
 {\"id\": \"C\", \"title\": \"Part C\", \"goal\": \"Goal-C: write c.txt.\", \"criteria\": [\"c.txt exists\"], \"files\": [\"c.txt\"], \"depends_on\": [\"A\"]},\n\
 {\"id\": \"D\", \"title\": \"Part D\", \"goal\": \"Goal-D: write d.txt.\", \"criteria\": [\"d.txt exists\"], \"files\": [\"d.txt\", \"a.txt\"], \"depends_on\": [\"B\", \"C\"]}\n\
]}\n```\n";

/// The planner splits the parent; each sub-task's engineer writes its own file (B and C
/// slowly, so two workers overlap them); D also extends a.txt, which only works on top of A.
pub(super) fn rules(graph: &str) -> Vec<Rule> {
    let mut rules = vec![
        ready(),
        Rule::new("research", at_turn("research", 0), Reply::text("Notes.")),
        Rule::new(
            "plan: a sub-task",
            Match {
                contains: Some("Sub-task ".into()),
                ..at_turn("plan", 0)
            },
            Reply::text("Plan: write the one file."),
        ),
        Rule::new("plan: split", at_turn("plan", 0), Reply::text(graph)),
    ];
    for part in ["A", "B", "C", "D"] {
        let lower = part.to_lowercase();
        let content = if part == "D" {
            "a\nand d\n".to_string()
        } else {
            format!("{lower}\n")
        };
        let file = if part == "D" { "a.txt" } else { "" };
        let mut write = Rule::new(
            format!("implement {part}: write"),
            Match {
                contains: Some(format!("Goal-{part}")),
                ..at_turn("implement", 0)
            },
            if part == "D" {
                Reply::Message {
                    text: Some("Writing.".into()),
                    tool_calls: vec![
                        codemill_testkit::ToolCall::new(
                            "write_file",
                            serde_json::json!({"path": "d.txt", "content": "d\n"}),
                        ),
                        codemill_testkit::ToolCall::new(
                            "write_file",
                            serde_json::json!({"path": file, "content": content}),
                        ),
                    ],
                    usage: None,
                }
            } else {
                write_call(&format!("{lower}.txt"), &content)
            },
        );
        if part == "B" || part == "C" {
            write = write.after(Duration::from_millis(2500));
        }
        rules.push(write);
    }
    rules.extend([
        Rule::new(
            "implement: done",
            at_turn("implement", 1),
            Reply::text("Wrote the file."),
        ),
        Rule::new(
            "review",
            at_turn("review", 0),
            Reply::text("```json\n{\"findings\": []}\n```"),
        ),
    ]);
    rules
}

/// [`rules`] for `graph`, plus a fix round that writes `path` when the fix brief (a person's
/// reason or review comment) says `asked`.
fn fixing(graph: &str, asked: &str, path: &str, content: &str) -> Vec<Rule> {
    let mut rules = vec![
        Rule::new(
            "fix: write",
            Match {
                last_contains: Some(asked.into()),
                ..Match::default()
            },
            write_call(path, content),
        ),
        Rule::new(
            "fix: done",
            Match {
                contains: Some(asked.into()),
                ..Match::default()
            },
            Reply::text(format!("Added {path}.")),
        ),
    ];
    rules.extend(self::rules(graph));
    rules
}

/// `codemill worker` with `loops` work loops on `env`'s home, until killed.
pub(super) fn workers(env: &Env, loops: usize) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .arg("--home")
        .arg(&env.home)
        .args([
            "worker",
            "--concurrency",
            &loops.to_string(),
            "--poll-ms",
            "100",
            "--retry-secs",
            "0",
        ])
        .env(KEY_VAR, "test-key-123")
        .env_remove("CODEMILL_HOME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until `key`'s job is `want`; a stopped job fails the test with its state.
pub(super) fn wait_for(env: &Env, key: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let v = env.json(&["show", key, "--json"]);
        let state = v["job"]["state"].as_str().unwrap_or("").to_string();
        if state == want {
            return v;
        }
        assert!(
            !["needs_attention", "rejected", "cancelled", "needs_input"].contains(&state.as_str()),
            "{key} stopped: {}",
            serde_json::to_string_pretty(&v["job"]).unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "{key} stuck in {state}: {}",
            serde_json::to_string_pretty(&v["job"]).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn at(entry: &Value) -> DateTime<Utc> {
    entry["at"].as_str().unwrap().parse().unwrap()
}

/// When the implement step of `key`'s job started and ended, from its journal.
fn implement_span(env: &Env, key: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let v = env.json(&["show", key, "--json"]);
    let timeline = v["timeline"].as_array().unwrap();
    let start = timeline
        .iter()
        .find(|e| e["event"]["effect"] == "agent:implement:0")
        .unwrap_or_else(|| panic!("{key} never started implement"));
    let end = timeline
        .iter()
        .find(|e| e["event"]["type"] == "agent_finished" && e["event"]["stage"] == "implement")
        .unwrap_or_else(|| panic!("{key} never finished implement"));
    (at(start), at(end))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_node_graph_runs_in_parallel_and_lands_as_a_stack() {
    let env = Env::new(rules(GRAPH), GATE, "").await;
    env.ok(&["enqueue", "P-1"]);
    let mut running = workers(&env, 2);
    let parent = wait_for(&env, "P-1", "awaiting_approval");
    let _ = running.kill();
    let _ = running.wait();

    // The graph became four linked sub-task tickets, each its own job.
    let children = parent["job"]["children"].as_array().unwrap().clone();
    let child = |id: &str| -> String {
        children
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no sub-task {id}: {children:?}"))["ticket"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(children.len(), 4, "{children:?}");
    for c in &children {
        assert_eq!(c["result"]["result"], "ready", "{c}");
    }

    // B and C ran at the same time: their implement steps overlap in their journals.
    let (b0, b1) = implement_span(&env, &child("B"));
    let (c0, c1) = implement_span(&env, &child("C"));
    assert!(
        b0 < c1 && c0 < b1,
        "B {b0}..{b1} and C {c0}..{c1} did not overlap"
    );
    // D started only after both were ready.
    let (d0, _) = implement_span(&env, &child("D"));
    assert!(d0 > b1 && d0 > c1, "D started at {d0}, before B or C ended");

    // The proposal is a four-commit stack in dependency order, each on the one below.
    let stack = parent["job"]["stack"].as_array().unwrap().clone();
    let ids: Vec<&str> = stack.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A", "B", "C", "D"]);
    assert_eq!(stack[0]["base"], "main");
    for i in 1..4 {
        assert_eq!(stack[i]["base"], stack[i - 1]["branch"], "{stack:?}");
    }
    assert_eq!(stack[0]["branch"], "codemill/P-1/1-part-a");
    assert_eq!(
        parent["job"]["commit"], stack[3]["commit"],
        "the proposal is the top of the stack"
    );
    // The proposal counts what the sub-jobs spent too.
    let own = parent["job"]["cost_usd"].as_f64().unwrap();
    let children_cost: f64 = children
        .iter()
        .map(|c| {
            env.json(&["show", c["ticket"].as_str().unwrap(), "--json"])["job"]["cost_usd"]
                .as_f64()
                .unwrap()
        })
        .sum();
    let note = env.json(&["ticket", "show", "P-1", "--json"]).to_string();
    assert!(
        note.contains(&format!("${:.4}", own + children_cost)),
        "the proposal note shows {own} + {children_cost}: {note}"
    );
    let shown = env.ok(&["show", "P-1"]);
    assert!(
        shown.contains("Plan: 4 sub-tasks") && shown.contains("stack 4."),
        "{shown}"
    );
    // The plan note drew the graph on the ticket.
    let comments = env.json(&["ticket", "show", "P-1", "--json"]);
    assert!(
        comments.to_string().contains("Plan: 4 sub-tasks"),
        "{comments}"
    );

    // A sub-task is decided on its parent's stack, not alone.
    let (code, _, stderr) = env.run(&["approve", &child("B")]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("approve P-1 instead"), "{stderr}");

    // Approving the parent pushes four branches and records four PRs, each on the one below.
    env.ok(&["approve", "P-1"]);
    for (i, entry) in stack.iter().enumerate() {
        let branch = entry["branch"].as_str().unwrap();
        assert_eq!(
            env.remote_branch(branch).as_deref(),
            entry["commit"].as_str(),
            "{branch}"
        );
        if i > 0 {
            let parent_commit = env.remote_git(&["rev-parse", &format!("{branch}^")]);
            assert_eq!(
                parent_commit.trim(),
                stack[i - 1]["commit"].as_str().unwrap()
            );
        }
        let key = entry["ticket"].as_str().unwrap();
        let pr = &env.json(&["show", key, "--json"])["pr"];
        assert_eq!(pr["branch"], entry["branch"], "{key}: {pr}");
        assert_eq!(pr["base"], entry["base"], "{key}: {pr}");
        assert!(
            pr["body"].as_str().unwrap().contains("← this PR"),
            "{key}: {pr}"
        );
    }

    // The merge queue lands all four on main, in order.
    let (code, stdout, stderr) = env.run(&["merge", "P-1", "--json"]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let landed: Vec<&str> = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["state"], "merged", "{o}");
            o["ticket"].as_str().unwrap()
        })
        .collect();
    let expected: Vec<String> = ["A", "B", "C", "D"].iter().map(|id| child(id)).collect();
    assert_eq!(landed, expected);
    let log = env.remote_git(&["log", "--format=%s", "-4", "main"]);
    let subjects: Vec<&str> = log.lines().collect();
    for (line, id) in subjects.iter().zip(["D", "C", "B", "A"]) {
        assert!(line.contains(&format!("Part {id}")), "{log}");
    }
    assert_eq!(
        env.remote_git(&["show", "main:a.txt"]).trim_end(),
        "a\nand d",
        "D's change to a.txt sits on A's"
    );
    let p1 = env.json(&["ticket", "show", "P-1", "--json"]);
    assert_eq!(p1["ticket"]["status"], "done", "{p1}");
    assert!(
        p1.to_string().contains("the stack of 4 sub-tasks pushed"),
        "{p1}"
    );
}

/// A; B after A, where B extends A's file.
pub(super) const CHAIN: &str = "```json\n{\"subtasks\": [\n\
 {\"id\": \"A\", \"title\": \"Part A\", \"goal\": \"Goal-A: write a.txt.\", \"criteria\": [\"a.txt exists\"], \"files\": [\"a.txt\"]},\n\
 {\"id\": \"D\", \"title\": \"Part D\", \"goal\": \"Goal-D: write d.txt.\", \"criteria\": [\"d.txt exists\"], \"files\": [\"d.txt\", \"a.txt\"], \"depends_on\": [\"A\"]}\n\
]}\n```\n";

/// A graph with a cycle and a sub-task without criteria.
const BROKEN: &str = "```json\n{\"subtasks\": [\n\
 {\"id\": \"A\", \"title\": \"Part A\", \"goal\": \"Goal-A\", \"criteria\": [], \"depends_on\": [\"D\"]},\n\
 {\"id\": \"D\", \"title\": \"Part D\", \"goal\": \"Goal-D\", \"criteria\": [\"x\"], \"depends_on\": [\"A\"]}\n\
]}\n```\n";

/// The sub-task tickets of P-1 (linked, labelled), by key.
fn subtask_tickets(env: &Env) -> Vec<String> {
    let list = env.json(&["ticket", "list", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["labels"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l == "codemill:subtask"))
        })
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect()
}

/// Land P-1's stack and check main got exactly its two commits, once each.
fn land_chain(env: &Env) {
    let before = env.remote_git(&["rev-list", "--count", "main"]);
    let (code, stdout, stderr) = env.run(&["merge", "P-1", "--json"]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    let after = env.remote_git(&["rev-list", "--count", "main"]);
    assert_eq!(
        after.parse::<u32>().unwrap(),
        before.parse::<u32>().unwrap() + 2,
        "{stdout}"
    );
    assert_eq!(
        env.remote_git(&["show", "main:a.txt"]).trim_end(),
        "a\nand d"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_graph_gets_one_repair_request_and_codemill_run_finishes_the_split_here() {
    let mut rules = vec![Rule::new(
        "plan: repaired",
        Match {
            last_contains: Some("Your sub-task graph cannot be used".into()),
            ..Match::default()
        },
        Reply::text(CHAIN),
    )];
    rules.extend(super::subtasks::rules(BROKEN));
    let env = Env::new(rules, GATE, "").await;
    // The foreground run makes the sub-jobs and runs them in this process too.
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
    let repair = env
        .server
        .requests()
        .into_iter()
        .find(|r| r.matched_rule.as_deref() == Some("plan: repaired"))
        .expect("no repair request was sent");
    let text = repair.view.last_text();
    assert!(
        text.contains("a dependency cycle: ")
            && text.contains("sub-task \"A\" has no acceptance criteria"),
        "{text}"
    );
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["stack"].as_array().unwrap().len(), 2);
    assert_eq!(subtask_tickets(&env).len(), 2);
    env.ok(&["approve", "P-1"]);
    land_chain(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_one_sub_task_sends_only_it_back_and_restacks_the_ones_above() {
    let rules = fixing(CHAIN, "Use a second file", "a2.txt", "a2\n");
    let env = Env::new(rules, GATE, "").await;
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
    let before = env.json(&["show", "P-1", "--json"])["job"].clone();
    let (a, d) = (
        before["stack"][0]["ticket"].as_str().unwrap().to_string(),
        before["stack"][1]["ticket"].as_str().unwrap().to_string(),
    );

    // Rejecting sub-task A's commit: A alone gets a fix round with the reason, then the stack
    // is built again with D rebased on the new A.
    let out = env.ok(&["reject", &a, "--reason", "Use a second file for the rest"]);
    assert!(out.contains("proposal ready"), "{out}");
    let after = env.json(&["show", "P-1", "--json"])["job"].clone();
    assert_eq!(after["state"], "awaiting_approval", "{after}");
    assert_eq!(after["rounds"], 1, "the stack's second round");
    let a_kinds = env.event_kinds(&a);
    assert_eq!(
        a_kinds.iter().filter(|k| *k == "reworked").count(),
        1,
        "{a_kinds:?}"
    );
    assert!(
        a_kinds.iter().any(|k| k == "start agent:fix:1"),
        "{a_kinds:?}"
    );
    let d_kinds = env.event_kinds(&d);
    assert_eq!(
        d_kinds
            .iter()
            .filter(|k| *k == "start agent:implement:0")
            .count(),
        1,
        "D was not built again: {d_kinds:?}"
    );
    let (old, new) = (&before["stack"], &after["stack"]);
    assert_ne!(old[0]["commit"], new[0]["commit"]);
    assert_ne!(
        old[1]["commit"], new[1]["commit"],
        "D is rebased on the new A"
    );
    // A is still one commit, now with both files; D sits on it.
    env.ok(&["approve", "P-1"]);
    let a_branch = new[0]["branch"].as_str().unwrap();
    let d_branch = new[1]["branch"].as_str().unwrap();
    assert_eq!(
        env.remote_git(&["rev-list", "--count", &format!("main..{a_branch}")]),
        "1"
    );
    assert_eq!(
        env.remote_git(&["rev-parse", &format!("{d_branch}^")]),
        env.remote_git(&["rev-parse", a_branch])
    );
    assert_eq!(
        env.remote_git(&["show", &format!("{a_branch}:a2.txt")]),
        "a2"
    );
    land_chain(&env);
    assert_eq!(env.remote_git(&["show", "main:a2.txt"]), "a2");

    // A sub-task whose stack is not proposed cannot be sent back.
    let (code, _, stderr) = env.run(&["reject", &a, "--reason", "again"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("is not awaiting approval"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_queues_a_stack_and_the_service_lands_it() {
    let env = Env::new(super::subtasks::rules(CHAIN), GATE, "").await;
    env.ok(&["run", "P-1"]);
    env.ok(&["approve", "P-1"]);
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();
    let server = super::harness::Service::start(&env, &[], &[]);
    let answer: Value = server
        .http
        .post(format!("{}/api/tickets/P-1/merge", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["action"], "queued_stack", "{answer}");
    let stack = answer["stack"].as_array().unwrap();
    assert_eq!(stack.len(), 2, "{answer}");
    assert!(stack.iter().all(|e| e["target"] == "main"), "{answer}");
    // The service's merge loop lands both; the parent is done once the last one merged.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p1 = env.json(&["ticket", "show", "P-1", "--json"]);
        if p1["ticket"]["status"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "not landed: {p1}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        env.remote_git(&["show", "main:a.txt"]).trim_end(),
        "a\nand d"
    );
}

/// A; C after A; D after C.
const LINE: &str = "```json\n{\"subtasks\": [\n\
 {\"id\": \"A\", \"title\": \"Part A\", \"goal\": \"Goal-A: write a.txt.\", \"criteria\": [\"a.txt exists\"], \"files\": [\"a.txt\"]},\n\
 {\"id\": \"C\", \"title\": \"Part C\", \"goal\": \"Goal-C: write c.txt.\", \"criteria\": [\"c.txt exists\"], \"files\": [\"c.txt\"], \"depends_on\": [\"A\"]},\n\
 {\"id\": \"D\", \"title\": \"Part D\", \"goal\": \"Goal-D: write d.txt.\", \"criteria\": [\"d.txt exists\"], \"files\": [\"d.txt\", \"a.txt\"], \"depends_on\": [\"C\"]}\n\
]}\n```\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_sub_task_takes_the_ones_above_it_out_of_the_queue() {
    // Red once c.txt meets x.txt, which someone adds to main after the stack was approved.
    let gate = "[[gates]]\nname = \"together\"\ncommand = [\"sh\", \"-c\", \"if [ -e c.txt ] && [ -e x.txt ]; then echo c cannot live with x >&2; exit 1; fi\"]\n";
    let env = Env::new(super::subtasks::rules(LINE), gate, "").await;
    env.ok(&["run", "P-1"]);
    env.ok(&["approve", "P-1"]);
    let stack = env.json(&["show", "P-1", "--json"])["job"]["stack"].clone();
    let key = |i: usize| stack[i]["ticket"].as_str().unwrap().to_string();
    let work = env.dir.path().join("someone");
    super::harness::git(
        env.dir.path(),
        &[
            "clone",
            "-q",
            env.remote.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join("x.txt"), "x\n").unwrap();
    super::harness::git(&work, &["add", "x.txt"]);
    super::harness::git(&work, &["commit", "-q", "-m", "x"]);
    super::harness::git(&work, &["push", "-q", "origin", "HEAD:main"]);

    let (code, stdout, stderr) = env.run(&["merge", "P-1", "--json"]);
    assert_eq!(code, Some(1), "{stdout} {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let state = |k: &str| {
        report["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["ticket"] == k)
            .unwrap_or_else(|| panic!("{k}: {report}"))
            .clone()
    };
    assert_eq!(state(&key(0))["state"], "merged", "{report}");
    assert_eq!(state(&key(1))["state"], "ejected", "{report}");
    let d = state(&key(2));
    assert_eq!(d["state"], "ejected", "{report}");
    assert!(
        d["reason"].as_str().unwrap().contains(&format!(
            "the sub-task below it in its stack ({}) was taken out",
            key(1)
        )),
        "{report}"
    );
    let files = env.remote_git(&["ls-tree", "--name-only", "main"]);
    assert!(
        files.contains("a.txt") && !files.contains("c.txt") && !files.contains("d.txt"),
        "{files}"
    );
    // No fix round was started on a sub-task's branch; the parent is not done.
    assert!(
        !env.event_kinds(&key(1))
            .iter()
            .any(|k| k == "feedback_received")
    );
    let p1 = env.json(&["ticket", "show", "P-1", "--json"]);
    assert_ne!(p1["ticket"]["status"], "done", "{p1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_jobs_spend_from_their_parent_tickets_budget() {
    // Each sub-job alone stays under the ticket budget; the ticket and its sub-jobs together
    // do not.
    let env = Env::new(
        super::subtasks::rules(CHAIN),
        GATE,
        "\n[budgets]\nticket_usd = 0.014\n",
    )
    .await;
    let out = env.cmd().args(["run", "P-1"]).output().unwrap();
    let parent = env.json(&["show", "P-1", "--json"]);
    assert_eq!(
        parent["job"]["state"],
        "needs_attention",
        "{}\n{parent}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The sub-job that met the budget stopped on it, though it alone spent less.
    let children = parent["job"]["children"].as_array().unwrap().clone();
    let shown: Vec<Value> = children
        .iter()
        .map(|c| env.json(&["show", c["ticket"].as_str().unwrap(), "--json"]))
        .collect();
    let stopped: Vec<&Value> = shown
        .iter()
        .filter(|c| c["job"]["state"] == "needs_attention")
        .collect();
    assert_eq!(stopped.len(), 1, "{parent}");
    let reason = stopped[0]["job"]["reason"].as_str().unwrap();
    assert!(reason.contains("ticket_usd"), "{reason}");
    assert!(
        stopped[0]["job"]["cost_usd"].as_f64().unwrap() < 0.014,
        "the sub-job alone is under the budget: {}",
        stopped[0]
    );
    // Any other, rejected when the parent stopped, ended too: `codemill run` finished it.
    for c in &shown {
        let state = &c["job"]["state"];
        assert!(
            state == "needs_attention" || state == "rejected",
            "{}: {state}",
            c["ticket"]["key"]
        );
    }
    // The parent ticket's spend counts its sub-jobs' model calls.
    assert!(
        parent["spend"]["ticket_usd"].as_f64().unwrap() >= 0.014,
        "{}",
        parent["spend"]
    );
    assert!(
        parent["job"]["reason"]
            .as_str()
            .unwrap()
            .contains("is needs_attention: "),
        "{parent}"
    );
}
