//! PostgreSQL's side of recording deliveries: job-starting deliveries many to a statement, or
//! one each when they meet inside the batch.

use super::{Op, Pending, SCRIPT_ARGS, Tried, outcome};
use crate::StoreError;
use crate::queue::Recorded;
use crate::sql::{Arg, Db, Tx, q};
use crate::tables::queue::LOCK_TICKET_JOBS;

/// One job-starting delivery on PostgreSQL, in one statement with the same values as
/// SQLite's `ingest_in` rows: the rows `record_in` writes, one round trip instead of eleven. The inbox row
/// names its job as it is inserted (the ticket's active job, or the new one), since a statement
/// cannot see the rows it inserts; the foreign keys are checked when the statement ends, after
/// the job row exists.
///
/// The batch holds its tickets' job locks before this statement ([`lock_tickets`]), so its
/// snapshot sees any job another transaction started for them, as `record_in`'s does.
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

/// The first columns of a delivery in every multi-delivery statement's `input`, with their
/// types: its place in the batch, then [`Op::delivery_args`] in order.
const DELIVERY: [(&str, &str); 6] = [
    ("n", "bigint"),
    ("provider", "text"),
    ("delivery_id", "text"),
    ("headers", "text"),
    ("body", "bytea"),
    ("received_at", "timestamptz"),
];

/// The columns of a delivery in [`many_sql`]'s `input` after [`DELIVERY`]: the rest of
/// [`Op::script_args`] in order.
const INPUT: [(&str, &str); SCRIPT_ARGS + 1 - DELIVERY.len()] = [
    ("job", "uuid"),
    ("ticket", "text"),
    ("project", "text"),
    ("kind", "text"),
    ("event", "text"),
    ("status", "text"),
    ("stage", "text"),
    ("state", "text"),
    ("error", "text"),
    ("max_attempts", "bigint"),
    ("require_ticket", "bigint"),
];

/// Deliveries per [`many_sql`] statement: a run takes the largest size that fits what is left,
/// so only these few statements are prepared.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// What [`PG_STATEMENT`] does, for many job-starting deliveries at once: one round trip for
/// `rows` of them. Only for deliveries that do not meet inside the batch (each its own ticket
/// and delivery id, see [`independent`]): a statement cannot see its own rows, so two that met
/// would both start a job. Stream positions follow the batch's order.
fn many_sql(rows: usize) -> String {
    format!("{}, {MANY_REST}", input_sql(&[&DELIVERY, &INPUT], rows))
}

/// `WITH input (columns) AS (VALUES ...)` with `rows` rows of typed placeholders, numbered row
/// by row; a row's columns are those of `parts` in order.
fn input_sql(parts: &[&[(&str, &str)]], rows: usize) -> String {
    let input: Vec<(&str, &str)> = parts.iter().flat_map(|part| part.iter().copied()).collect();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = input
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| format!("${}::{ty}", r * input.len() + i + 1))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let columns: Vec<&str> = input.iter().map(|(name, _)| *name).collect();
    format!(
        "WITH input ({}) AS (VALUES {})",
        columns.join(", "),
        values.join(", ")
    )
}

/// The column of a delivery that starts no job in [`plain_sql`]'s `input` after [`DELIVERY`]:
/// whether it is an outside one.
const PLAIN_INPUT: [(&str, &str); 1] = [("outside", "bigint")];

/// Many deliveries that start no job in one statement: the inbox rows `accept_in` (outside
/// deliveries, `pending` for the processor) and `record_in` (local ones, done) write, and
/// whether each was new. Only for batches whose delivery ids are distinct ([`independent`]).
fn plain_sql(rows: usize) -> String {
    format!(
        "{}, delivered AS (
    INSERT INTO inbox (provider, delivery_id, headers, body, received_at, state, next_at)
    SELECT provider, delivery_id, headers::jsonb, body, received_at,
        CASE WHEN outside = 1 THEN 'pending' ELSE 'done' END,
        CASE WHEN outside = 1 THEN received_at END
    FROM input ORDER BY n
    ON CONFLICT (provider, delivery_id) DO NOTHING
    RETURNING provider, delivery_id
)
SELECT i.n, d.delivery_id IS NOT NULL AS inserted
FROM input i LEFT JOIN delivered d ON d.provider = i.provider AND d.delivery_id = i.delivery_id
ORDER BY i.n",
        input_sql(&[&DELIVERY, &PLAIN_INPUT], rows)
    )
}

/// [`many_sql`] after its `input`.
const MANY_REST: &str = "known AS (
    SELECT i.*, (i.require_ticket = 0 OR EXISTS (SELECT 1 FROM tickets t WHERE t.key = i.ticket)) AS ok,
        (SELECT q.job_id FROM queue q WHERE q.ticket_key = i.ticket
            AND q.state IN ('queued', 'leased', 'waiting')) AS active
    FROM input i
), delivered AS (
    INSERT INTO inbox (provider, delivery_id, headers, body, received_at, job_id)
    SELECT provider, delivery_id, headers::jsonb, body, received_at, COALESCE(active, job)
    FROM known WHERE ok
    ON CONFLICT (provider, delivery_id) DO NOTHING
    RETURNING provider, delivery_id, job_id
), fresh AS (
    SELECT k.*, row_number() OVER (ORDER BY k.n) AS r, count(*) OVER () AS total
    FROM known k JOIN delivered d ON d.provider = k.provider AND d.delivery_id = k.delivery_id
    WHERE d.job_id = k.job
), created AS (
    INSERT INTO jobs (id, ticket_key, project, created_at)
    SELECT job, ticket, project, received_at FROM fresh
    RETURNING id
), entry AS (
    INSERT INTO journal (job_id, seq, kind, event, created_at)
    SELECT job, 0, kind, event::jsonb, received_at FROM fresh
    RETURNING job_id
), counter AS (
    UPDATE event_counter SET pos = pos + (SELECT count(*) FROM fresh)
    WHERE EXISTS (SELECT 1 FROM fresh)
    RETURNING pos
), logged AS (
    INSERT INTO event_log (pos, job_id, seq, prev_status, status)
    SELECT c.pos - f.total + f.r, f.job, 0, NULL, f.status FROM fresh f, counter c
    RETURNING pos
), viewed AS (
    INSERT INTO job_view (job_id, ticket_key, project, status, stage, seq, pos, state, error, created_at, updated_at)
    SELECT f.job, f.ticket, f.project, f.status, f.stage, 0, c.pos - f.total + f.r,
        f.state::jsonb, f.error, f.received_at, f.received_at
    FROM fresh f, counter c
    RETURNING job_id
), queued AS (
    INSERT INTO queue (job_id, ticket_key, project, state, run_after, max_attempts, created_at, updated_at)
    SELECT job, ticket, project, 'queued', received_at, max_attempts, received_at, received_at
    FROM fresh
    RETURNING job_id
)
SELECT k.n, k.ok AS known, d.job_id AS job,
    COALESCE(d.job_id = k.job, FALSE) AS created, (SELECT count(*) FROM queued) AS queued
FROM known k LEFT JOIN delivered d ON d.provider = k.provider AND d.delivery_id = k.delivery_id
ORDER BY k.n";

/// Whether no two deliveries of the batch share a delivery id, and no two job-starting ones a
/// ticket: then each can be written as if it were alone, in any order.
fn independent(batch: &[Pending]) -> bool {
    let mut ids = std::collections::HashSet::new();
    let mut tickets = std::collections::HashSet::new();
    batch.iter().all(|p| {
        ids.insert((p.op.provider.as_str(), p.op.delivery_id.as_str()))
            && p.op
                .job
                .as_ref()
                .filter(|_| !p.op.outside)
                .is_none_or(|j| tickets.insert(j.ticket.to_string()))
    })
}

/// Writes deliveries with `sql(rows)`, [`CHUNK_SIZES`] at a time, each bound as its place in the
/// batch then its values; `read` makes a delivery's outcome from its row of the result. Their
/// places in the batch and outcomes.
async fn write_chunks(
    tx: &mut Tx,
    mut deliveries: &[(usize, &Op, Vec<Arg>)],
    sql: fn(usize) -> String,
    read: fn(&Op, &crate::sql::Row) -> Result<Recorded, StoreError>,
) -> Result<Vec<(usize, Recorded)>, StoreError> {
    let mut results = Vec::with_capacity(deliveries.len());
    while !deliveries.is_empty() {
        let size = CHUNK_SIZES
            .into_iter()
            .find(|size| *size <= deliveries.len())
            .unwrap_or(1);
        let (chunk, rest) = deliveries.split_at(size);
        deliveries = rest;
        let mut query = q(sql(size));
        for (n, _, args) in chunk {
            query = query.bind(i64::try_from(*n).unwrap_or(i64::MAX));
            for arg in args {
                query = query.bind(arg.clone());
            }
        }
        let rows = query.fetch_all(&mut *tx).await?;
        if rows.len() != chunk.len() {
            return Err(StoreError::Corrupt(format!(
                "{} outcomes for {} deliveries",
                rows.len(),
                chunk.len()
            )));
        }
        for ((n, op, _), row) in chunk.iter().zip(rows) {
            results.push((*n, read(op, &row)?));
        }
    }
    Ok(results)
}

/// A job-starting delivery's outcome from its row of [`many_sql`].
fn read_started(op: &Op, row: &crate::sql::Row) -> Result<Recorded, StoreError> {
    if !row.boolean("known")? {
        return Ok(Recorded::UnknownTicket);
    }
    match row.opt_job("job")? {
        None => Ok(Recorded::Duplicate),
        Some(linked) => outcome(op, Some(linked), row.boolean("created")?),
    }
}

/// A delivery's outcome from its row of [`plain_sql`].
fn read_plain(_: &Op, row: &crate::sql::Row) -> Result<Recorded, StoreError> {
    Ok(if row.boolean("inserted")? {
        Recorded::Inserted { job: None }
    } else {
        Recorded::Duplicate
    })
}

/// Write a batch in one PostgreSQL transaction ([`write_batch`]) and commit it; on any failure
/// it is rolled back.
pub(super) async fn commit_postgres(db: &Db, batch: &[Pending]) -> Tried {
    let mut tx = match db.write().await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(error = %e, "no transaction for a batch of deliveries");
            return Tried::RolledBack;
        }
    };
    match write_batch(&mut tx, batch).await {
        Ok(results) => match tx.commit().await {
            Ok(()) => Tried::Committed(results),
            Err(e) => {
                tracing::debug!(error = %e, "a batch of deliveries did not commit");
                Tried::RolledBack
            }
        },
        Err(e) => {
            // Expected now and then (a bad delivery, another node's job for the same ticket);
            // each delivery is now written alone.
            tracing::debug!(error = %e, "a batch of deliveries failed");
            if let Err(e) = tx.rollback().await {
                tracing::warn!(error = %e, "rolling back a batch of deliveries failed");
            }
            Tried::RolledBack
        }
    }
}

/// Take the job lock of every ticket the batch may start a job for, as `record_in` does for
/// one, in one round trip and in the locks' order (so two batches cannot wait on each other).
/// Without it, a batch's statement could miss a job that a transaction holding the lock was
/// starting, and its queue row would be refused by the one-active-job index.
async fn lock_tickets(tx: &mut Tx, batch: &[Pending]) -> Result<(), StoreError> {
    let mut tickets: Vec<String> = batch
        .iter()
        .filter(|p| !p.op.outside)
        .filter_map(|p| p.op.job.as_ref().map(|j| j.ticket.to_string()))
        .collect();
    if tickets.is_empty() {
        return Ok(());
    }
    tickets.sort();
    tickets.dedup();
    // Volatile functions in the select list run after the sort.
    q("SELECT pg_advisory_xact_lock(CAST($1 AS INTEGER), h)
       FROM (SELECT DISTINCT hashtext(t) AS h FROM jsonb_array_elements_text($2::jsonb) AS e(t)) d
       ORDER BY h")
    .bind(i64::from(LOCK_TICKET_JOBS))
    .bind(crate::model::to_json(&tickets)?)
    .fetch_all(&mut *tx)
    .await?;
    Ok(())
}

/// Write a batch in one PostgreSQL transaction. When its deliveries do not meet
/// ([`independent`]), they are written many per statement: those that start no job
/// ([`plain_sql`]), then the job-starting ones ([`many_sql`]); otherwise each is one statement
/// ([`PG_STATEMENT`] for a job-starting one), in the batch's order. (SQLite's batches are one statement list each:
/// [`super::sqlite::commit_sqlite`].)
async fn write_batch(tx: &mut Tx, batch: &[Pending]) -> Result<Vec<Recorded>, StoreError> {
    lock_tickets(tx, batch).await?;
    if !independent(batch) {
        let mut results = Vec::with_capacity(batch.len());
        for pending in batch {
            results.push(match pending.op.script_args()? {
                Some(args) => write_pg(tx, &pending.op, args).await?,
                None => pending.op.write(tx).await?,
            });
        }
        return Ok(results);
    }
    let mut results: Vec<Option<Recorded>> = vec![None; batch.len()];
    let (mut scripted, mut plain) = (Vec::new(), Vec::new());
    for (n, pending) in batch.iter().enumerate() {
        match pending.op.script_args()? {
            Some(args) => scripted.push((n, &pending.op, args)),
            None => {
                let mut args = pending.op.delivery_args()?;
                args.push(i64::from(pending.op.outside).into());
                plain.push((n, &pending.op, args));
            }
        }
    }
    let written = [
        write_chunks(tx, &plain, plain_sql, read_plain).await?,
        write_chunks(tx, &scripted, many_sql, read_started).await?,
    ];
    for (n, recorded) in written.into_iter().flatten() {
        results[n] = Some(recorded);
    }
    results
        .into_iter()
        .map(|r| {
            r.ok_or_else(|| StoreError::Corrupt("a delivery of the batch was not written".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_uses_every_value_of_a_delivery() {
        let used: std::collections::BTreeSet<usize> = PG_STATEMENT
            .split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect();
        assert_eq!(used, (1..=SCRIPT_ARGS).collect());
    }

    #[test]
    fn many_deliveries_take_every_value_of_each() {
        for rows in CHUNK_SIZES {
            for (sql, columns) in [
                (many_sql(rows), DELIVERY.len() + INPUT.len()),
                (plain_sql(rows), DELIVERY.len() + PLAIN_INPUT.len()),
            ] {
                let last = format!("${}::", rows * columns);
                let beyond = format!("${}::", rows * columns + 1);
                assert!(sql.contains(&last) && !sql.contains(&beyond), "{rows} rows");
            }
        }
    }
}
