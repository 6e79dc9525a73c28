//! The store's artifacts: what a job's steps hand to later ones, written under its lease.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;

use crate::queue::micros;
use crate::{Artifact, Lease, Store, StoreError};

impl Store {
    /// Keep `body` as the job's artifact `name` (replacing an earlier one), only while `lease`
    /// is valid at `now`; else `Fenced`. Every worker reads it back with [`Store::artifact`].
    pub async fn put_artifact(
        &self,
        lease: &Lease,
        name: &str,
        body: &[u8],
        meta: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .put_artifact(lease, name, body, meta, micros(now))
            .await
    }

    pub async fn artifact(&self, job: JobId, name: &str) -> Result<Option<Artifact>, StoreError> {
        self.db.artifact(job, name).await
    }

    /// The job's artifacts whose names start with `prefix`, by name.
    pub async fn artifacts(&self, job: JobId, prefix: &str) -> Result<Vec<Artifact>, StoreError> {
        self.db.artifacts(job, prefix).await
    }
}
