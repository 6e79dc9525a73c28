//! SQLite's side of recording deliveries: each batch as one statement list through a view
//! whose trigger writes every delivery's rows, sent by a writer thread of its own.

use tokio::sync::mpsc;

use super::{Ingest, MAX_BATCH, Op, Pending, SCRIPT_ARGS, Tried, commit, outcome};
use crate::StoreError;
use crate::queue::Recorded;
use crate::sql::{Arg, Db, q};

impl Op {
    /// The values of this delivery's `ingest_in` row after its place: [`Op::script_args`] for a
    /// job-starting delivery (the job's values empty for any other), then whether it is an
    /// outside delivery.
    fn sqlite_args(&self) -> Result<Vec<Arg>, StoreError> {
        let mut args = match self.script_args()? {
            Some(args) => args,
            None => {
                let mut args = self.delivery_args()?;
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
/// hand-off to SQLite's thread for the whole batch, whatever its deliveries are. A failure
/// anywhere in the list rolls all of it back.
pub(super) async fn commit_sqlite(db: &Db, batch: &[Pending]) -> Tried {
    let mut ops = Vec::with_capacity(batch.len());
    for (n, pending) in batch.iter().enumerate() {
        match pending.op.sqlite_args() {
            Ok(args) => ops.push((n, &pending.op, args)),
            Err(e) => {
                tracing::debug!(error = %e, "a delivery of the batch has values it cannot write");
                return Tried::RolledBack;
            }
        }
    }
    let query = scripted_query(&ops, "BEGIN IMMEDIATE; ", "; COMMIT");
    match db.sqlite_transaction(query).await {
        Ok(rows) => match scripted_outcomes(&ops, &rows) {
            Ok(results) => Tried::Committed(results),
            Err(e) => Tried::Unread(e.to_string()),
        },
        Err(e) => {
            // Expected now and then (a bad delivery): each is now written alone.
            tracing::debug!(error = %e, "a batch of deliveries failed");
            Tried::RolledBack
        }
    }
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

/// How long SQLite's writer thread waits for a delivery before it ends (the next delivery
/// starts another).
const WRITER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Hand a delivery to SQLite's writer thread, starting one if none runs. Gives the delivery
/// back when no thread could be started.
pub(super) fn to_writer(ingest: &Ingest, db: &Db, pending: Pending) -> Option<Pending> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_of_a_delivery_has_its_place() {
        // The view has a column per value plus the delivery's place.
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
