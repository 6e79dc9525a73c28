//! SQLite: the job queue, fenced journal appends, the webhook inbox and API tokens.
//!
//! One process writes at a time (`BEGIN IMMEDIATE`), so a claim's counts of leased jobs and its
//! `UPDATE … RETURNING` of the chosen row cannot interleave with another claim, and a fenced
//! append's token check cannot interleave with a claim or the reaper.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use codemill_core::pipeline::JobEvent;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Sqlite, Tx, insert_entry, insert_job, time_at, time_opt, ts};
use crate::StoreError;
use crate::model;
use crate::queue::{
    self, Backoff, Current, Delivery, Enqueued, Lease, Limits, NewJob, Outcome, QueueEntry,
    QueueState, Reaped, Recorded, TokenRow, Transition,
};

impl Sqlite {
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
            let row = sqlx::query(
                "UPDATE queue SET state = 'leased', lease_owner = ?1, lease_token = lease_token + 1,
                     lease_until = ?2, heartbeat_at = ?3, updated_at = ?3
                 WHERE job_id = (
                     SELECT q.job_id FROM queue q
                     WHERE q.state = 'queued' AND q.run_after <= ?3
                       AND (SELECT COUNT(*) FROM queue WHERE state = 'leased') < ?4
                       AND (SELECT COUNT(*) FROM queue l
                            WHERE l.state = 'leased' AND l.project = q.project) < ?5
                     ORDER BY q.run_after, q.created_at, q.job_id
                     LIMIT 1)
                 RETURNING job_id, ticket_key, project, lease_token, attempts, max_attempts",
            )
            .bind(owner)
            .bind(ts(until))
            .bind(ts(now))
            .bind(queue::count(limits.global))
            .bind(queue::count(limits.per_project))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(Lease {
                job: model::job_id(&r.try_get::<String, _>("job_id")?)?,
                ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
                project: r.try_get("project")?,
                owner: owner.to_string(),
                token: r.try_get("lease_token")?,
                attempt: queue::attempts(r.try_get("attempts")?)?.saturating_add(1),
                max_attempts: queue::attempts(r.try_get("max_attempts")?)?,
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
            let row = sqlx::query(
                "UPDATE queue SET state = 'leased', lease_owner = ?1, lease_token = lease_token + 1,
                     lease_until = ?2, heartbeat_at = ?3, updated_at = ?3
                 WHERE job_id = ?4 AND state = 'queued'
                 RETURNING job_id, ticket_key, project, lease_token, attempts, max_attempts",
            )
            .bind(owner)
            .bind(ts(until))
            .bind(ts(now))
            .bind(job.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(Lease {
                job: model::job_id(&r.try_get::<String, _>("job_id")?)?,
                ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
                project: r.try_get("project")?,
                owner: owner.to_string(),
                token: r.try_get("lease_token")?,
                attempt: queue::attempts(r.try_get("attempts")?)?.saturating_add(1),
                max_attempts: queue::attempts(r.try_get("max_attempts")?)?,
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
            let done = sqlx::query(
                "UPDATE queue SET lease_until = ?1, updated_at = ?1
                 WHERE job_id = ?2 AND state = 'leased' AND lease_token = ?3",
            )
            .bind(ts(now))
            .bind(job.to_string())
            .bind(token)
            .execute(&mut *tx)
            .await?;
            Ok(done.rows_affected() == 1)
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
            insert_entry(&mut tx, job, seq, event, &ts(now)).await?;
            sqlx::query(
                "UPDATE queue SET state = 'queued', attempts = 0, run_after = ?1, last_error = NULL,
                     lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1,
                     updated_at = ?1
                 WHERE job_id = ?2",
            )
            .bind(ts(now))
            .bind(job.to_string())
            .execute(&mut *tx)
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
            sqlx::query(
                "UPDATE queue SET lease_until = ?, heartbeat_at = ?, updated_at = ? WHERE job_id = ?",
            )
            .bind(ts(until))
            .bind(ts(now))
            .bind(ts(now))
            .bind(lease.job.to_string())
            .execute(&mut *tx)
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
            let rows = sqlx::query(
                "SELECT * FROM queue WHERE state = 'leased' AND lease_until <= ? ORDER BY lease_until",
            )
            .bind(ts(now))
            .fetch_all(&mut *tx)
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

    pub async fn requeue(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let Some(cur) = current(&mut tx, job).await? else {
                return Err(StoreError::NotQueued(job));
            };
            if !queue::requeue_allowed(job, cur.state)? {
                return Ok(false);
            }
            // The write lock is held, so the active job seen here is still active at the update.
            let other = sqlx::query(
                "SELECT o.job_id, o.ticket_key FROM queue o JOIN queue q ON q.ticket_key = o.ticket_key
                 WHERE q.job_id = ?1 AND o.job_id <> ?1 AND o.state IN ('queued', 'leased', 'waiting')",
            )
            .bind(job.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(other) = other {
                return Err(StoreError::ActiveJob {
                    ticket: other.try_get("ticket_key")?,
                    job: model::job_id(&other.try_get::<String, _>("job_id")?)?,
                });
            }
            let next = Transition {
                state: QueueState::Queued,
                attempts: 0,
                run_after: Some(now),
                last_error: None,
            };
            apply(&mut tx, job, &next, now).await?;
            Ok(true)
        })
    }

    pub async fn queue_entry(&self, job: JobId) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query("SELECT * FROM queue WHERE job_id = ?")
            .bind(job.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| entry_from_row(&r)).transpose()
    }

    pub async fn queue_entries(
        &self,
        state: Option<QueueState>,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM queue WHERE (?1 IS NULL OR state = ?1) ORDER BY created_at, job_id",
        )
        .bind(state.map(QueueState::as_str))
        .fetch_all(&self.pool)
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
            insert_entry(&mut tx, lease.job, seq, event, &ts(now)).await?;
            Ok(())
        })
    }

    // ---- webhook inbox -------------------------------------------------------------------

    pub async fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let inserted = sqlx::query(
                "INSERT INTO inbox (provider, delivery_id, headers, body, received_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING id",
            )
            .bind(delivery.provider)
            .bind(delivery.delivery_id)
            .bind(model::to_json(delivery.headers)?)
            .bind(delivery.body)
            .bind(ts(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(inserted) = inserted else {
                return Ok(Recorded::Duplicate);
            };
            let id: i64 = inserted.try_get(0)?;
            let enqueued = match job {
                Some(job) => Some(enqueue_in(&mut tx, job, now).await?),
                None => None,
            };
            if let Some(enqueued) = enqueued {
                sqlx::query("UPDATE inbox SET job_id = ? WHERE id = ?")
                    .bind(enqueued.job().to_string())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(Recorded::Inserted { job: enqueued })
        })
    }

    // ---- API tokens ----------------------------------------------------------------------

    pub async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenRow, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let clash = sqlx::query(
                "SELECT token_hash = ?1 FROM api_tokens WHERE token_hash = ?1 OR (name = ?2 AND revoked_at IS NULL)",
            )
            .bind(token_hash)
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
            for r in &clash {
                if r.try_get::<bool, _>(0)? {
                    return Err(StoreError::DuplicateToken);
                }
            }
            if !clash.is_empty() {
                return Err(StoreError::TokenNameTaken(name.to_string()));
            }
            let row = sqlx::query(
                "INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?, ?, ?) RETURNING *",
            )
            .bind(name)
            .bind(token_hash)
            .bind(ts(now))
            .fetch_one(&mut *tx)
            .await?;
            token_from_row(&row)
        })
    }

    pub async fn find_api_token(&self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    pub async fn revoke_api_token(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ts(now))
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn api_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }
}

/// Create the job and its queue row, or return the ticket's active job (the caller holds the
/// write lock, so no other enqueue can slip in between the check and the insert).
async fn enqueue_in(
    tx: &mut Tx,
    job: &NewJob<'_>,
    now: DateTime<Utc>,
) -> Result<Enqueued, StoreError> {
    let active: Option<String> = sqlx::query(
        "SELECT job_id FROM queue WHERE ticket_key = ? AND state IN ('queued', 'leased', 'waiting')",
    )
    .bind(job.ticket.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.try_get(0))
    .transpose()?;
    if let Some(active) = active {
        return Ok(Enqueued::Existing(model::job_id(&active)?));
    }
    let at = ts(now);
    insert_job(tx, job.id, job.ticket, job.created, &at).await?;
    sqlx::query(
        "INSERT INTO queue (job_id, ticket_key, project, state, run_after, max_attempts, created_at, updated_at)
         VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
    )
    .bind(job.id.to_string())
    .bind(job.ticket.to_string())
    .bind(job.ticket.project())
    .bind(&at)
    .bind(i64::from(job.max_attempts))
    .bind(&at)
    .bind(&at)
    .execute(&mut **tx)
    .await?;
    Ok(Enqueued::Created(job.id))
}

async fn current(tx: &mut Tx, job: JobId) -> Result<Option<Current>, StoreError> {
    let row = sqlx::query("SELECT * FROM queue WHERE job_id = ?")
        .bind(job.to_string())
        .fetch_optional(&mut **tx)
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
    sqlx::query(
        "UPDATE queue SET state = ?, attempts = ?, run_after = COALESCE(?, run_after),
             last_error = COALESCE(?, last_error), lease_owner = NULL, lease_until = NULL,
             updated_at = ?
         WHERE job_id = ?",
    )
    .bind(next.state.as_str())
    .bind(i64::from(next.attempts))
    .bind(next.run_after.map(ts))
    .bind(next.last_error.as_deref())
    .bind(ts(now))
    .bind(job.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn entry_from_row(r: &SqliteRow) -> Result<QueueEntry, StoreError> {
    Ok(QueueEntry {
        job: model::job_id(&r.try_get::<String, _>("job_id")?)?,
        ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
        project: r.try_get("project")?,
        state: queue::parse_state(&r.try_get::<String, _>("state")?)?,
        run_after: time_at(r, "run_after")?,
        attempts: queue::attempts(r.try_get("attempts")?)?,
        max_attempts: queue::attempts(r.try_get("max_attempts")?)?,
        lease_owner: r.try_get("lease_owner")?,
        lease_token: r.try_get("lease_token")?,
        lease_until: time_opt(r, "lease_until")?,
        heartbeat_at: time_opt(r, "heartbeat_at")?,
        last_error: r.try_get("last_error")?,
        created_at: time_at(r, "created_at")?,
        updated_at: time_at(r, "updated_at")?,
    })
}

fn token_from_row(r: &SqliteRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: time_at(r, "created_at")?,
        revoked_at: time_opt(r, "revoked_at")?,
    })
}
