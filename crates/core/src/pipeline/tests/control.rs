//! Decisions from outside the job's loop: a cancel, and a ticket edited after the job asked.

use super::*;

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
