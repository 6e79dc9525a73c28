//! A job's own path: from the ticket through research, plan, implement, gates and review rounds
//! to approval and done, and every way it stops (caps, failures, interruptions, events out of
//! place).

use super::*;

#[test]
fn happy_path_reaches_approval_then_done() {
    let mut events = to_proposal();
    let state = JobState::replay(&events).unwrap();
    events.push(JobEvent::Proposed {
        proposal: proposal(&state),
    });
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
        JobEvent::PrRecorded {
            pr: 1,
            number: None,
            url: None,
        },
        JobEvent::BacklogCreated { tickets: vec![] },
        updated(),
        JobEvent::CleanedUp {
            worktree_removed: true,
        },
    ]);
    insta::assert_snapshot!(stages(&events).join(" > "));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.status(), "done");
    assert_eq!(next_action(&state), Action::Finished);
    // readiness, research, plan, implement, two angles, triage
    assert_eq!(state.costs.len(), 7);
    assert_eq!(state.usage.input_tokens, 70);
}

#[test]
fn a_vague_ticket_gets_questions_and_no_workspace() {
    let events = vec![created(3), ready(false)];
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.questions, vec!["Which format?"]);
    assert_eq!(
        state.pending_effect(),
        Some(Effect::UpdateTicket {
            status: TicketStatus::NeedsInput,
            note: NoteKind::NeedsInput
        })
    );
    let state = apply(&state, &updated()).unwrap();
    assert_eq!(state.status(), "needs_input");
    assert!(state.worktree.is_none());
    assert_eq!(next_action(&state), Action::Finished);
}

#[test]
fn review_runs_each_angle_then_triage() {
    let mut events = to_gates(3);
    events.push(gates(0, true));
    events.push(plan_review(0, &["correctness", "security"]));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(
        state.pending_effect(),
        Some(Effect::RunAgent {
            stage: AgentStage::Review,
            round: 0,
            resume: None,
            angle: Some("correctness".into())
        })
    );
    events.push(review(0, "correctness", vec![finding(Severity::Low)]));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(
        state.next_angle().map(|a| a.name.as_str()),
        Some("security")
    );
    // A result for an angle that is not next is refused.
    assert!(apply(&state, &review(0, "correctness", vec![])).is_err());
    events.push(review(0, "security", vec![finding(Severity::High)]));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Triage);
    events.push(triaged(
        0,
        &[
            (Severity::High, Bucket::FixNow),
            (Severity::Low, Bucket::Backlog),
        ],
    ));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Fix);
    assert_eq!(state.fix_now().len(), 1);
    assert_eq!(
        state.pending_effect(),
        Some(Effect::RunAgent {
            stage: AgentStage::Fix,
            round: 1,
            resume: Some("s1".into()),
            angle: None
        })
    );
    // The fix round, clean gates and a clean re-review: the high finding counts as fixed.
    events.push(agent(AgentStage::Fix, 1));
    events.push(gates(1, true));
    events.extend(clean_review(1));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Commit);
    assert_eq!(state.fixed().len(), 1);
    assert_eq!(state.backlog().len(), 1);
    assert!(state.fix_now().is_empty());
}

#[test]
fn failing_gate_goes_to_a_resumed_fix_round() {
    let mut events = to_gates(3);
    events.push(gates(0, false));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Fix);
    events.push(agent(AgentStage::Fix, 1));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.pending_effect(), Some(Effect::RunGates { round: 1 }));
    events.push(gates(1, true));
    events.extend(clean_review(1));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Commit);
    assert_eq!(state.round, 1);
}

#[test]
fn fix_now_at_the_round_cap_stops_with_the_reason() {
    let mut events = to_gates(1);
    events.push(gates(0, true));
    events.push(plan_review(0, &["security"]));
    events.push(review(0, "security", vec![finding(Severity::High)]));
    events.push(triaged(0, &[(Severity::High, Bucket::FixNow)]));
    events.push(agent(AgentStage::Fix, 1));
    events.push(gates(1, true));
    events.push(plan_review(1, &["security"]));
    events.push(review(1, "security", vec![finding(Severity::High)]));
    events.push(triaged(1, &[(Severity::High, Bucket::FixNow)]));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    assert_eq!(
        state.reason.as_deref(),
        Some("1 fix-now finding(s) remain after 1 fix round(s)")
    );
    events.push(JobEvent::Snapshotted {
        wip_ref: Some("refs/codemill/wip/DEMO-1".into()),
        commit: Some("w1".into()),
    });
    events.push(updated());
    events.push(JobEvent::CleanedUp {
        worktree_removed: true,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.status(), "needs_attention");
    assert_eq!(state.fix_now().len(), 1, "open findings stay visible");
}

#[test]
fn gates_failing_at_the_cap_stop_the_job() {
    let mut events = to_gates(0);
    events.push(gates(0, false));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    assert!(state.reason.unwrap().contains("gates still failing"));
}

#[test]
fn agent_failure_stops_with_the_outcome_as_reason() {
    let mut events = to_gates(3);
    events.pop();
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
    assert_eq!(state.costs.len(), 4, "the failed step's cost still counts");
}

#[test]
fn unreadable_review_stops_explicitly() {
    let mut events = to_gates(3);
    events.push(gates(0, true));
    events.push(plan_review(0, &["security"]));
    let mut r = run(AgentOutcome::Success);
    r.angle = Some("security".into());
    r.parse_error = Some("expected value".into());
    r.repaired = true;
    events.push(JobEvent::AgentFinished {
        stage: AgentStage::Review,
        round: 0,
        run: r,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    assert_eq!(
        state.reason.as_deref(),
        Some("review [security] output could not be read after one repair request: expected value")
    );
}

#[test]
fn approval_must_name_the_proposed_commit() {
    let mut events = to_proposal();
    let state = JobState::replay(&events).unwrap();
    events.push(JobEvent::Proposed {
        proposal: proposal(&state),
    });
    events.push(updated());
    let state = JobState::replay(&events).unwrap();
    let wrong = JobEvent::Approved {
        commit: "c2".into(),
        by: "me".into(),
    };
    assert!(apply(&state, &wrong).is_err());
    let early = JobState::replay(&to_proposal()[..4]).unwrap();
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
    let mut events = to_gates(3);
    events.pop();
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
fn interruptions_are_counted_per_effect_not_per_stage() {
    let mut events = to_gates(3);
    events.push(gates(0, true));
    events.push(plan_review(0, &["a", "b", "c"]));
    for angle in ["a", "b"] {
        events.push(JobEvent::EffectStarted {
            effect: format!("agent:review:0:{angle}"),
        });
        events.push(JobEvent::EffectStarted {
            effect: format!("agent:review:0:{angle}"),
        });
        events.push(review(0, angle, vec![]));
    }
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.starts_in_stage, 0);
    assert!(matches!(next_action(&state), Action::Run(_)));
}

#[test]
fn effect_failure_while_stopping_still_ends_the_job() {
    let mut events = to_gates(3)[..4].to_vec();
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

#[test]
fn readiness_answers_are_parsed_and_capped() {
    let r = Readiness::parse("```json\n{\"ready\": false, \"questions\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"\"]}\n```").unwrap();
    assert!(!r.ready);
    assert_eq!(r.questions.len(), 5);
    assert!(Readiness::parse("sure, looks fine").is_err());
}

#[test]
fn an_implement_step_that_changed_nothing_stops_before_gates() {
    let mut events = to_gates(3);
    let Some(JobEvent::AgentFinished { run, .. }) = events.last_mut() else {
        panic!("the implement step is last");
    };
    run.changed = Some(false);
    run.summary = "The feature already exists.".into();
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot, "no gates, no review");
    assert_eq!(
        state.reason.as_deref(),
        Some(
            "the implement step changed no file in the repository (the agent said: The feature already exists.)"
        )
    );
    // A change, or a journal from before the check: gates run.
    for changed in [Some(true), None] {
        let Some(JobEvent::AgentFinished { run, .. }) = events.last_mut() else {
            panic!();
        };
        run.changed = changed;
        assert_eq!(JobState::replay(&events).unwrap().stage, Stage::Gates);
    }
}

#[test]
fn a_gate_that_times_out_stops_without_a_fix_round_unless_its_policy_says_so() {
    let timed_out = |fix_on_timeout: bool| JobEvent::GatesFinished {
        round: 0,
        gates: vec![GateResult {
            name: "test".into(),
            command: "cargo test".into(),
            passed: false,
            exit_code: None,
            timed_out: true,
            duration_ms: 600_000,
            output: String::new(),
            error: None,
            fix_on_timeout,
        }],
    };
    let mut events = to_gates(3);
    events.push(timed_out(false));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Snapshot, "no paid fix round");
    let reason = state.reason.unwrap();
    assert!(
        reason.starts_with("gate `test` timed out after 600 s — a timeout does not count"),
        "{reason}"
    );
    assert_eq!(state.gates[0].outcome(), "timed out after 600 s");

    events.pop();
    events.push(timed_out(true));
    assert_eq!(JobState::replay(&events).unwrap().stage, Stage::Fix);
}
