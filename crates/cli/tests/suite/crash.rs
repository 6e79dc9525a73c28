//! `kill -9` of codemill mid-job: the next `codemill run` finishes with exactly one commit and nothing lost.

use std::time::{Duration, Instant};

use codemill_testkit::{Reply, Rule};

use super::harness::{Env, HELLO_GATE, at_turn, engineer};

fn finish_and_check(env: &Env) {
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
    env.ok(&["approve", "P-1"]);
    assert_eq!(
        env.remote_git(&["rev-list", "--count", "main..codemill/P-1"]),
        "1"
    );
    assert_eq!(env.remote_git(&["show", "codemill/P-1:hello.txt"]), "hello");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "done");
    let comments = env.json(&["ticket", "show", "P-1", "--json"])["comments"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(comments, 4, "one comment per note, none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_implement_then_rerun() {
    // The implementer's first call hangs once: codemill is killed while it waits.
    let mut rules =
        vec![Rule::new("implement: hang", at_turn("implement", 0), Reply::Hang).times(1)];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .arg("--home")
        .arg(&env.home)
        .args(["run", "P-1"])
        .env(super::harness::KEY_VAR, "test-key-123")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.hits("implement: hang") == 0 {
        assert!(Instant::now() < deadline, "implement never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["stage"], "implement");
    // The rerun continues the job, and its running total starts from what the job had spent.
    let rerun = env.cmd().args(["run", "P-1"]).output().unwrap();
    let progress = String::from_utf8_lossy(&rerun.stderr);
    assert!(progress.contains("P-1 job "), "{progress}");
    assert!(progress.contains(" continues"), "{progress}");
    let done = progress
        .lines()
        .find(|l| l.contains("implement done:"))
        .unwrap_or_else(|| panic!("no implement line: {progress}"));
    let number_before = |text: &str, marker: &str| -> u64 {
        let head = &text[..text.find(marker).unwrap()];
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let step = number_before(done, " tokens · $");
    let so_far = number_before(done, " tokens, $");
    assert!(
        so_far > step,
        "the job so far ({so_far}) counts the steps before the kill, not only this one ({step}): {done}"
    );
    finish_and_check(&env);
    let kinds = env.event_kinds("P-1");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "start agent:implement:0")
            .count(),
        2,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_the_commit_then_rerun() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let out = env
        .cmd()
        .env("CODEMILL_CRASH_AFTER_EFFECT", "commit")
        .args(["run", "P-1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "codemill should have died by a signal"
    );
    // The commit exists in the worktree, but the journal never heard of it.
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["stage"], "commit");
    assert!(show["job"]["commit"].is_null());
    let wt = env.home.join("worktrees/P/P-1");
    assert_eq!(
        super::harness::git(&wt, &["rev-list", "--count", "origin/main..HEAD"]),
        "1"
    );
    finish_and_check(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_the_push_then_rerun() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    let out = env
        .cmd()
        .env("CODEMILL_CRASH_AFTER_EFFECT", "push")
        .args(["approve", "P-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None);
    assert!(env.remote_branch("codemill/P-1").is_some());
    // Approval is journalled; running again finishes the shipping.
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("shipped"), "{out}");
    assert_eq!(
        env.remote_git(&["rev-list", "--count", "main..codemill/P-1"]),
        "1"
    );
    assert_eq!(env.json(&["show", "P-1", "--json"])["job"]["state"], "done");
}
