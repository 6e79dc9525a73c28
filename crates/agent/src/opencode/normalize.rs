//! Pure mapping from opencode's JSON lines to [`AgentEvent`]s, and the outcome judgement.
//!
//! No IO here: the client feeds lines in and sends the events out, so both halves are tested on
//! recorded runs (`tests/fixtures/opencode/*.jsonl`).
//!
//! Cost: opencode prices each step from its own model table. codemill defines the model itself
//! (a local provider without prices), so opencode reports `cost: 0`, a figure it made up rather
//! than measured. The run therefore reports no cost, and the runner prices the tokens.

use std::collections::BTreeSet;

use codemill_core::agent::{AgentEvent, AgentOutcome};
use codemill_core::cost::Usage;
use serde::Deserialize;
use serde_json::Value;

use super::protocol::{RawError, RawEvent, RawTool};
use crate::text::{one_line, truncate};

/// Tool output shown in events is cut to this many bytes; the full text is in the raw log.
const EVENT_OUTPUT_MAX: usize = 2000;
/// The `step_finish` reason of a model answer that asked for tools, i.e. wants another step.
const REASON_TOOL_CALLS: &str = "tool-calls";

/// Turns opencode's lines into normalised events, remembering what the outcome needs.
///
/// One turn is one model call: a `step_start` opens it, its `step_finish` closes it with usage.
#[derive(Debug, Default)]
pub(crate) struct Normalizer {
    /// Shown in `SessionStarted`; opencode's lines do not name the model.
    model: Option<String>,
    session_id: Option<String>,
    turns: u32,
    /// A `step_start` without its `step_finish` yet.
    open: bool,
    /// The reason of the latest `step_finish`.
    last_reason: Option<String>,
    usage: Usage,
    last_text: Option<String>,
    error: Option<RawError>,
    unknown_types: BTreeSet<String>,
}

impl Normalizer {
    pub(crate) fn new(model: Option<String>) -> Normalizer {
        Normalizer {
            model,
            ..Normalizer::default()
        }
    }

    /// Model calls begun so far.
    pub(crate) fn turns(&self) -> u32 {
        self.turns
    }

    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Summed over finished steps.
    pub(crate) fn usage(&self) -> Usage {
        self.usage
    }

    /// The last assistant text.
    pub(crate) fn final_text(&self) -> String {
        self.last_text.clone().unwrap_or_default()
    }

    /// The last `error` line, once seen.
    pub(crate) fn error(&self) -> Option<&RawError> {
        self.error.as_ref()
    }

    /// Whether the agent wants more than `max_turns` model calls: it already started one too
    /// many, or the last allowed one finished asking for tools. opencode's own `steps` limit
    /// only asks the model to stop; a model that keeps calling tools is not stopped by it.
    pub(crate) fn over_turn_limit(&self, max_turns: u32) -> bool {
        self.turns > max_turns
            || (self.turns == max_turns
                && !self.open
                && self.last_reason.as_deref() == Some(REASON_TOOL_CALLS))
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
                    "skipped an opencode output line that is not JSON ({e}): {}",
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
                // Once per type: a newer CLI may print many lines of a type we do not read.
                if self.unknown_types.insert(kind.clone()) {
                    vec![notice(format!(
                        "skipped unknown opencode event type `{kind}`"
                    ))]
                } else {
                    Vec::new()
                }
            }
            Ok(event) => self.push(event),
            Err(e) => vec![notice(format!(
                "skipped an opencode `{kind}` line that did not parse ({e})"
            ))],
        }
    }

    /// One parsed event.
    pub(crate) fn push(&mut self, event: RawEvent) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        if self.session_id.is_none()
            && let Some(id) = event.session_id()
        {
            self.session_id = Some(id.to_string());
            out.push(AgentEvent::SessionStarted {
                session_id: id.to_string(),
                model: self.model.clone(),
            });
        }
        match event {
            RawEvent::StepStart { .. } => {
                // A start without a finish (opencode cut off mid-step) still counts as a turn.
                self.close_turn(Usage::default(), &mut out);
                self.turns += 1;
                self.open = true;
            }
            RawEvent::Text { part, .. } => {
                if !part.text.trim().is_empty() {
                    self.last_text = Some(part.text.clone());
                    out.push(AgentEvent::Text { text: part.text });
                }
            }
            RawEvent::ToolUse { part, .. } => tool_events(part, &mut out),
            RawEvent::StepFinish { part, .. } => {
                let usage = part.tokens.unwrap_or_default().to_usage();
                self.usage += usage;
                self.last_reason = part.reason;
                if !self.open {
                    // A finish without a start still was a model call.
                    self.turns += 1;
                    self.open = true;
                }
                self.close_turn(usage, &mut out);
            }
            RawEvent::Error { error, .. } => {
                let status = error
                    .status()
                    .map(|s| format!(" (status {s})"))
                    .unwrap_or_default();
                out.push(notice(format!(
                    "opencode error {}{status}: {}",
                    error.name,
                    one_line(&error.message(), 500)
                )));
                self.error = Some(error);
            }
            RawEvent::Reasoning { .. } | RawEvent::Unknown => {}
        }
        out
    }

    /// End of output: a step still open is over now.
    pub(crate) fn finish(&mut self) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        self.close_turn(Usage::default(), &mut out);
        out
    }

    fn close_turn(&mut self, usage: Usage, out: &mut Vec<AgentEvent>) {
        if self.open {
            self.open = false;
            out.push(AgentEvent::TurnCompleted {
                turn: self.turns,
                usage,
            });
        }
    }
}

fn notice(message: String) -> AgentEvent {
    AgentEvent::Notice { message }
}

/// opencode prints a tool only once it is done, so the call and its result come together.
fn tool_events(part: RawTool, out: &mut Vec<AgentEvent>) {
    let state = part.state;
    let is_error = state.status != "completed";
    let output = if is_error {
        &state.error
    } else {
        &state.output
    };
    out.push(AgentEvent::ToolCall {
        id: part.call_id.clone(),
        summary: tool_summary(&part.tool, &state.input),
        name: part.tool,
    });
    out.push(AgentEvent::ToolResult {
        id: part.call_id,
        is_error,
        output: truncate(&value_text(output), EVENT_OUTPUT_MAX),
    });
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One line saying what an opencode tool call touches: the path, the command, the pattern.
pub(crate) fn tool_summary(name: &str, input: &Value) -> String {
    let field = |key: &str| input.get(key).and_then(Value::as_str);
    let picked = match name {
        "bash" => field("command"),
        "read" | "write" | "edit" => field("filePath"),
        "glob" | "grep" => field("pattern"),
        "list" => field("path"),
        "task" => field("description"),
        "webfetch" => field("url"),
        "skill" => field("name"),
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

/// How a run that codemill did not stop itself ended: from the `error` line (if any), the
/// number of model turns, the exit code and stderr.
///
/// `exit_code` is `None` when the process was killed by a signal. opencode exits 1 after an
/// `error` line and 0 otherwise; it prints no final result line, so a clean exit with no model
/// turn at all is not trusted.
pub(crate) fn judge(
    error: Option<&RawError>,
    exit_code: Option<i32>,
    stderr: &str,
    turns: u32,
) -> AgentOutcome {
    if let Some(error) = error {
        return match error.name.as_str() {
            "APIError" => AgentOutcome::ApiError {
                status: error.status(),
                message: error.message(),
            },
            // Missing or rejected credentials, before any HTTP status was seen.
            "ProviderAuthError" => AgentOutcome::ApiError {
                status: None,
                message: error.message(),
            },
            "MessageAbortedError" => AgentOutcome::Killed,
            _ => AgentOutcome::Failed {
                message: format!("opencode {}: {}", error.name, error.message()),
            },
        };
    }
    let tail = stderr_tail(stderr);
    match exit_code {
        Some(0) if turns > 0 => AgentOutcome::Success,
        Some(0) => AgentOutcome::Failed {
            message: format!("opencode exited without running the model{tail}"),
        },
        Some(code) => AgentOutcome::Failed {
            message: format!("opencode exited with status {code}{tail}"),
        },
        None => AgentOutcome::Killed,
    }
}

/// The last ~500 characters of stderr, without terminal colours, for messages.
fn stderr_tail(stderr: &str) -> String {
    let plain = strip_ansi(stderr);
    let trimmed = plain.trim();
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

/// Removes `ESC [ ... letter` sequences (opencode colours its "Error:" prefix).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
