//! Metering rows: every model request the gateway forwarded or refused, and the spend sums that
//! budgets are checked against. The day of a call is its UTC date, kept as text so both
//! backends group by the same value.

use chrono::{DateTime, Utc};
use codemill_core::cost::Usage;
use serde::Serialize;

/// One model request as the gateway saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCall {
    pub at: DateTime<Utc>,
    pub job: String,
    pub ticket: String,
    pub project: String,
    pub stage: String,
    pub round: u32,
    pub angle: Option<String>,
    /// The provider API (`anthropic`, `openai-chat`, `openai-responses`, `gemini`).
    pub api: String,
    pub model: String,
    pub usage: Usage,
    pub cost_usd: f64,
    pub latency_ms: u64,
    /// The HTTP status the agent got.
    pub status: u16,
    pub streamed: bool,
    /// The budget that refused the request (it was not forwarded), e.g. `job_usd`.
    pub refused: Option<String>,
}

impl ModelCall {
    /// The UTC date budgets count this call on.
    pub fn day(&self) -> String {
        day_of(self.at)
    }
}

/// The UTC date of `t`, `YYYY-MM-DD`.
pub fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// What the budgets of one request are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    pub job_usd: f64,
    pub job_tokens: u64,
    /// Every job of the ticket.
    pub ticket_usd: f64,
    /// The project on the given day.
    pub project_day_usd: f64,
    /// Everything on the given day.
    pub day_usd: f64,
}

/// Spend of one project on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectSpend {
    pub project: String,
    pub usd: f64,
    pub tokens: u64,
    pub calls: u64,
}

/// What a spend query is about.
#[derive(Debug, Clone, Copy)]
pub struct SpendScope<'a> {
    pub job: &'a str,
    pub ticket: &'a str,
    pub project: &'a str,
    pub day: &'a str,
}

/// The sums of a spend query, as one row; written once with `$N` placeholders (SQLite gets
/// them as `?N`, see [`sqlite_placeholders`]).
pub(crate) const SPEND_SELECT: &str = "SELECT \
    COALESCE(SUM(CASE WHEN job_id = $1 THEN cost_usd ELSE 0.0 END), 0.0) AS job_usd, \
    CAST(COALESCE(SUM(CASE WHEN job_id = $1 THEN input_tokens + output_tokens + cache_read_tokens + cache_write_tokens ELSE 0 END), 0) AS BIGINT) AS job_tokens, \
    COALESCE(SUM(CASE WHEN ticket = $2 THEN cost_usd ELSE 0.0 END), 0.0) AS ticket_usd, \
    COALESCE(SUM(CASE WHEN project = $3 AND day = $4 THEN cost_usd ELSE 0.0 END), 0.0) AS project_day_usd, \
    COALESCE(SUM(CASE WHEN day = $4 THEN cost_usd ELSE 0.0 END), 0.0) AS day_usd \
    FROM model_calls WHERE job_id = $1 OR ticket = $2 OR day = $4";

pub(crate) const PROJECT_SPEND_SELECT: &str = "SELECT project, \
    COALESCE(SUM(cost_usd), 0.0) AS usd, \
    CAST(COALESCE(SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens), 0) AS BIGINT) AS tokens, \
    COUNT(*) AS calls \
    FROM model_calls WHERE day = $1 GROUP BY project ORDER BY project";

pub(crate) const INSERT: &str = "INSERT INTO model_calls (at, day, job_id, ticket, project, \
    stage, round, angle, api, model, input_tokens, output_tokens, cache_read_tokens, \
    cache_write_tokens, cost_usd, latency_ms, status, streamed, refused) VALUES ($1, $2, $3, \
    $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

pub(crate) const JOB_CALLS_SELECT: &str = "SELECT * FROM model_calls WHERE job_id = $1 ORDER BY id";

/// `$N` placeholders as SQLite's numbered `?N`.
pub(crate) fn sqlite_placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Reads a spend row of either backend.
pub(crate) fn spend_from_row<R: sqlx::Row>(row: &R) -> Result<Spend, crate::StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    f64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Spend {
        job_usd: row.try_get("job_usd")?,
        job_tokens: row.try_get::<i64, _>("job_tokens")?.max(0) as u64,
        ticket_usd: row.try_get("ticket_usd")?,
        project_day_usd: row.try_get("project_day_usd")?,
        day_usd: row.try_get("day_usd")?,
    })
}

pub(crate) fn project_spend_from_row<R: sqlx::Row>(
    row: &R,
) -> Result<ProjectSpend, crate::StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    f64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ProjectSpend {
        project: row.try_get("project")?,
        usd: row.try_get("usd")?,
        tokens: row.try_get::<i64, _>("tokens")?.max(0) as u64,
        calls: row.try_get::<i64, _>("calls")?.max(0) as u64,
    })
}

/// A `model_calls` row of either backend; `at` is decoded by the caller (its type differs).
pub(crate) fn call_from_row<R: sqlx::Row>(
    row: &R,
    at: DateTime<Utc>,
) -> Result<ModelCall, crate::StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    f64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let count = |column: &str| -> Result<u64, crate::StoreError> {
        Ok(row.try_get::<i64, _>(column)?.max(0) as u64)
    };
    Ok(ModelCall {
        at,
        job: row.try_get("job_id")?,
        ticket: row.try_get("ticket")?,
        project: row.try_get("project")?,
        stage: row.try_get("stage")?,
        round: count("round")? as u32,
        angle: row.try_get("angle")?,
        api: row.try_get("api")?,
        model: row.try_get("model")?,
        usage: Usage {
            input_tokens: count("input_tokens")?,
            output_tokens: count("output_tokens")?,
            cache_read_tokens: count("cache_read_tokens")?,
            cache_write_tokens: count("cache_write_tokens")?,
        },
        cost_usd: row.try_get("cost_usd")?,
        latency_ms: count("latency_ms")?,
        status: count("status")? as u16,
        streamed: row.try_get("streamed")?,
        refused: row.try_get("refused")?,
    })
}
