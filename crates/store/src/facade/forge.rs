//! The store's local forge: PR records.

use chrono::Utc;

use crate::queue::micros;
use crate::{NewPr, PrRecord, Store, StoreError};

impl Store {
    pub async fn find_pr(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<Option<PrRecord>, StoreError> {
        self.db.find_pr(project, branch).await
    }

    /// Create the PR record of a branch, or update it to the new commit; one per (project, branch).
    /// Set the state of the PR record of `branch` (`merged` once the local forge merged it).
    pub async fn set_pr_state(
        &self,
        project: &str,
        branch: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        self.db
            .set_pr_state(project, branch, state, micros(Utc::now()))
            .await
    }

    /// Move a PR record's head to `commit` (a fix round pushed its branch); false when there is
    /// none.
    pub async fn set_pr_commit(
        &self,
        project: &str,
        branch: &str,
        commit: &str,
    ) -> Result<bool, StoreError> {
        self.db
            .set_pr_commit(project, branch, commit, micros(Utc::now()))
            .await
    }

    pub async fn upsert_pr(&self, pr: &NewPr<'_>) -> Result<PrRecord, StoreError> {
        self.db.upsert_pr(pr).await
    }

    pub async fn prs(&self) -> Result<Vec<PrRecord>, StoreError> {
        self.db.prs().await
    }
}
