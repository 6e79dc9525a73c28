//! Helpers shared by the backend tests: temp git worktrees, requests, running and collecting events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codemill_agent::{
    Agent, AgentEvent, AgentLimits, AgentMode, AgentRequest, AgentRun, Api, Endpoint,
};
use codemill_process::Cmd;
use codemill_testkit::{Match, Reply, Rule};
use secrecy::SecretString;
use tempfile::TempDir;

/// The key tests send; asserted never to show up in logs or Debug output.
pub const API_KEY: &str = "sk-codemill-test-secret-0123456789";

/// A temp dir holding a git worktree with one commit, a state dir and a log path.
pub struct Fixture {
    pub dir: TempDir,
    pub workdir: PathBuf,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
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
        Fixture {
            state_dir: dir.path().join("state"),
            log_path: dir.path().join("logs").join("agent.log"),
            workdir,
            dir,
        }
    }

    /// A request against `base_url` with small limits; tests adjust fields as needed.
    pub fn request(&self, base_url: &str, api: Api, mode: AgentMode, prompt: &str) -> AgentRequest {
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
                base_url: base_url.to_string(),
                api_key: SecretString::from(API_KEY),
            },
            extra_env: Vec::new(),
        }
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

async fn git(dir: &Path, args: &[&str]) {
    let out = Cmd::new("git")
        .args([
            "-c",
            "user.name=codemill",
            "-c",
            "user.email=codemill@example.com",
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
