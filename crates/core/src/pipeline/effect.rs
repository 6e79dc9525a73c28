//! The IO the runner performs for a job ([`Effect`]) and the ticket notes it writes.

use serde::{Deserialize, Serialize};

use super::{AgentStage, TicketStatus};

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
    /// A refinement's spec, written back to the ticket.
    Spec,
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
    /// Make the tickets of the sub-tasks that may start now (by marker) and queue their jobs.
    StartSubtasks {
        ids: Vec<String>,
    },
    /// Stack the sub-tasks' commits in dependency order on the parent's base.
    BuildStack,
    /// A sub-job tells its parent how it ended.
    ReportToParent,
    /// Make the tickets of an accepted spec's proposed split (by marker).
    CreateSplitTickets,
    /// Move a refined ticket to the build trigger.
    QueueBuild,
    /// Send a sub-task a person rejected back for its fix round.
    ReworkSubtask {
        id: String,
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
            Effect::StartSubtasks { .. } => "start_subtasks".into(),
            Effect::BuildStack => "build_stack".into(),
            Effect::ReportToParent => "report_to_parent".into(),
            Effect::ReworkSubtask { id } => format!("rework_subtask:{id}"),
            Effect::CreateSplitTickets => "create_split".into(),
            Effect::QueueBuild => "queue_build".into(),
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
        NoteKind::Spec => "spec",
    }
}
