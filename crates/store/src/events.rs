//! The journal as one stream for followers, and each job's current state as a read model.
//!
//! Every journal entry gets a position (`pos`) in the same transaction that appends it, and a
//! follower reads `events_since(cursor)`. **Invariant: positions become visible in order** — an
//! entry is never committed with a position below one a follower has already read, so a
//! follower that resumes from its last position misses nothing. SQLite has one writer at a time;
//! PostgreSQL takes the next position from a one-row counter whose row lock is held until the
//! appending transaction commits (always the last lock such a transaction takes, so it cannot
//! deadlock), which makes commit order and position order the same.
//!
//! `job_view` holds each job's state after its latest entry, written in the same transaction as
//! the entry, so lists and pages read one row per job instead of replaying journals.

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{JobEvent, JobState, apply};
use serde::Serialize;

/// A journal entry in the order followers read them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    /// The entry's place in the stream; the cursor to read on from.
    pub pos: i64,
    pub job: JobId,
    pub seq: i64,
    pub ticket: TicketKey,
    pub project: String,
    pub at: DateTime<Utc>,
    /// `None` when this build cannot read the entry (a newer codemill wrote a kind of event
    /// this one does not know, or the row is damaged); `unreadable` says why. Such an entry
    /// still has its place, so a follower reads on past it instead of stopping there.
    pub event: Option<JobEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The job's status before and after this entry (`JobState::status()`, or `unreadable`);
    /// `None` for entries written before the stream existed (and `prev_status` for the first).
    pub prev_status: Option<String>,
    pub status: Option<String>,
}

/// A ticket's latest job as the board shows it: the view's columns without the state, and the
/// ticket's title.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobCard {
    pub job: JobId,
    pub ticket: TicketKey,
    /// Empty when the ticket is not in the store.
    pub title: String,
    pub project: String,
    pub status: String,
    pub stage: String,
    /// Review round and cost so far (from the view's state; 0 when it cannot be read).
    pub round: u32,
    pub cost_usd: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the agent steps of every job cost in one stage, summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSpend {
    pub stage: String,
    pub tokens: u64,
    pub cost_usd: f64,
}

/// What a ticket's jobs cost, summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketSpend {
    pub ticket: TicketKey,
    pub project: String,
    /// Empty when the ticket is not in the store.
    pub title: String,
    pub jobs: u64,
    pub cost_usd: f64,
}

/// A job's state after its latest journal entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub job: JobId,
    pub ticket: TicketKey,
    pub project: String,
    /// `JobState::status()`, or `unreadable` when the journal does not replay.
    pub status: String,
    pub stage: String,
    /// The latest entry's sequence number and stream position.
    pub seq: i64,
    pub pos: i64,
    /// `None` when the journal does not replay; `error` says why.
    pub state: Option<JobState>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The state after `event` (entry `seq`), from the state before it. A journal that stops
/// replaying stays unreadable with the first error (appends are never refused for it: the
/// journal is the record, the view only reads it).
pub(crate) fn next_state(
    before: Option<(Option<JobState>, Option<String>)>,
    seq: i64,
    event: &JobEvent,
) -> (Option<JobState>, Option<String>) {
    let replayed = match (seq, before) {
        (0, _) => JobState::replay(std::iter::once(event)),
        (_, Some((Some(state), _))) => apply(&state, event),
        (_, Some((None, error))) => return (None, error),
        (_, None) => return (None, Some(format!("entry {seq} has no view before it"))),
    };
    match replayed {
        Ok(state) => (Some(state), None),
        Err(e) => (None, Some(format!("entry {seq} ({}): {e}", event.name()))),
    }
}

/// (status, stage) columns of a view.
pub(crate) fn columns(state: &Option<JobState>) -> (&'static str, &'static str) {
    match state {
        Some(s) => (s.status(), s.stage.as_str()),
        None => ("unreadable", "unreadable"),
    }
}

/// The view of a whole journal, for jobs written before views existed.
pub(crate) fn replay_state(events: &[JobEvent]) -> (Option<JobState>, Option<String>) {
    let mut state = None;
    for (seq, event) in events.iter().enumerate() {
        state = Some(next_state(state, seq as i64, event));
    }
    state.unwrap_or((None, Some("empty journal".into())))
}

/// One thing an agent did during a step, for live pages (`Store::activity_since`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityRow {
    /// The cursor to read on from, per job.
    pub id: i64,
    pub job: JobId,
    /// The agent stage (`implement`, `review`, ...).
    pub stage: String,
    pub round: u32,
    pub angle: Option<String>,
    pub at: DateTime<Utc>,
    pub event: codemill_core::agent::AgentEvent,
}

/// The longest text kept for one activity event.
const ACTIVITY_TEXT: usize = 4000;

/// `event` with its long texts clipped to [`ACTIVITY_TEXT`] characters.
pub(crate) fn clipped(
    event: &codemill_core::agent::AgentEvent,
) -> codemill_core::agent::AgentEvent {
    use codemill_core::agent::AgentEvent;
    let clip = |s: &str| -> String {
        if s.chars().count() <= ACTIVITY_TEXT {
            s.to_string()
        } else {
            let mut out: String = s.chars().take(ACTIVITY_TEXT).collect();
            out.push('…');
            out
        }
    };
    match event {
        AgentEvent::Text { text } => AgentEvent::Text { text: clip(text) },
        AgentEvent::ToolResult {
            id,
            is_error,
            output,
        } => AgentEvent::ToolResult {
            id: id.clone(),
            is_error: *is_error,
            output: clip(output),
        },
        AgentEvent::Notice { message } => AgentEvent::Notice {
            message: clip(message),
        },
        other => other.clone(),
    }
}

/// Where a batch of activity happened.
#[derive(Debug, Clone)]
pub struct ActivityStep<'a> {
    pub job: JobId,
    pub stage: &'a str,
    pub round: u32,
    pub angle: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use codemill_core::ids::ProjectName;

    fn created() -> JobEvent {
        let project: ProjectName = "DEMO".parse().unwrap();
        JobEvent::Created {
            ticket: TicketKey::new(&project, 1),
            project,
            max_rounds: 2,
            acknowledge: false,
            follow_pr: false,
            subtask: None,
            refine: None,
        }
    }

    #[test]
    fn a_view_follows_the_journal_and_stays_unreadable_after_a_bad_entry() {
        let (state, error) = next_state(None, 0, &created());
        assert!(error.is_none());
        let state = state.unwrap();
        assert_eq!(columns(&Some(state.clone())).0, state.status());

        // Created twice is not a valid journal.
        let (bad, error) = next_state(Some((Some(state), None)), 1, &created());
        assert!(bad.is_none());
        let error = error.unwrap();
        assert!(error.starts_with("entry 1 (created)"), "{error}");
        assert_eq!(columns(&bad), ("unreadable", "unreadable"));
        let (still, again) = next_state(Some((None, Some(error.clone()))), 2, &created());
        assert_eq!((still, again), (None, Some(error)));
        assert_eq!(replay_state(&[created()]), next_state(None, 0, &created()));
    }
}
