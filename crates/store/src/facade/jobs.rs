//! The store's jobs and their append-only journal.

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;

use crate::queue::micros;
use crate::{JobRow, JournalEntry, Lease, Store, StoreError};

impl Store {
    /// Create a job with its first journal entry (`Created`) in one transaction, without a
    /// queue row: the single-process path (`codemill run`) that needs no lease.
    pub async fn create_job(
        &self,
        id: JobId,
        ticket: &TicketKey,
        created: &JobEvent,
    ) -> Result<(), StoreError> {
        self.db
            .create_job(id, ticket, created, micros(Utc::now()))
            .await
    }

    /// Append `event` as entry `seq`. Fails with `Conflict` if that entry already exists.
    /// Unfenced: for the single-process path; workers use [`Store::append_fenced`].
    pub async fn append(&self, id: JobId, seq: i64, event: &JobEvent) -> Result<(), StoreError> {
        self.db.append(id, seq, event, micros(Utc::now())).await
    }

    /// Append like [`Store::append`], but only while `lease` is valid (same token, still
    /// leased, not expired at `now`), checked in the same transaction; else `Fenced`.
    pub async fn append_fenced(
        &self,
        lease: &Lease,
        seq: i64,
        event: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db.append_fenced(lease, seq, event, micros(now)).await
    }

    pub async fn journal(&self, id: JobId) -> Result<Vec<JournalEntry>, StoreError> {
        self.db.journal(id).await
    }

    pub async fn jobs_for_ticket(&self, key: &TicketKey) -> Result<Vec<JobRow>, StoreError> {
        self.db.jobs_for_ticket(key).await
    }

    pub async fn latest_job(&self, key: &TicketKey) -> Result<Option<JobRow>, StoreError> {
        Ok(self.jobs_for_ticket(key).await?.pop())
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.db.jobs().await
    }
}
