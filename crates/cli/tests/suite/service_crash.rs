//! `kill -9` of a worker (or of the approving process) at five points of a queued job — before
//! the agent, during the agent, after the commit, after the push, after the PR record — three
//! tickets each, then a restart:
//! every job finishes with exactly one branch, one PR record and one final ticket comment.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use codemill_testkit::{Reply, Rule};

use super::harness::{Env, HELLO_GATE, KEY_VAR, at_turn, engineer};

const LEASE_SECS: u64 = 2;

fn worker(env: &Env, crash_after: Option<&str>) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("codemill"));
    c.arg("--home")
        .arg(&env.home)
        .args([
            "worker",
            "--once",
            "--retry-secs",
            "0",
            "--lease-secs",
            &LEASE_SECS.to_string(),
        ])
        .env(KEY_VAR, "test-key-123")
        .env_remove("CODEMILL_HOME")
        .env_remove("CODEMILL_CRASH_AFTER_EFFECT");
    if let Some(effect) = crash_after {
        c.env("CODEMILL_CRASH_AFTER_EFFECT", effect);
    }
    c
}

fn ok(out: Output) {
    assert!(
        out.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Restart workers (after the dead one's lease expires) until the ticket's job waits or ends.
fn restart_until(env: &Env, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = env.json(&["show", key, "--json"])["job"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if state == want {
            return;
        }
        assert!(Instant::now() < deadline, "{key} stuck in {state}");
        std::thread::sleep(Duration::from_millis(LEASE_SECS * 1000 + 200));
        ok(worker(env, None).output().unwrap());
    }
}

fn check_exactly_once(env: &Env, key: &str) {
    let show = env.json(&["show", key, "--json"]);
    assert_eq!(show["job"]["state"], "done", "{key}");
    let kinds: Vec<&str> = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    for once in ["committed", "pushed", "pr_recorded", "proposed"] {
        assert_eq!(
            kinds.iter().filter(|k| **k == once).count(),
            1,
            "{key}: {once} in {kinds:?}"
        );
    }
    let branch = format!("codemill/{key}");
    let commit = show["job"]["commit"].as_str().unwrap();
    assert_eq!(
        env.remote_branch(&branch).as_deref(),
        Some(commit),
        "{key}: remote branch"
    );
    assert_eq!(
        env.remote_git(&["rev-list", "--count", &format!("main..{branch}")]),
        "1"
    );
    assert_eq!(show["pr"]["commit"], commit);
    let ticket = env.json(&["ticket", "show", key, "--json"]);
    let shipped = ticket["comments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["body"].as_str().unwrap().starts_with("**Shipped**"))
        .count();
    assert_eq!(shipped, 1, "{key}: final comments");
}

/// Three tickets, each worker killed once at `point`, then restarted to the end.
async fn kill_at(point: &str) {
    let mut rules = Vec::new();
    if point == "during-agent" {
        // Each ticket's first implement call hangs once, so the worker is mid-agent when killed.
        for n in 1..=3 {
            rules.push(
                Rule::new(
                    format!("hang P-{n}"),
                    codemill_testkit::Match {
                        contains: Some(format!("<ticket key=\"P-{n}\">")),
                        ..at_turn("implement", 0)
                    },
                    Reply::Hang,
                )
                .times(1),
            );
        }
    }
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    for n in 2..=3 {
        env.ok(&[
            "ticket",
            "add",
            "P",
            "--title",
            &format!("Say hello {n}"),
            "--body",
            "Add hello.txt.\n\nAcceptance: the file exists.",
        ]);
    }
    for n in 1..=3 {
        let key = format!("P-{n}");
        env.ok(&["enqueue", &key]);
        match point {
            "during-agent" => {
                let mut child = worker(&env, None)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                while env.server.hits(&format!("hang {key}")) == 0 {
                    assert!(Instant::now() < deadline, "{key} never reached implement");
                    std::thread::sleep(Duration::from_millis(20));
                }
                child.kill().unwrap();
                child.wait().unwrap();
                restart_until(&env, &key, "awaiting_approval");
            }
            "before-agent" | "after-commit" => {
                let effect = if point == "before-agent" {
                    "prepare_workspace"
                } else {
                    "commit"
                };
                let out = worker(&env, Some(effect)).output().unwrap();
                assert_eq!(
                    out.status.code(),
                    None,
                    "{key}: the worker should have been killed"
                );
                restart_until(&env, &key, "awaiting_approval");
            }
            _ => ok(worker(&env, None).output().unwrap()),
        }
        match point {
            // The approving process ships the job itself (one job path) and is killed; a
            // worker on this host takes the job over at once.
            "after-push" | "after-pr" => {
                let effect = if point == "after-push" {
                    "push"
                } else {
                    "record_pr"
                };
                let out = env
                    .cmd()
                    .env("CODEMILL_CRASH_AFTER_EFFECT", effect)
                    .args(["approve", &key])
                    .output()
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    None,
                    "{key}: the approving process should have been killed"
                );
                ok(worker(&env, None).output().unwrap());
                restart_until(&env, &key, "done");
            }
            _ => {
                env.ok(&["approve", &key]);
                restart_until(&env, &key, "done");
            }
        }
        check_exactly_once(&env, &key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_agent() {
    kill_at("before-agent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_the_agent() {
    kill_at("during-agent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_commit() {
    kill_at("after-commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_push() {
    kill_at("after-push").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_pr_record() {
    kill_at("after-pr").await;
}
