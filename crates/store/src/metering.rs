//! Metering rows: every model request the gateway forwarded or refused, and the spend sums that
//! budgets are checked against. The day of a call is its UTC date, kept as text so both
//! backends group by the same value.

use chrono::{DateTime, Utc};
use codemill_core::cost::Usage;
use serde::Serialize;

/// One model request as the gateway saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCall {
    pub at: DateTime<Utc>,
    pub job: String,
    pub ticket: String,
    pub project: String,
    pub stage: String,
    pub round: u32,
    pub angle: Option<String>,
    /// The provider API (`anthropic`, `openai-chat`, `openai-responses`, `gemini`).
    pub api: String,
    pub model: String,
    pub usage: Usage,
    pub cost_usd: f64,
    pub latency_ms: u64,
    /// The HTTP status the agent got.
    pub status: u16,
    pub streamed: bool,
    /// The budget that refused the request (it was not forwarded), e.g. `job_usd`.
    pub refused: Option<String>,
}

impl ModelCall {
    /// The UTC date budgets count this call on.
    pub fn day(&self) -> String {
        day_of(self.at)
    }
}

/// The UTC date of `t`, `YYYY-MM-DD`.
pub fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// What the budgets of one request are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    pub job_usd: f64,
    pub job_tokens: u64,
    /// Every job of the ticket.
    pub ticket_usd: f64,
    /// The project on the given day.
    pub project_day_usd: f64,
    /// Everything on the given day.
    pub day_usd: f64,
}

/// Spend of one project on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectSpend {
    pub project: String,
    pub usd: f64,
    pub tokens: u64,
    pub calls: u64,
}

/// What a spend query is about.
#[derive(Debug, Clone, Copy)]
pub struct SpendScope<'a> {
    pub job: &'a str,
    pub ticket: &'a str,
    pub project: &'a str,
    pub day: &'a str,
}
