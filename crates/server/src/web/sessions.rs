//! The dashboard's sessions kept in codemill's store (SQLite or PostgreSQL), so they survive a
//! restart and any web node can read them. Only signed-in sessions are stored (the record names
//! its user); the store keeps the SHA-256 of the session id, never the id the cookie carries.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use codemill_store::Store;
use sha2::{Digest, Sha256};
use tower_sessions::SessionStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result};

/// The session key that names the signed-in user.
pub(crate) const USER: &str = "user";

#[derive(Debug, Clone)]
pub(crate) struct StoreSessions {
    store: Store,
}

impl StoreSessions {
    pub(crate) fn new(store: Store) -> StoreSessions {
        StoreSessions { store }
    }
}

fn id_hash(id: &Id) -> String {
    hex::encode(Sha256::digest(id.0.to_string().as_bytes()))
}

fn to_chrono(t: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

fn to_time(t: DateTime<Utc>) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| Error::Decode(e.to_string()))
}

fn backend(e: codemill_store::StoreError) -> Error {
    Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for StoreSessions {
    async fn save(&self, record: &Record) -> Result<()> {
        let Some(user) = record.data.get(USER).and_then(|u| u.as_str()) else {
            // Nobody signed in: nothing worth keeping.
            return Ok(());
        };
        let hash = id_hash(&record.id);
        let data = serde_json::to_value(&record.data).map_err(|e| Error::Encode(e.to_string()))?;
        let expires = to_chrono(record.expiry_date);
        if !self
            .store
            .touch_session(&hash, &data, expires)
            .await
            .map_err(backend)?
        {
            self.store
                .create_session(&hash, user, &data, expires)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let Some(row) = self
            .store
            .session(&id_hash(id), Utc::now())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let mut data: HashMap<String, serde_json::Value> =
            serde_json::from_value(row.data).map_err(|e| Error::Decode(e.to_string()))?;
        // The role as it is now, not as it was at sign-in.
        data.insert("role".into(), serde_json::Value::String(row.role));
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: to_time(row.expires_at)?,
        }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.store
            .delete_session(&id_hash(id))
            .await
            .map(|_| ())
            .map_err(backend)
    }
}
