//! The notification outbox and the cursors of the event stream's followers, as both backends
//! return them. A message is stored once per (event position, channel), so reading the same
//! events again — after a restart, or on several nodes at once — adds nothing.

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use serde::Serialize;

use crate::StoreError;

/// A message to send on one channel about one event.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub event_pos: i64,
    /// The channel's stable key (`NotifyChannel::key`).
    pub channel: &'a str,
    /// `proposal`, `needs_attention`, ...
    pub kind: &'a str,
    pub project: &'a str,
    pub ticket: &'a TicketKey,
    pub job: JobId,
    /// What to say, as the sender reads it back.
    pub message: &'a serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    Pending,
    Sent,
    /// Given up: the channel refused it for good, or retries were used up.
    Failed,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(NotificationState::Pending),
            "sent" => Ok(NotificationState::Sent),
            "failed" => Ok(NotificationState::Failed),
            other => Err(StoreError::Corrupt(format!("notification state {other:?}"))),
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub event_pos: i64,
    pub channel: String,
    pub kind: String,
    pub project: String,
    pub ticket: TicketKey,
    pub job: JobId,
    pub message: serde_json::Value,
    pub state: NotificationState,
    /// Times sending started (a node that died while sending counts too).
    pub attempts: u32,
    pub next_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// How sending a claimed message ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Sent,
    Retry { at: DateTime<Utc>, error: String },
    Failed(String),
}
