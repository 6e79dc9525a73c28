//! The merge queue: entries queued once per ticket, listed in order, settled once; and the lease
//! that lets one process at a time work a (project, target) queue.

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::merge_queue::{MergeEntry, MergeState, NewMergeEntry};
use crate::sql::{Db, Row, q};

impl Db {
    /// Queue `new`, or return the ticket's entry that is already queued (`false`).
    pub async fn enqueue_merge(
        &self,
        new: &NewMergeEntry<'_>,
        now: DateTime<Utc>,
    ) -> Result<(MergeEntry, bool), StoreError> {
        let inserted = q(
            "INSERT INTO merge_queue (project, target, ticket_key, branch, commit_sha, job_id,
                 state, enqueued_by, enqueued_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $8)
             ON CONFLICT (project, ticket_key) WHERE state = 'queued' DO NOTHING
             RETURNING *",
        )
        .bind(new.project)
        .bind(new.target)
        .bind(new.ticket)
        .bind(new.branch)
        .bind(new.commit)
        .bind(new.job)
        .bind(new.by)
        .bind(now)
        .fetch_optional(self.writer())
        .await?;
        if let Some(row) = inserted {
            return Ok((entry_from_row(&row)?, true));
        }
        let row = q("SELECT * FROM merge_queue
                     WHERE project = $1 AND ticket_key = $2 AND state = 'queued'")
        .bind(new.project)
        .bind(new.ticket)
        .fetch_optional(self.writer())
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("merge entry of {} vanished", new.ticket)))?;
        Ok((entry_from_row(&row)?, false))
    }

    /// The queued entries of a project's target branch, first queued first.
    pub async fn merge_queue(
        &self,
        project: &str,
        target: &str,
    ) -> Result<Vec<MergeEntry>, StoreError> {
        let rows = q("SELECT * FROM merge_queue
                      WHERE project = $1 AND target = $2 AND state = 'queued' ORDER BY id")
        .bind(project)
        .bind(target)
        .fetch_all(self.writer())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Every entry of a project (or of all), queued or settled, in order.
    pub async fn merge_entries(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<MergeEntry>, StoreError> {
        let rows =
            q("SELECT * FROM merge_queue WHERE ($1::text IS NULL OR project = $1) ORDER BY id")
                .bind(project)
                .fetch_all(self.read())
                .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The (project, target) queues that have queued entries.
    pub async fn merge_queues_waiting(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = q("SELECT DISTINCT project, target FROM merge_queue
                      WHERE state = 'queued' ORDER BY project, target")
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| Ok((r.text("project")?, r.text("target")?)))
            .collect()
    }

    pub async fn merge_entry(&self, id: i64) -> Result<Option<MergeEntry>, StoreError> {
        let row = q("SELECT * FROM merge_queue WHERE id = $1")
            .bind(id)
            .fetch_optional(self.writer())
            .await?;
        row.map(|r| entry_from_row(&r)).transpose()
    }

    /// Settle a queued entry as merged or ejected; `false` when it was settled before.
    pub async fn settle_merge(
        &self,
        id: i64,
        state: MergeState,
        reason: Option<&str>,
        merged_as: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = q(
            "UPDATE merge_queue SET state = $1, reason = $2, merged_as = $3, updated_at = $4
                   WHERE id = $5 AND state = 'queued'",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(merged_as)
        .bind(now)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(n == 1)
    }

    /// Take or renew the lease on working a queue: granted when nobody holds it, it expired, or
    /// `owner` holds it already.
    pub async fn claim_merge_run(
        &self,
        project: &str,
        target: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = q(
            "INSERT INTO merge_runs (project, target, owner, expires_at) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (project, target) DO UPDATE
                   SET owner = excluded.owner, expires_at = excluded.expires_at
                   WHERE merge_runs.owner = excluded.owner OR merge_runs.expires_at <= $5",
        )
        .bind(project)
        .bind(target)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(n == 1)
    }

    /// Who holds the lease on a queue now, with its expiry.
    pub async fn merge_run_holder(
        &self,
        project: &str,
        target: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let row = q("SELECT owner, expires_at FROM merge_runs WHERE project = $1 AND target = $2")
            .bind(project)
            .bind(target)
            .fetch_optional(self.writer())
            .await?;
        row.map(|r| Ok((r.text("owner")?, r.time("expires_at")?)))
            .transpose()
    }

    /// Give the lease up (only `owner`'s).
    pub async fn release_merge_run(
        &self,
        project: &str,
        target: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        q("DELETE FROM merge_runs WHERE project = $1 AND target = $2 AND owner = $3")
            .bind(project)
            .bind(target)
            .bind(owner)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}

fn entry_from_row(r: &Row) -> Result<MergeEntry, StoreError> {
    let state = r.text("state")?;
    Ok(MergeEntry {
        id: r.int("id")?,
        project: r.text("project")?,
        target: r.text("target")?,
        ticket: r.text("ticket_key")?,
        branch: r.text("branch")?,
        commit: r.text("commit_sha")?,
        job: r.job("job_id")?,
        state: MergeState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("merge state {state:?}")))?,
        reason: r.opt_text("reason")?,
        merged_as: r.opt_text("merged_as")?,
        enqueued_by: r.text("enqueued_by")?,
        enqueued_at: r.time("enqueued_at")?,
        updated_at: r.time("updated_at")?,
    })
}
