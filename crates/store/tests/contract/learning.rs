//! Learning records: an outcome once per job and kind, read back since a time; a proposal
//! decided once; one learning run per project and period.

use codemill_core::ids::JobId;
use codemill_store::{GuidanceState, NewWorkOutcome};

use crate::harness::{Db, at};

pub async fn outcomes_guidance_and_learn_runs_are_recorded_once(db: Db) {
    let s = &db.store;
    let job = JobId::new();
    let feedback = vec![
        "Handle the error".to_string(),
        "And log it\nplease".to_string(),
    ];
    let new = NewWorkOutcome {
        project: "A",
        ticket: "A-1",
        job,
        kind: "merged",
        pr_url: Some("https://x.test/pr/1"),
        agent_commit: Some("aaa"),
        merged_commit: Some("bbb"),
        human_lines: 3,
        human_diff: "+x\n+y\n-z\n",
        fix_rounds: 1,
        feedback: &feedback,
        reason: None,
    };
    assert!(s.record_outcome(&new, at(1)).await.unwrap());
    assert!(
        !s.record_outcome(&new, at(2)).await.unwrap(),
        "once per job and kind"
    );
    let other = db.reopen().await;
    let all = other.outcomes("A", at(0)).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].job, job);
    assert_eq!(all[0].feedback, feedback);
    assert_eq!(all[0].human_lines, 3);
    assert!(other.outcomes("A", at(5)).await.unwrap().is_empty());

    let g = s
        .add_guidance(
            "A",
            "{\"kind\":\"checklist\"}",
            "errors checklist: x",
            "+- x",
            at(3),
        )
        .await
        .unwrap();
    assert_eq!(g.state, GuidanceState::Proposed);
    use GuidanceState::{Applied, Approved, Proposed, Rejected};
    assert!(
        other
            .move_guidance(g.id, Proposed, Approved, Some("ann"), None, at(4))
            .await
            .unwrap()
    );
    assert!(
        !s.move_guidance(g.id, Proposed, Rejected, Some("bob"), None, at(5))
            .await
            .unwrap(),
        "decided once"
    );
    assert_eq!(s.approved_guidance().await.unwrap().len(), 1);
    assert!(
        s.move_guidance(
            g.id,
            Approved,
            Applied,
            None,
            Some("https://x.test/pr/2"),
            at(6)
        )
        .await
        .unwrap()
    );
    assert!(s.approved_guidance().await.unwrap().is_empty());
    let row = s.guidance_row(g.id).await.unwrap().unwrap();
    assert_eq!(row.state, GuidanceState::Applied);
    assert_eq!(row.decided_by.as_deref(), Some("ann"));
    assert_eq!(row.result.as_deref(), Some("https://x.test/pr/2"));
    assert_eq!(row.result.as_deref(), Some("https://x.test/pr/2"));
    assert_eq!(s.guidance(Some("A")).await.unwrap().len(), 1);
    assert!(s.guidance(Some("B")).await.unwrap().is_empty());

    assert!(s.start_learn_run("A", "2026-W49", at(6)).await.unwrap());
    assert!(!other.start_learn_run("A", "2026-W49", at(7)).await.unwrap());
    assert!(other.start_learn_run("A", "2026-W50", at(8)).await.unwrap());
    // A run given back (too little to learn) can be started again in its period.
    s.forget_learn_run("A", "2026-W49").await.unwrap();
    assert!(other.start_learn_run("A", "2026-W49", at(9)).await.unwrap());
    assert!(!s.start_learn_run("A", "2026-W50", at(9)).await.unwrap());
}
