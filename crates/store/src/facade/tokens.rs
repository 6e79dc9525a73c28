//! The store's API tokens (hashes only).

use chrono::Utc;

use crate::queue::micros;
use crate::{Store, StoreError, TokenRow};

impl Store {
    /// Store a new API token by its hash (the caller hashes; plaintext never reaches the store).
    pub async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
    ) -> Result<TokenRow, StoreError> {
        self.db
            .create_api_token(name, token_hash, micros(Utc::now()))
            .await
    }

    /// The active (not revoked) token with this hash.
    pub async fn find_api_token(&self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        self.db.find_api_token(token_hash).await
    }

    /// Revoke a token; returns false when it was unknown or already revoked.
    pub async fn revoke_api_token(&self, id: i64) -> Result<bool, StoreError> {
        self.db.revoke_api_token(id, micros(Utc::now())).await
    }

    /// All tokens, revoked ones included.
    pub async fn api_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.db.api_tokens().await
    }
}
