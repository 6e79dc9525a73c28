//! The claude-code backend driving the REAL Claude Code CLI against the scripted model server.
//!
//! The CLI comes from `./scripts/install-agent-clis.sh` (`.tools/npm`), or `CODEMILL_CLAUDE_BIN`.
//! A missing CLI fails these tests: there are no silent skips. Set
//! `CODEMILL_RECORD_CLAUDE_FIXTURES=<dir>` to copy each run's raw stream-json log there (that is
//! how `tests/fixtures/claude/*.jsonl` were recorded).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codemill_agent::{AgentEvent, AgentMode, AgentOutcome, Api, ClaudeCode, TimeoutKind};
use codemill_testkit::{Match, ModelServer, Reply, Script, ToolCall};
use serde_json::json;

use super::common::{API_KEY, Fixture, rule, run, tool_calls, tool_results};

const MODEL: &str = "claude-sonnet-4-5";

/// The real CLI, or a failure that says how to install it.
fn claude() -> ClaudeCode {
    let program = std::env::var_os("CODEMILL_CLAUDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/npm/node_modules/.bin/claude")
        });
    assert!(
        program.is_file(),
        "Claude Code CLI not found at {}: run ./scripts/test (or ./scripts/install-agent-clis.sh) \
         to install the pinned version, or set CODEMILL_CLAUDE_BIN",
        program.display()
    );
    let mut agent = ClaudeCode::new(program);
    // Error tests must not sit through the CLI's own retries.
    agent.max_api_retries = 0;
    agent.api_timeout_ms = 30_000;
    agent
}

fn first_user(marker: &str, extra: Match) -> Match {
    Match {
        first_user_contains: Some(marker.into()),
        ..extra
    }
}

/// Keeps the raw log for fixture recording when asked to.
fn keep_log(fx: &Fixture, name: &str) {
    if let Some(dir) = std::env::var_os("CODEMILL_RECORD_CLAUDE_FIXTURES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&fx.log_path, Path::new(&dir).join(format!("{name}.jsonl"))).unwrap();
    }
}

#[tokio::test]
async fn write_job_changes_the_worktree() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "write",
            first_user(
                "CLAUDE-WRITE",
                Match {
                    tool_results: Some(0),
                    ..Match::default()
                },
            ),
            Reply::Message {
                text: Some("Creating hello.txt.".into()),
                tool_calls: vec![ToolCall::new(
                    "Write",
                    json!({"file_path": "hello.txt", "content": "hello from claude\n"}),
                )],
                usage: None,
            },
        ),
        rule(
            "bash",
            first_user(
                "CLAUDE-WRITE",
                Match {
                    tool_results: Some(1),
                    ..Match::default()
                },
            ),
            Reply::tool_call(
                "Bash",
                json!({"command": "cp hello.txt copy.txt", "description": "copy the file"}),
            ),
        ),
        rule(
            "done",
            first_user(
                "CLAUDE-WRITE",
                Match {
                    tool_results: Some(2),
                    ..Match::default()
                },
            ),
            Reply::text("Done: hello.txt and copy.txt."),
        ),
    ]))
    .await
    .unwrap();
    let mut req = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "CLAUDE-WRITE: add hello.txt",
    );
    req.model = MODEL.into();
    req.system_prompt = Some("CODEMILL-SYSTEM-MARKER".into());
    let started = Instant::now();
    let (run, events) = run(&claude(), &req).await;
    let took = started.elapsed();
    keep_log(&fx, "write");

    assert_eq!(
        run.outcome,
        AgentOutcome::Success,
        "{events:#?}\n{}",
        fx.log()
    );
    assert_eq!(
        fx.tree(),
        [
            "README.md: # demo\n",
            "copy.txt: hello from claude\n",
            "hello.txt: hello from claude\n"
        ]
    );
    assert_eq!(run.final_text, "Done: hello.txt and copy.txt.");
    assert_eq!(run.turns, 3);
    assert!(
        run.usage.input_tokens > 0 && run.usage.output_tokens > 0,
        "{:?}",
        run.usage
    );
    assert!(run.reported_cost_usd.is_some_and(|c| c > 0.0));
    let session_id = run.session_id.clone().unwrap();
    assert!(uuid::Uuid::parse_str(&session_id).is_ok());
    assert_eq!(
        events.first(),
        Some(&AgentEvent::SessionStarted {
            session_id: session_id.clone(),
            model: Some(MODEL.into())
        })
    );
    assert_eq!(
        tool_calls(&events),
        ["Write hello.txt", "Bash cp hello.txt copy.txt"]
    );
    assert!(
        tool_results(&events).iter().all(|(err, _)| !err),
        "{events:#?}"
    );
    assert!(events.contains(&AgentEvent::Text {
        text: "Creating hello.txt.".into()
    }));

    // Our env reached the CLI: key, base URL, appended system prompt, isolated config dir.
    let model_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.api.is_some())
        .collect();
    assert_eq!(model_requests.len(), 3, "{model_requests:#?}");
    assert!(server.unmatched().is_empty());
    assert_eq!(model_requests[0].header("x-api-key"), Some(API_KEY));
    assert!(
        model_requests[0]
            .view
            .system_text()
            .contains("CODEMILL-SYSTEM-MARKER")
    );
    assert!(fx.state_dir.join("config/projects").is_dir());
    let log = fx.log();
    assert!(log.starts_with("{\"type\":\"system\""), "{log}");
    assert!(!log.contains(API_KEY));
    // Measured ~0.8 s; the bound only catches a CLI that waits on something (stdin, network).
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test]
async fn resume_sends_the_earlier_history() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "fix",
            Match {
                last_contains: Some("CLAUDE-FIX-ROUND".into()),
                ..Match::default()
            },
            Reply::text("Fixed."),
        ),
        rule(
            "first",
            first_user("CLAUDE-RESUME", Match::default()),
            Reply::text("First answer, remember me."),
        ),
    ]))
    .await
    .unwrap();
    let req = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "CLAUDE-RESUME: plan it",
    );
    let (first, _) = run(&claude(), &req).await;
    assert_eq!(first.outcome, AgentOutcome::Success, "{}", fx.log());
    let session_id = first.session_id.clone().unwrap();

    let mut fix = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "CLAUDE-FIX-ROUND: now fix",
    );
    fix.resume_session = Some(session_id.clone());
    let (second, _) = run(&claude(), &fix).await;
    keep_log(&fx, "resume");
    assert_eq!(second.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(second.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!(second.final_text, "Fixed.");

    let resumed = server.requests_for_rule("fix");
    assert_eq!(resumed.len(), 1);
    let view = &resumed[0].view;
    assert_eq!(view.turn(), 1, "{view:#?}");
    assert!(view.first_user_text().contains("CLAUDE-RESUME: plan it"));
    assert!(view.text().contains("First answer, remember me."));
}

#[tokio::test]
async fn read_only_reviewer_cannot_write() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "write-anyway",
            first_user(
                "CLAUDE-REVIEW",
                Match {
                    tool_results: Some(0),
                    ..Match::default()
                },
            ),
            Reply::tool_calls(vec![
                ToolCall::new("Write", json!({"file_path": "evil.txt", "content": "x\n"})),
                ToolCall::new("Bash", json!({"command": "touch evil2.txt"})),
            ]),
        ),
        rule(
            "findings",
            first_user(
                "CLAUDE-REVIEW",
                Match {
                    tool_results: Some(2),
                    ..Match::default()
                },
            ),
            Reply::text("{\"findings\": []}"),
        ),
    ]))
    .await
    .unwrap();
    let before = fx.tree();
    let req = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::ReadOnly,
        "CLAUDE-REVIEW the diff",
    );
    let (run, events) = run(&claude(), &req).await;
    keep_log(&fx, "read_only");
    assert_eq!(run.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(run.final_text, "{\"findings\": []}");
    assert_eq!(fx.tree(), before);
    let results = tool_results(&events);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(err, _)| *err), "{results:?}");
    for request in server.requests().iter().filter(|r| r.api.is_some()) {
        let mut names: Vec<&str> = request.body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        names.sort();
        assert_eq!(names, ["Glob", "Grep", "Read"]);
    }
}

#[tokio::test]
async fn unauthorized_is_an_api_error_with_status() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "deny",
        Match::default(),
        Reply::error(401, "invalid x-api-key"),
    )]))
    .await
    .unwrap();
    let req = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "CLAUDE-401",
    );
    let started = Instant::now();
    let (run, _) = run(&claude(), &req).await;
    keep_log(&fx, "api_error_401");
    assert!(
        // The CLI rewrites the message of a 401 ("Invalid API key · ..."); the status is the fact.
        matches!(&run.outcome, AgentOutcome::ApiError { status: Some(401), message } if !message.is_empty()),
        "{:?}\n{}",
        run.outcome,
        fx.log()
    );
    assert_eq!(run.turns, 0);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn turn_limit_is_max_turns() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "loop",
        first_user("CLAUDE-LOOP", Match::default()),
        Reply::tool_call(
            "Bash",
            json!({"command": "echo step >> steps.txt", "description": "step"}),
        ),
    )]))
    .await
    .unwrap();
    let mut req = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "CLAUDE-LOOP forever",
    );
    req.limits.max_turns = 2;
    let (run, _) = run(&claude(), &req).await;
    keep_log(&fx, "max_turns");
    assert_eq!(
        run.outcome,
        AgentOutcome::MaxTurns { turns: 2 },
        "{}",
        fx.log()
    );
    // The work done before the limit stays.
    assert_eq!(fx.read("steps.txt"), "step\nstep\n");
}

#[tokio::test]
async fn hanging_model_is_killed_at_the_idle_limit() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "hang",
        Match::default(),
        Reply::Hang,
    )]))
    .await
    .unwrap();
    let mut req = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "CLAUDE-HANG",
    );
    req.limits.idle = Duration::from_secs(3);
    req.exec.set_env("CODEMILL_TEST_EXTRA", "from-extra-env");
    let marker = format!(
        "CLAUDE_CONFIG_DIR={}",
        fx.state_dir.join("config").display()
    );
    let agent = claude();
    let started = Instant::now();
    // While the CLI waits on the model, look at the environment it was started with.
    let ((run, _), env) = tokio::join!(run(&agent, &req), probe_env(&marker));
    let took = started.elapsed();
    keep_log(&fx, "hang");
    assert!(
        matches!(
            run.outcome,
            AgentOutcome::TimedOut {
                limit: TimeoutKind::Idle,
                ..
            }
        ),
        "{:?}\n{}",
        run.outcome,
        fx.log()
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // An environment built from nothing: the policy's (PATH, LANG, the host's toolchain
    // variable, what the step adds) and what the backend sets.
    let mut names: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| *k != "RUSTUP_HOME")
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "API_TIMEOUT_MS",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
            "CLAUDE_CODE_MAX_RETRIES",
            "CLAUDE_CODE_TMPDIR",
            "CLAUDE_CONFIG_DIR",
            "CODEMILL_TEST_EXTRA",
            "DISABLE_AUTOUPDATER",
            "HOME",
            "IS_SANDBOX",
            "LANG",
            "PATH",
            "TMPDIR",
        ]
    );
    let value = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(value("CODEMILL_TEST_EXTRA"), Some("from-extra-env"));
    // The agent holds the gateway's per-step token, never the provider key.
    assert_eq!(value("ANTHROPIC_API_KEY"), Some(fx.token().as_str()));
    assert!(env.iter().all(|(_, v)| !v.contains(API_KEY)));
    assert_eq!(value("ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:41000"));
    assert_eq!(value("CLAUDE_CODE_MAX_RETRIES"), Some("0"));
    let home = fx.state_dir.join("home").display().to_string();
    assert_eq!(value("HOME"), Some(home.as_str()));

    // The whole process group is gone: nothing still runs with this test's config dir.
    let survivors = processes_with_env(&marker);
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

/// The environment of the first process carrying `marker`, polled for up to 3 s.
async fn probe_env(marker: &str) -> Vec<(String, String)> {
    for _ in 0..30 {
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

#[tokio::test]
async fn wall_clock_limit_kills_a_busy_cli() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "hang",
        Match::default(),
        Reply::Hang,
    )]))
    .await
    .unwrap();
    let mut req = fx.request(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "CLAUDE-WALL",
    );
    req.limits.idle = Duration::from_secs(30);
    req.limits.wall_clock = Duration::from_secs(2);
    let started = Instant::now();
    let (run, _) = run(&claude(), &req).await;
    assert!(
        matches!(
            run.outcome,
            AgentOutcome::TimedOut {
                limit: TimeoutKind::WallClock,
                ..
            }
        ),
        "{:?}",
        run.outcome
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let marker = format!(
        "CLAUDE_CONFIG_DIR={}",
        fx.state_dir.join("config").display()
    );
    assert!(processes_with_env(&marker).is_empty());
}

#[tokio::test]
async fn missing_cli_is_reported_with_a_hint() {
    let fx = Fixture::new().await;
    let req = fx.request("http://127.0.0.1:9", Api::Anthropic, AgentMode::Write, "x");
    let agent = ClaudeCode::new(fx.dir.path().join("no-such-claude"));
    let (run, _) = run(&agent, &req).await;
    match run.outcome {
        AgentOutcome::CliMissing { program, hint } => {
            assert!(program.ends_with("no-such-claude"));
            assert!(
                hint.contains("./scripts/test") && hint.contains("npm install"),
                "{hint}"
            );
        }
        other => panic!("expected CliMissing, got {other:?}"),
    }
}

/// Pids whose environment contains `entry` (reads /proc; the tests run as the same user).
fn processes_with_env(entry: &str) -> Vec<u32> {
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
