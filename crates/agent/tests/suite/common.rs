//! Helpers shared by the backend tests: temp git worktrees, requests, running and collecting events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Mutex;

use codemill_agent::{
    Agent, AgentEvent, AgentLimits, AgentMode, AgentRequest, AgentRun, Api, Endpoint,
};
use codemill_core::config::ProviderApi;
use codemill_gateway::{Gateway, Grant, Pass, Scope, Upstream};
use codemill_process::Cmd;
use codemill_process::sandbox::{Limits, SandboxSetup, StepAccess, install_relay};
use codemill_store::Store;
use codemill_testkit::{Match, Reply, Rule};
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;

/// The provider key: the gateway sends it to the scripted provider; asserted never to reach an
/// agent, a log or Debug output.
pub const API_KEY: &str = "sk-codemill-test-secret-0123456789";

/// A temp dir holding a git worktree with one commit, a state dir and a log path, and the
/// model gateway (with its SQLite store) every request goes through.
pub struct Fixture {
    pub dir: TempDir,
    pub workdir: PathBuf,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    pub gateway: Gateway,
    pub store: Store,
    passes: Mutex<Vec<Pass>>,
    setup: SandboxSetup,
}

/// bubblewrap, or a failure saying how to get it: these tests never skip.
pub fn bwrap() -> PathBuf {
    codemill_process::sandbox::find_on_host("bwrap").unwrap_or_else(|_| {
        panic!(
            "bubblewrap is not installed: run ./scripts/test (it installs it) or apt-get install bubblewrap"
        )
    })
}

/// The sandbox every agent test runs in: what the runner gives an agent step.
fn setup(dir: &Path) -> SandboxSetup {
    let (mut expose, mut env, path) = codemill_process::sandbox::host_toolchains();
    // The pinned CLIs live in the repository's .tools (./scripts/install-agent-clis.sh).
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools");
    if let Ok(tools) = std::fs::canonicalize(tools) {
        expose.push(tools);
    }
    env.push(("PATH".into(), path));
    env.push(("LANG".into(), "C.UTF-8".into()));
    SandboxSetup {
        bwrap: Some(bwrap()),
        relay: Some(install_relay(&dir.join("run")).unwrap()),
        expose,
        hide: Vec::new(),
        env,
        limits: Limits {
            processes: Some(2048),
            ..Limits::default()
        },
        host_uid: None,
    }
}

impl Fixture {
    pub async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let workdir = dir.path().join("worktree");
        std::fs::create_dir(&workdir).unwrap();
        std::fs::write(workdir.join("README.md"), "# demo\n").unwrap();
        git(&workdir, &["init", "-q", "-b", "main"]).await;
        git(&workdir, &["add", "."]).await;
        git(&workdir, &["commit", "-q", "-m", "init"]).await;
        let store = Store::open(&dir.path().join("codemill.db")).await.unwrap();
        let gateway = Gateway::start(&dir.path().join("run/gateway.sock"), store.clone())
            .await
            .unwrap();
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        Fixture {
            setup: setup(dir.path()),
            state_dir,
            log_path: dir.path().join("logs").join("agent.log"),
            workdir,
            gateway,
            store,
            passes: Mutex::new(Vec::new()),
            dir,
        }
    }

    /// A request for a CLI backend against the provider at `base_url` (through the gateway),
    /// sandboxed as the runner would, with small limits; tests adjust fields as needed.
    pub fn request(&self, base_url: &str, api: Api, mode: AgentMode, prompt: &str) -> AgentRequest {
        let mut req = self.request_with(base_url, api, mode, prompt);
        req.endpoint.base_url = codemill_process::sandbox::gateway_url_inside();
        req
    }

    /// The same for the built-in loop: it runs in this process, so it reaches the gateway over
    /// 127.0.0.1; its commands are sandboxed.
    pub fn in_process(
        &self,
        base_url: &str,
        api: Api,
        mode: AgentMode,
        prompt: &str,
    ) -> AgentRequest {
        self.request_with(base_url, api, mode, prompt)
    }

    /// `req` without the sandbox (`[sandbox] mode = "off"`): same environment, gateway over
    /// 127.0.0.1.
    pub fn unsandboxed(&self, mut req: AgentRequest) -> AgentRequest {
        let mut off = self.setup.clone();
        off.bwrap = None;
        let mut exec = off.policy(&StepAccess::default()).unwrap();
        for name in req.exec.env_names() {
            if let Some(value) = req.exec.get_env(&name) {
                exec.set_env(&name, value);
            }
        }
        req.exec = exec;
        req.endpoint.base_url = self.gateway.url().to_string();
        req
    }

    fn request_with(
        &self,
        base_url: &str,
        api: Api,
        mode: AgentMode,
        prompt: &str,
    ) -> AgentRequest {
        let pass = self.gateway.grant(Grant {
            scope: Scope {
                job: "job-test".into(),
                ticket: "TEST-1".into(),
                project: "TEST".into(),
                stage: "implement".into(),
                round: 0,
                angle: None,
            },
            upstream: Upstream {
                api: match api {
                    Api::Anthropic => ProviderApi::Anthropic,
                    Api::OpenAiChat => ProviderApi::OpenaiChat,
                    Api::OpenAiResponses => ProviderApi::OpenaiResponses,
                    Api::Gemini => ProviderApi::Gemini,
                },
                base_url: base_url.to_string(),
                key: SecretString::from(API_KEY),
            },
            model: "claude-sonnet-4-5".into(),
            prices: Default::default(),
            budgets: Default::default(),
        });
        let token = pass.token().clone();
        self.passes.lock().unwrap().push(pass);
        let exec = self
            .setup
            .policy(&StepAccess {
                worktree: self.workdir.clone(),
                worktree_writable: mode == AgentMode::Write,
                writable: vec![self.state_dir.clone()],
                read_only: Vec::new(),
                gateway: Some(self.gateway.socket().to_path_buf()),
                proxy: None,
                host_network: false,
            })
            .unwrap();
        AgentRequest {
            workdir: self.workdir.clone(),
            prompt: prompt.to_string(),
            system_prompt: None,
            mode,
            resume_session: None,
            model: "claude-sonnet-4-5".to_string(),
            limits: AgentLimits {
                max_turns: 10,
                wall_clock: Duration::from_secs(60),
                idle: Duration::from_secs(20),
            },
            state_dir: self.state_dir.clone(),
            log_path: self.log_path.clone(),
            endpoint: Endpoint {
                api,
                base_url: self.gateway.url().to_string(),
                api_key: token,
            },
            exec,
            knowledge: None,
            cancel: Default::default(),
        }
    }

    /// The per-step token of the latest request (what the agent holds instead of the key).
    pub fn token(&self) -> String {
        self.passes
            .lock()
            .unwrap()
            .last()
            .map(|p| p.token().expose_secret().to_string())
            .unwrap_or_default()
    }

    /// Files of the worktree (without .git) as `path: content`, sorted.
    pub fn tree(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.workdir, &self.workdir, &mut out);
        out.sort();
        out
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.workdir.join(path)).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            out.push(format!("{rel}: {content}"));
        }
    }
}

pub async fn git(dir: &Path, args: &[&str]) {
    let out = Cmd::new("git")
        .args([
            "-c",
            "user.name=codemill",
            "-c",
            "user.email=codemill@example.com",
            // The worktree may belong to the sandbox's uid by now.
            "-c",
            "safe.directory=*",
        ])
        .args(args)
        .cwd(dir)
        .output(Some(Duration::from_secs(30)), 64 * 1024)
        .await
        .unwrap();
    assert!(out.success(), "git {args:?}: {}", out.combined());
}

/// Runs `agent` and returns its run and every event it sent.
pub async fn run(agent: &dyn Agent, req: &AgentRequest) -> (AgentRun, Vec<AgentEvent>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = agent.run(req, tx).await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (run, events)
}

pub fn rule(name: &str, when: Match, reply: Reply) -> Rule {
    Rule::new(name, when, reply)
}

/// The tool calls among `events` as `name summary`.
pub fn tool_calls(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolCall { name, summary, .. } => Some(format!("{name} {summary}")),
            _ => None,
        })
        .collect()
}

/// The tool results among `events` as `(is_error, output)`.
pub fn tool_results(events: &[AgentEvent]) -> Vec<(bool, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolResult {
                is_error, output, ..
            } => Some((*is_error, output.clone())),
            _ => None,
        })
        .collect()
}

/// A base URL where nothing listens (the port was just released).
pub async fn refused_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
