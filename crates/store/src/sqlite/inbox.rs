//! SQLite: pruning the webhook inbox (recording and reading deliveries live with the queue).

use chrono::{DateTime, Utc};

use super::{Sqlite, ts};
use crate::StoreError;
use crate::queue::InboxPruned;

/// A delivery nothing can need any more: it started no job, or its job is no longer active.
const PROCESSED: &str = "(job_id IS NULL OR NOT EXISTS (
    SELECT 1 FROM queue q
    WHERE q.job_id = inbox.job_id AND q.state IN ('queued', 'leased', 'waiting')))";

impl Sqlite {
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
