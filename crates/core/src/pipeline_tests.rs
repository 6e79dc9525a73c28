//! Data-driven tests of the pipeline's transition function.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::findings::Severity;

fn created(max_rounds: u32) -> JobEvent {
    JobEvent::Created {
        ticket: "DEMO-1".parse().unwrap(),
        project: "DEMO".parse().unwrap(),
        max_rounds,
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
        findings: None,
        parse_error: None,
        summary: String::new(),
    }
}

fn agent(stage: AgentStage, round: u32) -> JobEvent {
    JobEvent::AgentFinished {
        stage,
        round,
        run: run(AgentOutcome::Success),
    }
}

fn review(round: u32, findings: Vec<Finding>) -> JobEvent {
    let mut r = run(AgentOutcome::Success);
    r.findings = Some(findings);
    JobEvent::AgentFinished {
        stage: AgentStage::Review,
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
        }],
    }
}

fn finding(severity: Severity) -> Finding {
    Finding {
        severity,
        file: Some("src/lib.rs".into()),
        line: Some(1),
        title: "t".into(),
        detail: String::new(),
        suggestion: None,
        must_fix: false,
    }
}

fn updated() -> JobEvent {
    JobEvent::TicketUpdated { marker: "m".into() }
}

fn ready() -> JobEvent {
    JobEvent::WorkspaceReady {
        worktree: "/w".into(),
        branch: "codemill/DEMO-1".into(),
        base_commit: "base".into(),
        default_branch: "main".into(),
    }
}

fn to_proposal() -> Vec<JobEvent> {
    vec![
        created(3),
        updated(),
        ready(),
        agent(AgentStage::Research, 0),
        agent(AgentStage::Plan, 0),
        updated(),
        agent(AgentStage::Implement, 0),
        gates(0, true),
        review(0, vec![]),
        JobEvent::Committed {
            commit: "c1".into(),
        },
    ]
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

#[test]
fn happy_path_reaches_approval_then_done() {
    let mut events = to_proposal();
    let state = JobState::replay(&events).unwrap();
    let proposal = Proposal {
        commit: "c1".into(),
        branch: "codemill/DEMO-1".into(),
        base: "base".into(),
        title: "t".into(),
        summary: String::new(),
        diff_stat: String::new(),
        findings: vec![],
        rounds: 0,
        usage: state.usage,
        cost_usd: state.cost_usd,
    };
    events.push(JobEvent::Proposed { proposal });
    events.push(updated());
    let state = JobState::replay(&events).unwrap();
    assert_eq!(next_action(&state), Action::AwaitApproval);
    events.extend([
        JobEvent::Approved {
            commit: "c1".into(),
            by: "me".into(),
        },
        JobEvent::Pushed {
            commit: "c1".into(),
            branch: "codemill/DEMO-1".into(),
        },
        JobEvent::PrRecorded { pr: 1 },
        updated(),
        JobEvent::CleanedUp {
            worktree_removed: true,
        },
    ]);
    insta::assert_snapshot!(stages(&events).join(" > "));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.status(), "done");
    assert_eq!(next_action(&state), Action::Finished);
    assert_eq!(state.usage.input_tokens, 40);
    assert!((state.cost_usd - 0.04).abs() < 1e-9);
    assert_eq!(state.costs.len(), 4);
}

#[test]
fn failing_gate_goes_to_a_resumed_fix_round() {
    let mut events = to_proposal()[..7].to_vec();
    events.push(gates(0, false));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Fix);
    assert_eq!(
        state.pending_effect(),
        Some(Effect::RunAgent {
            stage: AgentStage::Fix,
            round: 1,
            resume: Some("s1".into())
        })
    );
    events.push(agent(AgentStage::Fix, 1));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.pending_effect(), Some(Effect::RunGates { round: 1 }));
    events.push(gates(1, true));
    events.push(review(1, vec![finding(Severity::Low)]));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Commit);
    assert_eq!(state.round, 1);
}

#[test]
fn must_fix_finding_goes_to_fix_then_round_cap_stops() {
    let mut events = to_proposal()[..8].to_vec();
    events[0] = created(2);
    for round in 0..2 {
        events.push(review(round, vec![finding(Severity::High)]));
        events.push(agent(AgentStage::Fix, round + 1));
        events.push(gates(round + 1, true));
    }
    events.push(review(2, vec![finding(Severity::Critical)]));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    assert_eq!(
        state.reason.as_deref(),
        Some("1 must-fix review finding(s) remain after 2 fix round(s)")
    );
    events.push(JobEvent::Snapshotted {
        wip_ref: Some("refs/codemill/wip/DEMO-1".into()),
        commit: Some("w1".into()),
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(
        state.pending_effect(),
        Some(Effect::UpdateTicket {
            status: TicketStatus::NeedsAttention,
            note: NoteKind::Stopped
        })
    );
    events.push(updated());
    events.push(JobEvent::CleanedUp {
        worktree_removed: true,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.status(), "needs_attention");
    assert_eq!(
        state.wip,
        Some(("refs/codemill/wip/DEMO-1".into(), "w1".into()))
    );
}

#[test]
fn gates_failing_at_the_cap_stop_the_job() {
    let mut events = to_proposal()[..7].to_vec();
    events[0] = created(0);
    events.push(gates(0, false));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    assert!(state.reason.unwrap().contains("gates still failing"));
}

#[test]
fn agent_failure_stops_with_the_outcome_as_reason() {
    let mut events = to_proposal()[..6].to_vec();
    events.push(JobEvent::AgentFinished {
        stage: AgentStage::Implement,
        round: 0,
        run: run(AgentOutcome::ApiError {
            status: Some(401),
            message: "invalid x-api-key".into(),
        }),
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    assert_eq!(
        state.reason.as_deref(),
        Some("implement agent (builtin): model API error 401: invalid x-api-key")
    );
    // The cost of the failed step still counts.
    assert_eq!(state.costs.len(), 3);
}

#[test]
fn unparsable_review_stops_explicitly() {
    let mut events = to_proposal()[..8].to_vec();
    let mut r = run(AgentOutcome::Success);
    r.parse_error = Some("expected value".into());
    events.push(JobEvent::AgentFinished {
        stage: AgentStage::Review,
        round: 0,
        run: r,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    assert!(state.reason.unwrap().contains("expected value"));
}

#[test]
fn approval_must_name_the_proposed_commit() {
    let mut events = to_proposal();
    let state = JobState::replay(&events).unwrap();
    events.push(JobEvent::Proposed {
        proposal: Proposal {
            commit: "c1".into(),
            branch: "b".into(),
            base: "base".into(),
            title: "t".into(),
            summary: String::new(),
            diff_stat: String::new(),
            findings: vec![],
            rounds: 0,
            usage: state.usage,
            cost_usd: 0.0,
        },
    });
    events.push(updated());
    let state = JobState::replay(&events).unwrap();
    let wrong = JobEvent::Approved {
        commit: "c2".into(),
        by: "me".into(),
    };
    assert!(apply(&state, &wrong).is_err());
    let early = JobState::replay(&to_proposal()[..3]).unwrap();
    let ok = JobEvent::Approved {
        commit: "c1".into(),
        by: "me".into(),
    };
    assert!(
        apply(&early, &ok).is_err(),
        "approval before a proposal must be refused"
    );
    let rejected = apply(
        &state,
        &JobEvent::Rejected {
            reason: "not needed".into(),
            by: "me".into(),
        },
    )
    .unwrap();
    assert_eq!(rejected.stage, Stage::Snapshot);
    assert_eq!(rejected.stop, Some(StopKind::Rejected));
}

#[test]
fn repeated_interruptions_give_up() {
    let mut events = to_proposal()[..6].to_vec();
    for _ in 0..MAX_EFFECT_STARTS {
        let state = JobState::replay(&events).unwrap();
        assert!(matches!(next_action(&state), Action::Run(_)));
        events.push(JobEvent::EffectStarted {
            effect: "agent:implement:0".into(),
        });
    }
    let state = JobState::replay(&events).unwrap();
    assert!(matches!(next_action(&state), Action::GiveUp { .. }));
}

#[test]
fn effect_failure_while_stopping_still_ends_the_job() {
    let mut events = to_proposal()[..3].to_vec();
    for _ in 0..4 {
        events.push(JobEvent::EffectFailed {
            effect: "x".into(),
            error: "boom".into(),
        });
    }
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.status(), "needs_attention");
    assert_eq!(state.reason.as_deref(), Some("x failed: boom"));
}

#[test]
fn events_out_of_place_are_refused() {
    let state = JobState::replay(&to_proposal()[..1]).unwrap();
    assert!(apply(&state, &gates(0, true)).is_err());
    assert!(apply(&state, &created(3)).is_err());
    assert!(JobState::replay(&[gates(0, true)]).is_err());
}
