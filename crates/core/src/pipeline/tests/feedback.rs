//! A PR on an outside forge: waiting in review, feedback rounds on the same branch, redelivered
//! and late feedback, capped check rounds, and the PR closing or merging.

use super::*;

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
        subtask: None,
        refine: None,
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

/// A local-forge job: shipped and done, its PR record open until the merge queue lands it.
fn local_done() -> Vec<JobEvent> {
    let mut events = to_in_review();
    events[0] = JobEvent::Created {
        ticket: "DEMO-1".parse().unwrap(),
        project: "DEMO".parse().unwrap(),
        max_rounds: 2,
        acknowledge: true,
        follow_pr: false,
        subtask: None,
        refine: None,
    };
    events
}

#[test]
fn the_merge_queue_taking_a_local_pr_out_runs_one_fix_round_and_the_job_is_done_again() {
    let mut events = local_done();
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Done);
    let ejected = JobEvent::FeedbackReceived {
        feedback: vec![fb("merge-queue:4", FeedbackKind::CheckFailed)],
    };
    events.push(ejected.clone());
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::FeedbackPrepare);
    events.extend(feedback_round("c2", 1));
    events.push(JobEvent::FeedbackReplied { round: 1 });
    events.push(JobEvent::CleanedUp {
        worktree_removed: true,
    });
    let state = JobState::replay(&events).unwrap();
    assert_eq!(state.stage, Stage::Done, "nothing follows a local PR");
    assert_eq!(state.commit.as_deref(), Some("c2"));
    // The same ejection told twice starts nothing.
    assert_eq!(apply(&state, &ejected).unwrap(), state);
    // Rounds started by machines are capped like failed checks.
    let mut capped = state.clone();
    for n in 5..7 {
        capped = apply(
            &capped,
            &JobEvent::FeedbackReceived {
                feedback: vec![fb(&format!("merge-queue:{n}"), FeedbackKind::CheckFailed)],
            },
        )
        .unwrap();
        if capped.stage == Stage::Done {
            break;
        }
        capped.stage = Stage::Done;
    }
    assert_eq!(capped.stage, Stage::Done);
    assert_eq!(capped.check_rounds, 2);
}

#[test]
fn a_merged_local_pr_takes_no_feedback() {
    let mut state = JobState::replay(&local_done()).unwrap();
    state.merged = Some(true);
    let ejected = JobEvent::FeedbackReceived {
        feedback: vec![fb("merge-queue:1", FeedbackKind::CheckFailed)],
    };
    assert!(apply(&state, &ejected).is_err());
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
