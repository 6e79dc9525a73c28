//! Gemini CLI's `--output-format stream-json` lines (0.61.x), as far as codemill reads them.
//!
//! Private to the `gemini` module. Every struct tolerates missing and extra fields, and the event
//! enum has a catch-all, so a new CLI version degrades to skipped lines instead of failures.

use serde::Deserialize;
use serde_json::Value;

/// One stream-json line.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum RawEvent {
    Init(RawInit),
    Message(RawMessage),
    ToolUse(RawToolUse),
    ToolResult(RawToolResult),
    /// Warnings and errors that do not end the run by themselves (loop detected, invalid
    /// stream, blocked by a hook).
    Error(RawError),
    Result(RawResult),
    /// Any type this module does not know.
    #[serde(other)]
    Unknown,
}

/// The first line: the session (which `--resume` takes) and the model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawInit {
    pub session_id: Option<String>,
    pub model: Option<String>,
}

/// The user prompt (echoed once) or a chunk of assistant text (`delta: true`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawMessage {
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// A tool call the model made; the CLI writes it while the response streams, before running it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawToolUse {
    pub tool_name: String,
    /// `<tool name>__<call id>`; the matching `tool_result` carries the same id.
    pub tool_id: String,
    pub parameters: Value,
}

/// A finished tool call; written after every call of the model response has run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawToolResult {
    pub tool_id: String,
    /// `success` or `error`.
    pub status: String,
    /// What the CLI shows for the call; absent for edits (their display is a diff object).
    pub output: Option<String>,
    pub error: Option<RawErrorDetail>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawError {
    /// `warning` or `error`.
    pub severity: String,
    pub message: String,
}

/// The last line of a run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawResult {
    /// `success` or `error`.
    pub status: String,
    /// Set on `error` results written by the CLI's error handler (API errors, turn limit,
    /// cancellation); absent on an `error` result after an invalid model stream.
    pub error: Option<RawErrorDetail>,
    pub stats: Option<RawStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawErrorDetail {
    /// The error class: `FatalTurnLimitedError`, `FatalCancellationError`, `unknown` (API
    /// errors), `tool_not_registered` (tool results), ...
    #[serde(rename = "type")]
    pub kind: String,
    /// API errors read `[API Error: <message or Google error JSON>]`.
    pub message: String,
}

/// Token totals of the whole run (the CLI reports none per model call).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawStats {
    /// Prompt tokens, cached ones included.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Prompt tokens served from the cache.
    pub cached: Option<u64>,
    /// Prompt tokens not served from the cache.
    pub input: Option<u64>,
    pub tool_calls: Option<u64>,
}

impl RawStats {
    pub(crate) fn to_usage(self) -> codemill_core::cost::Usage {
        let cached = self.cached.unwrap_or(0);
        let uncached = self
            .input
            .unwrap_or_else(|| self.input_tokens.unwrap_or(0).saturating_sub(cached));
        codemill_core::cost::Usage {
            input_tokens: uncached,
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: cached,
            cache_write_tokens: 0,
        }
    }
}
