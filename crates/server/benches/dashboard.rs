//! Dashboard page benchmark: the board (`GET /`), a job page (`GET /tickets/{KEY}`) and the
//! costs page (`GET /costs`) with 1,000 tickets and 10,000 journal events in a SQLite store (and
//! 300 lines of agent activity on the page's job), requested one after another by a signed-in
//! user, against `GET /health` of the same server in the same run. Prints p50 and p95 of each
//! and their ratio to `/health`; the dashboard's aim is under 100 ms for every page.
//!
//! Run with `cargo bench -p codemill-server --bench dashboard`. Sizes: `BENCH_TICKETS` (default
//! 1000), `BENCH_EVENTS_PER_JOB` (10), `BENCH_REQUESTS` (50).

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
        server.abort();
    });
}
