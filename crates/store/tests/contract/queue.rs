//! The job queue: enqueue, claim, heartbeat, release, reap, cancel, requeue, limits, fencing.

use codemill_core::ids::JobId;
use codemill_store::{
    Enqueued, FenceReason, Lease, Limits, NewJob, Outcome, QueueState, StoreError,
};

use crate::harness::{BACKOFF, Db, TTL, at, claim, created, enqueue, key, secs, started, t0};

fn fenced(r: Result<impl std::fmt::Debug, StoreError>) -> FenceReason {
    match r {
        Err(StoreError::Fenced { reason, .. }) => reason,
        other => panic!("expected Fenced, got {other:?}"),
    }
}

fn retry(error: &str) -> Outcome {
    Outcome::Retry {
        error: error.into(),
        delay: None,
    }
}

pub async fn enqueue_writes_job_journal_and_queue_row_together(db: Db) {
    let s = &db.store;
    let id = enqueue(s, "A-1", 3, t0()).await;
    let jobs = s.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].id, jobs[0].project.as_str()), (id, "A"));
    let journal = s.journal(id).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].event, created(&key("A-1")));
    let q = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(q.state, QueueState::Queued);
    assert_eq!((q.attempts, q.max_attempts, q.lease_token), (0, 3, 0));
    assert_eq!(q.run_after, t0());
    assert_eq!(q.ticket, key("A-1"));
    assert!(q.lease_owner.is_none() && q.lease_until.is_none());

    // A job that cannot be attempted is refused before anything is written.
    let ev = created(&key("A-2"));
    let zero = NewJob {
        id: JobId::new(),
        ticket: &key("A-2"),
        created: &ev,
        max_attempts: 0,
    };
    assert!(matches!(
        s.enqueue(&zero, t0()).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.jobs().await.unwrap().len(), 1);
}

pub async fn one_active_job_per_ticket(db: Db) {
    let s = &db.store;
    let first = enqueue(s, "A-1", 3, t0()).await;
    let ticket = key("A-1");
    let ev = created(&ticket);
    let again = |id| NewJob {
        id,
        ticket: &ticket,
        created: &ev,
        max_attempts: 3,
    };
    // Queued, leased and waiting all hold the ticket: the second enqueue returns the first job
    // and writes nothing.
    assert_eq!(
        s.enqueue(&again(JobId::new()), at(1)).await.unwrap(),
        Enqueued::Existing(first)
    );
    let lease = claim(s, "w1", at(1)).await.unwrap();
    assert_eq!(
        s.enqueue(&again(JobId::new()), at(2)).await.unwrap(),
        Enqueued::Existing(first)
    );
    s.release(&lease, &Outcome::Waiting, at(2)).await.unwrap();
    assert_eq!(
        s.enqueue(&again(JobId::new()), at(3)).await.unwrap(),
        Enqueued::Existing(first)
    );
    assert_eq!(s.jobs().await.unwrap().len(), 1);
    // Other tickets are independent.
    enqueue(s, "A-2", 3, at(3)).await;
    // Once the job has ended, the ticket takes a new one.
    assert!(s.cancel(first, at(4)).await.unwrap());
    let second = JobId::new();
    assert_eq!(
        s.enqueue(&again(second), at(5)).await.unwrap(),
        Enqueued::Created(second)
    );
    assert_eq!(s.jobs_for_ticket(&ticket).await.unwrap().len(), 2);
    // Counted by state, as `/metrics` shows them.
    let mut counts = s.queue_counts().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(
        counts,
        [(QueueState::Cancelled, 1), (QueueState::Queued, 2)]
    );
}

pub async fn claim_takes_due_jobs_oldest_first(db: Db) {
    let s = &db.store;
    assert!(claim(s, "w", t0()).await.is_none());
    let later = enqueue(s, "A-1", 3, at(10)).await;
    let earlier = enqueue(s, "A-2", 3, at(5)).await;
    // Nothing is due before its run_after.
    assert!(claim(s, "w", at(4)).await.is_none());
    let l1 = claim(s, "w1", at(20)).await.unwrap();
    assert_eq!(l1.job, earlier);
    assert_eq!(l1.ticket, key("A-2"));
    assert_eq!(l1.project, "A");
    assert_eq!(l1.owner, "w1");
    assert_eq!((l1.token, l1.attempt, l1.max_attempts), (1, 1, 3));
    assert_eq!(l1.until, at(20 + 60));
    assert_eq!(l1.ttl, TTL);
    let l2 = claim(s, "w2", at(20)).await.unwrap();
    assert_eq!(l2.job, later);
    assert!(claim(s, "w3", at(20)).await.is_none());
    let q = s.queue_entry(earlier).await.unwrap().unwrap();
    assert_eq!(q.state, QueueState::Leased);
    assert_eq!(q.lease_owner.as_deref(), Some("w1"));
    assert_eq!(
        (q.lease_until, q.heartbeat_at),
        (Some(at(80)), Some(at(20)))
    );
    assert_eq!(
        s.queue_entries(Some(QueueState::Leased))
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn heartbeat_extends_only_a_valid_lease(db: Db) {
    let s = &db.store;
    enqueue(s, "A-1", 3, t0()).await;
    let lease = claim(s, "w", t0()).await.unwrap();
    assert_eq!(s.heartbeat(&lease, at(50)).await.unwrap(), at(110));
    let q = s.queue_entry(lease.job).await.unwrap().unwrap();
    assert_eq!(
        (q.lease_until, q.heartbeat_at),
        (Some(at(110)), Some(at(50)))
    );
    // Not yet reaped, but expired: the owner must stop.
    assert_eq!(
        fenced(s.heartbeat(&lease, at(110)).await),
        FenceReason::Expired { until: at(110) }
    );
    // A made-up token is refused too.
    let forged = Lease {
        token: 7,
        ..lease.clone()
    };
    assert_eq!(
        fenced(s.heartbeat(&forged, at(60)).await),
        FenceReason::Superseded { current: 1 }
    );
}

pub async fn release_done_waiting_and_requeue_after_approval(db: Db) {
    let s = &db.store;
    let id = enqueue(s, "A-1", 3, t0()).await;
    let lease = claim(s, "w1", t0()).await.unwrap();
    assert_eq!(
        s.release(&lease, &Outcome::Waiting, at(1)).await.unwrap(),
        QueueState::Waiting
    );
    // Waiting jobs are not claimed; releasing twice is refused.
    assert!(claim(s, "w2", at(2)).await.is_none());
    assert_eq!(
        fenced(s.release(&lease, &Outcome::Done, at(2)).await),
        FenceReason::NotLeased {
            state: QueueState::Waiting
        }
    );
    // Approval: queued again, due now; a repeated approval changes nothing.
    assert!(s.requeue(id, at(3)).await.unwrap());
    assert!(!s.requeue(id, at(3)).await.unwrap());
    let again = claim(s, "w2", at(3)).await.unwrap();
    assert_eq!((again.job, again.token, again.attempt), (id, 2, 1));
    assert_eq!(
        s.release(&again, &Outcome::Done, at(4)).await.unwrap(),
        QueueState::Done
    );
    let q = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(q.state, QueueState::Done);
    assert!(q.lease_owner.is_none() && q.lease_until.is_none());
    assert!(claim(s, "w3", at(5)).await.is_none());
}

pub async fn retries_back_off_then_dead_letter(db: Db) {
    let s = db.store.clone().with_backoff(BACKOFF);
    let id = enqueue(&s, "A-1", 3, t0()).await;
    let l1 = claim(&s, "w", t0()).await.unwrap();
    assert_eq!(
        s.release(&l1, &retry("flaky"), at(1)).await.unwrap(),
        QueueState::Queued
    );
    let q = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!((q.attempts, q.run_after), (1, at(11)));
    assert_eq!(q.last_error.as_deref(), Some("flaky"));
    assert!(claim(&s, "w", at(10)).await.is_none());
    let l2 = claim(&s, "w", at(11)).await.unwrap();
    assert_eq!((l2.token, l2.attempt), (2, 2));
    // The second failure waits twice as long.
    s.release(&l2, &retry("flaky again"), at(12)).await.unwrap();
    assert_eq!(
        s.queue_entry(id).await.unwrap().unwrap().run_after,
        at(12 + 20)
    );
    // The last attempt's failure makes it dead, with the reason.
    let l3 = claim(&s, "w", at(40)).await.unwrap();
    assert_eq!(l3.attempt, 3);
    assert_eq!(
        s.release(&l3, &retry("still broken"), at(41))
            .await
            .unwrap(),
        QueueState::Dead
    );
    let q = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!((q.state, q.attempts), (QueueState::Dead, 3));
    assert_eq!(
        q.last_error.as_deref(),
        Some("gave up after 3 attempts: still broken")
    );
    assert!(claim(&s, "w", at(1000)).await.is_none());

    // An explicit delay (e.g. a Retry-After) wins over the backoff; Dead is final at once.
    let other = enqueue(&s, "A-2", 5, t0()).await;
    let l = claim(&s, "w", at(1000)).await.unwrap();
    let outcome = Outcome::Retry {
        error: "429".into(),
        delay: Some(secs(3)),
    };
    s.release(&l, &outcome, at(1000)).await.unwrap();
    assert_eq!(
        s.queue_entry(other).await.unwrap().unwrap().run_after,
        at(1003)
    );
    let l = claim(&s, "w", at(1003)).await.unwrap();
    let dead = Outcome::Dead {
        reason: "401 from the tracker".into(),
    };
    assert_eq!(
        s.release(&l, &dead, at(1004)).await.unwrap(),
        QueueState::Dead
    );
    let q = s.queue_entry(other).await.unwrap().unwrap();
    assert_eq!(
        (q.attempts, q.last_error.as_deref()),
        (2, Some("401 from the tracker"))
    );
}

pub async fn reap_requeues_expired_leases_then_dead_letters(db: Db) {
    let s = db.store.clone().with_backoff(BACKOFF);
    let id = enqueue(&s, "A-1", 2, t0()).await;
    let live = enqueue(&s, "A-2", 2, t0()).await;
    let l1 = claim(&s, "w1", t0()).await.unwrap();
    let l2 = claim(&s, "w2", t0()).await.unwrap();
    assert_eq!((l1.job, l2.job), (id, live));
    s.heartbeat(&l2, at(50)).await.unwrap();
    assert!(s.reap(at(59)).await.unwrap().is_empty());
    // w1 went silent: its job is queued again at once (the owner is gone, nothing failed, so
    // no backoff), the attempt counted; w2 heartbeat, so it stays.
    let reaped = s.reap(at(60)).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!((reaped[0].job, reaped[0].state), (id, QueueState::Queued));
    let q = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(
        (q.state, q.attempts, q.run_after),
        (QueueState::Queued, 1, at(60))
    );
    assert!(q.lease_owner.is_none() && q.lease_until.is_none());
    assert!(q.last_error.unwrap().contains("w1"));
    assert_eq!(
        s.queue_entry(live).await.unwrap().unwrap().state,
        QueueState::Leased
    );
    let l3 = claim(&s, "w3", at(70)).await.unwrap();
    assert_eq!((l3.job, l3.token, l3.attempt), (id, 2, 2));
    s.heartbeat(&l2, at(100)).await.unwrap();
    // The second expiry hits the cap of 2 attempts: dead, with the reason.
    let reaped = s.reap(at(130)).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!((reaped[0].job, reaped[0].state), (id, QueueState::Dead));
    let q = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!((q.state, q.attempts), (QueueState::Dead, 2));
    let error = q.last_error.unwrap();
    assert!(error.starts_with("gave up after 2 attempts: "), "{error}");
    assert!(error.contains("w3"), "{error}");
    // w2's lease (extended to 160) expires last.
    let reaped = s.reap(at(160)).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!((reaped[0].job, reaped[0].state), (live, QueueState::Queued));
}

pub async fn limits_cap_leases_globally_and_per_project(db: Db) {
    let s = &db.store;
    for (i, t) in ["A-1", "A-2", "A-3", "B-1", "B-2", "C-1"]
        .iter()
        .enumerate()
    {
        enqueue(s, t, 3, at(i as i64)).await;
    }
    let limits = Limits {
        global: 4,
        per_project: 2,
    };
    let mut leases = Vec::new();
    while let Some(l) = s.claim("w", TTL, limits, at(10)).await.unwrap() {
        leases.push(l);
    }
    let projects: Vec<&str> = leases.iter().map(|l| l.project.as_str()).collect();
    // Oldest first, but never a third job of A, and never a fifth in all.
    assert_eq!(projects, ["A", "A", "B", "B"]);
    // Releasing one of A's makes room for A's third job (the oldest still queued).
    s.release(&leases[0], &Outcome::Done, at(11)).await.unwrap();
    let next = s.claim("w", TTL, limits, at(11)).await.unwrap().unwrap();
    assert_eq!(next.ticket, key("A-3"));
    assert!(s.claim("w", TTL, limits, at(11)).await.unwrap().is_none());
    // A per-project limit alone also holds.
    let one_each = Limits {
        global: 100,
        per_project: 1,
    };
    s.release(&leases[2], &Outcome::Done, at(12)).await.unwrap();
    s.release(&leases[3], &Outcome::Done, at(12)).await.unwrap();
    let c = s.claim("w", TTL, one_each, at(12)).await.unwrap().unwrap();
    assert_eq!(c.ticket, key("C-1"));
    // A still has two leased, B none queued.
    assert!(s.claim("w", TTL, one_each, at(12)).await.unwrap().is_none());
}

pub async fn cancel_fences_the_owner_off(db: Db) {
    let s = &db.store;
    let id = enqueue(s, "A-1", 3, t0()).await;
    let lease = claim(s, "w", t0()).await.unwrap();
    assert!(s.cancel(id, at(1)).await.unwrap());
    let cancelled = FenceReason::NotLeased {
        state: QueueState::Cancelled,
    };
    assert_eq!(fenced(s.heartbeat(&lease, at(2)).await), cancelled);
    assert_eq!(
        fenced(s.append_fenced(&lease, 1, &started("x"), at(2)).await),
        cancelled
    );
    assert_eq!(
        fenced(s.release(&lease, &Outcome::Done, at(2)).await),
        cancelled
    );
    assert_eq!(s.journal(id).await.unwrap().len(), 1);
    assert!(!s.cancel(id, at(3)).await.unwrap());
    assert!(claim(s, "w", at(3)).await.is_none());
    // Cancelling a queued job works too; an unknown one is an error.
    let queued = enqueue(s, "A-2", 3, t0()).await;
    assert!(s.cancel(queued, at(4)).await.unwrap());
    let unknown = JobId::new();
    assert!(matches!(
        s.cancel(unknown, at(4)).await,
        Err(StoreError::NotQueued(j)) if j == unknown
    ));
}

pub async fn requeue_rules(db: Db) {
    let s = db.store.clone().with_backoff(BACKOFF);
    // A done job stays done.
    let done = enqueue(&s, "A-1", 3, t0()).await;
    let l = claim(&s, "w", t0()).await.unwrap();
    s.release(&l, &Outcome::Done, at(1)).await.unwrap();
    assert!(matches!(
        s.requeue(done, at(2)).await,
        Err(StoreError::InvalidTransition {
            state: QueueState::Done,
            ..
        })
    ));
    // A dead job may be retried by a person, with a fresh attempt count...
    let dead = enqueue(&s, "A-2", 1, t0()).await;
    let l = claim(&s, "w", at(2)).await.unwrap();
    s.release(&l, &retry("boom"), at(2)).await.unwrap();
    assert_eq!(
        s.queue_entry(dead).await.unwrap().unwrap().state,
        QueueState::Dead
    );
    assert!(s.requeue(dead, at(3)).await.unwrap());
    let q = s.queue_entry(dead).await.unwrap().unwrap();
    assert_eq!(
        (q.state, q.attempts, q.run_after),
        (QueueState::Queued, 0, at(3))
    );
    // ...but not while its ticket has another active job.
    let l = claim(&s, "w", at(3)).await.unwrap();
    s.release(&l, &retry("boom again"), at(4)).await.unwrap();
    let newer = enqueue(&s, "A-2", 1, at(4)).await;
    match s.requeue(dead, at(5)).await {
        Err(StoreError::ActiveJob { ticket, job }) => {
            assert_eq!((ticket.as_str(), job), ("A-2", newer));
        }
        other => panic!("expected ActiveJob, got {other:?}"),
    }
    assert!(matches!(
        s.requeue(JobId::new(), at(5)).await,
        Err(StoreError::NotQueued(_))
    ));
    // Cancelled means cancelled: requeue refuses it, only a new job runs the ticket again.
    let cancelled = enqueue(&s, "A-3", 1, at(5)).await;
    assert!(s.cancel(cancelled, at(6)).await.unwrap());
    assert!(matches!(
        s.requeue(cancelled, at(7)).await,
        Err(StoreError::InvalidTransition {
            state: QueueState::Cancelled,
            ..
        })
    ));
    // A done job is reopened only on purpose (a fix round after the merge queue took its PR
    // out): queued again, due now, with a fresh attempt count.
    assert!(s.reopen(done, at(8)).await.unwrap());
    let q = s.queue_entry(done).await.unwrap().unwrap();
    assert_eq!(
        (q.state, q.attempts, q.run_after),
        (QueueState::Queued, 0, at(8))
    );
    assert!(!s.reopen(done, at(9)).await.unwrap(), "already queued");
    assert!(matches!(
        s.reopen(cancelled, at(9)).await,
        Err(StoreError::InvalidTransition { .. })
    ));
}

pub async fn stale_lease_is_fenced_after_another_owner_claims(db: Db) {
    let s = &db.store;
    let id = enqueue(s, "A-1", 3, t0()).await;
    let old = claim(s, "w1", t0()).await.unwrap();
    s.append_fenced(&old, 1, &started("a"), at(1))
        .await
        .unwrap();
    // w1 stalls past its lease; the reaper hands the job back and w2 claims it.
    s.reap(at(60)).await.unwrap();
    let new = claim(s, "w2", at(100)).await.unwrap();
    assert_eq!((new.job, new.token), (id, old.token + 1));
    let superseded = FenceReason::Superseded { current: new.token };
    assert_eq!(
        fenced(s.append_fenced(&old, 2, &started("stale"), at(101)).await),
        superseded
    );
    assert_eq!(fenced(s.heartbeat(&old, at(101)).await), superseded);
    assert_eq!(
        fenced(s.release(&old, &Outcome::Done, at(101)).await),
        superseded
    );
    match s.append_fenced(&old, 2, &started("stale"), at(101)).await {
        Err(e @ StoreError::Fenced { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("w1") && text.contains("claimed again"),
                "{text}"
            );
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    // The new owner carries on where the journal stands.
    s.append_fenced(&new, 2, &started("b"), at(102))
        .await
        .unwrap();
    let journal = s.journal(id).await.unwrap();
    let effects: Vec<_> = journal.iter().map(|e| e.event.clone()).collect();
    assert_eq!(effects[1..], [started("a"), started("b")]);
    assert_eq!(
        s.release(&new, &Outcome::Done, at(103)).await.unwrap(),
        QueueState::Done
    );
}

pub async fn expired_lease_is_fenced_before_reaping(db: Db) {
    let s = &db.store;
    let id = enqueue(s, "A-1", 3, t0()).await;
    let lease = claim(s, "w", t0()).await.unwrap();
    s.append_fenced(&lease, 1, &started("a"), at(59))
        .await
        .unwrap();
    assert_eq!(
        fenced(s.append_fenced(&lease, 2, &started("late"), at(60)).await),
        FenceReason::Expired { until: at(60) }
    );
    assert_eq!(
        fenced(s.release(&lease, &Outcome::Done, at(60)).await),
        FenceReason::Expired { until: at(60) }
    );
    assert_eq!(s.journal(id).await.unwrap().len(), 2);
    // A job without a queue row cannot be appended to with a lease.
    let plain = JobId::new();
    s.create_job(plain, &key("B-1"), &created(&key("B-1")))
        .await
        .unwrap();
    let stray = Lease {
        job: plain,
        ..lease
    };
    assert!(matches!(
        s.append_fenced(&stray, 1, &started("x"), at(1)).await,
        Err(StoreError::NotQueued(_))
    ));
}

pub async fn fenced_append_keeps_the_sequence(db: Db) {
    let s = &db.store;
    enqueue(s, "A-1", 3, t0()).await;
    let lease = claim(s, "w", t0()).await.unwrap();
    s.append_fenced(&lease, 1, &started("a"), at(1))
        .await
        .unwrap();
    assert!(matches!(
        s.append_fenced(&lease, 1, &started("a"), at(2)).await,
        Err(StoreError::Conflict { seq: 1, .. })
    ));
    // The unfenced append of the CLI path still works on queued jobs.
    s.append(lease.job, 2, &started("b")).await.unwrap();
    assert_eq!(s.journal(lease.job).await.unwrap().len(), 3);
}

pub async fn claim_job_takes_one_given_queued_job_now(db: Db) {
    let s = db.store.clone().with_backoff(BACKOFF);
    let first = enqueue(&s, "A-1", 3, t0()).await;
    let second = enqueue(&s, "A-2", 3, t0()).await;
    // A job waiting out a retry delay is still the foreground run's to take.
    let l = claim(&s, "w", t0()).await.unwrap();
    assert_eq!(l.job, first);
    s.release(&l, &retry("boom"), at(1)).await.unwrap();
    let mine = s
        .claim_job(first, "cli", TTL, at(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((mine.job, mine.token, mine.attempt), (first, 2, 2));
    // Leased (by anyone), or unknown: not claimable.
    assert!(
        s.claim_job(first, "other", TTL, at(3))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.claim_job(JobId::new(), "cli", TTL, at(3))
            .await
            .unwrap()
            .is_none()
    );
    // Waiting for a person: not claimable either.
    let l = s
        .claim_job(second, "cli", TTL, at(3))
        .await
        .unwrap()
        .unwrap();
    s.release(&l, &Outcome::Waiting, at(4)).await.unwrap();
    assert!(
        s.claim_job(second, "cli", TTL, at(5))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn decide_appends_and_requeues_in_one_step_or_not_at_all(db: Db) {
    let s = &db.store;
    let id = enqueue(s, "A-1", 3, t0()).await;
    let l = claim(s, "w", t0()).await.unwrap();
    s.append_fenced(&l, 1, &started("a"), at(1)).await.unwrap();
    // Not waiting: an approval-like decision is refused and nothing is written.
    let waiting = [QueueState::Waiting];
    match s
        .decide(id, 2, &started("x"), &waiting, "approve", at(2))
        .await
    {
        Err(StoreError::InvalidTransition { state, action, .. }) => {
            assert_eq!((state, action), (QueueState::Leased, "approve"));
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    assert_eq!(s.journal(id).await.unwrap().len(), 2);
    // A cancel-like decision on the leased job: journalled, queued again, owner fenced off.
    let active = [QueueState::Queued, QueueState::Leased, QueueState::Waiting];
    s.decide(id, 2, &started("cancel"), &active, "cancel", at(3))
        .await
        .unwrap();
    let q = s.queue_entry(id).await.unwrap().unwrap();
    assert_eq!(
        (q.state, q.run_after, q.lease_token),
        (QueueState::Queued, at(3), l.token + 1)
    );
    assert!(matches!(
        s.append_fenced(&l, 3, &started("stale"), at(4)).await,
        Err(StoreError::Fenced { .. })
    ));
    // The sequence is taken: a racing decision gets a conflict, and writes nothing.
    assert!(matches!(
        s.decide(id, 2, &started("late"), &active, "cancel", at(4))
            .await,
        Err(StoreError::Conflict { seq: 2, .. })
    ));
    assert_eq!(s.journal(id).await.unwrap().len(), 3);
    let next = claim(s, "w2", at(5)).await.unwrap();
    assert_eq!((next.job, next.token), (id, l.token + 2));
    assert!(matches!(
        s.decide(JobId::new(), 0, &started("x"), &active, "cancel", at(5))
            .await,
        Err(StoreError::NotQueued(_))
    ));
}
