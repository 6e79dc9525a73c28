//! Unit tests of the opencode normalizer and judgement on recorded runs
//! (`tests/fixtures/opencode/*.jsonl`, see the README there).

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use codemill_core::agent::AgentEvent;

/// Replays a recorded run line by line, exactly as the client feeds stdout.
fn replay(name: &str) -> (Vec<AgentEvent>, Normalizer) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/opencode")
        .join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut normalizer = Normalizer::new(Some("claude-sonnet-4-5".into()));
    let mut events = Vec::new();
    for line in text.split_inclusive('\n') {
        events.extend(normalizer.push_line(line));
    }
    events.extend(normalizer.finish());
    (events, normalizer)
}

fn outcome(n: &Normalizer, exit_code: Option<i32>) -> AgentOutcome {
    judge(n.error(), exit_code, "", n.turns())
}

fn notices(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Notice { message } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn write_run() {
    let (events, n) = replay("write");
    insta::assert_json_snapshot!(events);
    assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
    assert_eq!(n.turns(), 4);
    assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
    assert!(n.session_id().unwrap().starts_with("ses_"));
    let usage = n.usage();
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
    // Four finished steps, each with its own usage.
    let turns: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TurnCompleted { turn, usage } => {
                assert!(usage.input_tokens > 0);
                Some(*turn)
            }
            _ => None,
        })
        .collect();
    assert_eq!(turns, [1, 2, 3, 4]);
    assert!(!n.over_turn_limit(4));
    assert!(n.over_turn_limit(3));
}

#[test]
fn resumed_run_appends_to_the_same_log() {
    let (events, n) = replay("resume");
    insta::assert_json_snapshot!(events);
    assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
    assert_eq!(n.final_text(), "Fixed.");
    // Both runs share the session; the backend reports it once per normalizer.
    let started = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::SessionStarted { .. }))
        .count();
    assert_eq!(started, 1);
    assert_eq!(n.turns(), 2);
}

#[test]
fn read_only_run_has_failed_write_calls() {
    let (events, n) = replay("read_only");
    insta::assert_json_snapshot!(events);
    assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
    assert_eq!(n.final_text(), "{\"findings\": []}");
    let failed = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ToolResult { is_error: true, .. }))
        .count();
    assert_eq!(failed, 3);
}

#[test]
fn api_errors_carry_the_status() {
    for status in [401, 429, 500] {
        let (events, n) = replay(&format!("api_error_{status}"));
        assert_eq!(
            outcome(&n, Some(1)),
            AgentOutcome::ApiError {
                status: Some(status),
                message: format!("scripted {status} failure"),
            }
        );
        assert_eq!(n.turns(), 0);
        assert!(matches!(events[0], AgentEvent::SessionStarted { .. }));
        assert_eq!(
            notices(&events),
            [format!(
                "opencode error APIError (status {status}): scripted {status} failure"
            )]
        );
    }
}

#[test]
fn refused_connection_is_an_api_error_without_status() {
    let (events, n) = replay("api_error_refused");
    insta::assert_json_snapshot!(events);
    assert!(matches!(
        outcome(&n, Some(1)),
        AgentOutcome::ApiError { status: None, message } if message.starts_with("Cannot connect")
    ));
}

#[test]
fn turn_limit_run_wants_more_turns() {
    let (events, n) = replay("max_turns");
    insta::assert_json_snapshot!(events);
    // Both steps ended asking for tools: at a limit of 2 the client kills it here.
    assert_eq!(n.turns(), 2);
    assert!(n.over_turn_limit(2));
    assert!(!n.over_turn_limit(3));
}

#[test]
fn unknown_event_types_are_skipped_with_one_notice() {
    let (events, n) = replay("unknown_event_type");
    insta::assert_json_snapshot!(events);
    assert_eq!(
        notices(&events),
        ["skipped unknown opencode event type `session_status`"]
    );
    // The known lines still map exactly as in the plain run.
    let (plain, _) = replay("write");
    let known: Vec<_> = events
        .iter()
        .filter(|e| !matches!(e, AgentEvent::Notice { .. }))
        .cloned()
        .collect();
    assert_eq!(known, plain);
    assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
}

#[test]
fn truncated_last_line_is_a_notice_and_closes_the_turn() {
    let (events, n) = replay("truncated_last_line");
    // The cut `step_finish` is skipped with a notice; the open step still closes at the end.
    let tail = &events[events.len() - 2..];
    assert!(
        matches!(&tail[0], AgentEvent::Notice { message } if message.contains("not JSON")),
        "{tail:?}"
    );
    assert_eq!(
        tail[1],
        AgentEvent::TurnCompleted {
            turn: 4,
            usage: Usage::default()
        }
    );
    assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
    assert_eq!(
        judge(
            n.error(),
            Some(1),
            "\u{1b}[91mError: \u{1b}[0mboom\n",
            n.turns()
        ),
        AgentOutcome::Failed {
            message: "opencode exited with status 1: Error: boom".into()
        }
    );
}

#[test]
fn clean_exit_without_a_turn_is_not_trusted() {
    assert!(matches!(
        judge(None, Some(0), "", 0),
        AgentOutcome::Failed { message } if message.contains("without running the model")
    ));
    assert_eq!(judge(None, None, "", 2), AgentOutcome::Killed);
    // Unknown session on resume: no line at all, the reason is on stderr.
    assert_eq!(
        judge(None, Some(1), "Error: Session not found\n", 0),
        AgentOutcome::Failed {
            message: "opencode exited with status 1: Error: Session not found".into()
        }
    );
}

#[test]
fn other_errors_are_failures() {
    let error: RawError = serde_json::from_value(serde_json::json!({
        "name": "UnknownError", "data": {"message": "disk full"}
    }))
    .unwrap();
    assert_eq!(
        judge(Some(&error), Some(1), "", 1),
        AgentOutcome::Failed {
            message: "opencode UnknownError: disk full".into()
        }
    );
    let auth: RawError = serde_json::from_value(serde_json::json!({
        "name": "ProviderAuthError", "data": {"providerID": "codemill", "message": "no key"}
    }))
    .unwrap();
    assert_eq!(
        judge(Some(&auth), Some(1), "", 0),
        AgentOutcome::ApiError {
            status: None,
            message: "no key".into()
        }
    );
}

#[test]
fn odd_lines_never_fail() {
    let mut n = Normalizer::new(None);
    assert!(n.push_line("\n").is_empty());
    assert_eq!(n.push_line("not json").len(), 1);
    // A known type whose fields do not fit.
    assert_eq!(n.push_line(r#"{"type": "text", "part": 5}"#).len(), 1);
    assert_eq!(n.push_line(r#"{"no_type": true}"#).len(), 1);
    // A finish without a start still counts as a model call.
    let events = n.push_line(
        r#"{"type":"step_finish","sessionID":"ses_1","part":{"reason":"stop","tokens":{"input":1.5,"output":2,"reasoning":3,"cache":{"read":4,"write":5}}}}"#,
    );
    assert_eq!(
        events,
        [
            AgentEvent::SessionStarted {
                session_id: "ses_1".into(),
                model: None
            },
            AgentEvent::TurnCompleted {
                turn: 1,
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 5,
                    cache_read_tokens: 4,
                    cache_write_tokens: 5,
                }
            }
        ]
    );
    assert_eq!(n.turns(), 1);
}

#[test]
fn tool_summaries() {
    let summary = |name: &str, input: serde_json::Value| tool_summary(name, &input);
    assert_eq!(
        summary("bash", serde_json::json!({"command": "ls -la\nrm x"})),
        "ls -la…"
    );
    assert_eq!(
        summary("edit", serde_json::json!({"filePath": "a.rs"})),
        "a.rs"
    );
    assert_eq!(
        summary("glob", serde_json::json!({"pattern": "**/*.rs"})),
        "**/*.rs"
    );
    assert_eq!(
        summary("mcp_thing", serde_json::json!({"n": 1, "q": "hello"})),
        "hello"
    );
}
