//! The store: SQLite (one process, WAL) or PostgreSQL (web nodes and workers on several
//! machines) behind one facade — tickets of the local tracker, the append-only job journal, PR
//! records of the local forge, the job queue with leases and fencing, the webhook inbox and API
//! token hashes.
//!
//! Job state is never written here: only journal events, from which `codemill_core` derives it.
//! The queue row only says who may work on a job and when. Both backends have the same
//! semantics, checked by one contract test suite (`tests/contract`). Each area's SQL is written
//! once (`tables/`) over a small dialect layer (`sql.rs`) that runs it on either backend; only
//! the migrations are per backend, because the column types differ.
//!
//! Time: every queue, lease and inbox timestamp is the `now` the caller passes in (the worker's
//! clock, cut to microseconds because PostgreSQL keeps no more), never the database's clock, on
//! both backends alike, which keeps tests deterministic. Clock skew between workers only shifts
//! when a lease counts as expired; it cannot let two owners act on one job, because the fencing
//! token is checked in the same transaction as every fenced write. Plain record timestamps
//! (tickets, comments, tokens) are taken from the local clock when written.

/// Run `$body` (statements using the transaction `$tx`, ending in a `Result`) and then commit
/// on `Ok` or roll back on `Err`, awaiting either. A dropped sqlx transaction only queues its
/// rollback until the pooled connection is next used, holding its locks meanwhile: an early
/// return would leave a queue row locked and invisible to `FOR UPDATE SKIP LOCKED` claimers.
macro_rules! atomically {
    ($tx:ident, $body:block) => {{
        let result = crate::scoped(async $body).await;
        crate::Finish::finish($tx, result).await
    }};
}

/// Fixes the error type of an `atomically!` body, so `?` inside it converts into `StoreError`.
fn scoped<T, F: std::future::Future<Output = Result<T, StoreError>>>(f: F) -> F {
    f
}

/// Commit on `Ok`, roll back on `Err`.
trait Finish: Sized {
    fn finish<T: Send>(
        self,
        result: Result<T, StoreError>,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send;
}

impl Finish for sql::Tx {
    async fn finish<T: Send>(self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = self.rollback().await {
                    tracing::warn!(error = %rollback, after = %e, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

impl<DB: sqlx::Database> Finish for sqlx::Transaction<'static, DB> {
    async fn finish<T: Send>(self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = self.rollback().await {
                    tracing::warn!(error = %rollback, after = %e, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

mod assistant;
mod dashboard;
mod error;
mod events;
mod facade;
mod knowledge;
mod learning;
mod merge_queue;
mod metering;
mod model;
mod notify;
mod queue;
mod sql;
mod tables;

use std::path::Path;

use codemill_core::ids::JobId;

pub use assistant::{
    Answer, AssistantConversation, AssistantDraft, AssistantTurn, DraftClaim, NewAssistantTurn,
    NewQuestion,
};
pub use error::{FenceReason, StoreError};
pub use events::{ActivityRow, ActivityStep, EventRow, JobCard, JobView, StageSpend, TicketSpend};
pub use knowledge::{KnowledgeHit, KnowledgeRow, KnowledgeSource, KnowledgeTag, NewKnowledge};
pub use learning::{GuidanceRow, GuidanceState, NewWorkOutcome, WorkOutcome};
pub use merge_queue::{MergeEntry, MergeState, NewMergeEntry};
pub use metering::{ModelCall, ProjectSpend, Spend, SpendScope, day_of};
pub use model::{
    Artifact, Comment, JobRow, JournalEntry, Link, MirroredTicket, NewPr, PROPOSAL_DIFF, PrRecord,
    SessionRow, StatusChange, Ticket, UserRow,
};
pub use notify::{NewNotification, NotificationRow, NotificationState, Sent};
pub use queue::{
    Backoff, Delivery, Enqueued, InboxRow, Lease, Limits, NewJob, Outcome, QueueEntry, QueueState,
    Reaped, Recorded, TokenRow,
};
pub use queue::{InboxPruned, InboxState, Settled};
pub use tables::IngestCounts;

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: sql::Db,
    backoff: Backoff,
}

impl Store {
    /// Open (creating if needed) a SQLite database file and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::with(sql::Db::open_sqlite(path).await?).await
    }

    /// Connect to a PostgreSQL database (e.g. `postgres://user:pass@host/db`) and bring its
    /// schema up to date; several nodes may do this at once.
    pub async fn connect_postgres(url: &str) -> Result<Store, StoreError> {
        Store::with(sql::Db::connect_postgres(url).await?).await
    }

    /// Views for jobs journalled before views existed are built once here.
    async fn with(db: sql::Db) -> Result<Store, StoreError> {
        let store = Store {
            db,
            backoff: Backoff::default(),
        };
        store.db.build_missing_views().await?;
        Ok(store)
    }

    /// The retry delays used when a release or the reaper does not name one.
    pub fn with_backoff(mut self, backoff: Backoff) -> Store {
        self.backoff = backoff;
        self
    }

    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The job whose id is `text`: a whole UUID, or the short form the CLI prints (the last 8
    /// to 12 hex digits); `Invalid` when that is no job id or names more than one job.
    pub async fn find_job(&self, text: &str) -> Result<Option<JobId>, StoreError> {
        self.db.find_job(text).await
    }

    /// One round trip to the database: `Ok` when it answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        if self.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub async fn close(&self) {
        self.db.close().await
    }
}
