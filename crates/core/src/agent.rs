//! The normalised agent vocabulary every backend maps its raw events into.
//!
//! Raw CLI/provider JSON never leaves its backend module; the runner, store and CLI only ever see
//! these types.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cost::Usage;

/// Whether an agent may change the worktree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    /// Read, list and search only: no write, edit or shell tools are offered.
    ReadOnly,
    /// Read, write, edit and run commands inside the worktree.
    Write,
}

/// Bounds enforced outside the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLimits {
    pub max_turns: u32,
    #[serde(with = "secs")]
    pub wall_clock: Duration,
    /// Kill the agent when it has produced no event for this long.
    #[serde(with = "secs")]
    pub idle: Duration,
}

impl Default for AgentLimits {
    fn default() -> Self {
        AgentLimits {
            max_turns: 30,
            wall_clock: Duration::from_secs(30 * 60),
            idle: Duration::from_secs(5 * 60),
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64(v.max(0.0)))
    }
}

/// One thing an agent did, as shown in live progress and stored in the raw log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The session exists; `session_id` is what a fix round resumes.
    SessionStarted {
        session_id: String,
        model: Option<String>,
    },
    /// Assistant text (a thought, a summary, the final answer).
    Text { text: String },
    /// The agent called a tool; `summary` is a one-line human description (path, command).
    ToolCall {
        id: String,
        name: String,
        summary: String,
    },
    /// A tool finished; `output` is truncated for display.
    ToolResult {
        id: String,
        is_error: bool,
        output: String,
    },
    /// One model turn (request/response) finished, with the usage it reported.
    TurnCompleted { turn: u32, usage: Usage },
    /// The backend gave up retrying or saw something it could not parse; kept for the log.
    Notice { message: String },
}

/// How an agent run ended. Never judged from an exit code alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentOutcome {
    Success,
    MaxTurns {
        turns: u32,
    },
    ApiError {
        status: Option<u16>,
        message: String,
    },
    TimedOut {
        limit: TimeoutKind,
        after_secs: u64,
    },
    Killed,
    PermissionDenied {
        action: String,
    },
    CliMissing {
        program: String,
        hint: String,
    },
    /// The CLI runs but is a version codemill does not support.
    CliWrongVersion {
        program: String,
        found: String,
        supported: String,
    },
    Failed {
        message: String,
    },
    /// The model gateway refused a request because spend reached a budget (`job_usd`, ...).
    BudgetExceeded {
        budget: String,
        limit: f64,
        spent: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutKind {
    WallClock,
    Idle,
}

impl AgentOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, AgentOutcome::Success)
    }

    /// One line for tickets and the terminal.
    pub fn describe(&self) -> String {
        match self {
            AgentOutcome::Success => "success".into(),
            AgentOutcome::MaxTurns { turns } => {
                format!("stopped at the turn limit ({turns} turns)")
            }
            AgentOutcome::ApiError {
                status: Some(s),
                message,
            } => format!("model API error {s}: {message}"),
            AgentOutcome::ApiError {
                status: None,
                message,
            } => format!("model API error: {message}"),
            AgentOutcome::TimedOut { limit, after_secs } => match limit {
                TimeoutKind::WallClock => {
                    format!("killed at the wall-clock limit after {after_secs} s")
                }
                TimeoutKind::Idle => {
                    format!("killed after {after_secs} s without any output (idle limit)")
                }
            },
            AgentOutcome::Killed => "killed".into(),
            AgentOutcome::PermissionDenied { action } => format!("permission denied: {action}"),
            AgentOutcome::CliMissing { program, hint } => {
                format!("agent program `{program}` not found: {hint}")
            }
            AgentOutcome::CliWrongVersion {
                program,
                found,
                supported,
            } => format!("agent program `{program}` is version {found}; supported: {supported}"),
            AgentOutcome::Failed { message } => format!("agent failed: {message}"),
            AgentOutcome::BudgetExceeded {
                budget,
                limit,
                spent,
            } => {
                if budget.ends_with("_usd") {
                    format!("budget exceeded: {budget} {limit:.2}, spent {spent:.2}")
                } else {
                    format!("budget exceeded: {budget} {limit:.0}, spent {spent:.0}")
                }
            }
        }
    }
}

/// Everything a finished agent run reports back to the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    pub outcome: AgentOutcome,
    /// The session to resume in a fix round (None when the backend has no session).
    pub session_id: Option<String>,
    /// The last assistant text: research notes, the plan, the review's findings JSON.
    pub final_text: String,
    pub usage: Usage,
    /// Cost as reported by the agent itself (Claude Code); None means "price it from tokens".
    pub reported_cost_usd: Option<f64>,
    pub turns: u32,
}
