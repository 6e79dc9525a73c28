//! Data-driven tests of the pipeline's transition function.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::findings::Severity;
use crate::review::Angle;
use crate::triage::DecidedBy;

fn created(max_rounds: u32) -> JobEvent {
    JobEvent::Created {
        ticket: "DEMO-1".parse().unwrap(),
        project: "DEMO".parse().unwrap(),
        max_rounds,
        acknowledge: false,
        follow_pr: false,
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

fn fb(id: &str, kind: FeedbackKind) -> Feedback {
    Feedback {
        id: id.into(),
        kind,
        author: "alice".into(),
        body: "please rename".into(),
        path: None,
        line: None,
        reply_to: None,
    }
}

/// A job of an outside tracker and forge, up to its PR being open and the job waiting.
fn to_in_review() -> Vec<JobEvent> {
    let mut events = vec![JobEvent::Created {
        ticket: "DEMO-1".parse().unwrap(),
        project: "DEMO".parse().unwrap(),
        max_rounds: 2,
        acknowledge: true,
        follow_pr: true,
    }];
    events.push(updated());
    events.extend(to_proposal().into_iter().skip(1));
    let state = JobState::replay(&events).unwrap();
    events.push(JobEvent::Proposed {
        proposal: proposal(&state),
    });
    events.push(updated());
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
            number: Some(7),
            url: Some("https://example.test/pull/7".into()),
        },
        JobEvent::BacklogCreated { tickets: vec![] },
        updated(),
        JobEvent::CleanedUp {
            worktree_removed: true,
        },
    ]);
    events
}

fn feedback_round(commit: &str, round: u32) -> Vec<JobEvent> {
    vec![
        JobEvent::FeedbackWorkspaceReady {
            worktree: "/w".into(),
            head: "c1".into(),
        },
        agent(AgentStage::Fix, round),
        gates(round, true),
        JobEvent::Committed {
            commit: commit.into(),
        },
        JobEvent::Pushed {
            commit: commit.into(),
            branch: "codemill/DEMO-1".into(),
        },
    ]
}

#[test]
fn an_outside_ticket_is_acknowledged_first_and_waits_in_review_after_shipping() {
    let events = to_in_review();
    let first = JobState::replay(&events[..1]).unwrap();
    assert_eq!(
        first.pending_effect(),
        Some(Effect::UpdateTicket {
            status: TicketStatus::InProgress,
            note: NoteKind::Acknowledged
        })
    );
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::InReview);
    assert_eq!(state.status(), "in_review");
    assert_eq!(state.pr_number, Some(7));
    assert_eq!(next_action(&state), Action::AwaitPr);
}

#[test]
fn review_feedback_runs_a_fix_round_on_the_same_branch_and_replies() {
    let mut events = to_in_review();
    events.push(JobEvent::FeedbackReceived {
        feedback: vec![fb("review-comment:1", FeedbackKind::ReviewComment)],
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::FeedbackPrepare);
    assert_eq!(
        state.pending_effect(),
        Some(Effect::PrepareFeedback { round: 1 })
    );
    events.extend(feedback_round("c2", 1));
    let state = JobState::replay(&events).unwrap();
    assert_eq!(
        state.feedback_result,
        Some(FeedbackResult::Pushed {
            commit: "c2".into()
        })
    );
    assert_eq!(
        state.pending_effect(),
        Some(Effect::ReplyFeedback { round: 1 })
    );
    events.push(JobEvent::FeedbackReplied { round: 1 });
    events.push(JobEvent::CleanedUp {
        worktree_removed: true,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::InReview);
    assert_eq!(state.commit.as_deref(), Some("c2"));
    // The same comment delivered again starts nothing.
    let again = apply(
        &state,
        &JobEvent::FeedbackReceived {
            feedback: vec![fb("review-comment:1", FeedbackKind::ReviewComment)],
        },
    )
    .unwrap();
    assert_eq!(again.stage, Stage::InReview);
    insta::assert_snapshot!(stages(&events).join(" > "));
}

#[test]
fn feedback_during_a_round_waits_for_the_next_and_a_merge_during_it_finishes_after() {
    let mut events = to_in_review();
    events.push(JobEvent::FeedbackReceived {
        feedback: vec![fb("review:1", FeedbackKind::ChangesRequested)],
    });
    events.push(JobEvent::FeedbackWorkspaceReady {
        worktree: "/w".into(),
        head: "c1".into(),
    });
    events.push(JobEvent::FeedbackReceived {
        feedback: vec![fb("review-comment:2", FeedbackKind::ReviewComment)],
    });
    let mut rest = feedback_round("c2", 1);
    rest.remove(0);
    events.extend(rest);
    events.push(JobEvent::FeedbackReplied { round: 1 });
    events.push(JobEvent::CleanedUp {
        worktree_removed: true,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::FeedbackPrepare);
    assert_eq!(state.feedback_round, 2);
    assert_eq!(state.feedback[0].id, "review-comment:2");
    events.push(JobEvent::PrClosed {
        merged: true,
        by: "bob".into(),
    });
    events.extend(feedback_round("c3", 2));
    events.push(JobEvent::FeedbackReplied { round: 2 });
    events.push(JobEvent::CleanedUp {
        worktree_removed: true,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::AnnouncePrClosed);
    assert_eq!(
        state.pending_effect(),
        Some(Effect::UpdateTicket {
            status: TicketStatus::Done,
            note: NoteKind::Merged
        })
    );
    events.push(updated());
    events.push(JobEvent::CleanedUp {
        worktree_removed: false,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Done);
    assert_eq!(state.merged, Some(true));
}

#[test]
fn a_closed_pr_cleans_up_and_marks_the_ticket_rejected() {
    let mut events = to_in_review();
    events.push(JobEvent::PrClosed {
        merged: false,
        by: "bob".into(),
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(
        state.pending_effect(),
        Some(Effect::UpdateTicket {
            status: TicketStatus::Rejected,
            note: NoteKind::Closed
        })
    );
    events.push(updated());
    events.push(JobEvent::CleanedUp {
        worktree_removed: false,
    });
    assert_eq!(JobState::replay(&events).unwrap().stage, Stage::Done);
}

#[test]
fn failed_check_rounds_are_capped_and_a_failing_round_keeps_the_pr_in_review() {
    let mut events = to_in_review();
    for (i, round) in [(1, 1u32), (2, 2)] {
        events.push(JobEvent::FeedbackReceived {
            feedback: vec![fb(&format!("check-run:{i}"), FeedbackKind::CheckFailed)],
        });
        events.push(JobEvent::FeedbackWorkspaceReady {
            worktree: "/w".into(),
            head: "c1".into(),
        });
        events.push(agent(AgentStage::Fix, round * 2 - 1));
        events.push(gates(round * 2 - 1, false));
        events.push(agent(AgentStage::Fix, round * 2));
        events.push(gates(round * 2, false));
        let state = JobState::replay(&events).unwrap();
        assert!(
            matches!(state.feedback_result, Some(FeedbackResult::Failed { .. })),
            "{:?}",
            state.feedback_result
        );
        assert_eq!(
            state.pending_effect(),
            Some(Effect::ReplyFeedback { round })
        );
        events.push(JobEvent::FeedbackReplied { round });
        assert_eq!(
            JobState::replay(&events).unwrap().pending_effect(),
            Some(Effect::Cleanup { stopped: true })
        );
        events.push(JobEvent::CleanedUp {
            worktree_removed: false,
        });
    }
    // max_rounds = 2 check-only rounds in a row: a third failed check starts nothing.
    events.push(JobEvent::FeedbackReceived {
        feedback: vec![fb("check-run:3", FeedbackKind::CheckFailed)],
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::InReview);
    // A person's comment still does.
    let state = apply(
        &state,
        &JobEvent::FeedbackReceived {
            feedback: vec![fb("review-comment:9", FeedbackKind::ReviewComment)],
        },
    )
    .unwrap();
    assert_eq!(state.stage, Stage::FeedbackPrepare);
    assert_eq!(state.check_rounds, 0);
}

#[test]
fn feedback_is_refused_for_jobs_without_an_outside_pr() {
    let events = to_proposal();
    let state = JobState::replay(&events).unwrap();
    assert!(
        apply(
            &state,
            &JobEvent::FeedbackReceived {
                feedback: vec![fb("x", FeedbackKind::Comment)]
            }
        )
        .is_err()
    );
}

#[test]
fn feedback_arriving_before_the_round_reaches_the_agent_joins_it() {
    let mut events = to_in_review();
    events.push(JobEvent::FeedbackReceived {
        feedback: vec![fb("review:7", FeedbackKind::ChangesRequested)],
    });
    events.push(JobEvent::FeedbackReceived {
        feedback: vec![
            fb("review-comment:8", FeedbackKind::ReviewComment),
            fb("review-comment:9", FeedbackKind::ReviewComment),
        ],
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::FeedbackPrepare);
    assert_eq!(state.feedback_round, 1);
    let ids: Vec<&str> = state.feedback.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["review:7", "review-comment:8", "review-comment:9"]);
    assert!(state.pending_feedback.is_empty());
    // Once the workspace is ready, later feedback waits for the next round.
    events.push(JobEvent::FeedbackWorkspaceReady {
        worktree: "/w".into(),
        head: "c1".into(),
    });
    events.push(JobEvent::FeedbackReceived {
        feedback: vec![fb("review-comment:10", FeedbackKind::ReviewComment)],
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.feedback.len(), 3);
    assert_eq!(state.pending_feedback.len(), 1);
}

/// Up to the proposal waiting for approval.
fn awaiting() -> Vec<JobEvent> {
    let mut events = to_proposal();
    let state = JobState::replay(&events).unwrap();
    events.push(JobEvent::Proposed {
        proposal: proposal(&state),
    });
    events.push(updated());
    assert_eq!(
        JobState::replay(&events).unwrap().stage,
        Stage::AwaitingApproval
    );
    events
}

#[test]
fn a_cancel_stops_an_undecided_job_and_ends_cancelled() {
    let cancel = JobEvent::Cancelled { by: "ana".into() };
    // Mid-run (an effect may be running: the cancel does not wait for it) and while waiting
    // for approval: the job stops the way a rejection does.
    let mut running = to_gates(3);
    running.pop();
    for events in [running, awaiting()] {
        let state = JobState::replay(&events).unwrap();
        let stopped = apply(&state, &cancel).unwrap();
        assert_eq!(stopped.stage, Stage::Snapshot);
        assert_eq!(stopped.stop, Some(StopKind::Cancelled));
        assert_eq!(stopped.reason.as_deref(), Some("cancelled by ana"));
        let mut events = events.clone();
        events.push(cancel.clone());
        events.push(JobEvent::Snapshotted {
            wip_ref: Some("refs/codemill/wip/DEMO-1".into()),
            commit: Some("w1".into()),
        });
        events.push(updated());
        events.push(JobEvent::CleanedUp {
            worktree_removed: true,
        });
        let end = JobState::replay(&events).unwrap();
        assert_eq!((end.stage, end.status()), (Stage::Cancelled, "cancelled"));
        assert!(end.stage.is_terminal());
        assert!(matches!(next_action(&end), Action::Finished));
    }
    // Once the proposal is decided, a cancel does not fit: approved work ships, rejected stops.
    let mut approved = awaiting();
    approved.push(JobEvent::Approved {
        commit: "c1".into(),
        by: "me".into(),
    });
    let state = JobState::replay(&approved).unwrap();
    assert_eq!(state.status(), "shipping");
    assert!(apply(&state, &cancel).is_err());
    let mut twice = awaiting();
    twice.push(cancel.clone());
    let stopping = JobState::replay(&twice).unwrap();
    assert!(apply(&stopping, &cancel).is_err(), "already stopping");
}

#[test]
fn a_job_that_asked_runs_again_only_after_an_edit() {
    use chrono::{TimeZone, Utc};
    let asked = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
    let mut state = JobState::replay(&to_proposal()).unwrap();
    assert!(state.answered(None, Some(asked)), "not waiting for answers");
    state.stage = Stage::NeedsInput;
    assert!(!state.answered(None, Some(asked)));
    assert!(!state.answered(Some(asked), Some(asked)));
    assert!(!state.answered(Some(asked - chrono::TimeDelta::seconds(1)), Some(asked)));
    assert!(state.answered(Some(asked + chrono::TimeDelta::seconds(1)), Some(asked)));
}
