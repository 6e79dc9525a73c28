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
//! Inside a batch, a local delivery that starts a job is written by one multi-statement script
//! (the same rows `record_in` writes), and up to [`SCRIPT_CHUNK`] such scripts go to SQLite's
//! worker thread together: each statement sent alone costs two thread hand-offs, which made
//! them, not SQLite, the limit.
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
use crate::sql::{Arg, Db, Tx, q};
use crate::tables::inbox::accept_in;
use crate::tables::queue::record_in;
use crate::{Finish, StoreError};

/// Deliveries at most in one transaction: bounds how long one commit holds the writer.
const MAX_BATCH: usize = 256;

/// Job-starting deliveries written by one script (one round trip); a few sizes only, so the
/// prepared scripts stay in the statement cache.
const SCRIPT_CHUNK: usize = 16;

/// Values of each delivery's script (`$1`..`$16` in [`SCRIPT`]).
const SCRIPT_ARGS: usize = 16;

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
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args: Vec<Arg> = vec![
            self.provider.clone().into(),
            self.delivery_id.clone().into(),
            crate::model::to_json(&headers)?.into(),
            self.body.clone().into(),
            self.now.into(),
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
        ];
        debug_assert_eq!(args.len(), SCRIPT_ARGS);
        Ok(Some(args))
    }
}

/// One delivery's script: what `record_in` and `enqueue_in` do for a new job, each step only
/// when the one before it wrote its row. When asked (`$16`), a ticket unknown to the local
/// tracker is reported and stops everything. The inbox row comes first (a duplicate stops
/// everything); the job, its first journal entry, stream position, view and queue row follow
/// only when the ticket has no active job; then the delivery is linked to the ticket's active
/// job, new or existing. It returns a row tagged `inbox` when the delivery was new and one
/// tagged `job` with the job it was linked to; `{n}` is the delivery's place in its chunk.
///
/// `$k` is the delivery's k-th value. SQLite binds numbered parameters wrongly after a gap
/// across the statements of one query, so each `$k` becomes a plain `?` and the values are
/// bound in the order they appear ([`placeholders`]).
const SCRIPT: &str = "SELECT 'unknown' AS what, {n} AS n
 WHERE $16 = 1 AND NOT EXISTS (SELECT 1 FROM tickets WHERE key = $7);
INSERT INTO inbox (provider, delivery_id, headers, body, received_at)
 SELECT $1, $2, $3, $4, $5 WHERE $16 = 0 OR EXISTS (SELECT 1 FROM tickets WHERE key = $7)
 ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING 'inbox' AS what, {n} AS n;
INSERT INTO jobs (id, ticket_key, project, created_at) SELECT $6, $7, $8, $5
 WHERE changes() = 1
 AND NOT EXISTS (SELECT 1 FROM queue WHERE ticket_key = $7 AND state IN ('queued', 'leased', 'waiting'));
INSERT INTO journal (job_id, seq, kind, event, created_at)
 SELECT $6, 0, $9, $10, $5 WHERE changes() = 1;
INSERT INTO event_log (job_id, seq, prev_status, status)
 SELECT $6, 0, NULL, $11 WHERE changes() = 1;
INSERT INTO job_view (job_id, ticket_key, project, status, stage, seq, pos, state, error, created_at, updated_at)
 SELECT $6, $7, $8, $11, $12, 0, last_insert_rowid(), $13, $14, $5, $5 WHERE changes() = 1;
INSERT INTO queue (job_id, ticket_key, project, state, run_after, max_attempts, created_at, updated_at)
 SELECT $6, $7, $8, 'queued', $5, $15, $5, $5 WHERE changes() = 1;
UPDATE inbox SET job_id = (SELECT job_id FROM queue WHERE ticket_key = $7 AND state IN ('queued', 'leased', 'waiting'))
 WHERE provider = $1 AND delivery_id = $2 AND received_at = $5 AND job_id IS NULL
 RETURNING 'job' AS what, {n} AS n, job_id AS job;
";

/// [`SCRIPT`] with plain `?` placeholders, and the value (0-based) each one takes, in order.
fn placeholders() -> (String, Vec<usize>) {
    let mut sql = String::with_capacity(SCRIPT.len());
    let mut order = Vec::new();
    let mut rest = SCRIPT;
    while let Some(at) = rest.find('$') {
        sql.push_str(&rest[..at]);
        let digits: String = rest[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let k: usize = digits.parse().unwrap_or(0);
        debug_assert!((1..=SCRIPT_ARGS).contains(&k));
        order.push(k.saturating_sub(1));
        sql.push('?');
        rest = &rest[at + 1 + digits.len()..];
    }
    sql.push_str(rest);
    (sql, order)
}

/// Writes a chunk of job-starting deliveries with one script; their results in order.
async fn write_chunk(tx: &mut Tx, chunk: &[(&Op, Vec<Arg>)]) -> Result<Vec<Recorded>, StoreError> {
    let (one, order) = placeholders();
    let mut sql = String::with_capacity(one.len() * chunk.len());
    for n in 0..chunk.len() {
        sql.push_str(&one.replace("{n}", &n.to_string()));
    }
    let mut query = q(sql);
    for (_, args) in chunk {
        for &k in &order {
            query = query.bind(args[k].clone());
        }
    }
    let rows = query.fetch_all(&mut *tx).await?;
    let mut inserted = vec![false; chunk.len()];
    let mut unknown = vec![false; chunk.len()];
    let mut linked: Vec<Option<JobId>> = vec![None; chunk.len()];
    for row in &rows {
        let n = usize::try_from(row.int("n")?)
            .ok()
            .filter(|n| *n < chunk.len())
            .ok_or_else(|| StoreError::Corrupt("a delivery script answered out of range".into()))?;
        match row.text("what")?.as_str() {
            "inbox" => inserted[n] = true,
            "unknown" => unknown[n] = true,
            _ => linked[n] = Some(row.job("job")?),
        }
    }
    chunk
        .iter()
        .zip(inserted.into_iter().zip(linked).zip(unknown))
        .map(|((op, _), ((inserted, linked), unknown))| {
            if unknown {
                return Ok(Recorded::UnknownTicket);
            }
            if !inserted {
                return Ok(Recorded::Duplicate);
            }
            let wanted = op.job.as_ref().map(|j| j.id);
            match linked {
                Some(job) if Some(job) == wanted => Ok(Recorded::Inserted {
                    job: Some(crate::queue::Enqueued::Created(job)),
                }),
                Some(job) => Ok(Recorded::Inserted {
                    job: Some(crate::queue::Enqueued::Existing(job)),
                }),
                None => Err(StoreError::Corrupt(format!(
                    "delivery {} was stored without its job",
                    op.delivery_id
                ))),
            }
        })
        .collect()
}

/// One job-starting delivery on PostgreSQL, in one statement with the same values as
/// [`SCRIPT`]: the rows `record_in` writes, one round trip instead of eleven. The inbox row
/// names its job as it is inserted (the ticket's active job, or the new one), since a statement
/// cannot see the rows it inserts; the foreign keys are checked when the statement ends, after
/// the job row exists.
///
/// No advisory lock is taken: if another node's transaction starts a job for the same ticket
/// after this statement's snapshot, the queue's one-active-job-per-ticket index refuses the
/// second queue row, the batch is rolled back, and each delivery is written alone by
/// `record_in`, which locks the ticket and finds the other job.
const PG_STATEMENT: &str = "WITH known AS (
    SELECT $16 = 0 OR EXISTS (SELECT 1 FROM tickets WHERE key = $7) AS ok
), active AS (
    SELECT job_id FROM queue WHERE ticket_key = $7 AND state IN ('queued', 'leased', 'waiting')
), delivered AS (
    INSERT INTO inbox (provider, delivery_id, headers, body, received_at, job_id)
    SELECT $1, $2, $3::jsonb, $4, $5, COALESCE((SELECT job_id FROM active), $6) FROM known WHERE ok
    ON CONFLICT (provider, delivery_id) DO NOTHING
    RETURNING job_id
), created AS (
    INSERT INTO jobs (id, ticket_key, project, created_at)
    SELECT $6, $7, $8, $5 FROM delivered WHERE job_id = $6
    RETURNING id
), entry AS (
    INSERT INTO journal (job_id, seq, kind, event, created_at)
    SELECT id, 0, $9, $10::jsonb, $5 FROM created
    RETURNING job_id
), counter AS (
    UPDATE event_counter SET pos = pos + 1 WHERE EXISTS (SELECT 1 FROM entry)
    RETURNING pos
), logged AS (
    INSERT INTO event_log (pos, job_id, seq, prev_status, status)
    SELECT pos, $6, 0, NULL, $11 FROM counter
    RETURNING pos
), viewed AS (
    INSERT INTO job_view (job_id, ticket_key, project, status, stage, seq, pos, state, error, created_at, updated_at)
    SELECT $6, $7, $8, $11, $12, 0, pos, $13::jsonb, $14, $5, $5 FROM logged
    RETURNING job_id
), queued AS (
    INSERT INTO queue (job_id, ticket_key, project, state, run_after, max_attempts, created_at, updated_at)
    SELECT $6, $7, $8, 'queued', $5, $15, $5, $5 FROM viewed
    RETURNING job_id
)
SELECT (SELECT ok FROM known) AS known, (SELECT job_id FROM delivered) AS job,
    (SELECT count(*) FROM queued) AS queued";

/// Writes one job-starting delivery with [`PG_STATEMENT`].
async fn write_pg(tx: &mut Tx, op: &Op, args: Vec<Arg>) -> Result<Recorded, StoreError> {
    let mut query = q(PG_STATEMENT);
    for arg in args {
        query = query.bind(arg);
    }
    let row = query.fetch_one(&mut *tx).await?;
    if !row.boolean("known")? {
        return Ok(Recorded::UnknownTicket);
    }
    let Some(linked) = row.opt_job("job")? else {
        return Ok(Recorded::Duplicate);
    };
    let wanted = op.job.as_ref().map(|j| j.id);
    let queued = row.int("queued")? == 1;
    match (Some(linked) == wanted, queued) {
        (true, true) => Ok(Recorded::Inserted {
            job: Some(crate::queue::Enqueued::Created(linked)),
        }),
        (false, false) => Ok(Recorded::Inserted {
            job: Some(crate::queue::Enqueued::Existing(linked)),
        }),
        _ => Err(StoreError::Corrupt(format!(
            "delivery {} was stored without its job",
            op.delivery_id
        ))),
    }
}

/// Writes a whole batch in `tx`, in order: runs of job-starting deliveries by script, the
/// others statement by statement.
async fn write_batch(tx: &mut Tx, batch: &[Pending]) -> Result<Vec<Recorded>, StoreError> {
    let mut results = Vec::with_capacity(batch.len());
    // The script is SQLite's (`changes()`, `last_insert_rowid()`); on PostgreSQL a
    // job-starting delivery is one statement ([`PG_STATEMENT`]), still in the one transaction.
    if matches!(tx, Tx::Postgres(_)) {
        for pending in batch {
            results.push(match pending.op.script_args()? {
                Some(args) => write_pg(tx, &pending.op, args).await?,
                None => pending.op.write(tx).await?,
            });
        }
        return Ok(results);
    }
    let mut chunk: Vec<(&Op, Vec<Arg>)> = Vec::new();
    for pending in batch {
        match pending.op.script_args()? {
            Some(args) => {
                chunk.push((&pending.op, args));
                if chunk.len() == SCRIPT_CHUNK {
                    results.extend(write_chunk(tx, &chunk).await?);
                    chunk.clear();
                }
            }
            None => {
                if !chunk.is_empty() {
                    results.extend(write_chunk(tx, &chunk).await?);
                    chunk.clear();
                }
                results.push(pending.op.write(tx).await?);
            }
        }
    }
    if !chunk.is_empty() {
        results.extend(write_chunk(tx, &chunk).await?);
    }
    Ok(results)
}

impl Db {
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
        let ingest = match self {
            Db::Sqlite { ingest, .. } | Db::Postgres(_, ingest) => ingest,
        };
        let (done, result) = oneshot::channel();
        lock(&ingest.waiting).push(Pending { op, done });
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
        match write_batch(&mut tx, &batch).await {
            Ok(results) if results.len() == batch.len() => {
                if tx.commit().await.is_ok() {
                    for (pending, recorded) in batch.into_iter().zip(results) {
                        let _ = pending.done.send(Ok(recorded));
                    }
                    return;
                }
            }
            _ => {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back a batch of deliveries failed");
                }
            }
        }
    }
    for pending in batch {
        let recorded = alone(db, &pending.op).await;
        let _ = pending.done.send(recorded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_of_the_script_has_its_place() {
        let (sql, order) = placeholders();
        assert!(!sql.contains('$'), "{sql}");
        assert_eq!(sql.matches('?').count(), order.len());
        let used: std::collections::BTreeSet<usize> = order.iter().copied().collect();
        assert_eq!(used, (0..SCRIPT_ARGS).collect());
        // The ticket check first, then the inbox row with the delivery's own values.
        assert_eq!(&order[..4], &[15, 6, 0, 1]);
    }
}
