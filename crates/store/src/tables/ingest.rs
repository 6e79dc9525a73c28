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
//! result; on PostgreSQL a job-starting delivery by one statement ([`PG_STATEMENT`]).
//!
//! On SQLite the batches are written by a thread of its own ([`writer_thread`]); on
//! PostgreSQL the waiting callers take turns. Either way the batch runs apart from its callers,
//! so a caller that goes away (its client hung up) cannot abandon the others' deliveries. If any delivery of a batch fails, the batch is rolled back
//! and each of its deliveries is recorded alone, so one bad delivery fails only itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;
use tokio::sync::{mpsc, oneshot};

use crate::queue::{Delivery, NewJob, Recorded};
use crate::sql::{Arg, Db, Tx, q};
use crate::tables::inbox::accept_in;
use crate::tables::queue::record_in;
use crate::{Finish, StoreError};

/// Deliveries at most in one transaction: bounds how long one commit holds the writer.
const MAX_BATCH: usize = 256;

/// Values of each job-starting delivery (`$1`..`$16` in [`PG_STATEMENT`]).
const SCRIPT_ARGS: usize = 16;

/// Deliveries waiting for the next group commit.
#[derive(Debug, Default)]
pub(crate) struct Ingest {
    waiting: Mutex<Vec<Pending>>,
    /// Held by the caller whose turn it is to commit what is waiting.
    turn: tokio::sync::Mutex<()>,
    /// SQLite's writer thread, while it runs ([`writer_thread`]).
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

impl Op {
    /// The values of this delivery's `ingest_in` row after its place: [`Op::script_args`] for a
    /// job-starting delivery (the job's values empty for any other), then whether it is an
    /// outside delivery.
    fn sqlite_args(&self) -> Result<Vec<Arg>, StoreError> {
        let mut args = match self.script_args()? {
            Some(args) => args,
            None => {
                let headers: Vec<(&str, &str)> = self
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut args: Vec<Arg> = vec![
                    self.provider.clone().into(),
                    self.delivery_id.clone().into(),
                    crate::model::to_json(&headers)?.into(),
                    self.body.clone().into(),
                    self.now.into(),
                ];
                // The job's values, then `require_ticket`: no job, nothing to require.
                args.extend((5..SCRIPT_ARGS - 1).map(|_| Arg::Text(None)));
                args.push(0_i64.into());
                args
            }
        };
        args.push(i64::from(self.outside).into());
        debug_assert_eq!(args.len(), ROW_VALUES - 1);
        Ok(args)
    }
}

/// Set up on SQLite's writer connection when it opens: a view whose `INSTEAD OF INSERT`
/// trigger writes one delivery — what `record_in` and `enqueue_in` do for a new job, or
/// `accept_in` for an outside delivery — so a whole chunk of deliveries is one multi-row
/// `INSERT` run inside SQLite, with no round trip between the tables' statements. The view's
/// columns are the delivery's place in its batch (`n`), then [`Op::sqlite_args`] in order.
///
/// Each step runs only when the one before it wrote its row (`changes()`); a delivery without a
/// job stops after its inbox row (`pending` when it came from outside). When asked, a ticket
/// unknown to the local tracker is reported and stops everything. The inbox row comes first (a
/// duplicate stops everything); the job, its first journal entry, stream position, view and
/// queue row follow only when the ticket has no active job; then the delivery is linked to the
/// ticket's active job, new or existing. The outcome goes to `ingest_out`, a temporary table
/// (its rows go with the transaction if it rolls back): `inbox` when the delivery was new,
/// `unknown`, and `job` with the job it was linked to.
pub(crate) const SQLITE_SETUP: &str = "PRAGMA temp_store = MEMORY;
CREATE TEMP TABLE IF NOT EXISTS ingest_out (n INTEGER NOT NULL, what TEXT NOT NULL, job TEXT);
CREATE TEMP VIEW IF NOT EXISTS ingest_in AS SELECT NULL AS n, NULL AS provider,
 NULL AS delivery_id, NULL AS headers, NULL AS body, NULL AS received_at, NULL AS job,
 NULL AS ticket, NULL AS project, NULL AS kind, NULL AS event, NULL AS status, NULL AS stage,
 NULL AS state, NULL AS error, NULL AS max_attempts, NULL AS require_ticket, NULL AS outside;
CREATE TEMP TRIGGER IF NOT EXISTS ingest_row INSTEAD OF INSERT ON ingest_in BEGIN
INSERT INTO ingest_out (n, what) SELECT NEW.n, 'unknown'
 WHERE NEW.require_ticket = 1 AND NOT EXISTS (SELECT 1 FROM tickets WHERE key = NEW.ticket);
INSERT INTO inbox (provider, delivery_id, headers, body, received_at, state, next_at)
 SELECT NEW.provider, NEW.delivery_id, NEW.headers, NEW.body, NEW.received_at,
  CASE WHEN NEW.outside = 1 THEN 'pending' ELSE 'done' END,
  CASE WHEN NEW.outside = 1 THEN NEW.received_at END
 WHERE NEW.require_ticket = 0 OR EXISTS (SELECT 1 FROM tickets WHERE key = NEW.ticket)
 ON CONFLICT (provider, delivery_id) DO NOTHING;
INSERT INTO ingest_out (n, what) SELECT NEW.n, 'inbox' WHERE changes() = 1;
INSERT INTO jobs (id, ticket_key, project, created_at)
 SELECT NEW.job, NEW.ticket, NEW.project, NEW.received_at
 WHERE changes() = 1 AND NEW.job IS NOT NULL AND NOT EXISTS (SELECT 1 FROM queue
  WHERE ticket_key = NEW.ticket AND state IN ('queued', 'leased', 'waiting'));
INSERT INTO journal (job_id, seq, kind, event, created_at)
 SELECT NEW.job, 0, NEW.kind, NEW.event, NEW.received_at WHERE changes() = 1;
INSERT INTO event_log (job_id, seq, prev_status, status)
 SELECT NEW.job, 0, NULL, NEW.status WHERE changes() = 1;
INSERT INTO job_view (job_id, ticket_key, project, status, stage, seq, pos, state, error, created_at, updated_at)
 SELECT NEW.job, NEW.ticket, NEW.project, NEW.status, NEW.stage, 0, last_insert_rowid(),
  NEW.state, NEW.error, NEW.received_at, NEW.received_at WHERE changes() = 1;
INSERT INTO queue (job_id, ticket_key, project, state, run_after, max_attempts, created_at, updated_at)
 SELECT NEW.job, NEW.ticket, NEW.project, 'queued', NEW.received_at, NEW.max_attempts,
  NEW.received_at, NEW.received_at WHERE changes() = 1;
UPDATE inbox SET job_id = (SELECT job_id FROM queue
  WHERE ticket_key = NEW.ticket AND state IN ('queued', 'leased', 'waiting'))
 WHERE NEW.job IS NOT NULL AND provider = NEW.provider AND delivery_id = NEW.delivery_id
  AND received_at = NEW.received_at AND job_id IS NULL;
INSERT INTO ingest_out (n, what, job) SELECT NEW.n, 'job', job_id FROM inbox
 WHERE changes() = 1 AND provider = NEW.provider AND delivery_id = NEW.delivery_id;
END;";

/// Values per row of `ingest_in`: the delivery's place in its batch, its script values, and
/// whether it is an outside delivery ([`Op::sqlite_args`]).
const ROW_VALUES: usize = SCRIPT_ARGS + 2;

/// Rows per `INSERT INTO ingest_in`: a chunk takes the largest size that fits what is left, so
/// only these few statements are prepared, whatever the batch size.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// The statement inserting `rows` deliveries into `ingest_in`.
fn chunk_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; ROW_VALUES].join(", "));
    format!(
        "INSERT INTO ingest_in VALUES {}",
        vec![row.as_str(); rows].join(", ")
    )
}

/// Reads and clears the outcomes in `ingest_out`: the end of every batch's one statement list.
const READ_AND_CLEAR: &str = "SELECT json_group_array(json_array(n, what, job)) AS out \
     FROM ingest_out; DELETE FROM ingest_out";

/// The statements writing a batch of `rows` deliveries: its chunks, then the read-and-clear.
/// One string per batch size, sent to SQLite's thread in one go: each statement sent alone
/// waits for its task to be polled again, and that wait, not SQLite, was most of a batch's time.
fn batch_sql(rows: usize) -> String {
    let mut statements = Vec::new();
    let mut left = rows;
    while left > 0 {
        let size = CHUNK_SIZES
            .into_iter()
            .find(|size| *size <= left)
            .unwrap_or(1);
        statements.push(chunk_sql(size));
        left -= size;
    }
    statements.push(READ_AND_CLEAR.to_owned());
    statements.join("; ")
}

/// The statement list writing deliveries (each with its place in the batch) through
/// `ingest_in`, then reading and clearing their outcomes; `begin` and `end` go around it.
fn scripted_query(ops: &[(usize, &Op, Vec<Arg>)], begin: &str, end: &str) -> crate::sql::Q {
    let mut query = q(format!("{begin}{}{end}", batch_sql(ops.len())));
    for (n, _, args) in ops {
        query = query.bind(i64::try_from(*n).unwrap_or(i64::MAX));
        for arg in args {
            query = query.bind(arg.clone());
        }
    }
    query
}

/// On SQLite, a batch as one statement list that also begins and commits its transaction: one
/// hand-off to SQLite's thread for the whole batch, whatever its deliveries are. The outer
/// error means nothing was committed (the batch may be written again); the inner one that it
/// was, but its outcomes could not be read (writing it again would make duplicates).
async fn commit_sqlite(
    db: &Db,
    batch: &[Pending],
) -> Result<Result<Vec<Recorded>, StoreError>, StoreError> {
    let mut ops = Vec::with_capacity(batch.len());
    for (n, pending) in batch.iter().enumerate() {
        ops.push((n, &pending.op, pending.op.sqlite_args()?));
    }
    let query = scripted_query(&ops, "BEGIN IMMEDIATE; ", "; COMMIT");
    let rows = db.sqlite_transaction(query).await?;
    Ok(scripted_outcomes(&ops, &rows))
}

/// Each delivery's outcome from the one row that [`READ_AND_CLEAR`] read.
fn scripted_outcomes(
    ops: &[(usize, &Op, Vec<Arg>)],
    rows: &[crate::sql::Row],
) -> Result<Vec<Recorded>, StoreError> {
    let [row] = rows else {
        return Err(StoreError::Corrupt(format!(
            "a batch of deliveries read {} outcome rows, not one",
            rows.len()
        )));
    };
    let out = row.text("out")?;
    let out: Vec<(usize, String, Option<String>)> = serde_json::from_str(&out)
        .map_err(|e| StoreError::Corrupt(format!("outcomes of a batch of deliveries: {e}")))?;
    let mut inserted = std::collections::BTreeSet::new();
    let mut unknown = std::collections::BTreeSet::new();
    let mut linked = std::collections::BTreeMap::new();
    for (n, what, job) in out {
        match (what.as_str(), job) {
            ("inbox", _) => {
                inserted.insert(n);
            }
            ("unknown", _) => {
                unknown.insert(n);
            }
            (_, Some(job)) => {
                linked.insert(n, crate::model::job_id(&job)?);
            }
            (_, None) => {}
        }
    }
    ops.iter()
        .map(|(n, op, _)| {
            let recorded = if unknown.contains(n) {
                Recorded::UnknownTicket
            } else if !inserted.contains(n) {
                Recorded::Duplicate
            } else if op.job.is_none() {
                Recorded::Inserted { job: None }
            } else {
                outcome(op, linked.get(n).copied(), true)?
            };
            Ok(recorded)
        })
        .collect()
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

/// One job-starting delivery on PostgreSQL, in one statement with the same values as
/// SQLite's `ingest_in` rows: the rows `record_in` writes, one round trip instead of eleven. The inbox row
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
    outcome(op, Some(linked), row.int("queued")? == 1)
}

/// Write a batch in one PostgreSQL transaction: a job-starting delivery is one statement
/// ([`PG_STATEMENT`]), any other is written statement by statement. (SQLite's batches are one
/// statement list each: [`commit_sqlite`].)
async fn write_batch(tx: &mut Tx, batch: &[Pending]) -> Result<Vec<Recorded>, StoreError> {
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        results.push(match pending.op.script_args()? {
            Some(args) => write_pg(tx, &pending.op, args).await?,
            None => pending.op.write(tx).await?,
        });
    }
    Ok(results)
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

/// How long SQLite's writer thread waits for a delivery before it ends (the next delivery
/// starts another).
const WRITER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Hand a delivery to SQLite's writer thread, starting one if none runs. Gives the delivery
/// back when no thread could be started.
fn to_writer(ingest: &Ingest, db: &Db, pending: Pending) -> Option<Pending> {
    let mut writer = ingest
        .writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pending = match writer.as_ref() {
        Some(tx) => match tx.send(pending) {
            Ok(()) => return None,
            // It ended (idle, or it failed): start another.
            Err(mpsc::error::SendError(pending)) => pending,
        },
        None => pending,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let db = db.clone();
    let started = std::thread::Builder::new()
        .name("codemill-ingest".into())
        .spawn(move || writer_thread(db, rx));
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the webhook writer thread");
        return Some(pending);
    }
    let unsent = tx.send(pending).err().map(|mpsc::error::SendError(p)| p);
    *writer = Some(tx);
    unsent
}

/// SQLite's writer: commits what is waiting as soon as the commit before it is done, in a
/// thread of its own, so a busy runtime never delays the hand-over between two commits (on
/// the shared runtime each commit's end had to wake a task, which woke the next writer, which
/// started the next commit: a wait behind every ready task, three times per batch).
fn writer_thread(db: Db, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Dropping `rx` answers what was sent with an error; the next delivery tries again.
            tracing::warn!(error = %e, "could not start the webhook writer's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        loop {
            let first = match tokio::time::timeout(WRITER_IDLE, rx.recv()).await {
                Ok(Some(first)) => first,
                Ok(None) => return,
                Err(_) => {
                    // Refuse new deliveries (they start another thread), then write those
                    // already sent.
                    rx.close();
                    let mut rest = Vec::new();
                    while let Ok(p) = rx.try_recv() {
                        rest.push(p);
                    }
                    for batch in chunks(rest) {
                        commit(&db, batch).await;
                    }
                    return;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            commit(&db, batch).await;
        }
    });
}

fn chunks(mut all: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut out = Vec::new();
    while !all.is_empty() {
        let rest = all.split_off(all.len().min(MAX_BATCH));
        out.push(std::mem::replace(&mut all, rest));
    }
    out
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

/// Write a batch in one transaction and answer each delivery; on any failure, write each alone.
async fn commit(db: &Db, batch: Vec<Pending>) {
    if batch.is_empty() {
        return;
    }
    let counts = &db.batches().counts;
    if batch.len() > 1 && matches!(db, Db::Sqlite { .. }) {
        match commit_sqlite(db, &batch).await {
            Ok(Ok(results)) if results.len() == batch.len() => {
                counts.together.fetch_add(1, Ordering::Relaxed);
                counts
                    .deliveries
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (pending, recorded) in batch.into_iter().zip(results) {
                    let _ = pending.done.send(Ok(recorded));
                }
                return;
            }
            Ok(unread) => {
                // Committed: each delivery is answered with the error, none written again.
                let error = match unread {
                    Err(e) => e.to_string(),
                    Ok(results) => format!(
                        "{} outcomes for a batch of {} deliveries",
                        results.len(),
                        batch.len()
                    ),
                };
                tracing::error!(error = %error, "a committed batch of deliveries could not be read back");
                for pending in batch {
                    let _ = pending.done.send(Err(StoreError::Corrupt(format!(
                        "the delivery was stored but its outcome could not be read: {error}"
                    ))));
                }
                return;
            }
            Err(e) => {
                // Rolled back: each delivery is written alone.
                tracing::debug!(error = %e, "a batch of deliveries failed");
                counts.retried.fetch_add(1, Ordering::Relaxed);
                for pending in batch {
                    let recorded = alone(db, &pending.op).await;
                    let _ = pending.done.send(recorded);
                }
                return;
            }
        }
    }
    if batch.len() > 1
        && let Ok(mut tx) = db.write().await
    {
        match write_batch(&mut tx, &batch).await {
            Ok(results) if results.len() == batch.len() => match tx.commit().await {
                Ok(()) => {
                    counts.together.fetch_add(1, Ordering::Relaxed);
                    counts
                        .deliveries
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    for (pending, recorded) in batch.into_iter().zip(results) {
                        let _ = pending.done.send(Ok(recorded));
                    }
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "a batch of deliveries did not commit"),
            },
            failed => {
                if let Err(e) = failed {
                    // Expected now and then (a bad delivery, another node's job for the same
                    // ticket); each delivery is now written alone.
                    tracing::debug!(error = %e, "a batch of deliveries failed");
                }
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back a batch of deliveries failed");
                }
            }
        }
        counts.retried.fetch_add(1, Ordering::Relaxed);
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
    fn every_value_of_a_delivery_has_its_place() {
        // PostgreSQL's statement uses each value, and only those.
        let used: std::collections::BTreeSet<usize> = PG_STATEMENT
            .split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect();
        assert_eq!(used, (1..=SCRIPT_ARGS).collect());
        // SQLite's view has a column per value plus the delivery's place.
        assert_eq!(SQLITE_SETUP.matches("NULL AS ").count(), ROW_VALUES);
        for rows in CHUNK_SIZES {
            assert_eq!(chunk_sql(rows).matches('?').count(), rows * ROW_VALUES);
        }
        // A batch's statement list takes every row's values, whatever its size.
        for rows in [1, 2, 5, 21, 64, 85, 200] {
            let sql = batch_sql(rows);
            assert_eq!(sql.matches('?').count(), rows * ROW_VALUES, "{rows} rows");
            assert!(sql.ends_with("DELETE FROM ingest_out"));
        }
    }
}
