//! Two worker nodes with separate homes (no shared directory) and a web node on one PostgreSQL
//! database, with nothing else shared but the project's remote: a worker killed with `kill -9`
//! at several stages of a job (after research, plan, implement, gates, the review's planning, a
//! review session, triage, the commit) leaves the job to the other node, which finishes it from
//! what the store keeps; approvals through the API ship every proposal from whichever node
//! claims the push, each once. And a store outage under load: readiness and the API answer 503
//! at once, running jobs stop before their leases run out, and every job still runs to its
//! proposal once. Needs `CODEMILL_TEST_POSTGRES_URL` (./scripts/test sets it); fails without it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use codemill_testkit::{ModelServer, Script};
use serde_json::Value;

use super::harness::{HELLO_GATE, KEY_VAR, engineer, git, make_remote};

const PG_VAR: &str = "CODEMILL_TEST_MULTINODE_PG";
const LEASE_SECS: u64 = 3;
const TICKETS: usize = 20;
/// Where the first node is killed, one ticket each: just after each of these steps ran and
/// before its result was journalled, so the step's work exists only on the dead node.
const KILL_POINTS: &[&str] = &[
    "agent:research:0",
    "agent:plan:0",
    "agent:implement:0",
    "gates:0",
    "plan_review:0",
    "agent:review:0:correctness",
    "agent:triage:0",
    "commit",
];

/// A fresh database on the server of `./scripts/test postgres`.
fn database() -> String {
    let admin = std::env::var("CODEMILL_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "CODEMILL_TEST_POSTGRES_URL is not set: run ./scripts/test, or `eval \"$(./scripts/test postgres)\"` first"
        )
    });
    let name = format!(
        "multinode_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let out = Command::new("psql")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-d", &admin, "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .stdin(Stdio::null())
        .output()
        .expect("psql (PostgreSQL's client) must be installed");
    assert!(
        out.status.success(),
        "CREATE DATABASE: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let base = &base[..base.rfind('/').unwrap()];
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// One node: its own home (clones, worktrees, logs), the shared store and remote.
struct Node {
    name: &'static str,
    home: PathBuf,
    pg: String,
}

impl Node {
    fn new(root: &Path, name: &'static str, pg: &str, model: &str, remote: &Path) -> Node {
        let node = Node {
            name,
            home: root.join(name),
            pg: pg.to_string(),
        };
        node.ok(&["init"]);
        let config = format!(
            "[agent]\nbackend = \"builtin\"\nprovider = \"scripted\"\nmodel = \"test-model\"\nmax_turns = 10\nwall_clock_secs = 60\nidle_secs = 10\n\n[agents.builtin]\nmax_api_retries = 0\n\n[providers.scripted]\napi = \"anthropic\"\nbase_url = \"{model}\"\napi_key_env = \"{KEY_VAR}\"\n\n[prices.\"test-model\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n\n[store]\npostgres_url_env = \"{PG_VAR}\"\n"
        );
        std::fs::write(node.home.join("codemill.toml"), config).unwrap();
        node.ok(&["project", "add", "P", "--repo", remote.to_str().unwrap()]);
        node
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("codemill"));
        c.arg("--home")
            .arg(&self.home)
            .env(KEY_VAR, "test-key-123")
            .env(PG_VAR, &self.pg)
            .env_remove("CODEMILL_HOME")
            .env_remove("CODEMILL_CRASH_AFTER_EFFECT")
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}: codemill {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// `codemill worker`, logging to `<home>/worker.log`.
    fn worker(&self, concurrency: usize) -> Child {
        let log = std::fs::File::create(self.home.join("worker.log")).unwrap();
        self.cmd()
            .args([
                "worker",
                "--owner",
                self.name,
                "--concurrency",
                &concurrency.to_string(),
                "--lease-secs",
                &LEASE_SECS.to_string(),
                "--poll-ms",
                "100",
                "--retry-secs",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("worker.log")).unwrap_or_default()
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "a worker did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until every ticket's job is in `want`; the nodes' logs on failure.
fn wait_all(node: &Node, keys: &[String], want: &str, nodes: &[&Node]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let states: Vec<String> = keys
            .iter()
            .map(|k| {
                node.json(&["show", k, "--json"])["job"]["state"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        if states.iter().all(|s| s == want) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("--- {}:\n{}", n.name, n.log()))
                .collect();
            panic!("not all {want}: {states:?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_worker_finishes_any_job_and_ships_it_once() {
    let pg = database();
    let dir = tempfile::tempdir().unwrap();
    let remote = make_remote(dir.path(), HELLO_GATE);
    let server = ModelServer::start(Script::new(engineer())).await.unwrap();
    let a = Node::new(dir.path(), "node-a", &pg, &server.base_url(), &remote);
    let b = Node::new(dir.path(), "node-b", &pg, &server.base_url(), &remote);
    let mut keys = Vec::new();
    for n in 1..=TICKETS {
        a.ok(&[
            "ticket",
            "add",
            "P",
            "--title",
            &format!("Say hello {n}"),
            "--body",
            "Add hello.txt.\n\nAcceptance: the file exists.",
        ]);
        keys.push(format!("P-{n}"));
    }

    // Node A runs one ticket per kill point in its own process and dies at that point.
    for (i, point) in KILL_POINTS.iter().enumerate() {
        let out = a
            .cmd()
            .env("CODEMILL_CRASH_AFTER_EFFECT", point)
            .args(["run", &keys[i]])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "node A should have been killed after {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Node B takes every one of them over as soon as it looks, and finishes it from the store
    // and the remote alone (its home has never seen these jobs).
    let b_started = Instant::now();
    let worker_b = b.worker(KILL_POINTS.len());
    let crashed = &keys[..KILL_POINTS.len()];
    wait_all(&b, crashed, "awaiting_approval", &[&a, &b]);
    let mut takeover = Duration::ZERO;
    for (key, point) in crashed.iter().zip(KILL_POINTS) {
        let show = b.json(&["show", key, "--json"]);
        let timeline = show["timeline"].as_array().unwrap();
        let started: Vec<&Value> = timeline
            .iter()
            .filter(|e| e["event"]["type"] == "effect_started" && e["event"]["effect"] == *point)
            .collect();
        assert!(
            started.len() >= 2,
            "{key}: {point} ran on node A and again on node B: {started:?}"
        );
        let b_first = chrono::DateTime::parse_from_rfc3339(started[1]["at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc);
        let since = b_first
            - (chrono::Utc::now() - chrono::TimeDelta::from_std(b_started.elapsed()).unwrap());
        takeover = takeover.max(since.to_std().unwrap_or_default());
        assert!(
            b.home.join("worktrees/P").join(key).is_dir(),
            "{key}: node B rebuilt the worktree in its own home"
        );
    }
    assert!(
        takeover < Duration::from_secs(LEASE_SECS + 5),
        "node B resumed the last of them {takeover:?} after it started"
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!("takeover: node B resumed the last crashed job {takeover:?} after it started");
    }

    // The rest is shared by both nodes.
    for key in &keys[KILL_POINTS.len()..] {
        a.ok(&["enqueue", key]);
    }
    let worker_a = a.worker(2);
    wait_all(&a, &keys, "awaiting_approval", &[&a, &b]);
    // Node B leaves: whatever it built is shipped by node A, which never had those commits.
    stop(worker_b);

    let token = a.ok(&["token", "create", "ci"]).trim().to_string();
    let mut web = a
        .cmd()
        .args(["serve", "--role", "web", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(web.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_string()
    };
    let http = reqwest::Client::new();
    for key in &keys {
        let r = http
            .post(format!("{base}/api/tickets/{key}/approve"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{key}: {}", r.text().await.unwrap());
    }
    wait_all(&a, &keys, "done", &[&a, &b]);
    let _ = web.kill();
    let _ = web.wait();
    stop(worker_a);

    // Every proposal shipped once: one commit on its branch (the one approved, with the
    // agent's file), one push, one PR record, one shipped comment.
    for key in &keys {
        let show = a.json(&["show", key, "--json"]);
        let kinds: Vec<&str> = show["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["type"].as_str().unwrap())
            .collect();
        for once in ["committed", "proposed", "approved", "pushed", "pr_recorded"] {
            assert_eq!(
                kinds.iter().filter(|k| **k == once).count(),
                1,
                "{key}: {once} in {kinds:?}"
            );
        }
        let branch = format!("codemill/{key}");
        let commit = show["job"]["commit"].as_str().unwrap();
        let remote_git = |args: &[&str]| {
            let mut full = vec!["--git-dir", remote.to_str().unwrap()];
            full.extend_from_slice(args);
            git(dir.path(), &full)
        };
        assert_eq!(remote_git(&["rev-parse", &branch]), commit, "{key}");
        assert_eq!(show["pr"]["commit"], commit, "{key}: the PR record");
        assert_eq!(
            remote_git(&["rev-list", "--count", &format!("main..{branch}")]),
            "1",
            "{key}"
        );
        assert_eq!(
            remote_git(&["show", &format!("{branch}:hello.txt")]),
            "hello"
        );
        let ticket = a.json(&["ticket", "show", key, "--json"]);
        let shipped = ticket["comments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["body"].as_str().unwrap().starts_with("**Shipped**"))
            .count();
        assert_eq!(shipped, 1, "{key}: shipped comments");
    }
    // The journal names no worker's home.
    for key in &keys {
        let text = a.ok(&["show", key, "--json"]);
        for node in [&a, &b] {
            assert!(
                !text.contains(node.home.to_str().unwrap()),
                "{key}: the journal names {}'s home",
                node.name
            );
        }
    }
}

/// GET `url` (with a bearer token); the status and how long the answer took.
async fn timed_get(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, Duration) {
    let started = Instant::now();
    let mut req = http.get(url).timeout(Duration::from_secs(30));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
    (status, started.elapsed())
}

/// Poll `url` until it answers `want`, for at most `within`.
async fn until_status(http: &reqwest::Client, url: &str, want: u16, within: Duration) {
    let started = Instant::now();
    loop {
        let (status, _) = timed_get(http, url, None).await;
        if status == want {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{url} still answers {status} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_under_load_runs_no_job_twice() {
    use codemill_testkit::relay::{Relay, through};
    use codemill_testkit::{Reply, Rule, ToolCall};

    use super::harness::{at_turn, ready, write_call};

    let pg = database();
    let (upstream, _) = through(&pg, "127.0.0.1:1".parse().unwrap()).unwrap();
    let relay = Relay::start(upstream).await.unwrap();
    let (_, relayed) = through(&pg, relay.addr).unwrap();
    // The first two implement steps run a long command in the sandbox, so two jobs are mid-step
    // when the store goes away; every later implement step writes at once.
    let rules = vec![
        ready(),
        Rule::new("research", at_turn("research", 0), Reply::text("notes")),
        Rule::new("plan", at_turn("plan", 0), Reply::text("plan")),
        Rule::new(
            "implement: slow",
            at_turn("implement", 0),
            Reply::Message {
                text: Some("Building.".into()),
                tool_calls: vec![ToolCall::new(
                    "run_command",
                    serde_json::json!({"argv": ["sleep", "15"]}),
                )],
                usage: None,
            },
        )
        .times(2),
        Rule::new(
            "implement: write",
            at_turn("implement", 0),
            write_call("hello.txt", "hello\n"),
        ),
        Rule::new(
            "implement: done",
            at_turn("implement", 1),
            Reply::text("done"),
        ),
        Rule::new(
            "review",
            at_turn("review", 0),
            Reply::text("{\"findings\": []}"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let remote = make_remote(dir.path(), HELLO_GATE);
    let server = ModelServer::start(Script::new(rules)).await.unwrap();
    let node = Node::new(dir.path(), "node", &relayed, &server.base_url(), &remote);
    let token = node.ok(&["token", "create", "ops"]).trim().to_string();
    let keys: Vec<String> = (1..=6).map(|n| format!("P-{n}")).collect();
    for key in &keys {
        node.ok(&[
            "ticket",
            "add",
            "P",
            "--title",
            &format!("Say hello ({key})"),
            "--body",
            "Add hello.txt.\n\nAcceptance: the file exists.",
        ]);
        node.ok(&["enqueue", key]);
    }
    let log = dir.path().join("serve.log");
    let mut serve = node
        .cmd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "3",
            "--lease-secs",
            &LEASE_SECS.to_string(),
            "--poll-secs",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(serve.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_string()
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.hits("implement: slow") < 2 {
        assert!(Instant::now() < deadline, "no job reached implement");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slow_at = Instant::now();

    // The store goes away for four lease lengths while jobs are mid-step.
    relay.cut();
    let cut_at = Instant::now();
    until_status(
        &http,
        &format!("{base}/ready"),
        503,
        Duration::from_secs(10),
    )
    .await;
    let (status, took) = timed_get(&http, &format!("{base}/api/tickets"), Some(&token)).await;
    assert_eq!(status, 503, "an API call during the outage");
    assert!(took < Duration::from_secs(8), "it took {took:?}");
    let (status, _) = timed_get(&http, &format!("{base}/health"), None).await;
    assert_eq!(status, 200, "liveness stays up");
    tokio::time::sleep(Duration::from_secs(4 * LEASE_SECS).saturating_sub(cut_at.elapsed())).await;
    relay.mend();
    until_status(
        &http,
        &format!("{base}/ready"),
        200,
        Duration::from_secs(20),
    )
    .await;

    wait_all(&node, &keys, "awaiting_approval", &[&node]);
    let _ = serve.kill();
    let _ = serve.wait();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("could not renew the lease"),
        "the outage was seen by a running job's heartbeat:\n{logged}"
    );
    // The two steps caught by the outage were stopped before their leases ran out: neither
    // went on to its next turn, even after the store was back and its job ran again (the long
    // command would have ended 15 s after it started).
    while slow_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.hits("implement: slow"), 2);
    let went_on: Vec<String> = server
        .requests_for_rule("implement: done")
        .iter()
        .map(|r| r.text())
        .filter(|t| t.contains("sleep"))
        .collect();
    assert!(
        went_on.is_empty(),
        "an implement step went on after its lease was lost: {went_on:?}\n{logged}"
    );
    // Every job ran to its proposal once: one job per ticket, each result journalled once.
    for key in &keys {
        let show = node.json(&["show", key, "--json"]);
        let kinds: Vec<&str> = show["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["type"].as_str().unwrap())
            .collect();
        for once in ["workspace_ready", "committed", "proposed"] {
            assert_eq!(
                kinds.iter().filter(|k| **k == once).count(),
                1,
                "{key}: {once} in {kinds:?}"
            );
        }
        let implement_done = show["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["event"]["type"] == "agent_finished" && e["event"]["stage"] == "implement"
            })
            .count();
        assert_eq!(implement_done, 1, "{key}: implement journalled once");
    }
}

/// A split ticket across two homes: the sub-jobs go to whichever node is free, each one's base
/// (the sub-tasks below it) and commit travel through the store as bundles, the parent stacks
/// commits made on both nodes, and the other node approves and lands the stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_ticket_runs_its_sub_jobs_on_both_nodes() {
    use super::subtasks::{GATE, GRAPH, rules};
    let pg = database();
    let dir = tempfile::tempdir().unwrap();
    let remote = make_remote(dir.path(), GATE);
    let server = ModelServer::start(Script::new(rules(GRAPH))).await.unwrap();
    let a = Node::new(dir.path(), "node-a", &pg, &server.base_url(), &remote);
    let b = Node::new(dir.path(), "node-b", &pg, &server.base_url(), &remote);
    a.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Build four parts",
        "--body",
        "Four parts.\n\nAcceptance: all four files exist.",
    ]);
    a.ok(&["enqueue", "P-1"]);
    let (wa, wb) = (a.worker(1), b.worker(1));
    let keys = vec!["P-1".to_string()];
    wait_all(&a, &keys, "awaiting_approval", &[&a, &b]);
    stop(wa);
    stop(wb);
    // Both nodes ran sub-jobs (B and C are slow, so each node takes one of them).
    let children: Vec<String> = a.json(&["show", "P-1", "--json"])["job"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ticket"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(children.len(), 4);
    let ran_on = |node: &Node| {
        children
            .iter()
            .filter(|k| node.log().contains(&format!(" of {k} ")))
            .count()
    };
    assert!(
        ran_on(&a) > 0 && ran_on(&b) > 0,
        "sub-jobs on a: {}, on b: {}\n{}\n{}",
        ran_on(&a),
        ran_on(&b),
        a.log(),
        b.log()
    );
    // The node that did not build the stack approves it; the other lands it.
    b.ok(&["approve", "P-1"]);
    let report: Value = serde_json::from_str(&a.ok(&["merge", "P-1", "--json"])).unwrap();
    assert!(
        report["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["state"] == "merged"),
        "{report}"
    );
    let files = git(&remote, &["ls-tree", "--name-only", "main"]);
    for f in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        assert!(files.contains(f), "{files}");
    }
    assert_eq!(git(&remote, &["show", "main:a.txt"]).trim_end(), "a\nand d");
}
