//! The closed set of stages, the agent steps among them, and the ticket statuses codemill sets
//! in the tracker.

use serde::{Deserialize, Serialize};

use crate::agent::AgentMode;

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
    /// A split ticket's parent: sub-jobs run; it starts the next ones and stacks them at the end.
    AwaitingChildren,
    /// A sub-job tells its parent how it ended.
    ReportToParent,
    /// A refinement writes its spec back to the ticket.
    AnnounceSpec,
    /// A refined spec waits for a person to accept it.
    AwaitingAcceptance,
    /// An accepted spec's split becomes tickets.
    CreateSplit,
    /// The refined ticket moves to the build trigger.
    QueueBuild,
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
            Stage::AwaitingChildren => "awaiting_children",
            Stage::ReportToParent => "report_to_parent",
            Stage::AnnounceSpec => "announce_spec",
            Stage::AwaitingAcceptance => "awaiting_acceptance",
            Stage::CreateSplit => "create_split",
            Stage::QueueBuild => "queue_build",
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
                | Stage::AwaitingChildren
                | Stage::AnnounceSpec
                | Stage::AwaitingAcceptance
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
