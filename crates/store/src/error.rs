//! Store failures, shared by both backends.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;

use crate::queue::QueueState;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    /// The URL is left out on purpose: it usually carries a password.
    #[error("connecting to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("no ticket {0}")]
    NoTicket(String),
    #[error(
        "journal of job {job} already has an entry {seq}: another runner is working on this job"
    )]
    Conflict { job: JobId, seq: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("job {0} is not in the queue (it was created with create_job, or never existed)")]
    NotQueued(JobId),
    #[error("job {job} is {state}: cannot {action} it")]
    InvalidTransition {
        job: JobId,
        state: QueueState,
        action: &'static str,
    },
    #[error("ticket {ticket} already has an active job {job}")]
    ActiveJob { ticket: String, job: JobId },
    /// The caller's lease no longer entitles it to act on the job: stop working on it.
    #[error("lease {token} of {owner:?} on job {job} is no longer valid: {reason}")]
    Fenced {
        job: JobId,
        owner: String,
        token: i64,
        reason: FenceReason,
    },
    #[error("an API token with this hash already exists")]
    DuplicateToken,
    #[error("an active API token named {0:?} already exists")]
    TokenNameTaken(String),
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl StoreError {
    /// The database could not be reached (no connection within the acquire timeout, or the
    /// connection broke): the request may succeed later, unlike a refused or invalid one.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Connect(_)
                | StoreError::Sql(
                    sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::WorkerCrashed
                )
        )
    }
}

/// Why a lease was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceReason {
    #[error("the job was claimed again since, with token {current}")]
    Superseded { current: i64 },
    #[error("it expired at {until}")]
    Expired { until: DateTime<Utc> },
    #[error("the job is {state}, no longer leased")]
    NotLeased { state: QueueState },
}
