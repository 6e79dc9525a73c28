//! Dashboard users: created with a role and a password hash, listed, found by name, removed.

use chrono::{DateTime, Utc};

use crate::sql::{Db, Row, q};
use crate::{StoreError, UserRow};

impl Db {
    pub async fn create_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<UserRow, StoreError> {
        let row = q(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
             RETURNING *",
        )
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(now)
        .fetch_one(self.writer())
        .await;
        match row {
            Ok(r) => user_from_row(&r),
            Err(StoreError::Sql(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                Err(StoreError::UserExists(name.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Create `name` with `role`, or give an existing user that role (its password stays).
    pub async fn ensure_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<UserRow, StoreError> {
        let row = q(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role
             RETURNING *",
        )
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(now)
        .fetch_one(self.writer())
        .await?;
        user_from_row(&row)
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let row = q("SELECT * FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = q("SELECT * FROM users ORDER BY name")
            .fetch_all(self.read())
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let n = q("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }
}

fn user_from_row(r: &Row) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: r.int("id")?,
        name: r.text("name")?,
        role: r.text("role")?,
        password_hash: r.text("password_hash")?,
        created_at: r.time("created_at")?,
    })
}
