//! Data-driven tests of the pipeline's transition function: the event builders every topic
//! module below shares.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control;
mod feedback;
mod flow;
mod refine;
mod split;

use super::*;
use crate::agent::AgentOutcome;
use crate::cost::Usage;
use crate::findings::{Finding, Severity};
use crate::review::Angle;
use crate::triage::{Bucket, DecidedBy, Decision, TriagePolicy};

fn created(max_rounds: u32) -> JobEvent {
    JobEvent::Created {
        ticket: "DEMO-1".parse().unwrap(),
        project: "DEMO".parse().unwrap(),
        max_rounds,
        acknowledge: false,
        follow_pr: false,
        subtask: None,
        refine: None,
    }
}

fn run(outcome: AgentOutcome) -> StageRun {
    StageRun {
        agent: "builtin".into(),
        model: "m".into(),
        outcome,
        session_id: Some("s1".into()),
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        },
        cost_usd: 0.01,
        turns: 1,
        duration_ms: 1,
        artifact: Some("x.md".into()),
        angle: None,
        findings: None,
        decisions: None,
        readiness: None,
        parse_error: None,
        repaired: false,
        changed: None,
        summary: String::new(),
        subtasks: None,
        spec: None,
    }
}

fn agent(stage: AgentStage, round: u32) -> JobEvent {
    JobEvent::AgentFinished {
        stage,
        round,
        run: run(AgentOutcome::Success),
    }
}

fn ready(yes: bool) -> JobEvent {
    let mut r = run(AgentOutcome::Success);
    r.readiness = Some(Readiness {
        ready: yes,
        questions: if yes {
            vec![]
        } else {
            vec!["Which format?".into()]
        },
    });
    JobEvent::AgentFinished {
        stage: AgentStage::Readiness,
        round: 0,
        run: r,
    }
}

fn plan_review(round: u32, angles: &[&str]) -> JobEvent {
    JobEvent::ReviewPlanned {
        plan: ReviewPlan {
            round,
            angles: angles
                .iter()
                .map(|a| Angle {
                    name: a.to_string(),
                    why: "always".into(),
                    checklist: String::new(),
                })
                .collect(),
            policy: TriagePolicy::default(),
            changed_files: vec!["src/lib.rs".into()],
            snapshot: None,
        },
    }
}

fn review(round: u32, angle: &str, findings: Vec<Finding>) -> JobEvent {
    let mut r = run(AgentOutcome::Success);
    r.angle = Some(angle.into());
    r.findings = Some(findings);
    JobEvent::AgentFinished {
        stage: AgentStage::Review,
        round,
        run: r,
    }
}

fn triaged(round: u32, buckets: &[(Severity, Bucket)]) -> JobEvent {
    let mut r = run(AgentOutcome::Success);
    r.decisions = Some(
        buckets
            .iter()
            .map(|(sev, b)| Decision {
                finding: finding(*sev),
                bucket: *b,
                reason: "r".into(),
                by: DecidedBy::Policy,
            })
            .collect(),
    );
    JobEvent::AgentFinished {
        stage: AgentStage::Triage,
        round,
        run: r,
    }
}

fn gates(round: u32, passed: bool) -> JobEvent {
    JobEvent::GatesFinished {
        round,
        gates: vec![GateResult {
            name: "test".into(),
            command: "cargo test".into(),
            passed,
            exit_code: Some(if passed { 0 } else { 101 }),
            timed_out: false,
            duration_ms: 1,
            output: String::new(),
            error: None,
            fix_on_timeout: false,
        }],
    }
}

fn finding(severity: Severity) -> Finding {
    Finding {
        angles: vec!["security".into()],
        severity,
        file: Some("src/lib.rs".into()),
        line: Some(1),
        title: format!("{} problem", severity.as_str()),
        detail: String::new(),
        suggestion: None,
        confidence: 0.9,
        must_fix: false,
    }
}

fn updated() -> JobEvent {
    JobEvent::TicketUpdated { marker: "m".into() }
}

fn workspace() -> JobEvent {
    JobEvent::WorkspaceReady {
        worktree: "/w".into(),
        branch: "codemill/DEMO-1".into(),
        base_commit: "base".into(),
        default_branch: "main".into(),
    }
}

/// Up to and including the implement step.
fn to_gates(max_rounds: u32) -> Vec<JobEvent> {
    vec![
        created(max_rounds),
        ready(true),
        updated(),
        workspace(),
        agent(AgentStage::Research, 0),
        agent(AgentStage::Plan, 0),
        updated(),
        agent(AgentStage::Implement, 0),
    ]
}

fn clean_review(round: u32) -> Vec<JobEvent> {
    vec![
        plan_review(round, &["correctness", "security"]),
        review(round, "correctness", vec![]),
        review(round, "security", vec![]),
        triaged(round, &[]),
    ]
}

fn to_proposal() -> Vec<JobEvent> {
    let mut e = to_gates(3);
    e.push(gates(0, true));
    e.extend(clean_review(0));
    e.push(JobEvent::Committed {
        commit: "c1".into(),
    });
    e
}

fn proposal(state: &JobState) -> Proposal {
    Proposal {
        commit: "c1".into(),
        branch: "codemill/DEMO-1".into(),
        base: "main".into(),
        title: "t".into(),
        summary: String::new(),
        diff_stat: String::new(),
        findings: vec![],
        decisions: vec![],
        rounds: 0,
        usage: state.usage,
        cost_usd: state.cost_usd,
        stack: Vec::new(),
    }
}

fn stages(events: &[JobEvent]) -> Vec<&'static str> {
    let mut state = JobState::replay(&events[..1]).unwrap();
    let mut out = vec![state.stage.as_str()];
    for e in &events[1..] {
        let t = step(&state, e).unwrap();
        state = t.next;
        out.push(state.stage.as_str());
    }
    out
}
