//! Executing effects. Each one looks before it acts, so running it twice (after a crash) leaves
//! the same result as running it once. Failures the job cannot recover from become
//! `EffectFailed` events; only store and journal problems are errors.

mod proposal;
mod ticket;
mod workspace;

use codemill_core::ids::JobId;
use codemill_core::pipeline::{Effect, JobEvent, JobState};
use codemill_git::Identity;
use codemill_store::{JournalEntry, Ticket};

use crate::agents::Step;
use crate::engine::{RunError, Runner};

pub(crate) fn failed(effect: &Effect, error: impl std::fmt::Display) -> JobEvent {
    JobEvent::EffectFailed {
        effect: effect.name(),
        error: error.to_string(),
    }
}

impl Runner {
    pub(crate) fn identity(&self) -> Identity {
        Identity {
            name: self.config.author_name.clone(),
            email: self.config.author_email.clone(),
        }
    }

    pub(crate) async fn execute(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
        ticket: &Ticket,
        effect: &Effect,
    ) -> Result<JobEvent, RunError> {
        Ok(match effect {
            Effect::UpdateTicket { status, note } => {
                self.update_ticket(job, state, *status, *note).await?
            }
            Effect::PrepareWorkspace => match self.remote_git(state).await {
                Ok(git) => self.prepare_workspace(&git, job, state, effect).await,
                Err(e) => return self.outside_failure(state, effect, e),
            },
            Effect::RunAgent {
                stage,
                round,
                resume,
                angle,
            } => {
                self.run_agent(Step {
                    job,
                    state,
                    ticket,
                    effect,
                    stage: *stage,
                    round: *round,
                    resume: resume.clone(),
                    angle: angle.clone(),
                })
                .await?
            }
            Effect::PlanReview { round } => self.plan_review(job, state, effect, *round).await,
            Effect::CreateBacklogTickets => self.create_backlog(job, state, ticket).await?,
            Effect::RunGates { round } => self.gates(job, state, effect, *round).await,
            Effect::Commit => self.commit(job, state, ticket, effect).await,
            Effect::Propose => self.propose(state, journal, ticket, effect).await,
            Effect::Push { commit } => {
                let branch = state.ticket.branch();
                let clone = self.home.clone_dir(state.ticket.project());
                let git = match self.remote_git(state).await {
                    Ok(git) => git,
                    Err(e) => return self.outside_failure(state, effect, e),
                };
                match git.push(&clone, commit, &branch).await {
                    Ok(()) => JobEvent::Pushed {
                        commit: commit.clone(),
                        branch,
                    },
                    Err(e) => failed(effect, e),
                }
            }
            Effect::RecordPr { commit } => self.record_pr(state, ticket, commit).await?,
            Effect::SnapshotWip => self.snapshot(job, state, effect).await,
            Effect::Cleanup { stopped } => self.cleanup(state, *stopped).await,
            Effect::PrepareFeedback { .. } => match self.remote_git(state).await {
                Ok(git) => self.prepare_feedback(&git, state, effect).await,
                Err(e) => return self.outside_failure(state, effect, e),
            },
            Effect::ReplyFeedback { round } => {
                self.reply_feedback(job, state, journal, effect, *round)
                    .await?
            }
        })
    }

    /// The project's outside clients; an unusable setting (missing credential) is the job's
    /// failure, not a crash.
    pub(crate) fn outside(&self, state: &JobState) -> Result<crate::outside::Outside, String> {
        match self.config.projects.get(state.ticket.project()) {
            Some(p) => self.outside.get(p),
            None => Ok(crate::outside::Outside::default()),
        }
    }

    /// A failure of an outside system: transient ones (rate limits, 5xx, timeouts) leave the
    /// effect to be retried later by the queue; others fail the effect.
    pub(crate) fn outside_failure(
        &self,
        state: &JobState,
        effect: &Effect,
        e: codemill_trackers::Error,
    ) -> Result<JobEvent, RunError> {
        if e.is_transient() {
            Err(RunError::Outside {
                project: state.ticket.project().to_string(),
                message: e.to_string(),
            })
        } else {
            Ok(failed(effect, e))
        }
    }
}
