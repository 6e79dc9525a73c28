//! PostgreSQL: the notification outbox and followers' cursors.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::Postgres;
use crate::StoreError;
use crate::model;
use crate::notify::{NewNotification, NotificationRow, NotificationState, Sent};

const COLUMNS: &str = "id, event_pos, channel, kind, project, ticket_key, job_id, \
     message::text AS message, state, attempts, next_at, last_error, created_at, sent_at";

fn row(r: &PgRow) -> Result<NotificationRow, StoreError> {
    let id: i64 = r.try_get("id")?;
    let message: String = r.try_get("message")?;
    Ok(NotificationRow {
        id,
        event_pos: r.try_get("event_pos")?,
        channel: r.try_get("channel")?,
        kind: r.try_get("kind")?,
        project: r.try_get("project")?,
        ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
        job: JobId(r.try_get("job_id")?),
        message: serde_json::from_str(&message)
            .map_err(|e| StoreError::Corrupt(format!("notification {id}: {e}")))?,
        state: NotificationState::parse(&r.try_get::<String, _>("state")?)?,
        attempts: r.try_get::<i32, _>("attempts")?.try_into().unwrap_or(0),
        next_at: r.try_get("next_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
    })
}

impl Postgres {
    pub async fn follower_pos(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT pos FROM followers WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn advance_follower(
        &self,
        name: &str,
        pos: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO followers (name, pos, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
             SET pos = GREATEST(followers.pos, excluded.pos), updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(pos)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn add_notifications(
        &self,
        new: &[NewNotification<'_>],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        atomically!(tx, {
            let mut added = 0;
            for n in new {
                added += sqlx::query(
                    "INSERT INTO notifications (event_pos, channel, kind, project, ticket_key, job_id, message, next_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $8)
                     ON CONFLICT (event_pos, channel) DO NOTHING",
                )
                .bind(n.event_pos)
                .bind(n.channel)
                .bind(n.kind)
                .bind(n.project)
                .bind(n.ticket.to_string())
                .bind(n.job.0)
                .bind(n.message.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            Ok(added)
        })
    }

    pub async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE notifications SET next_at = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' AND next_at <= $2
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        )))
        .bind(hold_until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|r| r.id);
        Ok(claimed)
    }

    pub async fn settle_notification(
        &self,
        id: i64,
        sent: &Sent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (state, next_at, error, sent_at) = match sent {
            Sent::Sent => ("sent", None, None, Some(now)),
            Sent::Retry { at, error } => ("pending", Some(*at), Some(error.as_str()), None),
            Sent::Failed(error) => ("failed", None, Some(error.as_str()), None),
        };
        sqlx::query(
            "UPDATE notifications SET state = $1, next_at = $2, last_error = COALESCE($3, last_error), sent_at = $4
             WHERE id = $5 AND state = 'pending'",
        )
        .bind(state)
        .bind(next_at)
        .bind(error)
        .bind(sent_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn notifications(&self, limit: u32) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications ORDER BY id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }
}
