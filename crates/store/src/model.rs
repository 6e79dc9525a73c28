//! Rows of the local tracker, the job journal and the local forge, as both backends return them.

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{JobEvent, TicketStatus};
use serde::Serialize;

/// A ticket of the local tracker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    pub key: TicketKey,
    pub project: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub status: TicketStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a person last changed the title or body.
    pub edited_at: Option<DateTime<Utc>>,
    /// The outside tracker's key (`PROJ-12`, `42`, `ENG-7`) for a mirrored ticket.
    pub external: Option<String>,
    /// A link to the ticket in its tracker.
    pub url: Option<String>,
}

/// A ticket as read from an outside tracker, to mirror locally.
#[derive(Debug, Clone)]
pub struct MirroredTicket<'a> {
    pub key: &'a TicketKey,
    pub external: &'a str,
    pub url: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub labels: &'a [String],
}

/// A link between two tickets, e.g. a backlog ticket created from a finding on another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comment {
    pub author: String,
    pub marker: Option<String>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    pub from: String,
    pub to: String,
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub id: JobId,
    pub ticket: TicketKey,
    pub project: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event: JobEvent,
}

/// A PR record of the local forge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrRecord {
    pub id: i64,
    pub project: String,
    pub ticket: String,
    pub branch: String,
    pub base: String,
    pub commit: String,
    pub title: String,
    pub body: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewPr<'a> {
    pub project: &'a str,
    pub ticket: &'a str,
    pub branch: &'a str,
    pub base: &'a str,
    pub commit: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

/// Parse a stored ticket key.
pub(crate) fn ticket_key(s: &str) -> Result<TicketKey, crate::StoreError> {
    s.parse()
        .map_err(|e| crate::StoreError::Corrupt(format!("ticket key {s:?}: {e}")))
}

/// Parse a stored job id (SQLite keeps them as text).
pub(crate) fn job_id(s: &str) -> Result<JobId, crate::StoreError> {
    s.parse()
        .map_err(|e| crate::StoreError::Corrupt(format!("job id {s:?}: {e}")))
}

/// Parse a stored journal event.
pub(crate) fn event(job: JobId, text: &str) -> Result<JobEvent, crate::StoreError> {
    serde_json::from_str(text)
        .map_err(|e| crate::StoreError::Corrupt(format!("journal entry of job {job}: {e}")))
}

/// Parse stored labels (a JSON array of strings).
pub(crate) fn labels(key: &str, text: &str) -> Result<Vec<String>, crate::StoreError> {
    serde_json::from_str(text)
        .map_err(|e| crate::StoreError::Corrupt(format!("labels of {key}: {e}")))
}

pub(crate) fn status(key: &str, s: &str) -> Result<TicketStatus, crate::StoreError> {
    TicketStatus::parse(s)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("status {s:?} of {key}")))
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, crate::StoreError> {
    serde_json::to_string(value).map_err(|e| crate::StoreError::Corrupt(e.to_string()))
}

/// The artifact holding a proposal's patch (meta: its commit), written by the runner when it
/// proposes and read by the dashboard.
pub const PROPOSAL_DIFF: &str = "proposal.diff";

/// One artifact of a job: what a step handed to later steps, on whichever worker they run.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub job: JobId,
    pub name: String,
    pub body: Vec<u8>,
    /// What the blob is, when that is not its name (the commit a bundle carries).
    pub meta: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Someone who signs in to the dashboard. The password hash never leaves the store and the
/// server's login check; `Debug` leaves it out.
#[derive(Clone, PartialEq, Serialize)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    /// `admin`, `approver` or `viewer`.
    pub role: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A signed-in dashboard session, with its user's role as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub user: String,
    pub role: String,
    /// What the server keeps with the session (its CSRF token, for one).
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
