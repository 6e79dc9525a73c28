//! A job's artifacts: what one step hands to a later one, readable by every worker. Written
//! only while the writer holds the job's lease, in the same transaction as the lease check, so
//! a worker that lost the job cannot overwrite what its successor relies on.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;

use super::queue::current;
use crate::queue::{Lease, check_lease};
use crate::sql::{Db, Row, q};
use crate::{Artifact, StoreError};

impl Db {
    pub async fn put_artifact(
        &self,
        lease: &Lease,
        name: &str,
        body: &[u8],
        meta: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            check_lease(lease, current(&mut tx, lease.job).await?.as_ref(), now)?;
            q("INSERT INTO artifacts (job_id, name, body, meta, updated_at) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (job_id, name) DO UPDATE
               SET body = excluded.body, meta = excluded.meta, updated_at = excluded.updated_at")
            .bind(lease.job)
            .bind(name)
            .bind(body)
            .bind(meta)
            .bind(now)
            .execute(&mut tx)
            .await?;
            Ok(())
        })
    }

    pub async fn artifact(&self, job: JobId, name: &str) -> Result<Option<Artifact>, StoreError> {
        let row = q("SELECT * FROM artifacts WHERE job_id = $1 AND name = $2")
            .bind(job)
            .bind(name)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| artifact_from_row(&r)).transpose()
    }

    /// The job's artifacts whose name starts with `prefix`, by name.
    pub async fn artifacts(&self, job: JobId, prefix: &str) -> Result<Vec<Artifact>, StoreError> {
        let rows = q(
            "SELECT * FROM artifacts WHERE job_id = $1 AND substr(name, 1, length($2)) = $2
               ORDER BY name",
        )
        .bind(job)
        .bind(prefix)
        .fetch_all(self.read())
        .await?;
        rows.iter().map(artifact_from_row).collect()
    }
}

fn artifact_from_row(r: &Row) -> Result<Artifact, StoreError> {
    Ok(Artifact {
        job: r.job("job_id")?,
        name: r.text("name")?,
        body: r.bytes("body")?,
        meta: r.opt_text("meta")?,
        updated_at: r.time("updated_at")?,
    })
}
