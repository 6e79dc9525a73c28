//! Dashboard page benchmark: the board (`GET /`), a job page (`GET /tickets/{KEY}`) and the
//! costs page (`GET /costs`) with 1,000 tickets and 10,000 journal events in a SQLite store (and
//! 300 lines of agent activity on the page's job), requested one after another by a signed-in
//! user, against `GET /health` of the same server in the same run. Prints p50 and p95 of each
//! and their ratio to `/health`; the dashboard's aim is under 100 ms for every page. Then the
//! live board: the CPU the process spends while jobs move with one viewer's board stream open,
//! and with `BENCH_VIEWERS` (20) open at once.
//!
//! Run with `cargo bench -p codemill-server --bench dashboard`. Sizes: `BENCH_TICKETS` (default
//! 1000), `BENCH_EVENTS_PER_JOB` (10), `BENCH_REQUESTS` (50), `BENCH_MOVES` (60),
//! `BENCH_VIEWERS` (20).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use codemill_core::agent::AgentEvent;
use codemill_core::ids::{JobId, TicketKey};
use codemill_server::{AppState, ServerConfig};
use codemill_store::{ActivityStep, Store};
use common::{NoControl, env_num};
use secrecy::SecretString;

/// Latencies of sequential GETs of `url`, in milliseconds, sorted.
async fn timed(http: &reqwest::Client, url: &str, cookie: &str, n: usize) -> Vec<f64> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r = http.get(url).header("cookie", cookie).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty());
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

fn pct(ms: &[f64], p: f64) -> f64 {
    let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
    ms[i.min(ms.len() - 1)]
}

async fn seed(store: &Store, tickets: usize, per_job: usize) -> TicketKey {
    let project = "BENCH".parse().unwrap();
    let mut middle = None;
    for i in 0..tickets {
        let t = store
            .create_ticket(
                &project,
                &format!("Ticket {i}: make the thing <faster>"),
                "A body with some text.\n\nAcceptance: it is faster.",
                &[],
            )
            .await
            .unwrap();
        let events = codemill_testkit::journal::to_approval(&t.key);
        let job = JobId::new();
        store.create_job(job, &t.key, &events[0]).await.unwrap();
        for (seq, e) in events.iter().enumerate().skip(1).take(per_job - 1) {
            store.append(job, seq as i64, e).await.unwrap();
        }
        if i == tickets / 2 {
            let step = ActivityStep {
                job,
                stage: "implement",
                round: 0,
                angle: None,
            };
            let lines: Vec<_> = (0..300)
                .map(|n| {
                    (
                        chrono::Utc::now(),
                        AgentEvent::ToolCall {
                            id: format!("t{n}"),
                            name: "run_command".into(),
                            summary: format!("cargo test --package thing -- case_{n}"),
                        },
                    )
                })
                .collect();
            store.record_activity(&step, &lines).await.unwrap();
            middle = Some(t.key.clone());
        }
    }
    middle.unwrap()
}

fn main() {
    let tickets = env_num("BENCH_TICKETS", 1000);
    let per_job = env_num("BENCH_EVENTS_PER_JOB", 10).max(2);
    let requests = env_num("BENCH_REQUESTS", 50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("codemill.db")).await.unwrap();
        let seeded = Instant::now();
        let key = seed(&store, tickets, per_job).await;
        let events = store.last_event_pos().await.unwrap();
        println!(
            "seeded {tickets} tickets, {events} journal events in {:.1} s",
            seeded.elapsed().as_secs_f64()
        );
        let hash =
            codemill_server::users::hash_password(&SecretString::from("bench password")).unwrap();
        store.create_user("bench", "approver", &hash).await.unwrap();
        let state = AppState::new(
            store.clone(),
            Arc::new(NoControl),
            ServerConfig {
                inbox_prune_every: Duration::ZERO,
                ..ServerConfig::default()
            },
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(codemill_server::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let login = http
            .post(format!("{base}/login"))
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=bench&password=bench+password&next=%2F")
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 303);
        let cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("codemill_session="))
            .map(|v| v.split(';').next().unwrap().to_string())
            .unwrap();
        let pages = [
            ("GET /health", format!("{base}/health")),
            ("GET / (board)", format!("{base}/")),
            (
                "GET /tickets/KEY (job page)",
                format!("{base}/tickets/{key}"),
            ),
            ("GET /costs", format!("{base}/costs")),
        ];
        // Warm up connections, caches and the store.
        for (_, url) in &pages {
            timed(&http, url, &cookie, 5).await;
        }
        let mut base_p50 = 0.0;
        for (name, url) in &pages {
            let ms = timed(&http, url, &cookie, requests).await;
            let p50 = pct(&ms, 0.5);
            if base_p50 == 0.0 {
                base_p50 = p50;
            }
            let verdict = if name.contains("health") {
                String::new()
            } else if pct(&ms, 0.95) < 100.0 {
                " · under 100 ms: yes".into()
            } else {
                " · under 100 ms: NO".into()
            };
            println!(
                "{name:<30} p50 {p50:>7.2} ms  p95 {:>7.2} ms  ×{:.1} of /health{verdict}",
                pct(&ms, 0.95),
                p50 / base_p50
            );
        }
        // The live board: viewers' streams while jobs move, one viewer against many.
        let moves = env_num("BENCH_MOVES", 60);
        let many = env_num("BENCH_VIEWERS", 20);
        let keys: Vec<TicketKey> = store
            .tickets(None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.key)
            .collect();
        let mut one_cpu = 0.0;
        for viewers in [1, many] {
            let (cpu, per_viewer) =
                live_board(&http, &base, &cookie, &store, &keys, viewers, moves).await;
            if viewers == 1 {
                one_cpu = cpu;
            }
            println!(
                "live board, {viewers:>2} viewer(s), {moves} moves: {cpu:>6.2} s of CPU (×{:.1} of one viewer), {per_viewer:.0} board updates per viewer",
                cpu / one_cpu.max(1e-9)
            );
        }
        server.abort();
    });
}

/// CPU seconds this process has used (user and system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 of the line, in clock ticks (100 per second).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// `viewers` open boards (`GET /board/events`) while `moves` jobs are created, 50 ms apart:
/// the process's CPU time over the moves, and the board updates each viewer got on average.
async fn live_board(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    store: &Store,
    keys: &[TicketKey],
    viewers: usize,
    moves: usize,
) -> (f64, f64) {
    use futures_util::StreamExt;
    let after = store.last_event_pos().await.unwrap();
    let mut streams = tokio::task::JoinSet::new();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..viewers {
        let r = http
            .get(format!("{base}/board/events?after={after}"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let counted = count.clone();
        streams.spawn(async move {
            let mut body = r.bytes_stream();
            let reading = async move {
                const MARK: &[u8] = b"event: board";
                // What may hold the start of a mark cut by a chunk's end (never a whole one).
                let mut tail: Vec<u8> = Vec::new();
                while let Some(Ok(chunk)) = body.next().await {
                    tail.extend_from_slice(&chunk);
                    let seen = tail.windows(MARK.len()).filter(|w| *w == MARK).count();
                    counted.fetch_add(seen, std::sync::atomic::Ordering::SeqCst);
                    let keep = tail.len().min(MARK.len() - 1);
                    tail.drain(..tail.len() - keep);
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(600), reading).await;
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = cpu_seconds();
    for i in 0..moves {
        let key = &keys[i % keys.len()];
        let events = codemill_testkit::journal::to_approval(key);
        store
            .create_job(JobId::new(), key, &events[0])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The streams look every 500 ms: let them see the last move.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let cpu = cpu_seconds() - started;
    streams.abort_all();
    while streams.join_next().await.is_some() {}
    let received = count.load(std::sync::atomic::Ordering::SeqCst);
    (cpu, received as f64 / viewers as f64)
}
