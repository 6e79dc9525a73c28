//! The merge queue: one queued entry per ticket, in order, settled once; one process at a time
//! works a queue.

use codemill_store::{MergeState, NewMergeEntry};

use crate::harness::{Db, at, enqueue, t0};

pub async fn merge_entries_are_queued_once_in_order_and_settled_once(db: Db) {
    let s = &db.store;
    let job = enqueue(s, "A-1", 3, t0()).await;
    let new = |ticket: &'static str, commit: &'static str| NewMergeEntry {
        project: "A",
        target: "main",
        ticket,
        branch: "codemill/x",
        commit,
        job,
        by: "ann",
    };
    let (first, created) = s.enqueue_merge(&new("A-1", "aaa"), at(1)).await.unwrap();
    assert!(created);
    assert_eq!(first.state, MergeState::Queued);
    let (second, _) = s.enqueue_merge(&new("A-2", "bbb"), at(2)).await.unwrap();
    // Queued again while queued: the same entry, not a second one.
    let (again, created) = s.enqueue_merge(&new("A-1", "ccc"), at(3)).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    assert_eq!(again.commit, "aaa");
    let other = db.reopen().await;
    let queue = other.merge_queue("A", "main").await.unwrap();
    assert_eq!(
        queue.iter().map(|e| e.ticket.as_str()).collect::<Vec<_>>(),
        ["A-1", "A-2"]
    );
    assert!(other.merge_queue("A", "develop").await.unwrap().is_empty());
    assert_eq!(
        other.merge_queues_waiting().await.unwrap(),
        [("A".to_string(), "main".to_string())]
    );
    // Settled once; a second settle changes nothing.
    assert!(
        s.settle_merge(first.id, MergeState::Merged, None, Some("m1"), at(4))
            .await
            .unwrap()
    );
    assert!(
        !s.settle_merge(first.id, MergeState::Ejected, Some("late"), None, at(5))
            .await
            .unwrap()
    );
    assert!(
        s.settle_merge(
            second.id,
            MergeState::Ejected,
            Some("gate `test` failed"),
            None,
            at(5)
        )
        .await
        .unwrap()
    );
    let settled = other.merge_entry(first.id).await.unwrap().unwrap();
    assert_eq!(settled.state, MergeState::Merged);
    assert_eq!(settled.merged_as.as_deref(), Some("m1"));
    let ejected = other.merge_entry(second.id).await.unwrap().unwrap();
    assert_eq!(ejected.reason.as_deref(), Some("gate `test` failed"));
    assert!(other.merge_queue("A", "main").await.unwrap().is_empty());
    assert!(other.merge_queues_waiting().await.unwrap().is_empty());
    // Once settled, the ticket can be queued again.
    let (third, created) = s.enqueue_merge(&new("A-1", "ddd"), at(6)).await.unwrap();
    assert!(created && third.id > second.id);
    assert_eq!(other.merge_entries(Some("A")).await.unwrap().len(), 3);
    assert_eq!(other.merge_entries(Some("B")).await.unwrap().len(), 0);
    assert_eq!(other.merge_entries(None).await.unwrap().len(), 3);

    // The run lease: one owner at a time until it expires; renewed by its owner.
    assert!(
        s.claim_merge_run("A", "main", "w1", at(60), at(0))
            .await
            .unwrap()
    );
    assert!(
        !other
            .claim_merge_run("A", "main", "w2", at(70), at(10))
            .await
            .unwrap()
    );
    assert_eq!(
        other.merge_run_holder("A", "main").await.unwrap(),
        Some(("w1".to_string(), at(60)))
    );
    assert_eq!(other.merge_run_holder("B", "main").await.unwrap(), None);
    assert!(
        s.claim_merge_run("A", "main", "w1", at(90), at(20))
            .await
            .unwrap()
    );
    assert!(
        !other
            .claim_merge_run("A", "main", "w2", at(100), at(80))
            .await
            .unwrap()
    );
    assert!(
        other
            .claim_merge_run("A", "develop", "w2", at(100), at(80))
            .await
            .unwrap()
    );
    assert!(
        other
            .claim_merge_run("A", "main", "w2", at(200), at(95))
            .await
            .unwrap()
    );
    s.release_merge_run("A", "main", "w1").await.unwrap();
    assert!(
        !s.claim_merge_run("A", "main", "w1", at(200), at(96))
            .await
            .unwrap()
    );
    other.release_merge_run("A", "main", "w2").await.unwrap();
    assert!(
        s.claim_merge_run("A", "main", "w1", at(200), at(97))
            .await
            .unwrap()
    );
}
