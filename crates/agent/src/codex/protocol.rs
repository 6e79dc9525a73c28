//! Codex CLI's `exec --json` lines, as far as codemill reads them.
//!
//! Private to the `codex` module. Events and items are tagged by `type`; both enums have a
//! catch-all and every field is optional, so a new CLI version degrades to skipped lines
//! instead of failures. Shapes measured on Codex CLI 0.169.0.

use serde::Deserialize;
use serde_json::Value;

/// One JSONL line of `codex exec --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum RawEvent {
    /// First line; the thread id is what `exec resume` takes.
    #[serde(rename = "thread.started")]
    ThreadStarted {
        #[serde(default)]
        thread_id: String,
    },
    /// A Codex turn (one prompt, any number of model requests) begins.
    #[serde(rename = "turn.started")]
    TurnStarted {},
    /// The Codex turn ended; usage is summed over all its model requests.
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        #[serde(default)]
        usage: RawUsage,
    },
    #[serde(rename = "turn.failed")]
    TurnFailed {
        #[serde(default)]
        error: RawError,
    },
    #[serde(rename = "item.started")]
    ItemStarted { item: RawItem },
    /// Progress of a long item (to-do lists); nothing codemill shows.
    #[serde(rename = "item.updated")]
    ItemUpdated {},
    #[serde(rename = "item.completed")]
    ItemCompleted { item: RawItem },
    /// A retry notice ("Reconnecting...") or the error a `turn.failed` repeats.
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        message: String,
    },
    /// Any type this module does not know (`item.plan.delta`, `request_user_input`, newer ones).
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawError {
    pub message: String,
}

/// One thread item. A flat struct: each kind fills the fields it has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: RawItemKind,
    /// `agent_message`, `reasoning`, `plan`.
    pub text: Option<String>,
    /// `command_execution`: the shell line as Codex ran it (`/bin/bash -c '...'`).
    pub command: Option<String>,
    pub aggregated_output: Option<String>,
    pub exit_code: Option<i32>,
    /// `in_progress`, `completed`, `failed`, `declined`.
    pub status: Option<String>,
    /// `file_change`: absolute paths with `add`, `update` or `delete`.
    pub changes: Vec<RawChange>,
    /// `mcp_tool_call`.
    pub server: Option<String>,
    pub tool: Option<String>,
    pub arguments: Value,
    pub result: Option<Value>,
    /// `mcp_tool_call` failures: `{"message": ...}`.
    pub error: Option<RawError>,
    /// `web_search`.
    pub query: Option<String>,
    /// `error` items: non-fatal warnings (deprecated config keys, ...).
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawItemKind {
    AgentMessage,
    Reasoning,
    Plan,
    CommandExecution,
    FileChange,
    McpToolCall,
    CollabToolCall,
    WebSearch,
    TodoList,
    Error,
    /// A kind this module does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl RawItemKind {
    /// Items that run a tool: after one completes, Codex must ask the model again.
    pub(crate) fn is_tool(self) -> bool {
        matches!(
            self,
            RawItemKind::CommandExecution
                | RawItemKind::FileChange
                | RawItemKind::McpToolCall
                | RawItemKind::CollabToolCall
                | RawItemKind::WebSearch
        )
    }

    /// Items the model produced (as opposed to Codex's own warnings).
    pub(crate) fn is_model_output(self) -> bool {
        self.is_tool()
            || matches!(
                self,
                RawItemKind::AgentMessage | RawItemKind::Reasoning | RawItemKind::Plan
            )
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawChange {
    pub path: String,
    pub kind: String,
}

/// `turn.completed` usage. OpenAI counts cached input inside `input_tokens` and reasoning
/// inside `output_tokens`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawUsage {
    pub input_tokens: Option<u64>,
    pub cached_input_tokens: Option<u64>,
    pub cache_write_input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

impl RawUsage {
    /// codemill keeps cache reads and writes apart from fresh input.
    pub(crate) fn to_usage(self) -> codemill_core::cost::Usage {
        let cached = self.cached_input_tokens.unwrap_or(0);
        let written = self.cache_write_input_tokens.unwrap_or(0);
        codemill_core::cost::Usage {
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_sub(cached)
                .saturating_sub(written),
            output_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: cached,
            cache_write_tokens: written,
        }
    }
}
