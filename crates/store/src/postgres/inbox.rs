//! PostgreSQL: pruning the webhook inbox (recording and reading deliveries live with the queue).

use chrono::{DateTime, Utc};

use super::Postgres;
use crate::StoreError;
use crate::queue::InboxPruned;

/// A delivery nothing can need any more: it started no job, or its job is no longer active.
const PROCESSED: &str = "(job_id IS NULL OR NOT EXISTS (
    SELECT 1 FROM queue q
    WHERE q.job_id = inbox.job_id AND q.state IN ('queued', 'leased', 'waiting')))";

impl Postgres {
    /// Two statements, each atomic on its own: a node pruning at the same time only finds less
    /// to do, and a delivery recorded meanwhile is either seen whole or not at all.
    pub async fn prune_deliveries(
        &self,
        forget_before: DateTime<Utc>,
    ) -> Result<InboxPruned, StoreError> {
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM inbox WHERE received_at < $1 AND {PROCESSED}"
        )))
        .bind(forget_before)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let cleared = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE inbox SET body = ''::bytea, headers = '[]'::jsonb
             WHERE length(body) > 0 AND {PROCESSED}"
        )))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(InboxPruned { cleared, deleted })
    }
}
