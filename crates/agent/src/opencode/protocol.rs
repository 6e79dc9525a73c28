//! opencode's `run --format json` lines, as far as codemill reads them.
//!
//! Private to the `opencode` module. opencode 1.18 prints one JSON object per line:
//! `step_start`, `text`, `reasoning` (only with `--thinking`), `tool_use` (only once a tool has
//! completed or failed), `step_finish` and `error`. Every struct tolerates missing and extra
//! fields and the enum has a catch-all, so a new CLI version degrades to skipped lines.

use serde::Deserialize;
use serde_json::Value;

/// One stdout line.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum RawEvent {
    /// A model call (one "step") began.
    StepStart {
        #[serde(default, rename = "sessionID")]
        session_id: Option<String>,
    },
    /// Finished assistant text.
    Text {
        #[serde(default, rename = "sessionID")]
        session_id: Option<String>,
        #[serde(default)]
        part: RawText,
    },
    /// Thinking text; printed only with `--thinking`, which codemill does not pass.
    Reasoning {
        #[serde(default, rename = "sessionID")]
        session_id: Option<String>,
    },
    /// A tool call together with its result: opencode prints it only when the tool is done.
    ToolUse {
        #[serde(default, rename = "sessionID")]
        session_id: Option<String>,
        #[serde(default)]
        part: RawTool,
    },
    /// A model call ended, with its token figures.
    StepFinish {
        #[serde(default, rename = "sessionID")]
        session_id: Option<String>,
        #[serde(default)]
        part: RawStepFinish,
    },
    /// The session failed (API errors after opencode's own retries, auth errors, ...).
    Error {
        #[serde(default, rename = "sessionID")]
        session_id: Option<String>,
        #[serde(default)]
        error: RawError,
    },
    /// Any type this module does not know.
    #[serde(other)]
    Unknown,
}

impl RawEvent {
    pub(crate) fn session_id(&self) -> Option<&str> {
        match self {
            RawEvent::StepStart { session_id }
            | RawEvent::Text { session_id, .. }
            | RawEvent::Reasoning { session_id }
            | RawEvent::ToolUse { session_id, .. }
            | RawEvent::StepFinish { session_id, .. }
            | RawEvent::Error { session_id, .. } => session_id.as_deref(),
            RawEvent::Unknown => None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawText {
    pub text: String,
}

/// A `tool` part: which tool, its call id, and the final state.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTool {
    pub tool: String,
    #[serde(rename = "callID")]
    pub call_id: String,
    pub state: RawToolState,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawToolState {
    /// `completed` or `error` on printed lines (`pending`/`running` are never printed).
    pub status: String,
    pub input: Value,
    /// The tool's output when completed.
    pub output: Value,
    /// The error text when the call failed (unknown tool, denied permission, bad input).
    pub error: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawStepFinish {
    /// `tool-calls` when the model wants another step; `stop`, `length`, ... otherwise.
    pub reason: Option<String>,
    pub tokens: Option<RawTokens>,
    /// Priced by opencode from its own model table; see [`super::normalize`] for why unused.
    pub cost: Option<f64>,
}

/// Token figures of one step. opencode already splits them: `input` excludes cache reads and
/// writes, `output` excludes `reasoning`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTokens {
    // f64: JavaScript numbers; a float here must not cost the whole line.
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub reasoning: Option<f64>,
    pub cache: Option<RawCache>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCache {
    pub read: Option<f64>,
    pub write: Option<f64>,
}

impl RawTokens {
    pub(crate) fn to_usage(self) -> codemill_core::cost::Usage {
        let count = |n: Option<f64>| {
            n.filter(|n| n.is_finite() && *n > 0.0)
                .map_or(0, |n| n as u64)
        };
        let cache = self.cache.unwrap_or_default();
        codemill_core::cost::Usage {
            input_tokens: count(self.input),
            // Reasoning tokens are billed as output.
            output_tokens: count(self.output) + count(self.reasoning),
            cache_read_tokens: count(cache.read),
            cache_write_tokens: count(cache.write),
        }
    }
}

/// `{"name": "APIError", "data": {"message", "statusCode", "isRetryable", ...}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawError {
    /// `APIError`, `ProviderAuthError`, `UnknownError`, `MessageOutputLengthError`, ...
    pub name: String,
    pub data: RawErrorData,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawErrorData {
    pub message: Option<String>,
    #[serde(rename = "statusCode")]
    pub status_code: Option<Value>,
    #[serde(rename = "isRetryable")]
    pub is_retryable: Option<bool>,
}

impl RawError {
    /// The HTTP status, when opencode saw one.
    pub(crate) fn status(&self) -> Option<u16> {
        self.data
            .status_code
            .as_ref()
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
    }

    /// The provider's message, else the error's name.
    pub(crate) fn message(&self) -> String {
        self.data
            .message
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| self.name.clone())
    }
}
