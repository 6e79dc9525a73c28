//! Webhook ingest benchmark: signed `ticket.ready` deliveries (one ticket each, so each creates
//! a job) posted with bounded concurrency to the real router over a real store, against
//! `GET /health` of the same server in the same run. Prints accepts per second and latency
//! percentiles for each, and their ratio; the same for deliveries that start no job (inbox row
//! only); deliveries per commit; and what one fsync costs on the store's disk. On SQLite and
//! (when `CODEMILL_TEST_POSTGRES_URL` is set, e.g. by `eval "$(./scripts/test postgres)"`)
//! PostgreSQL.
//!
//! Run with `cargo bench -p codemill-server --bench ingest`. Sizes: `BENCH_DELIVERIES` (default
//! 3000), `BENCH_CONCURRENCY` (32). The load generator shares the cores with the server, so on
//! a small machine the figures are a floor. To profile the webhook load alone:
//! `mkfifo ctl; BENCH_PERF_CTL=ctl perf record --control=fifo:ctl -D -1 -g <bench binary>`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use codemill_core::ids::{JobId, TicketKey};
use codemill_server::{AppState, ServerConfig};
use codemill_store::Store;
use common::{NoControl, env_num};
use secrecy::SecretString;
use sqlx::Connection;

const SECRET: &str = "bench-secret";

fn sign(timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Load {
    elapsed: Duration,
    latencies_ms: Vec<f64>,
    failures: usize,
}

impl Load {
    fn rps(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return 0.0;
        }
        v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
    }
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<22} {:>7.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests, {} failed)",
            self.rps(),
            self.pct(50.0),
            self.pct(99.0),
            self.latencies_ms.len(),
            self.failures
        )
    }
}

/// Send `requests` with at most `concurrency` in flight; `expect` is the wanted status.
async fn load(requests: Vec<reqwest::RequestBuilder>, concurrency: usize, expect: u16) -> Load {
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let queue = queue.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0;
            loop {
                let Some(req) = queue.lock().unwrap().pop() else {
                    return (lat, failures);
                };
                let t = Instant::now();
                match req.send().await {
                    Ok(res) if res.status().as_u16() == expect => {
                        let _ = res.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => failures += 1,
                }
            }
        });
    }
    let mut latencies_ms = Vec::new();
    let mut failures = 0;
    for (lat, f) in tasks.join_all().await {
        latencies_ms.extend(lat);
        failures += f;
    }
    Load {
        elapsed: started.elapsed(),
        latencies_ms,
        failures,
    }
}

/// Tells `perf record --control=fifo:<BENCH_PERF_CTL> -D -1` to sample (`enable`) or stop
/// (`disable`), so a profile holds the webhook load alone, not the setup around it.
fn perf_control(command: &str) {
    if let Ok(fifo) = std::env::var("BENCH_PERF_CTL") {
        std::fs::write(&fifo, format!("{command}\n")).unwrap();
    }
}

/// One local delivery with its job, straight into the store (no HTTP).
async fn record_directly(store: &Store, key: &TicketKey, id: &str) {
    let created = codemill_core::pipeline::JobEvent::Created {
        ticket: key.clone(),
        project: "BENCH".parse().unwrap(),
        max_rounds: 3,
        acknowledge: false,
        follow_pr: false,
        subtask: None,
        refine: None,
    };
    let job = codemill_store::NewJob {
        id: JobId::new(),
        ticket: key,
        created: &created,
        max_attempts: 3,
    };
    let delivery = codemill_store::Delivery {
        provider: "local",
        delivery_id: id,
        headers: &[],
        body: b"{}",
    };
    store
        .record_delivery(&delivery, Some(&job), chrono::Utc::now())
        .await
        .unwrap();
}

/// Median time of appending a page to a file and `fdatasync`ing it in `dir`: what one durable
/// commit costs at least on this disk, whatever the database does around it.
fn fsync_latency_us(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let page = [7u8; 4096];
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&page).unwrap();
            file.sync_data().unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    std::fs::remove_file(&path).unwrap();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

async fn run(
    name: &str,
    store: Store,
    deliveries: usize,
    concurrency: usize,
    fsync_us: Option<f64>,
) {
    let project = "BENCH".parse().unwrap();
    let mut keys = Vec::new();
    for i in 0..deliveries {
        let t = store
            .create_ticket(&project, &format!("ticket {i}"), "b", &[])
            .await
            .unwrap();
        keys.push(t.key);
    }
    let state = AppState::new(
        store.clone(),
        Arc::new(NoControl),
        ServerConfig {
            webhook_secrets: vec![("local".into(), SecretString::from(SECRET))],
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
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let health = |n: usize| -> Vec<reqwest::RequestBuilder> {
        (0..n).map(|_| http.get(format!("{base}/health"))).collect()
    };
    // Warm up connections and the store.
    load(health(200), concurrency, 200).await;
    let health_load = load(health(deliveries), concurrency, 200).await;
    let ts = chrono::Utc::now().timestamp();
    let hooks: Vec<reqwest::RequestBuilder> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let body = format!(r#"{{"event": "ticket.ready", "ticket": "{key}"}}"#);
            http.post(format!("{base}/webhooks/local"))
                .header("content-type", "application/json")
                .header("x-codemill-delivery", format!("bench-{i}"))
                .header("x-codemill-timestamp", ts.to_string())
                .header("x-codemill-signature-256", sign(ts, body.as_bytes()))
                .body(body)
        })
        .collect();
    let before = store.ingest_counts();
    perf_control("enable");
    let hook_load = load(hooks, concurrency, 202).await;
    perf_control("disable");
    let after = store.ingest_counts();
    let batches = after.batches - before.batches;
    let per_batch =
        (after.batched_deliveries - before.batched_deliveries) as f64 / batches.max(1) as f64;
    // The lightest durable answer: an event that starts nothing, so only its inbox row is
    // written (and fsynced) before the 202.
    let ts = chrono::Utc::now().timestamp();
    let records: Vec<reqwest::RequestBuilder> = (0..deliveries)
        .map(|i| {
            let body = r#"{"event": "ticket.noted"}"#;
            http.post(format!("{base}/webhooks/local"))
                .header("content-type", "application/json")
                .header("x-codemill-delivery", format!("noted-{i}"))
                .header("x-codemill-timestamp", ts.to_string())
                .header("x-codemill-signature-256", sign(ts, body.as_bytes()))
                .body(body)
        })
        .collect();
    let record_load = load(records, concurrency, 202).await;
    // The store alone: the same transaction one at a time, without HTTP.
    let extra = 500;
    let mut store_keys = Vec::new();
    for i in 0..extra {
        store_keys.push(
            store
                .create_ticket(&project, &format!("direct {i}"), "b", &[])
                .await
                .unwrap()
                .key,
        );
    }
    let t = Instant::now();
    for (i, key) in store_keys.iter().enumerate() {
        record_directly(&store, key, &format!("direct-{i}")).await;
    }
    let per_op = t.elapsed().as_secs_f64() * 1e6 / extra as f64;
    // The store alone again, with as many writers at once as the HTTP load had.
    let mut concurrent_keys = Vec::new();
    for i in 0..deliveries {
        concurrent_keys.push(
            store
                .create_ticket(&project, &format!("together {i}"), "b", &[])
                .await
                .unwrap()
                .key,
        );
    }
    let concurrent_keys = Arc::new(std::sync::Mutex::new(concurrent_keys));
    let t = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let store = store.clone();
        let keys = concurrent_keys.clone();
        writers.spawn(async move {
            let mut n = 0;
            loop {
                let Some(key) = keys.lock().unwrap().pop() else {
                    return;
                };
                n += 1;
                record_directly(&store, &key, &format!("together-{w}-{n}")).await;
            }
        });
    }
    writers.join_all().await;
    let together = deliveries as f64 / t.elapsed().as_secs_f64();
    let jobs = store.jobs().await.unwrap().len() - extra - deliveries;
    println!("== {name}: {deliveries} deliveries, concurrency {concurrency} ==");
    println!("  {}", health_load.line("GET /health"));
    println!("  {}", hook_load.line("POST /webhooks/local"));
    println!(
        "  {} (inbox row only: {:.2}x /health)",
        record_load.line("  same, starting no job"),
        record_load.rps() / health_load.rps()
    );
    println!(
        "  ratio webhook/health: throughput {:.2}x, p50 {:.1}x, p99 {:.1}x; jobs created {jobs}",
        hook_load.rps() / health_load.rps(),
        hook_load.pct(50.0) / health_load.pct(50.0).max(1e-9),
        hook_load.pct(99.0) / health_load.pct(99.0).max(1e-9),
    );
    println!(
        "  webhook deliveries written together: {batches} batches, {per_batch:.1} deliveries each"
    );
    if let Some(fsync) = fsync_us {
        println!(
            "  this disk: one append + fsync {fsync:.0} µs (median), so {concurrency} requests in flight that each wait for one get at most {:.0}/s",
            concurrency as f64 * 1e6 / fsync
        );
    }
    println!("  store alone: record_delivery with its job, one at a time: {per_op:.0} µs each");
    println!(
        "  store alone: {concurrency} writers at once: {together:.0} deliveries/s ({:.2}x one at a time; {:.2}x /health, a ceiling for the webhook ratio)",
        together * per_op / 1e6,
        together / health_load.rps()
    );
    assert_eq!(jobs, deliveries, "every delivery made its job");
    server.abort();
}

fn main() {
    let deliveries = env_num("BENCH_DELIVERIES", 3000);
    let concurrency = env_num("BENCH_CONCURRENCY", 32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("codemill.db")).await.unwrap();
        let fsync = fsync_latency_us(dir.path());
        run("SQLite", store, deliveries, concurrency, Some(fsync)).await;
        match std::env::var("CODEMILL_TEST_POSTGRES_URL") {
            Ok(admin) => {
                let name = format!("codemill_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
                let root = &base[..base.rfind('/').unwrap()];
                let url = if query.is_empty() {
                    format!("{root}/{name}")
                } else {
                    format!("{root}/{name}?{query}")
                };
                let store = Store::connect_postgres(&url).await.unwrap();
                run("PostgreSQL", store.clone(), deliveries, concurrency, None).await;
                store.close().await;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            Err(_) => println!("== PostgreSQL: skipped (CODEMILL_TEST_POSTGRES_URL is not set) =="),
        }
    });
}
