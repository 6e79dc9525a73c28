//! The store's merge queue: entries per project and target branch, and the lease on a queue.

use chrono::{DateTime, Utc};

use crate::queue::micros;
use crate::{MergeEntry, MergeState, NewMergeEntry, Store, StoreError};

impl Store {
    /// Queue an approved pull request to land on its target branch, or return the ticket's
    /// entry already queued (`false`): a ticket is queued at most once at a time.
    pub async fn enqueue_merge(
        &self,
        new: &NewMergeEntry<'_>,
        now: DateTime<Utc>,
    ) -> Result<(MergeEntry, bool), StoreError> {
        self.db.enqueue_merge(new, micros(now)).await
    }

    /// The queued entries of a project's target branch, in the order they land.
    pub async fn merge_queue(
        &self,
        project: &str,
        target: &str,
    ) -> Result<Vec<MergeEntry>, StoreError> {
        self.db.merge_queue(project, target).await
    }

    /// Every entry, queued or settled, of one project or all, in the order queued.
    pub async fn merge_entries(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<MergeEntry>, StoreError> {
        self.db.merge_entries(project).await
    }

    /// The (project, target) queues that have queued entries; what workers poll.
    pub async fn merge_queues_waiting(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.merge_queues_waiting().await
    }

    pub async fn merge_entry(&self, id: i64) -> Result<Option<MergeEntry>, StoreError> {
        self.db.merge_entry(id).await
    }

    /// Settle a queued entry (merged, with the commit that contains it; or ejected, with the
    /// reason). `false` when it was settled before, so settling twice changes nothing.
    pub async fn settle_merge(
        &self,
        id: i64,
        state: MergeState,
        reason: Option<&str>,
        merged_as: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .settle_merge(id, state, reason, merged_as, micros(now))
            .await
    }

    /// Take or renew the lease on working the queue of (`project`, `target`) until `until`:
    /// `true` when nobody else holds a live one.
    pub async fn claim_merge_run(
        &self,
        project: &str,
        target: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .claim_merge_run(project, target, owner, micros(until), micros(now))
            .await
    }

    /// Who holds the lease on working a queue, and until when.
    pub async fn merge_run_holder(
        &self,
        project: &str,
        target: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        self.db.merge_run_holder(project, target).await
    }

    pub async fn release_merge_run(
        &self,
        project: &str,
        target: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.db.release_merge_run(project, target, owner).await
    }
}
