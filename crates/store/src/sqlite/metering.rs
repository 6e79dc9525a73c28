//! SQLite half of the metering rows (SQL shared in `crate::metering`).

use super::{Sqlite, time_at, ts};
use crate::StoreError;
use crate::metering::{
    self, INSERT, JOB_CALLS_SELECT, ModelCall, PROJECT_SPEND_SELECT, ProjectSpend, SPEND_SELECT,
    Spend, SpendScope, sqlite_placeholders,
};

impl Sqlite {
    pub async fn record_model_call(&self, call: &ModelCall) -> Result<(), StoreError> {
        let sql = sqlite_placeholders(INSERT);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ts(call.at))
            .bind(call.day())
            .bind(&call.job)
            .bind(&call.ticket)
            .bind(&call.project)
            .bind(&call.stage)
            .bind(i64::from(call.round))
            .bind(&call.angle)
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
            .bind(&call.refused)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn spend(&self, scope: SpendScope<'_>) -> Result<Spend, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(sqlite_placeholders(SPEND_SELECT)))
            .bind(scope.job)
            .bind(scope.ticket)
            .bind(scope.project)
            .bind(scope.day)
            .fetch_one(&self.pool)
            .await?;
        metering::spend_from_row(&row)
    }

    pub async fn spend_by_project(&self, day: &str) -> Result<Vec<ProjectSpend>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sqlite_placeholders(
            PROJECT_SPEND_SELECT,
        )))
        .bind(day)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(metering::project_spend_from_row).collect()
    }

    pub async fn model_calls(&self, job: &str) -> Result<Vec<ModelCall>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sqlite_placeholders(JOB_CALLS_SELECT)))
            .bind(job)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| metering::call_from_row(r, time_at(r, "at")?))
            .collect()
    }
}
