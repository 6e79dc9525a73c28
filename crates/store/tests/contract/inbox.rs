//! The webhook inbox: each delivery once, with its job in the same transaction.

use codemill_core::ids::JobId;
use codemill_store::{
    Delivery, Enqueued, InboxPruned, InboxState, NewJob, QueueState, Recorded, Settled,
};
use serde_json::json;

use crate::harness::{Db, at, created, key};

const HEADERS: &[(&str, &str)] = &[
    ("X-GitHub-Delivery", "d-1"),
    ("X-Hub-Signature-256", "sha256=abc"),
    ("X-GitHub-Event", "issues"),
];

fn delivery<'a>(provider: &'a str, id: &'a str, body: &'a [u8]) -> Delivery<'a> {
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

/// Deliveries arriving together may be written in one transaction (SQLite's group commit);
/// each is still answered with its own outcome, and one that fails fails only itself.
pub async fn deliveries_arriving_together_each_get_their_own_outcome(db: Db) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=60u32 {
        let s = db.store.clone();
        tasks.spawn(async move {
            // Tickets repeat (n and n + 30 share one), so half the deliveries join a job; the
            // one that fails has a ticket of its own.
            let ticket = if n == 7 {
                key("B-1")
            } else {
                key(&format!("A-{}", (n - 1) % 30 + 1))
            };
            let ev = created(&ticket);
            let job = NewJob {
                id: JobId::new(),
                ticket: &ticket,
                created: &ev,
                // Refused by the queue's CHECK: this delivery's transaction fails.
                max_attempts: if n == 7 { 0 } else { 3 },
            };
            let id = format!("d-{n}");
            let recorded = s
                .record_delivery(&delivery("github", &id, b"{}"), Some(&job), at(0))
                .await;
            (n, recorded)
        });
    }
    let mut created = 0;
    let mut joined = 0;
    for (n, recorded) in tasks.join_all().await {
        match recorded {
            Err(e) => assert_eq!(n, 7, "delivery {n} failed: {e}"),
            Ok(Recorded::Inserted {
                job: Some(Enqueued::Created(_)),
            }) => created += 1,
            Ok(Recorded::Inserted {
                job: Some(Enqueued::Existing(_)),
            }) => joined += 1,
            Ok(other) => panic!("delivery {n}: {other:?}"),
        }
    }
    assert_eq!(created + joined, 59);
    assert_eq!(created, 30, "one job per ticket");
    assert_eq!(db.store.jobs().await.unwrap().len(), 30);
    assert!(db.store.delivery("github", "d-7").await.unwrap().is_none());
    // Only a batch holding the failing delivery was written again one by one.
    let counts = db.store.ingest_counts();
    assert!(counts.retried_batches <= 1, "{counts:?}");
    assert!(db.store.delivery("github", "d-37").await.unwrap().is_some());
    assert_eq!(
        db.store
            .deliveries(None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|d| d.job.is_some())
            .count(),
        59
    );
    views_match_their_jobs(&db, 30).await;
}

/// Two nodes (two stores on one database) receiving deliveries for the same tickets at once:
/// each writes its own batches, yet every ticket gets one job, which every delivery joins.
pub async fn two_nodes_receiving_together_start_one_job_per_ticket(db: Db) {
    let other = db.reopen().await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=120u32 {
        let s = if n % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move {
            let ticket = key(&format!("A-{}", (n - 1) % 15 + 1));
            let ev = created(&ticket);
            let job = NewJob {
                id: JobId::new(),
                ticket: &ticket,
                created: &ev,
                max_attempts: 3,
            };
            let id = format!("d-{n}");
            let recorded = s
                .record_delivery(&delivery("github", &id, b"{}"), Some(&job), at(0))
                .await
                .unwrap();
            (ticket, recorded)
        });
    }
    let mut jobs: std::collections::BTreeMap<String, std::collections::BTreeSet<JobId>> =
        Default::default();
    let mut created_jobs = 0;
    for (ticket, recorded) in tasks.join_all().await {
        let job = match recorded {
            Recorded::Inserted {
                job: Some(Enqueued::Created(j)),
            } => {
                created_jobs += 1;
                j
            }
            Recorded::Inserted {
                job: Some(Enqueued::Existing(j)),
            } => j,
            other => panic!("{ticket}: {other:?}"),
        };
        jobs.entry(ticket.to_string()).or_default().insert(job);
    }
    assert_eq!(created_jobs, 15, "one job per ticket");
    assert!(jobs.values().all(|j| j.len() == 1), "{jobs:?}");
    assert_eq!(db.store.jobs().await.unwrap().len(), 15);
    let stored = db.store.deliveries(None, 200).await.unwrap();
    assert_eq!(stored.len(), 120);
    assert!(stored.iter().all(|d| d.job.is_some()));
    views_match_their_jobs(&db, 15).await;
}

/// Each new job has its view and its first stream position, written with it, exactly as a job
/// appended alone has them.
async fn views_match_their_jobs(db: &Db, jobs: usize) {
    let views = db.store.job_views(None, None).await.unwrap();
    assert_eq!(views.len(), jobs);
    let events = db.store.events_since(0, 1000).await.unwrap();
    assert_eq!(events.len(), jobs, "one stream entry per job");
    for view in &views {
        let state = view.state.as_ref().unwrap_or_else(|| panic!("{view:?}"));
        assert_eq!((view.seq, view.error.as_deref()), (0, None));
        assert_eq!(view.status, state.status());
        assert_eq!(view.ticket, state.ticket);
        let event = events.iter().find(|e| e.job == view.job).unwrap();
        assert_eq!((event.pos, event.seq), (view.pos, 0));
        assert_eq!(event.status.as_deref(), Some(view.status.as_str()));
        assert_eq!(event.prev_status, None);
        assert_eq!(event.event, created(&view.ticket));
    }
}

/// Many deliveries at once, none failing: written together (on SQLite by the batch's scripts),
/// each with the outcome it would have alone, duplicates included.
pub async fn many_deliveries_at_once_start_one_job_per_ticket(db: Db) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=90u32 {
        let s = db.store.clone();
        tasks.spawn(async move {
            let ticket = key(&format!("A-{}", (n - 1) % 20 + 1));
            let ev = created(&ticket);
            let job = NewJob {
                id: JobId::new(),
                ticket: &ticket,
                created: &ev,
                max_attempts: 3,
            };
            // Every third delivery repeats an earlier id.
            let id = format!("d-{}", if n % 3 == 0 { n - 1 } else { n });
            let recorded = s
                .record_delivery(&delivery("github", &id, b"{}"), Some(&job), at(0))
                .await
                .unwrap();
            (ticket, recorded)
        });
    }
    let mut by_ticket: std::collections::BTreeMap<String, Vec<Recorded>> = Default::default();
    for (ticket, recorded) in tasks.join_all().await {
        by_ticket
            .entry(ticket.to_string())
            .or_default()
            .push(recorded);
    }
    let mut duplicates = 0;
    for (ticket, results) in &by_ticket {
        let mut jobs = std::collections::BTreeSet::new();
        let mut created_here = 0;
        for r in results {
            match r {
                Recorded::Duplicate => duplicates += 1,
                Recorded::Inserted {
                    job: Some(Enqueued::Created(j)),
                } => {
                    created_here += 1;
                    jobs.insert(*j);
                }
                Recorded::Inserted {
                    job: Some(Enqueued::Existing(j)),
                } => {
                    jobs.insert(*j);
                }
                other => panic!("{ticket}: {other:?}"),
            }
        }
        assert_eq!(created_here, 1, "{ticket}: {results:?}");
        assert_eq!(jobs.len(), 1, "{ticket}: every delivery joined its one job");
    }
    assert_eq!(duplicates, 30);
    // Written together, not one by one after a failed batch.
    let counts = db.store.ingest_counts();
    assert_eq!(counts.retried_batches, 0, "{counts:?}");
    assert!(counts.batched_deliveries >= 45, "{counts:?}");
    assert!(counts.batches < counts.batched_deliveries, "{counts:?}");
    assert_eq!(db.store.jobs().await.unwrap().len(), 20);
    let stored = db.store.deliveries(None, 200).await.unwrap();
    assert_eq!(stored.len(), 60);
    assert!(stored.iter().all(|d| d.job.is_some()));
    views_match_their_jobs(&db, 20).await;
}

/// Outside deliveries, local ones that start no job and job-starting ones arriving together
/// are written together, each as it would be alone: an outside one waits `pending` for the
/// processor, a local one without a job is done at once, a repeated id is a duplicate.
pub async fn mixed_deliveries_at_once_are_written_together(db: Db) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=90u32 {
        let s = db.store.clone();
        tasks.spawn(async move {
            let recorded = match n % 3 {
                // Outside; every second one repeats the id of the one before it.
                0 => {
                    let id = format!("o-{}", if n % 6 == 0 { n - 3 } else { n });
                    s.accept_delivery(&delivery("jira:P", &id, b"{}"), at(0))
                        .await
                }
                1 => {
                    let ticket = key(&format!("A-{}", n % 10 + 1));
                    let ev = created(&ticket);
                    let job = NewJob {
                        id: JobId::new(),
                        ticket: &ticket,
                        created: &ev,
                        max_attempts: 3,
                    };
                    s.record_delivery(
                        &delivery("local", &format!("j-{n}"), b"{}"),
                        Some(&job),
                        at(0),
                    )
                    .await
                }
                _ => {
                    s.record_delivery(&delivery("local", &format!("n-{n}"), b"{}"), None, at(0))
                        .await
                }
            };
            (n, recorded.unwrap())
        });
    }
    let (mut outside, mut duplicates, mut created, mut joined, mut noted) = (0, 0, 0, 0, 0);
    for (n, recorded) in tasks.join_all().await {
        match (n % 3, recorded) {
            (0, Recorded::Inserted { job: None }) => outside += 1,
            (0, Recorded::Duplicate) => duplicates += 1,
            (
                1,
                Recorded::Inserted {
                    job: Some(Enqueued::Created(_)),
                },
            ) => created += 1,
            (
                1,
                Recorded::Inserted {
                    job: Some(Enqueued::Existing(_)),
                },
            ) => joined += 1,
            (2, Recorded::Inserted { job: None }) => noted += 1,
            (_, other) => panic!("delivery {n}: {other:?}"),
        }
    }
    assert_eq!((outside, duplicates), (15, 15));
    assert_eq!((created, joined, noted), (10, 20, 30));
    let counts = db.store.ingest_counts();
    assert_eq!(counts.retried_batches, 0, "{counts:?}");
    assert!(counts.batches < counts.batched_deliveries, "{counts:?}");
    // Only the outside deliveries wait for the processor, each once.
    let claimed = db
        .store
        .claim_deliveries(at(1), at(100), 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 15);
    assert!(
        claimed
            .iter()
            .all(|d| d.provider == "jira:P" && d.job.is_none())
    );
    let noted = db.store.delivery("local", "n-2").await.unwrap().unwrap();
    assert_eq!(
        (noted.state, noted.next_at, noted.job),
        (InboxState::Done, None, None)
    );
    let started = db.store.delivery("local", "j-1").await.unwrap().unwrap();
    assert!(started.job.is_some());
    views_match_their_jobs(&db, 10).await;
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
