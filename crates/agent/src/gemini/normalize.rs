//! Pure mapping from Gemini CLI's stream-json lines to [`AgentEvent`]s, and the outcome judgement.
//!
//! No IO here: the client feeds lines in and sends the events out, so both halves are tested on
//! recorded runs (`tests/fixtures/gemini/*.jsonl`).

use std::collections::BTreeSet;

use codemill_core::agent::{AgentEvent, AgentOutcome};
use codemill_core::cost::Usage;
use serde::Deserialize;
use serde_json::Value;

use super::protocol::{RawEvent, RawResult, RawToolResult};
use crate::text::{one_line, truncate};

/// Tool output shown in events is cut to this many bytes; the full text is in the raw log.
const EVENT_OUTPUT_MAX: usize = 2000;
/// What the CLI writes (as an `error` line) when its loop detection ends the run; the result
/// that follows still says `success`.
const LOOP_DETECTED: &str = "Loop detected";
/// The CLI appends this to the message of a 429, whose `[API Error: ...]` text has no status.
const RATE_LIMIT_HINT: &str = "Please wait and try again later";

/// Turns stream-json lines into normalised events, remembering what the outcome needs.
///
/// The stream has no turn markers: a turn (one model response) starts with the first assistant
/// text or tool call after the prompt or after tool results. Its `TurnCompleted` is sent when the
/// next turn starts, or at the end of the run. The CLI reports usage only for the whole run, so
/// earlier turns carry zero usage and the last one the run's total; summing them gives the total.
#[derive(Debug, Default)]
pub(crate) struct Normalizer {
    turns: u32,
    /// The current model response is still being reported (no tool result since it started).
    in_turn: bool,
    /// Turn `turns` has started and its `TurnCompleted` is not sent yet.
    unclosed: bool,
    /// Assistant text chunks of the current block, sent as one `Text` when the block ends.
    text: String,
    last_text: Option<String>,
    unknown_types: BTreeSet<String>,
    session_id: Option<String>,
    result: Option<RawResult>,
    loop_detected: bool,
    last_error: Option<String>,
}

impl Normalizer {
    pub(crate) fn new() -> Normalizer {
        Normalizer::default()
    }

    /// Model turns (responses) seen so far.
    pub(crate) fn turns(&self) -> u32 {
        self.turns
    }

    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The final `result` line, once seen.
    #[cfg(test)]
    pub(crate) fn result(&self) -> Option<&RawResult> {
        self.result.as_ref()
    }

    /// The run's usage, from the result's stats (zero without a result).
    pub(crate) fn usage(&self) -> Usage {
        self.result
            .as_ref()
            .and_then(|r| r.stats)
            .map(|s| s.to_usage())
            .unwrap_or_default()
    }

    /// The answer: the last assistant text block.
    pub(crate) fn final_text(&self) -> String {
        self.last_text.clone().unwrap_or_default()
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
                    "skipped a Gemini CLI output line that is not JSON ({e}): {}",
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
                        "skipped unknown Gemini CLI event type `{kind}`"
                    ))]
                } else {
                    Vec::new()
                }
            }
            Ok(event) => self.push(event),
            Err(e) => vec![notice(format!(
                "skipped a Gemini CLI `{kind}` line that did not parse ({e})"
            ))],
        }
    }

    /// One parsed event.
    pub(crate) fn push(&mut self, event: RawEvent) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        match event {
            RawEvent::Init(init) => {
                if let Some(id) = init.session_id {
                    self.session_id = Some(id.clone());
                    out.push(AgentEvent::SessionStarted {
                        session_id: id,
                        model: init.model,
                    });
                }
            }
            // The echoed prompt: the caller knows it already.
            RawEvent::Message(message) if message.role != "assistant" => {}
            RawEvent::Message(message) => {
                self.start_turn(&mut out);
                self.text.push_str(&message.content);
            }
            RawEvent::ToolUse(call) => {
                self.start_turn(&mut out);
                self.flush_text(&mut out);
                let summary = tool_summary(&call.tool_name, &call.parameters);
                out.push(AgentEvent::ToolCall {
                    id: call.tool_id,
                    name: call.tool_name,
                    summary,
                });
            }
            RawEvent::ToolResult(result) => {
                self.flush_text(&mut out);
                self.in_turn = false;
                out.push(tool_result(result));
            }
            RawEvent::Error(error) => {
                self.flush_text(&mut out);
                if error.message.contains(LOOP_DETECTED) {
                    self.loop_detected = true;
                }
                out.push(notice(format!(
                    "Gemini CLI {}: {}",
                    error.severity, error.message
                )));
                self.last_error = Some(error.message);
            }
            RawEvent::Result(result) => {
                self.flush_text(&mut out);
                let usage = result.stats.map(|s| s.to_usage()).unwrap_or_default();
                self.close_turn(usage, &mut out);
                if let Some(error) = &result.error {
                    out.push(notice(format!(
                        "Gemini CLI error ({}): {}",
                        error.kind,
                        one_line(&error.message, 300)
                    )));
                }
                self.result = Some(result);
            }
            RawEvent::Unknown => {}
        }
        out
    }

    /// End of output: pending text is sent and an open turn is complete now.
    pub(crate) fn finish(&mut self) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        self.flush_text(&mut out);
        self.close_turn(Usage::default(), &mut out);
        out
    }

    fn start_turn(&mut self, out: &mut Vec<AgentEvent>) {
        if self.in_turn {
            return;
        }
        self.close_turn(Usage::default(), out);
        self.turns += 1;
        self.in_turn = true;
        self.unclosed = true;
    }

    fn close_turn(&mut self, usage: Usage, out: &mut Vec<AgentEvent>) {
        if std::mem::take(&mut self.unclosed) {
            out.push(AgentEvent::TurnCompleted {
                turn: self.turns,
                usage,
            });
        }
    }

    fn flush_text(&mut self, out: &mut Vec<AgentEvent>) {
        let text = std::mem::take(&mut self.text);
        if !text.trim().is_empty() {
            self.last_text = Some(text.clone());
            out.push(AgentEvent::Text { text });
        }
    }

    /// How the run ended, from the result line (if any), the exit code and stderr.
    ///
    /// `exit_code` is `None` when the process was killed by a signal.
    pub(crate) fn judge(&self, exit_code: Option<i32>, stderr: &str) -> AgentOutcome {
        let Some(result) = &self.result else {
            let tail = stderr_tail(stderr);
            return match exit_code {
                Some(0) => AgentOutcome::Failed {
                    message: format!("Gemini CLI exited without a result line{tail}"),
                },
                // E.g. exit 42 "Error resuming session: ..." before any output.
                Some(code) => AgentOutcome::Failed {
                    message: format!("Gemini CLI exited with status {code} without a result{tail}"),
                },
                None => AgentOutcome::Killed,
            };
        };
        if result.status == "success" {
            if self.loop_detected {
                // The CLI gave up on a repeating model but still says success.
                return AgentOutcome::Failed {
                    message: "Gemini CLI stopped the run: loop detected".into(),
                };
            }
            return match exit_code {
                // None: the CLI wrote its result but lingered and was killed; the work is done.
                Some(0) | None => AgentOutcome::Success,
                Some(code) => AgentOutcome::Failed {
                    message: format!("Gemini CLI reported success but exited with status {code}"),
                },
            };
        }
        let Some(error) = &result.error else {
            // An invalid model stream (empty, blocked, malformed call): the reason was an
            // `error` line.
            return AgentOutcome::Failed {
                message: self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| format!("Gemini CLI result status `{}`", result.status)),
            };
        };
        match error.kind.as_str() {
            "FatalTurnLimitedError" => AgentOutcome::MaxTurns { turns: self.turns },
            "FatalCancellationError" => AgentOutcome::Killed,
            kind => {
                let (status, message) = api_error(&error.message, exit_code);
                // Everything the CLI's error handler writes reads `[API Error: ...]`; real API
                // and network failures have the type `unknown` or a status.
                if status.is_some() || kind == "unknown" {
                    AgentOutcome::ApiError { status, message }
                } else {
                    AgentOutcome::Failed {
                        message: format!("{kind}: {message}"),
                    }
                }
            }
        }
    }
}

fn notice(message: String) -> AgentEvent {
    AgentEvent::Notice { message }
}

fn tool_result(result: RawToolResult) -> AgentEvent {
    let is_error = result.status == "error";
    let output = match (result.output, result.error) {
        (Some(output), _) if !output.is_empty() => output,
        (_, Some(error)) => error.message,
        (output, None) => output.unwrap_or_default(),
    };
    AgentEvent::ToolResult {
        id: result.tool_id,
        is_error,
        output: truncate(&output, EVENT_OUTPUT_MAX),
    }
}

/// The HTTP status and a readable message of an `[API Error: ...]` result message.
///
/// Measured on 0.61.0: 401/500 carry the Google error JSON (`"code": 401`); a 429 carries only
/// the message plus [`RATE_LIMIT_HINT`]; errors that arrive as text end in `(Status: NAME)`; and the CLI exits with the HTTP status itself, of which
/// the OS keeps the low 8 bits (401 → 145, 429 → 173, 500 → 244).
pub(crate) fn api_error(message: &str, exit_code: Option<i32>) -> (Option<u16>, String) {
    let (inner, tail) = match message.strip_prefix("[API Error: ") {
        Some(rest) => match rest.rfind(']') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, ""),
        },
        None => (message, ""),
    };
    let google = inner
        .find('{')
        .and_then(|start| serde_json::from_str::<Value>(&inner[start..]).ok())
        .and_then(|v| v.get("error").cloned());
    let google_status = google.as_ref().and_then(|e| {
        e.get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .or_else(|| {
                e.get("status")
                    .and_then(Value::as_str)
                    .and_then(status_code)
            })
    });
    let text = google
        .as_ref()
        .and_then(|e| e.get("message").and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| inner.trim().to_string());
    let named_status = inner
        .rsplit_once("(Status: ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(status_code);
    let status = google_status
        .or(named_status)
        .or_else(|| tail.contains(RATE_LIMIT_HINT).then_some(429))
        .or_else(|| match exit_code {
            Some(code @ 144..=255) => u16::try_from(code + 256).ok(),
            _ => None,
        });
    (status, text)
}

/// HTTP status of a Google API status name.
fn status_code(name: &str) -> Option<u16> {
    Some(match name {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "INTERNAL" => 500,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => return None,
    })
}

/// One line saying what a Gemini CLI tool call touches: the path, the command, the pattern.
pub(crate) fn tool_summary(name: &str, input: &Value) -> String {
    let field = |key: &str| input.get(key).and_then(Value::as_str);
    let picked = match name {
        "run_shell_command" => field("command"),
        "write_file" | "replace" | "read_file" => field("file_path"),
        "list_directory" => field("dir_path").or_else(|| field("path")),
        "glob" | "grep_search" => field("pattern"),
        "google_web_search" => field("query"),
        "web_fetch" => field("prompt"),
        _ => None,
    };
    let text = match picked {
        Some(text) => text.to_string(),
        // Other tools: the first string argument is usually the interesting one.
        None => input
            .as_object()
            .and_then(|o| o.values().find_map(Value::as_str))
            .map(str::to_string)
            .unwrap_or_default(),
    };
    one_line(&text, 200)
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
#[path = "normalize_tests.rs"]
mod tests;
