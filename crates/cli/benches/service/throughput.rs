//! Measurements 1 and 4: wall time until T jobs await approval with `serve --role web` and N
//! worker processes, each in a home of its own, on one PostgreSQL database, checked that no job
//! ran twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use codemill_core::pipeline::{AgentStage, JobEvent};
use codemill_store::QueueState;
use codemill_testkit::ModelServer;

use crate::POLL;
use crate::fixtures::{make_remote, script, scripted_agent};
use crate::home::{Proc, Svc, create_tickets, log_file, start_serve};
use crate::load::{client, load, webhooks};
use crate::pg::PgDb;
use crate::settings::{Settings, err, log_issues, pct, tail};
pub(crate) struct RunResult {
    pub(crate) workers: usize,
    pub(crate) tickets: usize,
    pub(crate) wall: Duration,
    /// First `created` to last `proposed`, from the journals.
    pub(crate) journal_span: f64,
    /// Per job: first effect started -> proposed (the pipeline without queue wait), ms.
    pub(crate) service_ms: Vec<f64>,
    /// Jobs each worker reported as awaiting approval (from its log).
    pub(crate) per_worker: Vec<usize>,
    pub(crate) checks: Vec<String>,
    pub(crate) stops: Vec<String>,
}

impl RunResult {
    pub(crate) fn per_hour(&self) -> f64 {
        self.tickets as f64 * 3600.0 / self.wall.as_secs_f64().max(1e-9)
    }
}

pub(crate) fn queue_histogram(
    entries: &[codemill_store::QueueEntry],
) -> BTreeMap<&'static str, usize> {
    let mut by = BTreeMap::new();
    for e in entries {
        *by.entry(e.state.as_str()).or_default() += 1;
    }
    by
}

pub(crate) fn fmt_histogram(by: &BTreeMap<&'static str, usize>) -> String {
    let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

pub(crate) async fn throughput_run(
    s: &Settings,
    bin: &Path,
    admin: &str,
    workers: usize,
) -> Result<RunResult, String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let remote = make_remote(&root);
    let server = ModelServer::start(script(false)).await.unwrap();
    let db = PgDb::create(admin, &format!("tput{workers}w"))?;
    let svc = Svc::new(
        bin,
        &root.join("home"),
        &remote,
        &scripted_agent(&server.base_url(), 30, 120),
        Some(&db),
    );
    let store = svc.store().await?;
    let keys = create_tickets(&store, s.tickets).await?;
    let (mut web, base) = start_serve(&svc, &root.join("web.log"), &["--role", "web"]).await?;
    let mut procs = Vec::new();
    for w in 1..=workers {
        let log = root.join(format!("worker{w}.log"));
        let owner = format!("w{w}");
        // Each worker has a home of its own, as on separate machines: nothing shared but the
        // database and the project's remote.
        let own = Svc::new(
            bin,
            &root.join(format!("worker{w}-home")),
            &remote,
            &scripted_agent(&server.base_url(), 30, 120),
            Some(&db),
        );
        let mut c = own.command(&[
            "worker",
            "--owner",
            &owner,
            "--concurrency",
            "1",
            "--poll-ms",
            "100",
            "--retry-secs",
            "1",
        ]);
        c.stdout(Stdio::null()).stderr(log_file(&log));
        let child = c.spawn().map_err(err("spawning codemill worker"))?;
        procs.push(Proc {
            name: format!("worker {owner}"),
            child,
            log,
        });
    }
    // Let the workers connect and start polling (the same pause for every run).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for p in &mut procs {
        if let Some(status) = p.exited() {
            return Err(format!(
                "{} exited at start ({status})\n{}",
                p.name,
                tail(&p.log, 20)
            ));
        }
    }

    let n = keys.len();
    let started = Instant::now();
    let ingest = load(
        &client(s.concurrency),
        webhooks(&base, &keys, &format!("tput{workers}")),
        s.concurrency,
        Duration::from_secs(120),
    )
    .await;
    println!(
        "    enqueue: {n} webhooks in {:.2} s ({:.0} req/s, p50 {:.1} ms, p99 {:.1} ms): {}",
        ingest.wall.as_secs_f64(),
        ingest.rps(),
        pct(&ingest.lat_ms, 50.0),
        pct(&ingest.lat_ms, 99.0),
        ingest.outcomes()
    );
    if ingest.count("202 job created") != n {
        return Err(format!(
            "enqueueing through the web node: {}",
            ingest.outcomes()
        ));
    }

    let deadline = started + s.run_deadline;
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    let mut last_report = Instant::now();
    let failure = loop {
        let entries = store
            .queue_entries(None)
            .await
            .map_err(err("reading the queue"))?;
        let by = queue_histogram(&entries);
        let settled = by.get("waiting").copied().unwrap_or(0)
            + by.get("dead").copied().unwrap_or(0)
            + by.get("done").copied().unwrap_or(0)
            + by.get("cancelled").copied().unwrap_or(0);
        if settled >= n {
            break None;
        }
        if settled > last_count {
            last_count = settled;
            last_progress = Instant::now();
        }
        let mut dead_proc = None;
        for p in &mut procs {
            if let Some(status) = p.exited() {
                dead_proc = Some(format!(
                    "{} exited ({status})\n{}",
                    p.name,
                    tail(&p.log, 20)
                ));
            }
        }
        if let Some(d) = dead_proc {
            break Some(format!("{d}\n    queue: {}", fmt_histogram(&by)));
        }
        if last_progress.elapsed() > s.stall {
            let errors: Vec<String> = entries
                .iter()
                .filter_map(|e| e.last_error.as_ref().map(|m| format!("{}: {m}", e.ticket)))
                .take(5)
                .collect();
            break Some(format!(
                "queue stuck: no job settled for {:.0} s; queue: {}; last errors: {errors:?}",
                s.stall.as_secs_f64(),
                fmt_histogram(&by)
            ));
        }
        if Instant::now() > deadline {
            break Some(format!(
                "deadline of {:.0} s passed; queue: {}",
                s.run_deadline.as_secs_f64(),
                fmt_histogram(&by)
            ));
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            println!(
                "    [{:>4.0} s] {settled}/{n} settled; queue: {}",
                started.elapsed().as_secs_f64(),
                fmt_histogram(&by)
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    };
    let wall = started.elapsed();

    let mut stops = Vec::new();
    for p in &mut procs {
        stops.push(p.stop(Duration::from_secs(15)).await);
    }
    stops.push(web.stop(Duration::from_secs(15)).await);
    if let Some(f) = failure {
        let logs: Vec<String> = procs.iter().map(|p| tail(&p.log, 15)).collect();
        return Err(format!("{f}\n{}", logs.join("\n")));
    }

    // Verification: every job once, exactly one proposal, one implement, at most one commit.
    let mut checks = Vec::new();
    let jobs = store.jobs().await.map_err(err("listing jobs"))?;
    let mut per_ticket: BTreeMap<String, usize> = BTreeMap::new();
    let mut service_ms = Vec::new();
    let (mut first_created, mut last_proposed): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        (None, None);
    let mut bad = Vec::new();
    let mut restarted = 0;
    let mut retried = 0;
    for job in &jobs {
        *per_ticket.entry(job.ticket.to_string()).or_default() += 1;
        let journal = store
            .journal(job.id)
            .await
            .map_err(err("reading a journal"))?;
        let count = |name: &str| journal.iter().filter(|e| e.event.name() == name).count();
        let implements = journal
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    JobEvent::AgentFinished {
                        stage: AgentStage::Implement,
                        round: 0,
                        ..
                    }
                )
            })
            .count();
        let implement_starts = journal
            .iter()
            .filter(|e| matches!(&e.event, JobEvent::EffectStarted { effect } if effect == "agent:implement:0"))
            .count();
        let (proposed, committed, failed) = (
            count("proposed"),
            count("committed"),
            count("effect_failed"),
        );
        if proposed != 1 || implements != 1 || committed > 1 || failed > 0 {
            bad.push(format!(
                "{}: proposed {proposed}, agent:implement:0 finished {implements}, committed {committed}, effect_failed {failed}",
                job.ticket
            ));
        }
        if implement_starts > 1 {
            restarted += 1;
        }
        if let Some(q) = store
            .queue_entry(job.id)
            .await
            .map_err(err("queue entry"))?
        {
            if q.attempts > 0 {
                retried += 1;
            }
            if q.state != QueueState::Waiting {
                bad.push(format!("{}: queue state {}", job.ticket, q.state.as_str()));
            }
        }
        let created = journal.first().map(|e| e.at);
        let first_effect = journal
            .iter()
            .find(|e| matches!(e.event, JobEvent::EffectStarted { .. }))
            .map(|e| e.at);
        let proposed_at = journal
            .iter()
            .find(|e| e.event.name() == "proposed")
            .map(|e| e.at);
        if let (Some(a), Some(b)) = (first_effect, proposed_at) {
            service_ms.push((b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
        if let Some(c) = created {
            first_created = Some(first_created.map_or(c, |f| f.min(c)));
        }
        last_proposed = last_proposed.max(proposed_at);
    }
    let twice: Vec<&String> = per_ticket
        .iter()
        .filter(|(_, c)| **c != 1)
        .map(|(k, _)| k)
        .collect();
    let writes = server.hits("implement: write");
    let unmatched = server.unmatched().len();
    checks.push(format!(
        "jobs {} for {} tickets (tickets with != 1 job: {}); implement write calls to the model: {writes}; unmatched model requests: {unmatched}",
        jobs.len(),
        n,
        twice.len()
    ));
    checks.push(format!(
        "per job: exactly one proposed, one agent:implement:0 completion, <= 1 committed, no effect_failed, queue state waiting: {}",
        if bad.is_empty() {
            "all OK".to_string()
        } else {
            format!("{} VIOLATIONS: {:?}", bad.len(), &bad[..bad.len().min(10)])
        }
    ));
    checks.push(format!(
        "jobs whose agent:implement:0 was started more than once: {restarted}; jobs retried by the queue: {retried}"
    ));
    let mut logs: Vec<&Path> = procs.iter().map(|p| p.log.as_path()).collect();
    logs.push(&web.log);
    let (issues, examples) = log_issues(&logs);
    checks.push(format!(
        "warnings, errors, retries or fencing in the web node's and workers' logs: {issues}{examples}"
    ));
    let ok = bad.is_empty()
        && twice.is_empty()
        && jobs.len() == n
        && writes == n
        && unmatched == 0
        && issues == 0;
    let journal_span = match (first_created, last_proposed) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    let per_worker = procs
        .iter()
        .map(|p| {
            std::fs::read_to_string(&p.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(" (job ") && l.ends_with("): awaiting_approval"))
                .count()
        })
        .collect();
    store.close().await;
    drop(procs);
    drop(web);
    server.shutdown().await;
    drop(db);
    let result = RunResult {
        workers,
        tickets: n,
        wall,
        journal_span,
        service_ms,
        per_worker,
        checks,
        stops,
    };
    if ok {
        Ok(result)
    } else {
        Err(format!(
            "verification failed:\n    {}",
            result.checks.join("\n    ")
        ))
    }
}
