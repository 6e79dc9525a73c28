//! SQLite: positions in the event stream and the job views, written with each journal entry;
//! reading them back.

use chrono::{DateTime, Utc};
use codemill_core::agent::AgentEvent;
use codemill_core::ids::JobId;
use codemill_core::pipeline::{JobEvent, JobState};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Sqlite, Tx, time_at};
use crate::StoreError;
use crate::events::{
    ActivityRow, ActivityStep, EventRow, JobView, columns, next_state, replay_state,
};
use crate::model;

/// Give the entry just appended its stream position and bring the job's view up to date.
pub(super) async fn after_append(
    tx: &mut Tx,
    job: JobId,
    seq: i64,
    event: &JobEvent,
    at: &str,
) -> Result<(), StoreError> {
    let before = if seq == 0 {
        None
    } else {
        sqlx::query("SELECT state, error FROM job_view WHERE job_id = ?")
            .bind(job.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| state_of(&r, job))
            .transpose()?
    };
    let prev_status = before.as_ref().map(|(state, _)| columns(state).0);
    let (state, error) = next_state(before, seq, event);
    let pos: i64 = sqlx::query_scalar(
        "INSERT INTO event_log (job_id, seq, prev_status, status) VALUES (?, ?, ?, ?) RETURNING pos",
    )
    .bind(job.to_string())
    .bind(seq)
    .bind(prev_status)
    .bind(columns(&state).0)
    .fetch_one(&mut **tx)
    .await?;
    write_view(tx, job, seq, pos, &state, error.as_deref(), at).await
}

fn state_of(r: &SqliteRow, job: JobId) -> Result<(Option<JobState>, Option<String>), StoreError> {
    let state = r
        .try_get::<Option<String>, _>("state")?
        .map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| StoreError::Corrupt(format!("view of job {job}: {e}")))
        })
        .transpose()?;
    Ok((state, r.try_get("error")?))
}

async fn write_view(
    tx: &mut Tx,
    job: JobId,
    seq: i64,
    pos: i64,
    state: &Option<JobState>,
    error: Option<&str>,
    at: &str,
) -> Result<(), StoreError> {
    let (status, stage) = columns(state);
    let state = state.as_ref().map(model::to_json).transpose()?;
    sqlx::query(
        "INSERT INTO job_view (job_id, ticket_key, project, status, stage, seq, pos, state, error, created_at, updated_at)
         SELECT id, ticket_key, project, ?2, ?3, ?4, ?5, ?6, ?7, created_at, ?8 FROM jobs WHERE id = ?1
         ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, stage = excluded.stage,
             seq = excluded.seq, pos = excluded.pos, state = excluded.state,
             error = excluded.error, updated_at = excluded.updated_at",
    )
    .bind(job.to_string())
    .bind(status)
    .bind(stage)
    .bind(seq)
    .bind(pos)
    .bind(state)
    .bind(error)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
