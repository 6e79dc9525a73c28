//! The builtin agent loop against the scripted model server, on both APIs.

use std::time::{Duration, Instant};

use codemill_agent::{AgentEvent, AgentMode, AgentOutcome, Api, Builtin, TimeoutKind, Usage};
use codemill_testkit::{Match, ModelServer, Reply, Script, ToolCall};
use serde_json::{Value, json};

use super::common::{API_KEY, Fixture, refused_url, rule, run, tool_calls, tool_results};

fn builtin() -> Builtin {
    let mut agent = Builtin::new();
    // Tests never wait for retries unless they ask for them.
    agent.max_api_retries = 0;
    agent.command_timeout = Duration::from_secs(20);
    agent
}

fn when_turn(turn: usize) -> Match {
    Match {
        turn: Some(turn),
        ..Match::default()
    }
}

fn message(text: Option<&str>, calls: Vec<ToolCall>, usage: (u64, u64)) -> Reply {
    Reply::Message {
        text: text.map(str::to_string),
        tool_calls: calls,
        usage: Some(codemill_testkit::Usage {
            input_tokens: usage.0,
            output_tokens: usage.1,
        }),
    }
}

/// The tool names a recorded request offered, in either API's format.
fn offered_tools(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| {
                    t.get("name")
                        .or_else(|| t.pointer("/function/name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Write, edit and a command over two tool turns really change the worktree; usage is summed.
async fn write_edit_and_run(api: Api) {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "write-and-edit",
            when_turn(0),
            message(
                Some("Creating the file."),
                vec![
                    ToolCall::new(
                        "write_file",
                        json!({"path": "src/hello.txt", "content": "hello world\n"}),
                    ),
                    ToolCall::new(
                        "edit_file",
                        json!({"path": "src/hello.txt", "old_text": "world", "new_text": "codemill"}),
                    ),
                ],
                (100, 10),
            ),
        ),
        rule(
            "run",
            Match {
                turn: Some(1),
                tool_results: Some(2),
                ..Match::default()
            },
            message(
                None,
                vec![ToolCall::new(
                    "run_command",
                    json!({"argv": ["sh", "-c", "cp src/hello.txt copy.txt && git status --short"]}),
                )],
                (200, 20),
            ),
        ),
        rule(
            "done",
            Match {
                turn: Some(2),
                last_contains: Some("?? copy.txt".into()),
                ..Match::default()
            },
            message(Some("Done: hello.txt written."), vec![], (300, 30)),
        ),
    ]))
    .await
    .unwrap();
    let mut req = fx.in_process(&server.base_url(), api, AgentMode::Write, "Do TICKET-1");
    req.system_prompt = Some("Follow the repo conventions.".into());
    let (run, events) = run(&builtin(), &req).await;

    assert_eq!(run.outcome, AgentOutcome::Success, "{events:#?}");
    assert_eq!(run.turns, 3);
    assert_eq!(run.final_text, "Done: hello.txt written.");
    assert_eq!(
        run.usage,
        Usage {
            input_tokens: 600,
            output_tokens: 60,
            ..Usage::default()
        }
    );
    assert_eq!(run.reported_cost_usd, None);
    assert_eq!(
        fx.tree(),
        [
            "README.md: # demo\n",
            "copy.txt: hello codemill\n",
            "src/hello.txt: hello codemill\n"
        ]
    );
    assert_eq!(
        tool_calls(&events),
        [
            "write_file src/hello.txt",
            "edit_file src/hello.txt",
            "run_command sh -c \"cp src/hello.txt copy.txt && git status --short\""
        ]
    );
    assert!(
        tool_results(&events).iter().all(|(err, _)| !err),
        "{events:#?}"
    );
    let session_id = run.session_id.clone().unwrap();
    assert_eq!(
        events.first(),
        Some(&AgentEvent::SessionStarted {
            session_id: session_id.clone(),
            model: Some("claude-sonnet-4-5".into())
        })
    );
    let turns: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TurnCompleted { turn, .. } => Some(*turn),
            _ => None,
        })
        .collect();
    assert_eq!(turns, [1, 2, 3]);
    assert!(
        fx.state_dir
            .join("builtin-sessions")
            .join(format!("{session_id}.json"))
            .is_file()
    );

    // The wire: all three answered by their rule, the right auth, all six tools, our system prompt.
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(server.unmatched().is_empty());
    let first = &requests[0];
    assert_eq!(
        offered_tools(&first.body),
        [
            "read_file",
            "write_file",
            "edit_file",
            "list_dir",
            "search",
            "run_command"
        ]
    );
    assert!(
        first
            .view
            .system_text()
            .contains("Follow the repo conventions.")
    );
    match api {
        Api::Anthropic => {
            assert_eq!(first.path, "/v1/messages");
            assert_eq!(first.header("x-api-key"), Some(API_KEY));
            assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
        }
        Api::OpenAiChat => {
            assert_eq!(first.path, "/v1/chat/completions");
            assert_eq!(
                first.header("authorization"),
                Some(format!("Bearer {API_KEY}").as_str())
            );
        }
        Api::OpenAiResponses | Api::Gemini => unreachable!("not a builtin wire format"),
    }
    // The raw log has the responses and events, never the key.
    let log = fx.log();
    assert!(log.contains("\"type\":\"response\""), "{log}");
    assert!(log.contains("tool_call"), "{log}");
    assert!(!log.contains(API_KEY));
    assert!(!format!("{req:?}").contains(API_KEY));
}

#[tokio::test]
async fn anthropic_write_edit_and_run_change_the_worktree() {
    write_edit_and_run(Api::Anthropic).await;
}

#[tokio::test]
async fn openai_write_edit_and_run_change_the_worktree() {
    write_edit_and_run(Api::OpenAiChat).await;
}

/// A fix round resumes the saved session: the server sees the earlier turns and tool results.
async fn resume_sends_the_earlier_history(api: Api) {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "fix",
            Match {
                last_contains: Some("FIX-ROUND".into()),
                ..Match::default()
            },
            Reply::text("Fixed as asked."),
        ),
        rule(
            "write",
            when_turn(0),
            Reply::tool_call("write_file", json!({"path": "a.txt", "content": "v1\n"})),
        ),
        rule("done", when_turn(1), Reply::text("Wrote a.txt.")),
    ]))
    .await
    .unwrap();
    let req = fx.in_process(
        &server.base_url(),
        api,
        AgentMode::Write,
        "Implement TICKET-2",
    );
    let (first, _) = run(&builtin(), &req).await;
    assert_eq!(first.outcome, AgentOutcome::Success);
    let session_id = first.session_id.clone().unwrap();

    let mut fix = fx.in_process(
        &server.base_url(),
        api,
        AgentMode::Write,
        "FIX-ROUND: add a test",
    );
    fix.resume_session = Some(session_id.clone());
    let (second, events) = run(&builtin(), &fix).await;
    assert_eq!(second.outcome, AgentOutcome::Success, "{events:#?}");
    assert_eq!(second.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!(second.final_text, "Fixed as asked.");
    assert_eq!(second.turns, 1);

    let resumed = server.requests_for_rule("fix");
    assert_eq!(resumed.len(), 1);
    let view = &resumed[0].view;
    assert_eq!(view.turn(), 2, "two earlier assistant turns: {view:#?}");
    assert_eq!(view.tool_results, 1);
    assert!(view.first_user_text().contains("Implement TICKET-2"));
    let text = view.text();
    assert!(text.contains("write_file"), "{text}");
    assert!(text.contains("Wrote a.txt."), "{text}");
    assert!(view.last_text().contains("FIX-ROUND: add a test"));
}

#[tokio::test]
async fn anthropic_resume_sends_the_earlier_history() {
    resume_sends_the_earlier_history(Api::Anthropic).await;
}

#[tokio::test]
async fn openai_resume_sends_the_earlier_history() {
    resume_sends_the_earlier_history(Api::OpenAiChat).await;
}

#[tokio::test]
async fn resuming_an_unknown_session_fails_cleanly() {
    let fx = Fixture::new().await;
    let url = refused_url().await;
    let mut req = fx.in_process(&url, Api::Anthropic, AgentMode::Write, "x");
    req.resume_session = Some(uuid::Uuid::new_v4().to_string());
    let (run, _) = run(&builtin(), &req).await;
    assert!(
        matches!(&run.outcome, AgentOutcome::Failed { message } if message.contains("no builtin session")),
        "{:?}",
        run.outcome
    );
}

/// Read-only: write tools are not offered, and a scripted write anyway changes nothing.
async fn read_only_cannot_write(api: Api) {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "write-anyway",
            when_turn(0),
            Reply::tool_calls(vec![
                ToolCall::new("write_file", json!({"path": "evil.txt", "content": "x"})),
                ToolCall::new("run_command", json!({"argv": ["touch", "evil2.txt"]})),
                ToolCall::new("read_file", json!({"path": "README.md"})),
            ]),
        ),
        rule("findings", when_turn(1), Reply::text("{\"findings\": []}")),
    ]))
    .await
    .unwrap();
    let before = fx.tree();
    let req = fx.in_process(
        &server.base_url(),
        api,
        AgentMode::ReadOnly,
        "Review TICKET-3",
    );
    let (run, events) = run(&builtin(), &req).await;
    assert_eq!(run.outcome, AgentOutcome::Success);
    assert_eq!(run.final_text, "{\"findings\": []}");
    assert_eq!(fx.tree(), before);
    let results = tool_results(&events);
    assert!(
        results[0].0 && results[0].1.contains("read-only"),
        "{results:?}"
    );
    assert!(
        results[1].0 && results[1].1.contains("read-only"),
        "{results:?}"
    );
    assert_eq!(results[2], (false, "# demo\n".to_string()));
    for request in server.requests() {
        assert_eq!(
            offered_tools(&request.body),
            ["read_file", "list_dir", "search"]
        );
        assert!(request.view.system_text().contains("read-only mode"));
    }
}

#[tokio::test]
async fn anthropic_read_only_cannot_write() {
    read_only_cannot_write(Api::Anthropic).await;
}

#[tokio::test]
async fn openai_read_only_cannot_write() {
    read_only_cannot_write(Api::OpenAiChat).await;
}

async fn api_error(api: Api, status: u16) {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "fail",
        Match::default(),
        Reply::error(status, format!("scripted failure {status}")),
    )]))
    .await
    .unwrap();
    let req = fx.in_process(&server.base_url(), api, AgentMode::Write, "x");
    let (run, _) = run(&builtin(), &req).await;
    assert_eq!(
        run.outcome,
        AgentOutcome::ApiError {
            status: Some(status),
            message: format!("scripted failure {status}")
        }
    );
    // Zero retries configured: exactly one request.
    assert_eq!(server.requests().len(), 1);
    assert_eq!(run.turns, 0);
}

#[tokio::test]
async fn anthropic_401_is_an_api_error() {
    api_error(Api::Anthropic, 401).await;
}

#[tokio::test]
async fn anthropic_500_is_an_api_error() {
    api_error(Api::Anthropic, 500).await;
}

#[tokio::test]
async fn openai_401_is_an_api_error() {
    api_error(Api::OpenAiChat, 401).await;
}

#[tokio::test]
async fn openai_500_is_an_api_error() {
    api_error(Api::OpenAiChat, 500).await;
}

#[tokio::test]
async fn server_errors_are_retried_honouring_retry_after() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![
        rule(
            "busy",
            Match::default(),
            Reply::Error {
                status: 529,
                message: "overloaded".into(),
                retry_after: Some(1),
            },
        )
        .times(1),
        rule("ok", Match::default(), Reply::text("fine")),
    ]))
    .await
    .unwrap();
    let req = fx.in_process(&server.base_url(), Api::Anthropic, AgentMode::Write, "x");
    let mut agent = builtin();
    agent.max_api_retries = 1;
    let started = Instant::now();
    let (run, events) = run(&agent, &req).await;
    assert_eq!(run.outcome, AgentOutcome::Success);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After ignored"
    );
    assert_eq!(server.requests().len(), 2);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Notice { message } if message.contains("retry 1/1")))
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_a_gateway_error() {
    let fx = Fixture::new().await;
    let url = refused_url().await;
    let req = fx.in_process(&url, Api::OpenAiChat, AgentMode::Write, "x");
    let (run, _) = run(&builtin(), &req).await;
    assert!(
        matches!(&run.outcome, AgentOutcome::ApiError { status: Some(502), message }
            if message.contains("could not be reached") && message.contains("Connection refused")),
        "{:?}",
        run.outcome
    );
}

#[tokio::test]
async fn max_turns_stops_and_keeps_the_work() {
    let fx = Fixture::new().await;
    let mut rules = Vec::new();
    for turn in 0..5 {
        rules.push(rule(
            &format!("turn-{turn}"),
            when_turn(turn),
            Reply::tool_call(
                "write_file",
                json!({"path": format!("step-{turn}.txt"), "content": "x"}),
            ),
        ));
    }
    let server = ModelServer::start(Script::new(rules)).await.unwrap();
    let mut req = fx.in_process(&server.base_url(), Api::Anthropic, AgentMode::Write, "loop");
    req.limits.max_turns = 2;
    let (run, _) = run(&builtin(), &req).await;
    assert_eq!(run.outcome, AgentOutcome::MaxTurns { turns: 2 });
    assert_eq!(run.turns, 2);
    assert_eq!(
        fx.tree(),
        ["README.md: # demo\n", "step-0.txt: x", "step-1.txt: x"]
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn hanging_model_times_out_idle() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "hang",
        Match::default(),
        Reply::Hang,
    )]))
    .await
    .unwrap();
    let mut req = fx.in_process(&server.base_url(), Api::Anthropic, AgentMode::Write, "x");
    req.limits.idle = Duration::from_secs(1);
    let started = Instant::now();
    let (run, _) = run(&builtin(), &req).await;
    assert!(
        matches!(
            run.outcome,
            AgentOutcome::TimedOut {
                limit: TimeoutKind::Idle,
                ..
            }
        ),
        "{:?}",
        run.outcome
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn wall_clock_limit_applies_across_turns() {
    let fx = Fixture::new().await;
    let server = ModelServer::start(Script::new(vec![rule(
        "hang",
        Match::default(),
        Reply::Hang,
    )]))
    .await
    .unwrap();
    let mut req = fx.in_process(&server.base_url(), Api::OpenAiChat, AgentMode::Write, "x");
    req.limits.idle = Duration::from_secs(30);
    req.limits.wall_clock = Duration::from_secs(1);
    let started = Instant::now();
    let (run, _) = run(&builtin(), &req).await;
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
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn paths_outside_the_worktree_are_refused() {
    let fx = Fixture::new().await;
    let outside = fx.dir.path().join("outside.txt");
    std::os::unix::fs::symlink(fx.dir.path(), fx.workdir.join("up")).unwrap();
    let server = ModelServer::start(Script::new(vec![
        rule(
            "escape",
            when_turn(0),
            Reply::tool_calls(vec![
                ToolCall::new(
                    "write_file",
                    json!({"path": "../outside.txt", "content": "x"}),
                ),
                ToolCall::new(
                    "write_file",
                    json!({"path": outside.display().to_string(), "content": "x"}),
                ),
                ToolCall::new(
                    "write_file",
                    json!({"path": "up/outside.txt", "content": "x"}),
                ),
                ToolCall::new("read_file", json!({"path": "/etc/hostname"})),
            ]),
        ),
        rule("done", when_turn(1), Reply::text("gave up")),
    ]))
    .await
    .unwrap();
    let req = fx.in_process(
        &server.base_url(),
        Api::Anthropic,
        AgentMode::Write,
        "escape",
    );
    let (run, events) = run(&builtin(), &req).await;
    assert_eq!(run.outcome, AgentOutcome::Success);
    assert!(!outside.exists());
    let results = tool_results(&events);
    assert_eq!(results.len(), 4);
    for (is_error, output) in &results {
        assert!(is_error, "{output}");
        assert!(output.contains("outside the worktree"), "{output}");
    }
    // The errors went back to the model as error tool results.
    let last = server.requests_for_rule("done");
    assert_eq!(last[0].view.tool_results, 4);
    assert!(last[0].view.last_text().contains("outside the worktree"));
}
