//! The job queue's types and the decisions both backends share: lease validity, what a release
//! or an expired lease turns a queue row into, and the retry backoff.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;
use serde::Serialize;

use crate::error::{FenceReason, StoreError};

/// Where a job stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Ready to be claimed once `run_after` has passed.
    Queued,
    /// A worker holds a lease on it.
    Leased,
    /// Paused until a person decides (approval); `requeue` resumes it.
    Waiting,
    Done,
    /// Gave up: the attempt cap was hit or the failure was permanent.
    Dead,
    Cancelled,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Leased => "leased",
            QueueState::Waiting => "waiting",
            QueueState::Done => "done",
            QueueState::Dead => "dead",
            QueueState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<QueueState> {
        Some(match s {
            "queued" => QueueState::Queued,
            "leased" => QueueState::Leased,
            "waiting" => QueueState::Waiting,
            "done" => QueueState::Done,
            "dead" => QueueState::Dead,
            "cancelled" => QueueState::Cancelled,
            _ => return None,
        })
    }

    /// Active states hold the ticket: at most one job per ticket is in one of them.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            QueueState::Queued | QueueState::Leased | QueueState::Waiting
        )
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn parse_state(s: &str) -> Result<QueueState, StoreError> {
    QueueState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("queue state {s:?}")))
}

/// How many jobs may be leased at once, over all projects and per project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub global: usize,
    pub per_project: usize,
}

impl Limits {
    pub const UNLIMITED: Limits = Limits {
        global: usize::MAX,
        per_project: usize::MAX,
    };
}

/// Delay before retrying after the n-th failure: `base * 2^(n-1)`, at most `max`. No jitter:
/// the queue hands jobs out one at a time anyway, so retries do not arrive in a herd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// A job to create: its row, its first journal entry (`created`) and its queue row.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub id: JobId,
    pub ticket: &'a TicketKey,
    pub created: &'a JobEvent,
    /// Attempts before the job is dead-lettered; at least 1.
    pub max_attempts: u32,
}

/// What `enqueue` did. A ticket has at most one active (queued, leased or waiting) job; enqueuing
/// another returns that one instead of failing, so a repeated trigger is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Enqueued {
    Created(JobId),
    /// The ticket already had this active job; nothing was written.
    Existing(JobId),
}

impl Enqueued {
    pub fn job(self) -> JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// A worker's claim on one job, valid while the token is the job's current one, the job is
/// leased and `until` has not passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub job: JobId,
    pub ticket: TicketKey,
    pub project: String,
    pub owner: String,
    /// Fencing token: strictly increasing per job, one per claim.
    pub token: i64,
    /// 1-based number of this attempt.
    pub attempt: u32,
    pub max_attempts: u32,
    pub until: DateTime<Utc>,
    /// How far each heartbeat extends the lease.
    pub ttl: Duration,
}

/// How a worker gives its lease back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Waits for a person (approval); `requeue` resumes it.
    Waiting,
    /// Failed; run again after `delay`, or the store's backoff when `None` — unless this was the
    /// last attempt, then the job is dead.
    Retry {
        error: String,
        delay: Option<Duration>,
    },
    /// Failed for good.
    Dead {
        reason: String,
    },
}

/// A queue row, for dashboards and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
    pub job: JobId,
    pub ticket: TicketKey,
    pub project: String,
    pub state: QueueState,
    pub run_after: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_token: i64,
    pub lease_until: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A job whose lease expired, and what the reaper made of it (queued again, or dead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reaped {
    pub job: JobId,
    pub state: QueueState,
}

/// A webhook delivery as received: what is needed to verify and process it again later (kept
/// until it is processed, see `Store::prune_deliveries`).
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub provider: &'a str,
    /// The provider's id of the delivery, stable across its retries (e.g. `X-GitHub-Delivery`).
    pub delivery_id: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// What `record_delivery` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Recorded {
    /// First time this delivery was seen; `job` is the job it started or joined, if one was asked.
    Inserted { job: Option<Enqueued> },
    /// Seen before: nothing was written.
    Duplicate,
    /// The job's ticket is not in the local tracker (asked for with
    /// `Store::record_ticket_delivery`): nothing was written.
    UnknownTicket,
}

/// A stored webhook delivery; `body` and `headers` are empty once it was processed and pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboxRow {
    pub id: i64,
    pub provider: String,
    pub delivery_id: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub job: Option<JobId>,
    pub received_at: DateTime<Utc>,
    pub state: InboxState,
    /// Times processing started (a node that died while processing counts too).
    pub attempts: u32,
    /// While pending: not before this time.
    pub next_at: Option<DateTime<Utc>>,
    /// What processing did, or its last error.
    pub outcome: Option<serde_json::Value>,
}

/// Where a stored delivery is in its processing. Deliveries of the local tracker are handled in
/// the transaction that records them (`done` at once); those of outside trackers are `pending`
/// until a serving node has read the issue they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxState {
    Pending,
    Done,
    /// Gave up: a permanent error, or retries used up. The outcome says why.
    Failed,
}

impl InboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxState::Pending => "pending",
            InboxState::Done => "done",
            InboxState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<InboxState, StoreError> {
        match s {
            "pending" => Ok(InboxState::Pending),
            "done" => Ok(InboxState::Done),
            "failed" => Ok(InboxState::Failed),
            other => Err(StoreError::Corrupt(format!("inbox state {other:?}"))),
        }
    }
}

/// How processing a claimed delivery ended (`Store::settle_delivery`).
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Handled; `outcome` says what was done.
    Done(serde_json::Value),
    /// Could not be handled now (the tracker is unreachable): try again at `at`.
    Retry {
        at: DateTime<Utc>,
        error: serde_json::Value,
    },
    /// Will never be handled; `outcome` says why.
    Failed(serde_json::Value),
}

/// What `prune_deliveries` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InboxPruned {
    /// Processed deliveries whose body and headers were cleared (their row and id kept).
    pub cleared: u64,
    /// Processed deliveries past the de-duplication window, deleted.
    pub deleted: u64,
}

/// An API token; the store keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// PostgreSQL keeps microseconds; cutting every `now` to them makes both backends agree.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

pub(crate) fn later(t: DateTime<Utc>, d: Duration) -> Result<DateTime<Utc>, StoreError> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .map(micros)
        .ok_or_else(|| StoreError::Invalid(format!("{d:?} after {t} is out of range")))
}

pub(crate) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn attempts(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("attempt count {n}")))
}

pub(crate) fn check_max_attempts(job: &NewJob<'_>) -> Result<(), StoreError> {
    if job.max_attempts == 0 {
        return Err(StoreError::Invalid(format!(
            "job {}: max_attempts must be at least 1",
            job.id
        )));
    }
    Ok(())
}

/// The lease-relevant part of a queue row as it is now.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub state: QueueState,
    pub token: i64,
    pub until: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub max_attempts: u32,
}

/// Whether `lease` still entitles its owner to act: same token, still leased, not expired.
pub(crate) fn check_lease(
    lease: &Lease,
    current: Option<&Current>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(current) = current else {
        return Err(StoreError::NotQueued(lease.job));
    };
    let reason = if current.token != lease.token {
        FenceReason::Superseded {
            current: current.token,
        }
    } else if current.state != QueueState::Leased {
        FenceReason::NotLeased {
            state: current.state,
        }
    } else {
        match current.until {
            Some(until) if until > now => return Ok(()),
            Some(until) => FenceReason::Expired { until },
            // A leased row without an expiry cannot be written by this crate.
            None => {
                return Err(StoreError::Corrupt(format!(
                    "job {} leased without expiry",
                    lease.job
                )));
            }
        }
    };
    Err(StoreError::Fenced {
        job: lease.job,
        owner: lease.owner.clone(),
        token: lease.token,
        reason,
    })
}

/// The new values of a queue row after a release or an expired lease. The lease columns
/// (owner, until) are always cleared; the token stays, the next claim increments it.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    pub state: QueueState,
    pub attempts: u32,
    /// `None` keeps the current value.
    pub run_after: Option<DateTime<Utc>>,
    /// `None` keeps the current value.
    pub last_error: Option<String>,
}

/// After a failed attempt: queued again after a delay, or dead at the attempt cap.
fn failed(
    current: &Current,
    error: &str,
    delay: Option<Duration>,
    backoff: &Backoff,
    now: DateTime<Utc>,
) -> Result<Transition, StoreError> {
    let failures = current.attempts.saturating_add(1);
    if failures >= current.max_attempts {
        return Ok(Transition {
            state: QueueState::Dead,
            attempts: failures,
            run_after: None,
            last_error: Some(format!("gave up after {failures} attempts: {error}")),
        });
    }
    let delay = delay.unwrap_or_else(|| backoff.delay(failures));
    Ok(Transition {
        state: QueueState::Queued,
        attempts: failures,
        run_after: Some(later(now, delay)?),
        last_error: Some(error.to_string()),
    })
}

pub(crate) fn after_release(
    current: &Current,
    outcome: &Outcome,
    backoff: &Backoff,
    now: DateTime<Utc>,
) -> Result<Transition, StoreError> {
    let keep = |state| Transition {
        state,
        attempts: current.attempts,
        run_after: None,
        last_error: None,
    };
    match outcome {
        Outcome::Done => Ok(keep(QueueState::Done)),
        Outcome::Waiting => Ok(keep(QueueState::Waiting)),
        Outcome::Retry { error, delay } => failed(current, error, *delay, backoff, now),
        Outcome::Dead { reason } => Ok(Transition {
            state: QueueState::Dead,
            attempts: current.attempts.saturating_add(1),
            run_after: None,
            last_error: Some(reason.clone()),
        }),
    }
}

pub(crate) fn after_expiry(
    current: &Current,
    owner: &str,
    backoff: &Backoff,
    now: DateTime<Utc>,
) -> Result<Transition, StoreError> {
    let until = current
        .until
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "?".into());
    let error = format!("lease of {owner:?} expired at {until} without a heartbeat");
    // The owner is gone, not failing: another worker resumes the job at once. The attempt still
    // counts, so a job that kills every worker that runs it ends dead.
    failed(current, &error, Some(Duration::ZERO), backoff, now)
}

/// Why `requeue` may not move a job of this state back to queued; `Ok(false)` when it is
/// already active (a repeated approval is harmless).
pub(crate) fn requeue_allowed(job: JobId, state: QueueState) -> Result<bool, StoreError> {
    match state {
        QueueState::Waiting | QueueState::Dead => Ok(true),
        QueueState::Queued | QueueState::Leased => Ok(false),
        // Cancelled means cancelled: only a retry (a new job) runs the ticket again.
        QueueState::Cancelled => Err(StoreError::InvalidTransition {
            job,
            state,
            action: "requeue",
        }),
        QueueState::Done => Err(StoreError::InvalidTransition {
            job,
            state,
            action: "requeue",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        };
        let d: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(d, [10, 20, 40, 60, 60, 60]);
        assert_eq!(b.delay(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn states_round_trip() {
        for s in [
            QueueState::Queued,
            QueueState::Leased,
            QueueState::Waiting,
            QueueState::Done,
            QueueState::Dead,
            QueueState::Cancelled,
        ] {
            assert_eq!(QueueState::parse(s.as_str()), Some(s));
        }
        assert_eq!(QueueState::parse("running"), None);
    }
}
