//! Metering rows: every model request the gateway forwarded or refused, and the spend sums
//! budgets are checked against.

use codemill_core::cost::Usage;

use crate::StoreError;
use crate::metering::{ModelCall, ProjectSpend, Spend, SpendScope};
use crate::sql::{Db, Row, q};

/// The sums of a spend query, as one row.
const SPEND_SELECT: &str = "SELECT \
    COALESCE(SUM(CASE WHEN job_id = $1 THEN cost_usd ELSE 0.0 END), 0.0) AS job_usd, \
    CAST(COALESCE(SUM(CASE WHEN job_id = $1 THEN input_tokens + output_tokens + cache_read_tokens + cache_write_tokens ELSE 0 END), 0) AS BIGINT) AS job_tokens, \
    COALESCE(SUM(CASE WHEN ticket = $2 THEN cost_usd ELSE 0.0 END), 0.0) AS ticket_usd, \
    COALESCE(SUM(CASE WHEN project = $3 AND day = $4 THEN cost_usd ELSE 0.0 END), 0.0) AS project_day_usd, \
    COALESCE(SUM(CASE WHEN day = $4 THEN cost_usd ELSE 0.0 END), 0.0) AS day_usd \
    FROM model_calls WHERE job_id = $1 OR ticket = $2 OR day = $4";

const PROJECT_SPEND_SELECT: &str = "SELECT project, \
    COALESCE(SUM(cost_usd), 0.0) AS usd, \
    CAST(COALESCE(SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens), 0) AS BIGINT) AS tokens, \
    COUNT(*) AS calls \
    FROM model_calls WHERE day = $1 GROUP BY project ORDER BY project";

const INSERT: &str = "INSERT INTO model_calls (at, day, job_id, ticket, project, \
    stage, round, angle, api, model, input_tokens, output_tokens, cache_read_tokens, \
    cache_write_tokens, cost_usd, latency_ms, status, streamed, refused) VALUES ($1, $2, $3, \
    $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

fn count(row: &Row, column: &str) -> Result<u64, StoreError> {
    Ok(row.int(column)?.max(0) as u64)
}

fn call(row: &Row) -> Result<ModelCall, StoreError> {
    Ok(ModelCall {
        at: row.time("at")?,
        job: row.text("job_id")?,
        ticket: row.text("ticket")?,
        project: row.text("project")?,
        stage: row.text("stage")?,
        round: count(row, "round")? as u32,
        angle: row.opt_text("angle")?,
        api: row.text("api")?,
        model: row.text("model")?,
        usage: Usage {
            input_tokens: count(row, "input_tokens")?,
            output_tokens: count(row, "output_tokens")?,
            cache_read_tokens: count(row, "cache_read_tokens")?,
            cache_write_tokens: count(row, "cache_write_tokens")?,
        },
        cost_usd: row.real("cost_usd")?,
        latency_ms: count(row, "latency_ms")?,
        status: count(row, "status")? as u16,
        streamed: row.boolean("streamed")?,
        refused: row.opt_text("refused")?,
    })
}

impl Db {
    pub async fn record_model_call(&self, call: &ModelCall) -> Result<(), StoreError> {
        q(INSERT)
            .bind(crate::queue::micros(call.at))
            .bind(call.day())
            .bind(&call.job)
            .bind(&call.ticket)
            .bind(&call.project)
            .bind(&call.stage)
            .bind(call.round)
            .bind(call.angle.clone())
            .bind(&call.api)
            .bind(&call.model)
            .bind(call.usage.input_tokens as i64)
            .bind(call.usage.output_tokens as i64)
            .bind(call.usage.cache_read_tokens as i64)
            .bind(call.usage.cache_write_tokens as i64)
            .bind(call.cost_usd)
            .bind(call.latency_ms as i64)
            .bind(i64::from(call.status))
            .bind(call.streamed)
            .bind(call.refused.clone())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn spend(&self, scope: SpendScope<'_>) -> Result<Spend, StoreError> {
        let row = q(SPEND_SELECT)
            .bind(scope.job)
            .bind(scope.ticket)
            .bind(scope.project)
            .bind(scope.day)
            .fetch_one(self.read())
            .await?;
        Ok(Spend {
            job_usd: row.real("job_usd")?,
            job_tokens: count(&row, "job_tokens")?,
            ticket_usd: row.real("ticket_usd")?,
            project_day_usd: row.real("project_day_usd")?,
            day_usd: row.real("day_usd")?,
        })
    }

    pub async fn spend_by_project(&self, day: &str) -> Result<Vec<ProjectSpend>, StoreError> {
        let rows = q(PROJECT_SPEND_SELECT)
            .bind(day)
            .fetch_all(self.read())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ProjectSpend {
                    project: row.text("project")?,
                    usd: row.real("usd")?,
                    tokens: count(row, "tokens")?,
                    calls: count(row, "calls")?,
                })
            })
            .collect()
    }

    pub async fn model_calls(&self, job: &str) -> Result<Vec<ModelCall>, StoreError> {
        q("SELECT * FROM model_calls WHERE job_id = $1 ORDER BY id")
            .bind(job)
            .fetch_all(self.read())
            .await?
            .iter()
            .map(call)
            .collect()
    }
}
