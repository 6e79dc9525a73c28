//! `apply`: one journal event moves a job from one state to the next. One `match` over
//! (stage, event), with every pair that does not fit listed explicitly as invalid.

use super::{
    AgentStage, AngleReview, FEEDBACK_ATTEMPTS, Feedback, FeedbackKind, FeedbackResult,
    InvalidEvent, JobEvent, JobState, Stage, StageCost, StageRun, StopKind,
};
use crate::triage::Bucket;

/// Start a feedback round on `items`, or wait in review when there is nothing to do. Rounds
/// started only by failed checks are capped at `max_rounds` in a row, so a check that the agent
/// cannot make pass does not loop forever; feedback from a person resets the count.
fn start_round(mut s: JobState, items: Vec<Feedback>) -> JobState {
    let checks_only = items.iter().all(|f| f.kind == FeedbackKind::CheckFailed);
    if items.is_empty() || (checks_only && s.check_rounds >= s.max_rounds) {
        s.stage = Stage::InReview;
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
            if !s.follow_pr || !(s.stage == Stage::InReview || pr_open(s.stage)) {
                return Err(invalid());
            }
            let fresh: Vec<Feedback> = feedback
                .iter()
                .filter(|f| !s.feedback_seen.contains(&f.id))
                .cloned()
                .collect();
            s.feedback_seen.extend(fresh.iter().map(|f| f.id.clone()));
            match s.stage {
                Stage::InReview => return Ok(start_round(s, fresh)),
                // The round has not reached the agent yet: a review's other comments, delivered
                // a moment later, join it instead of waiting for another round.
                Stage::FeedbackPrepare => {
                    let person = fresh.iter().any(|f| f.kind != FeedbackKind::CheckFailed);
                    if person {
                        s.check_rounds = 0;
                    }
                    s.feedback.extend(fresh);
                }
                _ => s.pending_feedback.extend(fresh),
            }
            return Ok(s);
        }
        JobEvent::PrClosed { merged, .. } => {
            match s.stage {
                Stage::InReview => {
                    s.merged = Some(*merged);
                    s.stage = Stage::AnnouncePrClosed;
                }
                st if s.follow_pr && pr_open(st) => s.pr_closed = Some(*merged),
                // Told twice: nothing new.
                Stage::AnnouncePrClosed | Stage::FinalCleanup => {}
                _ => return Err(invalid()),
            }
            return Ok(s);
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
        if s.stage.is_terminal() || s.stage == Stage::AwaitingApproval || s.stage == Stage::InReview
        {
            return Err(invalid());
        }
        s.starts_in_stage += 1;
        return Ok(s);
    }
    // Any other event completes the pending effect.
    s.starts_in_stage = 0;

    if let JobEvent::EffectFailed { effect, error } = event {
        s.stage = match s.stage {
            // Failing while already stopping: move on so the job still ends.
            Stage::Snapshot => Stage::AnnounceStop,
            Stage::AnnounceStop => Stage::CleanupStopped,
            Stage::CleanupStopped => stopped_stage(s.stop),
            Stage::AnnounceNeedsInput => Stage::NeedsInput,
            // A failed feedback round is reported on the PR; the PR stays in review.
            Stage::FeedbackPrepare
            | Stage::FeedbackFix
            | Stage::FeedbackGates
            | Stage::FeedbackCommit
            | Stage::FeedbackPush => {
                return Ok(feedback_failed(s, format!("{effect} failed: {error}")));
            }
            Stage::FeedbackReply => Stage::FeedbackCleanup,
            Stage::FeedbackCleanup => return Ok(settle(s)),
            Stage::AnnouncePrClosed => Stage::FinalCleanup,
            Stage::FinalCleanup => Stage::Done,
            Stage::InReview
            | Stage::Done
            | Stage::NeedsAttention
            | Stage::NeedsInput
            | Stage::Rejected
            | Stage::Cancelled
            | Stage::AwaitingApproval => return Err(invalid()),
            Stage::Acknowledge
            | Stage::Readiness
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
            | Stage::Push
            | Stage::RecordPr
            | Stage::CreateBacklog
            | Stage::AnnounceShipped
            | Stage::Cleanup => {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    format!("{effect} failed: {error}"),
                );
                Stage::Snapshot
            }
        };
        if s.reason.is_none() && s.stop.is_some() {
            s.reason = Some(format!("{effect} failed: {error}"));
        }
        return Ok(s);
    }

    match (s.stage, event) {
        (Stage::Acknowledge, JobEvent::TicketUpdated { .. }) => s.stage = Stage::Readiness,
        (
            Stage::Readiness,
            JobEvent::AgentFinished {
                stage: AgentStage::Readiness,
                run,
                ..
            },
        ) => {
            record_cost(&mut s, AgentStage::Readiness, 0, run);
            if !run.outcome.is_success() {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Readiness, run),
                );
            } else {
                match &run.readiness {
                    Some(r) if r.ready => s.stage = Stage::Start,
                    Some(r) => {
                        s.questions = r.questions.iter().take(5).cloned().collect();
                        s.stage = Stage::AnnounceNeedsInput;
                    }
                    None => {
                        let why = run
                            .parse_error
                            .clone()
                            .unwrap_or_else(|| "no verdict".into());
                        s = stop(
                            s,
                            StopKind::NeedsAttention,
                            unreadable(AgentStage::Readiness, run, &why),
                        );
                    }
                }
            }
        }
        (Stage::AnnounceNeedsInput, JobEvent::TicketUpdated { .. }) => s.stage = Stage::NeedsInput,
        (Stage::Start, JobEvent::TicketUpdated { .. }) => s.stage = Stage::Prepare,
        (
            Stage::Prepare,
            JobEvent::WorkspaceReady {
                worktree,
                branch,
                base_commit,
                default_branch,
            },
        ) => {
            s.worktree = Some(worktree.clone());
            s.branch = Some(branch.clone());
            s.base_commit = Some(base_commit.clone());
            s.default_branch = Some(default_branch.clone());
            s.stage = Stage::Research;
        }
        (
            Stage::Research,
            JobEvent::AgentFinished {
                stage: AgentStage::Research,
                run,
                ..
            },
        ) => {
            record_cost(&mut s, AgentStage::Research, 0, run);
            if run.outcome.is_success() {
                s.research_artifact = run.artifact.clone();
                s.stage = Stage::Plan;
            } else {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Research, run),
                );
            }
        }
        (
            Stage::Plan,
            JobEvent::AgentFinished {
                stage: AgentStage::Plan,
                run,
                ..
            },
        ) => {
            record_cost(&mut s, AgentStage::Plan, 0, run);
            if run.outcome.is_success() {
                s.plan_artifact = run.artifact.clone();
                s.stage = Stage::PostPlan;
            } else {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Plan, run),
                );
            }
        }
        (Stage::PostPlan, JobEvent::TicketUpdated { .. }) => s.stage = Stage::Implement,
        (
            Stage::Implement,
            JobEvent::AgentFinished {
                stage: AgentStage::Implement,
                run,
                ..
            },
        ) => {
            record_cost(&mut s, AgentStage::Implement, 0, run);
            s.implement_session = run.session_id.clone();
            if run.outcome.is_success() {
                s.stage = Stage::Gates;
            } else {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Implement, run),
                );
            }
        }
        (Stage::Gates, JobEvent::GatesFinished { round, gates }) if *round == s.round => {
            s.gates = gates.clone();
            if gates.iter().all(|g| g.passed) {
                s.stage = Stage::PlanReview;
            } else if s.round < s.max_rounds {
                s.stage = Stage::Fix;
            } else {
                let reason = format!(
                    "gates still failing after {} fix round(s): {}",
                    s.round,
                    failing_names(gates)
                );
                s = stop(s, StopKind::NeedsAttention, reason);
            }
        }
        (Stage::PlanReview, JobEvent::ReviewPlanned { plan }) if plan.round == s.round => {
            s.review_plan = Some(plan.clone());
            s.stage = if plan.angles.is_empty() {
                Stage::Triage
            } else {
                Stage::Review
            };
        }
        (
            Stage::Review,
            JobEvent::AgentFinished {
                stage: AgentStage::Review,
                round,
                run,
            },
        ) if *round == s.round
            && run
                .angle
                .as_ref()
                .is_some_and(|a| s.next_angle().is_some_and(|n| &n.name == a)) =>
        {
            record_cost(&mut s, AgentStage::Review, *round, run);
            let angle = run.angle.clone().unwrap_or_default();
            if !run.outcome.is_success() {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Review, run),
                );
            } else if let Some(findings) = &run.findings {
                s.reviews.push(AngleReview {
                    round: *round,
                    angle,
                    findings: findings.clone(),
                });
                if s.next_angle().is_none() {
                    s.stage = Stage::Triage;
                }
            } else {
                let why = run
                    .parse_error
                    .clone()
                    .unwrap_or_else(|| "no findings".into());
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    unreadable(AgentStage::Review, run, &why),
                );
            }
        }
        (
            Stage::Triage,
            JobEvent::AgentFinished {
                stage: AgentStage::Triage,
                round,
                run,
            },
        ) if *round == s.round => {
            record_cost(&mut s, AgentStage::Triage, *round, run);
            if !run.outcome.is_success() {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Triage, run),
                );
            } else if let Some(decisions) = &run.decisions {
                s.triage.push((*round, decisions.clone()));
                let fix_now = decisions
                    .iter()
                    .filter(|d| d.bucket == Bucket::FixNow)
                    .count();
                if fix_now == 0 {
                    s.stage = Stage::Commit;
                } else if s.round < s.max_rounds {
                    s.stage = Stage::Fix;
                } else {
                    let r = s.round;
                    s = stop(
                        s,
                        StopKind::NeedsAttention,
                        format!("{fix_now} fix-now finding(s) remain after {r} fix round(s)"),
                    );
                }
            } else {
                let why = run
                    .parse_error
                    .clone()
                    .unwrap_or_else(|| "no decisions".into());
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    unreadable(AgentStage::Triage, run, &why),
                );
            }
        }
        (
            Stage::Fix,
            JobEvent::AgentFinished {
                stage: AgentStage::Fix,
                round,
                run,
            },
        ) if *round == s.round + 1 => {
            record_cost(&mut s, AgentStage::Fix, *round, run);
            if run.session_id.is_some() {
                s.implement_session = run.session_id.clone();
            }
            if run.outcome.is_success() {
                s.round = *round;
                s.stage = Stage::Gates;
            } else {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Fix, run),
                );
            }
        }
        (Stage::Commit, JobEvent::Committed { commit }) => {
            s.commit = Some(commit.clone());
            s.stage = Stage::Propose;
        }
        (Stage::Propose, JobEvent::Proposed { proposal }) => {
            s.proposal = Some(proposal.clone());
            s.stage = Stage::AnnounceProposal;
        }
        (Stage::AnnounceProposal, JobEvent::TicketUpdated { .. }) => {
            s.stage = Stage::AwaitingApproval
        }
        (Stage::AwaitingApproval, JobEvent::Approved { commit, by }) => {
            if s.commit.as_deref() != Some(commit.as_str()) {
                return Err(InvalidEvent {
                    stage: s.stage.as_str(),
                    event: format!(
                        "approved for {commit}, but the proposal is {}",
                        s.commit.as_deref().unwrap_or("-")
                    ),
                });
            }
            s.approved_by = Some(by.clone());
            s.stage = Stage::Push;
        }
        (Stage::AwaitingApproval, JobEvent::Rejected { reason, by }) => {
            s = stop(s, StopKind::Rejected, format!("rejected by {by}: {reason}"));
        }
        (Stage::Push, JobEvent::Pushed { .. }) => s.stage = Stage::RecordPr,
        (Stage::RecordPr, JobEvent::PrRecorded { pr, number, url }) => {
            s.pr = Some(*pr);
            s.pr_number = *number;
            s.pr_url = url.clone();
            s.stage = Stage::CreateBacklog;
        }
        (Stage::CreateBacklog, JobEvent::BacklogCreated { tickets }) => {
            s.backlog_tickets = tickets.clone();
            s.stage = Stage::AnnounceShipped;
        }
        (Stage::AnnounceShipped, JobEvent::TicketUpdated { .. }) => s.stage = Stage::Cleanup,
        (Stage::Cleanup, JobEvent::CleanedUp { .. }) => {
            if s.follow_pr {
                s = settle(s);
            } else {
                s.stage = Stage::Done;
            }
        }
        (Stage::FeedbackPrepare, JobEvent::FeedbackWorkspaceReady { worktree, head }) => {
            s.worktree = Some(worktree.clone());
            s.commit = Some(head.clone());
            s.stage = Stage::FeedbackFix;
        }
        (
            Stage::FeedbackFix,
            JobEvent::AgentFinished {
                stage: AgentStage::Fix,
                round,
                run,
            },
        ) if *round == s.round + 1 => {
            record_cost(&mut s, AgentStage::Fix, *round, run);
            if run.session_id.is_some() {
                s.implement_session = run.session_id.clone();
            }
            s.round = *round;
            s.feedback_attempts += 1;
            if run.outcome.is_success() {
                s.stage = Stage::FeedbackGates;
            } else {
                s = feedback_failed(s, agent_reason(AgentStage::Fix, run));
            }
        }
        (Stage::FeedbackGates, JobEvent::GatesFinished { round, gates }) if *round == s.round => {
            s.gates = gates.clone();
            if gates.iter().all(|g| g.passed) {
                s.stage = Stage::FeedbackCommit;
            } else if s.feedback_attempts < FEEDBACK_ATTEMPTS {
                s.stage = Stage::FeedbackFix;
            } else {
                let reason = format!(
                    "gates still failing after {} attempt(s): {}",
                    s.feedback_attempts,
                    failing_names(gates)
                );
                s = feedback_failed(s, reason);
            }
        }
        (Stage::FeedbackCommit, JobEvent::Committed { commit }) => {
            if s.commit.as_deref() == Some(commit.as_str()) {
                s.feedback_result = Some(FeedbackResult::NoChange);
                s.stage = Stage::FeedbackReply;
            } else {
                s.commit = Some(commit.clone());
                s.stage = Stage::FeedbackPush;
            }
        }
        (Stage::FeedbackPush, JobEvent::Pushed { commit, .. }) => {
            s.feedback_result = Some(FeedbackResult::Pushed {
                commit: commit.clone(),
            });
            s.stage = Stage::FeedbackReply;
        }
        (Stage::FeedbackReply, JobEvent::FeedbackReplied { round })
            if *round == s.feedback_round =>
        {
            s.stage = Stage::FeedbackCleanup;
        }
        (Stage::FeedbackCleanup, JobEvent::CleanedUp { .. }) => {
            s.feedback.clear();
            s = settle(s);
        }
        (Stage::AnnouncePrClosed, JobEvent::TicketUpdated { .. }) => s.stage = Stage::FinalCleanup,
        (Stage::FinalCleanup, JobEvent::CleanedUp { .. }) => s.stage = Stage::Done,
        (Stage::Snapshot, JobEvent::Snapshotted { wip_ref, commit }) => {
            if let (Some(r), Some(c)) = (wip_ref, commit) {
                s.wip = Some((r.clone(), c.clone()));
            }
            s.stage = Stage::AnnounceStop;
        }
        (Stage::AnnounceStop, JobEvent::TicketUpdated { .. }) => s.stage = Stage::CleanupStopped,
        (Stage::CleanupStopped, JobEvent::CleanedUp { .. }) => s.stage = stopped_stage(s.stop),
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
            | JobEvent::Cancelled { .. },
        ) => return Err(invalid()),
    }
    Ok(s)
}
