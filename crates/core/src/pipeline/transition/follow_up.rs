//! Handlers for what happens around the build: effects that fail for good, feedback and the
//! PR's fate after shipping, specs, sub-tasks and rework.

use super::*;

/// An effect failed for good: the job stops (or, while stopping or in a feedback round, moves
/// on so it still ends). `None` where no effect runs.
pub(super) fn effect_failed(mut s: JobState, effect: &str, error: &str) -> Option<JobState> {
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
pub(super) fn feedback_received(mut s: JobState, feedback: &[Feedback]) -> Option<JobState> {
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
pub(super) fn pr_closed(mut s: JobState, merged: bool) -> Option<JobState> {
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
pub(super) fn spec_announced(s: JobState) -> JobState {
    let auto = s.refine.unwrap_or_default().auto_queue;
    let next = match &s.spec {
        _ if !s.questions.is_empty() => Stage::NeedsInput,
        Some(spec) if spec.queues_itself(auto) => Stage::QueueBuild,
        _ => Stage::AwaitingAcceptance,
    };
    goto(s, next)
}

/// A sub-job's report: recorded on its parent; a parent left with nothing to run stops.
pub(super) fn subtask_finished(
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
pub(super) fn subtask_rejected(
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
pub(super) fn reworked(mut s: JobState, reason: &str, by: &str) -> JobState {
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
pub(super) fn children_blocked(s: JobState) -> JobState {
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
