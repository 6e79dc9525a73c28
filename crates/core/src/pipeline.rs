//! The pipeline of one job as a closed set of stages and a pure transition function.
//!
//! Job state is never stored: it is the fold of the job's journal through [`apply`]. What to do
//! next is [`next_action`] of that state. The runner executes the action's effect, journals the
//! resulting [`JobEvent`], and folds again, so a crash anywhere replays to the same pending effect
//! and every effect must be safe to run twice.

mod effect;
mod events;
mod stage;
mod state;
mod transition;

pub use effect::{Effect, NoteKind, note_name};
pub use events::{
    Feedback, FeedbackKind, GateResult, JobEvent, Proposal, Readiness, ReviewPlan, StageRun,
};
pub use stage::{AgentStage, Stage, TicketStatus};
pub use state::{AngleReview, FeedbackResult, JobState, StageCost, StopKind};
pub use transition::apply;

/// An effect interrupted this many times (crash, kill) stops the job instead of looping.
pub const MAX_EFFECT_STARTS: u32 = 3;

/// The label a ticket gets while codemill waits for answers to its questions.
pub const NEEDS_INPUT_LABEL: &str = "codemill:needs-input";

/// Fix attempts (agent plus gates) within one feedback round before giving up on it.
pub const FEEDBACK_ATTEMPTS: u32 = 2;

/// An event that does not fit the job's current stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event `{event}` does not apply to a job in stage `{stage}`")]
pub struct InvalidEvent {
    pub stage: &'static str,
    pub event: String,
}

/// What the runner should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Run(Effect),
    /// The pending effect was interrupted too often: record it as failed.
    GiveUp {
        effect: String,
        reason: String,
    },
    /// Nothing to do until a human approves or rejects.
    AwaitApproval,
    /// Nothing to do until the PR gets feedback or is closed.
    AwaitPr,
    /// Nothing to do until a sub-job ends.
    AwaitChildren,
    Finished,
}

/// The result of one transition: the next state and the effects it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub next: JobState,
    pub effects: Vec<Effect>,
}

/// Decide what the runner does next for a job in `state`.
pub fn next_action(state: &JobState) -> Action {
    if state.stage.is_terminal() {
        return Action::Finished;
    }
    match state.pending_effect() {
        None if matches!(
            state.stage,
            Stage::AwaitingApproval | Stage::AwaitingAcceptance
        ) =>
        {
            Action::AwaitApproval
        }
        None if state.stage == Stage::InReview => Action::AwaitPr,
        None if state.stage == Stage::AwaitingChildren => Action::AwaitChildren,
        None => Action::GiveUp {
            effect: state.stage.as_str().into(),
            reason: format!(
                "stage {} has nothing to run (internal state error)",
                state.stage.as_str()
            ),
        },
        Some(effect) if state.starts_in_stage >= MAX_EFFECT_STARTS => Action::GiveUp {
            reason: format!(
                "`{}` was interrupted {} times without finishing; stopping instead of retrying forever",
                effect.name(),
                state.starts_in_stage
            ),
            effect: effect.name(),
        },
        Some(effect) => Action::Run(effect),
    }
}

/// The pure transition function: the next state and the effects it asks for.
pub fn step(state: &JobState, event: &JobEvent) -> Result<Transition, InvalidEvent> {
    let next = apply(state, event)?;
    let effects = next.pending_effect().into_iter().collect();
    Ok(Transition { next, effects })
}

#[cfg(test)]
mod tests;
