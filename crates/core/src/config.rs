//! Configuration files: `codemill.toml` (service) and `.codemill/pipeline.toml` (repository policy).
//!
//! Parsing is pure: callers pass the text and the path to name in errors. Every table rejects
//! unknown keys, and errors name the file, the key and what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod guard;
pub mod notify;
pub mod vendors;

pub use guard::{Budgets, ProjectSandbox, SandboxConfig, SandboxMode};
pub use notify::{NotifyChannel, NotifyOn, NotifyTarget, SmtpTls};

pub use vendors::{
    ForgeSettings, GithubApp, GithubSettings, JiraAuth, JiraSettings, LinearSettings, Roles,
    StatusMap, TrackerSettings, WebhookAuthKind, WebhookSettings,
};

use crate::agent::AgentLimits;
use crate::cost::{Price, PriceTable};

/// A configuration file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {location}{message}")]
pub struct ConfigError {
    pub file: String,
    /// "line 3, key `agent.modle`: " or empty.
    pub location: String,
    pub message: String,
}

impl ConfigError {
    fn at(file: &str, key: &str, message: impl fmt::Display) -> Self {
        ConfigError {
            file: file.to_string(),
            location: format!("key `{key}`: "),
            message: message.to_string(),
        }
    }
}

fn toml_error(file: &str, text: &str, err: toml::de::Error) -> ConfigError {
    let message = err.message().to_string();
    let Some(span) = err.span() else {
        return ConfigError {
            file: file.into(),
            location: String::new(),
            message,
        };
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    // The table header above the error, to name the key in full.
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let location = match (table, key) {
        (Some(t), Some(k)) => format!("line {line_no}, key `{t}.{k}`: "),
        (None, Some(k)) => format!("line {line_no}, key `{k}`: "),
        (Some(t), None) => format!("line {line_no}, table `[{t}]`: "),
        (None, None) => format!("line {line_no}: "),
    };
    ConfigError {
        file: file.into(),
        location,
        message,
    }
}

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
}

/// What happens to a ticket's worktree when its job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Remove it (the work is committed, pushed or on a WIP ref first).
    #[default]
    Remove,
    /// Keep worktrees of jobs that stopped (needs_attention, rejected).
    KeepFailed,
    /// Keep every worktree.
    Keep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    store: RawStore,
    pipeline: RawPipeline,
    git: RawGit,
    agent: RawAgent,
    agents: RawAgents,
    providers: BTreeMap<String, RawProvider>,
    prices: BTreeMap<String, Price>,
    projects: BTreeMap<String, RawProject>,
    sandbox: guard::RawSandbox,
    budgets: Budgets,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    /// The NAME of the environment variable holding a PostgreSQL URL (it carries a password).
    postgres_url_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawPipeline {
    max_fix_rounds: Option<u32>,
    gate_timeout_secs: Option<u64>,
    gate_output_cap_bytes: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawGit {
    author_name: Option<String>,
    author_email: Option<String>,
    worktree_retention: Option<Retention>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAgent {
    backend: Option<Backend>,
    provider: Option<String>,
    model: Option<String>,
    max_turns: Option<u32>,
    wall_clock_secs: Option<u64>,
    idle_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAgents {
    #[serde(rename = "claude-code")]
    claude_code: RawClaude,
    builtin: RawBuiltin,
    codex: RawCli,
    gemini: RawCli,
    opencode: RawCli,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawCli {
    command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawClaude {
    command: Option<String>,
    max_api_retries: Option<u32>,
    api_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawBuiltin {
    max_api_retries: Option<u32>,
    command_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    api: ProviderApi,
    #[serde(default)]
    base_url: Option<String>,
    /// The name of the environment variable that holds the key; keys are never written inline.
    #[serde(default)]
    api_key_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    repo: String,
    #[serde(default)]
    tracker: Option<String>,
    #[serde(default)]
    forge: Option<String>,
    #[serde(default)]
    jira: Option<JiraSettings>,
    #[serde(default)]
    github: Option<GithubSettings>,
    #[serde(default)]
    linear: Option<LinearSettings>,
    #[serde(default)]
    roles: Roles,
    #[serde(default)]
    budgets: Budgets,
    #[serde(default)]
    sandbox: ProjectSandbox,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
}

/// A model provider endpoint; the key is named, never stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderConfig {
    pub name: String,
    pub api: ProviderApi,
    pub base_url: String,
    pub api_key_env: Option<String>,
}

/// A registered project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectConfig {
    pub name: String,
    pub repo: String,
    pub tracker: TrackerSettings,
    pub forge: ForgeSettings,
    pub roles: Roles,
    /// `[budgets]` with this project's `[projects.NAME.budgets]` on top.
    pub budgets: Budgets,
    pub sandbox: ProjectSandbox,
    /// `[[projects.NAME.notify]]`: who is told what.
    pub notify: Vec<NotifyChannel>,
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

/// The validated service configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub file: PathBuf,
    /// Use PostgreSQL at the URL in this environment variable instead of the home's SQLite file.
    pub postgres_url_env: Option<String>,
    pub max_fix_rounds: u32,
    pub gate_timeout_secs: u64,
    pub gate_output_cap_bytes: usize,
    pub author_name: String,
    pub author_email: String,
    pub worktree_retention: Retention,
    pub agent: AgentConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub prices: PriceTable,
    pub projects: BTreeMap<String, ProjectConfig>,
    pub sandbox: SandboxConfig,
    /// `[budgets]`: limits for projects that do not override them.
    pub budgets: Budgets,
}

impl Config {
    /// Parse and validate the text of `codemill.toml`; `file` is named in errors.
    pub fn parse(text: &str, file: PathBuf) -> Result<Config, ConfigError> {
        let name = file.display().to_string();
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&name, text, e))?;
        let defaults = AgentLimits::default();
        let mut providers = BTreeMap::new();
        providers.insert(
            "demo".to_string(),
            ProviderConfig {
                name: "demo".into(),
                api: ProviderApi::Demo,
                base_url: String::new(),
                api_key_env: None,
            },
        );
        for (pname, p) in raw.providers {
            let base_url = match (p.api, p.base_url) {
                (ProviderApi::Demo, url) => url.unwrap_or_default(),
                (_, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                    url.trim_end_matches('/').to_string()
                }
                (_, Some(url)) => {
                    return Err(ConfigError::at(
                        &name,
                        &format!("providers.{pname}.base_url"),
                        format!("expected an http:// or https:// URL, found {url:?}"),
                    ));
                }
                (ProviderApi::Anthropic, None) => "https://api.anthropic.com".into(),
                (ProviderApi::OpenaiChat | ProviderApi::OpenaiResponses, None) => {
                    "https://api.openai.com".into()
                }
                (ProviderApi::Gemini, None) => "https://generativelanguage.googleapis.com".into(),
            };
            if let Some(env) = &p.api_key_env
                && (env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err(ConfigError::at(
                    &name,
                    &format!("providers.{pname}.api_key_env"),
                    format!(
                        "expected the NAME of an environment variable (letters, digits, '_'), found {env:?}; keys are never written in the file"
                    ),
                ));
            }
            providers.insert(
                pname.clone(),
                ProviderConfig {
                    name: pname,
                    api: p.api,
                    base_url,
                    api_key_env: p.api_key_env,
                },
            );
        }
        let provider = raw.agent.provider.unwrap_or_else(|| "demo".into());
        let Some(endpoint) = providers.get(&provider).cloned() else {
            return Err(ConfigError::at(
                &name,
                "agent.provider",
                format!(
                    "no provider named {provider:?}; expected one of: {}",
                    providers.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let backend = raw.agent.backend.unwrap_or(Backend::Builtin);
        if !backend.speaks().contains(&endpoint.api) {
            return Err(ConfigError::at(
                &name,
                "agent.provider",
                incompatible(backend, &endpoint),
            ));
        }
        let max_turns = raw.agent.max_turns.unwrap_or(defaults.max_turns);
        if max_turns == 0 {
            return Err(ConfigError::at(
                &name,
                "agent.max_turns",
                "expected a number of turns of at least 1",
            ));
        }
        raw.budgets.check(&name, "budgets")?;
        let sandbox = raw.sandbox.resolve(&name)?;
        let mut projects = BTreeMap::new();
        for (pname, p) in raw.projects {
            if pname.parse::<crate::ids::ProjectName>().is_err() {
                return Err(ConfigError::at(
                    &name,
                    &format!("projects.{pname}"),
                    "expected a project name of ASCII letters, digits or '_', starting with a letter",
                ));
            }
            let (tracker, forge) = vendor_settings(&name, &pname, &p)?;
            p.budgets
                .check(&name, &format!("projects.{pname}.budgets"))?;
            p.sandbox.check(&name, &pname)?;
            let notify = p
                .notify
                .iter()
                .enumerate()
                .map(|(i, n)| n.resolve(&name, &pname, i))
                .collect::<Result<Vec<_>, _>>()?;
            projects.insert(
                pname.clone(),
                ProjectConfig {
                    name: pname,
                    repo: p.repo,
                    tracker,
                    forge,
                    roles: p.roles,
                    budgets: raw.budgets.overridden_by(&p.budgets),
                    sandbox: p.sandbox,
                    notify,
                },
            );
        }
        if let Some(env) = &raw.store.postgres_url_env
            && (env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(ConfigError::at(
                &name,
                "store.postgres_url_env",
                format!("expected the NAME of an environment variable, found {env:?}"),
            ));
        }
        Ok(Config {
            file,
            postgres_url_env: raw.store.postgres_url_env,
            max_fix_rounds: raw.pipeline.max_fix_rounds.unwrap_or(3),
            gate_timeout_secs: raw.pipeline.gate_timeout_secs.unwrap_or(600),
            gate_output_cap_bytes: raw.pipeline.gate_output_cap_bytes.unwrap_or(64 * 1024),
            author_name: raw.git.author_name.unwrap_or_else(|| "codemill".into()),
            author_email: raw
                .git
                .author_email
                .unwrap_or_else(|| "codemill@localhost".into()),
            worktree_retention: raw.git.worktree_retention.unwrap_or_default(),
            agent: AgentConfig {
                backend,
                provider,
                endpoint,
                model: raw.agent.model.unwrap_or_else(|| "codemill-demo".into()),
                limits: AgentLimits {
                    max_turns,
                    wall_clock: std::time::Duration::from_secs(
                        raw.agent
                            .wall_clock_secs
                            .unwrap_or(defaults.wall_clock.as_secs()),
                    ),
                    idle: std::time::Duration::from_secs(
                        raw.agent.idle_secs.unwrap_or(defaults.idle.as_secs()),
                    ),
                },
                claude_command: raw
                    .agents
                    .claude_code
                    .command
                    .unwrap_or_else(|| "claude".into()),
                claude_max_api_retries: raw.agents.claude_code.max_api_retries.unwrap_or(2),
                claude_api_timeout_ms: raw.agents.claude_code.api_timeout_ms.unwrap_or(60_000),
                builtin_max_api_retries: raw.agents.builtin.max_api_retries.unwrap_or(2),
                builtin_command_timeout_secs: raw
                    .agents
                    .builtin
                    .command_timeout_secs
                    .unwrap_or(300),
                codex_command: raw.agents.codex.command.unwrap_or_else(|| "codex".into()),
                gemini_command: raw.agents.gemini.command.unwrap_or_else(|| "gemini".into()),
                opencode_command: raw
                    .agents
                    .opencode
                    .command
                    .unwrap_or_else(|| "opencode".into()),
            },
            providers,
            prices: PriceTable(raw.prices),
            projects,
            sandbox,
            budgets: raw.budgets,
        })
    }

    /// The provider the agent steps use (checked to exist when parsed).
    pub fn provider(&self) -> &ProviderConfig {
        &self.agent.endpoint
    }

    /// The budgets of a project (`[budgets]` for a project that is not registered).
    pub fn budgets_for(&self, project: &str) -> Budgets {
        self.projects
            .get(project)
            .map_or(self.budgets, |p| p.budgets)
    }
}

/// The tracker and forge of project `pname`, with their settings checked.
fn vendor_settings(
    file: &str,
    pname: &str,
    p: &RawProject,
) -> Result<(TrackerSettings, ForgeSettings), ConfigError> {
    let at = |key: &str| format!("projects.{pname}.{key}");
    let missing = |section: &str, what: &str| {
        ConfigError::at(
            file,
            &at(section),
            format!("{what} needs a [projects.{pname}.{section}] table"),
        )
    };
    let url = |key: &str, url: &str| -> Result<(), ConfigError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(())
        } else {
            Err(ConfigError::at(
                file,
                &at(key),
                format!("expected an http:// or https:// URL, found {url:?}"),
            ))
        }
    };
    let env = |key: &str, name: &str| -> Result<(), ConfigError> {
        if vendors::is_env_name(name) {
            Ok(())
        } else {
            Err(ConfigError::at(
                file,
                &at(key),
                format!(
                    "expected the NAME of an environment variable (letters, digits, '_'), found {name:?}; secrets are never written in the file"
                ),
            ))
        }
    };
    let webhook = |section: &str, w: &Option<WebhookSettings>| -> Result<(), ConfigError> {
        match w {
            Some(w) => env(&format!("{section}.webhook.secret_env"), &w.secret_env),
            None => Ok(()),
        }
    };
    let github = |what: &str| -> Result<GithubSettings, ConfigError> {
        let g = p.github.clone().ok_or_else(|| missing("github", what))?;
        url("github.api_url", &g.api_url)?;
        let parts: Vec<&str> = g.repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|s| s.is_empty()) {
            return Err(ConfigError::at(
                file,
                &at("github.repo"),
                format!("expected \"owner/name\", found {:?}", g.repo),
            ));
        }
        match (&g.token_env, &g.app) {
            (Some(t), None) => env("github.token_env", t)?,
            (None, Some(app)) => env("github.app.private_key_env", &app.private_key_env)?,
            _ => {
                return Err(ConfigError::at(
                    file,
                    &at("github"),
                    "expected exactly one of token_env or [app] (GitHub App authentication)",
                ));
            }
        }
        webhook("github", &g.webhook)?;
        Ok(g)
    };
    let tracker = match p.tracker.as_deref().unwrap_or("local") {
        "local" => TrackerSettings::Local,
        "jira" => {
            let j = p
                .jira
                .clone()
                .ok_or_else(|| missing("jira", "tracker = \"jira\""))?;
            url("jira.base_url", &j.base_url)?;
            env("jira.token_env", &j.token_env)?;
            match (&j.auth, &j.email_env) {
                (JiraAuth::Cloud, Some(e)) => env("jira.email_env", e)?,
                (JiraAuth::Cloud, None) => {
                    return Err(ConfigError::at(
                        file,
                        &at("jira.email_env"),
                        "Jira Cloud authentication (auth = \"cloud\") needs email_env, the variable holding the account's e-mail",
                    ));
                }
                (JiraAuth::DataCenter, _) => {}
            }
            webhook("jira", &j.webhook)?;
            TrackerSettings::Jira(j)
        }
        "github" => TrackerSettings::Github(github("tracker = \"github\"")?),
        "linear" => {
            let l = p
                .linear
                .clone()
                .ok_or_else(|| missing("linear", "tracker = \"linear\""))?;
            url("linear.api_url", &l.api_url)?;
            env("linear.token_env", &l.token_env)?;
            webhook("linear", &l.webhook)?;
            TrackerSettings::Linear(l)
        }
        other => {
            return Err(ConfigError::at(
                file,
                &at("tracker"),
                format!(
                    "expected one of \"local\", \"jira\", \"github\", \"linear\", found {other:?}"
                ),
            ));
        }
    };
    let forge = match p.forge.as_deref().unwrap_or("local") {
        "local" => ForgeSettings::Local,
        "github" => ForgeSettings::Github(github("forge = \"github\"")?),
        other => {
            return Err(ConfigError::at(
                file,
                &at("forge"),
                format!("expected \"local\" or \"github\", found {other:?}"),
            ));
        }
    };
    Ok((tracker, forge))
}

fn incompatible(backend: Backend, provider: &ProviderConfig) -> String {
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

/// Which agent, provider and model one stage uses; every field falls back to `[stages.default]`,
/// then to the `[agent]` table of codemill.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StageAgent {
    #[serde(default)]
    pub backend: Option<Backend>,
    /// A provider NAME from codemill.toml; a repository cannot define endpoints or keys.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

/// The stage map of `.codemill/pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StageMap {
    #[serde(default)]
    pub default: Option<StageAgent>,
    #[serde(default)]
    pub research: Option<StageAgent>,
    #[serde(default)]
    pub plan: Option<StageAgent>,
    #[serde(default)]
    pub implement: Option<StageAgent>,
    #[serde(default)]
    pub review: Option<StageAgent>,
    #[serde(default)]
    pub triage: Option<StageAgent>,
    #[serde(default)]
    pub readiness: Option<StageAgent>,
}

/// The agent one stage runs with, resolved and checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedAgent {
    pub backend: Backend,
    pub provider: ProviderConfig,
    pub model: String,
}

impl Config {
    /// Resolve the agent of `stage` (fix rounds use implement's: they resume its session).
    pub fn agent_for(
        &self,
        policy: Option<&RepoPolicy>,
        policy_file: &str,
        stage: crate::pipeline::AgentStage,
    ) -> Result<ResolvedAgent, ConfigError> {
        use crate::pipeline::AgentStage;
        let map = policy.map(|p| &p.stages);
        let (key, specific) = match stage {
            AgentStage::Research => ("research", map.and_then(|m| m.research.as_ref())),
            AgentStage::Plan => ("plan", map.and_then(|m| m.plan.as_ref())),
            AgentStage::Implement | AgentStage::Fix => {
                ("implement", map.and_then(|m| m.implement.as_ref()))
            }
            AgentStage::Review => ("review", map.and_then(|m| m.review.as_ref())),
            AgentStage::Triage => ("triage", map.and_then(|m| m.triage.as_ref())),
            AgentStage::Readiness => ("readiness", map.and_then(|m| m.readiness.as_ref())),
        };
        let default = map.and_then(|m| m.default.as_ref());
        let pick = |f: fn(&StageAgent) -> Option<&String>| {
            specific
                .and_then(f)
                .or_else(|| default.and_then(f))
                .cloned()
        };
        let backend = specific
            .and_then(|s| s.backend)
            .or_else(|| default.and_then(|d| d.backend))
            .unwrap_or(self.agent.backend);
        let provider_name =
            pick(|s| s.provider.as_ref()).unwrap_or_else(|| self.agent.provider.clone());
        let model = pick(|s| s.model.as_ref()).unwrap_or_else(|| self.agent.model.clone());
        let Some(provider) = self.providers.get(&provider_name).cloned() else {
            return Err(ConfigError::at(
                policy_file,
                &format!("stages.{key}.provider"),
                format!(
                    "no provider named {provider_name:?} in {}; expected one of: {}",
                    self.file.display(),
                    self.providers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if !backend.speaks().contains(&provider.api) {
            return Err(ConfigError::at(
                policy_file,
                &format!("stages.{key}"),
                incompatible(backend, &provider),
            ));
        }
        Ok(ResolvedAgent {
            backend,
            provider,
            model,
        })
    }
}

/// One gate: an argument list run in the worktree. Never a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub name: String,
    pub command: Vec<String>,
    /// Relative to the repository root.
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// The repository's own policy, `.codemill/pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RepoPolicy {
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// Run once per job, with network, on the base commit before any agent step (`cargo
    /// fetch`, `npm ci`): sandboxed like gates otherwise.
    #[serde(default)]
    pub prepare: Vec<GateSpec>,
    #[serde(default)]
    pub max_fix_rounds: Option<u32>,
    /// Which agent and model each stage uses.
    #[serde(default)]
    pub stages: StageMap,
    /// How review findings are sorted into fix_now, backlog and ignore.
    #[serde(default)]
    pub triage: crate::triage::TriagePolicy,
}

impl RepoPolicy {
    pub fn parse(text: &str, file: &str) -> Result<RepoPolicy, ConfigError> {
        let policy: RepoPolicy = toml::from_str(text).map_err(|e| toml_error(file, text, e))?;
        let listed = policy
            .gates
            .iter()
            .enumerate()
            .map(|(i, g)| ("gates", i, g))
            .chain(
                policy
                    .prepare
                    .iter()
                    .enumerate()
                    .map(|(i, g)| ("prepare", i, g)),
            );
        for (table, i, g) in listed {
            if g.command.is_empty() || g.command[0].trim().is_empty() {
                return Err(ConfigError::at(
                    file,
                    &format!("{table}[{i}].command"),
                    format!(
                        "gate {:?}: expected a non-empty argument list such as [\"cargo\", \"test\"]",
                        g.name
                    ),
                ));
            }
            if let Some(dir) = &g.workdir
                && (dir.starts_with('/') || dir.split('/').any(|p| p == ".."))
            {
                return Err(ConfigError::at(
                    file,
                    &format!("{table}[{i}].workdir"),
                    format!("expected a path inside the repository, found {dir:?}"),
                ));
            }
        }
        Ok(policy)
    }
}

/// Gates detected from the files at the repository root when it has no policy file.
pub fn detect_gates(root_files: &[&str]) -> Vec<GateSpec> {
    let has = |f: &str| root_files.contains(&f);
    let gate = |name: &str, cmd: &[&str]| GateSpec {
        name: name.into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        workdir: None,
        timeout_secs: None,
    };
    let mut gates = Vec::new();
    if has("Cargo.toml") {
        gates.push(gate(
            "build",
            &["cargo", "build", "--all-targets", "--quiet"],
        ));
        gates.push(gate("test", &["cargo", "test", "--quiet"]));
    } else if has("package.json") {
        let pm = if has("pnpm-lock.yaml") { "pnpm" } else { "npm" };
        gates.push(gate("test", &[pm, "test"]));
    } else if has("go.mod") {
        gates.push(gate("vet", &["go", "vet", "./..."]));
        gates.push(gate("test", &["go", "test", "./..."]));
    } else if has("pyproject.toml") || has("setup.py") || has("pytest.ini") {
        gates.push(gate("test", &["python3", "-m", "pytest", "-q"]));
    } else if has("Makefile") {
        gates.push(gate("test", &["make", "test"]));
    }
    gates
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, PathBuf::from("/h/codemill.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.max_fix_rounds, 3);
        assert_eq!(c.agent.backend, Backend::Builtin);
        assert_eq!(c.provider().api, ProviderApi::Demo);
    }

    #[test]
    fn unknown_key_names_file_key_and_expected() {
        let err = parse("[agent]\nbackend = \"builtin\"\nmodle = \"x\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/h/codemill.toml: line 3, key `agent.modle`"),
            "{msg}"
        );
        assert!(msg.contains("unknown field `modle`"), "{msg}");
        assert!(msg.contains("expected one of"), "{msg}");
    }

    #[test]
    fn wrong_type_names_key_and_type() {
        let msg = parse("[pipeline]\nmax_fix_rounds = \"three\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("key `pipeline.max_fix_rounds`"), "{msg}");
        assert!(
            msg.contains("invalid type: string \"three\", expected u32"),
            "{msg}"
        );
    }

    #[test]
    fn sandbox_and_budgets_have_defaults_and_checked_overrides() {
        let c = parse("").unwrap();
        assert_eq!(c.sandbox.mode, SandboxMode::Bwrap);
        assert!(c.budgets.is_empty());
        let c = parse(
            "[sandbox]\nmode = \"off\"\nexpose = [\"/opt/tools\"]\n[sandbox.env]\nRUSTUP_TOOLCHAIN = \"stable\"\n\
             [budgets]\njob_usd = 20.0\nday_usd = 100\n\
             [projects.WEB]\nrepo = \"/r\"\n[projects.WEB.budgets]\njob_usd = 5.0\n\
             [projects.WEB.sandbox]\nallow_hosts = [\"index.crates.io\"]\n",
        )
        .unwrap();
        assert_eq!(c.sandbox.mode, SandboxMode::Off);
        assert_eq!(c.budgets_for("WEB").job_usd, Some(5.0));
        assert_eq!(c.budgets_for("WEB").day_usd, Some(100.0));
        assert_eq!(c.budgets_for("OTHER").job_usd, Some(20.0));
        assert!(c.projects["WEB"].sandbox.allows("index.crates.io"));
        let msg = parse("[budgets]\njob_usd = -1.0\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("key `budgets.job_usd`"), "{msg}");
        let msg = parse("[sandbox]\nmode = \"none\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("sandbox.mode") && msg.contains("bwrap"),
            "{msg}"
        );
        let msg = parse("[sandbox]\nexpose = [\"tools\"]\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("absolute"), "{msg}");
        let msg = parse(
            "[projects.WEB]\nrepo = \"/r\"\n[projects.WEB.sandbox]\nallow_hosts = [\"a b\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("projects.WEB.sandbox.allow_hosts"), "{msg}");
    }

    #[test]
    fn unknown_top_level_table() {
        let msg = parse("[agentz]\nx = 1\n").unwrap_err().to_string();
        assert!(msg.contains("unknown field `agentz`"), "{msg}");
    }

    #[test]
    fn provider_must_exist_and_key_is_an_env_name() {
        let msg = parse("[agent]\nprovider = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("key `agent.provider`") && msg.contains("nope"),
            "{msg}"
        );
        let msg = parse("[providers.a]\napi = \"anthropic\"\napi_key_env = \"sk-ant-123\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("providers.a.api_key_env"), "{msg}");
        let c = parse("[providers.a]\napi = \"openai-chat\"\nbase_url = \"http://127.0.0.1:1/\"\napi_key_env = \"K\"\n[agent]\nprovider = \"a\"\n").unwrap();
        assert_eq!(c.provider().base_url, "http://127.0.0.1:1");
    }

    #[test]
    fn policy_gates_are_argument_lists() {
        let p = RepoPolicy::parse(
            "[[gates]]\nname = \"t\"\ncommand = [\"cargo\", \"test\"]\ntimeout_secs = 5\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.gates[0].command, vec!["cargo", "test"]);
        let msg = RepoPolicy::parse(
            "[[gates]]\nname = \"t\"\ncommand = \"cargo test\"\n",
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("gates.command") || msg.contains("command"),
            "{msg}"
        );
        assert!(msg.contains("expected a sequence"), "{msg}");
        assert!(RepoPolicy::parse("[[gates]]\nname = \"t\"\ncommand = []\n", "p.toml").is_err());
        assert!(
            RepoPolicy::parse(
                "[[gates]]\nname = \"t\"\ncommand = [\"x\"]\nworkdir = \"../up\"\n",
                "p.toml"
            )
            .is_err()
        );
    }

    #[test]
    fn stage_map_resolves_with_fallbacks() {
        use crate::pipeline::AgentStage;
        let c = parse(
            "[agent]\nprovider = \"a\"\nmodel = \"m0\"\n[providers.a]\napi = \"anthropic\"\n[providers.o]\napi = \"openai-responses\"\n",
        )
        .unwrap();
        let policy = RepoPolicy::parse(
            "[stages.default]\nbackend = \"claude-code\"\nmodel = \"big\"\n[stages.implement]\nbackend = \"codex\"\nprovider = \"o\"\nmodel = \"gpt-5.5\"\n",
            "p.toml",
        )
        .unwrap();
        let plan = c
            .agent_for(Some(&policy), "p.toml", AgentStage::Plan)
            .unwrap();
        assert_eq!(
            (
                plan.backend,
                plan.provider.name.as_str(),
                plan.model.as_str()
            ),
            (Backend::ClaudeCode, "a", "big")
        );
        let fix = c
            .agent_for(Some(&policy), "p.toml", AgentStage::Fix)
            .unwrap();
        assert_eq!(
            (fix.backend, fix.provider.name.as_str(), fix.model.as_str()),
            (Backend::Codex, "o", "gpt-5.5")
        );
        let none = c.agent_for(None, "p.toml", AgentStage::Review).unwrap();
        assert_eq!(
            (none.backend, none.model.as_str()),
            (Backend::Builtin, "m0")
        );
    }

    #[test]
    fn stage_map_errors_name_the_key() {
        use crate::pipeline::AgentStage;
        let c = parse("[providers.a]\napi = \"anthropic\"\n").unwrap();
        let p = RepoPolicy::parse("[stages.review]\nprovider = \"nope\"\n", "p.toml").unwrap();
        let msg = c
            .agent_for(Some(&p), "p.toml", AgentStage::Review)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("p.toml: key `stages.review.provider`"),
            "{msg}"
        );
        let p = RepoPolicy::parse(
            "[stages.review]\nbackend = \"codex\"\nprovider = \"a\"\n",
            "p.toml",
        )
        .unwrap();
        let msg = c
            .agent_for(Some(&p), "p.toml", AgentStage::Review)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("backend codex cannot use provider \"a\""),
            "{msg}"
        );
        let msg = RepoPolicy::parse("[stages.fix]\nmodel = \"x\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown field `fix`"), "{msg}");
        let msg = parse("[agent]\nbackend = \"codex\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("backend codex cannot use provider \"demo\""),
            "{msg}"
        );
    }

    #[test]
    fn detection_by_marker_files() {
        assert_eq!(
            detect_gates(&["Cargo.toml"])[1].command,
            vec!["cargo", "test", "--quiet"]
        );
        assert_eq!(
            detect_gates(&["package.json", "pnpm-lock.yaml"])[0].command[0],
            "pnpm"
        );
        assert_eq!(detect_gates(&["go.mod"]).len(), 2);
        assert_eq!(detect_gates(&["pyproject.toml"])[0].command[2], "pytest");
        assert_eq!(detect_gates(&["Makefile"])[0].command, vec!["make", "test"]);
        assert!(detect_gates(&["README.md"]).is_empty());
    }
}
