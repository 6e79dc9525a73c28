//! The gemini backend driving the REAL Gemini CLI against the scripted model server.
//!
//! The CLI comes from `./scripts/install-agent-clis.sh` (`.tools/npm`), or `CODEMILL_GEMINI_BIN`.
//! A missing CLI fails these tests: there are no silent skips. Set
//! `CODEMILL_RECORD_GEMINI_FIXTURES=<dir>` to copy each run's raw stream-json log there (that is
//! how `tests/fixtures/gemini/*.jsonl` were recorded).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use codemill_agent::gemini::GeminiCli;
use codemill_agent::{AgentEvent, AgentMode, AgentOutcome, AgentRequest, Api, TimeoutKind};
use codemill_testkit::{Match, ModelServer, RecordedRequest, Reply, Rule, Script, ToolCall};
use serde_json::json;

use super::common::{API_KEY, Fixture, rule, run, tool_calls, tool_results};

const MODEL: &str = "gemini-2.5-pro";

/// The real CLI, or a failure that says how to install it.
fn program() -> PathBuf {
    let program = std::env::var_os("CODEMILL_GEMINI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/npm/node_modules/.bin/gemini")
        });
    assert!(
        program.is_file(),
        "Gemini CLI not found at {}: run ./scripts/test (or ./scripts/install-agent-clis.sh) \
         to install the pinned version, or set CODEMILL_GEMINI_BIN",
        program.display()
    );
    program
}

/// One backend for all tests, so `gemini --version` (2–3 s) runs once per test binary.
fn gemini() -> &'static GeminiCli {
    static AGENT: OnceLock<GeminiCli> = OnceLock::new();
    AGENT.get_or_init(|| {
        let mut agent = GeminiCli::new(program());
        // Error tests must not sit through the CLI's own retries.
        agent.max_attempts = 1;
        agent
    })
}

async fn serve(rules: Vec<Rule>) -> ModelServer {
    ModelServer::start(Script::new(rules)).await.unwrap()
}

/// The model calls among the recorded requests (not `HEAD /` and the like).
fn model_requests(server: &ModelServer) -> Vec<RecordedRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.api.is_some())
        .collect()
}

fn request(fx: &Fixture, server: &ModelServer, mode: AgentMode, prompt: &str) -> AgentRequest {
    let mut req = fx.request(&server.base_url(), Api::Gemini, mode, prompt);
    req.model = MODEL.into();
    req
}

fn first_user(marker: &str, tool_results: usize) -> Match {
    Match {
        first_user_contains: Some(marker.into()),
        tool_results: Some(tool_results),
        ..Match::default()
    }
}

/// Keeps the raw log for fixture recording when asked to.
fn keep_log(fx: &Fixture, name: &str) {
    if let Some(dir) = std::env::var_os("CODEMILL_RECORD_GEMINI_FIXTURES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&fx.log_path, Path::new(&dir).join(format!("{name}.jsonl"))).unwrap();
    }
}

/// Names of the function declarations a model request offered, sorted.
fn offered_tools(body: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|tool| {
            tool["functionDeclarations"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|declaration| declaration["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn write_job_changes_the_worktree() {
    let fx = Fixture::new().await;
    let server = serve(vec![
        rule(
            "write",
            first_user("GEMINI-WRITE", 0),
            Reply::Message {
                text: Some("Creating hello.txt.".into()),
                tool_calls: vec![ToolCall::new(
                    "write_file",
                    json!({"file_path": "hello.txt", "content": "hello from gemini\n"}),
                )],
                usage: None,
            },
        ),
        rule(
            "edit",
            first_user("GEMINI-WRITE", 1),
            Reply::tool_call(
                "replace",
                json!({"file_path": "hello.txt", "old_string": "hello", "new_string": "hi",
                       "instruction": "shorter greeting"}),
            ),
        ),
        rule(
            "shell",
            first_user("GEMINI-WRITE", 2),
            Reply::tool_call(
                "run_shell_command",
                json!({"command": "cp hello.txt copy.txt", "description": "copy the file"}),
            ),
        ),
        rule(
            "done",
            first_user("GEMINI-WRITE", 3),
            Reply::text("Done: hello.txt and copy.txt."),
        ),
    ])
    .await;
    let mut req = request(
        &fx,
        &server,
        AgentMode::Write,
        "GEMINI-WRITE: add hello.txt",
    );
    req.system_prompt = Some("CODEMILL-SYSTEM-MARKER".into());
    let started = Instant::now();
    let (run, events) = run(gemini(), &req).await;
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
            "copy.txt: hi from gemini\n",
            "hello.txt: hi from gemini\n"
        ]
    );
    assert_eq!(run.final_text, "Done: hello.txt and copy.txt.");
    assert_eq!(run.turns, 4);
    assert!(
        run.usage.input_tokens > 0 && run.usage.output_tokens > 0,
        "{:?}",
        run.usage
    );
    assert_eq!(run.reported_cost_usd, None);
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
        [
            "write_file hello.txt",
            "replace hello.txt",
            "run_shell_command cp hello.txt copy.txt"
        ]
    );
    assert!(
        tool_results(&events).iter().all(|(err, _)| !err),
        "{events:#?}"
    );
    assert!(events.contains(&AgentEvent::Text {
        text: "Creating hello.txt.".into()
    }));
    // Our env and files reached the CLI: key, base URL, appended system prompt, isolated HOME.
    let model_requests = model_requests(&server);
    assert_eq!(model_requests.len(), 4, "{model_requests:#?}");
    assert!(server.unmatched().is_empty());
    for request in &model_requests {
        assert_eq!(request.header("x-goog-api-key"), Some(API_KEY));
        assert_eq!(request.view.model.as_deref(), Some(MODEL));
    }
    let first = &model_requests[0];
    // Appended to the CLI's own system instruction, not replacing it.
    let system = first.view.system_text();
    assert!(system.contains("CODEMILL-SYSTEM-MARKER"), "{system}");
    assert!(
        system.find("CODEMILL-SYSTEM-MARKER") > Some(1000),
        "{system}"
    );
    let offered = offered_tools(&first.body);
    for tool in ["replace", "run_shell_command", "write_file"] {
        assert!(offered.iter().any(|t| t == tool), "{offered:?}");
    }
    assert!(fx.state_dir.join("home/.gemini/tmp").is_dir());
    let log = fx.log();
    assert!(log.starts_with("{\"type\":\"init\""), "{log}");
    assert!(!log.contains(API_KEY));
    // Measured 2–4 s on a busy 2-core machine; the bound catches a CLI waiting on something.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test]
async fn resume_sends_the_earlier_history() {
    let fx = Fixture::new().await;
    let server = serve(vec![
        rule(
            "fix",
            Match {
                last_contains: Some("GEMINI-FIX-ROUND".into()),
                ..Match::default()
            },
            Reply::text("Fixed."),
        ),
        rule(
            "first",
            first_user("GEMINI-RESUME", 0),
            Reply::text("First answer, remember me."),
        ),
    ])
    .await;
    let req = request(&fx, &server, AgentMode::Write, "GEMINI-RESUME: plan it");
    let (first, _) = run(gemini(), &req).await;
    assert_eq!(first.outcome, AgentOutcome::Success, "{}", fx.log());
    let session_id = first.session_id.clone().unwrap();

    let mut fix = request(&fx, &server, AgentMode::Write, "GEMINI-FIX-ROUND: now fix");
    fix.resume_session = Some(session_id.clone());
    let (second, events) = run(gemini(), &fix).await;
    keep_log(&fx, "resume");
    assert_eq!(second.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(second.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!(second.final_text, "Fixed.");
    assert_eq!(second.turns, 1);
    assert!(matches!(
        events.first(),
        Some(AgentEvent::SessionStarted { session_id: id, .. }) if *id == session_id
    ));

    let resumed = server.requests_for_rule("fix");
    assert_eq!(resumed.len(), 1);
    let view = &resumed[0].view;
    assert_eq!(view.turn(), 1, "{view:#?}");
    assert!(view.first_user_text().contains("GEMINI-RESUME: plan it"));
    assert!(view.text().contains("First answer, remember me."));

    // An unknown session is an explicit failure, not a silent fresh start.
    let mut lost = request(&fx, &server, AgentMode::Write, "GEMINI-FIX-ROUND again");
    lost.resume_session = Some(uuid::Uuid::new_v4().to_string());
    let (lost, _) = run(gemini(), &lost).await;
    assert!(
        matches!(&lost.outcome, AgentOutcome::Failed { message } if message.contains("Error resuming session")),
        "{:?}",
        lost.outcome
    );
}

#[tokio::test]
async fn read_only_reviewer_cannot_write() {
    let fx = Fixture::new().await;
    let server = serve(vec![
        rule(
            "write-anyway",
            first_user("GEMINI-REVIEW", 0),
            Reply::tool_calls(vec![
                ToolCall::new(
                    "write_file",
                    json!({"file_path": "evil.txt", "content": "x\n"}),
                ),
                ToolCall::new(
                    "replace",
                    json!({"file_path": "README.md", "old_string": "demo", "new_string": "evil"}),
                ),
                ToolCall::new("run_shell_command", json!({"command": "touch evil2.txt"})),
            ]),
        ),
        rule(
            "findings",
            first_user("GEMINI-REVIEW", 3),
            Reply::text("{\"findings\": []}"),
        ),
    ])
    .await;
    let before = fx.tree();
    let req = request(&fx, &server, AgentMode::ReadOnly, "GEMINI-REVIEW the diff");
    let (run, events) = run(gemini(), &req).await;
    keep_log(&fx, "read_only");
    assert_eq!(run.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(run.final_text, "{\"findings\": []}");
    assert_eq!(fx.tree(), before);
    let results = tool_results(&events);
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|(err, output)| *err && output.contains("not found")),
        "{results:?}"
    );
    let model_requests = model_requests(&server);
    assert_eq!(model_requests.len(), 2);
    for request in &model_requests {
        assert_eq!(
            offered_tools(&request.body),
            ["glob", "grep_search", "list_directory", "read_file"]
        );
    }
}

/// A model answering `status` ends the run quickly with that status.
async fn api_error_is_reported(status: u16) {
    let fx = Fixture::new().await;
    let server = serve(vec![rule(
        "fail",
        Match::default(),
        Reply::error(status, format!("scripted {status}")),
    )])
    .await;
    let req = request(&fx, &server, AgentMode::Write, "GEMINI-ERROR");
    let started = Instant::now();
    let (run, _) = run(gemini(), &req).await;
    keep_log(&fx, &format!("api_error_{status}"));
    assert!(
        matches!(&run.outcome, AgentOutcome::ApiError { status: Some(s), message }
            if *s == status && message.contains("scripted")),
        "{:?}\n{}",
        run.outcome,
        fx.log()
    );
    assert_eq!(run.turns, 0);
    // max_attempts = 1: one request, no retries.
    assert_eq!(server.hits("fail"), 1);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn api_errors_carry_their_status() {
    tokio::join!(
        api_error_is_reported(401),
        api_error_is_reported(429),
        api_error_is_reported(500)
    );
}

#[tokio::test]
async fn turn_limit_is_max_turns() {
    let fx = Fixture::new().await;
    let server = serve(vec![rule(
        "loop",
        Match {
            first_user_contains: Some("GEMINI-LOOP".into()),
            ..Match::default()
        },
        Reply::tool_call(
            "run_shell_command",
            json!({"command": "echo step >> steps.txt", "description": "step"}),
        ),
    )])
    .await;
    let mut req = request(&fx, &server, AgentMode::Write, "GEMINI-LOOP forever");
    req.limits.max_turns = 2;
    let (run, _) = run(gemini(), &req).await;
    keep_log(&fx, "max_turns");
    assert_eq!(
        run.outcome,
        AgentOutcome::MaxTurns { turns: 2 },
        "{}",
        fx.log()
    );
    assert_eq!(run.turns, 2);
    // The CLI's own limit stopped it, with its stats.
    assert!(fx.log().contains("FatalTurnLimitedError"));
    assert!(run.usage.input_tokens > 0);
    // The work done before the limit stays.
    assert_eq!(fx.read("steps.txt"), "step\nstep\n");
}

#[tokio::test]
async fn own_turn_count_kills_the_group() {
    let fx = Fixture::new().await;
    let server = serve(vec![
        rule(
            "one-more",
            first_user("GEMINI-COUNT", 2),
            Reply::text("Let me keep going."),
        ),
        rule(
            "step",
            Match {
                first_user_contains: Some("GEMINI-COUNT".into()),
                ..Match::default()
            },
            Reply::tool_call(
                "run_shell_command",
                json!({"command": "echo step >> steps.txt"}),
            ),
        ),
    ])
    .await;
    let mut agent = gemini().clone();
    // Only codemill's count limits this run.
    agent.cli_turn_limit = false;
    let mut req = request(&fx, &server, AgentMode::Write, "GEMINI-COUNT steps");
    req.limits.max_turns = 2;
    let (run, _) = run(&agent, &req).await;
    assert_eq!(
        run.outcome,
        AgentOutcome::MaxTurns { turns: 2 },
        "{}",
        fx.log()
    );
    assert!(!fx.log().contains("FatalTurnLimitedError"));
    assert_eq!(fx.read("steps.txt"), "step\nstep\n");
    assert!(processes_with_env(&home_marker(&fx)).is_empty());
}

fn assert_timed_out(outcome: &AgentOutcome, kind: TimeoutKind, fx: &Fixture) {
    let timed_out = matches!(outcome, AgentOutcome::TimedOut { limit, .. } if *limit == kind);
    assert!(timed_out, "{outcome:?}\n{}", fx.log());
}

fn home_marker(fx: &Fixture) -> String {
    format!("HOME={}", fx.state_dir.join("home").display())
}

#[tokio::test]
async fn hanging_model_is_killed_at_the_idle_limit() {
    let fx = Fixture::new().await;
    let server = serve(vec![
        rule(
            "partial",
            first_user("GEMINI-HANG", 0),
            Reply::tool_call(
                "write_file",
                json!({"file_path": "partial.txt", "content": "kept\n"}),
            ),
        ),
        rule("hang", Match::default(), Reply::Hang),
    ])
    .await;
    let mut req = request(&fx, &server, AgentMode::Write, "GEMINI-HANG");
    // Generous enough for the CLI's start (2–5 s when the tests run in parallel on 2 cores).
    req.limits.idle = Duration::from_secs(6);
    req.exec.set_env("CODEMILL_TEST_EXTRA", "from-extra-env");
    let agent = gemini();
    let started = Instant::now();
    // While the CLI waits on the model, look at the environment it was started with (the token
    // picks the agent run, not a `--version` check sharing the HOME).
    // The per-step token: unique to this run (another test's sandbox has the same base URL).
    let marker = format!("GEMINI_API_KEY={}", fx.token());
    let ((run, _), env) = tokio::join!(run(agent, &req), probe_env(&marker));
    let took = started.elapsed();
    keep_log(&fx, "hang");
    assert_timed_out(&run.outcome, TimeoutKind::Idle, &fx);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The turn before the hang did its work, and it stays.
    assert_eq!(fx.read("partial.txt"), "kept\n");
    assert_eq!(run.turns, 1);

    // An environment built from nothing: the policy's and what the backend sets.
    let mut names: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| *k != "RUSTUP_HOME")
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "CODEMILL_TEST_EXTRA",
            "GEMINI_API_KEY",
            "GEMINI_CLI_NO_RELAUNCH",
            "GEMINI_CLI_SYSTEM_DEFAULTS_PATH",
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH",
            "GEMINI_CLI_TRUST_WORKSPACE",
            "GEMINI_TELEMETRY_ENABLED",
            "GOOGLE_GEMINI_BASE_URL",
            "HOME",
            "LANG",
            "PATH",
            "TMPDIR",
        ]
    );
    let value = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(value("CODEMILL_TEST_EXTRA"), Some("from-extra-env"));
    // The per-step token, and the gateway as the agent sees it inside the sandbox.
    assert_eq!(value("GEMINI_API_KEY"), Some(fx.token().as_str()));
    assert!(env.iter().all(|(_, v)| !v.contains(API_KEY)));
    assert_eq!(
        value("GOOGLE_GEMINI_BASE_URL"),
        Some("http://127.0.0.1:41000")
    );

    // The whole process group is gone: nothing still runs with this test's HOME.
    let survivors = processes_with_env(&home_marker(&fx));
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

#[tokio::test]
async fn wall_clock_limit_kills_a_busy_cli() {
    let fx = Fixture::new().await;
    let server = serve(vec![rule(
        "endless",
        Match::default(),
        Reply::EndlessStream,
    )])
    .await;
    let mut req = request(&fx, &server, AgentMode::Write, "GEMINI-WALL");
    req.limits.idle = Duration::from_secs(30);
    req.limits.wall_clock = Duration::from_secs(4);
    let started = Instant::now();
    let (run, _) = run(gemini(), &req).await;
    assert_timed_out(&run.outcome, TimeoutKind::WallClock, &fx);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(processes_with_env(&home_marker(&fx)).is_empty());
}

#[tokio::test]
async fn missing_cli_is_reported_with_a_hint() {
    let fx = Fixture::new().await;
    let req = fx.request("http://127.0.0.1:9", Api::Gemini, AgentMode::Write, "x");
    let agent = GeminiCli::new(fx.dir.path().join("no-such-gemini"));
    let (run, _) = run(&agent, &req).await;
    match run.outcome {
        AgentOutcome::CliMissing { program, hint } => {
            assert!(program.ends_with("no-such-gemini"));
            assert!(
                hint.contains("./scripts/test") && hint.contains("npm install @google/gemini-cli"),
                "{hint}"
            );
        }
        other => panic!("expected CliMissing, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_version_is_reported_once_checked() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new().await;
    let fake = fx.dir.path().join("gemini");
    let write_fake = |version: &str| {
        std::fs::write(&fake, format!("#!/bin/sh\necho {version}\n")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_fake("0.60.2");
    let mut req = fx.request("http://127.0.0.1:9", Api::Gemini, AgentMode::Write, "x");
    // The runner exposes the configured CLI's own directory to the sandbox.
    req.exec.allow_read(fx.dir.path());
    let agent = GeminiCli::new(&fake);
    let expected = AgentOutcome::CliWrongVersion {
        program: fake.display().to_string(),
        found: "0.60.2".into(),
        supported: "0.61.x".into(),
    };
    assert_eq!(run(&agent, &req).await.0.outcome, expected);
    // The version is read once per backend: a changed binary is not asked again.
    write_fake("0.61.0");
    assert_eq!(run(&agent, &req).await.0.outcome, expected);
}

#[tokio::test]
async fn other_apis_are_an_explicit_failure() {
    let fx = Fixture::new().await;
    let req = fx.request("http://127.0.0.1:9", Api::Anthropic, AgentMode::Write, "x");
    let (run, _) = run(&GeminiCli::new("gemini"), &req).await;
    assert!(
        matches!(&run.outcome, AgentOutcome::Failed { message }
            if message.contains("Gemini API") && message.contains("anthropic")),
        "{:?}",
        run.outcome
    );
}

/// The environment of the first process carrying `marker`, polled for up to 10 s.
async fn probe_env(marker: &str) -> Vec<(String, String)> {
    for _ in 0..100 {
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
