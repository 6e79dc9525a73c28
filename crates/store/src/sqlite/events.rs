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

fn view(r: &SqliteRow) -> Result<JobView, StoreError> {
    let job = model::job_id(&r.try_get::<String, _>("job_id")?)?;
    let (state, error) = state_of(r, job)?;
    Ok(JobView {
        job,
        ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
        project: r.try_get("project")?,
        status: r.try_get("status")?,
        stage: r.try_get("stage")?,
        seq: r.try_get("seq")?,
        pos: r.try_get("pos")?,
        state,
        error,
        created_at: time_at(r, "created_at")?,
        updated_at: time_at(r, "updated_at")?,
    })
}

impl Sqlite {
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.pos, l.job_id, l.seq, l.prev_status, l.status, j.ticket_key, j.project, e.event, e.created_at
             FROM event_log l
             JOIN journal e ON e.job_id = l.job_id AND e.seq = l.seq
             JOIN jobs j ON j.id = l.job_id
             WHERE l.pos > ? ORDER BY l.pos LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let job = model::job_id(&r.try_get::<String, _>("job_id")?)?;
                let event: String = r.try_get("event")?;
                Ok(EventRow {
                    pos: r.try_get("pos")?,
                    job,
                    seq: r.try_get("seq")?,
                    ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
                    project: r.try_get("project")?,
                    at: time_at(r, "created_at")?,
                    event: serde_json::from_str(&event)
                        .map_err(|e| StoreError::Corrupt(format!("journal of job {job}: {e}")))?,
                    prev_status: r.try_get("prev_status")?,
                    status: r.try_get("status")?,
                })
            })
            .collect()
    }

    pub async fn last_event_pos(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(pos) FROM event_log")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    pub async fn job_view(&self, job: JobId) -> Result<Option<JobView>, StoreError> {
        sqlx::query("SELECT * FROM job_view WHERE job_id = ?")
            .bind(job.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| view(&r))
            .transpose()
    }

    pub async fn job_views(
        &self,
        status: Option<&str>,
        ticket: Option<&str>,
    ) -> Result<Vec<JobView>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM job_view WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR ticket_key = ?2)
             ORDER BY created_at, job_id",
        )
        .bind(status)
        .bind(ticket)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(view).collect()
    }

    /// Views for jobs written before views existed; returns how many were built.
    pub async fn build_missing_views(&self) -> Result<u64, StoreError> {
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE NOT EXISTS (SELECT 1 FROM job_view v WHERE v.job_id = jobs.id)",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut built = 0;
        for id in missing {
            let job = model::job_id(&id)?;
            let mut tx = self.write().await?;
            let done: bool = atomically!(tx, {
                let entries = sqlx::query(
                    "SELECT e.seq, e.event, e.created_at, l.pos FROM journal e
                     JOIN event_log l ON l.job_id = e.job_id AND l.seq = e.seq
                     WHERE e.job_id = ? ORDER BY e.seq",
                )
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?;
                let Some(last) = entries.last() else {
                    return Ok(false);
                };
                let events = entries
                    .iter()
                    .map(|r| {
                        serde_json::from_str::<JobEvent>(&r.try_get::<String, _>("event")?)
                            .map_err(|e| StoreError::Corrupt(format!("journal of job {job}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let (state, error) = replay_state(&events);
                let at: String = last.try_get("created_at")?;
                write_view(
                    &mut tx,
                    job,
                    last.try_get("seq")?,
                    last.try_get("pos")?,
                    &state,
                    error.as_deref(),
                    &at,
                )
                .await?;
                Ok(true)
            })?;
            built += u64::from(done);
        }
        Ok(built)
    }
}

impl Sqlite {
    pub async fn record_activity(
        &self,
        step: &ActivityStep<'_>,
        events: &[(DateTime<Utc>, AgentEvent)],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            for (at, event) in events {
                sqlx::query(
                    "INSERT INTO activity (job_id, stage, round, angle, at, event) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(step.job.to_string())
                .bind(step.stage)
                .bind(i64::from(step.round))
                .bind(step.angle)
                .bind(super::ts(*at))
                .bind(model::to_json(event)?)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }

    pub async fn activity_since(
        &self,
        job: JobId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM activity WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?")
                .bind(job.to_string())
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let event: String = r.try_get("event")?;
                Ok(ActivityRow {
                    id: r.try_get("id")?,
                    job,
                    stage: r.try_get("stage")?,
                    round: r.try_get::<i64, _>("round")?.try_into().unwrap_or(0),
                    angle: r.try_get("angle")?,
                    at: time_at(r, "at")?,
                    event: serde_json::from_str(&event)
                        .map_err(|e| StoreError::Corrupt(format!("activity of job {job}: {e}")))?,
                })
            })
            .collect()
    }

    pub async fn prune_activity(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            Ok(sqlx::query("DELETE FROM activity WHERE at < ?")
                .bind(super::ts(before))
                .execute(&mut *tx)
                .await?
                .rows_affected())
        })
    }
}
