//! The assistant's turns and drafts: a turn and its drafts written in one transaction; a draft
//! claimed by one saver at a time and given its ticket once.

use chrono::{DateTime, TimeDelta, Utc};

use crate::StoreError;
use crate::assistant::{
    Answer, AssistantConversation, AssistantDraft, AssistantTurn, DraftClaim, NewAssistantTurn,
    NewQuestion,
};
use crate::sql::{Db, Row, Tx, q};

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
                   (conversation, project, asked_by, question, answer, cost_usd, error, state, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'answered', $8) RETURNING id")
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
            insert_drafts(&mut tx, id, new.drafts).await?;
            Ok(id)
        })?;
        self.assistant_turn(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("assistant turn {id} vanished")))
    }

    /// Record a question to be answered: pending, and claimed by its asker when given.
    pub async fn ask_assistant(
        &self,
        new: &NewQuestion<'_>,
        now: DateTime<Utc>,
    ) -> Result<AssistantTurn, StoreError> {
        let (owner, until) = match new.claim {
            Some((o, u)) => (Some(o), Some(u)),
            None => (None, None),
        };
        let row = q("INSERT INTO assistant_turns
               (conversation, project, asked_by, question, answer, cost_usd, state,
                claimed_by, claimed_until, at)
             VALUES ($1, $2, $3, $4, '', 0, 'pending', $5, $6, $7) RETURNING id")
        .bind(new.conversation)
        .bind(new.project)
        .bind(new.asked_by)
        .bind(new.question)
        .bind(owner)
        .bind(until)
        .bind(now)
        .fetch_one(self.writer())
        .await?;
        let id = row.int("id")?;
        self.assistant_turn(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("assistant turn {id} vanished")))
    }

    /// Claim the oldest pending question nobody holds (or whose claim ran out) for `owner`
    /// until `until`.
    pub async fn claim_assistant_turn(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<AssistantTurn>, StoreError> {
        let mut tx = self.write().await?;
        let claimed = atomically!(tx, {
            let Some(row) = q("SELECT id FROM assistant_turns
                  WHERE state = 'pending' AND (claimed_until IS NULL OR claimed_until < $1)
                  ORDER BY id LIMIT 1")
            .bind(now)
            .fetch_optional(&mut tx)
            .await?
            else {
                return Ok(None);
            };
            let id = row.int("id")?;
            let taken = q(
                "UPDATE assistant_turns SET claimed_by = $2, claimed_until = $3
                  WHERE id = $1 AND state = 'pending'
                    AND (claimed_until IS NULL OR claimed_until < $4)",
            )
            .bind(id)
            .bind(owner)
            .bind(until)
            .bind(now)
            .execute(&mut tx)
            .await?;
            Ok((taken == 1).then_some(id))
        })?;
        match claimed {
            Some(id) => self.assistant_turn(id).await,
            None => Ok(None),
        }
    }

    /// Answer a question `owner` claimed; `None` when it no longer holds it (another process
    /// took over after its claim ran out, or it was answered).
    pub async fn answer_assistant(
        &self,
        id: i64,
        owner: &str,
        answer: &Answer<'_>,
    ) -> Result<Option<AssistantTurn>, StoreError> {
        let mut tx = self.write().await?;
        let answered = atomically!(tx, {
            let updated = q("UPDATE assistant_turns
                  SET answer = $3, cost_usd = $4, error = $5, state = 'answered',
                      claimed_by = NULL, claimed_until = NULL
                  WHERE id = $1 AND state = 'pending' AND claimed_by = $2")
            .bind(id)
            .bind(owner)
            .bind(answer.answer)
            .bind(answer.cost_usd)
            .bind(answer.error)
            .execute(&mut tx)
            .await?;
            if updated == 1 {
                insert_drafts(&mut tx, id, answer.drafts).await?;
            }
            Ok(updated == 1)
        })?;
        if answered {
            self.assistant_turn(id).await
        } else {
            Ok(None)
        }
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
            pending: r.text("state")? == "pending",
            at: r.time("at")?,
            drafts,
        })
    }
}

async fn insert_drafts(
    tx: &mut Tx,
    turn: i64,
    drafts: &[(String, String)],
) -> Result<(), StoreError> {
    for (n, (title, body)) in drafts.iter().enumerate() {
        q("INSERT INTO assistant_drafts (turn_id, n, title, body) VALUES ($1, $2, $3, $4)")
            .bind(turn)
            .bind(n as i64 + 1)
            .bind(title.as_str())
            .bind(body.as_str())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

fn draft_from_row(r: &Row) -> Result<AssistantDraft, StoreError> {
    Ok(AssistantDraft {
        n: r.int("n")?,
        title: r.text("title")?,
        body: r.text("body")?,
        ticket: r.opt_text("ticket")?,
    })
}
