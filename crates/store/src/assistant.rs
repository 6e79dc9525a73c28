//! The product-owner assistant's conversations as the store keeps them: turns (a question, its
//! answer, cost and error) and the ticket drafts an answer proposed, each saved at most once.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantTurn {
    pub id: i64,
    pub conversation: String,
    pub project: String,
    pub asked_by: String,
    pub question: String,
    pub answer: String,
    pub cost_usd: f64,
    /// Why there is no (full) answer: the budget, the agent, the sandbox.
    pub error: Option<String>,
    /// Asked and not answered yet.
    pub pending: bool,
    pub at: DateTime<Utc>,
    pub drafts: Vec<AssistantDraft>,
}

/// A question to answer later (by whoever claims it, or by `claim`'s owner).
#[derive(Debug, Clone)]
pub struct NewQuestion<'a> {
    pub conversation: &'a str,
    pub project: &'a str,
    pub asked_by: &'a str,
    pub question: &'a str,
    /// Claimed at once by this owner until this time: the asker answers it itself.
    pub claim: Option<(&'a str, DateTime<Utc>)>,
}

/// An answer to record on a claimed question.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub answer: &'a str,
    pub cost_usd: f64,
    pub error: Option<&'a str>,
    /// Title and body of each draft, in order.
    pub drafts: &'a [(String, String)],
}

/// A ticket an answer drafted; `ticket` once it is saved to the tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssistantDraft {
    pub n: i64,
    pub title: String,
    pub body: String,
    pub ticket: Option<String>,
}

/// A turn to record.
#[derive(Debug, Clone)]
pub struct NewAssistantTurn<'a> {
    pub conversation: &'a str,
    pub project: &'a str,
    pub asked_by: &'a str,
    pub question: &'a str,
    pub answer: &'a str,
    pub cost_usd: f64,
    pub error: Option<&'a str>,
    /// Title and body of each draft, in order.
    pub drafts: &'a [(String, String)],
}

/// A conversation as listed: its first question, when it was last used, and its spend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantConversation {
    pub conversation: String,
    pub project: String,
    pub first_question: String,
    pub turns: i64,
    pub cost_usd: f64,
    pub last_at: DateTime<Utc>,
}

/// What a claim on a draft found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftClaim {
    /// This caller saves it now.
    Claimed(AssistantDraft),
    /// Saved before, as this ticket.
    Saved(String),
    /// Someone else is saving it this moment.
    Busy,
}
