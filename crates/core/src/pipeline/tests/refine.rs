//! A refinement job: no readiness check, research, the drafted spec written back; then it waits
//! for answers, goes to the build queue by itself, or waits for a person to accept it (and an
//! accepted split becomes tickets).

use super::*;
use crate::refine::{Mode, Spec};

fn refining(auto_queue: bool) -> JobEvent {
    let mut c = created(3);
    if let JobEvent::Created { refine, .. } = &mut c {
        *refine = Some(Mode { auto_queue });
    }
    c
}

fn drafted(json: &str) -> JobEvent {
    let mut r = run(crate::agent::AgentOutcome::Success);
    r.spec = Some(Box::new(Spec::parse(json).unwrap()));
    JobEvent::AgentFinished {
        stage: AgentStage::Plan,
        round: 0,
        run: r,
    }
}

const CLEAR: &str =
    "{\"problem\": \"p\", \"behaviour\": \"b\", \"criteria\": [\"c\"], \"size\": \"S\"}";

fn to_spec(auto_queue: bool, json: &str) -> Vec<JobEvent> {
    vec![
        refining(auto_queue),
        updated(),
        workspace(),
        agent(AgentStage::Research, 0),
        drafted(json),
        updated(),
    ]
}

#[test]
fn a_clear_small_spec_queues_its_build_when_allowed() {
    let e = to_spec(true, CLEAR);
    insta::assert_snapshot!(stages(&e).join(" > "), @"start > prepare > research > plan > announce_spec > queue_build");
    let mut e = e;
    e.push(JobEvent::BuildQueued);
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.status(), "done");
}

#[test]
fn without_auto_queue_it_waits_for_acceptance_and_a_split_becomes_tickets() {
    let split = "{\"problem\": \"p\", \"behaviour\": \"b\", \"criteria\": [\"c\"], \"size\": \"L\", \"split\": [{\"title\": \"one\", \"criteria\": [\"x\"]}]}";
    let mut e = to_spec(true, split);
    let state = JobState::replay(&e).unwrap();
    assert_eq!(state.stage, Stage::AwaitingAcceptance, "L and split wait");
    assert_eq!(next_action(&state), Action::AwaitApproval);
    assert!(apply(&state, &JobEvent::EffectStarted { effect: "x".into() }).is_err());
    e.push(JobEvent::Accepted { by: "ann".into() });
    assert_eq!(JobState::replay(&e).unwrap().stage, Stage::CreateSplit);
    e.push(JobEvent::SplitCreated {
        tickets: vec!["DEMO-2".into()],
    });
    let state = JobState::replay(&e).unwrap();
    assert_eq!(
        (state.stage, state.split_tickets.clone()),
        (Stage::Done, vec!["DEMO-2".to_string()])
    );

    let waits = to_spec(false, CLEAR);
    assert_eq!(
        JobState::replay(&waits).unwrap().stage,
        Stage::AwaitingAcceptance
    );
}

#[test]
fn open_questions_wait_for_the_author() {
    let asks = "{\"problem\": \"p\", \"behaviour\": \"b\", \"criteria\": [\"c\"], \"questions\": [\"which?\"], \"size\": \"S\"}";
    let before = to_spec(true, asks);
    let mut at_announce = before.clone();
    at_announce.pop();
    let state = JobState::replay(&at_announce).unwrap();
    assert_eq!(
        state.pending_effect(),
        Some(Effect::UpdateTicket {
            status: TicketStatus::NeedsInput,
            note: NoteKind::Spec
        })
    );
    let state = JobState::replay(&before).unwrap();
    assert_eq!(state.stage, Stage::NeedsInput);
    assert_eq!(state.questions, ["which?"]);
    // A plan answer without a spec stops the refinement, naming why.
    let mut none = to_spec(true, CLEAR);
    none.truncate(4);
    none.push(agent(AgentStage::Plan, 0));
    let state = JobState::replay(&none).unwrap();
    assert!(state.reason.unwrap().contains("no spec"));
}
