//! Single sign-ons under way: written when a person leaves for the provider, taken (once) when
//! they come back, pruned once expired.

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::sql::{Db, q};

impl Db {
    pub async fn put_sign_in(
        &self,
        id_hash: &str,
        data: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        q("INSERT INTO sign_ins (id_hash, data, expires_at) VALUES ($1, $2, $3)")
            .bind(id_hash)
            .bind(data)
            .bind(expires_at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn take_sign_in(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let row = q("DELETE FROM sign_ins WHERE id_hash = $1 RETURNING data, expires_at")
            .bind(id_hash)
            .fetch_optional(self.writer())
            .await?;
        q("DELETE FROM sign_ins WHERE expires_at <= $1")
            .bind(now)
            .execute(self.writer())
            .await?;
        match row {
            Some(r) if r.time("expires_at")? > now => Ok(Some(r.text("data")?)),
            _ => Ok(None),
        }
    }
}
