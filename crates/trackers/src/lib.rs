//! The tracker and forge seams and their outside implementations: Jira Cloud/Data Center,
//! GitHub, GitLab and Linear. Every client speaks the vendor's documented wire format through one retrying HTTP
//! client ([`http`]); every write looks before it acts (comment by marker, PR by branch, issue by
//! marker), so a retry after an error that had in fact succeeded creates nothing twice.
//!
//! Text read from a tracker is returned as written; the runner strips hidden content
//! (`codemill_core::untrusted`) before any of it reaches an agent.

pub mod github;
pub mod gitlab;
pub mod http;
pub mod jira;
mod json;
pub mod landing;
pub mod linear;
pub mod webhook;

use codemill_core::pipeline::TicketStatus;
use serde::{Deserialize, Serialize};

pub use http::{HttpClient, RetryPolicy};

/// A ticket as read from a tracker: the fields codemill uses, text in Markdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// The tracker's own key: `PROJ-123`, `42` (GitHub issue number), `ENG-7`.
    pub key: String,
    /// The number codemill's ticket key uses (`<project>-<number>`).
    pub number: u64,
    /// A link a person can open.
    pub url: String,
    pub title: String,
    /// The description as Markdown (Jira's ADF converted).
    pub body: String,
    #[serde(default)]
    pub acceptance_criteria: Option<String>,
    /// The tracker's status or workflow state name.
    pub status: String,
    pub labels: Vec<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    pub comments: Vec<IssueComment>,
    /// Linked issues, one line each (`relates to PROJ-9: title`).
    #[serde(default)]
    pub links: Vec<String>,
    /// Subtasks / sub-issues, one line each (`PROJ-11: title (Done)`).
    #[serde(default)]
    pub subtasks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueComment {
    pub id: String,
    pub author: String,
    pub body: String,
    /// Written by codemill (it carries a codemill marker): never a trigger, never agent input.
    pub by_codemill: bool,
}

/// A pull request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    pub head: String,
    pub head_sha: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    pub draft: bool,
}

/// What codemill asks the forge to open.
#[derive(Debug, Clone, PartialEq)]
pub struct PrRequest<'a> {
    pub head: &'a str,
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub draft: bool,
}

/// Where a reply to PR feedback goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyTo<'a> {
    /// A reply in the thread of this review comment.
    ReviewComment(&'a str),
    /// A comment on the PR's conversation.
    Conversation,
}

/// What went wrong talking to a tracker or forge. Messages name the vendor, the request and the
/// answer, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting or credential is missing or unusable.
    #[error("{0}")]
    Config(String),
    /// The vendor answered with an error status (after retries where they apply).
    #[error("{vendor} {method} {path}: HTTP {status}: {body}")]
    Status {
        vendor: &'static str,
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    /// The request did not complete (connect, timeout, reset) after retries.
    #[error("{vendor} {method} {path}: {message}")]
    Transport {
        vendor: &'static str,
        method: String,
        path: String,
        message: String,
    },
    /// The answer did not have the documented shape.
    #[error("{vendor}: unexpected answer: {message}")]
    Protocol {
        vendor: &'static str,
        message: String,
    },
    /// The thing asked for does not exist (or codemill may not see it).
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// Whether a later attempt may succeed (rate limits, 5xx, transport errors).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            Error::Transport { .. } => true,
            Error::Config(_) | Error::Protocol { .. } | Error::NotFound(_) => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A ticket tracker. Every write is idempotent.
pub trait Tracker: Send + Sync {
    /// `jira`, `github`, `linear`.
    fn vendor(&self) -> &'static str;

    /// Keys of the issues in the trigger state (status and label), every page.
    fn triggered(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Read an issue afresh (webhook payloads are only hints).
    fn issue(&self, key: &str) -> impl Future<Output = Result<Issue>> + Send;

    /// Create the comment carrying `marker`, or edit it in place if it exists. `markdown` is
    /// the whole comment; the implementation adds the marker in its own hidden or quiet form.
    fn upsert_comment(
        &self,
        key: &str,
        marker: &str,
        markdown: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Add and remove labels; adding a present label or removing an absent one is a no-op.
    fn set_labels(
        &self,
        key: &str,
        add: &[&str],
        remove: &[&str],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Move the issue to the state mapped for `status`. Unmapped: nothing. Already there: nothing.
    fn transition(
        &self,
        key: &str,
        status: TicketStatus,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Create an issue linked to `key`, or return the one created before for the same `marker`.
    fn create_linked(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Create a standalone issue labelled `label` (an idea to refine, a draft saved from the
    /// assistant), or return the one created before for the same `marker`.
    fn create_issue(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
        label: &str,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Create a sub-task of `key` (a split ticket's part), linked to it, or return the one
    /// created before for the same `marker`. Trackers that label codemill's linked issues label
    /// it `codemill:subtask` instead of `codemill:backlog`.
    fn create_subtask(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> impl Future<Output = Result<String>> + Send {
        self.create_linked(key, marker, title, markdown)
    }
}

/// The label of a sub-task's issue on trackers that label codemill's linked issues.
pub const SUBTASK_LABEL: &str = "codemill:subtask";

/// A code forge's pull requests. Every write is idempotent.
pub trait Forge: Send + Sync {
    fn vendor(&self) -> &'static str;

    /// The open PR from `head`, or a new one. Never a second PR for one branch.
    fn open_pr(&self, pr: &PrRequest<'_>) -> impl Future<Output = Result<PullRequest>> + Send;

    fn pr(&self, number: u64) -> impl Future<Output = Result<PullRequest>> + Send;

    /// Reply on PR `number` once per `marker`.
    fn reply(
        &self,
        number: u64,
        to: ReplyTo<'_>,
        marker: &str,
        markdown: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The hidden form of a marker in Markdown bodies that render HTML comments invisibly.
pub fn html_marker(marker: &str) -> String {
    format!("<!-- {marker} -->")
}

/// Whether a comment body carries any codemill marker.
pub fn has_codemill_marker(body: &str) -> bool {
    body.contains("<!-- codemill:") || body.contains("[codemill:")
}

/// Reads an environment variable by name; tests pass a map instead of the process environment.
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment as an [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The secret in variable `name`, which setting `setting` (e.g. `jira.token_env`) names.
pub fn secret_from(
    env: Env<'_>,
    vendor: &str,
    setting: &str,
    name: &str,
) -> Result<secrecy::SecretString> {
    match env(name) {
        Some(v) if !v.trim().is_empty() => Ok(secrecy::SecretString::from(v.trim().to_string())),
        _ => Err(Error::Config(format!(
            "{vendor}: environment variable {name} (named by {setting}) is not set or empty"
        ))),
    }
}
