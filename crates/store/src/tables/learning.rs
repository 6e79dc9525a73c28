//! Outcomes (once per job and kind), guidance proposals (decided once) and learning runs (one
//! per project and period).

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::learning::{GuidanceRow, GuidanceState, NewWorkOutcome, WorkOutcome};
use crate::sql::{Db, Row, q};

/// Review comments are kept one per block, split on this line.
const FEEDBACK_SEPARATOR: &str = "\n\u{1e}\n";

impl Db {
    /// Record an outcome; a second record of the same job and kind changes nothing.
    pub async fn record_outcome(
        &self,
        new: &NewWorkOutcome<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let added = q(
            "INSERT INTO outcomes (project, ticket, job_id, kind, pr_url, agent_commit,
                 merged_commit, human_lines, human_diff, fix_rounds, feedback, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (job_id, kind) DO NOTHING",
        )
        .bind(new.project)
        .bind(new.ticket)
        .bind(new.job.to_string())
        .bind(new.kind)
        .bind(new.pr_url)
        .bind(new.agent_commit)
        .bind(new.merged_commit)
        .bind(new.human_lines)
        .bind(new.human_diff)
        .bind(new.fix_rounds)
        .bind(new.feedback.join(FEEDBACK_SEPARATOR))
        .bind(new.reason)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(added == 1)
    }

    /// A project's outcomes since `since`, oldest first.
    pub async fn outcomes(
        &self,
        project: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<WorkOutcome>, StoreError> {
        let rows = q("SELECT * FROM outcomes WHERE project = $1 AND at >= $2 ORDER BY at, id")
            .bind(project)
            .bind(since)
            .fetch_all(self.read())
            .await?;
        rows.iter().map(outcome_from_row).collect()
    }

    pub async fn add_guidance(
        &self,
        project: &str,
        proposal: &str,
        summary: &str,
        diff: &str,
        now: DateTime<Utc>,
    ) -> Result<GuidanceRow, StoreError> {
        let row = q(
            "INSERT INTO guidance (project, proposal, summary, diff, state, created_at)
                     VALUES ($1, $2, $3, $4, 'proposed', $5) RETURNING *",
        )
        .bind(project)
        .bind(proposal)
        .bind(summary)
        .bind(diff)
        .bind(now)
        .fetch_one(self.writer())
        .await?;
        guidance_from_row(&row)
    }

    /// A project's proposals (or every project's), newest first.
    pub async fn guidance(&self, project: Option<&str>) -> Result<Vec<GuidanceRow>, StoreError> {
        let rows =
            q("SELECT * FROM guidance WHERE ($1::text IS NULL OR project = $1) ORDER BY id DESC")
                .bind(project)
                .fetch_all(self.read())
                .await?;
        rows.iter().map(guidance_from_row).collect()
    }

    pub async fn guidance_row(&self, id: i64) -> Result<Option<GuidanceRow>, StoreError> {
        let row = q("SELECT * FROM guidance WHERE id = $1")
            .bind(id)
            .fetch_optional(self.writer())
            .await?;
        row.as_ref().map(guidance_from_row).transpose()
    }

    /// Move a proposal from `from` to `to` (recording who and what, when given); `false` when
    /// it is not in `from` any more.
    pub async fn move_guidance(
        &self,
        id: i64,
        from: GuidanceState,
        to: GuidanceState,
        by: Option<&str>,
        result: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = q("UPDATE guidance SET state = $3,
                             decided_by = COALESCE($4, decided_by),
                             result = COALESCE($5, result),
                             decided_at = $6
                         WHERE id = $1 AND state = $2")
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(by)
        .bind(result)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(changed == 1)
    }

    /// Proposals a person approved that wait to be applied, oldest first.
    pub async fn approved_guidance(&self) -> Result<Vec<GuidanceRow>, StoreError> {
        let rows = q("SELECT * FROM guidance WHERE state = 'approved' ORDER BY id")
            .fetch_all(self.writer())
            .await?;
        rows.iter().map(guidance_from_row).collect()
    }

    /// Start the learning run of `project` for `period` (e.g. an ISO week); `false` when
    /// another process started it first.
    pub async fn start_learn_run(
        &self,
        project: &str,
        period: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let added = q(
            "INSERT INTO learn_runs (project, period, at) VALUES ($1, $2, $3)
                       ON CONFLICT (project, period) DO NOTHING",
        )
        .bind(project)
        .bind(period)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(added == 1)
    }

    /// Give back a learning run that had too little to learn from, so a later look in the same
    /// period can run it once there is enough.
    pub async fn forget_learn_run(&self, project: &str, period: &str) -> Result<(), StoreError> {
        q("DELETE FROM learn_runs WHERE project = $1 AND period = $2")
            .bind(project)
            .bind(period)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}

fn outcome_from_row(r: &Row) -> Result<WorkOutcome, StoreError> {
    let feedback = r.text("feedback")?;
    Ok(WorkOutcome {
        id: r.int("id")?,
        project: r.text("project")?,
        ticket: r.text("ticket")?,
        job: r
            .text("job_id")?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("outcome job id: {e}")))?,
        kind: r.text("kind")?,
        pr_url: r.opt_text("pr_url")?,
        agent_commit: r.opt_text("agent_commit")?,
        merged_commit: r.opt_text("merged_commit")?,
        human_lines: r.int("human_lines")?,
        human_diff: r.text("human_diff")?,
        fix_rounds: r.int("fix_rounds")?,
        feedback: if feedback.is_empty() {
            Vec::new()
        } else {
            feedback
                .split(FEEDBACK_SEPARATOR)
                .map(str::to_string)
                .collect()
        },
        reason: r.opt_text("reason")?,
        at: r.time("at")?,
    })
}

fn guidance_from_row(r: &Row) -> Result<GuidanceRow, StoreError> {
    let state = r.text("state")?;
    Ok(GuidanceRow {
        id: r.int("id")?,
        project: r.text("project")?,
        proposal: r.text("proposal")?,
        summary: r.text("summary")?,
        diff: r.text("diff")?,
        state: GuidanceState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("guidance state {state:?}")))?,
        decided_by: r.opt_text("decided_by")?,
        result: r.opt_text("result")?,
        created_at: r.time("created_at")?,
        decided_at: r.opt_time("decided_at")?,
    })
}
