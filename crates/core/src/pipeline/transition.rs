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

/// An effect failed for good: the job stops (or, while stopping or in a feedback round, moves
/// on so it still ends). `None` where no effect runs.
fn effect_failed(mut s: JobState, effect: &str, error: &str) -> Option<JobState> {
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
            return Some(feedback_failed(s, format!("{effect} failed: {error}")));
        }
        Stage::FeedbackReply => Stage::FeedbackCleanup,
        Stage::FeedbackCleanup => return Some(settle(s)),
        Stage::AnnouncePrClosed => Stage::FinalCleanup,
        Stage::FinalCleanup => Stage::Done,
        // The parent is not told: the sub-job still ends as it was going to.
        Stage::ReportToParent => {
            if s.stop.is_some() {
                stopped_stage(s.stop)
            } else {
                Stage::AwaitingApproval
            }
        }
        Stage::InReview
        | Stage::Done
        | Stage::NeedsAttention
        | Stage::NeedsInput
        | Stage::Rejected
        | Stage::Cancelled
        | Stage::AwaitingApproval
        | Stage::AwaitingAcceptance => return None,
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
        | Stage::AwaitingChildren
        | Stage::AnnounceSpec
        | Stage::CreateSplit
        | Stage::QueueBuild
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
    Some(s)
}

/// Feedback on the PR: new items start a round in review, join a round that has not reached
/// the agent yet, or wait for the running one. On the local forge (no PR followed) only the
/// merge queue gives feedback, to a shipped job whose PR is still open, and it starts a round.
fn feedback_received(mut s: JobState, feedback: &[Feedback]) -> Option<JobState> {
    let followed = s.follow_pr && (s.stage == Stage::InReview || pr_open(s.stage));
    let local_open = !s.follow_pr && s.stage == Stage::Done && s.pr.is_some() && s.merged.is_none();
    if !followed && !local_open {
        return None;
    }
    let fresh: Vec<Feedback> = feedback
        .iter()
        .filter(|f| !s.feedback_seen.contains(&f.id))
        .cloned()
        .collect();
    s.feedback_seen.extend(fresh.iter().map(|f| f.id.clone()));
    match s.stage {
        Stage::InReview | Stage::Done => return Some(start_round(s, fresh)),
        // The round has not reached the agent yet: a review's other comments, delivered a
        // moment later, join it instead of waiting for another round.
        Stage::FeedbackPrepare => {
            let person = fresh.iter().any(|f| f.kind != FeedbackKind::CheckFailed);
            if person {
                s.check_rounds = 0;
            }
            s.feedback.extend(fresh);
        }
        _ => s.pending_feedback.extend(fresh),
    }
    Some(s)
}

/// The PR was closed: announced now in review, or remembered until the running step ends.
fn pr_closed(mut s: JobState, merged: bool) -> Option<JobState> {
    match s.stage {
        Stage::InReview => {
            s.merged = Some(merged);
            s.stage = Stage::AnnouncePrClosed;
        }
        st if s.follow_pr && pr_open(st) => s.pr_closed = Some(merged),
        // Told twice: nothing new.
        Stage::AnnouncePrClosed | Stage::FinalCleanup => {}
        _ => return None,
    }
    Some(s)
}

/// The spec is on the ticket: it waits for its author's answers, goes to the build queue, or
/// waits for a person to accept it.
fn spec_announced(s: JobState) -> JobState {
    let auto = s.refine.unwrap_or_default().auto_queue;
    let next = match &s.spec {
        _ if !s.questions.is_empty() => Stage::NeedsInput,
        Some(spec) if spec.queues_itself(auto) => Stage::QueueBuild,
        _ => Stage::AwaitingAcceptance,
    };
    goto(s, next)
}

/// A sub-job's report: recorded on its parent; a parent left with nothing to run stops.
fn subtask_finished(
    mut s: JobState,
    id: &str,
    result: &crate::subtasks::ChildResult,
    job: Option<crate::ids::JobId>,
) -> Option<JobState> {
    if s.graph.is_none() || s.stage.is_terminal() {
        return None;
    }
    let child = s.children.iter_mut().find(|c| c.id == id)?;
    child.result = Some(result.clone());
    // A retried sub-task: its commits are kept with the new job.
    if let Some(job) = job {
        child.job = job;
    }
    Some(children_blocked(s))
}

/// One sub-task of the proposed stack goes back: the parent waits for it again, and builds,
/// gates and reviews the stack anew (the next round) once it is ready.
fn subtask_rejected(
    mut s: JobState,
    rework: &crate::subtasks::Rework,
) -> Result<JobState, InvalidEvent> {
    let stage = s.stage.as_str();
    let Some(child) = s.children.iter_mut().find(|c| c.id == rework.id) else {
        return Err(InvalidEvent {
            stage,
            event: format!(
                "rejected sub-task {}, which the stack does not have",
                rework.id
            ),
        });
    };
    child.result = None;
    child.reworks += 1;
    s.stack.clear();
    s.commit = None;
    s.proposal = None;
    s.round += 1;
    s.rework.push(rework.clone());
    Ok(goto(s, Stage::AwaitingChildren))
}

/// A sub-task sent back by a person: a fix round on its own change with the reason as the one
/// finding to fix now.
fn reworked(mut s: JobState, reason: &str, by: &str) -> JobState {
    use crate::findings::{Finding, Severity};
    let finding = Finding {
        angles: vec!["approver".into()],
        severity: Severity::High,
        file: None,
        line: None,
        title: format!("Rejected by {by}"),
        detail: reason.to_string(),
        suggestion: None,
        confidence: 1.0,
        must_fix: true,
    };
    s.triage.push((
        s.round,
        vec![crate::triage::Decision {
            finding,
            bucket: Bucket::FixNow,
            reason: format!("{by} rejected this sub-task's commit"),
            by: crate::triage::DecidedBy::Person,
        }],
    ));
    s.proposal = None;
    goto(s, Stage::Fix)
}

/// A waiting parent whose stopped sub-jobs leave nothing to run stops with why.
fn children_blocked(s: JobState) -> JobState {
    if s.stage != Stage::AwaitingChildren {
        return s;
    }
    let Some(checked) = s.checked_graph() else {
        return s;
    };
    match crate::subtasks::next(&checked, &s.children) {
        crate::subtasks::Next::Blocked(reason) => {
            let mut s = s;
            s.starts_in_stage = 0;
            stop(s, StopKind::NeedsAttention, reason)
        }
        _ => s,
    }
}

// ---- one handler per stage: what completing it records, and where the job goes next ----

fn goto(mut s: JobState, stage: Stage) -> JobState {
    s.stage = stage;
    s
}

/// A failed agent step stops the job with the agent's outcome as the reason.
fn agent_failed(s: JobState, stage: AgentStage, run: &StageRun) -> JobState {
    stop(s, StopKind::NeedsAttention, agent_reason(stage, run))
}

/// An answer that could not be read even after a repair request stops the job.
fn unreadable_answer(s: JobState, stage: AgentStage, run: &StageRun, missing: &str) -> JobState {
    let why = run.parse_error.clone().unwrap_or_else(|| missing.into());
    let reason = unreadable(stage, run, &why);
    stop(s, StopKind::NeedsAttention, reason)
}

fn readiness(mut s: JobState, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Readiness, 0, run);
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Readiness, run);
    }
    match &run.readiness {
        Some(r) if r.ready => goto(s, Stage::Start),
        Some(r) => {
            s.questions = r.questions.iter().take(5).cloned().collect();
            goto(s, Stage::AnnounceNeedsInput)
        }
        None => unreadable_answer(s, AgentStage::Readiness, run, "no verdict"),
    }
}

fn workspace_ready(mut s: JobState, event: &JobEvent) -> JobState {
    if let JobEvent::WorkspaceReady {
        worktree,
        branch,
        base_commit,
        default_branch,
    } = event
    {
        s.worktree = Some(worktree.clone());
        s.branch = Some(branch.clone());
        s.base_commit = Some(base_commit.clone());
        s.default_branch = Some(default_branch.clone());
    }
    goto(s, Stage::Research)
}

fn research(mut s: JobState, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Research, 0, run);
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Research, run);
    }
    s.research_artifact = run.artifact.clone();
    goto(s, Stage::Plan)
}

fn plan(mut s: JobState, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Plan, 0, run);
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Plan, run);
    }
    if run.parse_error.is_some() {
        return unreadable_answer(s, AgentStage::Plan, run, "no readable sub-task graph");
    }
    if s.refine.is_some() {
        // A refinement's draft step: its answer is the spec.
        let Some(spec) = &run.spec else {
            return unreadable_answer(s, AgentStage::Plan, run, "no spec");
        };
        s.plan_artifact = run.artifact.clone();
        s.questions = spec.questions.clone();
        s.spec = Some((**spec).clone());
        return goto(s, Stage::AnnounceSpec);
    }
    s.plan_artifact = run.artifact.clone();
    // A sub-job never splits again.
    if s.subtask.is_none() {
        s.graph = run.subtasks.clone();
    }
    goto(s, Stage::PostPlan)
}

fn implement(mut s: JobState, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Implement, 0, run);
    s.implement_session = run.session_id.clone();
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Implement, run);
    }
    if run.changed == Some(false) {
        // Nothing to check or review: stop before paying for gates and review sessions.
        let said = run.summary.trim();
        let reason = if said.is_empty() {
            "the implement step changed no file in the repository".to_string()
        } else {
            format!("the implement step changed no file in the repository (the agent said: {said})")
        };
        return stop(s, StopKind::NeedsAttention, reason);
    }
    goto(s, Stage::Gates)
}

fn gated(mut s: JobState, gates: &[super::GateResult]) -> JobState {
    s.gates = gates.to_vec();
    s.gate_rounds.push((s.round, gates.to_vec()));
    let timed_out: Vec<String> = gates
        .iter()
        .filter(|g| g.timed_out_for_good())
        .map(|g| format!("`{}` {}", g.name, g.outcome()))
        .collect();
    if gates.iter().all(|g| g.passed) {
        goto(s, Stage::PlanReview)
    } else if !s.stack.is_empty() {
        // Each sub-task passed its gates alone; together they do not, and no single
        // session owns the stack to fix it.
        let reason = format!(
            "the stacked sub-tasks fail gates together: {}",
            failing_names(gates)
        );
        stop(s, StopKind::NeedsAttention, reason)
    } else if !timed_out.is_empty() {
        // An agent cannot fix a slow machine or a short limit: no paid fix round for it.
        let reason = format!(
            "gate {} — a timeout does not count as a code failure, so no fix round ran \
             (raise the gate's timeout_secs or gate_timeout_secs, or set fix_on_timeout = true \
             on the gate in .codemill/pipeline.toml)",
            timed_out.join(", ")
        );
        stop(s, StopKind::NeedsAttention, reason)
    } else if s.round < s.max_rounds {
        goto(s, Stage::Fix)
    } else {
        let reason = format!(
            "gates still failing after {} fix round(s): {}",
            s.round,
            failing_names(gates)
        );
        stop(s, StopKind::NeedsAttention, reason)
    }
}

fn planned(mut s: JobState, plan: &super::ReviewPlan) -> JobState {
    s.review_plan = Some(plan.clone());
    let next = if plan.angles.is_empty() {
        Stage::Triage
    } else {
        Stage::Review
    };
    goto(s, next)
}

/// Reviews arrive one angle at a time, in the plan's order.
fn is_next_angle(s: &JobState, run: &StageRun) -> bool {
    run.angle
        .as_ref()
        .is_some_and(|a| s.next_angle().is_some_and(|n| &n.name == a))
}

fn reviewed(mut s: JobState, round: u32, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Review, round, run);
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Review, run);
    }
    let Some(findings) = &run.findings else {
        return unreadable_answer(s, AgentStage::Review, run, "no findings");
    };
    s.reviews.push(AngleReview {
        round,
        angle: run.angle.clone().unwrap_or_default(),
        findings: findings.clone(),
    });
    if s.next_angle().is_none() {
        s.stage = Stage::Triage;
    }
    s
}

fn triaged(mut s: JobState, round: u32, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Triage, round, run);
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Triage, run);
    }
    let Some(decisions) = &run.decisions else {
        return unreadable_answer(s, AgentStage::Triage, run, "no decisions");
    };
    s.triage.push((round, decisions.clone()));
    if !s.stack.is_empty() {
        // The whole-stack review informs the person approving; each sub-task was fixed in
        // its own session already.
        return goto(s, Stage::Propose);
    }
    let fix_now = decisions
        .iter()
        .filter(|d| d.bucket == Bucket::FixNow)
        .count();
    if fix_now == 0 {
        goto(s, Stage::Commit)
    } else if s.round < s.max_rounds {
        goto(s, Stage::Fix)
    } else {
        let r = s.round;
        let reason = format!("{fix_now} fix-now finding(s) remain after {r} fix round(s)");
        stop(s, StopKind::NeedsAttention, reason)
    }
}

fn fixed(mut s: JobState, round: u32, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Fix, round, run);
    if run.session_id.is_some() {
        s.implement_session = run.session_id.clone();
    }
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Fix, run);
    }
    s.round = round;
    goto(s, Stage::Gates)
}

fn committed(mut s: JobState, commit: &str) -> JobState {
    s.commit = Some(commit.to_string());
    goto(s, Stage::Propose)
}

fn proposed(mut s: JobState, proposal: &super::Proposal) -> JobState {
    s.proposal = Some(proposal.clone());
    goto(s, Stage::AnnounceProposal)
}

/// An approval names the commit the person saw: any other is refused.
fn approved(mut s: JobState, commit: &str, by: &str) -> Result<JobState, InvalidEvent> {
    if s.commit.as_deref() != Some(commit) {
        return Err(InvalidEvent {
            stage: s.stage.as_str(),
            event: format!(
                "approved for {commit}, but the proposal is {}",
                s.commit.as_deref().unwrap_or("-")
            ),
        });
    }
    s.approved_by = Some(by.to_string());
    Ok(goto(s, Stage::Push))
}

fn pr_recorded(mut s: JobState, pr: i64, number: Option<u64>, url: &Option<String>) -> JobState {
    s.pr = Some(pr);
    s.pr_number = number;
    s.pr_url = url.clone();
    goto(s, Stage::CreateBacklog)
}

fn backlog_created(mut s: JobState, tickets: &[String]) -> JobState {
    s.backlog_tickets = tickets.to_vec();
    goto(s, Stage::AnnounceShipped)
}

/// Shipped: done, or on to following the PR on an outside forge.
fn shipped_and_cleaned(s: JobState) -> JobState {
    // A stack's PRs are landed on the forge by people, bottom first; the parent follows none.
    if s.follow_pr && s.stack.is_empty() {
        settle(s)
    } else {
        goto(s, Stage::Done)
    }
}

fn feedback_ready(mut s: JobState, worktree: &str, head: &str) -> JobState {
    s.worktree = Some(worktree.to_string());
    s.commit = Some(head.to_string());
    goto(s, Stage::FeedbackFix)
}

fn feedback_fixed(mut s: JobState, round: u32, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Fix, round, run);
    if run.session_id.is_some() {
        s.implement_session = run.session_id.clone();
    }
    s.round = round;
    s.feedback_attempts += 1;
    if run.outcome.is_success() {
        goto(s, Stage::FeedbackGates)
    } else {
        let reason = agent_reason(AgentStage::Fix, run);
        feedback_failed(s, reason)
    }
}

fn feedback_gated(mut s: JobState, gates: &[super::GateResult]) -> JobState {
    s.gates = gates.to_vec();
    if gates.iter().all(|g| g.passed) {
        goto(s, Stage::FeedbackCommit)
    } else if s.feedback_attempts < FEEDBACK_ATTEMPTS {
        goto(s, Stage::FeedbackFix)
    } else {
        let reason = format!(
            "gates still failing after {} attempt(s): {}",
            s.feedback_attempts,
            failing_names(gates)
        );
        feedback_failed(s, reason)
    }
}

/// A feedback round that changed nothing replies without pushing.
fn feedback_committed(mut s: JobState, commit: &str) -> JobState {
    if s.commit.as_deref() == Some(commit) {
        s.feedback_result = Some(FeedbackResult::NoChange);
        goto(s, Stage::FeedbackReply)
    } else {
        s.commit = Some(commit.to_string());
        goto(s, Stage::FeedbackPush)
    }
}

fn feedback_pushed(mut s: JobState, commit: &str) -> JobState {
    s.feedback_result = Some(FeedbackResult::Pushed {
        commit: commit.to_string(),
    });
    goto(s, Stage::FeedbackReply)
}

fn snapshotted(mut s: JobState, wip_ref: &Option<String>, commit: &Option<String>) -> JobState {
    if let (Some(r), Some(c)) = (wip_ref, commit) {
        s.wip = Some((r.clone(), c.clone()));
    }
    goto(s, Stage::AnnounceStop)
}
