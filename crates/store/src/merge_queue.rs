//! The merge queue as the store keeps it: approved pull requests in the order they were queued
//! per project and target branch, each queued until it is merged or ejected with a reason.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use serde::Serialize;

/// Where an entry of the merge queue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeState {
    /// Waiting for its turn, or being tested now.
    Queued,
    /// The target branch contains its commit.
    Merged,
    /// Taken out: its candidate conflicted or a gate failed on it (see the reason).
    Ejected,
}

impl MergeState {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeState::Queued => "queued",
            MergeState::Merged => "merged",
            MergeState::Ejected => "ejected",
        }
    }

    pub fn parse(text: &str) -> Option<MergeState> {
        match text {
            "queued" => Some(MergeState::Queued),
            "merged" => Some(MergeState::Merged),
            "ejected" => Some(MergeState::Ejected),
            _ => None,
        }
    }
}

/// One entry of the merge queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergeEntry {
    pub id: i64,
    pub project: String,
    /// The branch it lands on.
    pub target: String,
    pub ticket: String,
    /// The pull request's branch and the approved commit at its head.
    pub branch: String,
    pub commit: String,
    /// The ticket's job that proposed it.
    pub job: JobId,
    pub state: MergeState,
    /// Why it was ejected.
    pub reason: Option<String>,
    /// The target branch's commit that first contained it.
    pub merged_as: Option<String>,
    pub enqueued_by: String,
    pub enqueued_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An entry to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewMergeEntry<'a> {
    pub project: &'a str,
    pub target: &'a str,
    pub ticket: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
    pub job: JobId,
    pub by: &'a str,
}
