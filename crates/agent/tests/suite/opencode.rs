//! The opencode backend driving the REAL opencode CLI against the scripted model server.
//!
//! The CLI comes from `./scripts/install-agent-clis.sh` (`.tools/npm`), or `CODEMILL_OPENCODE_BIN`.
//! A missing CLI fails these tests: there are no silent skips. Set
//! `CODEMILL_RECORD_OPENCODE_FIXTURES=<dir>` to copy each run's raw JSON log there (that is how
//! `tests/fixtures/opencode/*.jsonl` were recorded). One run costs about 7 s of CPU and 4–8 s of
//! wall time on an idle 2-core machine (much more on a busy one), most of it opencode booting
//! silently before its first model request; so runs take turns within this test binary (under
//! nextest every test is its own process and two may overlap), and the limits of tests that are
//! not about limits are generous.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use codemill_agent::opencode::Opencode;
use codemill_agent::{AgentEvent, AgentMode, AgentOutcome, AgentRequest, Api};
use codemill_testkit::{Match, ModelServer, RecordedRequest, Reply, Script, ToolCall};
use serde_json::json;

use super::common::{API_KEY, Fixture, rule, run, tool_calls, tool_results};

mod outcomes;

const MODEL: &str = "claude-sonnet-4-5";

fn program() -> PathBuf {
    std::env::var_os("CODEMILL_OPENCODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/npm/node_modules/.bin/opencode")
        })
}

/// One backend value for all tests, so `opencode --version` (1.3 s) runs once.
static OPENCODE: LazyLock<Opencode> = LazyLock::new(|| Opencode::new(program()));

/// opencode burns ~7 s of CPU per run (measured with `time`): runs from this module take
/// turns, so that a shared 2-core machine does not stretch its silent boot past the limits.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The real CLI, or a failure that says how to install it.
fn opencode() -> &'static Opencode {
    let program = program();
    assert!(
        program.is_file(),
        "opencode CLI not found at {}: run ./scripts/test (or ./scripts/install-agent-clis.sh) \
         to install the pinned version, or set CODEMILL_OPENCODE_BIN",
        program.display()
    );
    &OPENCODE
}

/// A request with limits far above opencode's boot time (4–8 s idle, more on a loaded machine);
/// tests of the limits set their own.
fn request(fx: &Fixture, url: &str, api: Api, mode: AgentMode, prompt: &str) -> AgentRequest {
    let mut req = fx.request(url, api, mode, prompt);
    req.limits.idle = Duration::from_secs(120);
    req.limits.wall_clock = Duration::from_secs(300);
    req
}

fn first_user(marker: &str, tool_results: Option<usize>) -> Match {
    Match {
        first_user_contains: Some(marker.into()),
        tool_results,
        ..Match::default()
    }
}

/// Keeps the raw log for fixture recording when asked to.
fn keep_log(fx: &Fixture, name: &str) {
    if let Some(dir) = std::env::var_os("CODEMILL_RECORD_OPENCODE_FIXTURES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&fx.log_path, Path::new(&dir).join(format!("{name}.jsonl"))).unwrap();
    }
}

fn model_requests(server: &ModelServer) -> Vec<RecordedRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.api.is_some())
        .collect()
}

fn tool_names(request: &RecordedRequest) -> Vec<String> {
    let key = if request.body["tools"][0]["function"].is_object() {
        "/function/name"
    } else {
        "/name"
    };
    let mut names: Vec<String> = request.body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.pointer(key).and_then(|n| n.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn write_edit_and_bash_change_the_worktree() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let marker = "OPENCODE-WRITE";
    let server = ModelServer::start(Script::new(vec![
        rule(
            "write",
            first_user(marker, Some(0)),
            Reply::Message {
                text: Some("Creating hello.txt.".into()),
                tool_calls: vec![ToolCall::new(
                    "write",
                    json!({"filePath": "hello.txt", "content": "hello from opencode\n"}),
                )],
                usage: None,
            },
        ),
        rule(
            "edit",
            first_user(marker, Some(1)),
            Reply::tool_call(
                "edit",
                json!({"filePath": "hello.txt", "oldString": "hello", "newString": "goodbye"}),
            ),
        ),
        rule(
            "bash",
            first_user(marker, Some(2)),
            Reply::tool_call(
                "bash",
                json!({"command": "cp hello.txt copy.txt", "description": "copy the file"}),
            ),
        ),
        rule(
            "done",
            first_user(marker, Some(3)),
            Reply::text("Done: hello.txt and copy.txt."),
        ),
    ]))
    .await
    .unwrap();
    // Numbers, quotes and newlines: the prompt must reach the model verbatim.
    let prompt = "OPENCODE-WRITE: add hello.txt (issue 42, \"quoted\")\n  -5 {\"a\": 1}";
    let mut req = request(
        &fx,
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        prompt,
    );
    req.model = MODEL.into();
    req.system_prompt = Some("CODEMILL-SYSTEM-MARKER".into());
    let started = Instant::now();
    let (run, events) = run(opencode(), &req).await;
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
            "copy.txt: goodbye from opencode\n",
            "hello.txt: goodbye from opencode\n"
        ]
    );
    assert_eq!(run.final_text, "Done: hello.txt and copy.txt.");
    assert_eq!(run.turns, 4);
    assert!(
        run.usage.input_tokens > 0 && run.usage.output_tokens > 0,
        "{:?}",
        run.usage
    );
    // opencode prices nothing it was not given a price for: the runner prices the tokens.
    assert_eq!(run.reported_cost_usd, None);
    let session_id = run.session_id.clone().unwrap();
    assert!(session_id.starts_with("ses_"), "{session_id}");
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
            "write hello.txt",
            "edit hello.txt",
            "bash cp hello.txt copy.txt"
        ]
    );
    assert!(
        tool_results(&events).iter().all(|(err, _)| !err),
        "{events:#?}"
    );
    assert!(events.contains(&AgentEvent::Text {
        text: "Creating hello.txt.".into()
    }));
    let completed = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::TurnCompleted { .. }))
        .count();
    assert_eq!(completed, 4);

    // Key, base URL, verbatim prompt and appended system prompt reached the model; no title
    // request, no retries.
    let requests = model_requests(&server);
    assert_eq!(requests.len(), 4, "{requests:#?}");
    assert!(server.unmatched().is_empty());
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].header("x-api-key"), Some(API_KEY));
    assert!(requests[0].view.first_user_text().contains(prompt));
    assert!(
        requests[0]
            .view
            .system_text()
            .contains("CODEMILL-SYSTEM-MARKER")
    );
    // The key lives only in the child's environment.
    let config = std::fs::read_to_string(fx.state_dir.join("opencode.json")).unwrap();
    assert!(config.contains("{env:CODEMILL_OPENCODE_API_KEY}"));
    assert!(!config.contains(API_KEY));
    let log = fx.log();
    assert!(log.starts_with("{\"type\":\"step_start\""), "{log}");
    assert!(!log.contains(API_KEY));
    // No npm install: the plugin stub satisfied opencode, so npm never ran.
    assert!(!fx.state_dir.join("home/.npm").exists());
    // Measured 4.5–8 s on the 2-core machine; the bound catches a CLI waiting on the network.
    assert!(took < Duration::from_secs(45), "took {took:?}");
}

#[tokio::test]
async fn resume_sends_the_earlier_history() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "fix",
            Match {
                last_contains: Some("OPENCODE-FIX-ROUND".into()),
                ..Match::default()
            },
            Reply::text("Fixed."),
        ),
        rule(
            "first",
            first_user("OPENCODE-RESUME", None),
            Reply::text("First answer, remember me."),
        ),
    ]))
    .await
    .unwrap();
    let url = server.base_url();
    let req = request(
        &fx,
        &url,
        Api::Anthropic,
        AgentMode::Write,
        "OPENCODE-RESUME: plan it",
    );
    let (first, _) = run(opencode(), &req).await;
    assert_eq!(first.outcome, AgentOutcome::Success, "{}", fx.log());
    let session_id = first.session_id.clone().unwrap();

    let mut fix = request(
        &fx,
        &url,
        Api::Anthropic,
        AgentMode::Write,
        "OPENCODE-FIX-ROUND: now fix",
    );
    fix.resume_session = Some(session_id.clone());
    let (second, events) = run(opencode(), &fix).await;
    keep_log(&fx, "resume");
    assert_eq!(second.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(second.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!(second.final_text, "Fixed.");
    assert!(matches!(
        events.first(),
        Some(AgentEvent::SessionStarted { session_id: id, .. }) if *id == session_id
    ));

    let resumed = server.requests_for_rule("fix");
    assert_eq!(resumed.len(), 1);
    let view = &resumed[0].view;
    assert_eq!(view.turn(), 1, "{view:#?}");
    assert!(view.first_user_text().contains("OPENCODE-RESUME: plan it"));
    assert!(view.text().contains("First answer, remember me."));
}

#[tokio::test]
async fn read_only_reviewer_cannot_write() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "write-anyway",
            first_user("OPENCODE-REVIEW", Some(0)),
            Reply::tool_calls(vec![
                ToolCall::new("write", json!({"filePath": "evil.txt", "content": "x\n"})),
                ToolCall::new(
                    "edit",
                    json!({"filePath": "README.md", "oldString": "demo", "newString": "evil"}),
                ),
                ToolCall::new(
                    "bash",
                    json!({"command": "touch evil2.txt", "description": "touch"}),
                ),
            ]),
        ),
        rule(
            "findings",
            first_user("OPENCODE-REVIEW", Some(3)),
            Reply::text("{\"findings\": []}"),
        ),
    ]))
    .await
    .unwrap();
    // The repository's own agent instructions still reach the model.
    std::fs::write(fx.workdir.join("AGENTS.md"), "REPO-INSTRUCTIONS-MARKER\n").unwrap();
    let before = fx.tree();
    let req = request(
        &fx,
        &server.base_url(),
        Api::Anthropic,
        AgentMode::ReadOnly,
        "OPENCODE-REVIEW the diff",
    );
    let (run, events) = run(opencode(), &req).await;
    keep_log(&fx, "read_only");
    assert_eq!(run.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(run.final_text, "{\"findings\": []}");
    assert_eq!(fx.tree(), before);
    let results = tool_results(&events);
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|(err, _)| *err), "{results:?}");
    // The write, edit and shell tools are not even offered.
    let requests = model_requests(&server);
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(tool_names(request), ["glob", "grep", "read"]);
    }
    assert!(
        requests[0]
            .view
            .system_text()
            .contains("REPO-INSTRUCTIONS-MARKER")
    );
}

#[tokio::test]
async fn openai_chat_endpoint_works() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "write",
            first_user("OPENCODE-CHAT", Some(0)),
            Reply::tool_call(
                "write",
                json!({"filePath": "chat.txt", "content": "over chat completions\n"}),
            ),
        ),
        rule(
            "done",
            first_user("OPENCODE-CHAT", Some(1)),
            Reply::text("Wrote chat.txt."),
        ),
    ]))
    .await
    .unwrap();
    let req = request(
        &fx,
        &server.base_url(),
        Api::OpenAiChat,
        AgentMode::Write,
        "OPENCODE-CHAT",
    );
    let (run, _) = run(opencode(), &req).await;
    assert_eq!(run.outcome, AgentOutcome::Success, "{}", fx.log());
    assert_eq!(fx.read("chat.txt"), "over chat completions\n");
    assert_eq!(run.final_text, "Wrote chat.txt.");
    let requests = model_requests(&server);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    let bearer = format!("Bearer {API_KEY}");
    assert_eq!(requests[0].header("authorization"), Some(bearer.as_str()));
}

/// An environment entry every process of this fixture's runs carries.
fn config_marker(fx: &Fixture) -> String {
    format!(
        "OPENCODE_CONFIG={}",
        fx.state_dir.join("opencode.json").display()
    )
}

/// The environment of the first process carrying `marker`, polled for up to 20 s (opencode
/// boots for several seconds before its first request).
async fn probe_env(marker: &str) -> Vec<(String, String)> {
    for _ in 0..200 {
        if let Some(pid) = processes_with_env(marker).into_iter().min()
            && let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ"))
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
