//! The seam to whoever may change job state: the server asks, the runner decides and journals.
//! The server crate does not depend on the runner; `codemill serve` plugs the runner's
//! implementation in as an `Arc<dyn Control>`.

use std::future::Future;
use std::pin::Pin;

use codemill_core::ids::{JobId, TicketKey};

/// The boxed future each [`Control`] method returns (boxed so the trait is object safe).
pub type ControlFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ControlError>> + Send + 'a>>;

/// State changes a person asks for through the API. Each returns the job it acted on. They
/// should record the decision and return; the work (shipping, re-running) belongs to a worker,
/// not to the HTTP request.
pub trait Control: Send + Sync + 'static {
    /// Approve the proposal awaiting approval on `ticket`; `by` names the API token.
    fn approve<'a>(
        &'a self,
        ticket: &'a TicketKey,
        by: &'a str,
        seen: Option<&'a str>,
    ) -> ControlFuture<'a, JobId>;
    /// Reject the proposal awaiting approval on `ticket` with a reason.
    fn reject<'a>(
        &'a self,
        ticket: &'a TicketKey,
        reason: &'a str,
        by: &'a str,
    ) -> ControlFuture<'a, JobId>;
    /// Cancel the ticket's job before its proposal is decided; `by` names the API token.
    fn cancel<'a>(&'a self, ticket: &'a TicketKey, by: &'a str) -> ControlFuture<'a, JobId>;
    /// Run the ticket's stopped or dead job again.
    fn retry<'a>(&'a self, ticket: &'a TicketKey) -> ControlFuture<'a, JobId>;
    /// Accept the refined spec awaiting acceptance on `ticket`. The default refuses: a server
    /// without the runner refines nothing.
    fn accept<'a>(&'a self, ticket: &'a TicketKey, by: &'a str) -> ControlFuture<'a, JobId> {
        let _ = (ticket, by);
        Box::pin(async {
            Err(ControlError::Failed(
                "refinement is not available in this server".into(),
            ))
        })
    }
    /// Put the ticket's approved pull request on its project's merge queue; answers a JSON
    /// summary (the entry and its position). Workers land it. The default refuses: a server
    /// without the runner has no merge queue.
    fn merge<'a>(
        &'a self,
        ticket: &'a TicketKey,
        by: &'a str,
    ) -> ControlFuture<'a, serde_json::Value> {
        let _ = (ticket, by);
        Box::pin(async {
            Err(ControlError::Failed(
                "the merge queue is not available in this server".into(),
            ))
        })
    }
    /// Ask the product-owner assistant about `project` (in `conversation`, or a new one): the
    /// question is recorded and a worker answers it. The default refuses: a server without
    /// the runner has no assistant.
    fn ask_assistant<'a>(
        &'a self,
        project: &'a str,
        conversation: Option<&'a str>,
        question: &'a str,
        by: &'a str,
    ) -> ControlFuture<'a, codemill_store::AssistantTurn> {
        let _ = (project, conversation, question, by);
        Box::pin(async {
            Err(ControlError::Failed(
                "the assistant is not available in this server".into(),
            ))
        })
    }
    /// Save draft `n` of assistant turn `turn` as a ticket in its project's tracker (once);
    /// answers the ticket's key.
    fn save_assistant_draft<'a>(
        &'a self,
        turn: i64,
        n: i64,
        by: &'a str,
    ) -> ControlFuture<'a, String> {
        let _ = (turn, n, by);
        Box::pin(async {
            Err(ControlError::Failed(
                "the assistant is not available in this server".into(),
            ))
        })
    }
    /// Approve (a worker applies it) or reject a guidance proposal.
    fn decide_guidance<'a>(&'a self, id: i64, approve: bool, by: &'a str) -> ControlFuture<'a, ()> {
        let _ = (id, approve, by);
        Box::pin(async {
            Err(ControlError::Failed(
                "learning is not available in this server".into(),
            ))
        })
    }
    /// An event from an outside tracker or forge, verified and read by the webhook handler.
    /// Answers a JSON summary of what was done. The default refuses: a server without the
    /// runner has no trackers.
    fn outside<'a>(&'a self, event: OutsideEvent) -> ControlFuture<'a, serde_json::Value> {
        let _ = event;
        Box::pin(async {
            Err(ControlError::Failed(
                "outside trackers are not available in this server".into(),
            ))
        })
    }
}

/// What an outside webhook asks for, per project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutsideEvent {
    /// An issue may have entered the trigger state; `actor` is who changed it.
    Trigger {
        project: String,
        key: String,
        actor: Option<String>,
    },
    /// Feedback on codemill's PR from branch `head` (empty: look PR `pr` up).
    Feedback {
        project: String,
        head: String,
        pr: u64,
        feedback: codemill_core::pipeline::Feedback,
    },
    /// codemill's PR from `head` was closed.
    PrClosed {
        project: String,
        head: String,
        merged: bool,
        actor: Option<String>,
    },
}

/// Why a state change was refused; the message is shown to the caller as is, so it should name
/// the ticket and the problem (and carry no secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No such ticket, or it has no job (404).
    #[error("{0}")]
    NotFound(String),
    /// The job is in the wrong state for this change (409).
    #[error("{0}")]
    Conflict(String),
    /// Anything else (500).
    #[error("{0}")]
    Failed(String),
}

impl ControlError {
    /// The HTTP status a page or the API answers this refusal with.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
