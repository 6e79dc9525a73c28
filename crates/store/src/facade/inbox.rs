//! The store's webhook inbox: deliveries recorded, claimed, settled and pruned.

use chrono::{DateTime, Utc};

use crate::queue::micros;
use crate::{
    Delivery, InboxPruned, InboxRow, InboxState, NewJob, Recorded, Settled, Store, StoreError,
    queue,
};

impl Store {
    /// How this process's batches of webhook deliveries went since the store was opened.
    pub fn ingest_counts(&self) -> crate::IngestCounts {
        self.db.ingest_counts()
    }

    /// Record a webhook delivery once per (provider, delivery id), and with it, in the same
    /// transaction, enqueue `job` if given. A repeated delivery writes nothing: `Duplicate`.
    pub async fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        if let Some(job) = job {
            queue::check_max_attempts(job)?;
        }
        self.db
            .record_delivery(delivery, job, micros(now), false)
            .await
    }

    /// [`Store::record_delivery`] for a job of a local tracker ticket, checking in the same
    /// transaction that the ticket exists: `UnknownTicket` (nothing written) when it does not.
    pub async fn record_ticket_delivery(
        &self,
        delivery: &Delivery<'_>,
        job: &NewJob<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        queue::check_max_attempts(job)?;
        self.db
            .record_delivery(delivery, Some(job), micros(now), true)
            .await
    }

    pub async fn delivery(
        &self,
        provider: &str,
        delivery_id: &str,
    ) -> Result<Option<InboxRow>, StoreError> {
        self.db.delivery(provider, delivery_id).await
    }

    /// Store a delivery to be processed later (by [`Store::claim_deliveries`]), once per
    /// (provider, delivery id): a repeated delivery writes nothing and is a `Duplicate`. The
    /// answer can go out as soon as this returns: the delivery is committed.
    pub async fn accept_delivery(
        &self,
        delivery: &Delivery<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        self.db.accept_delivery(delivery, micros(now)).await
    }

    /// Take up to `limit` pending deliveries that are due at `now`, oldest first, and hold
    /// them until `hold_until`: another node claims them only after that (so a node that dies
    /// while processing delays them, and loses nothing). Each claim counts as an attempt.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        self.db
            .claim_deliveries(micros(now), micros(hold_until), limit.max(1))
            .await
    }

    /// Record how processing a claimed delivery ended. Only a pending delivery changes.
    pub async fn settle_delivery(&self, id: i64, settled: &Settled) -> Result<(), StoreError> {
        let settled = match settled {
            Settled::Retry { at, error } => Settled::Retry {
                at: micros(*at),
                error: error.clone(),
            },
            other => other.clone(),
        };
        self.db.settle_delivery(id, &settled).await
    }

    /// The newest deliveries first, of one state or all, without their bodies and headers.
    pub async fn deliveries(
        &self,
        state: Option<InboxState>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        self.db.deliveries(state, limit.max(1)).await
    }

    /// Keep the inbox small. A delivery is processed once nothing can need its body: it is no
    /// longer pending, and it started no job or its job is no longer queued, leased or waiting.
    /// Processed deliveries received before `forget_before` (the end of the de-duplication
    /// window) are deleted; the other processed ones lose their body and headers but keep their
    /// row, so a redelivery of their id is still a `Duplicate`. Run it periodically on any node.
    pub async fn prune_deliveries(
        &self,
        forget_before: DateTime<Utc>,
    ) -> Result<InboxPruned, StoreError> {
        self.db.prune_deliveries(micros(forget_before)).await
    }
}
