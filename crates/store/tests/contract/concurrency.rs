//! Many workers at once: every job claimed exactly once, limits held, one job per ticket.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use codemill_core::ids::JobId;
use codemill_store::{Enqueued, Limits, NewJob, Outcome, QueueState};
use tokio::sync::Mutex;

use crate::harness::{Db, TTL, at, created, enqueue, key};

const CLAIMERS: usize = 8;

pub async fn concurrent_claimers_take_each_job_exactly_once(db: Db) {
    const JOBS: usize = 200;
    let s = &db.store;
    let mut all = HashSet::new();
    for i in 0..JOBS {
        all.insert(enqueue(s, &format!("P{}-{}", i % 4, i + 1), 3, at(0)).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CLAIMERS {
        let s = s.clone();
        tasks.spawn(async move {
            let owner = format!("w{w}");
            let mut mine = Vec::new();
            // Every job is queued before the claimers start, so None means none is left.
            while let Some(lease) = s
                .claim(&owner, TTL, Limits::UNLIMITED, at(1))
                .await
                .unwrap()
            {
                assert_eq!(lease.token, 1, "job {} claimed twice", lease.job);
                s.release(&lease, &Outcome::Done, at(2)).await.unwrap();
                mine.push(lease.job);
            }
            mine
        });
    }
    let per_worker = tasks.join_all().await;
    let claimed: Vec<JobId> = per_worker.iter().flatten().copied().collect();
    let unique: HashSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), JOBS, "claims: {claimed:?}");
    assert_eq!(unique, all);
    assert_eq!(
        s.queue_entries(Some(QueueState::Done)).await.unwrap().len(),
        JOBS
    );
    // Several workers got work: the claims really were concurrent.
    assert!(per_worker.iter().filter(|m| !m.is_empty()).count() > 1);
}

pub async fn concurrent_claimers_respect_limits(db: Db) {
    const JOBS: usize = 60;
    let limits = Limits {
        global: 4,
        per_project: 2,
    };
    let s = &db.store;
    for i in 0..JOBS {
        enqueue(s, &format!("P{}-{}", i % 3, i + 1), 3, at(0)).await;
    }
    let done = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(Mutex::new((0usize, HashMap::<String, usize>::new())));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CLAIMERS {
        let (s, done, max_seen) = (s.clone(), done.clone(), max_seen.clone());
        tasks.spawn(async move {
            let owner = format!("w{w}");
            while done.load(Ordering::SeqCst) < JOBS {
                let Some(lease) = s.claim(&owner, TTL, limits, at(1)).await.unwrap() else {
                    // At a limit, or nothing left: try again shortly.
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    continue;
                };
                // What the database holds right now can never exceed the limits.
                let leased = s.queue_entries(Some(QueueState::Leased)).await.unwrap();
                let mut per_project = HashMap::<String, usize>::new();
                for e in &leased {
                    *per_project.entry(e.project.clone()).or_default() += 1;
                }
                {
                    let mut m = max_seen.lock().await;
                    m.0 = m.0.max(leased.len());
                    for (p, n) in per_project {
                        let seen = m.1.entry(p).or_default();
                        *seen = (*seen).max(n);
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                s.release(&lease, &Outcome::Done, at(2)).await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    tasks.join_all().await;
    let (global, per_project) = &*max_seen.lock().await;
    assert!(*global <= limits.global, "{global} leased at once");
    assert!(*global >= 2, "claims never overlapped: {global}");
    for (p, n) in per_project {
        assert!(*n <= limits.per_project, "{n} leased at once in {p}");
    }
    assert_eq!(
        s.queue_entries(Some(QueueState::Done)).await.unwrap().len(),
        JOBS
    );
}

pub async fn concurrent_enqueues_make_one_job_per_ticket(db: Db) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
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
            s.enqueue(&job, at(0)).await.unwrap()
        });
    }
    let results = tasks.join_all().await;
    let created: Vec<JobId> = results
        .iter()
        .filter_map(|e| match e {
            Enqueued::Created(id) => Some(*id),
            Enqueued::Existing(_) => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    assert!(results.iter().all(|e| e.job() == created[0]));
    assert_eq!(db.store.jobs().await.unwrap().len(), 1);
    assert_eq!(db.store.queue_entries(None).await.unwrap().len(), 1);
}
