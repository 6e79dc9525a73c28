//! Recording webhook deliveries, with group commit on SQLite.
//!
//! A delivery is answered only after the transaction holding it committed, so a 202 still
//! means the delivery is in the database. On SQLite each commit writes every page the
//! transaction touched (inbox, jobs, journal, stream, view, queue and their indexes) to the
//! WAL, and this process's writers take turns on one connection; deliveries arriving while a
//! commit is under way therefore wait, and are then written together in one transaction, so
//! those pages are written once per batch instead of once per delivery. PostgreSQL commits
//! from many connections at once and records each delivery in its own transaction.
//!
//! The batch runs in its own task, so a caller that goes away (its client hung up) cannot
//! abandon the others' deliveries. If any delivery of a batch fails, the batch is rolled back
//! and each of its deliveries is recorded alone, so one bad delivery fails only itself.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;
use tokio::sync::oneshot;

use crate::queue::{Delivery, NewJob, Recorded};
use crate::sql::{Db, Tx};
use crate::tables::inbox::accept_in;
use crate::tables::queue::record_in;
use crate::{Finish, StoreError};

/// Deliveries at most in one transaction: bounds how long one commit holds the writer.
const MAX_BATCH: usize = 256;

/// Deliveries waiting for the next group commit.
#[derive(Debug, Default)]
pub(crate) struct Ingest {
    waiting: Mutex<Vec<Pending>>,
    /// Held by the caller whose turn it is to commit what is waiting.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Pending {
    op: Op,
    done: oneshot::Sender<Result<Recorded, StoreError>>,
}

/// A delivery owned, so another task can write it.
#[derive(Debug)]
struct Op {
    provider: String,
    delivery_id: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    job: Option<OwnedJob>,
    /// An outside delivery, `pending` until the inbox processor reads it.
    outside: bool,
    now: DateTime<Utc>,
}

#[derive(Debug)]
struct OwnedJob {
    id: JobId,
    ticket: TicketKey,
    created: JobEvent,
    max_attempts: u32,
}

impl Op {
    fn new(
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        outside: bool,
        now: DateTime<Utc>,
    ) -> Op {
        Op {
            provider: delivery.provider.to_owned(),
            delivery_id: delivery.delivery_id.to_owned(),
            headers: delivery
                .headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: delivery.body.to_vec(),
            job: job.map(|j| OwnedJob {
                id: j.id,
                ticket: j.ticket.clone(),
                created: j.created.clone(),
                max_attempts: j.max_attempts,
            }),
            outside,
            now,
        }
    }

    async fn write(&self, tx: &mut Tx) -> Result<Recorded, StoreError> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let delivery = Delivery {
            provider: &self.provider,
            delivery_id: &self.delivery_id,
            headers: &headers,
            body: &self.body,
        };
        if self.outside {
            return accept_in(tx, &delivery, self.now).await;
        }
        let job = self.job.as_ref().map(|j| NewJob {
            id: j.id,
            ticket: &j.ticket,
            created: &j.created,
            max_attempts: j.max_attempts,
        });
        record_in(tx, &delivery, job.as_ref(), self.now).await
    }
}

impl Db {
    /// Record a local delivery and, when asked, start (or join) the ticket's job.
    pub async fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        self.ingest(delivery, job, false, now).await
    }

    /// Store an outside delivery, `pending` until the inbox processor claims it.
    pub async fn accept_delivery(
        &self,
        delivery: &Delivery<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        self.ingest(delivery, None, true, now).await
    }

    async fn ingest(
        &self,
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        outside: bool,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let Db::Sqlite { ingest, .. } = self else {
            return alone(self, &Op::new(delivery, job, outside, now)).await;
        };
        let (done, result) = oneshot::channel();
        lock(&ingest.waiting).push(Pending {
            op: Op::new(delivery, job, outside, now),
            done,
        });
        take_turns(ingest, self, result).await
    }
}

/// Take turns until this delivery's batch was committed.
async fn take_turns(
    ingest: &Ingest,
    db: &Db,
    mut result: oneshot::Receiver<Result<Recorded, StoreError>>,
) -> Result<Recorded, StoreError> {
    loop {
        let turn = ingest.turn.lock().await;
        // An earlier turn may have written this delivery already.
        if let Ok(recorded) = result.try_recv() {
            return recorded;
        }
        let batch: Vec<Pending> = {
            let mut waiting = lock(&ingest.waiting);
            let n = waiting.len().min(MAX_BATCH);
            waiting.drain(..n).collect()
        };
        let db = db.clone();
        // Awaiting the task (not running it here) keeps the turn until the batch is committed.
        let _ = tokio::spawn(async move { commit(&db, batch).await }).await;
        drop(turn);
        match result.try_recv() {
            Ok(recorded) => return recorded,
            // Not in this batch (it was full): wait for a later turn.
            Err(oneshot::error::TryRecvError::Empty) => continue,
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(StoreError::Corrupt(
                    "the batch writing this delivery ended without an answer".into(),
                ));
            }
        }
    }
}

fn lock(waiting: &Mutex<Vec<Pending>>) -> std::sync::MutexGuard<'_, Vec<Pending>> {
    // A panic while holding this lock leaves the list intact (push and drain only).
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One delivery in its own transaction.
async fn alone(db: &Db, op: &Op) -> Result<Recorded, StoreError> {
    let mut tx = db.write().await?;
    let result = op.write(&mut tx).await;
    tx.finish(result).await
}

/// Write a batch in one transaction and answer each delivery; on any failure, write each alone.
async fn commit(db: &Db, batch: Vec<Pending>) {
    if batch.is_empty() {
        return;
    }
    if batch.len() > 1
        && let Ok(mut tx) = db.write().await
    {
        let mut results = Vec::with_capacity(batch.len());
        for pending in &batch {
            match pending.op.write(&mut tx).await {
                Ok(recorded) => results.push(recorded),
                Err(_) => break,
            }
        }
        if results.len() == batch.len() {
            if tx.commit().await.is_ok() {
                for (pending, recorded) in batch.into_iter().zip(results) {
                    let _ = pending.done.send(Ok(recorded));
                }
                return;
            }
        } else if let Err(e) = tx.rollback().await {
            tracing::warn!(error = %e, "rolling back a batch of deliveries failed");
        }
    }
    for pending in batch {
        let recorded = alone(db, &pending.op).await;
        let _ = pending.done.send(recorded);
    }
}
