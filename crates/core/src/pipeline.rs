//! The pipeline of one job as a closed set of stages and a pure transition function.
//!
//! Job state is never stored: it is the fold of the job's journal through [`apply`]. What to do
//! next is [`next_action`] of that state. The runner executes the action's effect, journals the
//! resulting [`JobEvent`], and folds again, so a crash anywhere replays to the same pending effect
//! and every effect must be safe to run twice.

use serde::{Deserialize, Serialize};

use crate::agent::{AgentMode, AgentOutcome};
use crate::cost::Usage;
use crate::findings::Finding;
use crate::ids::{ProjectName, TicketKey};

/// An effect interrupted this many times (crash, kill) stops the job instead of looping.
pub const MAX_EFFECT_STARTS: u32 = 3;

/// The agent steps of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStage {
    Research,
    Plan,
    Implement,
    Review,
    Fix,
}

impl AgentStage {
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentStage::Research => "research",
            AgentStage::Plan => "plan",
            AgentStage::Implement => "implement",
            AgentStage::Review => "review",
            AgentStage::Fix => "fix",
        }
    }

    /// Research, plan and review only read; implement and fix edit the worktree.
    pub fn mode(&self) -> AgentMode {
        match self {
            AgentStage::Research | AgentStage::Plan | AgentStage::Review => AgentMode::ReadOnly,
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
    AwaitingApproval,
    InReview,
    NeedsAttention,
    Rejected,
    Done,
}

impl TicketStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            TicketStatus::Todo => "todo",
            TicketStatus::InProgress => "in_progress",
            TicketStatus::AwaitingApproval => "awaiting_approval",
            TicketStatus::InReview => "in_review",
            TicketStatus::NeedsAttention => "needs_attention",
            TicketStatus::Rejected => "rejected",
            TicketStatus::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<TicketStatus> {
        [
            TicketStatus::Todo,
            TicketStatus::InProgress,
            TicketStatus::AwaitingApproval,
            TicketStatus::InReview,
            TicketStatus::NeedsAttention,
            TicketStatus::Rejected,
            TicketStatus::Done,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
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
    /// Review only: the parsed findings, or why they could not be parsed.
    pub findings: Option<Vec<Finding>>,
    pub parse_error: Option<String>,
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
    pub findings: Vec<Finding>,
    pub rounds: u32,
    pub usage: Usage,
    pub cost_usd: f64,
}

/// A fact the runner records in a job's journal. The journal is append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    Created {
        ticket: TicketKey,
        project: ProjectName,
        max_rounds: u32,
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
    },
    Snapshotted {
        wip_ref: Option<String>,
        commit: Option<String>,
    },
    CleanedUp {
        worktree_removed: bool,
    },
    /// An effect failed in a way retrying will not mend; the job stops with the reason.
    EffectFailed {
        effect: String,
        error: String,
    },
}

/// The closed set of stages. Terminal: `Done`, `NeedsAttention`, `Rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Start,
    Prepare,
    Research,
    Plan,
    PostPlan,
    Implement,
    Gates,
    Review,
    Fix,
    Commit,
    Propose,
    AnnounceProposal,
    AwaitingApproval,
    Push,
    RecordPr,
    AnnounceShipped,
    Cleanup,
    Done,
    Snapshot,
    AnnounceStop,
    CleanupStopped,
    NeedsAttention,
    Rejected,
}

impl Stage {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Start => "start",
            Stage::Prepare => "prepare",
            Stage::Research => "research",
            Stage::Plan => "plan",
            Stage::PostPlan => "post_plan",
            Stage::Implement => "implement",
            Stage::Gates => "gates",
            Stage::Review => "review",
            Stage::Fix => "fix",
            Stage::Commit => "commit",
            Stage::Propose => "propose",
            Stage::AnnounceProposal => "announce_proposal",
            Stage::AwaitingApproval => "awaiting_approval",
            Stage::Push => "push",
            Stage::RecordPr => "record_pr",
            Stage::AnnounceShipped => "announce_shipped",
            Stage::Cleanup => "cleanup",
            Stage::Done => "done",
            Stage::Snapshot => "snapshot",
            Stage::AnnounceStop => "announce_stop",
            Stage::CleanupStopped => "cleanup_stopped",
            Stage::NeedsAttention => "needs_attention",
            Stage::Rejected => "rejected",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Stage::Done | Stage::NeedsAttention | Stage::Rejected)
    }
}

/// How a stopped job ends once its partial work is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    NeedsAttention,
    Rejected,
}

/// Tokens and money of one agent step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCost {
    pub stage: AgentStage,
    pub round: u32,
    pub agent: String,
    pub model: String,
    pub usage: Usage,
    pub cost_usd: f64,
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
    pub worktree: Option<String>,
    pub branch: Option<String>,
    pub base_commit: Option<String>,
    pub default_branch: Option<String>,
    pub implement_session: Option<String>,
    pub research_artifact: Option<String>,
    pub plan_artifact: Option<String>,
    /// The latest gate results.
    pub gates: Vec<GateResult>,
    /// The latest review's findings.
    pub findings: Vec<Finding>,
    /// Every review's findings, with the round they were raised in.
    pub review_history: Vec<(u32, Vec<Finding>)>,
    pub commit: Option<String>,
    pub proposal: Option<Proposal>,
    pub approved_by: Option<String>,
    pub pr: Option<i64>,
    pub wip: Option<(String, String)>,
    pub usage: Usage,
    pub cost_usd: f64,
    pub costs: Vec<StageCost>,
    /// Why the job stopped (needs attention) or was rejected.
    pub reason: Option<String>,
    pub stop: Option<StopKind>,
    /// How often the pending effect of this stage has been started.
    pub starts_in_stage: u32,
}

/// An event that does not fit the job's current stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event `{event}` does not apply to a job in stage `{stage}`")]
pub struct InvalidEvent {
    pub stage: &'static str,
    pub event: String,
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
            JobEvent::Committed { .. } => "committed",
            JobEvent::Proposed { .. } => "proposed",
            JobEvent::Approved { .. } => "approved",
            JobEvent::Rejected { .. } => "rejected",
            JobEvent::Pushed { .. } => "pushed",
            JobEvent::PrRecorded { .. } => "pr_recorded",
            JobEvent::Snapshotted { .. } => "snapshotted",
            JobEvent::CleanedUp { .. } => "cleaned_up",
            JobEvent::EffectFailed { .. } => "effect_failed",
        }
    }
}

/// A comment codemill writes on a ticket; the marker makes posting it idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketNote {
    pub marker: String,
    pub kind: NoteKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    Started,
    Plan,
    Proposal,
    Shipped,
    Stopped,
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
    },
    RunGates {
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
    SnapshotWip,
    Cleanup {
        stopped: bool,
    },
}

impl Effect {
    pub fn name(&self) -> String {
        match self {
            Effect::UpdateTicket { note, .. } => format!("update_ticket:{note:?}").to_lowercase(),
            Effect::PrepareWorkspace => "prepare_workspace".into(),
            Effect::RunAgent { stage, round, .. } => format!("agent:{}:{round}", stage.as_str()),
            Effect::RunGates { round } => format!("gates:{round}"),
            Effect::Commit => "commit".into(),
            Effect::Propose => "propose".into(),
            Effect::Push { .. } => "push".into(),
            Effect::RecordPr { .. } => "record_pr".into(),
            Effect::SnapshotWip => "snapshot_wip".into(),
            Effect::Cleanup { .. } => "cleanup".into(),
        }
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
    Finished,
}

/// The result of one transition: the next state and the effects it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub next: JobState,
    pub effects: Vec<Effect>,
}

impl JobState {
    fn new(ticket: TicketKey, project: ProjectName, max_rounds: u32) -> Self {
        JobState {
            ticket,
            project,
            max_rounds,
            stage: Stage::Start,
            round: 0,
            worktree: None,
            branch: None,
            base_commit: None,
            default_branch: None,
            implement_session: None,
            research_artifact: None,
            plan_artifact: None,
            gates: Vec::new(),
            findings: Vec::new(),
            review_history: Vec::new(),
            commit: None,
            proposal: None,
            approved_by: None,
            pr: None,
            wip: None,
            usage: Usage::default(),
            cost_usd: 0.0,
            costs: Vec::new(),
            reason: None,
            stop: None,
            starts_in_stage: 0,
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
            }) => JobState::new(ticket.clone(), project.clone(), *max_rounds),
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
            Stage::Rejected => "rejected",
            Stage::AwaitingApproval => "awaiting_approval",
            Stage::Push | Stage::RecordPr | Stage::AnnounceShipped | Stage::Cleanup => "shipping",
            Stage::Snapshot | Stage::AnnounceStop | Stage::CleanupStopped => "stopping",
            _ => "running",
        }
    }

    /// The must-fix findings of the latest review.
    pub fn must_fix(&self) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.is_must_fix()).collect()
    }

    pub fn failing_gates(&self) -> Vec<&GateResult> {
        self.gates.iter().filter(|g| !g.passed).collect()
    }

    /// The effect the current stage asks for, if any.
    pub fn pending_effect(&self) -> Option<Effect> {
        match self.stage {
            Stage::Start => Some(Effect::UpdateTicket {
                status: TicketStatus::InProgress,
                note: NoteKind::Started,
            }),
            Stage::Prepare => Some(Effect::PrepareWorkspace),
            Stage::Research => Some(Effect::RunAgent {
                stage: AgentStage::Research,
                round: 0,
                resume: None,
            }),
            Stage::Plan => Some(Effect::RunAgent {
                stage: AgentStage::Plan,
                round: 0,
                resume: None,
            }),
            Stage::PostPlan => Some(Effect::UpdateTicket {
                status: TicketStatus::InProgress,
                note: NoteKind::Plan,
            }),
            Stage::Implement => Some(Effect::RunAgent {
                stage: AgentStage::Implement,
                round: 0,
                resume: None,
            }),
            Stage::Gates => Some(Effect::RunGates { round: self.round }),
            Stage::Review => Some(Effect::RunAgent {
                stage: AgentStage::Review,
                round: self.round,
                resume: None,
            }),
            Stage::Fix => Some(Effect::RunAgent {
                stage: AgentStage::Fix,
                round: self.round + 1,
                resume: self.implement_session.clone(),
            }),
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
            Stage::AnnounceShipped => Some(Effect::UpdateTicket {
                status: TicketStatus::InReview,
                note: NoteKind::Shipped,
            }),
            Stage::Cleanup => Some(Effect::Cleanup { stopped: false }),
            Stage::Snapshot => Some(Effect::SnapshotWip),
            Stage::AnnounceStop => Some(Effect::UpdateTicket {
                status: match self.stop {
                    Some(StopKind::Rejected) => TicketStatus::Rejected,
                    _ => TicketStatus::NeedsAttention,
                },
                note: NoteKind::Stopped,
            }),
            Stage::CleanupStopped => Some(Effect::Cleanup { stopped: true }),
            Stage::Done | Stage::NeedsAttention | Stage::Rejected => None,
        }
    }
}

/// Decide what the runner does next for a job in `state`.
pub fn next_action(state: &JobState) -> Action {
    if state.stage.is_terminal() {
        return Action::Finished;
    }
    match state.pending_effect() {
        None if state.stage == Stage::AwaitingApproval => Action::AwaitApproval,
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

fn stop(mut s: JobState, kind: StopKind, reason: String) -> JobState {
    s.stop = Some(kind);
    s.reason = Some(reason);
    s.stage = Stage::Snapshot;
    s
}

/// Apply one journal event to a state.
pub fn apply(state: &JobState, event: &JobEvent) -> Result<JobState, InvalidEvent> {
    let invalid = || InvalidEvent {
        stage: state.stage.as_str(),
        event: event.name().into(),
    };
    let mut s = state.clone();
    let before = s.stage;

    if let JobEvent::EffectStarted { .. } = event {
        if s.stage.is_terminal() || s.stage == Stage::AwaitingApproval {
            return Err(invalid());
        }
        s.starts_in_stage += 1;
        return Ok(s);
    }

    if let JobEvent::EffectFailed { effect, error } = event {
        s.stage = match s.stage {
            // Failing while already stopping: move on so the job still ends.
            Stage::Snapshot => Stage::AnnounceStop,
            Stage::AnnounceStop => Stage::CleanupStopped,
            Stage::CleanupStopped => match s.stop {
                Some(StopKind::Rejected) => Stage::Rejected,
                _ => Stage::NeedsAttention,
            },
            Stage::Done | Stage::NeedsAttention | Stage::Rejected | Stage::AwaitingApproval => {
                return Err(invalid());
            }
            _ => {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    format!("{effect} failed: {error}"),
                );
                Stage::Snapshot
            }
        };
        if before != s.stage {
            s.starts_in_stage = 0;
        }
        if s.reason.is_none() {
            s.reason = Some(format!("{effect} failed: {error}"));
        }
        return Ok(s);
    }

    match (s.stage, event) {
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
                s.stage = Stage::Review;
            } else if s.round < s.max_rounds {
                s.stage = Stage::Fix;
            } else {
                let names: Vec<&str> = gates
                    .iter()
                    .filter(|g| !g.passed)
                    .map(|g| g.name.as_str())
                    .collect();
                s = stop(
                    s.clone(),
                    StopKind::NeedsAttention,
                    format!(
                        "gates still failing after {} fix round(s): {}",
                        s.round,
                        names.join(", ")
                    ),
                );
            }
        }
        (
            Stage::Review,
            JobEvent::AgentFinished {
                stage: AgentStage::Review,
                round,
                run,
            },
        ) if *round == s.round => {
            record_cost(&mut s, AgentStage::Review, *round, run);
            if !run.outcome.is_success() {
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    agent_reason(AgentStage::Review, run),
                );
            } else if let Some(findings) = &run.findings {
                s.findings = findings.clone();
                s.review_history.push((*round, findings.clone()));
                let blocking = findings.iter().filter(|f| f.is_must_fix()).count();
                if blocking == 0 {
                    s.stage = Stage::Commit;
                } else if s.round < s.max_rounds {
                    s.stage = Stage::Fix;
                } else {
                    let r = s.round;
                    s = stop(
                        s,
                        StopKind::NeedsAttention,
                        format!(
                            "{blocking} must-fix review finding(s) remain after {r} fix round(s)"
                        ),
                    );
                }
            } else {
                let why = run
                    .parse_error
                    .clone()
                    .unwrap_or_else(|| "no findings".into());
                s = stop(
                    s,
                    StopKind::NeedsAttention,
                    format!("review output could not be used: {why}"),
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
        (Stage::RecordPr, JobEvent::PrRecorded { pr }) => {
            s.pr = Some(*pr);
            s.stage = Stage::AnnounceShipped;
        }
        (Stage::AnnounceShipped, JobEvent::TicketUpdated { .. }) => s.stage = Stage::Cleanup,
        (Stage::Cleanup, JobEvent::CleanedUp { .. }) => s.stage = Stage::Done,
        (Stage::Snapshot, JobEvent::Snapshotted { wip_ref, commit }) => {
            if let (Some(r), Some(c)) = (wip_ref, commit) {
                s.wip = Some((r.clone(), c.clone()));
            }
            s.stage = Stage::AnnounceStop;
        }
        (Stage::AnnounceStop, JobEvent::TicketUpdated { .. }) => s.stage = Stage::CleanupStopped,
        (Stage::CleanupStopped, JobEvent::CleanedUp { .. }) => {
            s.stage = match s.stop {
                Some(StopKind::Rejected) => Stage::Rejected,
                _ => Stage::NeedsAttention,
            }
        }
        // Listed in full (no catch-all arm) so a new stage or event must be placed explicitly.
        (
            Stage::Start
            | Stage::Prepare
            | Stage::Research
            | Stage::Plan
            | Stage::PostPlan
            | Stage::Implement
            | Stage::Gates
            | Stage::Review
            | Stage::Fix
            | Stage::Commit
            | Stage::Propose
            | Stage::AnnounceProposal
            | Stage::AwaitingApproval
            | Stage::Push
            | Stage::RecordPr
            | Stage::AnnounceShipped
            | Stage::Cleanup
            | Stage::Done
            | Stage::Snapshot
            | Stage::AnnounceStop
            | Stage::CleanupStopped
            | Stage::NeedsAttention
            | Stage::Rejected,
            JobEvent::Created { .. }
            | JobEvent::EffectStarted { .. }
            | JobEvent::EffectFailed { .. }
            | JobEvent::TicketUpdated { .. }
            | JobEvent::WorkspaceReady { .. }
            | JobEvent::AgentFinished { .. }
            | JobEvent::GatesFinished { .. }
            | JobEvent::Committed { .. }
            | JobEvent::Proposed { .. }
            | JobEvent::Approved { .. }
            | JobEvent::Rejected { .. }
            | JobEvent::Pushed { .. }
            | JobEvent::PrRecorded { .. }
            | JobEvent::Snapshotted { .. }
            | JobEvent::CleanedUp { .. },
        ) => return Err(invalid()),
    }
    if s.stage != before {
        s.starts_in_stage = 0;
    }
    Ok(s)
}

fn record_cost(s: &mut JobState, stage: AgentStage, round: u32, run: &StageRun) {
    s.usage += run.usage;
    s.cost_usd += run.cost_usd;
    s.costs.push(StageCost {
        stage,
        round,
        agent: run.agent.clone(),
        model: run.model.clone(),
        usage: run.usage,
        cost_usd: run.cost_usd,
    });
}

fn agent_reason(stage: AgentStage, run: &StageRun) -> String {
    format!(
        "{} agent ({}): {}",
        stage.as_str(),
        run.agent,
        run.outcome.describe()
    )
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
