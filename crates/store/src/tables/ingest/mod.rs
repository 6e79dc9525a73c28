//! Recording webhook deliveries, with group commit.
//!
//! A delivery is answered only after the transaction holding it committed, so a 202 still
//! means the delivery is in the database. Every delivery that starts a job writes the inbox,
//! job, journal, stream, view and queue rows; on SQLite each commit writes every page it
//! touched to the WAL, and on PostgreSQL each commit holds the event counter's row lock (the
//! stream's positions become visible in order) until its WAL flush. So this process's
//! deliveries take turns: those arriving while a commit is under way wait, and are then
//! written together in one transaction — one WAL write and one flush per batch instead of per
//! delivery.
//!
//! Inside a batch, deliveries are written without a round trip per table: on SQLite all of
//! them by one multi-row insert into a view whose trigger writes the rows `record_in` or
//! `accept_in` would ([`SQLITE_SETUP`]), wrapped with `BEGIN` and `COMMIT` into one statement
//! list, since each statement costs two hand-offs to SQLite's worker thread and a message per
//! result; on PostgreSQL deliveries many to a statement when they do not meet inside the batch,
//! else one each ([`postgres::PG_STATEMENT`] for a job-starting one).
//!
//! On SQLite the batches are written by a thread of its own ([`sqlite::writer_thread`]); on
//! PostgreSQL the waiting callers take turns. Either way the batch runs apart from its callers,
//! so a caller that goes away (its client hung up) cannot abandon the others' deliveries. If any delivery of a batch fails, the batch is rolled back
//! and each of its deliveries is recorded alone, so one bad delivery fails only itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;
use tokio::sync::{mpsc, oneshot};

mod postgres;
mod sqlite;

use postgres::commit_postgres;
pub(crate) use sqlite::SQLITE_SETUP;
use sqlite::{commit_sqlite, to_writer};

use crate::queue::{Delivery, NewJob, Recorded};
use crate::sql::{Arg, Db, Tx};
use crate::tables::inbox::accept_in;
use crate::tables::queue::record_in;
use crate::{Finish, StoreError};

/// Deliveries at most in one transaction: bounds how long one commit holds the writer.
const MAX_BATCH: usize = 256;

/// Values of each job-starting delivery (`$1`..`$16` in [`postgres::PG_STATEMENT`]).
const SCRIPT_ARGS: usize = 16;

/// Deliveries waiting for the next group commit.
#[derive(Debug, Default)]
pub(crate) struct Ingest {
    waiting: Mutex<Vec<Pending>>,
    /// Held by the caller whose turn it is to commit what is waiting.
    turn: tokio::sync::Mutex<()>,
    /// SQLite's writer thread, while it runs ([`sqlite::writer_thread`]).
    writer: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    counts: Counts,
}

/// How batches went, so a batch path that always falls back to one-by-one shows.
#[derive(Debug, Default)]
struct Counts {
    together: AtomicU64,
    deliveries: AtomicU64,
    retried: AtomicU64,
}

/// How this process's batches of deliveries went since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestCounts {
    /// Batches of more than one delivery committed in one transaction, and their deliveries.
    pub batches: u64,
    pub batched_deliveries: u64,
    /// Batches rolled back and written one delivery at a time.
    pub retried_batches: u64,
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
    /// The job's ticket must be in the local tracker.
    require_ticket: bool,
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
        require_ticket: bool,
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
            require_ticket,
            now,
        }
    }

    /// The kept headers as `Delivery` holds them.
    fn headers(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The values every delivery's row starts with: provider, delivery id, headers, body and
    /// when it arrived (`$1`..`$5` of [`postgres::PG_STATEMENT`]).
    fn delivery_args(&self) -> Result<Vec<Arg>, StoreError> {
        Ok(vec![
            self.provider.clone().into(),
            self.delivery_id.clone().into(),
            crate::model::to_json(&self.headers())?.into(),
            self.body.clone().into(),
            self.now.into(),
        ])
    }

    async fn write(&self, tx: &mut Tx) -> Result<Recorded, StoreError> {
        let headers = self.headers();
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
        record_in(tx, &delivery, job.as_ref(), self.now, self.require_ticket).await
    }
}

impl Op {
    /// The values of this delivery's script, when it is a local delivery that starts (or
    /// joins) a job; other deliveries are written statement by statement.
    fn script_args(&self) -> Result<Option<Vec<Arg>>, StoreError> {
        let Some(job) = self.job.as_ref().filter(|_| !self.outside) else {
            return Ok(None);
        };
        let (state, error) = crate::events::next_state(None, 0, &job.created);
        let (status, stage) = crate::events::columns(&state);
        let state = state.as_ref().map(crate::model::to_json).transpose()?;
        let mut args = self.delivery_args()?;
        args.extend([
            job.id.into(),
            job.ticket.to_string().into(),
            job.ticket.project().to_string().into(),
            job.created.name().into(),
            crate::model::to_json(&job.created)?.into(),
            status.into(),
            stage.into(),
            state.into(),
            error.into(),
            i64::from(job.max_attempts).into(),
            i64::from(self.require_ticket).into(),
        ]);
        debug_assert_eq!(args.len(), SCRIPT_ARGS);
        Ok(Some(args))
    }
}

/// A new delivery's outcome from the job it was linked to: the one it brought (created), or
/// the ticket's active job (existing); `created` says whether its job's rows were written.
fn outcome(op: &Op, linked: Option<JobId>, created: bool) -> Result<Recorded, StoreError> {
    let wanted = op.job.as_ref().map(|j| j.id);
    match linked {
        Some(job) if Some(job) == wanted && created => Ok(Recorded::Inserted {
            job: Some(crate::queue::Enqueued::Created(job)),
        }),
        Some(job) if Some(job) != wanted => Ok(Recorded::Inserted {
            job: Some(crate::queue::Enqueued::Existing(job)),
        }),
        _ => Err(StoreError::Corrupt(format!(
            "delivery {} was stored without its job",
            op.delivery_id
        ))),
    }
}

impl Db {
    fn batches(&self) -> &Ingest {
        match self {
            Db::Sqlite { ingest, .. } | Db::Postgres(_, ingest) => ingest,
        }
    }

    /// How this process's batches of deliveries went.
    pub fn ingest_counts(&self) -> IngestCounts {
        let counts = &self.batches().counts;
        IngestCounts {
            batches: counts.together.load(Ordering::Relaxed),
            batched_deliveries: counts.deliveries.load(Ordering::Relaxed),
            retried_batches: counts.retried.load(Ordering::Relaxed),
        }
    }

    /// Record a local delivery and, when asked, start (or join) the ticket's job.
    pub async fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        now: DateTime<Utc>,
        require_ticket: bool,
    ) -> Result<Recorded, StoreError> {
        self.ingest(delivery, job, false, require_ticket, now).await
    }

    /// Store an outside delivery, `pending` until the inbox processor claims it.
    pub async fn accept_delivery(
        &self,
        delivery: &Delivery<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        self.ingest(delivery, None, true, false, now).await
    }

    async fn ingest(
        &self,
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        outside: bool,
        require_ticket: bool,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let op = Op::new(delivery, job, outside, require_ticket, now);
        let ingest = self.batches();
        let (done, result) = oneshot::channel();
        let pending = Pending { op, done };
        if matches!(self, Db::Sqlite { .. }) {
            return match to_writer(ingest, self, pending) {
                None => answered(result.await),
                Some(pending) => {
                    // No thread could be started: take turns on this runtime instead.
                    lock(&ingest.waiting).push(pending);
                    take_turns(ingest, self, result).await
                }
            };
        }
        lock(&ingest.waiting).push(pending);
        take_turns(ingest, self, result).await
    }
}

/// Take turns until this delivery's batch was committed. A delivery written by someone else's
/// turn is answered by its own channel at once, without queueing for the turn behind the
/// others (the turn's lock is FIFO, so that queue would make each answer wait for the
/// hand-offs before it, and the next batch for all of them).
async fn take_turns(
    ingest: &Ingest,
    db: &Db,
    mut result: oneshot::Receiver<Result<Recorded, StoreError>>,
) -> Result<Recorded, StoreError> {
    loop {
        let turn = tokio::select! {
            biased;
            recorded = &mut result => return answered(recorded),
            turn = ingest.turn.lock() => turn,
        };
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
            Err(oneshot::error::TryRecvError::Closed) => return answered(Err(())),
        }
    }
}

/// A delivery's answer from its channel; a closed channel means its batch ended unanswered.
fn answered<E>(recorded: Result<Result<Recorded, StoreError>, E>) -> Result<Recorded, StoreError> {
    recorded.unwrap_or_else(|_| {
        Err(StoreError::Corrupt(
            "the batch writing this delivery ended without an answer".into(),
        ))
    })
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

/// How writing a batch together went.
pub(super) enum Tried {
    /// Committed, with each delivery's outcome in the batch's order.
    Committed(Vec<Recorded>),
    /// Committed, but the outcomes could not be read: writing again would make duplicates.
    Unread(String),
    /// Nothing was committed: each delivery may be written alone.
    RolledBack,
}

/// Write a batch in one transaction and answer each delivery; when nothing was committed,
/// write each alone.
async fn commit(db: &Db, batch: Vec<Pending>) {
    if batch.is_empty() {
        return;
    }
    let counts = &db.batches().counts;
    if batch.len() > 1 {
        let tried = match db {
            Db::Sqlite { .. } => commit_sqlite(db, &batch).await,
            Db::Postgres(..) => commit_postgres(db, &batch).await,
        };
        match tried {
            Tried::Committed(results) if results.len() == batch.len() => {
                counts.together.fetch_add(1, Ordering::Relaxed);
                counts
                    .deliveries
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (pending, recorded) in batch.into_iter().zip(results) {
                    let _ = pending.done.send(Ok(recorded));
                }
                return;
            }
            Tried::Committed(results) => {
                let error = format!(
                    "{} outcomes for a batch of {} deliveries",
                    results.len(),
                    batch.len()
                );
                unread(batch, &error);
                return;
            }
            Tried::Unread(error) => {
                unread(batch, &error);
                return;
            }
            Tried::RolledBack => {
                counts.retried.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    for pending in batch {
        let recorded = alone(db, &pending.op).await;
        let _ = pending.done.send(recorded);
    }
}

/// A committed batch whose outcomes could not be read: each delivery is answered with the
/// error, none written again.
fn unread(batch: Vec<Pending>, error: &str) {
    tracing::error!(error = %error, "a committed batch of deliveries could not be read back");
    for pending in batch {
        let _ = pending.done.send(Err(StoreError::Corrupt(format!(
            "the delivery was stored but its outcome could not be read: {error}"
        ))));
    }
}
