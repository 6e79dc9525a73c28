//! `[agent]`, `[agents]` and `[providers]` of codemill.toml, validated: which backend runs the
//! agent steps, each CLI's settings, and the model endpoints a backend can talk to.

use serde::{Deserialize, Serialize};

use crate::agent::AgentLimits;

/// Which agent backend runs the agent steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Builtin,
    ClaudeCode,
    Codex,
    Gemini,
    Opencode,
}

impl Backend {
    pub const ALL: [Backend; 5] = [
        Backend::Builtin,
        Backend::ClaudeCode,
        Backend::Codex,
        Backend::Gemini,
        Backend::Opencode,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Builtin => "builtin",
            Backend::ClaudeCode => "claude-code",
            Backend::Codex => "codex",
            Backend::Gemini => "gemini",
            Backend::Opencode => "opencode",
        }
    }

    /// The provider wire formats this backend can talk to (the demo model speaks anthropic).
    pub fn speaks(&self) -> &'static [ProviderApi] {
        match self {
            Backend::Builtin | Backend::Opencode => &[
                ProviderApi::Anthropic,
                ProviderApi::OpenaiChat,
                ProviderApi::Demo,
            ],
            Backend::ClaudeCode => &[ProviderApi::Anthropic, ProviderApi::Demo],
            Backend::Codex => &[ProviderApi::OpenaiResponses],
            Backend::Gemini => &[ProviderApi::Gemini],
        }
    }
}

/// The wire protocol of a model provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderApi {
    Anthropic,
    OpenaiChat,
    /// OpenAI Responses API (what Codex speaks).
    OpenaiResponses,
    /// Google Gemini generateContent (what Gemini CLI speaks).
    Gemini,
    /// The embedded scripted demo model, started in-process. Never a real model.
    Demo,
}

impl ProviderApi {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderApi::Anthropic => "anthropic",
            ProviderApi::OpenaiChat => "openai-chat",
            ProviderApi::OpenaiResponses => "openai-responses",
            ProviderApi::Gemini => "gemini",
            ProviderApi::Demo => "demo",
        }
    }

    /// `gen_ai.provider.name` of OpenTelemetry's GenAI conventions for this wire format.
    pub fn gen_ai_provider(&self) -> &'static str {
        match self {
            ProviderApi::Anthropic => "anthropic",
            ProviderApi::OpenaiChat | ProviderApi::OpenaiResponses => "openai",
            ProviderApi::Gemini => "gcp.gemini",
            ProviderApi::Demo => "codemill.demo",
        }
    }

    /// `gen_ai.operation.name` of one request in this wire format.
    pub fn gen_ai_operation(&self) -> &'static str {
        match self {
            ProviderApi::Gemini => "generate_content",
            _ => "chat",
        }
    }
}

/// A model provider endpoint; the key is named, never stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderConfig {
    pub name: String,
    pub api: ProviderApi,
    pub base_url: String,
    pub api_key_env: Option<String>,
}

/// Settings of the agent steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentConfig {
    pub backend: Backend,
    pub provider: String,
    /// The resolved `providers.<provider>` entry.
    pub endpoint: ProviderConfig,
    pub model: String,
    pub limits: AgentLimits,
    pub claude_command: String,
    pub claude_max_api_retries: u32,
    pub claude_api_timeout_ms: u64,
    pub builtin_max_api_retries: u32,
    pub builtin_command_timeout_secs: u64,
    pub codex_command: String,
    pub gemini_command: String,
    pub opencode_command: String,
}

impl AgentConfig {
    /// The executable configured for a CLI backend (None for the built-in loop).
    pub fn command(&self, backend: Backend) -> Option<&str> {
        match backend {
            Backend::Builtin => None,
            Backend::ClaudeCode => Some(&self.claude_command),
            Backend::Codex => Some(&self.codex_command),
            Backend::Gemini => Some(&self.gemini_command),
            Backend::Opencode => Some(&self.opencode_command),
        }
    }
}

pub(super) fn incompatible(backend: Backend, provider: &ProviderConfig) -> String {
    format!(
        "backend {} cannot use provider {:?} (api = \"{}\"); it needs api = {}",
        backend.as_str(),
        provider.name,
        provider.api.as_str(),
        backend
            .speaks()
            .iter()
            .map(|a| format!("\"{}\"", a.as_str()))
            .collect::<Vec<_>>()
            .join(" or ")
    )
}
