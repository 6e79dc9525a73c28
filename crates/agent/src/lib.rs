//! The agent seam: one request/run contract and the backends behind it (`claude-code`, `codex`,
//! `gemini`, `opencode`, `builtin`).
//!
//! Architecture invariant: raw CLI and provider JSON never leaves its backend module; callers
//! only see [`AgentRequest`], [`AgentRun`] and the normalised [`AgentEvent`]s. Anything that goes
//! wrong with the agent itself (missing CLI, API errors, timeouts, turn limit) is an
//! [`AgentOutcome`] inside `Ok`; [`AgentError`] is reserved for our own infrastructure failing.

use std::path::PathBuf;

use codemill_process::ExecPolicy;
use futures_util::future::BoxFuture;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

pub use codemill_core::agent::{
    AgentEvent, AgentLimits, AgentMode, AgentOutcome, AgentRun, TimeoutKind,
};
pub use codemill_core::cost::Usage;

pub mod builtin;
pub mod claude;
pub mod codex;
mod driver;
pub mod gemini;
pub mod knowledge;
mod log;
pub mod opencode;
mod private;
pub mod probe;
mod reap;
mod text;

pub use builtin::Builtin;
pub use claude::ClaudeCode;
pub use codex::Codex;
pub use gemini::GeminiCli;
pub use knowledge::KnowledgeTools;
pub use opencode::Opencode;

/// Everything one agent run needs. The runner builds it; backends only read it.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The ticket's git worktree; the agent's working directory.
    pub workdir: PathBuf,
    pub prompt: String,
    /// Appended to the backend's own system prompt.
    pub system_prompt: Option<String>,
    /// `ReadOnly` really removes the write, edit and shell tools.
    pub mode: AgentMode,
    /// `Some(id)` continues that session (fix rounds).
    pub resume_session: Option<String>,
    pub model: String,
    pub limits: AgentLimits,
    /// Per job and backend: isolated HOME, config, transcripts, builtin sessions. The same
    /// directory is passed for implement and its fix rounds so resume works.
    pub state_dir: PathBuf,
    /// The raw output of this run is appended here (e.g. the CLI's stream-json lines).
    pub log_path: PathBuf,
    /// Where the agent reaches its model: codemill's gateway with a per-step token.
    pub endpoint: Endpoint,
    /// How every process of the run is started: the environment it gets (built from nothing:
    /// PATH, LANG and what the runner adds; the backend adds its own HOME and config
    /// variables), the sandbox around it and its limits. Decided by the runner for the stage.
    pub exec: ExecPolicy,
    /// The knowledge tools (search_knowledge, read_knowledge, record_knowledge,
    /// ticket_context), answered by the gateway under this step's pass; `None` offers none.
    pub knowledge: Option<KnowledgeTools>,
    /// Fired to stop the run at once (a budget refused the agent's model request); the run
    /// then ends as `Killed`.
    pub cancel: CancellationToken,
}

/// The wire protocol of a model endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages, `POST {base}/v1/messages`.
    Anthropic,
    /// OpenAI Chat Completions, `POST {base}/v1/chat/completions`.
    OpenAiChat,
    /// OpenAI Responses, `POST {base}/v1/responses` (Codex CLI).
    OpenAiResponses,
    /// Gemini `generateContent` (Gemini CLI).
    Gemini,
}

impl Api {
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::Anthropic => "anthropic",
            Api::OpenAiChat => "openai-chat",
            Api::OpenAiResponses => "openai-responses",
            Api::Gemini => "gemini",
        }
    }
}

/// Where the model lives. `Debug` never shows the key (`SecretString` redacts itself).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub api: Api,
    /// Scheme, host and port, without `/v1`: `http://127.0.0.1:1234`.
    pub base_url: String,
    pub api_key: SecretString,
}

/// Receives events live as the agent produces them; send errors (nobody listening) are ignored.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<AgentEvent>;

/// Our own infrastructure failed; the agent's own failures are [`AgentOutcome`]s instead.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The state directory (HOME, config, sessions) could not be created.
    #[error("cannot prepare the agent state directory: {0}")]
    StateDir(#[source] std::io::Error),
    /// The raw log could not be opened or written.
    #[error("cannot write the agent log: {0}")]
    Log(#[source] std::io::Error),
    /// A builtin session could not be saved, so a fix round could not resume it.
    #[error("cannot save the agent session: {0}")]
    Session(#[source] std::io::Error),
}

/// One way of running a coding agent.
pub trait Agent: Send + Sync {
    /// Stable backend name, as used in configuration (`claude-code`, `builtin`).
    fn name(&self) -> &'static str;

    /// Runs the agent to completion (or until a limit), streaming events into `events`.
    fn run<'a>(
        &'a self,
        req: &'a AgentRequest,
        events: EventSink,
    ) -> BoxFuture<'a, Result<AgentRun, AgentError>>;
}

/// Sends an event, ignoring a closed channel: progress display is optional.
fn emit(events: &EventSink, event: AgentEvent) {
    let _ = events.send(event);
}
