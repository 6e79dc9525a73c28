//! What the journal records: [`JobEvent`], one fact per effect or decision, and the results it
//! carries (gate results, agent runs, the proposal, PR feedback, a review round's plan).

use serde::{Deserialize, Serialize};

use crate::agent::AgentOutcome;
use crate::cost::Usage;
use crate::findings::Finding;
use crate::ids::{ProjectName, TicketKey};
use crate::review::Angle;
use crate::subtasks::{Child, ChildResult, Graph, Rework, StackEntry, SubtaskOf};
use crate::triage::{Decision, TriagePolicy};

use super::AgentStage;

/// One gate command's result, output capped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    pub command: String,
    pub passed: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub output: String,
    /// Set when the command could not run at all (missing program, missing directory).
    pub error: Option<String>,
    /// The gate's policy counts a timeout as a failure to fix (`fix_on_timeout`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fix_on_timeout: bool,
}

impl GateResult {
    /// How the gate ended, in words: `passed`, `exit 101`, `timed out after 600 s`,
    /// `could not run`.
    pub fn outcome(&self) -> String {
        if self.passed {
            "passed".into()
        } else if self.timed_out {
            format!("timed out after {} s", (self.duration_ms + 500) / 1000)
        } else if self.error.is_some() {
            "could not run".into()
        } else {
            match self.exit_code {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".into(),
            }
        }
    }

    /// Failed only by running out of time, which its policy does not count as a code failure.
    pub fn timed_out_for_good(&self) -> bool {
        !self.passed && self.timed_out && !self.fix_on_timeout
    }
}

/// The readiness check's verdict on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// At most five clarifying questions when not ready.
    #[serde(default)]
    pub questions: Vec<String>,
}

impl Readiness {
    /// Read `{"ready": bool, "questions": [...]}` from the readiness agent's answer.
    pub fn parse(text: &str) -> Result<Readiness, String> {
        crate::findings::json_candidates(text)
            .iter()
            .rev()
            .find_map(|c| serde_json::from_str::<Readiness>(c.trim()).ok())
            .map(|mut r| {
                r.questions.retain(|q| !q.trim().is_empty());
                r.questions.truncate(5);
                r
            })
            .ok_or_else(|| "no {\"ready\": ..., \"questions\": [...]} object found".to_string())
    }
}

/// What one agent step did, as journalled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub agent: String,
    pub model: String,
    pub outcome: AgentOutcome,
    pub session_id: Option<String>,
    pub usage: Usage,
    pub cost_usd: f64,
    pub turns: u32,
    pub duration_ms: u64,
    /// Artifact file written from the agent's answer (research notes, plan), relative to the job's artifact dir.
    pub artifact: Option<String>,
    /// Review only: the angle this session reviewed from.
    #[serde(default)]
    pub angle: Option<String>,
    /// Review only: the parsed findings.
    pub findings: Option<Vec<Finding>>,
    /// Triage only: every merged finding with its bucket and reason.
    #[serde(default)]
    pub decisions: Option<Vec<Decision>>,
    /// Readiness only: the verdict.
    #[serde(default)]
    pub readiness: Option<Readiness>,
    /// The structured answer could not be read, even after one repair request.
    pub parse_error: Option<String>,
    /// A repair request was needed to get a readable answer.
    #[serde(default)]
    pub repaired: bool,
    /// A refinement's draft step: the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Box<crate::refine::Spec>>,
    /// Plan only: the checked graph of sub-tasks, when the planner split the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtasks: Option<Graph>,
    /// Implement and fix: whether the step left the worktree different from before it (known
    /// once the worktree was kept; `None` for other stages and older journals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// The agent's last text, truncated, for the timeline.
    pub summary: String,
}

/// What a human approves: exactly one commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub commit: String,
    pub branch: String,
    pub base: String,
    pub title: String,
    pub summary: String,
    pub diff_stat: String,
    /// Findings that were not fixed: backlog and ignored ones, with their reasons.
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub decisions: Vec<Decision>,
    pub rounds: u32,
    pub usage: Usage,
    pub cost_usd: f64,
    /// A split ticket: one commit per sub-task, bottom first; `commit` is the top.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<StackEntry>,
}

/// What kind of PR feedback started a fix round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// A comment on a line of the diff.
    ReviewComment,
    /// A review submitted with "changes requested".
    ChangesRequested,
    /// A comment on the PR's conversation.
    Comment,
    /// A check or status on the PR's head commit failed.
    CheckFailed,
}

/// Feedback on codemill's PR. Its text is untrusted: it reaches an agent only stripped of hidden
/// content and quoted as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Unique per forge object (`review-comment:123`, `check-run:9`): the same feedback
    /// delivered twice starts one round.
    pub id: String,
    pub kind: FeedbackKind,
    pub author: String,
    pub body: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    /// The forge's id of the comment to reply to, for review comments.
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// One review round's plan: the angles, the policy and what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPlan {
    pub round: u32,
    pub angles: Vec<Angle>,
    pub policy: TriagePolicy,
    /// Files changed since the previous review (all changed files in the first round).
    pub changed_files: Vec<String>,
    /// The commit holding the worktree as this round reviews it.
    pub snapshot: Option<String>,
}

/// A fact the runner records in a job's journal. The journal is append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    Created {
        ticket: TicketKey,
        project: ProjectName,
        max_rounds: u32,
        /// The ticket lives in an outside tracker: say "picked up" before anything else.
        #[serde(default, skip_serializing_if = "is_false")]
        acknowledge: bool,
        /// The PR lives on an outside forge: after shipping, wait for its review, checks and
        /// merge instead of finishing.
        #[serde(default, skip_serializing_if = "is_false")]
        follow_pr: bool,
        /// A sub-job of a split ticket: its parent and where it stacks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subtask: Option<SubtaskOf>,
        /// A refinement job: the idea becomes a spec, not a change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refine: Option<crate::refine::Mode>,
    },
    /// The runner is about to execute the pending effect (counts interruptions).
    EffectStarted {
        effect: String,
    },
    TicketUpdated {
        marker: String,
    },
    WorkspaceReady {
        worktree: String,
        branch: String,
        base_commit: String,
        default_branch: String,
    },
    AgentFinished {
        stage: AgentStage,
        round: u32,
        run: StageRun,
    },
    GatesFinished {
        round: u32,
        gates: Vec<GateResult>,
    },
    ReviewPlanned {
        plan: ReviewPlan,
    },
    Committed {
        commit: String,
    },
    Proposed {
        proposal: Proposal,
    },
    Approved {
        commit: String,
        by: String,
    },
    Rejected {
        reason: String,
        by: String,
    },
    Pushed {
        commit: String,
        branch: String,
    },
    PrRecorded {
        pr: i64,
        /// The forge's PR number and link, for an outside forge.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Feedback arrived on the job's PR (review comments, changes requested, failed checks).
    FeedbackReceived {
        feedback: Vec<Feedback>,
    },
    /// The job's PR was closed, merged or not.
    PrClosed {
        merged: bool,
        by: String,
    },
    /// A feedback round's worktree is ready at the PR branch's current head.
    FeedbackWorkspaceReady {
        worktree: String,
        head: String,
    },
    /// The feedback round's outcome was posted on the PR.
    FeedbackReplied {
        round: u32,
    },
    /// Backlog findings became tickets (keys), linked to this one.
    BacklogCreated {
        tickets: Vec<String>,
    },
    Snapshotted {
        wip_ref: Option<String>,
        commit: Option<String>,
    },
    CleanedUp {
        worktree_removed: bool,
    },
    /// A person cancelled the job: it stops the way a rejection does (work kept on a WIP ref,
    /// a note on the ticket) and ends as `cancelled`. Only before the proposal is decided.
    Cancelled {
        by: String,
    },
    /// An effect failed in a way retrying will not mend; the job stops with the reason.
    EffectFailed {
        effect: String,
        error: String,
    },
    /// A split ticket's parent started sub-jobs (tickets made and queued).
    SubtasksStarted {
        children: Vec<Child>,
    },
    /// A sub-job told its parent how it ended (written into the parent's journal).
    SubtaskFinished {
        id: String,
        result: ChildResult,
        /// The sub-job that ended, when it is a retry of the one the parent started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<crate::ids::JobId>,
    },
    /// The sub-tasks' commits stacked in dependency order; `commit` is the top.
    Stacked {
        entries: Vec<StackEntry>,
        commit: String,
    },
    /// A sub-job told its parent how it ended.
    ParentTold {
        parent: TicketKey,
    },
    /// A person rejected one sub-task's commit of the proposed stack: that sub-task goes back
    /// for a fix round, and the stack is built again once it is ready (parent's journal).
    SubtaskRejected {
        rework: Rework,
    },
    /// The sub-job was sent back for its fix round (parent's journal).
    SubtaskReworkSent {
        id: String,
    },
    /// Sent back by a person from its parent's stack, with why (sub-job's journal).
    Reworked {
        reason: String,
        by: String,
    },
    /// A person accepted a refined spec.
    Accepted {
        by: String,
    },
    /// The ticket was edited while its spec awaited acceptance: this job ends, and a new
    /// refinement job drafts the spec again from the edited text.
    Superseded {
        by: String,
    },
    /// The accepted spec's proposed split became these tickets, linked to this one.
    SplitCreated {
        tickets: Vec<String>,
    },
    /// The refined ticket was moved to the build trigger (label and status).
    BuildQueued,
    /// The parent's approved stack was pushed with this sub-task's PR (written into the
    /// sub-job's journal).
    ShippedWithParent {
        parent: TicketKey,
        pr: i64,
        branch: String,
        /// Its PR on an outside forge.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
}

impl JobEvent {
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Created { .. } => "created",
            JobEvent::EffectStarted { .. } => "effect_started",
            JobEvent::TicketUpdated { .. } => "ticket_updated",
            JobEvent::WorkspaceReady { .. } => "workspace_ready",
            JobEvent::AgentFinished { .. } => "agent_finished",
            JobEvent::GatesFinished { .. } => "gates_finished",
            JobEvent::ReviewPlanned { .. } => "review_planned",
            JobEvent::Committed { .. } => "committed",
            JobEvent::Proposed { .. } => "proposed",
            JobEvent::Approved { .. } => "approved",
            JobEvent::Rejected { .. } => "rejected",
            JobEvent::Pushed { .. } => "pushed",
            JobEvent::PrRecorded { .. } => "pr_recorded",
            JobEvent::FeedbackReceived { .. } => "feedback_received",
            JobEvent::PrClosed { .. } => "pr_closed",
            JobEvent::FeedbackWorkspaceReady { .. } => "feedback_workspace_ready",
            JobEvent::FeedbackReplied { .. } => "feedback_replied",
            JobEvent::BacklogCreated { .. } => "backlog_created",
            JobEvent::Snapshotted { .. } => "snapshotted",
            JobEvent::CleanedUp { .. } => "cleaned_up",
            JobEvent::Cancelled { .. } => "cancelled",
            JobEvent::EffectFailed { .. } => "effect_failed",
            JobEvent::SubtasksStarted { .. } => "subtasks_started",
            JobEvent::SubtaskFinished { .. } => "subtask_finished",
            JobEvent::Stacked { .. } => "stacked",
            JobEvent::ParentTold { .. } => "parent_told",
            JobEvent::ShippedWithParent { .. } => "shipped_with_parent",
            JobEvent::SubtaskRejected { .. } => "subtask_rejected",
            JobEvent::Accepted { .. } => "accepted",
            JobEvent::Superseded { .. } => "superseded",
            JobEvent::SplitCreated { .. } => "split_created",
            JobEvent::BuildQueued => "build_queued",
            JobEvent::SubtaskReworkSent { .. } => "subtask_rework_sent",
            JobEvent::Reworked { .. } => "reworked",
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
