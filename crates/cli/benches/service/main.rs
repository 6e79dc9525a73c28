//! Hand-run benchmark of the codemill service: queue throughput, webhook ingest, memory.
//!
//! Run with `eval "$(./scripts/test postgres)"; cargo bench -p codemill --bench service`
//! (`BENCH_QUICK=1` for a small smoke version). It drives the real binary (the
//! `target/release/codemill` cargo builds for the bench; `BENCH_CODEMILL_BIN` overrides it)
//! against the scripted model server on 127.0.0.1, with a small repository whose only gate is
//! `true`. Every figure comes with a baseline measured in the same run:
//!
//! 1. throughput: `serve --role web` plus N `worker` processes, each in its own home, on one
//!    fresh PostgreSQL database; T tickets enqueued through signed webhooks, an instant
//!    scripted agent; wall
//!    time until all T jobs await approval, with 1 and with 2 workers (ratio 2w/1w), and a
//!    check that no job ran twice;
//! 2. webhook ingest: signed `ticket.ready` deliveries (one ticket each, so each creates a job)
//!    posted with bounded concurrency to `serve --role web` on SQLite and on PostgreSQL;
//!    requests/s and latency, against `GET /health` under the same load;
//! 3. memory: VmRSS of `serve` (role all, one worker loop per job) while M jobs sit in
//!    implement at once (the scripted model never answers implement; the agent's idle limit is
//!    far above the sampling window), against its idle RSS before anything was enqueued;
//! 4. tickets per hour through the whole pipeline for one worker process (from 1), against the
//!    rate one ticket's own pipeline time would allow.
//!
//! Sizes (`BENCH_QUICK=1` in brackets): `BENCH_TICKETS` 200 [20], `BENCH_WORKERS` "1,2",
//! `BENCH_DELIVERIES` 2000 [200], `BENCH_CONCURRENCY` 32, `BENCH_MEM_JOBS` 50 [10],
//! `BENCH_MEM_WINDOW_SECS` 20 [5], `BENCH_RUN_DEADLINE_SECS` 1200 [300] per throughput run,
//! `BENCH_STALL_SECS` 120 (no job finished for this long: the queue is reported stuck).
//! The load generator and the model server run in this process, on the same cores as the
//! service: on a small machine the figures are a floor, not the service's ceiling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod fixtures;
mod home;
mod ingest;
mod load;
mod memory;
mod pg;
mod settings;
mod throughput;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use ingest::ingest_run;
use memory::{memory_run, mib};
use pg::psql;
use settings::{Settings, loadavg, median, pct};
use throughput::{RunResult, throughput_run};

const PROJECT: &str = "BENCH";
/// The scripted model's API key variable (any value; the model server does not check it).
const KEY_VAR: &str = "CODEMILL_BENCH_MODEL_KEY";
/// The variable `store.postgres_url_env` names in the bench homes.
const PG_VAR: &str = "CODEMILL_BENCH_PG_URL";
/// The variable holding the webhook secret of provider `local`.
const SECRET_VAR: &str = "CODEMILL_BENCH_HOOK_SECRET";
const SECRET: &str = "bench-webhook-secret";
/// The server of `./scripts/test postgres`; each run gets a fresh database on it.
const ADMIN_URL_VAR: &str = "CODEMILL_TEST_POSTGRES_URL";
const POLL: Duration = Duration::from_millis(200);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

fn binary() -> PathBuf {
    std::env::var_os("BENCH_CODEMILL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_codemill")))
}

async fn bench() {
    let s = Settings::from_env();
    let bin = binary();
    let modified = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map(|t| {
            DateTime::<Utc>::from(t)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|e| panic!("codemill binary {}: {e}", bin.display()));
    let admin = std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{ADMIN_URL_VAR} is not set: start the project's PostgreSQL with \
             `eval \"$(./scripts/test postgres)\"` and run the bench again"
        )
    });
    let pg_version = psql(&admin, "SHOW server_version")
        .unwrap_or_else(|e| panic!("the PostgreSQL server of {ADMIN_URL_VAR}: {e}"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let bench_started = Instant::now();
    println!(
        "codemill service bench{}: {cores} cores, load average {}, PostgreSQL {pg_version} on 127.0.0.1",
        if s.quick {
            " (BENCH_QUICK: smoke sizes)"
        } else {
            ""
        },
        loadavg()
    );
    println!("binary {} (built {modified})", bin.display());
    println!(
        "sizes: {} tickets per throughput run, workers {:?}, {} webhook deliveries at concurrency {}, {} concurrent jobs for memory",
        s.tickets, s.workers, s.deliveries, s.concurrency, s.mem_jobs
    );
    let mut problems: Vec<String> = Vec::new();

    // 1. Throughput.
    println!();
    println!(
        "== 1. throughput: serve --role web + N `worker` processes (--concurrency 1 --poll-ms 100 --retry-secs 1), one PostgreSQL database, {} tickets via signed webhooks, instant scripted agent, gate `true` ==",
        s.tickets
    );
    let mut runs: Vec<RunResult> = Vec::new();
    for &w in &s.workers {
        println!("  run with {w} worker(s) (load average {}):", loadavg());
        match throughput_run(&s, &bin, &admin, w).await {
            Ok(r) => {
                println!(
                    "    all {} jobs awaiting approval after {:.1} s (journals: first created -> last proposed {:.1} s) = {:.0} tickets/hour",
                    r.tickets,
                    r.wall.as_secs_f64(),
                    r.journal_span,
                    r.per_hour()
                );
                println!(
                    "    pipeline time per job (first effect -> proposed): median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
                    median(&r.service_ms),
                    pct(&r.service_ms, 90.0),
                    pct(&r.service_ms, 100.0)
                );
                println!("    jobs per worker (from their logs): {:?}", r.per_worker);
                for c in &r.checks {
                    println!("    check: {c}");
                }
                for st in &r.stops {
                    println!("    stop: {st}");
                }
                runs.push(r);
            }
            Err(e) => {
                println!("    FAILED: {e}");
                problems.push(format!("throughput with {w} worker(s): {e}"));
            }
        }
    }
    let one = runs.iter().find(|r| r.workers == 1);
    if let Some(base) = one {
        for r in runs.iter().filter(|r| r.workers != 1) {
            println!(
                "  ratio {}-worker/1-worker throughput: {:.2}x (ideal {}x; this machine has {cores} cores shared by the service, its workers, PostgreSQL, git, the model server and the load generator)",
                r.workers,
                r.per_hour() / base.per_hour(),
                r.workers
            );
        }
    }

    // 2. Webhook ingest.
    println!();
    println!(
        "== 2. webhook ingest: {} signed ticket.ready deliveries (distinct ids, one ticket each) at concurrency {} to serve --role web; baseline GET /health, same count and concurrency ==",
        s.deliveries, s.concurrency
    );
    let mut ingests = Vec::new();
    for pg in [None, Some(admin.as_str())] {
        match ingest_run(&s, &bin, pg).await {
            Ok(i) => {
                println!("  {} (load average {}):", i.backend, loadavg());
                println!("    {}", i.health.line("GET /health"));
                println!("    {}", i.hooks.line("POST /webhooks/local"));
                println!(
                    "    ratio webhook/health: throughput {:.2}x, p50 latency {:.1}x, p99 latency {:.1}x",
                    i.hooks.rps() / i.health.rps(),
                    pct(&i.hooks.lat_ms, 50.0) / pct(&i.health.lat_ms, 50.0).max(1e-9),
                    pct(&i.hooks.lat_ms, 99.0) / pct(&i.health.lat_ms, 99.0).max(1e-9)
                );
                println!(
                    "    answers: {}; jobs queued afterwards: {}",
                    i.hooks.outcomes(),
                    i.queued
                );
                println!("    stop: {}", i.stop);
                println!(
                    "    warnings or errors in its log: {}{}",
                    i.log_issues.0, i.log_issues.1
                );
                if i.log_issues.0 > 0 {
                    problems.push(format!(
                        "ingest on {}: {} warnings or errors in the log{}",
                        i.backend, i.log_issues.0, i.log_issues.1
                    ));
                }
                if i.hooks.count("202 job created") != s.deliveries || i.queued != s.deliveries {
                    problems.push(format!(
                        "ingest on {}: {} of {} deliveries created a job, {} jobs queued ({})",
                        i.backend,
                        i.hooks.count("202 job created"),
                        s.deliveries,
                        i.queued,
                        i.hooks.outcomes()
                    ));
                }
                ingests.push(i);
            }
            Err(e) => {
                let backend = if pg.is_some() { "postgres" } else { "sqlite" };
                println!("  {backend}: FAILED: {e}");
                problems.push(format!("ingest on {backend}: {e}"));
            }
        }
    }

    // 3. Memory.
    println!();
    println!(
        "== 3. memory: VmRSS of serve (role all, --workers {m} --global-limit {m} --project-limit {m}, SQLite) while {m} jobs sit in implement (model never answers; idle limit 600 s) ==",
        m = s.mem_jobs
    );
    let mem = match memory_run(&s, &bin).await {
        Ok(mem) => {
            let idle = median(&mem.idle_kb);
            let rss: Vec<f64> = mem.samples.iter().map(|x| x.1).collect();
            let peak = pct(&rss, 100.0);
            println!(
                "  enqueue: {} webhooks: {}",
                mem.jobs,
                mem.enqueue.outcomes()
            );
            let reached = mem.samples.last().map_or(0, |x| x.3);
            match mem.all_in_flight_at {
                Some(t) => println!(
                    "  all {} jobs in implement {t:.1} s after enqueueing; sampled {:.0} s more",
                    mem.jobs,
                    s.mem_window.as_secs_f64()
                ),
                None => {
                    println!(
                        "  only {reached} of {} jobs reached implement before the time limit",
                        mem.jobs
                    );
                    problems.push(format!(
                        "memory: only {reached} of {} jobs reached implement",
                        mem.jobs
                    ));
                }
            }
            println!("  RSS over time (every ~2 s): seconds, MiB, threads, jobs in implement");
            for (i, (t, kb, threads, hung)) in mem.samples.iter().enumerate() {
                if i % 10 == 0 || i + 1 == mem.samples.len() {
                    println!(
                        "    {t:6.1} s  {:7.1} MiB  {threads:4} threads  {hung:3} in implement",
                        mib(*kb)
                    );
                }
            }
            println!(
                "  idle (before enqueueing, median of {}): {:.1} MiB",
                mem.idle_kb.len(),
                mib(idle)
            );
            println!(
                "  peak sampled: {:.1} MiB (VmHWM {:.1} MiB); with all {} in flight, median {:.1} MiB",
                mib(peak),
                mib(mem.hwm_kb as f64),
                mem.jobs,
                mib(median(&mem.window_kb))
            );
            println!(
                "  ratio peak/idle: {:.2}x; per in-flight job: {:.2} MiB",
                peak / idle.max(1.0),
                mib((peak - idle) / mem.jobs as f64)
            );
            println!("  queue at the end: {}", mem.queue);
            println!("  stop: {}", mem.stop);
            println!(
                "  warnings or errors in its log: {}{}",
                mem.log_issues.0, mem.log_issues.1
            );
            if mem.log_issues.0 > 0 {
                problems.push(format!(
                    "memory: {} warnings or errors in serve's log{}",
                    mem.log_issues.0, mem.log_issues.1
                ));
            }
            Some((idle, peak, mem.hwm_kb))
        }
        Err(e) => {
            println!("  FAILED: {e}");
            problems.push(format!("memory: {e}"));
            None
        }
    };

    // 4. Tickets per hour, one worker process.
    println!();
    println!("== 4. tickets per hour through the whole pipeline, one worker process (from 1) ==");
    if let Some(r) = one {
        let med = median(&r.service_ms);
        println!(
            "  {:.0} tickets/hour ({} tickets in {:.1} s, {:.2} s per ticket)",
            r.per_hour(),
            r.tickets,
            r.wall.as_secs_f64(),
            r.wall.as_secs_f64() / r.tickets as f64
        );
        println!(
            "  baseline: one ticket's own pipeline time (median {med:.0} ms) allows {:.0} tickets/hour; queue throughput / that = {:.2}x",
            3_600_000.0 / med.max(1e-9),
            r.per_hour() / (3_600_000.0 / med.max(1e-9))
        );
    } else {
        println!("  no 1-worker run (see section 1)");
    }

    // Summary.
    println!();
    println!(
        "== summary (bench took {:.0} s; load average now {}) ==",
        bench_started.elapsed().as_secs_f64(),
        loadavg()
    );
    for r in &runs {
        println!(
            "  throughput {} worker(s): {} tickets in {:.1} s = {:.0} tickets/hour",
            r.workers,
            r.tickets,
            r.wall.as_secs_f64(),
            r.per_hour()
        );
    }
    if let Some(base) = one {
        for r in runs.iter().filter(|r| r.workers != 1) {
            println!(
                "  throughput ratio {}w/1w: {:.2}x",
                r.workers,
                r.per_hour() / base.per_hour()
            );
        }
    }
    for i in &ingests {
        println!(
            "  ingest {:<8}: webhooks {:.0} req/s (p50 {:.1} ms, p99 {:.1} ms) vs /health {:.0} req/s (p50 {:.1} ms, p99 {:.1} ms): {:.2}x",
            i.backend,
            i.hooks.rps(),
            pct(&i.hooks.lat_ms, 50.0),
            pct(&i.hooks.lat_ms, 99.0),
            i.health.rps(),
            pct(&i.health.lat_ms, 50.0),
            pct(&i.health.lat_ms, 99.0),
            i.hooks.rps() / i.health.rps()
        );
    }
    if let Some((idle, peak, hwm)) = mem {
        println!(
            "  memory: idle {:.1} MiB, peak {:.1} MiB (VmHWM {:.1} MiB) with {} jobs in flight: {:.2}x",
            mib(idle),
            mib(peak),
            mib(hwm as f64),
            s.mem_jobs,
            peak / idle.max(1.0)
        );
    }
    if let Some(r) = one {
        println!("  tickets/hour, one worker process: {:.0}", r.per_hour());
    }
    if problems.is_empty() {
        println!("  problems: none");
    } else {
        println!("  problems:");
        for p in &problems {
            println!("    - {p}");
        }
    }
}
