//! Unit tests of the Codex normalizer on recorded `exec --json` runs (`tests/fixtures/codex`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use codemill_core::agent::AgentEvent;

/// The worktree path the recorded fixtures show (the recording replaced the temp dir).
const WORKDIR: &str = "/tmp/codemill-fixture/worktree";

/// Replays a recorded run line by line, exactly as the client feeds stdout.
fn replay(name: &str) -> (Vec<AgentEvent>, Normalizer) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/codex")
        .join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut normalizer = Normalizer::new(Some("gpt-5.5".into()), Some(WORKDIR.into()));
    let mut events = Vec::new();
    for line in text.split_inclusive('\n') {
        events.extend(normalizer.push_line(line));
    }
    events.extend(normalizer.finish());
    (events, normalizer)
}

fn turn_usages(events: &[AgentEvent]) -> Vec<(u32, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TurnCompleted { turn, usage } => Some((*turn, usage.total())),
            _ => None,
        })
        .collect()
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
    assert_eq!(judge(&n, Some(0), ""), AgentOutcome::Success);
    assert_eq!(n.turns(), 4);
    assert!(!n.response_due());
    assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
    // The Codex turn's usage sits on its last response.
    let turns = turn_usages(&events);
    assert_eq!(turns.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(turns[..3].iter().all(|t| t.1 == 0), "{turns:?}");
    assert_eq!(turns[3].1, n.usage().total());
    let usage = n.usage();
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
}

#[test]
fn resumed_run_appends_to_the_same_log() {
    let (events, n) = replay("resume");
    insta::assert_json_snapshot!(events);
    assert_eq!(judge(&n, Some(0), ""), AgentOutcome::Success);
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
    // Two Codex turns of one response each; usage is summed over both.
    assert_eq!(n.turns(), 2);
    let total: u64 = turn_usages(&events).iter().map(|t| t.1).sum();
    assert_eq!(total, n.usage().total());
}

#[test]
fn read_only_run_shows_only_what_ran() {
    let (events, n) = replay("read_only");
    insta::assert_json_snapshot!(events);
    assert_eq!(judge(&n, Some(0), ""), AgentOutcome::Success);
    assert_eq!(n.final_text(), "{\"findings\": []}");
    // Both responses show, the first only through its one permitted command: the three
    // refused calls left no trace in the stream.
    assert_eq!(n.turns(), 2);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, AgentEvent::ToolCall { .. }))
            .count(),
        1
    );
}

#[test]
fn unauthorized_run_is_an_api_error() {
    let (events, n) = replay("api_error_401");
    insta::assert_json_snapshot!(events);
    assert!(matches!(
        judge(&n, Some(1), ""),
        AgentOutcome::ApiError {
            status: Some(401),
            ..
        }
    ));
    assert_eq!(n.turns(), 0);
}

#[test]
fn rate_limited_and_server_error_runs_are_api_errors() {
    let (_, n) = replay("api_error_429");
    assert!(matches!(
        judge(&n, Some(1), ""),
        AgentOutcome::ApiError {
            status: Some(429),
            ..
        }
    ));
    let (events, n) = replay("api_error_500");
    insta::assert_json_snapshot!(events);
    assert!(matches!(
        judge(&n, Some(1), ""),
        AgentOutcome::ApiError {
            status: Some(500),
            ..
        }
    ));
}

#[test]
fn killed_at_the_turn_limit() {
    let (events, n) = replay("max_turns");
    insta::assert_json_snapshot!(events);
    // Two responses ran their command; the third was due when the client killed Codex.
    assert_eq!(n.turns(), 2);
    assert!(n.response_due());
    assert_eq!(judge(&n, None, ""), AgentOutcome::Killed);
}

#[test]
fn killed_while_the_model_hangs() {
    let (events, n) = replay("hang");
    assert!(matches!(
        events.as_slice(),
        [AgentEvent::SessionStarted { .. }]
    ));
    assert!(n.thread_id().is_some());
    assert_eq!(n.turns(), 0);
    assert_eq!(judge(&n, None, ""), AgentOutcome::Killed);
}

#[test]
fn parallel_calls_of_one_response_count_as_turns() {
    let (events, n) = replay("parallel_calls");
    insta::assert_json_snapshot!(events);
    assert_eq!(judge(&n, Some(0), ""), AgentOutcome::Success);
    // The model answered twice; three calls of one answer look like three answers.
    assert_eq!(n.turns(), 4);
}

#[test]
fn unknown_event_types_are_skipped_with_one_notice_each() {
    let (events, n) = replay("unknown_event_type");
    insta::assert_json_snapshot!(events);
    assert_eq!(
        notices(&events),
        [
            "skipped unknown Codex event type `thread.goal.updated`",
            "skipped unknown Codex item type `image_view`",
        ]
    );
    assert_eq!(judge(&n, Some(0), ""), AgentOutcome::Success);
    assert_eq!(n.turns(), 4);
}

#[test]
fn truncated_last_line_is_a_notice_and_no_result() {
    let (events, n) = replay("truncated_last_line");
    // The cut line is skipped with a notice; the open response still closes at the end.
    let tail = &events[events.len() - 2..];
    assert!(
        matches!(&tail[0], AgentEvent::Notice { message } if message.contains("not JSON")),
        "{tail:?}"
    );
    assert!(matches!(tail[1], AgentEvent::TurnCompleted { turn: 4, .. }));
    assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
    assert_eq!(
        judge(
            &n,
            Some(1),
            "Reading additional input from stdin...\nboom\n"
        ),
        AgentOutcome::Failed {
            message: "Codex exited with status 1 without finishing its turn: boom".into()
        }
    );
    assert_eq!(judge(&n, None, ""), AgentOutcome::Killed);
}

#[test]
fn failure_messages_are_classified() {
    let api = |status: Option<u16>, message: &str| AgentOutcome::ApiError {
        status,
        message: message.into(),
    };
    for (message, status) in [
        (
            "unexpected status 403 Forbidden: no, url: http://127.0.0.1:1/v1/responses",
            Some(403),
        ),
        (
            "unexpected status 529 <unknown status code>: busy, url: http://x/v1/responses",
            Some(529),
        ),
        (
            "exceeded retry limit, last status: 429 Too Many Requests",
            Some(429),
        ),
        (
            "We\u{2019}re currently experiencing high demand, which may cause temporary errors.",
            Some(500),
        ),
        (
            r#"{"error": {"message": "bad", "type": "invalid_request_error"}}"#,
            Some(400),
        ),
        ("Connection failed: error sending request", None),
        (
            "stream disconnected before completion: idle timeout waiting for SSE",
            None,
        ),
    ] {
        assert_eq!(classify_failure(message), api(status, message), "{message}");
    }
    assert_eq!(
        classify_failure("Codex ran out of room in the model's context window."),
        AgentOutcome::Failed {
            message: "Codex ran out of room in the model's context window.".into()
        }
    );
}

#[test]
fn success_with_a_bad_exit_and_errors_without_a_turn_end() {
    let mut n = Normalizer::new(None, None);
    n.push_line(r#"{"type":"turn.started"}"#);
    n.push_line(r#"{"type":"turn.completed","usage":{"input_tokens":5}}"#);
    assert_eq!(n.turns(), 1, "a completed turn had a response");
    assert!(matches!(
        judge(&n, Some(2), ""),
        AgentOutcome::Failed { .. }
    ));
    let mut n = Normalizer::new(None, None);
    n.push_line(r#"{"type":"error","message":"unexpected status 502 Bad Gateway: x"}"#);
    assert!(matches!(
        judge(&n, Some(1), ""),
        AgentOutcome::ApiError {
            status: Some(502),
            ..
        }
    ));
    let n = Normalizer::new(None, None);
    let judged = judge(
        &n,
        Some(1),
        "Error loading config.toml: unknown configuration field `x`",
    );
    assert!(
        matches!(&judged, AgentOutcome::Failed { message } if message.contains("unknown configuration field")),
        "{judged:?}"
    );
}

#[test]
fn odd_lines_never_fail() {
    let mut n = Normalizer::new(None, None);
    assert!(n.push_line("\n").is_empty());
    assert_eq!(n.push_line("not json").len(), 1);
    assert_eq!(
        n.push_line(r#"{"type": "item.completed", "item": 5}"#)
            .len(),
        1
    );
    assert_eq!(n.push_line(r#"{"no_type": true}"#).len(), 1);
    assert!(
        n.push_line(r#"{"type": "item.updated", "item": {}}"#)
            .is_empty()
    );
    let warning = n.push_line(
        r#"{"type":"item.completed","item":{"id":"i","type":"error","message":"deprecated key"}}"#,
    );
    assert_eq!(
        warning,
        [AgentEvent::Notice {
            message: "Codex warning: deprecated key".into()
        }]
    );
    // A warning is not model output: no turn.
    assert_eq!(n.turns(), 0);
}

#[test]
fn shell_wrappers_are_unwrapped_when_plain() {
    assert_eq!(shell_body("/bin/bash -c 'ls -la'"), "ls -la");
    assert_eq!(shell_body("/bin/bash -lc 'echo hi'"), "echo hi");
    assert_eq!(
        shell_body("/bin/bash -c 'echo '\\''x'\\'''"),
        "'echo '\\''x'\\'''"
    );
    assert_eq!(shell_body("git status"), "git status");
}
