//! `codemill.toml`, the service configuration: the raw file (every table rejects unknown keys)
//! parsed and checked into [`Config`], with each project's tracker and forge settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::agent::AgentLimits;
use crate::cost::{Price, PriceTable};

use super::agents::incompatible;
use super::{
    AgentConfig, Backend, Budgets, ConfigError, ForgeSettings, GithubSettings, GitlabSettings,
    JiraAuth, JiraSettings, LinearSettings, MergeQueueSettings, NotifyChannel, ProjectSandbox,
    ProviderApi, ProviderConfig, Roles, SandboxConfig, TrackerSettings, WebhookSettings, guard,
    notify, toml_error, vendors,
};

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
    web: super::WebConfig,
    telemetry: super::TelemetryConfig,
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
    max_subtasks: Option<u32>,
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
    gitlab: Option<GitlabSettings>,
    #[serde(default)]
    roles: Roles,
    #[serde(default)]
    budgets: Budgets,
    #[serde(default)]
    sandbox: ProjectSandbox,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
    #[serde(default)]
    merge_queue: MergeQueueSettings,
    #[serde(default)]
    refinement: RefinementSettings,
    #[serde(default)]
    assistant: AssistantSettings,
}

/// `[projects.NAME.assistant]`: the product-owner assistant's own budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistantSettings {
    /// What one conversation may spend on models, in USD; the project's daily budgets count
    /// it too.
    pub budget_usd: f64,
}

impl Default for AssistantSettings {
    fn default() -> Self {
        AssistantSettings { budget_usd: 1.0 }
    }
}

/// `[projects.NAME.refinement]`: what happens to an idea once it is refined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefinementSettings {
    /// A refined spec with no open questions, no proposed split and a size other than L goes
    /// straight to the build queue; otherwise it waits for a person to accept it.
    pub auto_queue: bool,
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
    /// `[projects.NAME.merge_queue]`: how approved pull requests land.
    pub merge_queue: MergeQueueSettings,
    /// `[projects.NAME.refinement]`: ideas refined into specs.
    pub refinement: RefinementSettings,
    /// `[projects.NAME.assistant]`: the product-owner assistant.
    pub assistant: AssistantSettings,
}

/// The validated service configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub file: PathBuf,
    /// Use PostgreSQL at the URL in this environment variable instead of the home's SQLite file.
    pub postgres_url_env: Option<String>,
    pub max_fix_rounds: u32,
    /// Sub-tasks at most when the planner splits a ticket; a repository's policy may lower or
    /// raise it.
    pub max_subtasks: u32,
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
    /// `[web]`: the dashboard's single sign-on.
    pub web: super::WebConfig,
    /// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP.
    pub telemetry: super::TelemetryConfig,
}

/// Values that parse but make no sense: refused with the key that holds them.
fn check_values(file: &str, raw: &RawFile) -> Result<(), ConfigError> {
    let positive = [
        (
            "pipeline.max_fix_rounds",
            raw.pipeline.max_fix_rounds.map(u64::from),
        ),
        ("pipeline.gate_timeout_secs", raw.pipeline.gate_timeout_secs),
        (
            "pipeline.gate_output_cap_bytes",
            raw.pipeline.gate_output_cap_bytes.map(|n| n as u64),
        ),
        ("agent.max_turns", raw.agent.max_turns.map(u64::from)),
        ("agent.wall_clock_secs", raw.agent.wall_clock_secs),
        ("agent.idle_secs", raw.agent.idle_secs),
    ];
    for (key, value) in positive {
        if value == Some(0) {
            return Err(ConfigError::at(file, key, "must be 1 or more, found 0"));
        }
    }
    if let Some(n) = raw.pipeline.max_subtasks
        && !(1..=32).contains(&n)
    {
        return Err(ConfigError::at(
            file,
            "pipeline.max_subtasks",
            format!("expected 1 to 32 sub-tasks, found {n}"),
        ));
    }
    if let Some(model) = &raw.agent.model
        && model.trim().is_empty()
    {
        return Err(ConfigError::at(
            file,
            "agent.model",
            "is empty: name the model the provider serves, or leave the key out",
        ));
    }
    for (model, price) in &raw.prices {
        let fields = [
            ("input_per_mtok", price.input_per_mtok),
            ("output_per_mtok", price.output_per_mtok),
            ("cache_read_per_mtok", price.cache_read_per_mtok),
            ("cache_write_per_mtok", price.cache_write_per_mtok),
        ];
        for (field, value) in fields {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::at(
                    file,
                    &format!("prices.{model}.{field}"),
                    format!(
                        "must be a price in dollars per million tokens, 0 or more, found {value}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Config {
    /// Parse and validate the text of `codemill.toml`; `file` is named in errors.
    pub fn parse(text: &str, file: PathBuf) -> Result<Config, ConfigError> {
        Config::parse_checked(text, file).map_err(|e| e.with_line(text))
    }

    fn parse_checked(text: &str, file: PathBuf) -> Result<Config, ConfigError> {
        let name = file.display().to_string();
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&name, text, e))?;
        check_values(&name, &raw)?;
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
        raw.web.check(&name)?;
        raw.telemetry.check(&name)?;
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
            p.merge_queue.check(&name, &pname)?;
            if !(p.assistant.budget_usd.is_finite() && p.assistant.budget_usd > 0.0) {
                return Err(ConfigError::at(
                    &name,
                    &format!("projects.{pname}.assistant.budget_usd"),
                    format!(
                        "expected a positive amount of USD, found {}",
                        p.assistant.budget_usd
                    ),
                ));
            }
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
                    merge_queue: p.merge_queue,
                    refinement: p.refinement,
                    assistant: p.assistant,
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
            max_subtasks: raw
                .pipeline
                .max_subtasks
                .unwrap_or(crate::subtasks::DEFAULT_MAX_SUBTASKS),
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
            web: raw.web,
            telemetry: raw.telemetry,
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
    let gitlab = |what: &str| -> Result<GitlabSettings, ConfigError> {
        let g = p.gitlab.clone().ok_or_else(|| missing("gitlab", what))?;
        url("gitlab.base_url", &g.base_url)?;
        let project = g.project.trim();
        let numeric = !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit());
        let path = project.split('/').count() >= 2 && project.split('/').all(|s| !s.is_empty());
        if !numeric && !path {
            return Err(ConfigError::at(
                file,
                &at("gitlab.project"),
                format!(
                    "expected the project's path with its namespace (\"group/name\") or its numeric id, found {:?}",
                    g.project
                ),
            ));
        }
        env("gitlab.token_env", &g.token_env)?;
        webhook("gitlab", &g.webhook)?;
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
        "gitlab" => TrackerSettings::Gitlab(gitlab("tracker = \"gitlab\"")?),
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
                    "expected one of \"local\", \"jira\", \"github\", \"gitlab\", \"linear\", found {other:?}"
                ),
            ));
        }
    };
    let forge = match p.forge.as_deref().unwrap_or("local") {
        "local" => ForgeSettings::Local,
        "github" => ForgeSettings::Github(github("forge = \"github\"")?),
        "gitlab" => ForgeSettings::Gitlab(gitlab("forge = \"gitlab\"")?),
        other => {
            return Err(ConfigError::at(
                file,
                &at("forge"),
                format!("expected \"local\", \"github\" or \"gitlab\", found {other:?}"),
            ));
        }
    };
    Ok((tracker, forge))
}
