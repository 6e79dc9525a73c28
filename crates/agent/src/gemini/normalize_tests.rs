//! Unit tests of the pure mapping and judgement, replayed on recorded Gemini CLI runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use codemill_core::agent::AgentEvent;

/// Replays a recorded run line by line, exactly as the client feeds stdout.
fn replay(name: &str) -> (Vec<AgentEvent>, Normalizer) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gemini")
        .join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut normalizer = Normalizer::new();
    let mut events = Vec::new();
    for line in text.split_inclusive('\n') {
        events.extend(normalizer.push_line(line));
    }
    events.extend(normalizer.finish());
    (events, normalizer)
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
    assert_eq!(n.judge(Some(0), ""), AgentOutcome::Success);
    assert_eq!(n.turns(), 4);
    assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
    assert_eq!(
        n.usage(),
        Usage {
            input_tokens: 50485,
            output_tokens: 69,
            cache_read_tokens: 0,
            cache_write_tokens: 0
        }
    );
    // Only the last turn carries usage, so the turns sum to the run's total.
    let last = events.iter().rev().find_map(|e| match e {
        AgentEvent::TurnCompleted { turn, usage } => Some((*turn, *usage)),
        _ => None,
    });
    assert_eq!(last, Some((4, n.usage())));
}

#[test]
fn resumed_run_appends_to_the_same_log() {
    let (events, n) = replay("resume");
    insta::assert_json_snapshot!(events);
    assert_eq!(n.judge(Some(0), ""), AgentOutcome::Success);
    assert_eq!(n.final_text(), "Fixed.");
    let sessions: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::SessionStarted { session_id, .. } => Some(session_id),
            _ => None,
        })
        .collect();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0], sessions[1]);
}

#[test]
fn read_only_run_has_failed_write_calls() {
    let (events, n) = replay("read_only");
    insta::assert_json_snapshot!(events);
    assert_eq!(n.judge(Some(0), ""), AgentOutcome::Success);
    assert_eq!(n.turns(), 2);
    assert_eq!(n.final_text(), "{\"findings\": []}");
}

#[test]
fn api_errors_carry_their_status() {
    // Exit codes as measured: the HTTP status modulo 256.
    for (status, exit) in [(401, 145), (429, 173), (500, 244)] {
        let (events, n) = replay(&format!("api_error_{status}"));
        let expected = AgentOutcome::ApiError {
            status: Some(status),
            message: format!("scripted {status}"),
        };
        assert_eq!(n.judge(Some(exit), ""), expected, "{events:#?}");
        // The message alone is enough (the exit code may be lost when killed at the end).
        assert_eq!(n.judge(None, ""), expected);
        assert_eq!(n.turns(), 0);
        assert_eq!(n.usage(), Usage::default());
    }
    let (events, _) = replay("api_error_401");
    insta::assert_json_snapshot!(events);
}

#[test]
fn api_error_messages() {
    assert_eq!(
        api_error(
            "[API Error: exception TypeError: fetch failed sending request]",
            Some(1)
        ),
        (
            None,
            "exception TypeError: fetch failed sending request".into()
        )
    );
    assert_eq!(
        api_error("[API Error: overloaded]", Some(503 - 256)),
        (Some(503), "overloaded".into())
    );
    // The form the CLI gives errors that arrive as text with a Google error JSON in it.
    assert_eq!(
        api_error("[API Error: nope (Status: PERMISSION_DENIED)]", None),
        (Some(403), "nope (Status: PERMISSION_DENIED)".into())
    );
    assert_eq!(
        api_error(
            "[API Error: {\"error\":{\"message\":\"denied\",\"status\":\"PERMISSION_DENIED\"}}]",
            Some(1)
        ),
        (Some(403), "denied".into())
    );
    // The CLI's own exit codes (41–55) are never read as statuses.
    assert_eq!(api_error("[API Error: x]", Some(53)).0, None);
}

#[test]
fn turn_limit_run_is_max_turns() {
    let (events, n) = replay("max_turns");
    insta::assert_json_snapshot!(events);
    assert_eq!(n.judge(Some(53), ""), AgentOutcome::MaxTurns { turns: 2 });
    assert!(n.usage().input_tokens > 0);
}

#[test]
fn killed_run_without_result() {
    let (events, n) = replay("hang");
    insta::assert_json_snapshot!(events);
    assert!(n.result().is_none());
    assert_eq!(n.turns(), 1);
    assert_eq!(n.judge(None, ""), AgentOutcome::Killed);
}

#[test]
fn loop_detection_is_not_success() {
    let (events, n) = replay("loop_detected");
    assert_eq!(n.result().unwrap().status, "success");
    assert_eq!(
        n.judge(Some(0), ""),
        AgentOutcome::Failed {
            message: "Gemini CLI stopped the run: loop detected".into()
        }
    );
    assert_eq!(
        notices(&events),
        ["Gemini CLI warning: Loop detected, stopping execution"]
    );
    assert_eq!(n.turns(), 4);
}

#[test]
fn empty_model_response_is_a_failure_despite_exit_zero() {
    let (events, n) = replay("empty_response");
    insta::assert_json_snapshot!(events);
    assert_eq!(
        n.judge(Some(0), ""),
        AgentOutcome::Failed {
            message: "The model returned an empty response with no text or thoughts. This may \
                      be a transient API issue; please try again."
                .into()
        }
    );
}

#[test]
fn unknown_event_types_are_skipped_with_one_notice_each() {
    let (events, n) = replay("unknown_event_type");
    insta::assert_json_snapshot!(events);
    assert_eq!(
        notices(&events),
        [
            "skipped unknown Gemini CLI event type `progress`",
            "skipped unknown Gemini CLI event type `checkpoint`"
        ]
    );
    assert_eq!(n.judge(Some(0), ""), AgentOutcome::Success);
    assert_eq!(n.turns(), 4);
    // Everything else is the same as the run without the extra lines.
    let (plain, _) = replay("write");
    let known: Vec<_> = events
        .into_iter()
        .filter(|e| !matches!(e, AgentEvent::Notice { .. }))
        .collect();
    assert_eq!(known, plain);
}

#[test]
fn truncated_last_line_is_a_notice_and_no_result() {
    let (events, n) = replay("truncated_last_line");
    // The cut line is skipped with a notice; pending text and the open turn still close.
    let tail = &events[events.len() - 3..];
    assert!(
        matches!(&tail[0], AgentEvent::Notice { message } if message.contains("not JSON")),
        "{tail:?}"
    );
    assert_eq!(
        tail[1],
        AgentEvent::Text {
            text: "Done: hello.txt and copy.txt.".into()
        }
    );
    assert!(matches!(
        tail[2],
        AgentEvent::TurnCompleted { turn: 4, usage } if usage == Usage::default()
    ));
    assert!(n.result().is_none());
    assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
    assert_eq!(
        n.judge(Some(1), "boom\n"),
        AgentOutcome::Failed {
            message: "Gemini CLI exited with status 1 without a result: boom".into()
        }
    );
}

#[test]
fn other_error_results() {
    let mut n = Normalizer::new();
    n.push_line(
        r#"{"type":"result","status":"error","error":{"type":"FatalCancellationError","message":"Operation cancelled."}}"#,
    );
    assert_eq!(n.judge(Some(130), ""), AgentOutcome::Killed);
    let mut n = Normalizer::new();
    n.push_line(
        r#"{"type":"result","status":"error","error":{"type":"FatalToolExecutionError","message":"[API Error: Error executing tool x: disk full]"}}"#,
    );
    assert_eq!(
        n.judge(Some(54), ""),
        AgentOutcome::Failed {
            message: "FatalToolExecutionError: Error executing tool x: disk full".into()
        }
    );
    // Resuming an unknown session: exit 42 before any output.
    let n = Normalizer::new();
    assert!(matches!(
        n.judge(Some(42), "Error resuming session: Invalid session identifier \"x\".\n"),
        AgentOutcome::Failed { message } if message.contains("Error resuming session")
    ));
}

#[test]
fn odd_lines_never_fail() {
    let mut n = Normalizer::new();
    assert!(n.push_line("\n").is_empty());
    assert_eq!(n.push_line("not json").len(), 1);
    assert_eq!(
        n.push_line(r#"{"type": "message", "role": "assistant", "content": 5}"#)
            .len(),
        1
    );
    assert_eq!(n.push_line(r#"{"no_type": true}"#).len(), 1);
    assert!(
        n.push_line(r#"{"type": "message", "role": "user", "content": "hi"}"#)
            .is_empty()
    );
    assert_eq!(n.turns(), 0);
}

#[test]
fn tool_summaries() {
    use serde_json::json;
    assert_eq!(
        tool_summary("run_shell_command", &json!({"command": "ls -la\necho"})),
        "ls -la…"
    );
    assert_eq!(
        tool_summary("list_directory", &json!({"dir_path": "src"})),
        "src"
    );
    assert_eq!(
        tool_summary("some_mcp_tool", &json!({"n": 1, "target": "x"})),
        "x"
    );
}
