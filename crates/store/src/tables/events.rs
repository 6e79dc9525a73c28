//! Positions in the event stream and the job views, written with each journal entry; reading
//! them back; agent activity. On PostgreSQL positions come from the one-row `event_counter`,
//! locked until the appending transaction commits (see `crate::events`); SQLite's writers
//! already commit one at a time, so its `event_log` numbers rows itself.

use chrono::{DateTime, Utc};
use codemill_core::agent::AgentEvent;
use codemill_core::ids::JobId;
use codemill_core::pipeline::{JobEvent, JobState};

use crate::StoreError;
use crate::events::{
    ActivityRow, ActivityStep, EventRow, JobCard, JobView, StageSpend, TicketSpend, columns,
    next_state, replay_state,
};
use crate::model;
use crate::sql::{Db, Row, Tx, q};

/// Give the entry just appended its stream position and bring the job's view up to date. The
/// counter is the last lock the appending transaction takes: every caller locks what it guards
/// (queue row, ticket) before appending, so waiting here never closes a cycle.
pub(crate) async fn after_append(
    tx: &mut Tx,
    job: JobId,
    seq: i64,
    event: &JobEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let before = if seq == 0 {
        None
    } else {
        q("SELECT state::text AS state, error FROM job_view WHERE job_id = $1")
            .bind(job)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| state_of(&r, job))
            .transpose()?
    };
    let prev_status = before.as_ref().map(|(state, _)| columns(state).0);
    // Entries of `costs` are only ever added: those past the previous state's are new.
    let known_costs = before
        .as_ref()
        .and_then(|(state, _)| state.as_ref())
        .map_or(0, |s| s.costs.len());
    let (state, error) = next_state(before, seq, event);
    // Before the counter, which stays the last lock taken.
    write_costs(tx, job, &state, known_costs).await?;
    let pos = if tx.is_postgres() {
        let pos = q("UPDATE event_counter SET pos = pos + 1 RETURNING pos")
            .fetch_one(&mut *tx)
            .await?
            .int(0)?;
        q("INSERT INTO event_log (pos, job_id, seq, prev_status, status) VALUES ($1, $2, $3, $4, $5)")
            .bind(pos)
            .bind(job)
            .bind(seq)
            .bind(prev_status)
            .bind(columns(&state).0)
            .execute(&mut *tx)
            .await?;
        pos
    } else {
        q("INSERT INTO event_log (job_id, seq, prev_status, status) VALUES ($1, $2, $3, $4) RETURNING pos")
            .bind(job)
            .bind(seq)
            .bind(prev_status)
            .bind(columns(&state).0)
            .fetch_one(&mut *tx)
            .await?
            .int(0)?
    };
    write_view(tx, job, seq, pos, &state, error.as_deref(), at).await
}

/// The job's cost entries from the `from`th on, into `job_costs` (one already there is kept).
async fn write_costs(
    tx: &mut Tx,
    job: JobId,
    state: &Option<JobState>,
    from: usize,
) -> Result<(), StoreError> {
    let Some(state) = state else { return Ok(()) };
    for (n, cost) in state.costs.iter().enumerate().skip(from) {
        q(
            "INSERT INTO job_costs (job_id, n, stage, tokens, cost_usd) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (job_id, n) DO NOTHING",
        )
        .bind(job)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(cost.stage.as_str())
        .bind(i64::try_from(cost.usage.total()).unwrap_or(i64::MAX))
        .bind(cost.cost_usd)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn state_of(r: &Row, job: JobId) -> Result<(Option<JobState>, Option<String>), StoreError> {
    let state = r
        .opt_text("state")?
        .map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| StoreError::Corrupt(format!("view of job {job}: {e}")))
        })
        .transpose()?;
    Ok((state, r.opt_text("error")?))
}

async fn write_view(
    tx: &mut Tx,
    job: JobId,
    seq: i64,
    pos: i64,
    state: &Option<JobState>,
    error: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (status, stage) = columns(state);
    let (round, cost) = state.as_ref().map_or((0, 0.0), |s| (s.round, s.cost_usd));
    let state = state.as_ref().map(model::to_json).transpose()?;
    q(
        "INSERT INTO job_view (job_id, ticket_key, project, status, stage, seq, pos, state, error, created_at, updated_at, round, cost_usd)
         SELECT id, ticket_key, project, $2, $3, $4, $5, $6::jsonb, $7, created_at, $8, $9, $10 FROM jobs WHERE id = $1
         ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, stage = excluded.stage,
             seq = excluded.seq, pos = excluded.pos, state = excluded.state,
             error = excluded.error, updated_at = excluded.updated_at,
             round = excluded.round, cost_usd = excluded.cost_usd",
    )
    .bind(job)
    .bind(status)
    .bind(stage)
    .bind(seq)
    .bind(pos)
    .bind(state)
    .bind(error)
    .bind(at)
    .bind(i64::from(round))
    .bind(cost)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

const VIEW: &str = "job_id, ticket_key, project, status, stage, seq, pos, state::text AS state, \
     error, created_at, updated_at";

/// Job views oldest first, filtered by status (`$1`) and then ticket when asked. Only the asked
/// filters are in the statement: `($1 IS NULL OR status = $1)` keeps both databases from using
/// the `job_view_status` and `job_view_ticket` indexes, so every view ever written is read.
pub(super) fn views_sql(status: bool, ticket: bool) -> String {
    let asked: Vec<&str> = [(status, "status"), (ticket, "ticket_key")]
        .into_iter()
        .filter_map(|(asked, column)| asked.then_some(column))
        .collect();
    let filter = if asked.is_empty() {
        String::new()
    } else {
        let conditions: Vec<String> = asked
            .iter()
            .enumerate()
            .map(|(i, column)| format!("{column} = ${}", i + 1))
            .collect();
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!("SELECT {VIEW} FROM job_view{filter} ORDER BY created_at, job_id")
}

/// The view of a ticket's latest job: one row through `job_view_ticket`, however many jobs
/// there are.
pub(super) const LATEST_VIEW: &str = "SELECT job_id, ticket_key, project, status, stage, seq, pos, \
     state::text AS state, error, created_at, updated_at FROM job_view WHERE ticket_key = $1 \
     ORDER BY created_at DESC, job_id DESC LIMIT 1";

/// Each ticket's latest job (no later one of its ticket, found through `job_view_ticket`) with
/// its round, cost and ticket title: a board of thousands of tickets reads no state and no
/// ticket body.
pub(super) const CARDS: &str = "SELECT v.job_id, v.ticket_key, v.project, v.status, v.stage, v.round, \
     v.cost_usd, v.created_at, v.updated_at, t.title FROM job_view v \
     LEFT JOIN tickets t ON t.key = v.ticket_key WHERE NOT EXISTS (SELECT 1 FROM job_view w \
     WHERE w.ticket_key = v.ticket_key AND (w.created_at > v.created_at \
     OR (w.created_at = v.created_at AND w.job_id > v.job_id)))";

/// Each ticket's latest job's view, state included ([`CARDS`]' rows with what `codemill status`
/// prints): one parse per ticket instead of a replay of every journal.
pub(super) const LATEST_VIEWS: &str = "SELECT v.job_id, v.ticket_key, v.project, v.status, \
     v.stage, v.seq, v.pos, v.state::text AS state, v.error, v.created_at, v.updated_at \
     FROM job_view v WHERE NOT EXISTS (SELECT 1 FROM job_view w \
     WHERE w.ticket_key = v.ticket_key AND (w.created_at > v.created_at \
     OR (w.created_at = v.created_at AND w.job_id > v.job_id)))";

/// Every job's agent steps summed per stage, from `job_costs`: no job state is read.
pub(super) const STAGE_COSTS: &str = "SELECT stage, CAST(SUM(tokens) AS BIGINT) AS tokens, \
     SUM(cost_usd) AS usd FROM job_costs GROUP BY stage ORDER BY stage";

/// The `$1` tickets whose jobs cost the most, from the views' cost column, with their titles.
/// A job whose journal does not replay has no state and is not counted.
pub(super) const TICKET_COSTS: &str = "SELECT v.ticket_key, v.project, COUNT(*) AS jobs, \
     SUM(v.cost_usd) AS usd, t.title FROM job_view v LEFT JOIN tickets t ON t.key = v.ticket_key \
     WHERE v.state IS NOT NULL GROUP BY v.ticket_key, v.project, t.title \
     ORDER BY usd DESC, v.ticket_key LIMIT $1";

fn view(r: &Row) -> Result<JobView, StoreError> {
    let job = r.job("job_id")?;
    let (state, error) = state_of(r, job)?;
    Ok(JobView {
        job,
        ticket: model::ticket_key(&r.text("ticket_key")?)?,
        project: r.text("project")?,
        status: r.text("status")?,
        stage: r.text("stage")?,
        seq: r.int("seq")?,
        pos: r.int("pos")?,
        state,
        error,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

impl Db {
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let rows = q(
            "SELECT l.pos, l.job_id, l.seq, l.prev_status, l.status, j.ticket_key, j.project, e.event::text AS event, e.created_at
             FROM event_log l
             JOIN journal e ON e.job_id = l.job_id AND e.seq = l.seq
             JOIN jobs j ON j.id = l.job_id
             WHERE l.pos > $1 ORDER BY l.pos LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                let job = r.job("job_id")?;
                let seq = r.int("seq")?;
                let (event, unreadable) = match serde_json::from_str(&r.text("event")?) {
                    Ok(event) => (Some(event), None),
                    Err(e) => (None, Some(format!("entry {seq} of job {job}: {e}"))),
                };
                Ok(EventRow {
                    pos: r.int("pos")?,
                    job,
                    seq,
                    ticket: model::ticket_key(&r.text("ticket_key")?)?,
                    project: r.text("project")?,
                    at: r.time("created_at")?,
                    event,
                    unreadable,
                    prev_status: r.opt_text("prev_status")?,
                    status: r.opt_text("status")?,
                })
            })
            .collect()
    }

    pub async fn last_event_pos(&self) -> Result<i64, StoreError> {
        Ok(q("SELECT MAX(pos) FROM event_log")
            .fetch_one(self.read())
            .await?
            .opt_int(0)?
            .unwrap_or(0))
    }

    pub async fn job_view(&self, job: JobId) -> Result<Option<JobView>, StoreError> {
        q(format!("SELECT {VIEW} FROM job_view WHERE job_id = $1"))
            .bind(job)
            .fetch_optional(self.read())
            .await?
            .map(|r| view(&r))
            .transpose()
    }

    /// Views oldest first, of one status and/or ticket when given ([`views_sql`]).
    pub async fn job_views(
        &self,
        status: Option<&str>,
        ticket: Option<&str>,
    ) -> Result<Vec<JobView>, StoreError> {
        let mut query = q(views_sql(status.is_some(), ticket.is_some()));
        for value in [status, ticket].into_iter().flatten() {
            query = query.bind(value);
        }
        let rows = query.fetch_all(self.read()).await?;
        rows.iter().map(view).collect()
    }

    /// Every ticket's latest job as a card ([`CARDS`]), in no particular order.
    pub async fn job_cards(&self) -> Result<Vec<JobCard>, StoreError> {
        let rows = q(CARDS).fetch_all(self.read()).await?;
        rows.iter()
            .map(|r| {
                Ok(JobCard {
                    job: r.job("job_id")?,
                    ticket: model::ticket_key(&r.text("ticket_key")?)?,
                    project: r.text("project")?,
                    status: r.text("status")?,
                    stage: r.text("stage")?,
                    title: r.opt_text("title")?.unwrap_or_default(),
                    round: u32::try_from(r.int("round")?).unwrap_or(0),
                    cost_usd: r.real("cost_usd")?,
                    created_at: r.time("created_at")?,
                    updated_at: r.time("updated_at")?,
                })
            })
            .collect()
    }

    /// Each ticket's latest job's view ([`LATEST_VIEWS`]), in no particular order.
    pub async fn latest_views(&self) -> Result<Vec<JobView>, StoreError> {
        let rows = q(LATEST_VIEWS).fetch_all(self.read()).await?;
        rows.iter().map(view).collect()
    }

    /// What every job's agent steps cost per stage ([`STAGE_COSTS`]), by stage name.
    pub async fn stage_spend(&self) -> Result<Vec<StageSpend>, StoreError> {
        let rows = q(STAGE_COSTS).fetch_all(self.read()).await?;
        rows.iter()
            .map(|r| {
                Ok(StageSpend {
                    stage: r.text("stage")?,
                    tokens: u64::try_from(r.int("tokens")?).unwrap_or(0),
                    cost_usd: r.real("usd")?,
                })
            })
            .collect()
    }

    /// The `limit` tickets whose jobs cost the most ([`TICKET_COSTS`]), costliest first.
    pub async fn top_ticket_spend(&self, limit: u32) -> Result<Vec<TicketSpend>, StoreError> {
        let rows = q(TICKET_COSTS)
            .bind(i64::from(limit))
            .fetch_all(self.read())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TicketSpend {
                    ticket: model::ticket_key(&r.text("ticket_key")?)?,
                    project: r.text("project")?,
                    title: r.opt_text("title")?.unwrap_or_default(),
                    jobs: u64::try_from(r.int("jobs")?).unwrap_or(0),
                    cost_usd: r.real("usd")?,
                })
            })
            .collect()
    }

    /// The view of the ticket's latest job ([`LATEST_VIEW`]).
    pub async fn latest_view(&self, ticket: &str) -> Result<Option<JobView>, StoreError> {
        q(LATEST_VIEW)
            .bind(ticket)
            .fetch_optional(self.read())
            .await?
            .map(|r| view(&r))
            .transpose()
    }

    /// Views for jobs written before views existed; returns how many were built. Nodes starting
    /// together may build the same view; the newest entry wins either way.
    pub async fn build_missing_views(&self) -> Result<u64, StoreError> {
        let missing = q(
            "SELECT id FROM jobs WHERE NOT EXISTS (SELECT 1 FROM job_view v WHERE v.job_id = jobs.id)",
        )
        .fetch_all(self.read())
        .await?;
        let mut built = 0;
        for row in missing {
            let job = row.job(0)?;
            let mut tx = self.write().await?;
            let done: bool = atomically!(tx, {
                let entries = q(
                    "SELECT e.seq, e.event::text AS event, e.created_at, l.pos FROM journal e
                     JOIN event_log l ON l.job_id = e.job_id AND l.seq = e.seq
                     WHERE e.job_id = $1 ORDER BY e.seq",
                )
                .bind(job)
                .fetch_all(&mut tx)
                .await?;
                let Some(last) = entries.last() else {
                    return Ok(false);
                };
                let events = entries
                    .iter()
                    .map(|r| {
                        serde_json::from_str::<JobEvent>(&r.text("event")?)
                            .map_err(|e| StoreError::Corrupt(format!("journal of job {job}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let (state, error) = replay_state(&events);
                write_view(
                    &mut tx,
                    job,
                    last.int("seq")?,
                    last.int("pos")?,
                    &state,
                    error.as_deref(),
                    last.time("created_at")?,
                )
                .await?;
                write_costs(&mut tx, job, &state, 0).await?;
                Ok(true)
            })?;
            built += u64::from(done);
        }
        Ok(built)
    }
}

impl Db {
    pub async fn record_activity(
        &self,
        step: &ActivityStep<'_>,
        events: &[(DateTime<Utc>, AgentEvent)],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            for (at, event) in events {
                q(
                    "INSERT INTO activity (job_id, stage, round, angle, at, event) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
                )
                .bind(step.job)
                .bind(step.stage)
                .bind(step.round)
                .bind(step.angle)
                .bind(*at)
                .bind(model::to_json(event)?)
                .execute(&mut tx)
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
        let rows = q(
            "SELECT id, stage, round, angle, at, event::text AS event FROM activity
             WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(job)
        .bind(after)
        .bind(limit)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                let event = r.text("event")?;
                Ok(ActivityRow {
                    id: r.int("id")?,
                    job,
                    stage: r.text("stage")?,
                    round: r.int("round")?.try_into().unwrap_or(0),
                    angle: r.opt_text("angle")?,
                    at: r.time("at")?,
                    event: serde_json::from_str(&event)
                        .map_err(|e| StoreError::Corrupt(format!("activity of job {job}: {e}")))?,
                })
            })
            .collect()
    }

    pub async fn prune_activity(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        q("DELETE FROM activity WHERE at < $1")
            .bind(before)
            .execute(self.writer())
            .await
    }
}
