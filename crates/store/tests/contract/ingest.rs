//! The webhook inbox under load: deliveries arriving together are written together (group
//! commit), each with the outcome it would have alone.

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use codemill_store::{Enqueued, InboxState, NewJob, Recorded, Store, StoreError};

use crate::harness::{Db, at, created, key};
use crate::inbox::delivery;

/// Record delivery `id` of `provider` that starts job `job` (with `max_attempts`) for
/// `ticket`, or joins the ticket's active job.
async fn start_job(
    s: &Store,
    (provider, id): (&str, &str),
    ticket: &str,
    (job, max_attempts): (JobId, u32),
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    let ticket = key(ticket);
    let ev = created(&ticket);
    let job = NewJob {
        id: job,
        ticket: &ticket,
        created: &ev,
        max_attempts,
    };
    s.record_delivery(&delivery(provider, id, b"{}"), Some(&job), now)
        .await
}

/// [`start_job`] with a new job id and 3 attempts.
async fn start(
    s: &Store,
    provider: &str,
    id: &str,
    ticket: &str,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    start_job(s, (provider, id), ticket, (JobId::new(), 3), now).await
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
                "B-1".to_owned()
            } else {
                format!("A-{}", (n - 1) % 30 + 1)
            };
            // Refused by the queue's CHECK: this delivery's transaction fails.
            let max_attempts = if n == 7 { 0 } else { 3 };
            let id = format!("d-{n}");
            let job = (JobId::new(), max_attempts);
            let recorded = start_job(&s, ("github", &id), &ticket, job, at(0)).await;
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
            let id = format!("d-{n}");
            let recorded = start(&s, "github", &id, &ticket.to_string(), at(0))
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

/// On PostgreSQL, a batch of deliveries waits for the ticket's job lock, as one delivery
/// does: a job another node is starting under that lock is joined, not refused by the
/// one-active-job index after the batch's statement missed it (which rolled the batch back,
/// and made a lone delivery writing at that moment fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_batch_joins_the_job_another_node_is_starting() {
    use sqlx::Connection;
    let db = Db::postgres().await;
    let lock = |ticket: &str| {
        format!(
            "SELECT pg_advisory_xact_lock(CAST({} AS INTEGER), hashtext('{ticket}'))",
            0x636d_0003
        )
    };
    let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
    // Another node starts a job for A-1 under the ticket's lock, and has not committed.
    let mut other = db.postgres_connection().await;
    let mut starting = other.begin().await.unwrap();
    let theirs = JobId::new();
    run(lock("A-1")).execute(&mut *starting).await.unwrap();
    for sql in [
        format!(
            "INSERT INTO jobs (id, ticket_key, project, created_at) VALUES ('{theirs}', 'A-1', 'A', now())"
        ),
        format!(
            "INSERT INTO queue (job_id, ticket_key, project, state, run_after, max_attempts, created_at, updated_at)
             VALUES ('{theirs}', 'A-1', 'A', 'queued', now(), 3, now(), now())"
        ),
    ] {
        run(sql).execute(&mut *starting).await.unwrap();
    }
    // A third holds Z-1's lock, so this node's first delivery (Z-1) keeps the turn while the
    // next two wait for it, and are then written as one batch.
    let mut holder = db.postgres_connection().await;
    let mut holding = holder.begin().await.unwrap();
    run(lock("Z-1")).execute(&mut *holding).await.unwrap();
    let deliver = |ticket: &'static str, id: &'static str| {
        let s = db.store.clone();
        tokio::spawn(async move { start(&s, "github", id, ticket, at(0)).await })
    };
    let mut watcher = db.postgres_connection().await;
    let first = deliver("Z-1", "d-1");
    waits_for_a_lock(&mut watcher).await;
    let joining = deliver("A-1", "d-2");
    let fresh = deliver("B-1", "d-3");
    // Nothing outside shows them waiting for the turn: give them time to get there.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    holding.commit().await.unwrap();
    assert!(matches!(
        first.await.unwrap().unwrap(),
        Recorded::Inserted {
            job: Some(Enqueued::Created(_))
        }
    ));
    // The batch is now under way and waits (for A-1's lock; without it, for the other node's
    // queue row); the other node commits its job.
    waits_for_a_lock(&mut watcher).await;
    starting.commit().await.unwrap();
    assert_eq!(
        joining.await.unwrap().unwrap(),
        Recorded::Inserted {
            job: Some(Enqueued::Existing(theirs))
        }
    );
    assert!(matches!(
        fresh.await.unwrap().unwrap(),
        Recorded::Inserted {
            job: Some(Enqueued::Created(_))
        }
    ));
    let counts = db.store.ingest_counts();
    assert_eq!(
        (counts.batches, counts.retried_batches),
        (1, 0),
        "{counts:?}"
    );
}

/// Returns once a session of this test's database waits for a lock (within 20 s).
async fn waits_for_a_lock(watcher: &mut sqlx::PgConnection) {
    for _ in 0..400 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *watcher)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no session waited for a lock within 20 s");
}

/// Each new job has its view and its first stream position, written with it, exactly as a job
/// appended alone has them.
pub(crate) async fn views_match_their_jobs(db: &Db, jobs: usize) {
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
        assert_eq!(event.event, Some(created(&view.ticket)));
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
            // Every third delivery repeats an earlier id.
            let id = format!("d-{}", if n % 3 == 0 { n - 1 } else { n });
            let recorded = start(&s, "github", &id, &ticket.to_string(), at(0))
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
                    let ticket = format!("A-{}", n % 10 + 1);
                    start(&s, "local", &format!("j-{n}"), &ticket, at(0)).await
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

/// A batch that the database refuses part-way (here two deliveries bring the same job id for
/// different tickets) is rolled back whole and written again one delivery at a time: only the
/// refused delivery fails, every other is recorded once, nothing of the failed try remains.
pub async fn a_batch_refused_by_the_database_is_written_again_one_by_one(db: Db) {
    let shared: Vec<JobId> = (0..10).map(|_| JobId::new()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..60usize {
        let s = db.store.clone();
        let id = if n < 20 { shared[n % 10] } else { JobId::new() };
        tasks.spawn(async move {
            let ticket = format!("A-{}", n + 1);
            let id_n = format!("d-{n}");
            let recorded = start_job(&s, ("local", &id_n), &ticket, (id, 3), at(0)).await;
            (n, recorded)
        });
    }
    let mut failed = 0;
    for (n, recorded) in tasks.join_all().await {
        match recorded {
            Err(_) => {
                assert!(n < 20, "delivery {n} has a job id of its own");
                failed += 1;
            }
            Ok(Recorded::Inserted {
                job: Some(Enqueued::Created(_)),
            }) => {}
            Ok(other) => panic!("delivery {n}: {other:?}"),
        }
    }
    assert_eq!(failed, 10, "one of each pair sharing a job id");
    let counts = db.store.ingest_counts();
    assert!(counts.retried_batches >= 1, "{counts:?}");
    assert_eq!(db.store.jobs().await.unwrap().len(), 50);
    assert_eq!(db.store.deliveries(None, 100).await.unwrap().len(), 50);
    views_match_their_jobs(&db, 50).await;
}

/// Deliveries at once that do not meet (each its own ticket and delivery id; on PostgreSQL
/// written many to a statement) each get the outcome they would alone: a ticket with an active
/// job joins it, a delivery id stored before is a duplicate, a ticket the local tracker lacks
/// is refused, the rest start jobs whose stream positions follow one another. Deliveries that
/// start no job (outside ones and local ones) are new or duplicates the same way.
pub async fn independent_deliveries_at_once_each_get_their_own_outcome(db: Db) {
    for n in 1..=3 {
        let id = format!("opre-{n}");
        db.store
            .accept_delivery(&delivery("jira:P", &id, b"{}"), at(0))
            .await
            .unwrap();
    }
    for n in 1..=2 {
        let id = format!("npre-{n}");
        db.store
            .record_delivery(&delivery("local", &id, b"{}"), None, at(0))
            .await
            .unwrap();
    }
    for n in 1..=10 {
        start(
            &db.store,
            "github",
            &format!("pre-{n}"),
            &format!("A-{n}"),
            at(0),
        )
        .await
        .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..53usize {
        let s = db.store.clone();
        tasks.spawn(async move {
            let recorded = if n >= 49 {
                // Local, starting no job; the last two repeat ids stored before.
                let id = if n >= 51 {
                    format!("npre-{}", n - 50)
                } else {
                    format!("n-{n}")
                };
                s.record_delivery(&delivery("local", &id, b"{}"), None, at(1))
                    .await
            } else if n >= 43 {
                // Outside; the last three repeat ids stored before.
                let id = if n >= 46 {
                    format!("opre-{}", n - 45)
                } else {
                    format!("o-{n}")
                };
                s.accept_delivery(&delivery("jira:P", &id, b"{}"), at(1))
                    .await
            } else if n >= 40 {
                // Not in the local tracker.
                let ticket = key(&format!("Z-{n}"));
                let job = NewJob {
                    id: JobId::new(),
                    ticket: &ticket,
                    created: &created(&ticket),
                    max_attempts: 3,
                };
                s.record_ticket_delivery(&delivery("local", &format!("z-{n}"), b"{}"), &job, at(1))
                    .await
            } else {
                // The last five repeat ids stored before.
                let id = if n >= 35 {
                    format!("pre-{}", n - 34)
                } else {
                    format!("d-{n}")
                };
                start(&s, "github", &id, &format!("A-{}", n + 1), at(1)).await
            };
            (n, recorded.unwrap())
        });
    }
    let (mut existing, mut started, mut duplicates, mut unknown, mut plain) = (0, 0, 0, 0, 0);
    for (n, recorded) in tasks.join_all().await {
        match recorded {
            Recorded::Inserted {
                job: Some(Enqueued::Existing(_)),
            } if n < 10 => existing += 1,
            Recorded::Inserted {
                job: Some(Enqueued::Created(_)),
            } if (10..35).contains(&n) => started += 1,
            Recorded::Duplicate if (35..40).contains(&n) => duplicates += 1,
            Recorded::UnknownTicket if (40..43).contains(&n) => unknown += 1,
            Recorded::Inserted { job: None } if matches!(n, 43..46 | 49..51) => plain += 1,
            Recorded::Duplicate if matches!(n, 46..49 | 51..53) => duplicates += 1,
            other => panic!("delivery {n}: {other:?}"),
        }
    }
    assert_eq!((existing, started, duplicates, unknown), (10, 25, 10, 3));
    assert_eq!(plain, 5);
    let counts = db.store.ingest_counts();
    assert_eq!(counts.retried_batches, 0, "{counts:?}");
    assert_eq!(db.store.deliveries(None, 100).await.unwrap().len(), 55);
    // The outside ones, new and stored before, wait for the processor; the local ones do not.
    let claimed = db
        .store
        .claim_deliveries(at(2), at(100), 100)
        .await
        .unwrap();
    let mut claimed: Vec<String> = claimed.into_iter().map(|d| d.delivery_id).collect();
    claimed.sort();
    assert_eq!(
        claimed,
        ["o-43", "o-44", "o-45", "opre-1", "opre-2", "opre-3"]
    );
    let noted = db.store.delivery("local", "n-49").await.unwrap().unwrap();
    assert_eq!(
        (noted.state, noted.next_at, noted.job),
        (InboxState::Done, None, None)
    );
    views_match_their_jobs(&db, 35).await;
    // Stream positions are taken one after another, none twice.
    let mut positions: Vec<i64> = db
        .store
        .events_since(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.pos)
        .collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 35);
    assert_eq!(positions[34] - positions[0], 34, "{positions:?}");
}
