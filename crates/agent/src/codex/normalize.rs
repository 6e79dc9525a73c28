//! Pure mapping from `codex exec --json` lines to [`AgentEvent`]s, the turn count, and the
//! outcome judgement.
//!
//! No IO here: the client feeds lines in and sends the events out, so all of it is tested on
//! recorded runs (`tests/fixtures/codex/*.jsonl`).
//!
//! # What a turn is
//! A turn is one model response, as for every backend. Codex's stream has no per-response
//! event (its `turn.*` events wrap a whole prompt), so the [`Normalizer`] infers the
//! boundaries: the first model item of a Codex turn starts a response, and so does the first
//! model item after a tool item completed, because Codex must send tool output back to the
//! model before anything else can happen. Two known errors, both measured on 0.169.0:
//! - several tool calls in ONE response run one after another and look like several
//!   responses, so they count as several turns (the limit stops early, never late);
//! - tool calls Codex does not report (blocked by its sandbox, refused tools) are invisible,
//!   so a response made only of those is not counted; the idle and wall-clock limits still
//!   bound such a run.

use std::collections::{BTreeSet, HashSet};

use codemill_core::agent::{AgentEvent, AgentOutcome};
use codemill_core::cost::Usage;
use serde::Deserialize;
use serde_json::Value;

use super::protocol::{RawEvent, RawItem, RawItemKind};
use crate::text::{one_line, truncate};

/// Tool output shown in events is cut to this many bytes; the full text is in the raw log.
const EVENT_OUTPUT_MAX: usize = 2000;

/// Turns `exec --json` lines into normalised events, counting model responses and keeping
/// what the outcome needs.
///
/// Per-response usage is not in the stream: every `TurnCompleted` but the last of a Codex
/// turn carries zero usage and the last one carries the whole Codex turn's usage, so the sum
/// over all `TurnCompleted` events is the run's usage.
#[derive(Debug, Default)]
pub(crate) struct Normalizer {
    /// The model codemill configured; the stream does not name it.
    model: Option<String>,
    /// Stripped (with its `/`) from file paths in summaries.
    workdir: Option<String>,
    thread_id: Option<String>,
    turns: u32,
    /// A model response is open: its items are arriving.
    open: bool,
    /// The next model item starts a new response (a Codex turn began, or a tool finished).
    response_due: bool,
    /// Items whose `ToolCall` was sent, so a `completed` without `started` still gets one.
    called: HashSet<String>,
    unknown_types: BTreeSet<String>,
    last_text: Option<String>,
    usage: Usage,
    completed: bool,
    failure: Option<String>,
    last_error: Option<String>,
}

impl Normalizer {
    pub(crate) fn new(model: Option<String>, workdir: Option<String>) -> Normalizer {
        Normalizer {
            model,
            workdir: workdir.map(|w| w.trim_end_matches('/').to_string()),
            ..Normalizer::default()
        }
    }

    /// Model responses seen so far (see the module docs).
    pub(crate) fn turns(&self) -> u32 {
        self.turns
    }

    /// A tool finished and Codex is about to ask the model again: the next response starts.
    pub(crate) fn response_due(&self) -> bool {
        self.response_due
    }

    /// The thread id, what `codex exec resume` takes.
    pub(crate) fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    /// The last assistant message.
    pub(crate) fn final_text(&self) -> String {
        self.last_text.clone().unwrap_or_default()
    }

    /// Usage summed over every completed Codex turn.
    pub(crate) fn usage(&self) -> Usage {
        self.usage
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
                    "skipped a Codex output line that is not JSON ({e}): {}",
                    one_line(line, 200)
                ))];
            }
        };
        let kind = value["type"].as_str().unwrap_or("").to_string();
        match RawEvent::deserialize(&value) {
            Ok(RawEvent::Unknown) => self.unknown(&format!("event type `{kind}`")),
            Ok(RawEvent::ItemStarted { item } | RawEvent::ItemCompleted { item })
                if item.kind == RawItemKind::Unknown =>
            {
                let item_type = value["item"]["type"].as_str().unwrap_or("");
                self.unknown(&format!("item type `{item_type}`"))
            }
            Ok(event) => self.push(event),
            Err(e) => vec![notice(format!(
                "skipped a Codex `{kind}` line that did not parse ({e})"
            ))],
        }
    }

    /// One parsed event.
    pub(crate) fn push(&mut self, event: RawEvent) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        match event {
            RawEvent::ThreadStarted { thread_id } => {
                self.thread_id = Some(thread_id.clone());
                out.push(AgentEvent::SessionStarted {
                    session_id: thread_id,
                    model: self.model.clone(),
                });
            }
            RawEvent::TurnStarted {} => {
                self.close_response(Usage::default(), &mut out);
                self.response_due = true;
                self.completed = false;
            }
            RawEvent::TurnCompleted { usage } => {
                let usage = usage.to_usage();
                if !self.open {
                    // A completed Codex turn had at least one response, even if none of its
                    // items showed (a reply made only of blocked tool calls).
                    self.turns += 1;
                    self.open = true;
                }
                self.close_response(usage, &mut out);
                self.usage += usage;
                self.response_due = false;
                self.completed = true;
            }
            RawEvent::TurnFailed { error } => {
                self.close_response(Usage::default(), &mut out);
                self.response_due = false;
                self.failure = Some(error.message);
            }
            RawEvent::ItemStarted { item } => self.item(item, false, &mut out),
            RawEvent::ItemCompleted { item } => self.item(item, true, &mut out),
            RawEvent::Error { message } => {
                out.push(notice(format!("Codex: {message}")));
                self.last_error = Some(message);
            }
            RawEvent::ItemUpdated {} | RawEvent::Unknown => {}
        }
        out
    }

    /// End of output: a response still open is over now.
    pub(crate) fn finish(&mut self) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        self.close_response(Usage::default(), &mut out);
        out
    }

    /// `what` names the type: "event type `x`" or "item type `y`".
    fn unknown(&mut self, what: &str) -> Vec<AgentEvent> {
        // Once per type: a newer CLI may emit many lines of a type we do not read.
        if self.unknown_types.insert(what.to_string()) {
            vec![notice(format!("skipped unknown Codex {what}"))]
        } else {
            Vec::new()
        }
    }

    fn item(&mut self, item: RawItem, completed: bool, out: &mut Vec<AgentEvent>) {
        if item.kind.is_model_output() && (self.response_due || !self.open) {
            self.close_response(Usage::default(), out);
            self.turns += 1;
            self.open = true;
            self.response_due = false;
        }
        if item.kind.is_tool() {
            if self.called.insert(item.id.clone()) {
                out.push(AgentEvent::ToolCall {
                    id: item.id.clone(),
                    name: tool_name(&item),
                    summary: self.tool_summary(&item),
                });
            }
            if completed {
                let (is_error, output) = self.tool_result(&item);
                out.push(AgentEvent::ToolResult {
                    id: item.id,
                    is_error,
                    output: truncate(&output, EVENT_OUTPUT_MAX),
                });
                self.response_due = true;
            }
            return;
        }
        if !completed {
            return;
        }
        match item.kind {
            RawItemKind::AgentMessage => {
                let text = item.text.unwrap_or_default();
                if !text.trim().is_empty() {
                    self.last_text = Some(text.clone());
                    out.push(AgentEvent::Text { text });
                }
            }
            RawItemKind::Error => {
                let message = item.message.unwrap_or_default();
                out.push(notice(format!("Codex warning: {message}")));
            }
            // Reasoning summaries, plans and to-do lists: nothing a caller acts on.
            _ => {}
        }
    }

    fn close_response(&mut self, usage: Usage, out: &mut Vec<AgentEvent>) {
        if self.open {
            self.open = false;
            out.push(AgentEvent::TurnCompleted {
                turn: self.turns,
                usage,
            });
        }
    }

    /// One line saying what a tool call touches: the command, the files, the query.
    fn tool_summary(&self, item: &RawItem) -> String {
        let text = match item.kind {
            RawItemKind::CommandExecution => {
                shell_body(item.command.as_deref().unwrap_or_default()).to_string()
            }
            RawItemKind::FileChange => self.changes(item),
            RawItemKind::WebSearch => item.query.clone().unwrap_or_default(),
            // MCP and others: the first string argument is usually the interesting one.
            _ => item
                .arguments
                .as_object()
                .and_then(|o| o.values().find_map(Value::as_str))
                .map(str::to_string)
                .unwrap_or_default(),
        };
        one_line(&text, 200)
    }

    fn tool_result(&self, item: &RawItem) -> (bool, String) {
        let failed = matches!(item.status.as_deref(), Some("failed" | "declined"));
        match item.kind {
            RawItemKind::CommandExecution => (
                failed || item.exit_code.is_some_and(|code| code != 0),
                item.aggregated_output.clone().unwrap_or_default(),
            ),
            RawItemKind::FileChange => (failed, self.changes(item)),
            RawItemKind::McpToolCall => match &item.error {
                Some(error) => (true, error.message.clone()),
                None => (failed, mcp_text(item.result.as_ref())),
            },
            _ => (failed, String::new()),
        }
    }

    /// `add a.txt, update b.txt` with paths relative to the worktree.
    fn changes(&self, item: &RawItem) -> String {
        item.changes
            .iter()
            .map(|change| {
                let path = match &self.workdir {
                    Some(dir) => change
                        .path
                        .strip_prefix(dir.as_str())
                        .and_then(|rest| rest.strip_prefix('/'))
                        .unwrap_or(&change.path),
                    None => &change.path,
                };
                format!("{} {path}", change.kind)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn notice(message: String) -> AgentEvent {
    AgentEvent::Notice { message }
}

/// The name codemill shows: the tool the model called, not Codex's item type.
fn tool_name(item: &RawItem) -> String {
    match item.kind {
        RawItemKind::CommandExecution => "exec_command".into(),
        RawItemKind::FileChange => "apply_patch".into(),
        RawItemKind::McpToolCall => format!(
            "mcp:{}/{}",
            item.server.as_deref().unwrap_or_default(),
            item.tool.as_deref().unwrap_or_default()
        ),
        RawItemKind::CollabToolCall => {
            format!("collab:{}", item.tool.as_deref().unwrap_or_default())
        }
        RawItemKind::WebSearch => "web_search".into(),
        _ => "unknown".into(),
    }
}

/// The command inside Codex's `/bin/bash -c '...'` wrapper, when it is plainly quoted.
fn shell_body(command: &str) -> &str {
    for shell in ["/bin/bash", "bash", "/bin/sh", "sh", "/usr/bin/bash"] {
        for flag in [" -lc ", " -c "] {
            let Some(rest) = command
                .strip_prefix(shell)
                .and_then(|r| r.strip_prefix(flag))
            else {
                continue;
            };
            let quoted = rest.len() >= 2 && rest.starts_with('\'') && rest.ends_with('\'');
            if quoted && !rest[1..rest.len() - 1].contains('\'') {
                return &rest[1..rest.len() - 1];
            }
            return rest;
        }
    }
    command
}

/// Text blocks of an MCP result.
fn mcp_text(result: Option<&Value>) -> String {
    let Some(result) = result else {
        return String::new();
    };
    match result["content"].as_array() {
        Some(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        None => result.to_string(),
    }
}

/// How the run ended, from the stream, the exit code (`None`: killed by a signal) and stderr.
pub(crate) fn judge(n: &Normalizer, exit_code: Option<i32>, stderr: &str) -> AgentOutcome {
    if let Some(message) = &n.failure {
        return classify_failure(message);
    }
    if n.completed {
        return match exit_code {
            // None: the turn finished but the CLI lingered and was killed; the work is done.
            Some(0) | None => AgentOutcome::Success,
            Some(code) => AgentOutcome::Failed {
                message: format!("Codex reported success but exited with status {code}"),
            },
        };
    }
    if exit_code != Some(0)
        && let Some(message) = &n.last_error
    {
        return classify_failure(message);
    }
    let tail = stderr_tail(stderr);
    match exit_code {
        None => AgentOutcome::Killed,
        Some(code) => AgentOutcome::Failed {
            message: format!("Codex exited with status {code} without finishing its turn{tail}"),
        },
    }
}

/// Codex 0.169.0's fixed text for an HTTP 500 (the status itself is not in the message).
const HTTP_500_TEXT: &str = "currently experiencing high demand";
/// Messages of model API failures that carry no status.
const TRANSPORT_ERRORS: [&str; 6] = [
    "Connection failed",
    "error sending request",
    "stream disconnected",
    "Reconnecting",
    "idle timeout",
    "timed out",
];

/// A `turn.failed` (or last `error`) message as an outcome: an API error with its HTTP status
/// where Codex's wording reveals one, else a plain failure.
pub(crate) fn classify_failure(message: &str) -> AgentOutcome {
    // Measured on 0.169.0: "unexpected status 401 Unauthorized: ...", "exceeded retry limit,
    // last status: 429 Too Many Requests", a fixed text for 500, and a 400's raw error body.
    let status = status_after(message, "unexpected status ")
        .or_else(|| status_after(message, "last status: "))
        .or_else(|| message.contains(HTTP_500_TEXT).then_some(500))
        .or_else(|| is_error_body(message).then_some(400));
    if status.is_some() || TRANSPORT_ERRORS.iter().any(|m| message.contains(m)) {
        AgentOutcome::ApiError {
            status,
            message: message.to_string(),
        }
    } else {
        AgentOutcome::Failed {
            message: message.to_string(),
        }
    }
}

/// The three-digit status right after `marker`.
fn status_after(message: &str, marker: &str) -> Option<u16> {
    let start = message.find(marker)? + marker.len();
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.len() == 3 {
        digits.parse().ok()
    } else {
        None
    }
}

fn is_error_body(message: &str) -> bool {
    serde_json::from_str::<Value>(message).is_ok_and(|v| v.get("error").is_some())
}

/// The end of stderr without Codex's harmless stdin note, for failure messages.
pub(crate) fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Reading additional input from stdin"))
        .collect();
    let text = lines.join("\n");
    if text.is_empty() {
        return String::new();
    }
    let start = text
        .char_indices()
        .rev()
        .nth(500)
        .map(|(i, _)| i)
        .unwrap_or(0);
    format!(": {}", &text[start..])
}

#[cfg(test)]
mod tests;
