//! API token hashes: created, looked up and revoked; the token itself is never stored.

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::queue::TokenRow;
use crate::sql::{Db, Row, q};

impl Db {
    /// The clash check gives the precise error; the unique indexes still decide when two nodes
    /// create at the same moment (PostgreSQL names which one was hit).
    pub async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenRow, StoreError> {
        let mut tx = self.write().await?;
        let created = atomically!(tx, {
            let clash = q(
                "SELECT token_hash FROM api_tokens WHERE token_hash = $1 OR (name = $2 AND revoked_at IS NULL)",
            )
            .bind(token_hash)
            .bind(name)
            .fetch_all(&mut tx)
            .await?;
            for r in &clash {
                if r.text(0)? == token_hash {
                    return Err(StoreError::DuplicateToken);
                }
            }
            if !clash.is_empty() {
                return Err(StoreError::TokenNameTaken(name.to_string()));
            }
            let row = q(
                "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING *",
            )
            .bind(name)
            .bind(token_hash)
            .bind(now)
            .fetch_one(&mut tx)
            .await?;
            token_from_row(&row)
        });
        match created {
            Err(StoreError::Sql(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                if e.constraint() == Some("api_tokens_active_name") {
                    Err(StoreError::TokenNameTaken(name.to_string()))
                } else {
                    Err(StoreError::DuplicateToken)
                }
            }
            other => other,
        }
    }

    pub async fn find_api_token(&self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = q("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(token_hash)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    pub async fn revoke_api_token(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let result =
            q("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(self.writer())
                .await?;
        Ok(result == 1)
    }

    pub async fn api_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = q("SELECT * FROM api_tokens ORDER BY id")
            .fetch_all(self.read())
            .await?;
        rows.iter().map(token_from_row).collect()
    }
}

fn token_from_row(r: &Row) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.int("id")?,
        name: r.text("name")?,
        created_at: r.time("created_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}
