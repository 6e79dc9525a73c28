//! The store's job queue: enqueue, claim, heartbeat, release, reap, fencing and limits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use codemill_core::pipeline::JobEvent;

use crate::queue::micros;
use crate::{
    Enqueued, Lease, Limits, NewJob, Outcome, QueueEntry, QueueState, Reaped, Store, StoreError,
    queue,
};

impl Store {
    /// Create a job (row, first journal entry, queue row due at `now`) in one transaction, or
    /// return the ticket's active job if it has one: see [`Enqueued`].
    pub async fn enqueue(
        &self,
        job: &NewJob<'_>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        queue::check_max_attempts(job)?;
        self.db.enqueue(job, micros(now)).await
    }

    /// Lease the queued job that has been due longest (`run_after <= now`), with a new fencing
    /// token, unless that would exceed `limits`. The limits count leased jobs, expired ones
    /// included until [`Store::reap`] takes them back, so run the reaper before claiming.
    /// `None` when nothing may run now.
    pub async fn claim(
        &self,
        owner: &str,
        ttl: Duration,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let now = micros(now);
        let until = queue::later(now, ttl)?;
        self.db.claim(owner, ttl, until, limits, now).await
    }

    /// Lease one given job now, whatever its `run_after` and the limits: the foreground run of
    /// `codemill run`, `approve` and `reject` asked for this job. `None` when it is not queued
    /// (a worker holds it, it waits for a person, or it has ended).
    pub async fn claim_job(
        &self,
        job: JobId,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let now = micros(now);
        let until = queue::later(now, ttl)?;
        self.db.claim_job(job, owner, ttl, until, now).await
    }

    /// End the lease `token` on `job` now, when its owner is known to be gone (a killed
    /// process of this host); the reaper then hands the job back. `false` when that lease is
    /// no longer the job's.
    pub async fn expire_lease(
        &self,
        job: JobId,
        token: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db.expire_lease(job, token, micros(now)).await
    }

    /// A person's decision (approve, reject, cancel) as one transaction: the queue row must be
    /// in one of `from` (else `InvalidTransition` naming `action`), `event` becomes journal
    /// entry `seq` (else `Conflict`), and the row is queued again at once with a new lease
    /// token, so a worker still running the job is fenced off at its next write.
    pub async fn decide(
        &self,
        job: JobId,
        seq: i64,
        event: &JobEvent,
        from: &[QueueState],
        action: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .decide(job, seq, event, from, action, micros(now))
            .await
    }

    /// Extend a valid lease by its ttl from `now`; returns the new expiry, or `Fenced`.
    pub async fn heartbeat(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let now = micros(now);
        let until = queue::later(now, lease.ttl)?;
        self.db.heartbeat(lease, until, now).await
    }

    /// Give a valid lease back with the attempt's outcome; returns the job's new state (a
    /// retry on the last attempt makes it dead). `Fenced` if the lease is no longer valid.
    pub async fn release(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        self.db
            .release(lease, outcome, &self.backoff, micros(now))
            .await
    }

    /// Take back every lease expired at `now`: the job is queued again after the backoff with
    /// one more failed attempt, or dead at the attempt cap. Run it periodically on any node.
    pub async fn reap(&self, now: DateTime<Utc>) -> Result<Vec<Reaped>, StoreError> {
        self.db.reap(&self.backoff, micros(now)).await
    }

    /// Cancel a queued, leased or waiting job (a leased one's owner is fenced off). Returns
    /// false when it had already ended.
    pub async fn cancel(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.db.cancel(job, micros(now)).await
    }

    /// Queue a waiting, dead or cancelled job again, due now, with a fresh attempt count (a
    /// person decided). Returns false when it is already queued or leased; a done job cannot be
    /// requeued; `ActiveJob` if the ticket got another active job meanwhile.
    pub async fn requeue(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.db.requeue(job, micros(now), micros(now), false).await
    }

    /// `requeue`, due at `run_after` instead of now.
    pub async fn requeue_at(
        &self,
        job: JobId,
        run_after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .requeue(job, micros(run_after), micros(now), false)
            .await
    }

    /// Queue a job that ended done again, due now: a shipped job whose PR the merge queue took
    /// out runs a fix round. `ActiveJob` if the ticket got another active job meanwhile.
    pub async fn reopen(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.db.requeue(job, micros(now), micros(now), true).await
    }

    pub async fn queue_entry(&self, job: JobId) -> Result<Option<QueueEntry>, StoreError> {
        self.db.queue_entry(job).await
    }

    /// How many queue rows are in each state (states without rows are left out).
    pub async fn queue_counts(&self) -> Result<Vec<(QueueState, u64)>, StoreError> {
        self.db.queue_counts().await
    }

    /// Queue rows, optionally of one state, oldest first.
    pub async fn queue_entries(
        &self,
        state: Option<QueueState>,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        self.db.queue_entries(state).await
    }
}
