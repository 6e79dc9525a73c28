//! The event stream (every journal entry in one order, read from a cursor) and the job views
//! written with each entry.

use codemill_core::ids::JobId;
use codemill_core::pipeline::{AgentStage, JobEvent, JobState};
use codemill_store::{EventRow, QueueState};

use crate::harness::{Db, at, claim, created, enqueue, key, started};

/// The view after every append is the replay of the journal up to it.
async fn view_matches_replay(db: &Db, job: JobId) {
    let s = &db.store;
    let journal = s.journal(job).await.unwrap();
    let view = s.job_view(job).await.unwrap().expect("a view");
    let replayed = JobState::replay(journal.iter().map(|e| &e.event)).unwrap();
    assert_eq!(view.state.as_ref(), Some(&replayed));
    assert_eq!(view.seq, journal.len() as i64 - 1);
    assert_eq!(view.status, replayed.status());
    assert_eq!(view.stage, replayed.stage.as_str());
    assert_eq!(view.updated_at, journal.last().unwrap().at);
    assert!(view.error.is_none());
}

pub async fn every_append_has_a_place_in_the_stream_and_updates_its_view(db: Db) {
    let s = &db.store;
    assert_eq!(s.last_event_pos().await.unwrap(), 0);
    assert!(s.events_since(0, 10).await.unwrap().is_empty());

    let a = enqueue(s, "A-1", 3, at(0)).await;
    view_matches_replay(&db, a).await;
    let b = enqueue(s, "B-1", 3, at(1)).await;
    let lease = claim(s, "w1", at(2)).await.unwrap();
    assert_eq!(lease.job, a);
    s.append_fenced(&lease, 1, &started("prepare_workspace"), at(3))
        .await
        .unwrap();
    view_matches_replay(&db, a).await;
    // A decision: journal entry and queue change in one step; the view follows.
    s.decide(
        b,
        1,
        &JobEvent::Cancelled { by: "alice".into() },
        &[QueueState::Queued],
        "cancel",
        at(4),
    )
    .await
    .unwrap();
    view_matches_replay(&db, b).await;
    assert_eq!(s.job_view(b).await.unwrap().unwrap().status, "stopping");

    let all = s.events_since(0, 100).await.unwrap();
    let order: Vec<(JobId, i64)> = all.iter().map(|e| (e.job, e.seq)).collect();
    assert_eq!(order, [(a, 0), (b, 0), (a, 1), (b, 1)]);
    let positions: Vec<i64> = all.iter().map(|e| e.pos).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(s.last_event_pos().await.unwrap(), positions[3]);
    assert_eq!(all[0].ticket, key("A-1"));
    assert_eq!(all[1].project, "B");
    assert_eq!(all[0].event, Some(created(&key("A-1"))));
    assert_eq!(all[2].at, at(3));

    // From a cursor, in pages.
    let page: Vec<(JobId, i64)> = s
        .events_since(positions[0], 2)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.job, e.seq))
        .collect();
    assert_eq!(page, [(b, 0), (a, 1)]);
    assert!(s.events_since(positions[3], 10).await.unwrap().is_empty());

    // A failed append (stale sequence) leaves no trace in the stream or the view.
    assert!(s.append(a, 1, &started("again")).await.is_err());
    assert_eq!(s.events_since(0, 100).await.unwrap().len(), 4);
    view_matches_replay(&db, a).await;

    // Views by status and ticket.
    let cancelled = s.job_views(Some("stopping"), None).await.unwrap();
    assert_eq!(cancelled.iter().map(|v| v.job).collect::<Vec<_>>(), [b]);
    let latest = s.latest_view(&key("A-1")).await.unwrap().unwrap();
    assert_eq!(latest.job, a);
    assert_eq!(s.job_views(None, None).await.unwrap().len(), 2);
    // A ticket's second job is its latest; the filters go together.
    assert!(s.cancel(b, at(5)).await.unwrap());
    let b2 = enqueue(s, "B-1", 3, at(6)).await;
    assert_eq!(s.latest_view(&key("B-1")).await.unwrap().unwrap().job, b2);
    let jobs =
        |views: Vec<codemill_store::JobView>| views.iter().map(|v| v.job).collect::<Vec<_>>();
    assert_eq!(
        jobs(s.job_views(None, Some(&key("B-1"))).await.unwrap()),
        [b, b2]
    );
    let queued = s.job_view(b2).await.unwrap().unwrap().status;
    assert_ne!(queued, "stopping");
    assert_eq!(
        jobs(s.job_views(Some(&queued), Some(&key("B-1"))).await.unwrap()),
        [b2]
    );
    assert_eq!(
        jobs(
            s.job_views(Some("stopping"), Some(&key("B-1")))
                .await
                .unwrap()
        ),
        [b]
    );
    assert!(
        s.job_views(Some("stopping"), Some(&key("A-1")))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.latest_view(&key("C-1")).await.unwrap().is_none());

    // The board's cards: each ticket's latest job, with its ticket's title, and round and cost
    // as its state has them (a readiness run that cost $0.25 for C-1).
    s.create_ticket(&"B".parse().unwrap(), "Say hello", "", &[])
        .await
        .unwrap();
    let c = enqueue(s, "C-1", 3, at(7)).await;
    s.append(c, 1, &ready_run(0.25)).await.unwrap();
    let c_view = s.job_view(c).await.unwrap().unwrap();
    assert_eq!(c_view.state.as_ref().unwrap().cost_usd, 0.25);
    let mut cards = s.job_cards().await.unwrap();
    cards.sort_by_key(|c| c.ticket.to_string());
    let seen: Vec<(JobId, &str, u32, f64)> = cards
        .iter()
        .map(|c| (c.job, c.title.as_str(), c.round, c.cost_usd))
        .collect();
    assert_eq!(
        seen,
        [(a, "", 0, 0.0), (b2, "Say hello", 0, 0.0), (c, "", 0, 0.25)]
    );
    assert_eq!(
        (
            &cards[2].status,
            &cards[2].stage,
            cards[2].created_at,
            cards[2].updated_at
        ),
        (
            &c_view.status,
            &c_view.stage,
            c_view.created_at,
            c_view.updated_at
        )
    );
    assert_eq!(cards[1].project, "B");
    // The same latest jobs as whole views, states included.
    let mut latest = s.latest_views().await.unwrap();
    latest.sort_by_key(|v| v.ticket.to_string());
    assert_eq!(
        latest.iter().map(|v| v.job).collect::<Vec<_>>(),
        cards.iter().map(|c| c.job).collect::<Vec<_>>()
    );
    assert_eq!(latest[2], c_view);
}

/// A readiness agent's run that found the ticket ready, costing `cost_usd`.
fn ready_run(cost_usd: f64) -> JobEvent {
    agent_run(AgentStage::Readiness, cost_usd, 0)
}

/// An agent's successful run in `stage` (a readiness run finds the ticket ready), costing
/// `cost_usd` and `tokens` input tokens.
fn agent_run(stage: AgentStage, cost_usd: f64, tokens: u64) -> JobEvent {
    use codemill_core::agent::AgentOutcome;
    use codemill_core::pipeline::{Readiness, StageRun};
    JobEvent::AgentFinished {
        stage,
        round: 0,
        run: StageRun {
            agent: "builtin".into(),
            model: "m".into(),
            outcome: AgentOutcome::Success,
            session_id: None,
            usage: codemill_core::cost::Usage {
                input_tokens: tokens,
                ..Default::default()
            },
            cost_usd,
            turns: 1,
            duration_ms: 1,
            artifact: None,
            angle: None,
            findings: None,
            decisions: None,
            readiness: (stage == AgentStage::Readiness).then(|| Readiness {
                ready: true,
                questions: vec![],
            }),
            parse_error: None,
            repaired: false,
            changed: None,
            summary: String::new(),
            subtasks: None,
            spec: None,
        },
    }
}

/// An entry that does not replay (the journal is the record; the view only reads it) is kept,
/// and the view says why it cannot be read from then on.
pub async fn a_journal_that_stops_replaying_makes_an_unreadable_view(db: Db) {
    let s = &db.store;
    let ticket = key("A-1");
    let job = JobId::new();
    s.create_job(job, &ticket, &created(&ticket)).await.unwrap();
    s.append(job, 1, &created(&ticket)).await.unwrap();
    s.append(job, 2, &started("x")).await.unwrap();
    let view = s.job_view(job).await.unwrap().unwrap();
    assert_eq!((view.status.as_str(), view.seq), ("unreadable", 2));
    assert!(view.state.is_none());
    assert!(
        view.error
            .as_deref()
            .unwrap()
            .starts_with("entry 1 (created)"),
        "{view:?}"
    );
    assert_eq!(s.events_since(0, 10).await.unwrap().len(), 3);
}

/// An entry this build cannot read (here: a kind of event from a newer codemill, written
/// behind the store's back) keeps its place in the stream, marked unreadable, and the entries
/// after it are read as before: a follower is never stuck at it.
pub async fn an_entry_this_version_cannot_read_keeps_its_place_in_the_stream(db: Db) {
    let s = &db.store;
    let a = enqueue(s, "A-1", 3, at(0)).await;
    let (journal, stream) = if db.is_postgres() {
        (
            "INSERT INTO journal (job_id, seq, kind, event, created_at) \
             SELECT job_id, 1, 'merge_train_joined', '{\"type\":\"merge_train_joined\",\"train\":7}'::jsonb, created_at \
             FROM journal WHERE seq = 0 AND job_id = (SELECT id FROM jobs WHERE ticket_key = 'A-1')",
            "WITH c AS (UPDATE event_counter SET pos = pos + 1 RETURNING pos) \
             INSERT INTO event_log (pos, job_id, seq, prev_status, status) \
             SELECT c.pos, j.id, 1, 'queued', 'queued' FROM c, jobs j WHERE j.ticket_key = 'A-1'",
        )
    } else {
        (
            "INSERT INTO journal (job_id, seq, kind, event, created_at) \
             SELECT job_id, 1, 'merge_train_joined', '{\"type\":\"merge_train_joined\",\"train\":7}', created_at \
             FROM journal WHERE seq = 0 AND job_id = (SELECT id FROM jobs WHERE ticket_key = 'A-1')",
            "INSERT INTO event_log (job_id, seq, prev_status, status) \
             SELECT id, 1, 'queued', 'queued' FROM jobs WHERE ticket_key = 'A-1'",
        )
    };
    assert_eq!(db.raw(journal).await, Ok(1));
    assert_eq!(db.raw(stream).await, Ok(1));
    let b = enqueue(s, "B-1", 3, at(2)).await;

    let all = s.events_since(0, 100).await.unwrap();
    let order: Vec<(JobId, i64)> = all.iter().map(|e| (e.job, e.seq)).collect();
    assert_eq!(order, [(a, 0), (a, 1), (b, 0)]);
    assert_eq!(all[1].event, None);
    let why = all[1].unreadable.as_deref().unwrap();
    assert!(
        why.starts_with(&format!("entry 1 of job {a}: ")) && why.contains("merge_train_joined"),
        "{why}"
    );
    assert_eq!(all[1].status.as_deref(), Some("queued"));
    assert_eq!(all[2].event, Some(created(&key("B-1"))));
    assert!(
        all.iter()
            .filter(|e| e.event.is_some())
            .all(|e| e.unreadable.is_none())
    );
    // From a cursor just before it, and past it.
    assert_eq!(s.events_since(all[0].pos, 1).await.unwrap()[0].seq, 1);
    assert_eq!(s.events_since(all[1].pos, 10).await.unwrap()[0].job, b);
}

/// Writers appending at the same time as a follower reads: the follower, resuming from the last
/// position it read, sees every entry exactly once. (With positions handed out before commit, a
/// slow transaction would commit a position the follower had already passed.)
pub async fn a_follower_misses_nothing_while_many_write(db: Db) {
    const WRITERS: usize = 8;
    const APPENDS: i64 = 25;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = {
        let s = db.store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen: Vec<EventRow> = Vec::new();
            let mut cursor = 0;
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let page = s.events_since(cursor, 7).await.unwrap();
                if let Some(last) = page.last() {
                    cursor = last.pos;
                }
                let empty = page.is_empty();
                seen.extend(page);
                if done && empty {
                    return seen;
                }
            }
        })
    };
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let s = db.store.clone();
        writers.spawn(async move {
            let ticket = key(&format!("W{w}-1"));
            let job = JobId::new();
            s.create_job(job, &ticket, &created(&ticket)).await.unwrap();
            for seq in 1..=APPENDS {
                s.append(job, seq, &started(&format!("step-{seq}")))
                    .await
                    .unwrap();
            }
            job
        });
    }
    let jobs = writers.join_all().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = follower.await.unwrap();
    let total = WRITERS * (APPENDS as usize + 1);
    assert_eq!(seen.len(), total, "the follower saw every entry once");
    assert!(seen.windows(2).all(|w| w[0].pos < w[1].pos));
    for job in jobs {
        let mine: Vec<i64> = seen
            .iter()
            .filter(|e| e.job == job)
            .map(|e| e.seq)
            .collect();
        assert_eq!(mine, (0..=APPENDS).collect::<Vec<_>>(), "in journal order");
        assert_eq!(db.store.job_view(job).await.unwrap().unwrap().seq, APPENDS);
    }
}

/// Agent activity: written in batches per step, read per job from a cursor, long texts clipped,
/// pruned by age.
pub async fn agent_activity_is_read_from_a_cursor_and_pruned(db: Db) {
    use codemill_core::agent::AgentEvent;
    use codemill_store::ActivityStep;
    let s = &db.store;
    let (a, b) = (JobId::new(), JobId::new());
    let step = |job, stage| ActivityStep {
        job,
        stage,
        round: 1,
        angle: Some("security"),
    };
    let call = |n: u32| AgentEvent::ToolCall {
        id: format!("t{n}"),
        name: "run_command".into(),
        summary: format!("make test #{n}"),
    };
    s.record_activity(&step(a, "implement"), &[(at(0), call(1)), (at(1), call(2))])
        .await
        .unwrap();
    s.record_activity(&step(b, "review"), &[(at(1), call(9))])
        .await
        .unwrap();
    s.record_activity(
        &step(a, "implement"),
        &[(
            at(2),
            AgentEvent::Text {
                text: "x".repeat(10_000),
            },
        )],
    )
    .await
    .unwrap();
    s.record_activity(&step(a, "implement"), &[]).await.unwrap();

    let all = s.activity_since(a, 0, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].event, call(1));
    assert_eq!((all[0].stage.as_str(), all[0].round), ("implement", 1));
    assert_eq!(all[0].angle.as_deref(), Some("security"));
    assert_eq!(all[0].at, at(0));
    let AgentEvent::Text { text } = &all[2].event else {
        panic!("{:?}", all[2]);
    };
    assert_eq!(text.chars().count(), 4001, "clipped, with an ellipsis");
    let after = s.activity_since(a, all[0].id, 100).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(s.activity_since(a, 0, 1).await.unwrap().len(), 1);
    assert_eq!(s.activity_since(b, 0, 100).await.unwrap().len(), 1);

    assert_eq!(s.prune_activity(at(1)).await.unwrap(), 1);
    assert_eq!(s.activity_since(a, 0, 100).await.unwrap().len(), 2);
}

/// A job that went from readiness to research, costing `ready` and then `research`.
async fn researched(s: &codemill_store::Store, ticket: &str, ready: f64, research: f64) -> JobId {
    let job = enqueue(s, ticket, 3, at(0)).await;
    let events = [
        agent_run(AgentStage::Readiness, ready, 100),
        JobEvent::TicketUpdated { marker: "m".into() },
        JobEvent::WorkspaceReady {
            worktree: "/w".into(),
            branch: key(ticket).branch(),
            base_commit: "base".into(),
            default_branch: "main".into(),
        },
        agent_run(AgentStage::Research, research, 1000),
    ];
    for (seq, e) in events.iter().enumerate() {
        s.append(job, seq as i64 + 1, e).await.unwrap();
    }
    job
}

/// What the costs page sums (per stage, and the tickets that cost the most) is what the job
/// states say, read without parsing them; the migration that brought `job_costs` fills it in
/// from the states already written.
pub async fn what_jobs_cost_is_summed_per_stage_and_per_ticket(db: Db) {
    let s = &db.store;
    assert!(s.stage_spend().await.unwrap().is_empty());
    assert!(s.top_ticket_spend(10).await.unwrap().is_empty());
    s.create_ticket(&"A".parse().unwrap(), "Cheap one", "", &[])
        .await
        .unwrap();
    researched(s, "A-1", 0.25, 1.0).await;
    let b = researched(s, "B-1", 0.5, 2.0).await;
    // A second job of B-1 that only got through readiness.
    assert!(s.cancel(b, at(8)).await.unwrap());
    let b2 = enqueue(s, "B-1", 3, at(9)).await;
    s.append(b2, 1, &agent_run(AgentStage::Readiness, 0.125, 100))
        .await
        .unwrap();
    // An entry that adds no cost adds no row.
    s.append(b2, 2, &JobEvent::TicketUpdated { marker: "m".into() })
        .await
        .unwrap();
    let stages = |spend: Vec<codemill_store::StageSpend>| {
        spend
            .into_iter()
            .map(|s| (s.stage, s.tokens, s.cost_usd))
            .collect::<Vec<_>>()
    };
    let expected = vec![
        ("readiness".to_string(), 300, 0.875),
        ("research".to_string(), 2000, 3.0),
    ];
    assert_eq!(stages(s.stage_spend().await.unwrap()), expected);
    // The same sums as the states hold.
    let mut from_states = std::collections::BTreeMap::<String, (u64, f64)>::new();
    for v in s.job_views(None, None).await.unwrap() {
        for c in v.state.unwrap().costs {
            let e = from_states.entry(c.stage.as_str().to_string()).or_default();
            e.0 += c.usage.total();
            e.1 += c.cost_usd;
        }
    }
    assert_eq!(
        from_states
            .into_iter()
            .map(|(stage, (tokens, usd))| (stage, tokens, usd))
            .collect::<Vec<_>>(),
        expected
    );
    let top: Vec<(String, String, String, u64, f64)> = s
        .top_ticket_spend(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.ticket.to_string(), t.project, t.title, t.jobs, t.cost_usd))
        .collect();
    assert_eq!(
        top,
        [
            ("B-1".into(), "B".into(), String::new(), 2, 2.625),
            ("A-1".into(), "A".into(), "Cheap one".into(), 1, 1.25),
        ]
    );
    assert_eq!(s.top_ticket_spend(1).await.unwrap().len(), 1);

    // Written again from the states by the migration's own statement, the sums are the same.
    let migration = if db.is_postgres() {
        include_str!("../../migrations/postgres/0018_status_index_and_job_costs.sql")
    } else {
        include_str!("../../migrations/sqlite/0019_status_index_and_job_costs.sql")
    };
    let backfill = &migration[migration.find("INSERT INTO job_costs").unwrap()..];
    assert_eq!(db.raw("DELETE FROM job_costs").await, Ok(5));
    assert!(s.stage_spend().await.unwrap().is_empty());
    assert_eq!(db.raw(backfill).await, Ok(5));
    assert_eq!(stages(s.stage_spend().await.unwrap()), expected);
}
