//! Per-project settings of the outside trackers and forges (Jira, GitHub, Linear) and who may
//! drive codemill through them. Credentials are always named by environment variable, never
//! written in the file.

use serde::{Deserialize, Serialize};

use crate::pipeline::TicketStatus;

/// Where a project's tickets live.
// Built once per project from the config file; boxing the settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrackerSettings {
    Local,
    Jira(JiraSettings),
    Github(GithubSettings),
    Linear(LinearSettings),
    Gitlab(GitlabSettings),
}

impl TrackerSettings {
    pub fn name(&self) -> &'static str {
        match self {
            TrackerSettings::Local => "local",
            TrackerSettings::Jira(_) => "jira",
            TrackerSettings::Github(_) => "github",
            TrackerSettings::Linear(_) => "linear",
            TrackerSettings::Gitlab(_) => "gitlab",
        }
    }

    /// The label that asks for a build.
    pub fn trigger_label(&self) -> &str {
        match self {
            TrackerSettings::Local => "codemill",
            TrackerSettings::Jira(j) => &j.trigger_label,
            TrackerSettings::Github(g) => &g.trigger_label,
            TrackerSettings::Linear(l) => &l.trigger_label,
            TrackerSettings::Gitlab(g) => &g.trigger_label,
        }
    }

    /// The label that asks for refinement instead of a build.
    pub fn refine_label(&self) -> &str {
        match self {
            TrackerSettings::Local => crate::refine::REFINE_LABEL,
            TrackerSettings::Jira(j) => &j.refine_label,
            TrackerSettings::Github(g) => &g.refine_label,
            TrackerSettings::Linear(l) => &l.refine_label,
            TrackerSettings::Gitlab(g) => &g.refine_label,
        }
    }
}

/// Where a project's pull requests go.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForgeSettings {
    Local,
    Github(GithubSettings),
    Gitlab(GitlabSettings),
}

impl ForgeSettings {
    pub fn name(&self) -> &'static str {
        match self {
            ForgeSettings::Local => "local",
            ForgeSettings::Github(_) => "github",
            ForgeSettings::Gitlab(_) => "gitlab",
        }
    }

    /// The ref under which the forge keeps pull request `number`'s head in the repository
    /// (GitHub's `refs/pull/N/head`, GitLab's `refs/merge-requests/N/head`): it stays when the
    /// branch is deleted on merge, and stops moving once the PR is closed. `None` on the local
    /// forge, whose branch is the change.
    pub fn pull_head_ref(&self, number: u64) -> Option<String> {
        match self {
            ForgeSettings::Local => None,
            ForgeSettings::Github(_) => Some(format!("refs/pull/{number}/head")),
            ForgeSettings::Gitlab(_) => Some(format!("refs/merge-requests/{number}/head")),
        }
    }
}

/// How codemill signs in to Jira, and so which REST API it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JiraAuth {
    /// Jira Cloud: HTTP Basic with an account e-mail and an API token; REST v3 with ADF.
    #[default]
    Cloud,
    /// Jira Data Center / Server: a personal access token as a Bearer token; REST v2 with wiki
    /// markup.
    DataCenter,
}

/// How a webhook sender proves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAuthKind {
    /// HMAC-SHA256 of the raw body with a shared secret (the vendor's signature header).
    #[default]
    Hmac,
    /// A static shared token in a header (`Authorization: Bearer <token>` or `X-Codemill-Token`).
    Token,
    /// A JWT (HS256) signed with the shared secret in `Authorization: JWT <token>` or `Bearer`.
    Jwt,
}

/// A webhook's verification: the kind and the NAME of the variable holding the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    #[serde(default)]
    pub auth: WebhookAuthKind,
    pub secret_env: String,
}

/// The tracker state (by name) that each codemill status moves a ticket to. Unset: no move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StatusMap {
    pub in_progress: Option<String>,
    pub needs_input: Option<String>,
    pub awaiting_approval: Option<String>,
    pub in_review: Option<String>,
    pub needs_attention: Option<String>,
    pub rejected: Option<String>,
    pub done: Option<String>,
}

impl StatusMap {
    /// The tracker state name for `status`, if one is mapped.
    pub fn get(&self, status: TicketStatus) -> Option<&str> {
        match status {
            TicketStatus::Todo => None,
            TicketStatus::InProgress => self.in_progress.as_deref(),
            TicketStatus::NeedsInput => self.needs_input.as_deref(),
            TicketStatus::AwaitingApproval => self.awaiting_approval.as_deref(),
            TicketStatus::InReview => self.in_review.as_deref(),
            TicketStatus::NeedsAttention => self.needs_attention.as_deref(),
            TicketStatus::Rejected => self.rejected.as_deref(),
            TicketStatus::Done => self.done.as_deref(),
        }
    }
}

/// `[projects.<name>.jira]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraSettings {
    /// `https://your-site.atlassian.net` (Cloud) or the Data Center base URL.
    pub base_url: String,
    #[serde(default)]
    pub auth: JiraAuth,
    /// Cloud only: the variable holding the account's e-mail address.
    #[serde(default)]
    pub email_env: Option<String>,
    /// The variable holding the API token (Cloud) or personal access token (Data Center).
    pub token_env: String,
    /// The Jira project key, e.g. `PROJ`.
    pub project_key: String,
    /// Tickets in this status with the trigger label start a job.
    #[serde(default = "default_jira_status")]
    pub trigger_status: String,
    #[serde(default = "default_label")]
    pub trigger_label: String,
    /// Tickets with this label (in the same state a build needs) are refined into a spec
    /// instead of built.
    #[serde(default = "default_refine_label")]
    pub refine_label: String,
    /// Replaces the JQL built from project, status and label.
    #[serde(default)]
    pub jql: Option<String>,
    /// A custom field holding acceptance criteria, e.g. `customfield_10042`.
    #[serde(default)]
    pub acceptance_criteria_field: Option<String>,
    /// Issue type of backlog tickets created from review findings.
    #[serde(default = "default_issue_type")]
    pub backlog_issue_type: String,
    /// Link type between a ticket and its backlog tickets.
    #[serde(default = "default_link_type")]
    pub link_type: String,
    #[serde(default)]
    pub transitions: StatusMap,
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
}

impl JiraSettings {
    /// The JQL that finds tickets ready for codemill.
    pub fn trigger_jql(&self) -> String {
        match &self.jql {
            Some(jql) => jql.clone(),
            None => format!(
                "project = \"{}\" AND status = \"{}\" AND labels = \"{}\" ORDER BY created ASC",
                jql_escape(&self.project_key),
                jql_escape(&self.trigger_status),
                jql_escape(&self.trigger_label)
            ),
        }
    }
}

impl JiraSettings {
    /// The JQL that finds ideas waiting for refinement: the trigger status with the refine
    /// label (a custom `jql` replaces only the build search).
    pub fn refine_jql(&self) -> String {
        format!(
            "project = \"{}\" AND status = \"{}\" AND labels = \"{}\" ORDER BY created ASC",
            jql_escape(&self.project_key),
            jql_escape(&self.trigger_status),
            jql_escape(&self.refine_label)
        )
    }
}

fn jql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A GitHub App installation codemill authenticates as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubApp {
    pub app_id: u64,
    pub installation_id: u64,
    /// The variable holding the App's private key (PEM).
    pub private_key_env: String,
}

/// `[projects.<name>.github]`: the repository's issues (tracker) and pull requests (forge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    /// `owner/name`.
    pub repo: String,
    #[serde(default = "default_github_api")]
    pub api_url: String,
    /// The variable holding a token (fine-grained or classic). Either this or `app`.
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub app: Option<GithubApp>,
    /// Issues with this label start a job.
    #[serde(default = "default_label")]
    pub trigger_label: String,
    /// Tickets with this label (in the same state a build needs) are refined into a spec
    /// instead of built.
    #[serde(default = "default_refine_label")]
    pub refine_label: String,
    /// Issues assigned to this login start a job too.
    #[serde(default)]
    pub trigger_assignee: Option<String>,
    /// codemill's own login: its comments and reviews never trigger anything.
    #[serde(default)]
    pub bot_login: Option<String>,
    /// Open PRs as drafts (the default).
    #[serde(default = "default_true")]
    pub draft: bool,
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
}

/// `[projects.<name>.gitlab]`: the project's issues (tracker) and merge requests (forge), on
/// gitlab.com or a self-managed GitLab (API v4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabSettings {
    /// The instance, without `/api/v4`.
    #[serde(default = "default_gitlab_url")]
    pub base_url: String,
    /// The project's path with its namespace (`acme/web`), or its numeric id.
    pub project: String,
    /// The variable holding a personal, project or group access token (`api` scope).
    pub token_env: String,
    /// Issues with this label start a job.
    #[serde(default = "default_label")]
    pub trigger_label: String,
    /// Tickets with this label (in the same state a build needs) are refined into a spec
    /// instead of built.
    #[serde(default = "default_refine_label")]
    pub refine_label: String,
    /// codemill's own username: its notes never trigger anything, and a mention of it in an
    /// MR note is feedback.
    #[serde(default)]
    pub bot_username: Option<String>,
    /// Open merge requests as drafts (the default).
    #[serde(default = "default_true")]
    pub draft: bool,
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
}

/// `[projects.<name>.linear]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSettings {
    #[serde(default = "default_linear_api")]
    pub api_url: String,
    /// The variable holding a Linear API key (sent as `Authorization: <key>`).
    pub token_env: String,
    /// The team key, e.g. `ENG` (issue identifiers are `ENG-123`).
    pub team_key: String,
    #[serde(default = "default_linear_state")]
    pub trigger_state: String,
    #[serde(default = "default_label")]
    pub trigger_label: String,
    /// Tickets with this label (in the same state a build needs) are refined into a spec
    /// instead of built.
    #[serde(default = "default_refine_label")]
    pub refine_label: String,
    /// Workflow state names to move issues to.
    #[serde(default)]
    pub states: StatusMap,
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
}

/// `[projects.<name>.roles]`: who may start work and who may start a fix round, as tracker or
/// forge accounts (Jira account id or e-mail, GitHub login, Linear user id or e-mail). Nobody
/// else's label, assignment, review or comment starts anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    #[serde(default)]
    pub trigger: Vec<String>,
    #[serde(default)]
    pub review: Vec<String>,
}

impl Roles {
    pub fn may_trigger(&self, actor: &str) -> bool {
        self.trigger.iter().any(|a| a.eq_ignore_ascii_case(actor))
    }
    pub fn may_review(&self, actor: &str) -> bool {
        self.review.iter().any(|a| a.eq_ignore_ascii_case(actor)) || self.may_trigger(actor)
    }
}

fn default_label() -> String {
    "codemill".into()
}
fn default_refine_label() -> String {
    crate::refine::REFINE_LABEL.into()
}
fn default_jira_status() -> String {
    "To Do".into()
}
fn default_linear_state() -> String {
    "Todo".into()
}
fn default_issue_type() -> String {
    "Task".into()
}
fn default_link_type() -> String {
    "Relates".into()
}
fn default_github_api() -> String {
    "https://api.github.com".into()
}
fn default_gitlab_url() -> String {
    "https://gitlab.com".into()
}
fn default_linear_api() -> String {
    "https://api.linear.app/graphql".into()
}
fn default_true() -> bool {
    true
}

/// Whether `name` is usable as the NAME of an environment variable.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
