//! A split ticket: the parent waits for its sub-jobs, starts each wave once the one below is
//! ready, stops when a stopped sub-job leaves nothing to run, and proposes the stack after one
//! whole-stack review; a sub-job reports to its parent and ships with it.

use super::*;
use crate::ids::JobId;
use crate::subtasks::{Below, Child, ChildResult, Graph, StackEntry, SubTask, SubtaskOf};

fn task(id: &str, deps: &[&str]) -> SubTask {
    SubTask {
        id: id.into(),
        title: format!("Part {id}"),
        goal: format!("Do {id}."),
        criteria: vec![format!("{id} done")],
        files: vec![format!("{id}.txt")],
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    }
}

/// A; B and C after A; D after B and C.
fn diamond() -> Graph {
    Graph {
        subtasks: vec![
            task("A", &[]),
            task("B", &["A"]),
            task("C", &["A"]),
            task("D", &["B", "C"]),
        ],
    }
}

fn split_plan() -> JobEvent {
    let mut r = run(crate::agent::AgentOutcome::Success);
    r.subtasks = Some(diamond());
    JobEvent::AgentFinished {
        stage: AgentStage::Plan,
        round: 0,
        run: r,
    }
}

fn child(id: &str, n: u128) -> Child {
    Child {
        id: id.into(),
        ticket: format!("DEMO-{}", n + 1).parse().unwrap(),
        job: JobId(uuid::Uuid::from_u128(n)),
        result: None,
        reworks: 0,
    }
}

fn started(ids: &[(&str, u128)]) -> JobEvent {
    JobEvent::SubtasksStarted {
        children: ids.iter().map(|(id, n)| child(id, *n)).collect(),
    }
}

fn ready_child(id: &str) -> JobEvent {
    JobEvent::SubtaskFinished {
        id: id.into(),
        result: ChildResult::Ready {
            commit: format!("c-{id}"),
            base: None,
        },
        job: None,
    }
}

fn to_children() -> Vec<JobEvent> {
    vec![
        created(3),
        ready(true),
        updated(),
        workspace(),
        agent(AgentStage::Research, 0),
        split_plan(),
        updated(),
    ]
}

fn pending(events: &[JobEvent]) -> Option<Effect> {
    JobState::replay(events).unwrap().pending_effect()
}

#[test]
fn the_parent_starts_waves_as_the_ones_below_become_ready_then_stacks() {
    let mut e = to_children();
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.stage, Stage::AwaitingChildren);
    assert_eq!(
        pending(&e),
        Some(Effect::StartSubtasks {
            ids: vec!["A".into()]
        })
    );
    e.push(started(&[("A", 1)]));
    let state = JobState::replay(&e).unwrap();
    assert_eq!(next_action(&state), Action::AwaitChildren);
    assert_eq!(state.status(), "awaiting_children");
    e.push(ready_child("A"));
    assert_eq!(
        pending(&e),
        Some(Effect::StartSubtasks {
            ids: vec!["B".into(), "C".into()]
        })
    );
    e.push(started(&[("B", 2), ("C", 3)]));
    // B alone is not enough for D.
    e.push(ready_child("B"));
    assert_eq!(pending(&e), None);
    e.push(ready_child("C"));
    assert_eq!(
        pending(&e),
        Some(Effect::StartSubtasks {
            ids: vec!["D".into()]
        })
    );
    e.push(started(&[("D", 4)]));
    e.push(ready_child("D"));
    assert_eq!(pending(&e), Some(Effect::BuildStack));
    let entries: Vec<StackEntry> = ["A", "B", "C", "D"]
        .iter()
        .enumerate()
        .map(|(i, id)| StackEntry {
            id: id.to_string(),
            title: format!("Part {id}"),
            ticket: format!("DEMO-{}", i + 2).parse().unwrap(),
            job: JobId(uuid::Uuid::from_u128(i as u128 + 1)),
            commit: format!("s-{id}"),
            branch: format!("codemill/DEMO-1/{}-part-{}", i + 1, id.to_lowercase()),
            base: if i == 0 {
                "main".into()
            } else {
                format!("codemill/DEMO-1/{i}")
            },
        })
        .collect();
    e.push(JobEvent::Stacked {
        entries,
        commit: "s-D".into(),
    });
    e.push(gates(0, true));
    e.extend([
        plan_review(0, &["architecture"]),
        review(
            0,
            "architecture",
            vec![finding(crate::findings::Severity::High)],
        ),
        triaged(
            0,
            &[(
                crate::findings::Severity::High,
                crate::triage::Bucket::FixNow,
            )],
        ),
    ]);
    // The whole-stack review informs the proposal; no fix round runs on the stack.
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.stage, Stage::Propose);
    assert_eq!(state.commit.as_deref(), Some("s-D"));
    insta::assert_snapshot!(stages(&e).join(" > "));
}

#[test]
fn a_stopped_sub_task_stops_its_dependants_not_its_siblings() {
    let mut e = to_children();
    e.push(started(&[("A", 1)]));
    e.push(ready_child("A"));
    e.push(started(&[("B", 2), ("C", 3)]));
    e.push(JobEvent::SubtaskFinished {
        id: "B".into(),
        result: ChildResult::Stopped {
            status: "needs_attention".into(),
            reason: "gates failed".into(),
        },
        job: None,
    });
    // Retried while C still runs: the new job's result counts, and its commits are its own.
    let mut retried = e.clone();
    retried.push(JobEvent::SubtaskFinished {
        id: "B".into(),
        result: ChildResult::Ready {
            commit: "c-B2".into(),
            base: None,
        },
        job: Some(JobId(uuid::Uuid::from_u128(22))),
    });
    let state = JobState::replay(&retried).unwrap();
    let b = state.children.iter().find(|c| c.id == "B").unwrap();
    assert_eq!(b.job, JobId(uuid::Uuid::from_u128(22)));
    assert_eq!(state.stage, Stage::AwaitingChildren);
    // C still runs: the parent waits for it.
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.stage, Stage::AwaitingChildren);
    assert_eq!(next_action(&state), Action::AwaitChildren);
    e.push(ready_child("C"));
    // Nothing can run now: D needs B.
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.stage, Stage::Snapshot);
    let reason = state.reason.unwrap();
    assert!(
        reason.contains("sub-task B (DEMO-3) is needs_attention: gates failed")
            && reason.contains("not started because they depend on it: D"),
        "{reason}"
    );
}

#[test]
fn reports_arrive_while_the_parent_runs_an_effect_and_unknown_ones_are_refused() {
    let mut e = to_children();
    e.push(started(&[("A", 1)]));
    e.push(JobEvent::EffectStarted {
        effect: "start_subtasks".into(),
    });
    // A report during an effect does not complete it.
    let state = JobState::replay(&e).unwrap();
    let next = apply(&state, &ready_child("A")).unwrap();
    assert_eq!(next.starts_in_stage, 1);
    assert!(apply(&state, &ready_child("Z")).is_err());
    // A job that never split takes no reports.
    let plain = JobState::replay(&to_gates(3)).unwrap();
    assert!(apply(&plain, &ready_child("A")).is_err());
}

#[test]
fn a_sub_job_reports_then_ships_with_its_parent() {
    let sub = SubtaskOf {
        parent: JobId(uuid::Uuid::from_u128(9)),
        parent_ticket: "DEMO-1".parse().unwrap(),
        id: "B".into(),
        n: 2,
        base_commit: "base".into(),
        below: vec![Below {
            job: JobId(uuid::Uuid::from_u128(1)),
            commit: "c-A".into(),
            base: None,
        }],
    };
    let mut e = to_proposal();
    if let JobEvent::Created { subtask, .. } = &mut e[0] {
        *subtask = Some(sub.clone());
    }
    // A sub-job's plan never splits again.
    if let JobEvent::AgentFinished { run, .. } = &mut e[5] {
        run.subtasks = Some(diamond());
    }
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.graph, None);
    assert_eq!(state.policy_base().as_deref(), Some("base"));
    e.push(JobEvent::Proposed {
        proposal: proposal(&state),
    });
    e.push(updated());
    assert_eq!(JobState::replay(&e).unwrap().stage, Stage::ReportToParent);
    // Shipped before its own report was journalled (the worker reporting died): it ships.
    let mut early = e.clone();
    early.push(JobEvent::ShippedWithParent {
        parent: "DEMO-1".parse().unwrap(),
        pr: 7,
        branch: "b".into(),
        number: None,
        url: None,
    });
    assert_eq!(
        JobState::replay(&early).unwrap().stage,
        Stage::AnnounceShipped
    );
    e.push(JobEvent::ParentTold {
        parent: "DEMO-1".parse().unwrap(),
    });
    let state = JobState::replay(&e).unwrap();
    assert_eq!(next_action(&state), Action::AwaitApproval);
    e.push(JobEvent::ShippedWithParent {
        parent: "DEMO-1".parse().unwrap(),
        pr: 7,
        branch: "codemill/DEMO-1/2-part-b".into(),
        number: Some(12),
        url: Some("https://example.test/pr/12".into()),
    });
    e.push(updated());
    e.push(JobEvent::CleanedUp {
        worktree_removed: true,
    });
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.stage, Stage::Done);
    assert_eq!((state.pr, state.pr_number), (Some(7), Some(12)));
    assert_eq!(state.branch.as_deref(), Some("codemill/DEMO-1/2-part-b"));

    // A sub-job that stops reports that too, then ends stopped.
    let mut stopped = to_gates(3);
    if let JobEvent::Created { subtask, .. } = &mut stopped[0] {
        *subtask = Some(sub);
    }
    stopped.push(JobEvent::Cancelled { by: "me".into() });
    stopped.extend([
        JobEvent::Snapshotted {
            wip_ref: None,
            commit: None,
        },
        updated(),
        JobEvent::CleanedUp {
            worktree_removed: true,
        },
    ]);
    assert_eq!(
        JobState::replay(&stopped).unwrap().stage,
        Stage::ReportToParent
    );
    stopped.push(JobEvent::ParentTold {
        parent: "DEMO-1".parse().unwrap(),
    });
    assert_eq!(JobState::replay(&stopped).unwrap().stage, Stage::Cancelled);
}

#[test]
fn a_rejected_sub_task_goes_back_alone_and_the_stack_is_built_again() {
    let mut e = to_children();
    e.push(started(&[("A", 1)]));
    e.push(ready_child("A"));
    e.push(started(&[("B", 2), ("C", 3)]));
    e.extend([ready_child("B"), ready_child("C")]);
    e.push(started(&[("D", 4)]));
    e.push(ready_child("D"));
    e.push(JobEvent::Stacked {
        entries: vec![StackEntry {
            id: "A".into(),
            title: "Part A".into(),
            ticket: "DEMO-2".parse().unwrap(),
            job: JobId(uuid::Uuid::from_u128(1)),
            commit: "s-A".into(),
            branch: "codemill/DEMO-1/1-part-a".into(),
            base: "main".into(),
        }],
        commit: "s-D".into(),
    });
    e.push(gates(0, true));
    e.extend([
        plan_review(0, &["architecture"]),
        review(0, "architecture", vec![]),
        triaged(0, &[]),
    ]);
    let state = JobState::replay(&e).unwrap();
    e.push(JobEvent::Proposed {
        proposal: proposal(&state),
    });
    e.push(updated());
    assert_eq!(JobState::replay(&e).unwrap().stage, Stage::AwaitingApproval);
    let rework = crate::subtasks::Rework {
        id: "B".into(),
        reason: "name it better".into(),
        by: "ann".into(),
    };
    // Only a sub-task of the stack can go back.
    let state = JobState::replay(&e).unwrap();
    let mut unknown = rework.clone();
    unknown.id = "Z".into();
    assert!(apply(&state, &JobEvent::SubtaskRejected { rework: unknown }).is_err());
    e.push(JobEvent::SubtaskRejected { rework });
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.stage, Stage::AwaitingChildren);
    assert_eq!((state.round, state.commit.clone()), (1, None));
    assert_eq!(
        state.pending_effect(),
        Some(Effect::ReworkSubtask { id: "B".into() })
    );
    e.push(JobEvent::SubtaskReworkSent { id: "B".into() });
    assert_eq!(pending(&e), None, "waits for B's fix round");
    e.push(ready_child("B"));
    assert_eq!(pending(&e), Some(Effect::BuildStack));
    e.push(JobEvent::Stacked {
        entries: vec![StackEntry {
            id: "A".into(),
            title: "Part A".into(),
            ticket: "DEMO-2".parse().unwrap(),
            job: JobId(uuid::Uuid::from_u128(1)),
            commit: "s-A".into(),
            branch: "codemill/DEMO-1/1-part-a".into(),
            base: "main".into(),
        }],
        commit: "s-D2".into(),
    });
    // The new stack is gated and reviewed as the next round.
    assert_eq!(pending(&e), Some(Effect::RunGates { round: 1 }));
}
