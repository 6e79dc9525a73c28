//! One job path: `codemill run`, `approve`, `reject` and `cancel` queue the job and claim it in
//! their own process under a lease, as a worker does. A foreground run and a worker never run
//! one job at once; a killed foreground run is taken over at once by the next one on the same
//! host; a person's decisions are one transaction each, and cancelled means cancelled.

use std::time::{Duration, Instant};

use codemill_testkit::{Reply, Rule};

use super::harness::{Env, HELLO_GATE, Service, at_turn, engineer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreground_run_and_a_worker_never_run_one_job_twice() {
    let mut rules =
        vec![Rule::new("implement: hang", at_turn("implement", 0), Reply::Hang).times(1)];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .arg("--home")
        .arg(&env.home)
        .args(["run", "P-1"])
        .env(super::harness::KEY_VAR, "test-key-123")
        .env_remove("CODEMILL_HOME")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.hits("implement: hang") == 0 {
        assert!(Instant::now() < deadline, "implement never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The job is leased by the running `codemill run`: a worker finds nothing to do, and a
    // second foreground run is refused.
    let worker = env
        .cmd()
        .args(["worker", "--once", "--owner", "w1"])
        .output()
        .unwrap();
    assert!(worker.status.success());
    let stderr = String::from_utf8_lossy(&worker.stderr);
    assert!(!stderr.contains("claimed"), "{stderr}");
    let (code, _, stderr) = env.run(&["run", "P-1"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("is running P-1 right now"), "{stderr}");
    // kill -9 of the first run: the next run on this host takes the job over without waiting
    // out the lease, and finishes it.
    first.kill().unwrap();
    first.wait().unwrap();
    let started = Instant::now();
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
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
async fn a_cancelled_proposal_stays_cancelled() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
    let out = env.ok(&["cancel", "P-1"]);
    assert!(out.contains("P-1: cancelled; cancelled by"), "{out}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "cancelled");
    // The work is kept on a WIP ref, and the ticket says who cancelled.
    let wip = show["job"]["wip"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(wip.starts_with("refs/codemill/wip/"), "{show:#}");
    let comments = env.json(&["ticket", "show", "P-1", "--json"])["comments"].to_string();
    assert!(comments.contains("Cancelled"), "{comments}");
    // Approving afterwards is refused, and nothing is pushed.
    let (code, _, stderr) = env.run(&["approve", "P-1"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not awaiting approval"), "{stderr}");
    assert!(env.remote_branch("codemill/P-1").is_none());
    // A retry is a new job.
    let out = env.ok(&["retry", "P-1"]);
    assert!(out.contains("queued again as job"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_job_ships_even_if_cancelled_after() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    // Killed right after the push: the approval is journalled, the job is mid-shipping.
    let out = env
        .cmd()
        .env("CODEMILL_CRASH_AFTER_EFFECT", "push")
        .args(["approve", "P-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "should have died by a signal");
    let (code, _, stderr) = env.run(&["cancel", "P-1"]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("cannot be cancelled (the approved proposal is being shipped)"),
        "{stderr}"
    );
    let (code, _, stderr) = env.run(&["reject", "P-1", "--reason", "late"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not awaiting approval"), "{stderr}");
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("shipped"), "{out}");
    assert_eq!(env.json(&["show", "P-1", "--json"])["job"]["state"], "done");
}

/// Approve, reject and cancel racing through the API: each answer is 200 or 409, never 500;
/// exactly one decision wins, and the job ends the way that one says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_decisions_through_the_api_answer_200_or_409() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();
    let server = Service::start(&env, &["--role", "web"], &[]);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..12 {
        let action = ["approve", "reject", "cancel"][i % 3];
        let (http, url, token) = (
            server.http.clone(),
            format!("{}/api/tickets/P-1/{action}", server.base),
            token.clone(),
        );
        calls.spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"reason": "race"}))
                .send()
                .await
                .unwrap();
            (action, res.status().as_u16(), res.text().await.unwrap())
        });
    }
    let mut won = Vec::new();
    while let Some(r) = calls.join_next().await {
        let (action, status, body) = r.unwrap();
        assert!(status == 200 || status == 409, "{action}: {status} {body}");
        if status == 200 {
            won.push(action);
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let show = env.json(&["show", "P-1", "--json"]);
    let want = match won[0] {
        "approve" => "shipping",
        _ => "stopping",
    };
    assert_eq!(show["job"]["state"], want, "{won:?}");
    drop(server);
}

/// The first SIGTERM lets running jobs finish; a second one stops the service at once, and its
/// job resumes afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once_and_the_job_resumes() {
    let mut rules =
        vec![Rule::new("implement: hang", at_turn("implement", 0), Reply::Hang).times(1)];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.ok(&["enqueue", "P-1"]);
    let server = Service::start(&env, &[], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.hits("implement: hang") == 0 {
        assert!(Instant::now() < deadline, "implement never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = server.into_child();
    let term = |child: &std::process::Child| {
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    term(&child);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGTERM waits for the running job"
    );
    term(&child);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a second SIGTERM did not stop it"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status:?}");
    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
}

/// A cancel while `codemill run` is inside an agent step: the step is stopped at the next
/// heartbeat (no more tokens spent), the job stops with its work kept, and ends cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_its_agent_step() {
    let mut rules =
        vec![Rule::new("implement: hang", at_turn("implement", 0), Reply::Hang).times(1)];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .arg("--home")
        .arg(&env.home)
        .args(["run", "P-1"])
        .env(super::harness::KEY_VAR, "test-key-123")
        .env_remove("CODEMILL_HOME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.hits("implement: hang") == 0 {
        assert!(Instant::now() < deadline, "implement never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = env.ok(&["cancel", "P-1"]);
    assert!(out.contains("P-1: cancelled"), "{out}");
    // The foreground run notices within a heartbeat (a third of its 15 s lease) and ends,
    // well before the agent's 10 s idle limit would have ended the hanging request.
    let deadline = Instant::now() + Duration::from_secs(9);
    while first.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the cancelled run kept going past its heartbeat"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = first.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("P-1: cancelled"), "{stdout}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "cancelled");
    // Nothing after the cancel came from the first run: the implement step never finished.
    let implemented = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "agent_finished" && e["event"]["stage"] == "implement")
        .count();
    assert_eq!(implemented, 0, "{:#}", show["timeline"]);
}
