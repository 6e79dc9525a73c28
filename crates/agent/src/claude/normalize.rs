//! Pure mapping from Claude Code's stream-json lines to [`AgentEvent`]s, and the outcome judgement.
//!
//! No IO here: the client feeds lines in and sends the events out, so both halves are tested on
//! recorded runs (`tests/fixtures/claude/*.jsonl`).

use std::collections::BTreeSet;

use codemill_core::agent::{AgentEvent, AgentOutcome};
use codemill_core::cost::Usage;
use serde::Deserialize;
use serde_json::Value;

use super::protocol::{
    RawAssistant, RawBlock, RawContent, RawEvent, RawResult, RawSystem, RawUser,
};
use crate::text::{one_line, truncate};

/// Tool output shown in events is cut to this many bytes; the full text is in the raw log.
const EVENT_OUTPUT_MAX: usize = 2000;
/// Claude Code marks messages it made up itself (API errors) with this model name.
const SYNTHETIC_MODEL: &str = "<synthetic>";

/// Turns stream-json lines into normalised events, remembering what the outcome needs.
///
/// `TurnCompleted.usage` is what the CLI put on the message's lines, which it writes before the
/// stream ends: input tokens are right, output tokens are the streaming placeholder. The run's
/// total comes from the `result` line and is exact.
#[derive(Debug, Default)]
pub(crate) struct Normalizer {
    turns: u32,
    /// The assistant API message whose blocks are still arriving (one line per block).
    open: Option<OpenTurn>,
    unknown_types: BTreeSet<String>,
    session_id: Option<String>,
    last_text: Option<String>,
    result: Option<RawResult>,
}

#[derive(Debug)]
struct OpenTurn {
    message_id: String,
    usage: Usage,
}

impl Normalizer {
    pub(crate) fn new() -> Normalizer {
        Normalizer::default()
    }

    /// Model turns seen so far (top-level API messages, not counting sub-agents or synthetic ones).
    pub(crate) fn turns(&self) -> u32 {
        self.turns
    }

    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The final `result` line, once seen.
    pub(crate) fn result(&self) -> Option<&RawResult> {
        self.result.as_ref()
    }

    /// The answer: the result text, else the last assistant text.
    pub(crate) fn final_text(&self) -> String {
        self.result
            .as_ref()
            .and_then(|r| r.result.clone())
            .or_else(|| self.last_text.clone())
            .unwrap_or_default()
    }

    /// One raw stdout line. Lines that are not JSON or do not fit become a `Notice`, never an error.
    pub(crate) fn push_line(&mut self, line: &str) -> Vec<AgentEvent> {
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                return vec![notice(format!(
                    "skipped a Claude Code output line that is not JSON ({e}): {}",
                    one_line(line, 200)
                ))];
            }
        };
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match RawEvent::deserialize(&value) {
            Ok(RawEvent::Unknown) => {
                // Once per type: a newer CLI may emit many lines of a type we do not read.
                if self.unknown_types.insert(kind.clone()) {
                    vec![notice(format!(
                        "skipped unknown Claude Code event type `{kind}`"
                    ))]
                } else {
                    Vec::new()
                }
            }
            Ok(event) => self.push(event),
            Err(e) => vec![notice(format!(
                "skipped a Claude Code `{kind}` line that did not parse ({e})"
            ))],
        }
    }

    /// One parsed event.
    pub(crate) fn push(&mut self, event: RawEvent) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        match event {
            RawEvent::System(system) => self.system(system, &mut out),
            RawEvent::Assistant(assistant) => self.assistant(assistant, &mut out),
            RawEvent::User(user) => self.user(user, &mut out),
            RawEvent::Result(result) => {
                self.close_turn(&mut out);
                for denial in &result.permission_denials {
                    out.push(notice(format!(
                        "permission denied: {} {}",
                        denial.tool_name,
                        tool_summary(&denial.tool_name, &denial.tool_input)
                    )));
                }
                if self.session_id.is_none() {
                    self.session_id = result.session_id.clone();
                }
                self.result = Some(result);
            }
            RawEvent::Unknown => {}
        }
        out
    }

    /// End of output: a turn still open is complete now.
    pub(crate) fn finish(&mut self) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        self.close_turn(&mut out);
        out
    }

    fn system(&mut self, system: RawSystem, out: &mut Vec<AgentEvent>) {
        match system.subtype.as_str() {
            "init" => {
                if let Some(id) = system.session_id {
                    self.session_id = Some(id.clone());
                    out.push(AgentEvent::SessionStarted {
                        session_id: id,
                        model: system.model,
                    });
                }
            }
            "api_retry" => {
                let status = system
                    .error_status
                    .map(|s| format!("status {s}"))
                    .unwrap_or_else(|| "no status".into());
                out.push(notice(format!(
                    "model API call failed ({status}, {}); retry {}/{}",
                    system.error.as_deref().unwrap_or("unknown error"),
                    system.attempt.unwrap_or(0),
                    system.max_retries.unwrap_or(0)
                )));
            }
            // hooks, compaction boundaries, status lines: nothing a caller acts on.
            _ => {}
        }
    }

    fn assistant(&mut self, assistant: RawAssistant, out: &mut Vec<AgentEvent>) {
        let message = assistant.message;
        let top_level = assistant.parent_tool_use_id.is_none();
        if message.model.as_deref() == Some(SYNTHETIC_MODEL) {
            // Claude Code's own error text (e.g. "API Error: 500 ..."): not a model turn.
            self.close_turn(out);
            for text in block_texts(&message.content) {
                out.push(notice(format!("Claude Code: {text}")));
            }
            return;
        }
        if top_level {
            let id = message.id.clone().unwrap_or_default();
            if self.open.as_ref().is_none_or(|t| t.message_id != id) {
                self.close_turn(out);
                self.turns += 1;
                self.open = Some(OpenTurn {
                    message_id: id,
                    usage: Usage::default(),
                });
            }
            if let (Some(open), Some(usage)) = (self.open.as_mut(), message.usage) {
                open.usage = usage.to_usage();
            }
        }
        let RawContent::Blocks(blocks) = message.content else {
            return;
        };
        for block in blocks {
            match block {
                RawBlock::Text { text } if !text.trim().is_empty() => {
                    if top_level {
                        self.last_text = Some(text.clone());
                    }
                    out.push(AgentEvent::Text { text });
                }
                RawBlock::ToolUse { id, name, input } => {
                    let summary = tool_summary(&name, &input);
                    out.push(AgentEvent::ToolCall { id, name, summary });
                }
                _ => {}
            }
        }
    }

    fn user(&mut self, user: RawUser, out: &mut Vec<AgentEvent>) {
        if user.parent_tool_use_id.is_none() {
            self.close_turn(out);
        }
        let RawContent::Blocks(blocks) = user.message.content else {
            return;
        };
        for block in blocks {
            if let RawBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } = block
            {
                out.push(AgentEvent::ToolResult {
                    id: tool_use_id,
                    is_error: is_error.unwrap_or(false),
                    output: truncate(&result_text(&content), EVENT_OUTPUT_MAX),
                });
            }
        }
    }

    fn close_turn(&mut self, out: &mut Vec<AgentEvent>) {
        if let Some(turn) = self.open.take() {
            out.push(AgentEvent::TurnCompleted {
                turn: self.turns,
                usage: turn.usage,
            });
        }
    }
}

fn notice(message: String) -> AgentEvent {
    AgentEvent::Notice { message }
}

fn block_texts(content: &RawContent) -> Vec<String> {
    match content {
        RawContent::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                RawBlock::Text { text } => Some(text.clone()),
                _ => None,
            })
            .collect(),
        RawContent::Text(text) => vec![text.clone()],
        RawContent::Other(_) => Vec::new(),
    }
}

/// A tool result's content: a string, or a list of text blocks.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| item.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One line saying what a Claude Code tool call touches: the path, the command, the pattern.
pub(crate) fn tool_summary(name: &str, input: &Value) -> String {
    let field = |key: &str| input.get(key).and_then(Value::as_str);
    let picked = match name {
        "Bash" => field("command"),
        "Read" | "Write" | "Edit" | "MultiEdit" => field("file_path"),
        "NotebookEdit" => field("notebook_path"),
        "Grep" | "Glob" => field("pattern"),
        "Task" | "Agent" => field("description"),
        "WebFetch" => field("url"),
        "WebSearch" => field("query"),
        _ => None,
    };
    let text = match picked {
        Some(text) => text.to_string(),
        // Unknown tools: the first string argument is usually the interesting one.
        None => input
            .as_object()
            .and_then(|o| o.values().find_map(Value::as_str))
            .map(str::to_string)
            .unwrap_or_default(),
    };
    one_line(&text, 200)
}

/// How the run ended, from the result line (if any), the exit code and stderr.
///
/// `exit_code` is `None` when the process was killed by a signal. `turns` is what the
/// [`Normalizer`] counted; Claude Code's own `num_turns` counts one more at the turn limit.
pub(crate) fn judge(
    result: Option<&RawResult>,
    exit_code: Option<i32>,
    stderr: &str,
    turns: u32,
) -> AgentOutcome {
    let Some(result) = result else {
        let tail = stderr_tail(stderr);
        return match exit_code {
            Some(0) => AgentOutcome::Failed {
                message: format!("Claude Code exited without a result line{tail}"),
            },
            Some(code) => AgentOutcome::Failed {
                message: format!("Claude Code exited with status {code} without a result{tail}"),
            },
            None => AgentOutcome::Killed,
        };
    };
    let message = || {
        result
            .result
            .clone()
            .filter(|r| !r.trim().is_empty())
            .or_else(|| {
                let errors: Vec<String> = result
                    .errors
                    .iter()
                    .map(|e| e.as_str().map(str::to_string).unwrap_or(e.to_string()))
                    .collect();
                (!errors.is_empty()).then(|| errors.join("; "))
            })
            .unwrap_or_else(|| result.subtype.clone())
    };
    if result.subtype == "error_max_turns" || result.terminal_reason.as_deref() == Some("max_turns")
    {
        let turns = if turns > 0 {
            turns
        } else {
            result.num_turns.unwrap_or(0)
        };
        return AgentOutcome::MaxTurns { turns };
    }
    if result.is_error.unwrap_or(false) {
        if let Some(status) = result.api_error_status {
            return AgentOutcome::ApiError {
                status: Some(status),
                message: message(),
            };
        }
        // Claude Code reports failed API calls (timeouts, refused connections) as an erroring
        // "success"; a real execution error has its own subtype.
        if result.subtype == "success" {
            return AgentOutcome::ApiError {
                status: None,
                message: message(),
            };
        }
        if let Some(denial) = result.permission_denials.first() {
            return AgentOutcome::PermissionDenied {
                action: format!(
                    "{} {}",
                    denial.tool_name,
                    tool_summary(&denial.tool_name, &denial.tool_input)
                ),
            };
        }
        return AgentOutcome::Failed { message: message() };
    }
    match exit_code {
        // None: the CLI wrote its result but lingered and was killed; the work is done.
        Some(0) | None => AgentOutcome::Success,
        Some(code) => AgentOutcome::Failed {
            message: format!("Claude Code reported success but exited with status {code}"),
        },
    }
}

fn stderr_tail(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let start = trimmed
        .char_indices()
        .rev()
        .nth(500)
        .map(|(i, _)| i)
        .unwrap_or(0);
    format!(": {}", &trimmed[start..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use codemill_core::agent::AgentEvent;

    /// Replays a recorded run line by line, exactly as the client feeds stdout.
    fn replay(name: &str) -> (Vec<AgentEvent>, Normalizer) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/claude")
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

    fn outcome(n: &Normalizer, exit_code: Option<i32>) -> AgentOutcome {
        judge(n.result(), exit_code, "", n.turns())
    }

    #[test]
    fn write_run() {
        let (events, n) = replay("write");
        insta::assert_json_snapshot!(events);
        assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
        assert_eq!(n.turns(), 3);
        assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
        let result = n.result().unwrap();
        assert!(result.total_cost_usd.unwrap() > 0.0);
        let usage = result.usage.unwrap().to_usage();
        assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    }

    #[test]
    fn resumed_run_appends_to_the_same_log() {
        let (events, n) = replay("resume");
        insta::assert_json_snapshot!(events);
        assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
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
        assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
        assert_eq!(n.final_text(), "{\"findings\": []}");
    }

    #[test]
    fn unauthorized_run_is_an_api_error() {
        let (events, n) = replay("api_error_401");
        insta::assert_json_snapshot!(events);
        assert!(matches!(
            outcome(&n, Some(1)),
            AgentOutcome::ApiError {
                status: Some(401),
                ..
            }
        ));
        // The synthetic error message is not a model turn.
        assert_eq!(n.turns(), 0);
    }

    #[test]
    fn retried_server_error_is_an_api_error() {
        let (events, n) = replay("api_retry_500");
        insta::assert_json_snapshot!(events);
        assert!(matches!(
            outcome(&n, Some(1)),
            AgentOutcome::ApiError {
                status: Some(500),
                ..
            }
        ));
    }

    #[test]
    fn turn_limit_run_is_max_turns() {
        let (events, n) = replay("max_turns");
        insta::assert_json_snapshot!(events);
        // Claude Code says num_turns 3 at a limit of 2; the counted API turns are what ran.
        assert_eq!(n.result().unwrap().num_turns, Some(3));
        assert_eq!(outcome(&n, Some(1)), AgentOutcome::MaxTurns { turns: 2 });
    }

    #[test]
    fn unknown_event_types_are_skipped_with_one_notice() {
        let (events, n) = replay("unknown_event_type");
        insta::assert_json_snapshot!(events);
        let notices: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Notice { .. }))
            .collect();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(outcome(&n, Some(0)), AgentOutcome::Success);
        assert_eq!(n.turns(), 3);
    }

    #[test]
    fn truncated_last_line_is_a_notice_and_no_result() {
        let (events, n) = replay("truncated_last_line");
        // The cut line is skipped with a notice; the open turn still closes at the end.
        let tail = &events[events.len() - 2..];
        assert!(
            matches!(&tail[0], AgentEvent::Notice { message } if message.contains("not JSON")),
            "{tail:?}"
        );
        assert!(matches!(tail[1], AgentEvent::TurnCompleted { turn: 3, .. }));
        assert!(n.result().is_none());
        assert_eq!(n.final_text(), "Done: hello.txt and copy.txt.");
        let judged = judge(n.result(), Some(1), "boom\n", n.turns());
        assert_eq!(
            judged,
            AgentOutcome::Failed {
                message: "Claude Code exited with status 1 without a result: boom".into()
            }
        );
    }

    #[test]
    fn killed_run_without_result() {
        let (events, n) = replay("hang");
        assert!(matches!(
            events.as_slice(),
            [AgentEvent::SessionStarted { .. }]
        ));
        assert_eq!(outcome(&n, None), AgentOutcome::Killed);
    }

    #[test]
    fn execution_errors_and_denials() {
        let result: RawResult = serde_json::from_value(serde_json::json!({
            "subtype": "error_during_execution", "is_error": true,
            "errors": ["No conversation found with session ID: x"],
            "permission_denials": []
        }))
        .unwrap();
        assert_eq!(
            judge(Some(&result), Some(1), "", 0),
            AgentOutcome::Failed {
                message: "No conversation found with session ID: x".into()
            }
        );
        let denied: RawResult = serde_json::from_value(serde_json::json!({
            "subtype": "error_during_execution", "is_error": true,
            "permission_denials": [{"tool_name": "Bash", "tool_use_id": "t",
                                    "tool_input": {"command": "python3 -c 1"}}]
        }))
        .unwrap();
        assert_eq!(
            judge(Some(&denied), Some(1), "", 1),
            AgentOutcome::PermissionDenied {
                action: "Bash python3 -c 1".into()
            }
        );
        // A successful result with a non-zero exit is not trusted.
        let ok: RawResult =
            serde_json::from_value(serde_json::json!({"subtype": "success", "is_error": false}))
                .unwrap();
        assert!(matches!(
            judge(Some(&ok), Some(2), "", 1),
            AgentOutcome::Failed { .. }
        ));
    }

    #[test]
    fn odd_lines_never_fail() {
        let mut n = Normalizer::new();
        assert!(n.push_line("\n").is_empty());
        assert_eq!(n.push_line("not json").len(), 1);
        assert_eq!(
            n.push_line(r#"{"type": "assistant", "message": 5}"#).len(),
            1
        );
        assert_eq!(n.push_line(r#"{"no_type": true}"#).len(), 1);
        assert!(
            n.push_line(r#"{"type": "system", "subtype": "hook_response"}"#)
                .is_empty()
        );
    }
}
