//! Helpers of the codex tests: the CLI under test, scripted tool calls, fixture recording and
//! process checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codemill_agent::codex::Codex;
use codemill_agent::{AgentEvent, AgentMode, AgentRequest, Api};
use codemill_testkit::{Match, ModelServer, ToolCall};
use serde_json::json;

use super::super::common::Fixture;

/// A model in Codex's catalog: unknown names lose the apply_patch tool.
pub const MODEL: &str = "gpt-5.5";
/// Recorded fixtures show this instead of the test's temp dir.
pub const FIXTURE_DIR: &str = "/tmp/codemill-fixture";

/// The real CLI, or a failure that says how to install it.
pub fn codex() -> Codex {
    let program = std::env::var_os("CODEMILL_CODEX_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/npm/node_modules/.bin/codex")
        });
    assert!(
        program.is_file(),
        "Codex CLI not found at {}: run ./scripts/test (or ./scripts/install-agent-clis.sh) to \
         install the pinned version, or set CODEMILL_CODEX_BIN",
        program.display()
    );
    Codex::new(program)
}

pub fn request(fx: &Fixture, server: &ModelServer, mode: AgentMode, prompt: &str) -> AgentRequest {
    let mut req = fx.request(&server.base_url(), Api::OpenAiResponses, mode, prompt);
    req.model = MODEL.into();
    req
}

pub fn first_user(marker: &str, tool_results: Option<usize>) -> Match {
    Match {
        first_user_contains: Some(marker.into()),
        tool_results,
        ..Match::default()
    }
}

pub fn patch(body: &str) -> ToolCall {
    ToolCall::new(
        "apply_patch",
        json!(format!("*** Begin Patch\n{body}*** End Patch\n")),
    )
}

pub fn shell(cmd: &str) -> ToolCall {
    ToolCall::new("exec_command", json!({ "cmd": cmd }))
}

/// `CODEX_HOME=...` of this fixture: every process of a run carries it in its environment.
pub fn env_marker(fx: &Fixture) -> String {
    format!("CODEX_HOME={}", fx.state_dir.join("codex-home").display())
}

/// Keeps the raw log for fixture recording when asked to.
pub fn keep_log(fx: &Fixture, name: &str) {
    if let Some(dir) = std::env::var_os("CODEMILL_RECORD_CODEX_FIXTURES") {
        let text = fx
            .log()
            .replace(&fx.dir.path().display().to_string(), FIXTURE_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.jsonl")), text).unwrap();
    }
}

/// Keeps the rollout lines the backend reads (tool calls, their outputs, reported items).
pub fn keep_rollout(fx: &Fixture, name: &str) {
    let Some(dir) = std::env::var_os("CODEMILL_RECORD_CODEX_FIXTURES") else {
        return;
    };
    let mut stack = vec![fx.state_dir.join("codex-home/sessions")];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    let mut kept = String::new();
    for line in std::fs::read_to_string(&files[0]).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = value["payload"]["type"].as_str().unwrap_or_default();
        let keep = match value["type"].as_str() {
            Some("response_item") => kind.ends_with("_call") || kind.ends_with("_call_output"),
            Some("event_msg") => kind == "item_completed" || kind == "item_started",
            _ => false,
        };
        if keep {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let kept = kept.replace(&fx.dir.path().display().to_string(), FIXTURE_DIR);
    std::fs::write(Path::new(&dir).join(format!("{name}.rollout.jsonl")), kept).unwrap();
}

pub fn notices(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Notice { message } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

/// The environment of the first process carrying `marker`, polled for up to 5 s.
pub async fn probe_env(marker: &str) -> Vec<(String, String)> {
    for _ in 0..50 {
        if let Some(pid) = processes_with_env(marker).into_iter().min()
            && let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ"))
            // A process that is exiting reads as an empty environment: look again.
            && !environ.is_empty()
        {
            return environ
                .split(|b| *b == 0)
                .filter(|var| !var.is_empty())
                .map(|var| {
                    let var = String::from_utf8_lossy(var);
                    let (k, v) = var.split_once('=').unwrap_or((&var, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no process with {marker} appeared");
}

/// Fails unless every process carrying `marker` is gone within 2 s (a killed sandbox takes a
/// moment to exit).
pub async fn assert_gone(marker: &str) {
    let mut survivors = processes_with_env(marker);
    for _ in 0..20 {
        if survivors.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        survivors = processes_with_env(marker);
    }
    let described: Vec<String> = survivors
        .iter()
        .map(|pid| {
            let read = |file: &str| {
                std::fs::read(format!("/proc/{pid}/{file}"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default()
            };
            format!("{pid}: {} | {}", read("stat"), read("cmdline"))
        })
        .collect();
    panic!("still running with {marker}: {described:#?}");
}

/// Pids whose environment contains `entry` (reads /proc; the tests run as the same user).
pub fn processes_with_env(entry: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = dir.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(dir.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == entry.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}
