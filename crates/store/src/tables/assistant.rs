//! The assistant's turns and drafts: a turn and its drafts written in one transaction; a draft
//! claimed by one saver at a time and given its ticket once.

use chrono::{DateTime, TimeDelta, Utc};

use crate::StoreError;
use crate::assistant::{
    AssistantConversation, AssistantDraft, AssistantTurn, DraftClaim, NewAssistantTurn,
};
use crate::sql::{Db, Row, q};

/// A claim older than this was left by a saver that died: it may be taken over.
const CLAIM_FOR: TimeDelta = TimeDelta::minutes(2);

impl Db {
    pub async fn add_assistant_turn(
        &self,
        new: &NewAssistantTurn<'_>,
        now: DateTime<Utc>,
    ) -> Result<AssistantTurn, StoreError> {
        let mut tx = self.write().await?;
        let id = atomically!(tx, {
            let row = q("INSERT INTO assistant_turns
                   (conversation, project, asked_by, question, answer, cost_usd, error, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id")
            .bind(new.conversation)
            .bind(new.project)
            .bind(new.asked_by)
            .bind(new.question)
            .bind(new.answer)
            .bind(new.cost_usd)
            .bind(new.error)
            .bind(now)
            .fetch_one(&mut tx)
            .await?;
            let id = row.int("id")?;
            for (n, (title, body)) in new.drafts.iter().enumerate() {
                q("INSERT INTO assistant_drafts (turn_id, n, title, body) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(n as i64 + 1)
                    .bind(title.as_str())
                    .bind(body.as_str())
                    .execute(&mut tx)
                    .await?;
            }
            Ok(id)
        })?;
        self.assistant_turn(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("assistant turn {id} vanished")))
    }

    pub async fn assistant_turn(&self, id: i64) -> Result<Option<AssistantTurn>, StoreError> {
        let row = q("SELECT * FROM assistant_turns WHERE id = $1")
            .bind(id)
            .fetch_optional(self.writer())
            .await?;
        match row {
            Some(r) => Ok(Some(self.turn_with_drafts(&r).await?)),
            None => Ok(None),
        }
    }

    /// A conversation's turns, first asked first.
    pub async fn assistant_turns(
        &self,
        conversation: &str,
    ) -> Result<Vec<AssistantTurn>, StoreError> {
        let rows = q("SELECT * FROM assistant_turns WHERE conversation = $1 ORDER BY id")
            .bind(conversation)
            .fetch_all(self.read())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.turn_with_drafts(r).await?);
        }
        Ok(out)
    }

    /// A project's conversations (or every project's), last used first.
    pub async fn assistant_conversations(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<AssistantConversation>, StoreError> {
        let rows = q(
            "SELECT t.conversation, MIN(t.project) AS project, COUNT(*) AS turns,
                    SUM(t.cost_usd) AS cost_usd, MAX(t.at) AS last_at,
                    (SELECT f.question FROM assistant_turns f
                      WHERE f.conversation = t.conversation ORDER BY f.id LIMIT 1) AS first_question
             FROM assistant_turns t
             WHERE ($1::text IS NULL OR t.project = $1)
             GROUP BY t.conversation
             ORDER BY MAX(t.id) DESC",
        )
        .bind(project)
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AssistantConversation {
                    conversation: r.text("conversation")?,
                    project: r.text("project")?,
                    first_question: r.text("first_question")?,
                    turns: r.int("turns")?,
                    cost_usd: r.real("cost_usd")?,
                    last_at: r.time("last_at")?,
                })
            })
            .collect()
    }

    /// Claim draft `n` of turn `turn` for saving: one saver at a time, never once it is saved.
    pub async fn claim_assistant_draft(
        &self,
        turn: i64,
        n: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<DraftClaim>, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let Some(row) = q("SELECT * FROM assistant_drafts WHERE turn_id = $1 AND n = $2")
                .bind(turn)
                .bind(n)
                .fetch_optional(&mut tx)
                .await?
            else {
                return Ok(None);
            };
            let draft = draft_from_row(&row)?;
            if let Some(ticket) = draft.ticket {
                return Ok(Some(DraftClaim::Saved(ticket)));
            }
            if row
                .opt_time("claimed_at")?
                .is_some_and(|at| at > now - CLAIM_FOR)
            {
                return Ok(Some(DraftClaim::Busy));
            }
            q("UPDATE assistant_drafts SET claimed_at = $3 WHERE turn_id = $1 AND n = $2")
                .bind(turn)
                .bind(n)
                .bind(now)
                .execute(&mut tx)
                .await?;
            Ok(Some(DraftClaim::Claimed(draft)))
        })
    }

    /// Record the ticket a claimed draft became.
    pub async fn saved_assistant_draft(
        &self,
        turn: i64,
        n: i64,
        ticket: &str,
    ) -> Result<(), StoreError> {
        q("UPDATE assistant_drafts SET ticket = $3, claimed_at = NULL
           WHERE turn_id = $1 AND n = $2 AND ticket IS NULL")
        .bind(turn)
        .bind(n)
        .bind(ticket)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn turn_with_drafts(&self, r: &Row) -> Result<AssistantTurn, StoreError> {
        let id = r.int("id")?;
        let drafts = q("SELECT * FROM assistant_drafts WHERE turn_id = $1 ORDER BY n")
            .bind(id)
            .fetch_all(self.writer())
            .await?
            .iter()
            .map(draft_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AssistantTurn {
            id,
            conversation: r.text("conversation")?,
            project: r.text("project")?,
            asked_by: r.text("asked_by")?,
            question: r.text("question")?,
            answer: r.text("answer")?,
            cost_usd: r.real("cost_usd")?,
            error: r.opt_text("error")?,
            at: r.time("at")?,
            drafts,
        })
    }
}

fn draft_from_row(r: &Row) -> Result<AssistantDraft, StoreError> {
    Ok(AssistantDraft {
        n: r.int("n")?,
        title: r.text("title")?,
        body: r.text("body")?,
        ticket: r.opt_text("ticket")?,
    })
}
