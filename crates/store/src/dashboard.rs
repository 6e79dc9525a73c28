//! The `Store` facade's part for the dashboard: its users and their sessions.

use chrono::{DateTime, Utc};

use crate::queue::micros;
use crate::{SessionRow, Store, StoreError, UserRow};

impl Store {
    // ---- users ---------------------------------------------------------------------------

    /// Add a dashboard user with a role and an already hashed password; `UserExists` when the
    /// name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<UserRow, StoreError> {
        self.db
            .create_user(name, role, password_hash, micros(Utc::now()))
            .await
    }

    /// A user signed in by single sign-on: created with `role` and a password hash nothing
    /// matches, or an existing user given `role` (their password stays).
    pub async fn ensure_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<UserRow, StoreError> {
        self.db
            .ensure_user(name, role, password_hash, micros(Utc::now()))
            .await
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        self.db.user(name).await
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        self.db.users().await
    }

    /// Remove a user and end their sessions; false when there was none of that name.
    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        self.db.remove_user(name).await
    }

    // ---- dashboard sessions ----------------------------------------------------------------

    /// Start a session of `user` (the SHA-256 of its random id, never the id), valid until
    /// `expires_at`, with the server's `data`.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user: &str,
        data: &serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .create_session(
                id_hash,
                user,
                &data.to_string(),
                micros(Utc::now()),
                micros(expires_at),
            )
            .await
    }

    /// The session, if it exists and has not expired at `now`, with its user's current role.
    pub async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, StoreError> {
        self.db.session(id_hash, micros(now)).await
    }

    /// Keep a session alive until `expires_at` with new `data`; false when it is gone.
    pub async fn touch_session(
        &self,
        id_hash: &str,
        data: &serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .touch_session(id_hash, &data.to_string(), micros(expires_at))
            .await
    }

    /// End a session (sign-out); false when it was gone already.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        self.db.delete_session(id_hash).await
    }

    /// Remember a single sign-on under way (the SHA-256 of the id its cookie carries) until
    /// `expires_at`.
    pub async fn put_sign_in(
        &self,
        id_hash: &str,
        data: &serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .put_sign_in(id_hash, &data.to_string(), micros(expires_at))
            .await
    }

    /// Take a single sign-on under way: gone afterwards, `None` when unknown or expired.
    pub async fn take_sign_in(
        &self,
        id_hash: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let Some(data) = self.db.take_sign_in(id_hash, micros(Utc::now())).await? else {
            return Ok(None);
        };
        serde_json::from_str(&data)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("sign-in data: {e}")))
    }

    /// Delete every session expired at `now`; how many.
    pub async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.db.prune_sessions(micros(now)).await
    }
}
