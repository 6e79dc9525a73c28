//! The pipeline of one job as a closed set of stages and a pure transition function.
//!
//! Job state is never stored: it is the fold of the job's journal through [`apply`]. What to do
//! next is [`next_action`] of that state. The runner executes the action's effect, journals the
//! resulting [`JobEvent`], and folds again, so a crash anywhere replays to the same pending effect
//! and every effect must be safe to run twice.

mod transition;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentMode, AgentOutcome};
use crate::cost::Usage;
use crate::findings::Finding;
use crate::ids::{ProjectName, TicketKey};
use crate::review::Angle;
use crate::triage::{Bucket, Decision, TriagePolicy};

pub use transition::apply;

/// An effect interrupted this many times (crash, kill) stops the job instead of looping.
pub const MAX_EFFECT_STARTS: u32 = 3;

/// The label a ticket gets while codemill waits for answers to its questions.
pub const NEEDS_INPUT_LABEL: &str = "codemill:needs-input";

/// The agent steps of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStage {
    Readiness,
    Research,
    Plan,
    Implement,
    Review,
    Triage,
    Fix,
}

impl AgentStage {
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentStage::Readiness => "readiness",
            AgentStage::Research => "research",
            AgentStage::Plan => "plan",
            AgentStage::Implement => "implement",
            AgentStage::Review => "review",
            AgentStage::Triage => "triage",
            AgentStage::Fix => "fix",
        }
    }

    /// Only implement and fix may edit the worktree.
    pub fn mode(&self) -> AgentMode {
        match self {
            AgentStage::Readiness
            | AgentStage::Research
            | AgentStage::Plan
            | AgentStage::Review
            | AgentStage::Triage => AgentMode::ReadOnly,
            AgentStage::Implement | AgentStage::Fix => AgentMode::Write,
        }
    }
}

/// Status of a ticket in the tracker, as codemill sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Todo,
    InProgress,
    NeedsInput,
    AwaitingApproval,
    InReview,
    NeedsAttention,
    Rejected,
    Done,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 8] = [
        TicketStatus::Todo,
        TicketStatus::InProgress,
        TicketStatus::NeedsInput,
        TicketStatus::AwaitingApproval,
        TicketStatus::InReview,
        TicketStatus::NeedsAttention,
        TicketStatus::Rejected,
        TicketStatus::Done,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TicketStatus::Todo => "todo",
            TicketStatus::InProgress => "in_progress",
            TicketStatus::NeedsInput => "needs_input",
            TicketStatus::AwaitingApproval => "awaiting_approval",
            TicketStatus::InReview => "in_review",
            TicketStatus::NeedsAttention => "needs_attention",
            TicketStatus::Rejected => "rejected",
            TicketStatus::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<TicketStatus> {
        TicketStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

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
        }
    }
}

/// The closed set of stages. Terminal: `Done`, `NeedsAttention`, `NeedsInput`, `Rejected`,
/// `Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Acknowledge,
    Readiness,
    AnnounceNeedsInput,
    NeedsInput,
    Start,
    Prepare,
    Research,
    Plan,
    PostPlan,
    Implement,
    Gates,
    PlanReview,
    Review,
    Triage,
    Fix,
    Commit,
    Propose,
    AnnounceProposal,
    AwaitingApproval,
    Push,
    RecordPr,
    CreateBacklog,
    AnnounceShipped,
    Cleanup,
    /// The PR is open on an outside forge; waiting for feedback or the merge.
    InReview,
    FeedbackPrepare,
    FeedbackFix,
    FeedbackGates,
    FeedbackCommit,
    FeedbackPush,
    FeedbackReply,
    FeedbackCleanup,
    AnnouncePrClosed,
    FinalCleanup,
    Done,
    Snapshot,
    AnnounceStop,
    CleanupStopped,
    NeedsAttention,
    Rejected,
    Cancelled,
}

impl Stage {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Acknowledge => "acknowledge",
            Stage::Readiness => "readiness",
            Stage::AnnounceNeedsInput => "announce_needs_input",
            Stage::NeedsInput => "needs_input",
            Stage::Start => "start",
            Stage::Prepare => "prepare",
            Stage::Research => "research",
            Stage::Plan => "plan",
            Stage::PostPlan => "post_plan",
            Stage::Implement => "implement",
            Stage::Gates => "gates",
            Stage::PlanReview => "plan_review",
            Stage::Review => "review",
            Stage::Triage => "triage",
            Stage::Fix => "fix",
            Stage::Commit => "commit",
            Stage::Propose => "propose",
            Stage::AnnounceProposal => "announce_proposal",
            Stage::AwaitingApproval => "awaiting_approval",
            Stage::Push => "push",
            Stage::RecordPr => "record_pr",
            Stage::CreateBacklog => "create_backlog",
            Stage::AnnounceShipped => "announce_shipped",
            Stage::Cleanup => "cleanup",
            Stage::InReview => "in_review",
            Stage::FeedbackPrepare => "feedback_prepare",
            Stage::FeedbackFix => "feedback_fix",
            Stage::FeedbackGates => "feedback_gates",
            Stage::FeedbackCommit => "feedback_commit",
            Stage::FeedbackPush => "feedback_push",
            Stage::FeedbackReply => "feedback_reply",
            Stage::FeedbackCleanup => "feedback_cleanup",
            Stage::AnnouncePrClosed => "announce_pr_closed",
            Stage::FinalCleanup => "final_cleanup",
            Stage::Done => "done",
            Stage::Snapshot => "snapshot",
            Stage::AnnounceStop => "announce_stop",
            Stage::CleanupStopped => "cleanup_stopped",
            Stage::NeedsAttention => "needs_attention",
            Stage::Rejected => "rejected",
            Stage::Cancelled => "cancelled",
        }
    }

    /// Stages in which a person may still cancel: the job has not been decided on yet.
    pub fn is_cancellable(&self) -> bool {
        matches!(
            self,
            Stage::Acknowledge
                | Stage::Readiness
                | Stage::AnnounceNeedsInput
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
        )
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Stage::Done
                | Stage::NeedsAttention
                | Stage::NeedsInput
                | Stage::Rejected
                | Stage::Cancelled
        )
    }

    /// A stage of a fix round started by PR feedback.
    pub fn is_feedback(&self) -> bool {
        matches!(
            self,
            Stage::FeedbackPrepare
                | Stage::FeedbackFix
                | Stage::FeedbackGates
                | Stage::FeedbackCommit
                | Stage::FeedbackPush
                | Stage::FeedbackReply
                | Stage::FeedbackCleanup
        )
    }
}

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

/// Fix attempts (agent plus gates) within one feedback round before giving up on it.
pub const FEEDBACK_ATTEMPTS: u32 = 2;

fn is_false(b: &bool) -> bool {
    !*b
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
}

/// An event that does not fit the job's current stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event `{event}` does not apply to a job in stage `{stage}`")]
pub struct InvalidEvent {
    pub stage: &'static str,
    pub event: String,
}

/// The kinds of comment codemill writes on a ticket; with the job id they make a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    Acknowledged,
    NeedsInput,
    Started,
    Plan,
    Proposal,
    Shipped,
    Stopped,
    Merged,
    Closed,
}

/// IO the runner performs for a job. Each is idempotent: it looks before it acts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    UpdateTicket {
        status: TicketStatus,
        note: NoteKind,
    },
    PrepareWorkspace,
    RunAgent {
        stage: AgentStage,
        round: u32,
        resume: Option<String>,
        #[serde(default)]
        angle: Option<String>,
    },
    RunGates {
        round: u32,
    },
    PlanReview {
        round: u32,
    },
    Commit,
    Propose,
    Push {
        commit: String,
    },
    RecordPr {
        commit: String,
    },
    CreateBacklogTickets,
    SnapshotWip,
    Cleanup {
        stopped: bool,
    },
    /// A worktree on the PR branch's current head for a feedback round.
    PrepareFeedback {
        round: u32,
    },
    /// Post the feedback round's outcome on the PR.
    ReplyFeedback {
        round: u32,
    },
}

impl Effect {
    pub fn name(&self) -> String {
        match self {
            Effect::UpdateTicket { note, .. } => format!("update_ticket:{}", note_name(*note)),
            Effect::PrepareWorkspace => "prepare_workspace".into(),
            Effect::RunAgent {
                stage,
                round,
                angle: Some(angle),
                ..
            } => format!("agent:{}:{round}:{angle}", stage.as_str()),
            Effect::RunAgent { stage, round, .. } => format!("agent:{}:{round}", stage.as_str()),
            Effect::RunGates { round } => format!("gates:{round}"),
            Effect::PlanReview { round } => format!("plan_review:{round}"),
            Effect::Commit => "commit".into(),
            Effect::Propose => "propose".into(),
            Effect::Push { .. } => "push".into(),
            Effect::RecordPr { .. } => "record_pr".into(),
            Effect::CreateBacklogTickets => "create_backlog".into(),
            Effect::SnapshotWip => "snapshot_wip".into(),
            Effect::Cleanup { .. } => "cleanup".into(),
            Effect::PrepareFeedback { round } => format!("prepare_feedback:{round}"),
            Effect::ReplyFeedback { round } => format!("reply_feedback:{round}"),
        }
    }
}

pub fn note_name(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::Acknowledged => "acknowledged",
        NoteKind::NeedsInput => "needs_input",
        NoteKind::Started => "started",
        NoteKind::Plan => "plan",
        NoteKind::Proposal => "proposal",
        NoteKind::Shipped => "shipped",
        NoteKind::Stopped => "stopped",
        NoteKind::Merged => "merged",
        NoteKind::Closed => "closed",
    }
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
    Finished,
}

/// The result of one transition: the next state and the effects it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub next: JobState,
    pub effects: Vec<Effect>,
}

impl JobState {
    fn new(
        ticket: TicketKey,
        project: ProjectName,
        max_rounds: u32,
        acknowledge: bool,
        follow_pr: bool,
    ) -> Self {
        JobState {
            ticket,
            project,
            max_rounds,
            stage: if acknowledge {
                Stage::Acknowledge
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
        }
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
            }) => JobState::new(
                ticket.clone(),
                project.clone(),
                *max_rounds,
                *acknowledge,
                *follow_pr,
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

    /// The user-facing state name.
    pub fn status(&self) -> &'static str {
        match self.stage {
            Stage::Done => "done",
            Stage::NeedsAttention => "needs_attention",
            Stage::NeedsInput => "needs_input",
            Stage::Rejected => "rejected",
            Stage::Cancelled => "cancelled",
            Stage::AwaitingApproval => "awaiting_approval",
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
            | Stage::AnnounceProposal => "running",
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

/// Decide what the runner does next for a job in `state`.
pub fn next_action(state: &JobState) -> Action {
    if state.stage.is_terminal() {
        return Action::Finished;
    }
    match state.pending_effect() {
        None if state.stage == Stage::AwaitingApproval => Action::AwaitApproval,
        None if state.stage == Stage::InReview => Action::AwaitPr,
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
