//! SQLite: the webhook inbox after recording — processing outside deliveries, reading them back,
//! and pruning (recording a local delivery with its job lives with the queue).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Sqlite, time_at, time_opt, ts};
use crate::StoreError;
use crate::model;
use crate::queue::{Delivery, InboxPruned, InboxRow, InboxState, Recorded, Settled};

/// A delivery nothing can need any more: it was processed, and it started no job or its job is
/// no longer active.
const PROCESSED: &str = "(state <> 'pending' AND (job_id IS NULL OR NOT EXISTS (
    SELECT 1 FROM queue q
    WHERE q.job_id = inbox.job_id AND q.state IN ('queued', 'leased', 'waiting'))))";

/// Every column but the body and headers, which are read only when asked for.
const SUMMARY: &str =
    "id, provider, delivery_id, job_id, received_at, state, attempts, next_at, outcome";

fn row(r: &SqliteRow, whole: bool) -> Result<InboxRow, StoreError> {
    let delivery_id: String = r.try_get("delivery_id")?;
    let (headers, body) = if whole {
        let headers: String = r.try_get("headers")?;
        let headers = serde_json::from_str(&headers)
            .map_err(|e| StoreError::Corrupt(format!("headers of delivery {delivery_id}: {e}")))?;
        (headers, r.try_get("body")?)
    } else {
        (Vec::new(), Vec::new())
    };
    let outcome = r
        .try_get::<Option<String>, _>("outcome")?
        .map(|o| {
            serde_json::from_str(&o)
                .map_err(|e| StoreError::Corrupt(format!("outcome of delivery {delivery_id}: {e}")))
        })
        .transpose()?;
    Ok(InboxRow {
        id: r.try_get("id")?,
        provider: r.try_get("provider")?,
        headers,
        body,
        job: r
            .try_get::<Option<String>, _>("job_id")?
            .map(|j| model::job_id(&j))
            .transpose()?,
        received_at: time_at(r, "received_at")?,
        state: InboxState::parse(&r.try_get::<String, _>("state")?)?,
        attempts: r.try_get::<i64, _>("attempts")?.try_into().unwrap_or(0),
        next_at: time_opt(r, "next_at")?,
        outcome,
        delivery_id,
    })
}

impl Sqlite {
    pub async fn delivery(
        &self,
        provider: &str,
        delivery_id: &str,
    ) -> Result<Option<InboxRow>, StoreError> {
        sqlx::query("SELECT * FROM inbox WHERE provider = ? AND delivery_id = ?")
            .bind(provider)
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| row(&r, true))
            .transpose()
    }

    pub async fn accept_delivery(
        &self,
        delivery: &Delivery<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let inserted = sqlx::query(
                "INSERT INTO inbox (provider, delivery_id, headers, body, received_at, state, next_at)
                 VALUES (?, ?, ?, ?, ?, 'pending', ?)
                 ON CONFLICT (provider, delivery_id) DO NOTHING",
            )
            .bind(delivery.provider)
            .bind(delivery.delivery_id)
            .bind(model::to_json(delivery.headers)?)
            .bind(delivery.body)
            .bind(ts(now))
            .bind(ts(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok(if inserted == 0 {
                Recorded::Duplicate
            } else {
                Recorded::Inserted { job: None }
            })
        })
    }

    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let rows = sqlx::query(
                "UPDATE inbox SET next_at = ?, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM inbox WHERE state = 'pending' AND next_at <= ?
                              ORDER BY id LIMIT ?)
                 RETURNING *",
            )
            .bind(ts(hold_until))
            .bind(ts(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            let mut claimed = rows
                .iter()
                .map(|r| row(r, true))
                .collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by_key(|r| r.id);
            Ok(claimed)
        })
    }

    pub async fn settle_delivery(&self, id: i64, settled: &Settled) -> Result<(), StoreError> {
        let (state, next_at, outcome) = match settled {
            Settled::Done(o) => ("done", None, o),
            Settled::Retry { at, error } => ("pending", Some(ts(*at)), error),
            Settled::Failed(o) => ("failed", None, o),
        };
        let mut tx = self.write().await?;
        atomically!(tx, {
            sqlx::query(
                "UPDATE inbox SET state = ?, next_at = ?, outcome = ?
                 WHERE id = ? AND state = 'pending'",
            )
            .bind(state)
            .bind(next_at)
            .bind(outcome.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    pub async fn deliveries(
        &self,
        state: Option<InboxState>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY} FROM inbox WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
        )))
        .bind(state.map(InboxState::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| row(r, false)).collect()
    }

    pub async fn prune_deliveries(
        &self,
        forget_before: DateTime<Utc>,
    ) -> Result<InboxPruned, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM inbox WHERE received_at < ? AND {PROCESSED}"
            )))
            .bind(ts(forget_before))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let cleared = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE inbox SET body = ?, headers = '[]' WHERE length(body) > 0 AND {PROCESSED}"
            )))
            .bind(&[] as &[u8])
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok(InboxPruned { cleared, deleted })
        })
    }
}
