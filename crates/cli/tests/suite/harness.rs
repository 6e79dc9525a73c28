//! A codemill home with a sample repository and a scripted model server, driven through the binary.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use codemill_testkit::{Match, ModelServer, Reply, Rule, Script, ToolCall};
use serde_json::{Value, json};

pub const KEY_VAR: &str = "CODEMILL_TEST_MODEL_KEY";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub remote: PathBuf,
    pub server: ModelServer,
}

/// Run git with hooks off; panics with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = StdCommand::new("git")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository with a README and the given `.codemill/pipeline.toml`.
pub fn make_remote(root: &Path, policy: &str) -> PathBuf {
    let seed = root.join("seed");
    std::fs::create_dir_all(seed.join(".codemill")).unwrap();
    std::fs::write(seed.join("README.md"), "# sample\n").unwrap();
    std::fs::write(seed.join(".codemill/pipeline.toml"), policy).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "first"]);
    git(root, &["clone", "-q", "--bare", "seed", "remote.git"]);
    root.join("remote.git")
}

/// The gate policy used by most tests: the agent must have written hello.txt.
pub const HELLO_GATE: &str =
    "[[gates]]\nname = \"hello\"\ncommand = [\"test\", \"-f\", \"hello.txt\"]\n";

fn stage(stage: &str) -> Match {
    Match {
        first_user_contains: Some(format!("codemill stage: {stage}")),
        ..Match::default()
    }
}

pub fn at_turn(stage_name: &str, turn: usize) -> Match {
    Match {
        turn: Some(turn),
        ..stage(stage_name)
    }
}

pub fn write_call(path: &str, content: &str) -> Reply {
    Reply::Message {
        text: Some("Writing.".into()),
        tool_calls: vec![ToolCall::new(
            "write_file",
            json!({"path": path, "content": content}),
        )],
        usage: None,
    }
}

/// The readiness check says the ticket is clear.
pub fn ready() -> Rule {
    Rule::new(
        "readiness",
        at_turn("readiness", 0),
        Reply::text("```json\n{\"ready\": true, \"questions\": []}\n```"),
    )
}

/// A well-behaved engineer: notes, a plan, writes hello.txt, no findings; fix rounds say they tried.
pub fn engineer() -> Vec<Rule> {
    vec![
        ready(),
        Rule::new(
            "research",
            at_turn("research", 0),
            Reply::text("Notes: README only."),
        ),
        Rule::new(
            "plan",
            at_turn("plan", 0),
            Reply::text("Plan: add hello.txt."),
        ),
        Rule::new(
            "implement: write",
            at_turn("implement", 0),
            write_call("hello.txt", "hello\n"),
        ),
        Rule::new(
            "implement: done",
            at_turn("implement", 1),
            Reply::text("Added hello.txt."),
        ),
        Rule::new(
            "fix",
            Match {
                last_contains: Some("codemill stage: fix".into()),
                ..Match::default()
            },
            Reply::text("Tried to fix it."),
        ),
        Rule::new(
            "review",
            at_turn("review", 0),
            Reply::text("```json\n{\"findings\": []}\n```"),
        ),
    ]
}

impl Env {
    /// A home (via `codemill init`), a registered project `P`, and one ticket `P-1`.
    pub async fn new(rules: Vec<Rule>, policy: &str, extra_config: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let remote = make_remote(dir.path(), policy);
        let server = ModelServer::start(Script::new(rules)).await.unwrap();
        let home = dir.path().join("home");
        let env = Env {
            dir,
            home,
            remote,
            server,
        };
        env.ok(&["init"]);
        env.write_config(extra_config);
        env.ok(&[
            "project",
            "add",
            "P",
            "--repo",
            env.remote.to_str().unwrap(),
        ]);
        env.ok(&[
            "ticket",
            "add",
            "P",
            "--title",
            "Say hello",
            "--body",
            "Add hello.txt.\n\nAcceptance: the file exists.",
        ]);
        env
    }

    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "[agent]\nbackend = \"builtin\"\nprovider = \"scripted\"\nmodel = \"test-model\"\nmax_turns = 10\nwall_clock_secs = 60\nidle_secs = 10\n\n[agents.builtin]\nmax_api_retries = 0\n\n[providers.scripted]\napi = \"anthropic\"\nbase_url = \"{}\"\napi_key_env = \"{KEY_VAR}\"\n\n[prices.\"test-model\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n{extra}\n",
            self.server.base_url()
        );
        let file = self.home.join("codemill.toml");
        // Keep projects registered earlier.
        let old = std::fs::read_to_string(&file).unwrap_or_default();
        let projects = old
            .find("\n[projects.")
            .map(|i| old[i..].to_string())
            .unwrap_or_default();
        std::fs::write(file, format!("{text}{projects}")).unwrap();
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("codemill").unwrap();
        c.arg("--home").arg(&self.home);
        c.env(KEY_VAR, "test-key-123");
        c.env_remove("CODEMILL_HOME");
        c.env_remove("CODEMILL_CRASH_AFTER_EFFECT");
        c.timeout(std::time::Duration::from_secs(120));
        c
    }

    /// A dashboard user with `role` and `password` (given on stdin, as a person would).
    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        let added = self
            .cmd()
            .args(["user", "add", name, "--role", role, "--password-stdin"])
            .write_stdin(format!("{password}\n"))
            .output()
            .unwrap();
        assert!(added.status.success(), "{added:?}");
    }

    /// Run; assert success; return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "codemill {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run with extra environment variables (the service's tokens, for a command that runs the
    /// job in its own process); assert success; return stdout.
    pub fn ok_with(&self, vars: &[(&str, &str)], args: &[&str]) -> String {
        let out = self
            .cmd()
            .envs(vars.iter().copied())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "codemill {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run; return (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// The remote's branch tip, if the branch exists.
    pub fn remote_branch(&self, branch: &str) -> Option<String> {
        let out = StdCommand::new("git")
            .args([
                "--git-dir",
                self.remote.to_str().unwrap(),
                "rev-parse",
                "--verify",
                "-q",
            ])
            .arg(format!("refs/heads/{branch}"))
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn remote_git(&self, args: &[&str]) -> String {
        let mut full = vec!["--git-dir", self.remote.to_str().unwrap()];
        full.extend_from_slice(args);
        git(self.dir.path(), &full)
    }

    /// The event kinds of a ticket's latest job, in order.
    pub fn event_kinds(&self, key: &str) -> Vec<String> {
        let v = self.json(&["show", key, "--json"]);
        v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let ev = &e["event"];
                match ev["type"].as_str().unwrap() {
                    "effect_started" => format!("start {}", ev["effect"].as_str().unwrap()),
                    other => other.to_string(),
                }
            })
            .collect()
    }
}

/// `codemill serve` on a free port with one worker, `args` added and `vars` in its
/// environment; killed on drop unless stopped.
pub struct Service {
    child: Option<std::process::Child>,
    pub base: String,
    pub http: reqwest::Client,
    home: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Service {
    pub fn start(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Service {
        Service::start_logged(env, args, vars, None)
    }

    /// `start`, with the service's stderr (its logs) written to `log`.
    pub fn start_logged(
        env: &Env,
        args: &[&str],
        vars: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Service {
        use std::io::{BufRead, BufReader};
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("codemill"));
        cmd.arg("--home")
            .arg(&env.home)
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
            .args(args)
            .env(KEY_VAR, "test-key-123")
            .env_remove("CODEMILL_CRASH_AFTER_EFFECT")
            .stdout(std::process::Stdio::piped())
            .stderr(match log {
                Some(path) => std::fs::File::create(path).unwrap().into(),
                None => std::process::Stdio::null(),
            });
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Service {
            child: Some(child),
            base,
            http: reqwest::Client::new(),
            home: env.home.clone(),
        }
    }

    /// The service's process, for a test that signals it itself.
    pub fn into_child(mut self) -> std::process::Child {
        self.child.take().unwrap()
    }

    /// SIGTERM, as a service manager stops it; the exit status once it has shut down.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(
            StdCommand::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        child.wait().unwrap()
    }

    /// POST a webhook body with headers; returns (status, JSON answer). An outside delivery
    /// that was accepted is processed after the answer: then the answer is what processing did
    /// (as `codemill inbox` shows it), once it is done.
    pub async fn deliver(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, Value) {
        let (status, answer) = self.deliver_now(path, headers, body).await;
        if answer["result"] != "accepted" {
            return (status, answer);
        }
        let mut parts = path.trim_start_matches("/webhooks/").splitn(2, '/');
        let provider = format!(
            "{}:{}",
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        );
        let id = answer["delivery"]
            .as_str()
            .expect("a delivery id")
            .to_string();
        (status, self.processed(&provider, &id).await)
    }

    /// What processing the stored delivery did, once it is no longer pending (waits up to 60 s).
    pub async fn processed(&self, provider: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = StdCommand::new(assert_cmd::cargo::cargo_bin("codemill"))
                .arg("--home")
                .arg(&self.home)
                .args(["inbox", "--json", "--limit", "500"])
                .output()
                .unwrap();
            assert!(out.status.success(), "codemill inbox: {out:?}");
            let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            let row = rows
                .iter()
                .find(|r| r["provider"] == provider && r["delivery"] == id);
            if let Some(row) = row.filter(|r| r["state"] != "pending") {
                return row["outcome"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "delivery {provider}/{id} not processed within 60 s: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POST a webhook body with headers; returns (status, JSON answer) as the server sent it.
    pub async fn deliver_now(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Wait until the ticket's job reaches `want` (its user-facing state).
pub fn wait_state(env: &Env, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The ticket itself may not exist yet (the poller mirrors it first).
        let (_, stdout, _) = env.run(&["show", key, "--json"]);
        let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        let state = v["job"]["state"].as_str().unwrap_or("").to_string();
        if state == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} stuck in {state}, want {want}: {}",
            serde_json::to_string_pretty(&v["job"]).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Give `key` a job whose journal no longer replays (its first entry written twice), behind
/// the CLI's back in `env`'s store; returns the job.
pub async fn break_a_job(env: &Env, key: &str) -> codemill_core::ids::JobId {
    let store = codemill_store::Store::open(&env.home.join("codemill.db"))
        .await
        .unwrap();
    let ticket: codemill_core::ids::TicketKey = key.parse().unwrap();
    let created = codemill_testkit::journal::to_approval(&ticket).remove(0);
    let job = codemill_core::ids::JobId::new();
    store.create_job(job, &ticket, &created).await.unwrap();
    store.append(job, 1, &created).await.unwrap();
    job
}
