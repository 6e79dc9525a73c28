//! A ticket's job as the store holds it: the latest job replayed from its journal, and a
//! person's decision (approve, reject, cancel) journalled and handed back to the queue in one
//! store transaction, tried again when a worker appended to the journal meanwhile.

use chrono::Utc;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{JobEvent, JobState, apply};
use codemill_store::{JournalEntry, QueueState, Store, StoreError};

use crate::error::RunError;

/// How often a decision is tried again when the journal grew between reading and writing.
const CONFLICT_RETRIES: usize = 8;

/// A job with its replayed state and the journal it came from.
#[derive(Debug, Clone)]
pub struct Latest {
    pub job: JobId,
    pub state: JobState,
    pub journal: Vec<JournalEntry>,
}

impl Latest {
    /// The sequence number the next journal entry takes.
    pub fn next_seq(&self) -> i64 {
        self.journal.len() as i64
    }

    /// When the last entry was written (for a job that asked questions: when it asked).
    pub fn last_at(&self) -> Option<chrono::DateTime<Utc>> {
        self.journal.last().map(|e| e.at)
    }
}

/// The latest job of a ticket, replayed; `None` when it never had one.
pub async fn latest(store: &Store, key: &TicketKey) -> Result<Option<Latest>, RunError> {
    let Some(row) = store.latest_job(key).await? else {
        return Ok(None);
    };
    let journal = store.journal(row.id).await?;
    let state = replay(row.id, &journal)?;
    Ok(Some(Latest {
        job: row.id,
        state,
        journal,
    }))
}

/// The latest job of an existing ticket, or the error that says which is missing.
pub async fn require(store: &Store, key: &TicketKey) -> Result<Latest, RunError> {
    if store.ticket(key).await?.is_none() {
        return Err(RunError::NoTicket(key.clone()));
    }
    latest(store, key).await?.ok_or_else(|| RunError::NoJob {
        ticket: key.clone(),
    })
}

/// Queue rows a decision of each kind may start from.
pub const WAITING: &[QueueState] = &[QueueState::Waiting];
pub const ACTIVE: &[QueueState] = &[QueueState::Queued, QueueState::Leased, QueueState::Waiting];

/// Journal the event `decision` makes of the job's current state and queue the job again, in
/// one transaction. `decision` sees the state as it is at each try and refuses with an error
/// when the change no longer fits; a journal conflict (a worker wrote first) is retried.
pub async fn decide(
    store: &Store,
    key: &TicketKey,
    action: &'static str,
    from: &[QueueState],
    decision: impl Fn(&Latest) -> Result<JobEvent, RunError>,
) -> Result<JobId, RunError> {
    for _ in 0..CONFLICT_RETRIES {
        let latest = require(store, key).await?;
        let event = decision(&latest)?;
        apply(&latest.state, &event).map_err(|e| RunError::WrongState {
            ticket: key.clone(),
            message: format!("its job {} cannot be {action}d now: {e}", latest.job),
        })?;
        match store
            .decide(
                latest.job,
                latest.next_seq(),
                &event,
                from,
                action,
                Utc::now(),
            )
            .await
        {
            Ok(()) => return Ok(latest.job),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::InvalidTransition { state, .. }) => {
                return Err(RunError::WrongState {
                    ticket: key.clone(),
                    message: format!(
                        "its job {} is {state} in the queue ({}) and cannot be {action}d",
                        latest.job,
                        latest.state.status()
                    ),
                });
            }
            Err(StoreError::NotQueued(job)) => {
                return Err(RunError::WrongState {
                    ticket: key.clone(),
                    message: format!(
                        "its job {job} has no queue row (an older codemill made it); `codemill retry {key}` starts a new one"
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RunError::Busy(key.clone()))
}

/// Fold a journal into a state.
pub fn replay(job: JobId, journal: &[JournalEntry]) -> Result<JobState, RunError> {
    JobState::replay(journal.iter().map(|e| &e.event)).map_err(|e| RunError::Journal {
        job,
        message: e.to_string(),
    })
}
