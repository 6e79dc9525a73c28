//! Workers: queued jobs claimed under a lease, handed back while they wait for approval, shipped
//! after approval; a stopped worker's lease expires, another worker takes over, and the first
//! one's late writes are refused by the fencing token.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codemill_testkit::{Reply, Rule};

use super::harness::{Env, HELLO_GATE, KEY_VAR, at_turn, engineer};

fn worker(env: &Env, owner: &str, lease_secs: u64) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("codemill"));
    c.arg("--home")
        .arg(&env.home)
        .args([
            "worker",
            "--once",
            "--owner",
            owner,
            "--retry-secs",
            "0",
            "--lease-secs",
            &lease_secs.to_string(),
        ])
        .env(KEY_VAR, "test-key-123")
        .env_remove("CODEMILL_HOME");
    c
}

fn queue_state(env: &Env) -> String {
    let show = env.json(&["show", "P-1", "--json"]);
    show["job"]["state"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_ticket_is_proposed_then_shipped_by_workers() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let out = env.ok(&["enqueue", "P-1"]);
    assert!(out.contains("queued as job"), "{out}");
    let again = env.ok(&["enqueue", "P-1"]);
    assert!(again.contains("already has an active job"), "{again}");
    let out = worker(&env, "w1", 30).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("awaiting_approval"));
    assert_eq!(queue_state(&env), "awaiting_approval");
    // Nothing due while it waits for a person.
    let idle = worker(&env, "w2", 30).output().unwrap();
    assert!(idle.status.success());
    assert_eq!(queue_state(&env), "awaiting_approval");
    // One job path: the approving process claims the job and ships it itself.
    let out = env.ok(&["approve", "P-1"]);
    assert!(out.contains("shipped"), "{out}");
    assert_eq!(queue_state(&env), "done");
    let idle = worker(&env, "w2", 30).output().unwrap();
    assert!(idle.status.success());
    assert_eq!(env.remote_git(&["show", "codemill/P-1:hello.txt"]), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_fenced_off_after_another_takes_over() {
    // The first implement call hangs, so worker A is mid-job when it is stopped.
    let mut rules =
        vec![Rule::new("implement: hang", at_turn("implement", 0), Reply::Hang).times(1)];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.ok(&["enqueue", "P-1"]);
    let a = worker(&env, "worker-a", 3)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.hits("implement: hang") == 0 {
        assert!(
            Instant::now() < deadline,
            "worker A never reached implement"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = a.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_secs(4)); // past A's 3 s lease
    let b = worker(&env, "worker-b", 30).output().unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(queue_state(&env), "awaiting_approval");
    let journal_before = env.json(&["show", "P-1", "--json"])["timeline"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = a.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("another worker owns it now"), "{stderr}");
    // A wrote nothing after B took over: same journal, same single proposal.
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["timeline"].as_array().unwrap().len(), journal_before);
    assert_eq!(show["job"]["state"], "awaiting_approval");
    let proposals = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "proposed")
        .count();
    assert_eq!(proposals, 1);
}

/// `worker --once` checks the notification settings like a lasting worker, and tells what its
/// job asked for before it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_of_a_worker_tells_what_its_job_asked_for() {
    use codemill_testkit::fakes::chat::{FakeChat, FakeChatOptions};

    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let chat = FakeChat::start(FakeChatOptions::default()).await.unwrap();
    env.write_config(&format!(
        "\n[[projects.P.notify]]\nchannel = \"webhook\"\nurl = \"{}\"\nsecret_env = \"NOTIFY_SECRET\"\non = [\"proposal\"]\n",
        chat.hook_url()
    ));
    env.ok(&["enqueue", "P-1"]);
    let out = worker(&env, "w1", 30).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOTIFY_SECRET"), "{err}");
    assert_eq!(queue_state(&env), "queued", "nothing ran");

    let out = worker(&env, "w1", 30)
        .env("NOTIFY_SECRET", "n0tify")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(queue_state(&env), "awaiting_approval");
    let told = chat.delivered("/hook");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].header("x-codemill-event"), Some("proposal"));
    assert_eq!(told[0].body["ticket"], "P-1");
}
