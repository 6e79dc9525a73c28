//! What a person approves and what is said about it, from job state alone: the proposal, the
//! PR's title and body, and the summary a feedback reply quotes. Pure.

use codemill_core::pipeline::{AgentStage, JobEvent, JobState, Proposal};
use codemill_core::triage::Bucket;
use codemill_store::{JournalEntry, Ticket};

use crate::notes;

/// The proposal of a job whose commit has `diff_stat`: what the implementer and each fix round
/// said they did, the findings left for later and every triage decision.
pub(crate) fn proposal(
    state: &JobState,
    journal: &[JournalEntry],
    ticket: &Ticket,
    commit: String,
    diff_stat: String,
) -> Proposal {
    let summary: Vec<String> = journal
        .iter()
        .filter_map(|e| match &e.event {
            JobEvent::AgentFinished {
                stage: AgentStage::Implement,
                run,
                ..
            } => Some(run.summary.clone()),
            JobEvent::AgentFinished {
                stage: AgentStage::Fix,
                round,
                run,
            } => Some(format!("Fix round {round}: {}", run.summary)),
            _ => None,
        })
        .collect();
    Proposal {
        commit,
        branch: state.ticket.branch(),
        base: state.default_branch.clone().unwrap_or_default(),
        title: format!("{}: {}", ticket.key, ticket.title),
        summary: summary.join("\n\n"),
        diff_stat,
        findings: state
            .current_triage()
            .unwrap_or_default()
            .iter()
            .filter(|d| d.bucket != Bucket::FixNow)
            .map(|d| d.finding.clone())
            .collect(),
        decisions: state.triage.iter().flat_map(|(_, d)| d.clone()).collect(),
        rounds: state.round,
        usage: state.usage,
        cost_usd: state.cost_usd,
    }
}

/// The PR's title and body: the proposal's summary, the ticket (linked when it has a URL),
/// the diff stat, what it cost and the triage summary.
pub(crate) fn pr_text(state: &JobState, ticket: &Ticket) -> (String, String) {
    let (title, body) = match &state.proposal {
        Some(p) => {
            let mut body = format!(
                "{}\n\nTicket: {}\n\n```\n{}\n```\n\nTokens: {}. Cost: ${:.4}. Fix rounds: {}.\n",
                p.summary.trim(),
                ticket.key,
                p.diff_stat.trim_end(),
                p.usage.total(),
                p.cost_usd,
                p.rounds
            );
            body.push_str(&notes::triage_summary(state));
            (p.title.clone(), body)
        }
        None => (format!("{}: {}", ticket.key, ticket.title), String::new()),
    };
    let body = match &ticket.url {
        Some(url) => body.replacen(
            &format!("Ticket: {}", ticket.key),
            &format!(
                "Ticket: [{}]({url})",
                ticket
                    .external
                    .as_deref()
                    .unwrap_or(&ticket.key.to_string())
            ),
            1,
        ),
        None => body,
    };
    (title, body)
}

/// What the latest fix round said it did, quoted in the reply to feedback.
pub(crate) fn last_fix_summary(journal: &[JournalEntry]) -> Option<String> {
    journal.iter().rev().find_map(|e| match &e.event {
        JobEvent::AgentFinished {
            stage: AgentStage::Fix,
            run,
            ..
        } => Some(run.summary.clone()),
        _ => None,
    })
}
