//! The store's followers of the event stream (cursors) and the notification outbox.

use chrono::{DateTime, Utc};

use crate::queue::micros;
use crate::{NewNotification, NotificationRow, Sent, Store, StoreError};

impl Store {
    /// Where follower `name` has read the event stream up to; `None` before its first read.
    pub async fn follower_pos(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.db.follower_pos(name).await
    }

    /// Record that follower `name` has handled every event up to `pos`. A cursor only moves
    /// forward: a slower node recording an older position changes nothing.
    pub async fn advance_follower(&self, name: &str, pos: i64) -> Result<(), StoreError> {
        self.db
            .advance_follower(name, pos, micros(Utc::now()))
            .await
    }

    /// Store messages to send, in one transaction; each (event, channel) once, however often
    /// it is added. Returns how many were new.
    pub async fn add_notifications(
        &self,
        new: &[NewNotification<'_>],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.db.add_notifications(new, micros(now)).await
    }

    /// Take up to `limit` pending messages due at `now`, oldest first, held until `hold_until`
    /// (as [`Store::claim_deliveries`]); each claim counts as an attempt.
    pub async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        self.db
            .claim_notifications(micros(now), micros(hold_until), limit.max(1))
            .await
    }

    /// Record how sending a claimed message ended. Only a pending message changes.
    pub async fn settle_notification(&self, id: i64, sent: &Sent) -> Result<(), StoreError> {
        let sent = match sent {
            Sent::Retry { at, error } => Sent::Retry {
                at: micros(*at),
                error: error.clone(),
            },
            other => other.clone(),
        };
        self.db
            .settle_notification(id, &sent, micros(Utc::now()))
            .await
    }

    /// The newest messages first.
    pub async fn notifications(&self, limit: u32) -> Result<Vec<NotificationRow>, StoreError> {
        self.db.notifications(limit.max(1)).await
    }
}
