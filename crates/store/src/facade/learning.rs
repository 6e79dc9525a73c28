//! The store's learning records: outcomes of codemill's work, guidance proposals and their
//! decisions, and learning runs.

use chrono::{DateTime, Utc};

use crate::queue::micros;
use crate::{GuidanceRow, GuidanceState, NewWorkOutcome, Store, StoreError, WorkOutcome};

impl Store {
    /// Record how a job's work ended; once per job and kind (`false` when known already).
    pub async fn record_outcome(
        &self,
        new: &NewWorkOutcome<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db.record_outcome(new, micros(now)).await
    }

    /// A project's outcomes since `since`, oldest first.
    pub async fn outcomes(
        &self,
        project: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<WorkOutcome>, StoreError> {
        self.db.outcomes(project, micros(since)).await
    }

    /// Record a proposal, waiting for a person.
    pub async fn add_guidance(
        &self,
        project: &str,
        proposal: &str,
        summary: &str,
        diff: &str,
        now: DateTime<Utc>,
    ) -> Result<GuidanceRow, StoreError> {
        self.db
            .add_guidance(project, proposal, summary, diff, micros(now))
            .await
    }

    /// Proposals of one project or all, newest first.
    pub async fn guidance(&self, project: Option<&str>) -> Result<Vec<GuidanceRow>, StoreError> {
        self.db.guidance(project).await
    }

    pub async fn guidance_row(&self, id: i64) -> Result<Option<GuidanceRow>, StoreError> {
        self.db.guidance_row(id).await
    }

    /// Move a proposal between states once (`false`: it is not in `from` any more).
    pub async fn move_guidance(
        &self,
        id: i64,
        from: GuidanceState,
        to: GuidanceState,
        by: Option<&str>,
        result: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .move_guidance(id, from, to, by, result, micros(now))
            .await
    }

    /// Approved proposals waiting for a worker to apply them.
    pub async fn approved_guidance(&self) -> Result<Vec<GuidanceRow>, StoreError> {
        self.db.approved_guidance().await
    }

    /// Start a project's learning run for a period; `false` when another process did.
    pub async fn start_learn_run(
        &self,
        project: &str,
        period: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db.start_learn_run(project, period, micros(now)).await
    }

    /// Give back a learning run that had too little to learn from.
    pub async fn forget_learn_run(&self, project: &str, period: &str) -> Result<(), StoreError> {
        self.db.forget_learn_run(project, period).await
    }
}
