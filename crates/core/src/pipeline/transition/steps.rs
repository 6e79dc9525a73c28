//! One handler per stage: what completing it records, and where the job goes next.

use super::*;

pub(super) fn goto(mut s: JobState, stage: Stage) -> JobState {
    s.stage = stage;
    s
}

/// A failed agent step stops the job with the agent's outcome as the reason.
pub(super) fn agent_failed(s: JobState, stage: AgentStage, run: &StageRun) -> JobState {
    stop(s, StopKind::NeedsAttention, agent_reason(stage, run))
}

/// An answer that could not be read even after a repair request stops the job.
pub(super) fn unreadable_answer(
    s: JobState,
    stage: AgentStage,
    run: &StageRun,
    missing: &str,
) -> JobState {
    let why = run.parse_error.clone().unwrap_or_else(|| missing.into());
    let reason = unreadable(stage, run, &why);
    stop(s, StopKind::NeedsAttention, reason)
}

pub(super) fn readiness(mut s: JobState, run: &StageRun) -> JobState {
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

pub(super) fn workspace_ready(mut s: JobState, event: &JobEvent) -> JobState {
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

pub(super) fn research(mut s: JobState, run: &StageRun) -> JobState {
    record_cost(&mut s, AgentStage::Research, 0, run);
    if !run.outcome.is_success() {
        return agent_failed(s, AgentStage::Research, run);
    }
    s.research_artifact = run.artifact.clone();
    goto(s, Stage::Plan)
}

pub(super) fn plan(mut s: JobState, run: &StageRun) -> JobState {
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

pub(super) fn implement(mut s: JobState, run: &StageRun) -> JobState {
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

pub(super) fn gated(mut s: JobState, gates: &[crate::pipeline::GateResult]) -> JobState {
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

pub(super) fn planned(mut s: JobState, plan: &crate::pipeline::ReviewPlan) -> JobState {
    s.review_plan = Some(plan.clone());
    let next = if plan.angles.is_empty() {
        Stage::Triage
    } else {
        Stage::Review
    };
    goto(s, next)
}

/// Reviews arrive one angle at a time, in the plan's order.
pub(super) fn is_next_angle(s: &JobState, run: &StageRun) -> bool {
    run.angle
        .as_ref()
        .is_some_and(|a| s.next_angle().is_some_and(|n| &n.name == a))
}

pub(super) fn reviewed(mut s: JobState, round: u32, run: &StageRun) -> JobState {
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

pub(super) fn triaged(mut s: JobState, round: u32, run: &StageRun) -> JobState {
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

pub(super) fn fixed(mut s: JobState, round: u32, run: &StageRun) -> JobState {
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

pub(super) fn committed(mut s: JobState, commit: &str) -> JobState {
    s.commit = Some(commit.to_string());
    goto(s, Stage::Propose)
}

pub(super) fn proposed(mut s: JobState, proposal: &crate::pipeline::Proposal) -> JobState {
    s.proposal = Some(proposal.clone());
    goto(s, Stage::AnnounceProposal)
}

/// An approval names the commit the person saw: any other is refused.
pub(super) fn approved(mut s: JobState, commit: &str, by: &str) -> Result<JobState, InvalidEvent> {
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

pub(super) fn pr_recorded(
    mut s: JobState,
    pr: i64,
    number: Option<u64>,
    url: &Option<String>,
) -> JobState {
    s.pr = Some(pr);
    s.pr_number = number;
    s.pr_url = url.clone();
    goto(s, Stage::CreateBacklog)
}

pub(super) fn backlog_created(mut s: JobState, tickets: &[String]) -> JobState {
    s.backlog_tickets = tickets.to_vec();
    goto(s, Stage::AnnounceShipped)
}

/// Shipped: done, or on to following the PR on an outside forge.
pub(super) fn shipped_and_cleaned(s: JobState) -> JobState {
    // A stack's PRs are landed on the forge by people, bottom first; the parent follows none.
    if s.follow_pr && s.stack.is_empty() {
        settle(s)
    } else {
        goto(s, Stage::Done)
    }
}

pub(super) fn feedback_ready(mut s: JobState, worktree: &str, head: &str) -> JobState {
    s.worktree = Some(worktree.to_string());
    s.commit = Some(head.to_string());
    goto(s, Stage::FeedbackFix)
}

pub(super) fn feedback_fixed(mut s: JobState, round: u32, run: &StageRun) -> JobState {
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

pub(super) fn feedback_gated(mut s: JobState, gates: &[crate::pipeline::GateResult]) -> JobState {
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
pub(super) fn feedback_committed(mut s: JobState, commit: &str) -> JobState {
    if s.commit.as_deref() == Some(commit) {
        s.feedback_result = Some(FeedbackResult::NoChange);
        goto(s, Stage::FeedbackReply)
    } else {
        s.commit = Some(commit.to_string());
        goto(s, Stage::FeedbackPush)
    }
}

pub(super) fn feedback_pushed(mut s: JobState, commit: &str) -> JobState {
    s.feedback_result = Some(FeedbackResult::Pushed {
        commit: commit.to_string(),
    });
    goto(s, Stage::FeedbackReply)
}

pub(super) fn snapshotted(
    mut s: JobState,
    wip_ref: &Option<String>,
    commit: &Option<String>,
) -> JobState {
    if let (Some(r), Some(c)) = (wip_ref, commit) {
        s.wip = Some((r.clone(), c.clone()));
    }
    goto(s, Stage::AnnounceStop)
}
