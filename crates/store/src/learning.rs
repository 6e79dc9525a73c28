//! What the store keeps for learning from people's changes: how each piece of work ended
//! (outcomes), the guidance proposed from them, and which learning runs have started.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use serde::Serialize;

/// How one merged or rejected piece of codemill's work ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkOutcome {
    pub id: i64,
    pub project: String,
    pub ticket: String,
    pub job: JobId,
    /// `merged` or `rejected`.
    pub kind: String,
    pub pr_url: Option<String>,
    pub agent_commit: Option<String>,
    pub merged_commit: Option<String>,
    /// Lines people added or removed before merging.
    pub human_lines: i64,
    pub human_diff: String,
    pub fix_rounds: i64,
    /// Review comments that started fix rounds, one per line block.
    pub feedback: Vec<String>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// An outcome to record.
#[derive(Debug, Clone)]
pub struct NewWorkOutcome<'a> {
    pub project: &'a str,
    pub ticket: &'a str,
    pub job: JobId,
    pub kind: &'a str,
    pub pr_url: Option<&'a str>,
    pub agent_commit: Option<&'a str>,
    pub merged_commit: Option<&'a str>,
    pub human_lines: i64,
    pub human_diff: &'a str,
    pub fix_rounds: i64,
    pub feedback: &'a [String],
    pub reason: Option<&'a str>,
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuidanceState {
    Proposed,
    /// A person approved it; a worker applies it.
    Approved,
    Applied,
    Rejected,
}

impl GuidanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            GuidanceState::Proposed => "proposed",
            GuidanceState::Approved => "approved",
            GuidanceState::Applied => "applied",
            GuidanceState::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<GuidanceState> {
        match text {
            "proposed" => Some(GuidanceState::Proposed),
            "approved" => Some(GuidanceState::Approved),
            "applied" => Some(GuidanceState::Applied),
            "rejected" => Some(GuidanceState::Rejected),
            _ => None,
        }
    }
}

/// A proposal to guide future work, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuidanceRow {
    pub id: i64,
    pub project: String,
    /// The proposal as JSON (`codemill_core::learn::Guidance`).
    pub proposal: String,
    pub summary: String,
    /// What applying it changes, as a diff.
    pub diff: String,
    pub state: GuidanceState,
    pub decided_by: Option<String>,
    /// What applying made: a PR's link, a knowledge entry's id.
    pub result: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}
