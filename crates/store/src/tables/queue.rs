//! The job queue: leases with fencing tokens, the state changes of control commands, and
//! recording a local webhook delivery together with its job.
//!
//! On PostgreSQL one advisory lock serialises claimers, because counting leased jobs and
//! leasing one more must be atomic or two claimers both see room for one more; claims are rare
//! and short (jobs run minutes), so this costs nothing. The row itself is chosen `FOR UPDATE
//! SKIP LOCKED`, so a claimer never waits on a row that a cancel or requeue is changing. Lease
//! checks lock the queue row `FOR UPDATE` in the same transaction as the write they guard, so a
//! claim or the reaper cannot change the token between the check and the write. On SQLite one
//! process writes at a time (`BEGIN IMMEDIATE`), which gives the same guarantees.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use codemill_core::pipeline::JobEvent;

use crate::StoreError;
use crate::model;
use crate::queue::{
    self, Backoff, Current, Delivery, Enqueued, Lease, Limits, NewJob, Outcome, QueueEntry,
    QueueState, Reaped, Recorded, Transition,
};
use crate::sql::{Db, Row, Tx, q};
use crate::tables::journal::{insert_entry, insert_job};

/// Advisory lock namespaces (PostgreSQL; see `Tx::lock`).
const LOCK_CLAIM: i32 = 0x636d_0002;
pub(crate) const LOCK_TICKET_JOBS: i32 = 0x636d_0003;

fn int4(n: u32) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(|_| StoreError::Invalid(format!("{n} does not fit the database")))
}

fn attempts_of(r: &Row, column: &str) -> Result<u32, StoreError> {
    queue::attempts(r.int(column)?)
}

impl Db {
    pub async fn enqueue(
        &self,
        job: &NewJob<'_>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let enqueued = enqueue_in(&mut tx, job, now).await?;
            Ok(enqueued)
        })
    }

    pub async fn claim(
        &self,
        owner: &str,
        ttl: std::time::Duration,
        until: DateTime<Utc>,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            tx.lock(LOCK_CLAIM, "").await?;
            let row = q(
                "UPDATE queue SET state = 'leased', lease_owner = $1, lease_token = lease_token + 1,
                     lease_until = $2, heartbeat_at = $3, updated_at = $3
                 WHERE job_id = (
                     SELECT q.job_id FROM queue q
                     WHERE q.state = 'queued' AND q.run_after <= $3
                       AND (SELECT COUNT(*) FROM queue WHERE state = 'leased') < $4
                       AND (SELECT COUNT(*) FROM queue l
                            WHERE l.state = 'leased' AND l.project = q.project) < $5
                     ORDER BY q.run_after, q.created_at, q.job_id
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING job_id, ticket_key, project, lease_token, attempts, max_attempts",
            )
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(queue::count(limits.global))
            .bind(queue::count(limits.per_project))
            .fetch_optional(&mut tx)
            .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(Lease {
                job: r.job("job_id")?,
                ticket: model::ticket_key(&r.text("ticket_key")?)?,
                project: r.text("project")?,
                owner: owner.to_string(),
                token: r.int("lease_token")?,
                attempt: attempts_of(&r, "attempts")?.saturating_add(1),
                max_attempts: attempts_of(&r, "max_attempts")?,
                until,
                ttl,
            }))
        })
    }

    pub async fn claim_job(
        &self,
        job: JobId,
        owner: &str,
        ttl: std::time::Duration,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let row = q(
                "UPDATE queue SET state = 'leased', lease_owner = $1, lease_token = lease_token + 1,
                     lease_until = $2, heartbeat_at = $3, updated_at = $3
                 WHERE job_id = $4 AND state = 'queued'
                 RETURNING job_id, ticket_key, project, lease_token, attempts, max_attempts",
            )
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(job)
            .fetch_optional(&mut tx)
            .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(Lease {
                job: r.job("job_id")?,
                ticket: model::ticket_key(&r.text("ticket_key")?)?,
                project: r.text("project")?,
                owner: owner.to_string(),
                token: r.int("lease_token")?,
                attempt: attempts_of(&r, "attempts")?.saturating_add(1),
                max_attempts: attempts_of(&r, "max_attempts")?,
                until,
                ttl,
            }))
        })
    }

    pub async fn expire_lease(
        &self,
        job: JobId,
        token: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let done = q("UPDATE queue SET lease_until = $1, updated_at = $1
                 WHERE job_id = $2 AND state = 'leased' AND lease_token = $3")
            .bind(now)
            .bind(job)
            .bind(token)
            .execute(&mut tx)
            .await?;
            Ok(done == 1)
        })
    }

    pub async fn decide(
        &self,
        job: JobId,
        seq: i64,
        event: &JobEvent,
        from: &[QueueState],
        action: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            // The row lock orders this against fenced appends, claims and the reaper.
            let Some(cur) = current(&mut tx, job).await? else {
                return Err(StoreError::NotQueued(job));
            };
            if !from.contains(&cur.state) {
                return Err(StoreError::InvalidTransition {
                    job,
                    state: cur.state,
                    action,
                });
            }
            insert_entry(&mut tx, job, seq, event, now).await?;
            q(
                "UPDATE queue SET state = 'queued', attempts = 0, run_after = $1, last_error = NULL,
                     lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1,
                     updated_at = $1
                 WHERE job_id = $2",
            )
            .bind(now)
            .bind(job)
            .execute(&mut tx)
            .await?;
            Ok(())
        })
    }

    pub async fn heartbeat(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            queue::check_lease(lease, current(&mut tx, lease.job).await?.as_ref(), now)?;
            q(
                "UPDATE queue SET lease_until = $1, heartbeat_at = $2, updated_at = $2 WHERE job_id = $3",
            )
            .bind(until)
            .bind(now)
            .bind(lease.job)
            .execute(&mut tx)
            .await?;
            Ok(until)
        })
    }

    pub async fn release(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        backoff: &Backoff,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let cur = current(&mut tx, lease.job).await?;
            queue::check_lease(lease, cur.as_ref(), now)?;
            let Some(cur) = cur else {
                return Err(StoreError::NotQueued(lease.job));
            };
            let next = queue::after_release(&cur, outcome, backoff, now)?;
            apply(&mut tx, lease.job, &next, now).await?;
            Ok(next.state)
        })
    }

    pub async fn reap(
        &self,
        backoff: &Backoff,
        now: DateTime<Utc>,
    ) -> Result<Vec<Reaped>, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            // SKIP LOCKED: a row locked right now is being heartbeaten or released by its owner, or
            // reaped by another node; either way not ours to reap in this round.
            let rows = q(
                "SELECT * FROM queue WHERE state = 'leased' AND lease_until <= $1
                 ORDER BY lease_until FOR UPDATE SKIP LOCKED",
            )
            .bind(now)
            .fetch_all(&mut tx)
            .await?;
            let mut reaped = Vec::with_capacity(rows.len());
            for r in &rows {
                let entry = entry_from_row(r)?;
                let owner = entry.lease_owner.clone().unwrap_or_default();
                let next = queue::after_expiry(&current_of(&entry), &owner, backoff, now)?;
                apply(&mut tx, entry.job, &next, now).await?;
                reaped.push(Reaped {
                    job: entry.job,
                    state: next.state,
                });
            }
            Ok(reaped)
        })
    }

    pub async fn cancel(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let Some(cur) = current(&mut tx, job).await? else {
                return Err(StoreError::NotQueued(job));
            };
            if !cur.state.is_active() {
                return Ok(false);
            }
            let next = Transition {
                state: QueueState::Cancelled,
                attempts: cur.attempts,
                run_after: None,
                last_error: None,
            };
            apply(&mut tx, job, &next, now).await?;
            Ok(true)
        })
    }

    pub async fn requeue(
        &self,
        job: JobId,
        run_after: DateTime<Utc>,
        now: DateTime<Utc>,
        reopen: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let ticket: Option<String> = q("SELECT ticket_key FROM queue WHERE job_id = $1")
                .bind(job)
                .fetch_optional(&mut tx)
                .await?
                .map(|r| r.text(0))
                .transpose()?;
            let Some(ticket) = ticket else {
                return Err(StoreError::NotQueued(job));
            };
            // Same lock as enqueue: the ticket's active job cannot change under us.
            tx.lock(LOCK_TICKET_JOBS, &ticket).await?;
            let Some(cur) = current(&mut tx, job).await? else {
                return Err(StoreError::NotQueued(job));
            };
            // A done job is reopened only when asked to (a fix round after the merge queue).
            let allowed = (reopen && cur.state == QueueState::Done)
                || queue::requeue_allowed(job, cur.state)?;
            if !allowed {
                return Ok(false);
            }
            let other = q(
                "SELECT job_id FROM queue WHERE ticket_key = $1 AND job_id <> $2
                   AND state IN ('queued', 'leased', 'waiting')",
            )
            .bind(&ticket)
            .bind(job)
            .fetch_optional(&mut tx)
            .await?;
            if let Some(other) = other {
                return Err(StoreError::ActiveJob {
                    ticket,
                    job: other.job("job_id")?,
                });
            }
            let next = Transition {
                state: QueueState::Queued,
                attempts: 0,
                run_after: Some(run_after),
                last_error: None,
            };
            apply(&mut tx, job, &next, now).await?;
            Ok(true)
        })
    }

    pub async fn queue_entry(&self, job: JobId) -> Result<Option<QueueEntry>, StoreError> {
        let row = q("SELECT * FROM queue WHERE job_id = $1")
            .bind(job)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| entry_from_row(&r)).transpose()
    }

    /// Counted in the database: `/metrics` asks at every scrape, and reading every row ever
    /// queued to count them grew with the service's age.
    pub async fn queue_counts(&self) -> Result<Vec<(QueueState, u64)>, StoreError> {
        let rows = q("SELECT state, COUNT(*) AS n FROM queue GROUP BY state")
            .fetch_all(self.read())
            .await?;
        rows.iter()
            .map(|r| {
                let state = r.text("state")?;
                let state = QueueState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("queue state {state:?}")))?;
                Ok((state, u64::try_from(r.int("n")?).unwrap_or(0)))
            })
            .collect()
    }

    pub async fn queue_entries(
        &self,
        state: Option<QueueState>,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let rows = match state {
            Some(state) => q(QUEUE_IN_STATE).bind(state.as_str()),
            None => q("SELECT * FROM queue ORDER BY created_at, job_id"),
        }
        .fetch_all(self.read())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    pub async fn append_fenced(
        &self,
        lease: &Lease,
        seq: i64,
        event: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            queue::check_lease(lease, current(&mut tx, lease.job).await?.as_ref(), now)?;
            insert_entry(&mut tx, lease.job, seq, event, now).await?;
            Ok(())
        })
    }

    // ---- webhook inbox -------------------------------------------------------------------
}

/// Record a delivery and, when asked, start (or join) the ticket's job, in the caller's
/// transaction.
pub(crate) async fn record_in(
    tx: &mut Tx,
    delivery: &Delivery<'_>,
    job: Option<&NewJob<'_>>,
    now: DateTime<Utc>,
    require_ticket: bool,
) -> Result<Recorded, StoreError> {
    if let Some(job) = job.filter(|_| require_ticket) {
        let known = q("SELECT 1 FROM tickets WHERE key = $1")
            .bind(job.ticket.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Ok(Recorded::UnknownTicket);
        }
    }
    // A concurrent insert of the same key waits for the first transaction, then does nothing.
    let inserted = q(
        "INSERT INTO inbox (provider, delivery_id, headers, body, received_at)
         VALUES ($1, $2, $3::jsonb, $4, $5)
         ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING id",
    )
    .bind(delivery.provider)
    .bind(delivery.delivery_id)
    .bind(model::to_json(delivery.headers)?)
    .bind(delivery.body)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(inserted) = inserted else {
        return Ok(Recorded::Duplicate);
    };
    let id = inserted.int(0)?;
    let enqueued = match job {
        Some(job) => Some(enqueue_in(tx, job, now).await?),
        None => None,
    };
    if let Some(enqueued) = enqueued {
        q("UPDATE inbox SET job_id = $1 WHERE id = $2")
            .bind(enqueued.job())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(Recorded::Inserted { job: enqueued })
}

/// Create the job and its queue row, or return the ticket's active job. The advisory lock on
/// the ticket orders concurrent enqueues, so the second one sees the first one's job.
async fn enqueue_in(
    tx: &mut Tx,
    job: &NewJob<'_>,
    now: DateTime<Utc>,
) -> Result<Enqueued, StoreError> {
    let ticket = job.ticket.to_string();
    tx.lock(LOCK_TICKET_JOBS, &ticket).await?;
    let active = q(
        "SELECT job_id FROM queue WHERE ticket_key = $1 AND state IN ('queued', 'leased', 'waiting')",
    )
    .bind(&ticket)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(active) = active {
        return Ok(Enqueued::Existing(active.job("job_id")?));
    }
    insert_job(tx, job.id, job.ticket, job.created, now).await?;
    q(
        "INSERT INTO queue (job_id, ticket_key, project, state, run_after, max_attempts, created_at, updated_at)
         VALUES ($1, $2, $3, 'queued', $4, $5, $4, $4)",
    )
    .bind(job.id)
    .bind(&ticket)
    .bind(job.ticket.project())
    .bind(now)
    .bind(int4(job.max_attempts)?)
    .execute(&mut *tx)
    .await?;
    Ok(Enqueued::Created(job.id))
}

/// The job's queue row, locked until the transaction ends.
pub(super) async fn current(tx: &mut Tx, job: JobId) -> Result<Option<Current>, StoreError> {
    let row = q("SELECT * FROM queue WHERE job_id = $1 FOR UPDATE")
        .bind(job)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row
        .map(|r| entry_from_row(&r))
        .transpose()?
        .map(|e| current_of(&e)))
}

fn current_of(e: &QueueEntry) -> Current {
    Current {
        state: e.state,
        token: e.lease_token,
        until: e.lease_until,
        attempts: e.attempts,
        max_attempts: e.max_attempts,
    }
}

/// Write a transition; the lease columns are cleared since the job is no longer leased.
async fn apply(
    tx: &mut Tx,
    job: JobId,
    next: &Transition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    q(
        "UPDATE queue SET state = $1, attempts = $2, run_after = COALESCE($3, run_after),
             last_error = COALESCE($4, last_error), lease_owner = NULL, lease_until = NULL,
             updated_at = $5
         WHERE job_id = $6",
    )
    .bind(next.state.as_str())
    .bind(int4(next.attempts)?)
    .bind(next.run_after)
    .bind(next.last_error.as_deref())
    .bind(now)
    .bind(job)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn entry_from_row(r: &Row) -> Result<QueueEntry, StoreError> {
    Ok(QueueEntry {
        job: r.job("job_id")?,
        ticket: model::ticket_key(&r.text("ticket_key")?)?,
        project: r.text("project")?,
        state: queue::parse_state(&r.text("state")?)?,
        run_after: r.time("run_after")?,
        attempts: attempts_of(r, "attempts")?,
        max_attempts: attempts_of(r, "max_attempts")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_token: r.int("lease_token")?,
        lease_until: r.opt_time("lease_until")?,
        heartbeat_at: r.opt_time("heartbeat_at")?,
        last_error: r.opt_text("last_error")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// The queue rows in one state, oldest first, found through the state's index (`queue_due`):
/// the board asks for the queued few at every move, among every job ever queued.
pub(super) const QUEUE_IN_STATE: &str =
    "SELECT * FROM queue WHERE state = $1 ORDER BY created_at, job_id";
