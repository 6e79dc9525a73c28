//! The store's metering: one row per model request and the spend sums budgets read.

use crate::{ModelCall, ProjectSpend, Spend, SpendScope, Store, StoreError};

impl Store {
    /// Record one model request of the gateway.
    pub async fn record_model_call(&self, call: &ModelCall) -> Result<(), StoreError> {
        self.db.record_model_call(call).await
    }

    /// Spend of a job, its ticket, its project's day and the whole day, for budget checks.
    pub async fn spend(&self, scope: SpendScope<'_>) -> Result<Spend, StoreError> {
        self.db.spend(scope).await
    }

    /// Spend per project on one UTC day (`YYYY-MM-DD`).
    pub async fn spend_by_project(&self, day: &str) -> Result<Vec<ProjectSpend>, StoreError> {
        self.db.spend_by_project(day).await
    }

    /// The model requests of one job, oldest first.
    pub async fn model_calls(&self, job: &str) -> Result<Vec<ModelCall>, StoreError> {
        self.db.model_calls(job).await
    }
}
