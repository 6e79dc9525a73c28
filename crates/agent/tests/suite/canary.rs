//! Canaries: every backend, driven as a real binary (and the built-in loop), runs an attacker's
//! script through its own shell tool — the script tries to read the service's environment
//! through `/proc`, the service user's SSH key, codemill's database (and to write to it),
//! another ticket's worktree, the shared clone's hooks and config, a file outside the worktree,
//! a loopback listener of the host, and leaves a `setsid` child behind. Inside the sandbox every
//! attempt fails and nothing reaches the model; as a control in the same test the same script
//! succeeds with the sandbox off, so these tests can fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use codemill_agent::{
    Agent, AgentMode, AgentOutcome, Api, Builtin, ClaudeCode, Codex, GeminiCli, Opencode,
};
use codemill_testkit::{Match, ModelServer, Reply, Script, ToolCall};
use serde_json::json;

use super::common::{API_KEY, Fixture, rule, run};

/// A variable cargo and nextest set in this test process's environment: it stands for the
/// service's secrets in its environment.
const ENV_CANARY: &str = "CARGO_PKG_NAME=codemill-agent";
const SSH_CANARY: &str = "CANARY-SSH-PRIVATE-KEY";
const DB_CANARY: &str = "CANARY-DATABASE-ROW";
const OTHER_CANARY: &str = "CANARY-OTHER-TICKET";

/// The host side of the attack: planted secrets and the places the script tries to reach.
struct Target {
    ssh_key: PathBuf,
    database: PathBuf,
    other: PathBuf,
    clone: PathBuf,
    outside: PathBuf,
    late: PathBuf,
    listener: std::net::TcpListener,
}

impl Target {
    fn plant(fx: &Fixture) -> Target {
        let root = fx.dir.path();
        let service_home = root.join("service-home");
        std::fs::create_dir_all(service_home.join(".ssh")).unwrap();
        let ssh_key = service_home.join(".ssh/id_ed25519");
        std::fs::write(&ssh_key, SSH_CANARY).unwrap();
        let database = root.join("home/codemill.db");
        std::fs::create_dir_all(database.parent().unwrap()).unwrap();
        std::fs::write(&database, DB_CANARY).unwrap();
        let other = root.join("home/worktrees/WEB/WEB-2/secret.txt");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::fs::write(&other, OTHER_CANARY).unwrap();
        let clone = root.join("home/clones/WEB.git");
        std::fs::create_dir_all(clone.join("hooks")).unwrap();
        std::fs::write(clone.join("config"), "[core]\n\tbare = true\n").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Target {
            ssh_key,
            database,
            other,
            clone,
            outside: root.join("outside.txt"),
            late: root.join("late.txt"),
            listener,
        }
    }

    /// The attacker's script, as an agent would write it into the worktree.
    fn script(&self) -> String {
        let port = self.listener.local_addr().unwrap().port();
        format!(
            r#"#!/bin/bash
echo "ENV: $(cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -c '^CARGO_PKG_NAME=')"
cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep '^CARGO_PKG_NAME='
cat {ssh} 2>/dev/null
cat {db} 2>/dev/null && echo
echo x >> {db} 2>/dev/null && echo DB-WRITTEN
cat {other} 2>/dev/null && echo
echo 'touch /tmp/pwned' > {clone}/hooks/post-checkout 2>/dev/null && echo HOOK-WRITTEN
printf '[core]\n\tfsmonitor = /tmp/x\n' >> {clone}/config 2>/dev/null && echo CONFIG-WRITTEN
echo pwned > {outside} 2>/dev/null && echo OUTSIDE-WRITTEN
(exec 3<>/dev/tcp/127.0.0.1/{port} && echo hello >&3 && echo NET-CONNECTED) 2>/dev/null
env -i /bin/sh -c 'setsid /bin/sh -c "touch daemon.started; sleep 3; echo survived > {late}" </dev/null >/dev/null 2>&1 &'
# Wait until the daemon has left this process group, or ending the step would kill it anyway.
for _ in $(seq 100); do [ -e daemon.started ] && break; sleep 0.05; done
echo ATTACK-DONE
"#,
            ssh = self.ssh_key.display(),
            db = self.database.display(),
            other = self.other.display(),
            clone = self.clone.display(),
            outside = self.outside.display(),
            late = self.late.display(),
        )
    }

    /// Whether the listener was reached.
    fn connected(&self) -> bool {
        match self.listener.accept() {
            Ok((mut stream, _)) => {
                let mut buf = [0u8; 5];
                stream.set_nonblocking(false).unwrap();
                stream.read_exact(&mut buf).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Every attempt failed and nothing secret is in `seen` (what reached the model).
    async fn assert_contained(&self, name: &str, seen: &str) {
        for canary in [ENV_CANARY, SSH_CANARY, DB_CANARY, OTHER_CANARY, API_KEY] {
            assert!(
                !seen.contains(canary),
                "{name}: {canary} reached the model:\n{seen}"
            );
        }
        // Writes are judged on the host: inside, the sandbox's own private /tmp may take them.
        assert!(!seen.contains("NET-CONNECTED"), "{name}:\n{seen}");
        assert!(
            seen.contains("ATTACK-DONE"),
            "{name}: the script did not run:\n{seen}"
        );
        assert!(seen.contains("ENV: 0"), "{name}:\n{seen}");
        assert_eq!(
            std::fs::read_to_string(&self.database).unwrap(),
            DB_CANARY,
            "{name}"
        );
        assert!(!self.clone.join("hooks/post-checkout").exists(), "{name}");
        assert_eq!(
            std::fs::read_to_string(self.clone.join("config")).unwrap(),
            "[core]\n\tbare = true\n",
            "{name}"
        );
        assert!(!self.outside.exists(), "{name}");
        assert!(!self.connected(), "{name}: the listener was reached");
        // The setsid child would write after 3 s if it had outlived the step.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !self.late.exists(),
            "{name}: a setsid child outlived the step"
        );
    }

    /// The control: every attempt succeeded.
    async fn assert_breached(&self, name: &str, seen: &str) {
        for canary in [ENV_CANARY, SSH_CANARY, DB_CANARY, OTHER_CANARY] {
            assert!(
                seen.contains(canary),
                "{name}: control could not read {canary}:\n{seen}"
            );
        }
        for written in [
            "DB-WRITTEN",
            "HOOK-WRITTEN",
            "CONFIG-WRITTEN",
            "OUTSIDE-WRITTEN",
            "NET-CONNECTED",
        ] {
            assert!(
                seen.contains(written),
                "{name}: control: no {written}:\n{seen}"
            );
        }
        assert!(self.outside.exists() && self.clone.join("hooks/post-checkout").exists());
        assert!(
            self.connected(),
            "{name}: control: the listener was not reached"
        );
        // Polled, not timed: on a loaded machine the child's `sleep 3` may end late.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.late.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            self.late.exists(),
            "{name}: control: the setsid child did not survive"
        );
    }
}

/// One backend: how it is run and what its shell tool call looks like.
struct Backend {
    name: &'static str,
    api: Api,
    model: &'static str,
    agent: Box<dyn Agent>,
    shell: fn(&str) -> ToolCall,
    in_process: bool,
}

fn cli(name: &str, env: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.tools/npm/node_modules/.bin")
            .join(name)
    })
}

fn backends() -> Vec<Backend> {
    let mut claude = ClaudeCode::new(cli("claude", "CODEMILL_CLAUDE_BIN"));
    claude.max_api_retries = 0;
    let mut gemini = GeminiCli::new(cli("gemini", "CODEMILL_GEMINI_BIN"));
    gemini.max_attempts = 1;
    vec![
        Backend {
            name: "claude-code",
            api: Api::Anthropic,
            model: "claude-sonnet-4-5",
            agent: Box::new(claude),
            shell: |cmd| ToolCall::new("Bash", json!({"command": cmd, "description": "run it"})),
            in_process: false,
        },
        Backend {
            name: "codex",
            api: Api::OpenAiResponses,
            model: "gpt-5.5",
            agent: Box::new(Codex::new(cli("codex", "CODEMILL_CODEX_BIN"))),
            shell: |cmd| ToolCall::new("exec_command", json!({"cmd": cmd})),
            in_process: false,
        },
        Backend {
            name: "gemini",
            api: Api::Gemini,
            model: "gemini-2.5-pro",
            agent: Box::new(gemini),
            shell: |cmd| ToolCall::new("run_shell_command", json!({"command": cmd})),
            in_process: false,
        },
        Backend {
            name: "opencode",
            api: Api::Anthropic,
            model: "claude-sonnet-4-5",
            agent: Box::new(Opencode::new(cli("opencode", "CODEMILL_OPENCODE_BIN"))),
            shell: |cmd| ToolCall::new("bash", json!({"command": cmd, "description": "run it"})),
            in_process: false,
        },
        Backend {
            name: "builtin",
            api: Api::Anthropic,
            model: "claude-sonnet-4-5",
            agent: Box::new(Builtin::new()),
            shell: |cmd| {
                let argv: Vec<&str> = cmd.split(' ').collect();
                ToolCall::new("run_command", json!({"argv": argv}))
            },
            in_process: true,
        },
    ]
}

/// The backend runs `command` with its shell tool once, then ends; returns what the model saw
/// after the tool ran (the channel an agent would exfiltrate through) and the run's outcome.
async fn run_command(
    fx: &Fixture,
    backend: &Backend,
    command: &str,
    sandboxed: bool,
) -> (AgentOutcome, String) {
    let (outcome, seen, _) = run_command_in(fx, backend, command, sandboxed, None).await;
    (outcome, seen)
}

/// [`run_command`] in a new session or, with `resume`, in an earlier one (a fix round); also
/// returns the session id.
async fn run_command_in(
    fx: &Fixture,
    backend: &Backend,
    command: &str,
    sandboxed: bool,
    resume: Option<String>,
) -> (AgentOutcome, String, Option<String>) {
    // A resumed session's history already holds the first session's tool result.
    let earlier = usize::from(resume.is_some());
    let server = ModelServer::start(Script::new(vec![
        rule(
            "attack",
            Match {
                tool_results: Some(earlier),
                has_tools: Some(true),
                ..Match::default()
            },
            Reply::tool_calls(vec![(backend.shell)(command)]),
        ),
        rule(
            "done",
            Match {
                tool_results: Some(earlier + 1),
                ..Match::default()
            },
            Reply::text("Done."),
        ),
    ]))
    .await
    .unwrap();
    let mut req = if backend.in_process {
        fx.in_process(
            &server.base_url(),
            backend.api,
            AgentMode::Write,
            "CANARY run it",
        )
    } else {
        fx.request(
            &server.base_url(),
            backend.api,
            AgentMode::Write,
            "CANARY run it",
        )
    };
    req.model = backend.model.into();
    req.resume_session = resume;
    req.limits.wall_clock = Duration::from_secs(120);
    req.limits.idle = Duration::from_secs(60);
    if !sandboxed {
        req = fx.unsandboxed(req);
    }
    let (run, _) = run(backend.agent.as_ref(), &req).await;
    let seen: String = server
        .requests_for_rule("done")
        .iter()
        .map(|r| r.body.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    // Only the text the tool printed, unescaped enough to search (JSON strings escape \n).
    (run.outcome, seen.replace("\\n", "\n"), run.session_id)
}

async fn canary(backend: Backend) {
    let fx = Fixture::new().await;
    let target = Target::plant(&fx);
    std::fs::write(fx.workdir.join("attack.sh"), target.script()).unwrap();
    let (outcome, seen) = run_command(&fx, &backend, "bash attack.sh", true).await;
    assert_eq!(outcome, AgentOutcome::Success, "{}: {seen}", backend.name);
    target.assert_contained(backend.name, &seen).await;
    // Every request the agent sent held its per-step token and nothing of the real key.
    let calls = fx.store.model_calls("job-test").await.unwrap();
    assert!(
        !calls.is_empty(),
        "{}: the gateway saw no request",
        backend.name
    );
}

#[tokio::test]
async fn claude_code_is_contained() {
    canary(backends().remove(0)).await;
}

#[tokio::test]
async fn codex_is_contained() {
    canary(backends().remove(1)).await;
}

/// A fix round resumes the implement session (`codex exec resume`): the same boundary holds.
#[tokio::test]
async fn a_resumed_codex_session_is_contained() {
    let backend = backends().remove(1);
    let fx = Fixture::new().await;
    let (outcome, _, session) =
        run_command_in(&fx, &backend, "echo first-session", true, None).await;
    assert_eq!(outcome, AgentOutcome::Success);
    assert!(session.is_some());
    let target = Target::plant(&fx);
    std::fs::write(fx.workdir.join("attack.sh"), target.script()).unwrap();
    let (outcome, seen, _) = run_command_in(&fx, &backend, "bash attack.sh", true, session).await;
    assert_eq!(outcome, AgentOutcome::Success, "{seen}");
    target.assert_contained("codex (resumed)", &seen).await;
}

#[tokio::test]
async fn gemini_is_contained() {
    canary(backends().remove(2)).await;
}

#[tokio::test]
async fn opencode_is_contained() {
    canary(backends().remove(3)).await;
}

#[tokio::test]
async fn builtin_is_contained() {
    canary(backends().remove(4)).await;
}

/// The control: the same attack through backends whose own tools run it as written, with
/// `[sandbox] mode = "off"`, succeeds at everything. (Claude Code's and Codex's own permission
/// systems refuse the script unsandboxed, which is no boundary: their controls are the same
/// script through these.)
#[tokio::test]
async fn without_the_sandbox_the_same_attack_succeeds() {
    for index in [4, 2, 3] {
        let backend = backends().remove(index);
        let fx = Fixture::new().await;
        let target = Target::plant(&fx);
        std::fs::write(fx.workdir.join("attack.sh"), target.script()).unwrap();
        let (outcome, seen) = run_command(&fx, &backend, "bash attack.sh", false).await;
        assert_eq!(outcome, AgentOutcome::Success, "{}: {seen}", backend.name);
        target.assert_breached(backend.name, &seen).await;
    }
}

/// Inside the sandbox the implementer can run the repository's tests and read their output:
/// each CLI runs `make test` (which runs `python3 -c`) with its permission prompts off.
#[tokio::test]
async fn every_implementer_runs_the_repository_tests() {
    for backend in backends() {
        let fx = Fixture::new().await;
        std::fs::write(
            fx.workdir.join("Makefile"),
            "test:\n\tpython3 -c 'print(\"tests: \" + str(6 * 7) + \" passed\")'\n",
        )
        .unwrap();
        let (outcome, seen) = run_command(&fx, &backend, "make test", true).await;
        assert_eq!(outcome, AgentOutcome::Success, "{}: {seen}", backend.name);
        assert!(
            seen.contains("tests: 42 passed"),
            "{}: the model did not see the test output:\n{seen}",
            backend.name
        );
    }
}
