//! The notification outbox and followers' cursors.

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::model;
use crate::notify::{NewNotification, NotificationRow, NotificationState, Sent};
use crate::sql::{Db, Row, q};

const COLUMNS: &str = "id, event_pos, channel, kind, project, ticket_key, job_id, \
     message::text AS message, state, attempts, next_at, last_error, created_at, sent_at";

fn row(r: &Row) -> Result<NotificationRow, StoreError> {
    let id = r.int("id")?;
    let message = r.text("message")?;
    Ok(NotificationRow {
        id,
        event_pos: r.int("event_pos")?,
        channel: r.text("channel")?,
        kind: r.text("kind")?,
        project: r.text("project")?,
        ticket: model::ticket_key(&r.text("ticket_key")?)?,
        job: r.job("job_id")?,
        message: serde_json::from_str(&message)
            .map_err(|e| StoreError::Corrupt(format!("notification {id}: {e}")))?,
        state: NotificationState::parse(&r.text("state")?)?,
        attempts: r.int("attempts")?.try_into().unwrap_or(0),
        next_at: r.opt_time("next_at")?,
        last_error: r.opt_text("last_error")?,
        created_at: r.time("created_at")?,
        sent_at: r.opt_time("sent_at")?,
    })
}

impl Db {
    pub async fn follower_pos(&self, name: &str) -> Result<Option<i64>, StoreError> {
        q("SELECT pos FROM followers WHERE name = $1")
            .bind(name)
            .fetch_optional(self.read())
            .await?
            .map(|r| r.int(0))
            .transpose()
    }

    pub async fn advance_follower(
        &self,
        name: &str,
        pos: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        q(
            "INSERT INTO followers (name, pos, updated_at) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO UPDATE
           SET pos = GREATEST(followers.pos, excluded.pos), updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(pos)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn add_notifications(
        &self,
        new: &[NewNotification<'_>],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let mut added = 0;
            for n in new {
                added += q(
                    "INSERT INTO notifications (event_pos, channel, kind, project, ticket_key, job_id, message, next_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $8)
                     ON CONFLICT (event_pos, channel) DO NOTHING",
                )
                .bind(n.event_pos)
                .bind(n.channel)
                .bind(n.kind)
                .bind(n.project)
                .bind(n.ticket.to_string())
                .bind(n.job)
                .bind(n.message.to_string())
                .bind(now)
                .execute(&mut tx)
                .await?;
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
        let rows = q(format!(
            "UPDATE notifications SET next_at = $1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' AND next_at <= $2
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        ))
        .bind(hold_until)
        .bind(now)
        .bind(limit)
        .fetch_all(self.writer())
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
        q("UPDATE notifications SET state = $1, next_at = $2, last_error = COALESCE($3, last_error), sent_at = $4
           WHERE id = $5 AND state = 'pending'")
        .bind(state)
        .bind(next_at)
        .bind(error)
        .bind(sent_at)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn notifications(&self, limit: u32) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = q(format!(
            "SELECT {COLUMNS} FROM notifications ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.read())
        .await?;
        rows.iter().map(row).collect()
    }
}
