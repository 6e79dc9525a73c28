//! Dashboard sessions: created at sign-in for a user, found while unexpired (with the user's
//! current role), kept alive by use, deleted at sign-out, with the user, or once expired.

use chrono::{DateTime, Utc};

use crate::sql::{Db, Row, q};
use crate::{SessionRow, StoreError};

impl Db {
    pub async fn create_session(
        &self,
        id_hash: &str,
        user: &str,
        data: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        q(
            "INSERT INTO sessions (id_hash, user_name, data, created_at, expires_at)
           VALUES ($1, $2, $3::jsonb, $4, $5)",
        )
        .bind(id_hash)
        .bind(user)
        .bind(data)
        .bind(now)
        .bind(expires_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = q(
            "SELECT s.user_name, u.role, s.data::text AS data, s.created_at, s.expires_at
             FROM sessions s JOIN users u ON u.name = s.user_name
             WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(self.read())
        .await?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    pub async fn touch_session(
        &self,
        id_hash: &str,
        data: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = q("UPDATE sessions SET data = $1::jsonb, expires_at = $2 WHERE id_hash = $3")
            .bind(data)
            .bind(expires_at)
            .bind(id_hash)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let n = q("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }

    pub async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        q("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.writer())
            .await
    }
}

fn session_from_row(r: &Row) -> Result<SessionRow, StoreError> {
    let data = r.text("data")?;
    Ok(SessionRow {
        user: r.text("user_name")?,
        role: r.text("role")?,
        data: serde_json::from_str(&data)
            .map_err(|e| StoreError::Corrupt(format!("session data: {e}")))?,
        created_at: r.time("created_at")?,
        expires_at: r.time("expires_at")?,
    })
}
