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
    // A stack's summary: what each sub-task is, in order (each sub-job's own summary is on its
    // ticket).
    let summary: Vec<String> = if state.stack.is_empty() {
        summary
    } else {
        state
            .stack
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{}. {} ({})", i + 1, e.title, e.ticket))
            .collect()
    };
    Proposal {
        commit,
        branch: state.ticket.branch(),
        base: state.default_branch.clone().unwrap_or_default(),
        title: format!("{}: {}", ticket.key, ticket.title),
        summary: summary.join(if state.stack.is_empty() { "\n\n" } else { "\n" }),
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
        stack: state.stack.clone(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use codemill_core::findings::{Finding, Severity};
    use codemill_core::ids::TicketKey;
    use codemill_core::pipeline::TicketStatus;
    use codemill_core::triage::{DecidedBy, Decision};
    use codemill_testkit::journal::{stage_run, to_approval};

    use super::*;
    use crate::testing::state_of;

    fn ticket(key: &TicketKey, url: Option<&str>, external: Option<&str>) -> Ticket {
        Ticket {
            key: key.clone(),
            project: key.project().into(),
            title: "Add a flag".into(),
            body: String::new(),
            labels: vec![],
            status: TicketStatus::InProgress,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            edited_at: None,
            external: external.map(Into::into),
            url: url.map(Into::into),
        }
    }

    fn entries(events: Vec<JobEvent>) -> Vec<JournalEntry> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| JournalEntry {
                seq: i as i64,
                at: chrono::Utc::now(),
                event,
            })
            .collect()
    }

    fn agent(stage: AgentStage, round: u32, summary: &str) -> JobEvent {
        let mut run = stage_run();
        run.summary = summary.into();
        JobEvent::AgentFinished { stage, round, run }
    }

    #[test]
    fn the_proposal_sums_up_the_implementation_and_each_fix_round() {
        let key: TicketKey = "SHOP-3".parse().unwrap();
        let mut state = state_of(&to_approval(&key));
        let finding = |title: &str| Finding {
            angles: vec!["correctness".into()],
            severity: Severity::Low,
            file: None,
            line: None,
            title: title.into(),
            detail: String::new(),
            suggestion: None,
            confidence: 1.0,
            must_fix: false,
        };
        let decided = |title: &str, bucket| Decision {
            finding: finding(title),
            bucket,
            reason: "r".into(),
            by: DecidedBy::Policy,
        };
        state.triage = vec![(
            state.round,
            vec![
                decided("fixed now", Bucket::FixNow),
                decided("for later", Bucket::Backlog),
            ],
        )];
        let journal = entries(vec![
            agent(AgentStage::Plan, 0, "the plan"),
            agent(AgentStage::Implement, 0, "added the flag"),
            agent(AgentStage::Fix, 1, "fixed the test"),
        ]);
        let p = proposal(
            &state,
            &journal,
            &ticket(&key, None, None),
            "abc".into(),
            "1 file changed".into(),
        );
        assert_eq!(p.summary, "added the flag\n\nFix round 1: fixed the test");
        assert_eq!(p.title, "SHOP-3: Add a flag");
        assert_eq!(p.branch, key.branch());
        assert_eq!((p.commit.as_str(), p.base.as_str()), ("abc", "main"));
        let left: Vec<_> = p.findings.iter().map(|f| f.title.as_str()).collect();
        assert_eq!(
            left,
            ["for later"],
            "only findings not fixed now are listed"
        );
        assert_eq!(p.decisions.len(), 2);
    }

    #[test]
    fn the_pr_body_links_the_outside_ticket_and_says_what_it_cost() {
        let key: TicketKey = "SHOP-3".parse().unwrap();
        let state = state_of(&to_approval(&key));
        let (title, body) = pr_text(&state, &ticket(&key, None, None));
        assert_eq!(title, "SHOP-3: the change");
        assert!(
            body.starts_with("what changed\n\nTicket: SHOP-3\n"),
            "{body}"
        );
        assert!(body.contains("```\n1 file changed\n```"), "{body}");
        assert!(body.contains("Cost: $1.5000. Fix rounds: 0."), "{body}");

        let linked = ticket(&key, Some("https://x.test/browse/PROJ-7"), Some("PROJ-7"));
        let (_, body) = pr_text(&state, &linked);
        assert!(
            body.contains("Ticket: [PROJ-7](https://x.test/browse/PROJ-7)"),
            "{body}"
        );

        // Before a proposal (never in practice): the ticket's title and no body.
        let early = state_of(&to_approval(&key)[..1]);
        assert_eq!(
            pr_text(&early, &ticket(&key, None, None)),
            ("SHOP-3: Add a flag".to_string(), String::new())
        );
    }

    #[test]
    fn a_feedback_reply_quotes_the_latest_fix() {
        let journal = entries(vec![
            agent(AgentStage::Fix, 0, "first"),
            agent(AgentStage::Review, 0, "looked"),
            agent(AgentStage::Fix, 1, "second"),
            agent(AgentStage::Triage, 1, "decided"),
        ]);
        assert_eq!(last_fix_summary(&journal).as_deref(), Some("second"));
        assert_eq!(last_fix_summary(&journal[1..2]), None);
    }
}
