//! The store's event stream, job views and agents' live activity.

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};

use crate::queue::micros;
use crate::{
    ActivityRow, ActivityStep, EventRow, JobCard, JobView, StageSpend, Store, StoreError,
    TicketSpend, events,
};

impl Store {
    /// Up to `limit` journal entries after stream position `after` (0: from the start), in
    /// order. Resuming from the last `pos` read misses nothing: see [`events`](crate::EventRow).
    /// An entry this build cannot read comes with `event: None` and why, in its place: one
    /// entry written by a newer version (several versions share a store during an upgrade)
    /// must not stop every follower at it.
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        self.db.events_since(after, limit.max(1)).await
    }

    /// The position of the newest entry (0 when there is none): where a follower that wants only
    /// what happens from now on starts.
    pub async fn last_event_pos(&self) -> Result<i64, StoreError> {
        self.db.last_event_pos().await
    }

    /// Record what an agent did during a step (a batch, in one transaction), for live pages.
    /// Long texts are clipped; this is a view, the journal is the record.
    pub async fn record_activity(
        &self,
        step: &ActivityStep<'_>,
        events: &[(DateTime<Utc>, codemill_core::agent::AgentEvent)],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events: Vec<_> = events
            .iter()
            .map(|(at, e)| (micros(*at), events::clipped(e)))
            .collect();
        self.db.record_activity(step, &events).await
    }

    /// A job's agent activity after `after` (0: from the start), oldest first.
    pub async fn activity_since(
        &self,
        job: JobId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        self.db.activity_since(job, after, limit.max(1)).await
    }

    /// Forget activity recorded before `before`; returns how much.
    pub async fn prune_activity(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.db.prune_activity(micros(before)).await
    }

    /// The job's state after its latest entry, as written with that entry.
    pub async fn job_view(&self, job: JobId) -> Result<Option<JobView>, StoreError> {
        self.db.job_view(job).await
    }

    /// Job views, oldest job first, optionally of one status (`JobState::status()`) and ticket.
    pub async fn job_views(
        &self,
        status: Option<&str>,
        ticket: Option<&TicketKey>,
    ) -> Result<Vec<JobView>, StoreError> {
        let ticket = ticket.map(|t| t.to_string());
        self.db.job_views(status, ticket.as_deref()).await
    }

    /// Every ticket's latest job as the board shows it, in no particular order.
    pub async fn job_cards(&self) -> Result<Vec<JobCard>, StoreError> {
        self.db.job_cards().await
    }

    /// Each ticket's latest job's view, state included, in no particular order.
    pub async fn latest_views(&self) -> Result<Vec<JobView>, StoreError> {
        self.db.latest_views().await
    }

    /// What every job's agent steps cost, summed per stage, by stage name.
    pub async fn stage_spend(&self) -> Result<Vec<StageSpend>, StoreError> {
        self.db.stage_spend().await
    }

    /// The `limit` tickets whose jobs cost the most, costliest first, with their titles.
    pub async fn top_ticket_spend(&self, limit: u32) -> Result<Vec<TicketSpend>, StoreError> {
        self.db.top_ticket_spend(limit).await
    }

    /// The view of the ticket's latest job.
    pub async fn latest_view(&self, ticket: &TicketKey) -> Result<Option<JobView>, StoreError> {
        self.db.latest_view(&ticket.to_string()).await
    }
}
