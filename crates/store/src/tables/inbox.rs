//! The webhook inbox after recording: processing outside deliveries, reading them back, and
//! pruning (recording a local delivery with its job lives with the queue).

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::model;
use crate::queue::{Delivery, InboxPruned, InboxRow, InboxState, Recorded, Settled};
use crate::sql::{Db, Row, Tx, q};

/// A delivery nothing can need any more: it was processed, and it started no job or its job is
/// no longer active.
const PROCESSED: &str = "(state <> 'pending' AND (job_id IS NULL OR NOT EXISTS (
    SELECT 1 FROM queue q
    WHERE q.job_id = inbox.job_id AND q.state IN ('queued', 'leased', 'waiting'))))";

/// Every column, with JSON as text.
const WHOLE: &str = "id, provider, delivery_id, headers::text AS headers, body, job_id, \
     received_at, state, attempts, next_at, outcome::text AS outcome";

/// Every column but the body and headers, which are read only when asked for.
const SUMMARY: &str = "id, provider, delivery_id, job_id, received_at, state, attempts, \
     next_at, outcome::text AS outcome";

fn row(r: &Row, whole: bool) -> Result<InboxRow, StoreError> {
    let delivery_id = r.text("delivery_id")?;
    let (headers, body) = if whole {
        let headers = r.text("headers")?;
        let headers = serde_json::from_str(&headers)
            .map_err(|e| StoreError::Corrupt(format!("headers of delivery {delivery_id}: {e}")))?;
        (headers, r.bytes("body")?)
    } else {
        (Vec::new(), Vec::new())
    };
    let outcome = r
        .opt_text("outcome")?
        .map(|o| {
            serde_json::from_str(&o)
                .map_err(|e| StoreError::Corrupt(format!("outcome of delivery {delivery_id}: {e}")))
        })
        .transpose()?;
    Ok(InboxRow {
        id: r.int("id")?,
        provider: r.text("provider")?,
        headers,
        body,
        job: r.opt_job("job_id")?,
        received_at: r.time("received_at")?,
        state: InboxState::parse(&r.text("state")?)?,
        attempts: r.int("attempts")?.try_into().unwrap_or(0),
        next_at: r.opt_time("next_at")?,
        outcome,
        delivery_id,
    })
}

impl Db {
    pub async fn delivery(
        &self,
        provider: &str,
        delivery_id: &str,
    ) -> Result<Option<InboxRow>, StoreError> {
        q(format!(
            "SELECT {WHOLE} FROM inbox WHERE provider = $1 AND delivery_id = $2"
        ))
        .bind(provider)
        .bind(delivery_id)
        .fetch_optional(self.read())
        .await?
        .map(|r| row(&r, true))
        .transpose()
    }

    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        // SKIP LOCKED: nodes claiming at the same moment take different rows instead of waiting.
        let rows = q(format!(
            "UPDATE inbox SET next_at = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM inbox WHERE state = 'pending' AND next_at <= $2
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {WHOLE}"
        ))
        .bind(hold_until)
        .bind(now)
        .bind(limit)
        .fetch_all(self.writer())
        .await?;
        let mut claimed = rows
            .iter()
            .map(|r| row(r, true))
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|r| r.id);
        Ok(claimed)
    }

    pub async fn settle_delivery(&self, id: i64, settled: &Settled) -> Result<(), StoreError> {
        let (state, next_at, outcome) = match settled {
            Settled::Done(o) => ("done", None, o),
            Settled::Retry { at, error } => ("pending", Some(*at), error),
            Settled::Failed(o) => ("failed", None, o),
        };
        q(
            "UPDATE inbox SET state = $1, next_at = $2, outcome = $3::jsonb
             WHERE id = $4 AND state = 'pending'",
        )
        .bind(state)
        .bind(next_at)
        .bind(outcome.to_string())
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn deliveries(
        &self,
        state: Option<InboxState>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let rows = q(format!(
            "SELECT {SUMMARY} FROM inbox WHERE ($1::text IS NULL OR state = $1)
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(state.map(InboxState::as_str))
        .bind(limit)
        .fetch_all(self.read())
        .await?;
        rows.iter().map(|r| row(r, false)).collect()
    }

    /// Two statements, each atomic on its own: a node pruning at the same time only finds less
    /// to do, and a delivery recorded meanwhile is either seen whole or not at all.
    pub async fn prune_deliveries(
        &self,
        forget_before: DateTime<Utc>,
    ) -> Result<InboxPruned, StoreError> {
        let deleted = q(format!(
            "DELETE FROM inbox WHERE received_at < $1 AND {PROCESSED}"
        ))
        .bind(forget_before)
        .execute(self.writer())
        .await?;
        let cleared = q(format!(
            "UPDATE inbox SET body = $1, headers = '[]'::jsonb
             WHERE length(body) > 0 AND {PROCESSED}"
        ))
        .bind(Vec::<u8>::new())
        .execute(self.writer())
        .await?;
        Ok(InboxPruned { cleared, deleted })
    }
}

/// Store an outside delivery, `pending` until the inbox processor claims it, in the caller's
/// transaction.
pub(crate) async fn accept_in(
    tx: &mut Tx,
    delivery: &Delivery<'_>,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    // A concurrent insert of the same key waits for the first transaction, then does nothing.
    let inserted = q(
        "INSERT INTO inbox (provider, delivery_id, headers, body, received_at, state, next_at)
         VALUES ($1, $2, $3::jsonb, $4, $5, 'pending', $5)
         ON CONFLICT (provider, delivery_id) DO NOTHING",
    )
    .bind(delivery.provider)
    .bind(delivery.delivery_id)
    .bind(model::to_json(delivery.headers)?)
    .bind(delivery.body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(if inserted == 0 {
        Recorded::Duplicate
    } else {
        Recorded::Inserted { job: None }
    })
}
