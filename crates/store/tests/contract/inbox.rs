//! The webhook inbox: each delivery once, with its job in the same transaction.

use codemill_core::ids::JobId;
use codemill_store::{
    Delivery, Enqueued, InboxPruned, InboxState, NewJob, QueueState, Recorded, Settled,
};
use serde_json::json;

use crate::harness::{Db, at, created, key};
use crate::ingest::views_match_their_jobs;

const HEADERS: &[(&str, &str)] = &[
    ("X-GitHub-Delivery", "d-1"),
    ("X-Hub-Signature-256", "sha256=abc"),
    ("X-GitHub-Event", "issues"),
];

pub(crate) fn delivery<'a>(provider: &'a str, id: &'a str, body: &'a [u8]) -> Delivery<'a> {
    Delivery {
        provider,
        delivery_id: id,
        headers: HEADERS,
        body,
    }
}

pub async fn deliveries_are_recorded_once_with_their_job(db: Db) {
    let s = &db.store;
    let ticket = key("A-1");
    let ev = created(&ticket);
    let job = |id| NewJob {
        id,
        ticket: &ticket,
        created: &ev,
        max_attempts: 3,
    };
    // Raw bytes are kept as received (the signature covers exactly them).
    let body: &[u8] = b"{\"action\":\"labeled\"}\n\xff";
    let first = JobId::new();
    assert_eq!(
        s.record_delivery(&delivery("github", "d-1", body), Some(&job(first)), at(0))
            .await
            .unwrap(),
        Recorded::Inserted {
            job: Some(Enqueued::Created(first))
        }
    );
    let row = s.delivery("github", "d-1").await.unwrap().unwrap();
    assert_eq!(row.body, body);
    assert_eq!(row.job, Some(first));
    assert_eq!(row.received_at, at(0));
    let headers: Vec<(&str, &str)> = row
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(headers, HEADERS);
    let q = s.queue_entry(first).await.unwrap().unwrap();
    assert_eq!((q.state, q.run_after), (QueueState::Queued, at(0)));
    assert_eq!(s.journal(first).await.unwrap().len(), 1);

    // The provider's retry of the same delivery writes nothing.
    assert_eq!(
        s.record_delivery(
            &delivery("github", "d-1", b"other"),
            Some(&job(JobId::new())),
            at(1)
        )
        .await
        .unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(
        s.delivery("github", "d-1").await.unwrap().unwrap().body,
        body
    );
    // Another delivery for the same ticket joins its active job.
    assert_eq!(
        s.record_delivery(
            &delivery("github", "d-2", b"{}"),
            Some(&job(JobId::new())),
            at(2)
        )
        .await
        .unwrap(),
        Recorded::Inserted {
            job: Some(Enqueued::Existing(first))
        }
    );
    // Delivery ids are per provider; a delivery need not start a job.
    assert_eq!(
        s.record_delivery(&delivery("jira", "d-1", b"{}"), None, at(3))
            .await
            .unwrap(),
        Recorded::Inserted { job: None }
    );
    assert_eq!(s.delivery("jira", "d-1").await.unwrap().unwrap().job, None);
    assert!(s.delivery("gitlab", "d-1").await.unwrap().is_none());
    assert_eq!(s.jobs().await.unwrap().len(), 1);
}

pub async fn concurrent_identical_deliveries_make_one_job(db: Db) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let s = db.store.clone();
        tasks.spawn(async move {
            let ticket = key("A-1");
            let ev = created(&ticket);
            let job = NewJob {
                id: JobId::new(),
                ticket: &ticket,
                created: &ev,
                max_attempts: 3,
            };
            s.record_delivery(&delivery("github", "same", b"{}"), Some(&job), at(0))
                .await
                .unwrap()
        });
    }
    let results = tasks.join_all().await;
    let inserted: Vec<&Recorded> = results
        .iter()
        .filter(|r| matches!(r, Recorded::Inserted { .. }))
        .collect();
    assert_eq!(inserted.len(), 1, "{results:?}");
    assert!(matches!(
        inserted[0],
        Recorded::Inserted {
            job: Some(Enqueued::Created(_))
        }
    ));
    assert_eq!(db.store.jobs().await.unwrap().len(), 1);
    assert_eq!(db.store.queue_entries(None).await.unwrap().len(), 1);
    assert_eq!(
        db.raw("DELETE FROM inbox WHERE provider = 'nobody'").await,
        Ok(0)
    );
}

/// Bodies go once a delivery is processed (it started no job, or its job ended); the delivery id
/// stays, so a redelivery is still a duplicate, until the row passes the de-duplication window.
pub async fn processed_deliveries_lose_their_body_then_their_row(db: Db) {
    let s = &db.store;
    let (busy, idle) = (key("A-1"), key("A-2"));
    let (busy_ev, idle_ev) = (created(&busy), created(&idle));
    let (running, ended) = (JobId::new(), JobId::new());
    let job = |id, ticket, created| NewJob {
        id,
        ticket,
        created,
        max_attempts: 3,
    };
    let body: &[u8] = b"{\"action\":\"labeled\"}";
    s.record_delivery(
        &delivery("github", "starts-running", body),
        Some(&job(running, &busy, &busy_ev)),
        at(0),
    )
    .await
    .unwrap();
    s.record_delivery(
        &delivery("github", "starts-ended", body),
        Some(&job(ended, &idle, &idle_ev)),
        at(1),
    )
    .await
    .unwrap();
    s.record_delivery(&delivery("jira", "no-job", body), None, at(2))
        .await
        .unwrap();

    // Nothing is old enough to forget; only the delivery without a job is processed.
    assert_eq!(
        s.prune_deliveries(at(-60)).await.unwrap(),
        InboxPruned {
            cleared: 1,
            deleted: 0
        }
    );
    let row = s.delivery("jira", "no-job").await.unwrap().unwrap();
    assert!(row.body.is_empty(), "{row:?}");
    assert!(row.headers.is_empty(), "{row:?}");
    assert_eq!(row.received_at, at(2));
    for id in ["starts-running", "starts-ended"] {
        assert_eq!(s.delivery("github", id).await.unwrap().unwrap().body, body);
    }
    assert_eq!(
        s.record_delivery(&delivery("jira", "no-job", body), None, at(3))
            .await
            .unwrap(),
        Recorded::Duplicate,
        "a cleared delivery is still known"
    );

    // Its job ended: processed. The row still names the job.
    assert!(s.cancel(ended, at(4)).await.unwrap());
    assert_eq!(
        s.prune_deliveries(at(-60)).await.unwrap(),
        InboxPruned {
            cleared: 1,
            deleted: 0
        }
    );
    let row = s.delivery("github", "starts-ended").await.unwrap().unwrap();
    assert_eq!((row.body.len(), row.job), (0, Some(ended)));
    assert_eq!(
        s.delivery("github", "starts-running")
            .await
            .unwrap()
            .unwrap()
            .body,
        body
    );
    assert_eq!(
        s.prune_deliveries(at(-60)).await.unwrap(),
        InboxPruned::default(),
        "pruning again changes nothing"
    );

    // Past the window processed rows go (received before the cutoff, not at it); the delivery
    // of a running job stays.
    assert_eq!(
        s.prune_deliveries(at(2)).await.unwrap(),
        InboxPruned {
            cleared: 0,
            deleted: 1
        }
    );
    assert!(
        s.delivery("github", "starts-ended")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.delivery("jira", "no-job").await.unwrap().is_some());
    assert_eq!(
        s.prune_deliveries(at(3)).await.unwrap(),
        InboxPruned {
            cleared: 0,
            deleted: 1
        }
    );
    assert!(s.delivery("jira", "no-job").await.unwrap().is_none());
    assert_eq!(
        s.record_delivery(&delivery("jira", "no-job", body), None, at(4))
            .await
            .unwrap(),
        Recorded::Inserted { job: None },
        "a forgotten id is new again"
    );
    // Far past the window: the new no-job row goes (deleted, not first cleared), the running
    // job's delivery stays whole.
    assert_eq!(
        s.prune_deliveries(at(3600)).await.unwrap(),
        InboxPruned {
            cleared: 0,
            deleted: 1
        }
    );
    assert_eq!(
        s.delivery("github", "starts-running")
            .await
            .unwrap()
            .unwrap()
            .body,
        body
    );
    assert_eq!(
        s.jobs().await.unwrap().len(),
        2,
        "jobs are not the inbox's to delete"
    );
}

/// Outside deliveries are accepted now and processed later: claimed oldest first and held, so
/// a second node takes what the first did not; a retry waits its turn; done and failed ones are
/// never claimed again; a pending one keeps its body when the inbox is pruned.
pub async fn accepted_deliveries_are_claimed_held_retried_and_settled(db: Db) {
    let s = &db.store;
    let body: &[u8] = b"{\"action\":\"labeled\"}";
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        assert_eq!(
            s.accept_delivery(&delivery("github:shop", id, body), at(n as i64))
                .await
                .unwrap(),
            Recorded::Inserted { job: None }
        );
    }
    assert_eq!(
        s.accept_delivery(&delivery("github:shop", "a", body), at(5))
            .await
            .unwrap(),
        Recorded::Duplicate,
        "a redelivery is stored once"
    );
    let a = s.delivery("github:shop", "a").await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.attempts, a.next_at, a.outcome.clone()),
        (InboxState::Pending, 0, Some(at(0)), None)
    );

    // Only what is due; oldest first; with body and headers.
    let claimed = s.claim_deliveries(at(1), at(61), 10).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|r| r.delivery_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(claimed[0].body, body);
    assert_eq!(claimed[0].headers.len(), HEADERS.len());
    assert!(claimed.iter().all(|r| r.attempts == 1));
    // Held: another node finds only the third.
    let other = s.claim_deliveries(at(2), at(62), 10).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].delivery_id, "c");
    assert!(
        s.claim_deliveries(at(3), at(63), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Pending deliveries keep their body, however old.
    assert_eq!(
        s.prune_deliveries(at(1000)).await.unwrap(),
        InboxPruned::default()
    );

    s.settle_delivery(claimed[0].id, &Settled::Done(json!({"result": "queued"})))
        .await
        .unwrap();
    s.settle_delivery(
        claimed[1].id,
        &Settled::Retry {
            at: at(30),
            error: json!({"error": "jira: could not connect"}),
        },
    )
    .await
    .unwrap();
    s.settle_delivery(
        other[0].id,
        &Settled::Failed(json!({"error": "no such hook"})),
    )
    .await
    .unwrap();
    // Settling is for pending deliveries only: a late second settle changes nothing.
    s.settle_delivery(claimed[0].id, &Settled::Failed(json!({"error": "late"})))
        .await
        .unwrap();
    let a = s.delivery("github:shop", "a").await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.next_at, a.outcome),
        (InboxState::Done, None, Some(json!({"result": "queued"})))
    );
    let b = s.delivery("github:shop", "b").await.unwrap().unwrap();
    assert_eq!((b.state, b.next_at), (InboxState::Pending, Some(at(30))));
    assert_eq!(b.outcome, Some(json!({"error": "jira: could not connect"})));

    assert!(
        s.claim_deliveries(at(29), at(89), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = s.claim_deliveries(at(30), at(90), 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        (retried[0].delivery_id.as_str(), retried[0].attempts),
        ("b", 2)
    );
    // A node that died while processing: claimed again once the hold is over.
    let again = s.claim_deliveries(at(90), at(150), 10).await.unwrap();
    assert_eq!((again[0].delivery_id.as_str(), again[0].attempts), ("b", 3));

    // Newest first, without bodies; by state.
    let all = s.deliveries(None, 10).await.unwrap();
    let listed: Vec<(&str, InboxState)> = all
        .iter()
        .map(|r| (r.delivery_id.as_str(), r.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("c", InboxState::Failed),
            ("b", InboxState::Pending),
            ("a", InboxState::Done)
        ]
    );
    assert!(
        all.iter()
            .all(|r| r.body.is_empty() && r.headers.is_empty())
    );
    let failed = s.deliveries(Some(InboxState::Failed), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(s.deliveries(None, 1).await.unwrap().len(), 1);

    // Settled ones are processed: bodies go, ids stay for de-duplication.
    assert_eq!(
        s.prune_deliveries(at(-60)).await.unwrap(),
        InboxPruned {
            cleared: 2,
            deleted: 0
        }
    );
}

/// Many nodes claiming at once take each delivery exactly once.
pub async fn concurrent_claims_take_each_delivery_once(db: Db) {
    let s = &db.store;
    for n in 0..40 {
        s.accept_delivery(&delivery("linear:eng", &format!("d{n}"), b"{}"), at(0))
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = db.store.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim_deliveries(at(1), at(100), 3).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|r| r.delivery_id));
            }
        });
    }
    let mut all: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
    all.sort();
    let mut want: Vec<String> = (0..40).map(|n| format!("d{n}")).collect();
    want.sort();
    assert_eq!(all, want);
}

/// A local ticket's delivery checks the ticket in the transaction that records it: one for a
/// ticket the tracker does not have writes nothing, alone or written together with others.
pub async fn a_delivery_for_an_unknown_ticket_writes_nothing(db: Db) {
    let project = "A".parse().unwrap();
    let known = db
        .store
        .create_ticket(&project, "known", "b", &[])
        .await
        .unwrap()
        .key;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..30u32 {
        let s = db.store.clone();
        let known = known.clone();
        tasks.spawn(async move {
            let ticket = if n % 3 == 0 { key("A-99") } else { known };
            let ev = created(&ticket);
            let job = NewJob {
                id: JobId::new(),
                ticket: &ticket,
                created: &ev,
                max_attempts: 3,
            };
            let id = format!("t-{n}");
            let recorded = s
                .record_ticket_delivery(&delivery("local", &id, b"{}"), &job, at(0))
                .await
                .unwrap();
            (n, recorded)
        });
    }
    for (n, recorded) in tasks.join_all().await {
        if n % 3 == 0 {
            assert_eq!(recorded, Recorded::UnknownTicket, "delivery {n}");
            assert!(
                db.store
                    .delivery("local", &format!("t-{n}"))
                    .await
                    .unwrap()
                    .is_none()
            );
        } else {
            assert!(
                matches!(recorded, Recorded::Inserted { job: Some(_) }),
                "delivery {n}: {recorded:?}"
            );
        }
    }
    assert_eq!(db.store.jobs().await.unwrap().len(), 1);
    assert_eq!(db.store.deliveries(None, 100).await.unwrap().len(), 20);
    views_match_their_jobs(&db, 1).await;
}
