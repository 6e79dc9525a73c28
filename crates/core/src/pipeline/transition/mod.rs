//! `apply`: one journal event moves a job from one state to the next. One `match` over
//! (stage, event), with every pair that does not fit listed explicitly as invalid.

use super::{
    AgentStage, AngleReview, FEEDBACK_ATTEMPTS, Feedback, FeedbackKind, FeedbackResult,
    InvalidEvent, JobEvent, JobState, Stage, StageCost, StageRun, StopKind,
};
use crate::triage::Bucket;

mod follow_up;
mod steps;

use follow_up::*;
use steps::*;

/// Start a feedback round on `items`, or wait in review when there is nothing to do. Rounds
/// started only by failed checks are capped at `max_rounds` in a row, so a check that the agent
/// cannot make pass does not loop forever; feedback from a person resets the count.
fn start_round(mut s: JobState, items: Vec<Feedback>) -> JobState {
    let checks_only = items.iter().all(|f| f.kind == FeedbackKind::CheckFailed);
    if items.is_empty() || (checks_only && s.check_rounds >= s.max_rounds) {
        // On the local forge nothing follows the PR: the job is done again until its next
        // merge attempt.
        s.stage = if s.follow_pr {
            Stage::InReview
        } else {
            Stage::Done
        };
        return s;
    }
    s.check_rounds = if checks_only { s.check_rounds + 1 } else { 0 };
    s.feedback_round += 1;
    s.feedback = items;
    s.feedback_attempts = 0;
    s.feedback_result = None;
    s.stage = Stage::FeedbackPrepare;
    s
}

/// Where a job goes once a PR is open and nothing runs: close, the next round, or review.
fn settle(mut s: JobState) -> JobState {
    if let Some(merged) = s.pr_closed.take() {
        s.merged = Some(merged);
        s.stage = Stage::AnnouncePrClosed;
        return s;
    }
    let pending = std::mem::take(&mut s.pending_feedback);
    start_round(s, pending)
}

/// Stages after the PR exists in which feedback and closing are recorded for later.
fn pr_open(stage: Stage) -> bool {
    matches!(
        stage,
        Stage::CreateBacklog | Stage::AnnounceShipped | Stage::Cleanup
    ) || stage.is_feedback()
}

fn feedback_failed(mut s: JobState, reason: String) -> JobState {
    s.feedback_result = Some(FeedbackResult::Failed { reason });
    s.stage = Stage::FeedbackReply;
    s
}

/// The terminal stage a stopped job ends in.
fn stopped_stage(kind: Option<StopKind>) -> Stage {
    match kind {
        Some(StopKind::Rejected) => Stage::Rejected,
        Some(StopKind::Cancelled) => Stage::Cancelled,
        Some(StopKind::NeedsAttention) | None => Stage::NeedsAttention,
    }
}

fn stop(mut s: JobState, kind: StopKind, reason: String) -> JobState {
    s.stop = Some(kind);
    s.reason = Some(reason);
    s.stage = Stage::Snapshot;
    s
}

/// The names of the gates that failed, comma-separated.
fn failing_names(gates: &[super::GateResult]) -> String {
    gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn record_cost(s: &mut JobState, stage: AgentStage, round: u32, run: &StageRun) {
    s.usage += run.usage;
    s.cost_usd += run.cost_usd;
    s.costs.push(StageCost {
        stage,
        round,
        angle: run.angle.clone(),
        agent: run.agent.clone(),
        model: run.model.clone(),
        usage: run.usage,
        cost_usd: run.cost_usd,
    });
}

fn agent_reason(stage: AgentStage, run: &StageRun) -> String {
    let angle = run
        .angle
        .as_ref()
        .map(|a| format!(" [{a}]"))
        .unwrap_or_default();
    format!(
        "{}{angle} agent ({}): {}",
        stage.as_str(),
        run.agent,
        run.outcome.describe()
    )
}

fn unreadable(stage: AgentStage, run: &StageRun, why: &str) -> String {
    let angle = run
        .angle
        .as_ref()
        .map(|a| format!(" [{a}]"))
        .unwrap_or_default();
    format!(
        "{}{angle} output could not be read after one repair request: {why}",
        stage.as_str()
    )
}

/// Apply one journal event to a state.
pub fn apply(state: &JobState, event: &JobEvent) -> Result<JobState, InvalidEvent> {
    let invalid = || InvalidEvent {
        stage: state.stage.as_str(),
        event: event.name().into(),
    };
    let mut s = state.clone();

    // Feedback and closing come from outside and may arrive while an effect runs: they do not
    // complete the pending effect.
    match event {
        JobEvent::FeedbackReceived { feedback } => {
            return feedback_received(s, feedback).ok_or_else(invalid);
        }
        JobEvent::PrClosed { merged, .. } => return pr_closed(s, *merged).ok_or_else(invalid),
        // A sub-job reports while its parent may be running an effect.
        JobEvent::SubtaskFinished { id, result, job } => {
            return subtask_finished(s, id, result, *job).ok_or_else(invalid);
        }
        _ => {}
    }

    // A cancel may arrive while an effect runs (its owner is fenced off): the job stops.
    if let JobEvent::Cancelled { by } = event {
        if !s.stage.is_cancellable() {
            return Err(invalid());
        }
        s.starts_in_stage = 0;
        return Ok(stop(s, StopKind::Cancelled, format!("cancelled by {by}")));
    }

    if let JobEvent::EffectStarted { .. } = event {
        if s.stage.is_terminal()
            || matches!(
                s.stage,
                Stage::AwaitingApproval | Stage::InReview | Stage::AwaitingAcceptance
            )
        {
            return Err(invalid());
        }
        s.starts_in_stage += 1;
        return Ok(s);
    }
    // Any other event completes the pending effect.
    s.starts_in_stage = 0;

    if let JobEvent::EffectFailed { effect, error } = event {
        return effect_failed(s, effect, error).ok_or_else(invalid);
    }

    use AgentStage as A;
    use JobEvent as E;
    // The stage graph: which event completes which stage. Each handler says where it leads.
    s = match (s.stage, event) {
        (Stage::Acknowledge, E::TicketUpdated { .. }) => {
            let next = if s.refine.is_some() {
                Stage::Start
            } else {
                Stage::Readiness
            };
            goto(s, next)
        }
        (Stage::AnnounceSpec, E::TicketUpdated { .. }) => spec_announced(s),
        (Stage::AwaitingAcceptance, E::Accepted { by }) => {
            s.approved_by = Some(by.clone());
            let split = s.spec.as_ref().is_some_and(|sp| !sp.split.is_empty());
            goto(
                s,
                if split {
                    Stage::CreateSplit
                } else {
                    Stage::QueueBuild
                },
            )
        }
        // Nothing was built or split yet: the job simply ends, and its successor refines.
        (Stage::AwaitingAcceptance, E::Superseded { .. }) => goto(s, Stage::Done),
        (Stage::CreateSplit, E::SplitCreated { tickets }) => {
            s.split_tickets = tickets.clone();
            goto(s, Stage::Done)
        }
        (Stage::QueueBuild, E::BuildQueued) => {
            s.build_queued = true;
            goto(s, Stage::Done)
        }
        (
            Stage::Readiness,
            E::AgentFinished {
                stage: A::Readiness,
                run,
                ..
            },
        ) => readiness(s, run),
        (Stage::AnnounceNeedsInput, E::TicketUpdated { .. }) => goto(s, Stage::NeedsInput),
        (Stage::Start, E::TicketUpdated { .. }) => goto(s, Stage::Prepare),
        (Stage::Prepare, E::WorkspaceReady { .. }) => workspace_ready(s, event),
        (
            Stage::Research,
            E::AgentFinished {
                stage: A::Research,
                run,
                ..
            },
        ) => research(s, run),
        (
            Stage::Plan,
            E::AgentFinished {
                stage: A::Plan,
                run,
                ..
            },
        ) => plan(s, run),
        (Stage::PostPlan, E::TicketUpdated { .. }) => {
            let next = if s.graph.is_some() {
                Stage::AwaitingChildren
            } else {
                Stage::Implement
            };
            goto(s, next)
        }
        (Stage::AwaitingChildren, E::SubtasksStarted { children }) => {
            for c in children {
                if !s.children.iter().any(|have| have.id == c.id) {
                    s.children.push(c.clone());
                }
            }
            children_blocked(s)
        }
        (Stage::AwaitingChildren, E::Stacked { entries, commit }) => {
            s.stack = entries.clone();
            s.commit = Some(commit.clone());
            goto(s, Stage::Gates)
        }
        (Stage::AwaitingApproval, E::SubtaskRejected { rework }) => subtask_rejected(s, rework)?,
        (Stage::AwaitingChildren, E::SubtaskReworkSent { id }) => {
            s.rework.retain(|r| &r.id != id);
            s
        }
        (Stage::AwaitingApproval, E::Reworked { reason, by }) if s.subtask.is_some() => {
            reworked(s, reason, by)
        }
        (Stage::ReportToParent, E::ParentTold { .. }) => {
            let end = if s.stop.is_some() {
                stopped_stage(s.stop)
            } else {
                Stage::AwaitingApproval
            };
            goto(s, end)
        }
        // Shipped while it was still telling its parent it was ready: nothing left to tell.
        (
            Stage::AwaitingApproval | Stage::ReportToParent,
            E::ShippedWithParent {
                parent,
                pr,
                branch,
                number,
                url,
            },
        ) if s.subtask.is_some() && s.stop.is_none() => {
            s.pr = Some(*pr);
            s.pr_number = *number;
            s.pr_url = url.clone();
            s.branch = Some(branch.clone());
            s.approved_by = Some(format!("the approval of {parent}"));
            // Announced on its own ticket; on an outside forge it then follows its PR.
            goto(s, Stage::AnnounceShipped)
        }
        (
            Stage::Implement,
            E::AgentFinished {
                stage: A::Implement,
                run,
                ..
            },
        ) => implement(s, run),
        (Stage::Gates, E::GatesFinished { round, gates }) if *round == s.round => gated(s, gates),
        (Stage::PlanReview, E::ReviewPlanned { plan }) if plan.round == s.round => planned(s, plan),
        (
            Stage::Review,
            E::AgentFinished {
                stage: A::Review,
                round,
                run,
            },
        ) if *round == s.round && is_next_angle(&s, run) => reviewed(s, *round, run),
        (
            Stage::Triage,
            E::AgentFinished {
                stage: A::Triage,
                round,
                run,
            },
        ) if *round == s.round => triaged(s, *round, run),
        (
            Stage::Fix,
            E::AgentFinished {
                stage: A::Fix,
                round,
                run,
            },
        ) if *round == s.round + 1 => fixed(s, *round, run),
        (Stage::Commit, E::Committed { commit }) => committed(s, commit),
        (Stage::Propose, E::Proposed { proposal }) => proposed(s, proposal),
        (Stage::AnnounceProposal, E::TicketUpdated { .. }) => {
            let next = if s.subtask.is_some() {
                Stage::ReportToParent
            } else {
                Stage::AwaitingApproval
            };
            goto(s, next)
        }
        (Stage::AwaitingApproval, E::Approved { commit, by }) => approved(s, commit, by)?,
        (Stage::AwaitingApproval, E::Rejected { reason, by }) => {
            stop(s, StopKind::Rejected, format!("rejected by {by}: {reason}"))
        }
        (Stage::Push, E::Pushed { .. }) => goto(s, Stage::RecordPr),
        (Stage::RecordPr, E::PrRecorded { pr, number, url }) => pr_recorded(s, *pr, *number, url),
        (Stage::CreateBacklog, E::BacklogCreated { tickets }) => backlog_created(s, tickets),
        (Stage::AnnounceShipped, E::TicketUpdated { .. }) => goto(s, Stage::Cleanup),
        (Stage::Cleanup, E::CleanedUp { .. }) => shipped_and_cleaned(s),
        (Stage::FeedbackPrepare, E::FeedbackWorkspaceReady { worktree, head }) => {
            feedback_ready(s, worktree, head)
        }
        (
            Stage::FeedbackFix,
            E::AgentFinished {
                stage: A::Fix,
                round,
                run,
            },
        ) if *round == s.round + 1 => feedback_fixed(s, *round, run),
        (Stage::FeedbackGates, E::GatesFinished { round, gates }) if *round == s.round => {
            feedback_gated(s, gates)
        }
        (Stage::FeedbackCommit, E::Committed { commit }) => feedback_committed(s, commit),
        (Stage::FeedbackPush, E::Pushed { commit, .. }) => feedback_pushed(s, commit),
        (Stage::FeedbackReply, E::FeedbackReplied { round }) if *round == s.feedback_round => {
            goto(s, Stage::FeedbackCleanup)
        }
        (Stage::FeedbackCleanup, E::CleanedUp { .. }) => {
            s.feedback.clear();
            settle(s)
        }
        (Stage::AnnouncePrClosed, E::TicketUpdated { .. }) => goto(s, Stage::FinalCleanup),
        (Stage::FinalCleanup, E::CleanedUp { .. }) => goto(s, Stage::Done),
        (Stage::Snapshot, E::Snapshotted { wip_ref, commit }) => snapshotted(s, wip_ref, commit),
        (Stage::AnnounceStop, E::TicketUpdated { .. }) => goto(s, Stage::CleanupStopped),
        (Stage::CleanupStopped, E::CleanedUp { .. }) => {
            let end = if s.subtask.is_some() {
                Stage::ReportToParent
            } else {
                stopped_stage(s.stop)
            };
            goto(s, end)
        }
        // Listed in full (no catch-all arm) so a new stage or event must be placed explicitly.
        (
            Stage::Acknowledge
            | Stage::Readiness
            | Stage::AnnounceNeedsInput
            | Stage::NeedsInput
            | Stage::Start
            | Stage::Prepare
            | Stage::Research
            | Stage::Plan
            | Stage::PostPlan
            | Stage::Implement
            | Stage::Gates
            | Stage::PlanReview
            | Stage::Review
            | Stage::Triage
            | Stage::Fix
            | Stage::Commit
            | Stage::Propose
            | Stage::AnnounceProposal
            | Stage::AwaitingApproval
            | Stage::AwaitingChildren
            | Stage::ReportToParent
            | Stage::AnnounceSpec
            | Stage::AwaitingAcceptance
            | Stage::CreateSplit
            | Stage::QueueBuild
            | Stage::Push
            | Stage::RecordPr
            | Stage::CreateBacklog
            | Stage::AnnounceShipped
            | Stage::Cleanup
            | Stage::InReview
            | Stage::FeedbackPrepare
            | Stage::FeedbackFix
            | Stage::FeedbackGates
            | Stage::FeedbackCommit
            | Stage::FeedbackPush
            | Stage::FeedbackReply
            | Stage::FeedbackCleanup
            | Stage::AnnouncePrClosed
            | Stage::FinalCleanup
            | Stage::Done
            | Stage::Snapshot
            | Stage::AnnounceStop
            | Stage::CleanupStopped
            | Stage::NeedsAttention
            | Stage::Rejected
            | Stage::Cancelled,
            JobEvent::Created { .. }
            | JobEvent::EffectStarted { .. }
            | JobEvent::EffectFailed { .. }
            | JobEvent::TicketUpdated { .. }
            | JobEvent::WorkspaceReady { .. }
            | JobEvent::AgentFinished { .. }
            | JobEvent::GatesFinished { .. }
            | JobEvent::ReviewPlanned { .. }
            | JobEvent::Committed { .. }
            | JobEvent::Proposed { .. }
            | JobEvent::Approved { .. }
            | JobEvent::Rejected { .. }
            | JobEvent::Pushed { .. }
            | JobEvent::PrRecorded { .. }
            | JobEvent::BacklogCreated { .. }
            | JobEvent::Snapshotted { .. }
            | JobEvent::CleanedUp { .. }
            | JobEvent::FeedbackReceived { .. }
            | JobEvent::PrClosed { .. }
            | JobEvent::FeedbackWorkspaceReady { .. }
            | JobEvent::FeedbackReplied { .. }
            | JobEvent::Cancelled { .. }
            | JobEvent::SubtasksStarted { .. }
            | JobEvent::SubtaskFinished { .. }
            | JobEvent::Stacked { .. }
            | JobEvent::ParentTold { .. }
            | JobEvent::ShippedWithParent { .. }
            | JobEvent::SubtaskRejected { .. }
            | JobEvent::SubtaskReworkSent { .. }
            | JobEvent::Reworked { .. }
            | JobEvent::Accepted { .. }
            | JobEvent::Superseded { .. }
            | JobEvent::SplitCreated { .. }
            | JobEvent::BuildQueued,
        ) => return Err(invalid()),
    };
    Ok(s)
}
