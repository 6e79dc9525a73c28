//! PostgreSQL's side of recording deliveries: a job-starting delivery in one statement.

use super::{Op, Pending, outcome};
use crate::StoreError;
use crate::queue::Recorded;
use crate::sql::{Arg, Tx, q};

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
/// statement list each: [`super::sqlite::commit_sqlite`].)
pub(super) async fn write_batch(
    tx: &mut Tx,
    batch: &[Pending],
) -> Result<Vec<Recorded>, StoreError> {
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        results.push(match pending.op.script_args()? {
            Some(args) => write_pg(tx, &pending.op, args).await?,
            None => pending.op.write(tx).await?,
        });
    }
    Ok(results)
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
        assert_eq!(used, (1..=super::super::SCRIPT_ARGS).collect());
    }
}
