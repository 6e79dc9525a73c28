//! Claude Code's `--output-format stream-json` lines, as far as codemill reads them.
//!
//! Private to the `claude` module. Every struct tolerates missing and extra fields, and every
//! enum has a catch-all, so a new CLI version degrades to skipped lines instead of failures.

use serde::Deserialize;
use serde_json::Value;

/// One stream-json line.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum RawEvent {
    System(RawSystem),
    Assistant(RawAssistant),
    User(RawUser),
    Result(RawResult),
    /// Any type this module does not know (e.g. `stream_event` with partial messages).
    #[serde(other)]
    Unknown,
}

/// `system` lines: `init`, `api_retry`, and subtypes we ignore.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawSystem {
    pub subtype: String,
    pub session_id: Option<String>,
    pub model: Option<String>,
    // api_retry
    pub attempt: Option<u32>,
    pub max_retries: Option<u32>,
    pub error_status: Option<u16>,
    pub error: Option<String>,
}

/// One content block of an API message, reported on its own line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAssistant {
    pub message: RawMessage,
    pub session_id: Option<String>,
    /// Set when the tool call came from a sub-agent (Task tool).
    pub parent_tool_use_id: Option<String>,
    /// Set on the synthetic message Claude Code writes for a failed API call.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawMessage {
    /// Shared by all blocks of one API message.
    pub id: Option<String>,
    /// `<synthetic>` for messages Claude Code made up itself (API errors).
    pub model: Option<String>,
    pub content: RawContent,
    /// Not final while the message streams; the last line of a message has the best figures.
    pub usage: Option<RawUsage>,
}

/// Message content: a plain string or a list of blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawContent {
    Blocks(Vec<RawBlock>),
    Text(String),
    /// Anything else; kept out of events.
    Other(#[allow(dead_code)] Value),
}

impl Default for RawContent {
    fn default() -> Self {
        RawContent::Blocks(Vec::new())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum RawBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        tool_use_id: String,
        #[serde(default)]
        content: Value,
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// Thinking, images, server tools, anything newer.
    #[serde(other)]
    Other,
}

/// `user` lines carry the tool results Claude Code fed back to the model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawUser {
    pub message: RawMessage,
    pub parent_tool_use_id: Option<String>,
}

/// The last line of a run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawResult {
    /// `success`, `error_max_turns`, `error_during_execution`, ... An API failure still says
    /// `success`: judge by `is_error`.
    pub subtype: String,
    pub is_error: Option<bool>,
    pub api_error_status: Option<u16>,
    pub num_turns: Option<u32>,
    pub result: Option<String>,
    pub session_id: Option<String>,
    pub total_cost_usd: Option<f64>,
    pub usage: Option<RawUsage>,
    pub permission_denials: Vec<RawDenial>,
    /// `completed`, `max_turns`, ...
    pub terminal_reason: Option<String>,
    /// Messages for `error_during_execution`.
    pub errors: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawDenial {
    pub tool_name: String,
    pub tool_input: Value,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawUsage {
    // Options: some CLI versions write `null` for figures they do not have.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
}

impl RawUsage {
    pub(crate) fn to_usage(self) -> codemill_core::cost::Usage {
        codemill_core::cost::Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: self.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: self.cache_creation_input_tokens.unwrap_or(0),
        }
    }
}
