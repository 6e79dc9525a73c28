//! The assistant's conversations: turns with their drafts in order, listed per project, and a
//! draft saved once even when two savers race.

use codemill_store::{DraftClaim, NewAssistantTurn};

use crate::harness::{Db, at};

pub async fn assistant_turns_keep_their_drafts_and_save_each_once(db: Db) {
    let s = &db.store;
    let drafts = vec![
        ("Add SSO".to_string(), "Log in with OIDC.".to_string()),
        ("Add SCIM".to_string(), "Sync users.".to_string()),
    ];
    let first = s
        .add_assistant_turn(
            &NewAssistantTurn {
                conversation: "c1",
                project: "A",
                asked_by: "ann",
                question: "What would SSO take?",
                answer: "Two tickets.",
                cost_usd: 0.25,
                error: None,
                drafts: &drafts,
            },
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(first.drafts.len(), 2);
    assert_eq!(first.drafts[1].n, 2);
    assert_eq!(first.drafts[1].title, "Add SCIM");
    s.add_assistant_turn(
        &NewAssistantTurn {
            conversation: "c1",
            project: "A",
            asked_by: "ann",
            question: "And billing?",
            answer: "",
            cost_usd: 0.5,
            error: Some("the budget is spent"),
            drafts: &[],
        },
        at(2),
    )
    .await
    .unwrap();
    let other = db.reopen().await;
    let turns = other.assistant_turns("c1").await.unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[1].error.as_deref(), Some("the budget is spent"));
    let listed = other.assistant_conversations(Some("A")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].first_question, "What would SSO take?");
    assert_eq!(listed[0].turns, 2);
    assert!((listed[0].cost_usd - 0.75).abs() < 1e-9);
    assert!(
        other
            .assistant_conversations(Some("B"))
            .await
            .unwrap()
            .is_empty()
    );

    // One saver at a time; once saved, the ticket is returned, never a second save.
    let claim = s.claim_assistant_draft(first.id, 1, at(3)).await.unwrap();
    assert!(matches!(claim, Some(DraftClaim::Claimed(ref d)) if d.title == "Add SSO"));
    let racing = other
        .claim_assistant_draft(first.id, 1, at(4))
        .await
        .unwrap();
    assert_eq!(racing, Some(DraftClaim::Busy));
    s.saved_assistant_draft(first.id, 1, "A-7").await.unwrap();
    let again = other
        .claim_assistant_draft(first.id, 1, at(5))
        .await
        .unwrap();
    assert_eq!(again, Some(DraftClaim::Saved("A-7".into())));
    assert_eq!(
        s.claim_assistant_draft(first.id, 9, at(5)).await.unwrap(),
        None
    );
    // A claim left by a saver that died is taken over after a while.
    assert!(matches!(
        s.claim_assistant_draft(first.id, 2, at(6)).await.unwrap(),
        Some(DraftClaim::Claimed(_))
    ));
    assert!(matches!(
        other
            .claim_assistant_draft(first.id, 2, at(6) + chrono::TimeDelta::minutes(3))
            .await
            .unwrap(),
        Some(DraftClaim::Claimed(_))
    ));
}

pub async fn pending_questions_are_claimed_once_and_answered_by_their_holder(db: Db) {
    use codemill_store::{Answer, NewQuestion};
    let s = &db.store;
    let asked = |question: &'static str, claim| NewQuestion {
        conversation: "c2",
        project: "A",
        asked_by: "ann",
        question,
        claim,
    };
    let mine = s
        .ask_assistant(&asked("Mine", Some(("cli", at(100)))), at(1))
        .await
        .unwrap();
    assert!(mine.pending);
    let open = s
        .ask_assistant(&asked("Anyone's", None), at(2))
        .await
        .unwrap();
    let other = db.reopen().await;
    // The asker holds its own question: a worker takes the other one, once.
    let taken = other
        .claim_assistant_turn("w1", at(50), at(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, open.id);
    assert!(
        s.claim_assistant_turn("w2", at(50), at(4))
            .await
            .unwrap()
            .is_none()
    );
    // Only the holder answers; the answer and its drafts land together.
    let answer = |text: &'static str, drafts: &'static [(String, String)]| Answer {
        answer: text,
        cost_usd: 0.1,
        error: None,
        drafts,
    };
    assert!(
        s.answer_assistant(open.id, "w2", &answer("no", &[]))
            .await
            .unwrap()
            .is_none()
    );
    let drafts = vec![("Add SSO".to_string(), "Body".to_string())];
    let drafts: &'static [(String, String)] = Box::leak(drafts.into_boxed_slice());
    let done = s
        .answer_assistant(open.id, "w1", &answer("yes", drafts))
        .await
        .unwrap()
        .unwrap();
    assert!(!done.pending);
    assert_eq!(done.answer, "yes");
    assert_eq!(done.drafts.len(), 1);
    assert!(
        s.answer_assistant(open.id, "w1", &answer("again", &[]))
            .await
            .unwrap()
            .is_none()
    );
    // The asker died: once its claim ran out, a worker answers its question.
    assert!(
        s.claim_assistant_turn("w2", at(200), at(99))
            .await
            .unwrap()
            .is_none()
    );
    let late = s
        .claim_assistant_turn("w2", at(300), at(101))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.id, mine.id);
    assert!(
        s.answer_assistant(mine.id, "cli", &answer("late", &[]))
            .await
            .unwrap()
            .is_none()
    );
}
