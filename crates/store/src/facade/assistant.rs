//! The store's assistant conversations: turns with their drafts, and saving a draft once.

use chrono::{DateTime, Utc};

use crate::queue::micros;
use crate::{
    Answer, AssistantConversation, AssistantTurn, DraftClaim, NewAssistantTurn, NewQuestion, Store,
    StoreError,
};

impl Store {
    /// Record a question, its answer and its drafts together.
    pub async fn add_assistant_turn(
        &self,
        new: &NewAssistantTurn<'_>,
        now: DateTime<Utc>,
    ) -> Result<AssistantTurn, StoreError> {
        self.db.add_assistant_turn(new, micros(now)).await
    }

    /// Record a question to answer (claimed by its asker when `claim` is given).
    pub async fn ask_assistant(
        &self,
        new: &NewQuestion<'_>,
        now: DateTime<Utc>,
    ) -> Result<AssistantTurn, StoreError> {
        let claim = new.claim.map(|(o, until)| (o, micros(until)));
        self.db
            .ask_assistant(
                &NewQuestion {
                    claim,
                    ..new.clone()
                },
                micros(now),
            )
            .await
    }

    /// Claim the oldest unclaimed pending question for `owner` until `until`.
    pub async fn claim_assistant_turn(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<AssistantTurn>, StoreError> {
        self.db
            .claim_assistant_turn(owner, micros(until), micros(now))
            .await
    }

    /// Answer a claimed question; `None` when `owner` no longer holds it.
    pub async fn answer_assistant(
        &self,
        id: i64,
        owner: &str,
        answer: &Answer<'_>,
    ) -> Result<Option<AssistantTurn>, StoreError> {
        self.db.answer_assistant(id, owner, answer).await
    }

    pub async fn assistant_turn(&self, id: i64) -> Result<Option<AssistantTurn>, StoreError> {
        self.db.assistant_turn(id).await
    }

    /// A conversation's turns, in the order asked.
    pub async fn assistant_turns(
        &self,
        conversation: &str,
    ) -> Result<Vec<AssistantTurn>, StoreError> {
        self.db.assistant_turns(conversation).await
    }

    /// Conversations of one project or all, last used first.
    pub async fn assistant_conversations(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<AssistantConversation>, StoreError> {
        self.db.assistant_conversations(project).await
    }

    /// Claim a draft for saving (`None`: no such draft).
    pub async fn claim_assistant_draft(
        &self,
        turn: i64,
        n: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<DraftClaim>, StoreError> {
        self.db.claim_assistant_draft(turn, n, micros(now)).await
    }

    /// The ticket a claimed draft became.
    pub async fn saved_assistant_draft(
        &self,
        turn: i64,
        n: i64,
        ticket: &str,
    ) -> Result<(), StoreError> {
        self.db.saved_assistant_draft(turn, n, ticket).await
    }
}
