//! [`JobState`], the fold of a job's journal, and what each stage asks for next
//! ([`JobState::pending_effect`]).

use serde::{Deserialize, Serialize};

use crate::cost::Usage;
use crate::findings::Finding;
use crate::ids::{ProjectName, TicketKey};
use crate::review::Angle;
use crate::subtasks::{self, Checked, Child, Graph, Rework, StackEntry, SubtaskOf};
use crate::triage::{Bucket, Decision};

use super::{
    AgentStage, Effect, Feedback, GateResult, InvalidEvent, JobEvent, NoteKind, Proposal,
    ReviewPlan, Stage, TicketStatus, apply,
};

/// How a stopped job ends once its partial work is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    NeedsAttention,
    Rejected,
    Cancelled,
}

/// Tokens and money of one agent step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCost {
    pub stage: AgentStage,
    pub round: u32,
    #[serde(default)]
    pub angle: Option<String>,
    pub agent: String,
    pub model: String,
    pub usage: Usage,
    pub cost_usd: f64,
}

/// One review angle's findings in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AngleReview {
    pub round: u32,
    pub angle: String,
    pub findings: Vec<Finding>,
}

/// How a feedback round ended, for the reply on the PR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FeedbackResult {
    Pushed { commit: String },
    NoChange,
    Failed { reason: String },
}

/// A job's state: the fold of its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub ticket: TicketKey,
    pub project: ProjectName,
    pub max_rounds: u32,
    pub stage: Stage,
    /// Fix rounds done so far.
    pub round: u32,
    pub questions: Vec<String>,
    pub worktree: Option<String>,
    pub branch: Option<String>,
    pub base_commit: Option<String>,
    pub default_branch: Option<String>,
    pub implement_session: Option<String>,
    pub research_artifact: Option<String>,
    pub plan_artifact: Option<String>,
    /// The latest gate results.
    pub gates: Vec<GateResult>,
    /// Every gate run of the job's build rounds, by round (round 0 after implement, round N
    /// after fix round N), so what a fix round fixed stays visible.
    pub gate_rounds: Vec<(u32, Vec<GateResult>)>,
    /// The current review round's plan.
    pub review_plan: Option<ReviewPlan>,
    /// Every angle's findings, every round.
    pub reviews: Vec<AngleReview>,
    /// Every round's triage.
    pub triage: Vec<(u32, Vec<Decision>)>,
    pub commit: Option<String>,
    pub proposal: Option<Proposal>,
    pub approved_by: Option<String>,
    pub pr: Option<i64>,
    pub backlog_tickets: Vec<String>,
    pub wip: Option<(String, String)>,
    pub usage: Usage,
    pub cost_usd: f64,
    pub costs: Vec<StageCost>,
    /// Why the job stopped (needs attention) or was rejected.
    pub reason: Option<String>,
    pub stop: Option<StopKind>,
    /// How often the pending effect of this stage has been started.
    pub starts_in_stage: u32,
    pub acknowledge: bool,
    pub follow_pr: bool,
    pub pr_number: Option<u64>,
    pub pr_url: Option<String>,
    /// Feedback rounds started so far.
    pub feedback_round: u32,
    /// The feedback the current round addresses.
    pub feedback: Vec<Feedback>,
    /// Feedback that arrived during a round, for the next one.
    pub pending_feedback: Vec<Feedback>,
    /// Ids of every feedback item seen: a redelivery starts nothing.
    pub feedback_seen: Vec<String>,
    /// Fix attempts in the current feedback round.
    pub feedback_attempts: u32,
    /// Consecutive rounds started only by failed checks (capped at `max_rounds`).
    pub check_rounds: u32,
    pub feedback_result: Option<FeedbackResult>,
    /// The PR was closed during a feedback round (merged or not); handled when it ends.
    pub pr_closed: Option<bool>,
    /// How the PR ended.
    pub merged: Option<bool>,
    /// A sub-job: its parent and where it stacks.
    #[serde(default)]
    pub subtask: Option<SubtaskOf>,
    /// A split ticket: the planner's checked graph.
    #[serde(default)]
    pub graph: Option<Graph>,
    /// A split ticket: the sub-jobs started so far, with how each ended.
    #[serde(default)]
    pub children: Vec<Child>,
    /// A split ticket: the sub-tasks' commits stacked, bottom first.
    #[serde(default)]
    pub stack: Vec<StackEntry>,
    /// A split ticket: sub-tasks a person sent back, not yet told.
    #[serde(default)]
    pub rework: Vec<Rework>,
    /// A refinement job, and what it may do.
    #[serde(default)]
    pub refine: Option<crate::refine::Mode>,
    /// A refinement's spec.
    #[serde(default)]
    pub spec: Option<crate::refine::Spec>,
    /// Tickets an accepted spec's split became.
    #[serde(default)]
    pub split_tickets: Vec<String>,
    /// A refinement that ended by moving its ticket to the build trigger.
    #[serde(default)]
    pub build_queued: bool,
}

impl JobState {
    fn new(
        ticket: TicketKey,
        project: ProjectName,
        max_rounds: u32,
        acknowledge: bool,
        follow_pr: bool,
        subtask: Option<SubtaskOf>,
        refine: Option<crate::refine::Mode>,
    ) -> Self {
        JobState {
            ticket,
            project,
            max_rounds,
            stage: if acknowledge {
                Stage::Acknowledge
            } else if refine.is_some() {
                // A refinement asks its own questions.
                Stage::Start
            } else {
                Stage::Readiness
            },
            round: 0,
            questions: Vec::new(),
            worktree: None,
            branch: None,
            base_commit: None,
            default_branch: None,
            implement_session: None,
            research_artifact: None,
            plan_artifact: None,
            gates: Vec::new(),
            gate_rounds: Vec::new(),
            review_plan: None,
            reviews: Vec::new(),
            triage: Vec::new(),
            commit: None,
            proposal: None,
            approved_by: None,
            pr: None,
            backlog_tickets: Vec::new(),
            wip: None,
            usage: Usage::default(),
            cost_usd: 0.0,
            costs: Vec::new(),
            reason: None,
            stop: None,
            starts_in_stage: 0,
            acknowledge,
            follow_pr,
            pr_number: None,
            pr_url: None,
            feedback_round: 0,
            feedback: Vec::new(),
            pending_feedback: Vec::new(),
            feedback_seen: Vec::new(),
            feedback_attempts: 0,
            check_rounds: 0,
            feedback_result: None,
            pr_closed: None,
            merged: None,
            subtask,
            graph: None,
            children: Vec::new(),
            stack: Vec::new(),
            rework: Vec::new(),
            refine,
            spec: None,
            split_tickets: Vec::new(),
            build_queued: false,
        }
    }

    /// The commit the repository's policy (gates, prepare steps, review checklists) is read
    /// at: the job's base, or for a sub-job its parent's base — the sub-tasks stacked under it
    /// were written by agents and are not trusted to set policy.
    pub fn policy_base(&self) -> Option<String> {
        match &self.subtask {
            Some(sub) => Some(sub.base_commit.clone()),
            None => self.base_commit.clone(),
        }
    }

    /// The remote branch of the job's PR: the ticket's branch, or a shipped sub-task's branch in
    /// its parent's stack.
    pub fn pr_branch(&self) -> String {
        match (&self.subtask, &self.branch, self.pr) {
            (Some(_), Some(branch), Some(_)) => branch.clone(),
            _ => self.ticket.branch(),
        }
    }

    /// The split ticket's graph with its order (it was checked when the plan was read).
    pub fn checked_graph(&self) -> Option<Checked> {
        subtasks::check(self.graph.clone()?, u32::MAX).ok()
    }

    /// Fold a whole journal. The first event must be `Created`.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a JobEvent>,
    ) -> Result<JobState, InvalidEvent> {
        let mut events = events.into_iter();
        let mut state = match events.next() {
            Some(JobEvent::Created {
                ticket,
                project,
                max_rounds,
                acknowledge,
                follow_pr,
                subtask,
                refine,
            }) => JobState::new(
                ticket.clone(),
                project.clone(),
                *max_rounds,
                *acknowledge,
                *follow_pr,
                subtask.clone(),
                *refine,
            ),
            Some(other) => {
                return Err(InvalidEvent {
                    stage: "none",
                    event: other.name().into(),
                });
            }
            None => {
                return Err(InvalidEvent {
                    stage: "none",
                    event: "(empty journal)".into(),
                });
            }
        };
        for event in events {
            state = apply(&state, event)?;
        }
        Ok(state)
    }

    /// The state as people are shown it, given whether the job's queue row waits for a
    /// worker: a job that would run but no worker has taken yet is `queued`, not `running`.
    pub fn shown_status(&self, queued: bool) -> &'static str {
        match self.status() {
            "running" if queued => "queued",
            status => status,
        }
    }

    /// The user-facing state name.
    pub fn status(&self) -> &'static str {
        match self.stage {
            Stage::Done => "done",
            Stage::NeedsAttention => "needs_attention",
            Stage::NeedsInput => "needs_input",
            Stage::Rejected => "rejected",
            Stage::Cancelled => "cancelled",
            Stage::AwaitingApproval => "awaiting_approval",
            Stage::AwaitingChildren => "awaiting_children",
            Stage::AwaitingAcceptance => "awaiting_acceptance",
            Stage::InReview => "in_review",
            Stage::AnnouncePrClosed | Stage::FinalCleanup => "finishing",
            Stage::Push
            | Stage::RecordPr
            | Stage::CreateBacklog
            | Stage::AnnounceShipped
            | Stage::Cleanup => "shipping",
            Stage::Snapshot
            | Stage::AnnounceStop
            | Stage::CleanupStopped
            | Stage::AnnounceNeedsInput => "stopping",
            Stage::FeedbackPrepare
            | Stage::FeedbackFix
            | Stage::FeedbackGates
            | Stage::FeedbackCommit
            | Stage::FeedbackPush
            | Stage::FeedbackReply
            | Stage::FeedbackCleanup => "fixing_feedback",
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
            | Stage::ReportToParent
            | Stage::AnnounceSpec
            | Stage::CreateSplit
            | Stage::QueueBuild => "running",
        }
    }

    /// The latest triage, if it is for the current round (the review saw the current code).
    pub fn current_triage(&self) -> Option<&[Decision]> {
        self.triage
            .last()
            .filter(|(r, _)| *r == self.round)
            .map(|(_, d)| d.as_slice())
    }

    /// Findings the latest triage of the current round put in fix_now.
    pub fn fix_now(&self) -> Vec<&Decision> {
        self.current_triage()
            .unwrap_or_default()
            .iter()
            .filter(|d| d.bucket == Bucket::FixNow)
            .collect()
    }

    pub fn failing_gates(&self) -> Vec<&GateResult> {
        self.gates.iter().filter(|g| !g.passed).collect()
    }

    /// Every backlog decision of the job, one per distinct finding (the latest wins).
    pub fn backlog(&self) -> Vec<&Decision> {
        let mut out: Vec<&Decision> = Vec::new();
        for (_, decisions) in &self.triage {
            for d in decisions {
                match out.iter().position(|o| o.finding.same_as(&d.finding)) {
                    Some(i) => out[i] = d,
                    None => out.push(d),
                }
            }
        }
        out.retain(|d| d.bucket == Bucket::Backlog);
        out
    }

    /// Gates that failed in a round and passed in a later one: what the fix rounds fixed.
    pub fn fixed_gates(&self) -> Vec<(u32, &GateResult)> {
        let mut out: Vec<(u32, &GateResult)> = Vec::new();
        for (round, gates) in &self.gate_rounds {
            for g in gates.iter().filter(|g| !g.passed) {
                let passed_later = self
                    .gate_rounds
                    .iter()
                    .filter(|(r, _)| r > round)
                    .any(|(_, later)| later.iter().any(|l| l.name == g.name && l.passed));
                let first = !out.iter().any(|(_, o)| o.name == g.name);
                if passed_later && first {
                    out.push((*round, g));
                }
            }
        }
        out
    }

    /// fix_now findings of a round that the next round's review no longer raised.
    pub fn fixed(&self) -> Vec<(u32, &Decision)> {
        let mut out = Vec::new();
        for (round, decisions) in &self.triage {
            let Some((_, next)) = self.triage.iter().find(|(r, _)| *r == round + 1) else {
                continue;
            };
            for d in decisions.iter().filter(|d| d.bucket == Bucket::FixNow) {
                if !next.iter().any(|n| n.finding.same_as(&d.finding)) {
                    out.push((*round, d));
                }
            }
        }
        out
    }

    /// The review angle of the current round still to run, if any.
    pub fn next_angle(&self) -> Option<&Angle> {
        let plan = self
            .review_plan
            .as_ref()
            .filter(|p| p.round == self.round)?;
        plan.angles.iter().find(|a| {
            !self
                .reviews
                .iter()
                .any(|r| r.round == self.round && r.angle == a.name)
        })
    }

    /// The effect the current stage asks for, if any.
    pub fn pending_effect(&self) -> Option<Effect> {
        let agent =
            |stage: AgentStage, round: u32, resume: Option<String>, angle: Option<String>| {
                Some(Effect::RunAgent {
                    stage,
                    round,
                    resume,
                    angle,
                })
            };
        match self.stage {
            Stage::Acknowledge => Some(Effect::UpdateTicket {
                status: TicketStatus::InProgress,
                note: NoteKind::Acknowledged,
            }),
            Stage::Readiness => agent(AgentStage::Readiness, 0, None, None),
            Stage::AnnounceNeedsInput => Some(Effect::UpdateTicket {
                status: TicketStatus::NeedsInput,
                note: NoteKind::NeedsInput,
            }),
            Stage::Start => Some(Effect::UpdateTicket {
                status: TicketStatus::InProgress,
                note: NoteKind::Started,
            }),
            Stage::Prepare => Some(Effect::PrepareWorkspace),
            Stage::Research => agent(AgentStage::Research, 0, None, None),
            Stage::Plan => agent(AgentStage::Plan, 0, None, None),
            Stage::PostPlan => Some(Effect::UpdateTicket {
                status: TicketStatus::InProgress,
                note: NoteKind::Plan,
            }),
            Stage::Implement => agent(AgentStage::Implement, 0, None, None),
            Stage::Gates => Some(Effect::RunGates { round: self.round }),
            Stage::PlanReview => Some(Effect::PlanReview { round: self.round }),
            Stage::Review => self
                .next_angle()
                .and_then(|a| agent(AgentStage::Review, self.round, None, Some(a.name.clone()))),
            Stage::Triage => agent(AgentStage::Triage, self.round, None, None),
            Stage::Fix => agent(
                AgentStage::Fix,
                self.round + 1,
                self.implement_session.clone(),
                None,
            ),
            Stage::Commit => Some(Effect::Commit),
            Stage::Propose => Some(Effect::Propose),
            Stage::AnnounceProposal => Some(Effect::UpdateTicket {
                status: TicketStatus::AwaitingApproval,
                note: NoteKind::Proposal,
            }),
            Stage::AwaitingApproval => None,
            Stage::AwaitingChildren => {
                if let Some(r) = self.rework.first() {
                    return Some(Effect::ReworkSubtask { id: r.id.clone() });
                }
                let checked = self.checked_graph()?;
                match subtasks::next(&checked, &self.children) {
                    subtasks::Next::Start(ids) => Some(Effect::StartSubtasks {
                        ids: ids
                            .into_iter()
                            .map(|i| checked.graph.subtasks[i].id.clone())
                            .collect(),
                    }),
                    subtasks::Next::Stack => Some(Effect::BuildStack),
                    subtasks::Next::Wait | subtasks::Next::Blocked(_) => None,
                }
            }
            Stage::ReportToParent => Some(Effect::ReportToParent),
            Stage::AnnounceSpec => Some(Effect::UpdateTicket {
                status: match &self.spec {
                    _ if !self.questions.is_empty() => TicketStatus::NeedsInput,
                    Some(spec)
                        if spec.queues_itself(self.refine.unwrap_or_default().auto_queue) =>
                    {
                        TicketStatus::InProgress
                    }
                    _ => TicketStatus::AwaitingApproval,
                },
                note: NoteKind::Spec,
            }),
            Stage::AwaitingAcceptance => None,
            Stage::CreateSplit => Some(Effect::CreateSplitTickets),
            Stage::QueueBuild => Some(Effect::QueueBuild),
            Stage::Push => self.commit.clone().map(|commit| Effect::Push { commit }),
            Stage::RecordPr => self
                .commit
                .clone()
                .map(|commit| Effect::RecordPr { commit }),
            Stage::CreateBacklog => Some(Effect::CreateBacklogTickets),
            Stage::AnnounceShipped => Some(Effect::UpdateTicket {
                status: TicketStatus::InReview,
                note: NoteKind::Shipped,
            }),
            Stage::Cleanup => Some(Effect::Cleanup { stopped: false }),
            Stage::InReview => None,
            Stage::FeedbackPrepare => Some(Effect::PrepareFeedback {
                round: self.feedback_round,
            }),
            Stage::FeedbackFix => agent(
                AgentStage::Fix,
                self.round + 1,
                self.implement_session.clone(),
                None,
            ),
            Stage::FeedbackGates => Some(Effect::RunGates { round: self.round }),
            Stage::FeedbackCommit => Some(Effect::Commit),
            Stage::FeedbackPush => self.commit.clone().map(|commit| Effect::Push { commit }),
            Stage::FeedbackReply => Some(Effect::ReplyFeedback {
                round: self.feedback_round,
            }),
            Stage::FeedbackCleanup => Some(Effect::Cleanup {
                stopped: matches!(self.feedback_result, Some(FeedbackResult::Failed { .. })),
            }),
            Stage::AnnouncePrClosed => Some(if self.merged == Some(true) {
                Effect::UpdateTicket {
                    status: TicketStatus::Done,
                    note: NoteKind::Merged,
                }
            } else {
                Effect::UpdateTicket {
                    status: TicketStatus::Rejected,
                    note: NoteKind::Closed,
                }
            }),
            Stage::FinalCleanup => Some(Effect::Cleanup { stopped: false }),
            Stage::Snapshot => Some(Effect::SnapshotWip),
            Stage::AnnounceStop => Some(Effect::UpdateTicket {
                status: match self.stop {
                    Some(StopKind::Rejected) => TicketStatus::Rejected,
                    _ => TicketStatus::NeedsAttention,
                },
                note: NoteKind::Stopped,
            }),
            Stage::CleanupStopped => Some(Effect::Cleanup { stopped: true }),
            Stage::Done
            | Stage::NeedsAttention
            | Stage::NeedsInput
            | Stage::Rejected
            | Stage::Cancelled => None,
        }
    }
}

impl JobState {
    /// Whether a job that stopped to ask questions may run again: only once a person edited the
    /// ticket after the questions were asked (`asked_at`, the job's last journal entry).
    pub fn answered(
        &self,
        edited_at: Option<chrono::DateTime<chrono::Utc>>,
        asked_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> bool {
        self.stage != Stage::NeedsInput
            || matches!((edited_at, asked_at), (Some(edited), Some(asked)) if edited > asked)
    }
}
