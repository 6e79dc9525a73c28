//! Jobs and their append-only journal. Every entry is written with its stream position and
//! the job's view in the same transaction (`tables::events::after_append`).

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;

use crate::StoreError;
use crate::model::{self, JobRow, JournalEntry};
use crate::sql::{Db, Row, Tx, q};
use crate::tables::events;

impl Db {
    /// The job whose id is `text`: a whole UUID, or the short form the CLI prints (its last 8
    /// to 12 hex digits). `Invalid` when the short form names more than one job.
    pub async fn find_job(&self, text: &str) -> Result<Option<JobId>, StoreError> {
        if let Ok(id) = text.parse::<JobId>() {
            return Ok(Some(id));
        }
        let short = text.to_ascii_lowercase();
        if !(8..=12).contains(&short.len()) || !short.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::Invalid(format!(
                "{text:?} is not a job id (a UUID, or the last 8 to 12 hex digits of one)"
            )));
        }
        let rows = q("SELECT id FROM jobs WHERE CAST(id AS TEXT) LIKE $1 LIMIT 2")
            .bind(format!("%{short}"))
            .fetch_all(self.read())
            .await?;
        match rows.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.job(0)?)),
            _ => Err(StoreError::Invalid(format!(
                "job id {text:?} matches more than one job: give more of it"
            ))),
        }
    }

    // ---- jobs and the journal ------------------------------------------------------------

    pub async fn create_job(
        &self,
        id: JobId,
        ticket: &TicketKey,
        created: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            insert_job(&mut tx, id, ticket, created, now).await?;
            Ok(())
        })
    }

    pub async fn append(
        &self,
        id: JobId,
        seq: i64,
        event: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            insert_entry(&mut tx, id, seq, event, now).await?;
            Ok(())
        })
    }

    pub async fn journal(&self, id: JobId) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = q(
            "SELECT seq, event::text AS event, created_at FROM journal WHERE job_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JournalEntry {
                    seq: r.int("seq")?,
                    at: r.time("created_at")?,
                    event: model::event(id, &r.text("event")?)?,
                })
            })
            .collect()
    }

    pub async fn jobs_for_ticket(&self, key: &TicketKey) -> Result<Vec<JobRow>, StoreError> {
        let rows = q("SELECT * FROM jobs WHERE ticket_key = $1 ORDER BY created_at, id")
            .bind(key.to_string())
            .fetch_all(self.read())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let rows = q("SELECT * FROM jobs ORDER BY created_at, id")
            .fetch_all(self.read())
            .await?;
        rows.iter().map(job_from_row).collect()
    }
}

/// The job row and its first journal entry.
pub(crate) async fn insert_job(
    tx: &mut Tx,
    id: JobId,
    ticket: &TicketKey,
    created: &JobEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    q("INSERT INTO jobs (id, ticket_key, project, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(ticket.to_string())
        .bind(ticket.project())
        .bind(at)
        .execute(&mut *tx)
        .await?;
    insert_entry(tx, id, 0, created, at).await
}

pub(crate) async fn insert_entry(
    tx: &mut Tx,
    id: JobId,
    seq: i64,
    event: &JobEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let result = q(
        "INSERT INTO journal (job_id, seq, kind, event, created_at) VALUES ($1, $2, $3, $4::jsonb, $5)",
    )
    .bind(id)
    .bind(seq)
    .bind(event.name())
    .bind(model::to_json(event)?)
    .bind(at)
    .execute(&mut *tx)
    .await;
    match result {
        Ok(_) => events::after_append(tx, id, seq, event, at).await,
        Err(StoreError::Sql(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            Err(StoreError::Conflict { job: id, seq })
        }
        Err(e) => Err(e),
    }
}

fn job_from_row(r: &Row) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        id: r.job("id")?,
        ticket: model::ticket_key(&r.text("ticket_key")?)?,
        project: r.text("project")?,
        created_at: r.time("created_at")?,
    })
}
