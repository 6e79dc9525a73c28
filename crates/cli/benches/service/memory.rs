//! Measurement 3: the RSS of `serve` while M jobs sit in implement at once, against its idle
//! RSS before anything was enqueued.

use std::path::Path;
use std::time::{Duration, Instant};

use codemill_testkit::ModelServer;

use crate::POLL;
use crate::fixtures::{make_remote, script, scripted_agent};
use crate::home::{Svc, create_tickets, start_serve};
use crate::load::{Load, client, load, webhooks};
use crate::settings::{Settings, err, log_issues, tail};
use crate::throughput::{fmt_histogram, queue_histogram};
struct ProcStatus {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
}

fn proc_status(pid: u32) -> Option<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some(ProcStatus {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

pub(crate) fn mib(kb: f64) -> f64 {
    kb / 1024.0
}

pub(crate) struct Memory {
    pub(crate) jobs: usize,
    pub(crate) idle_kb: Vec<f64>,
    /// (seconds since enqueueing, RSS kB, threads, agents in implement)
    pub(crate) samples: Vec<(f64, f64, u64, usize)>,
    pub(crate) all_in_flight_at: Option<f64>,
    pub(crate) window_kb: Vec<f64>,
    pub(crate) hwm_kb: u64,
    pub(crate) queue: String,
    pub(crate) enqueue: Load,
    pub(crate) stop: String,
    pub(crate) log_issues: (usize, String),
}

pub(crate) async fn memory_run(s: &Settings, bin: &Path) -> Result<Memory, String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let remote = make_remote(&root);
    let server = ModelServer::start(script(true)).await.unwrap();
    // The idle limit is far above the sampling window: every job stays in implement.
    let svc = Svc::new(
        bin,
        &root.join("home"),
        &remote,
        &scripted_agent(&server.base_url(), 600, 900),
        None,
    );
    let m = s.mem_jobs;
    let store = svc.store().await?;
    let keys = create_tickets(&store, m).await?;
    store.close().await;
    let jobs = m.to_string();
    let (mut serve, base) = start_serve(
        &svc,
        &root.join("serve.log"),
        &[
            "--workers",
            &jobs,
            "--global-limit",
            &jobs,
            "--project-limit",
            &jobs,
        ],
    )
    .await?;
    let pid = serve.pid().ok_or("serve has no pid")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut idle_kb = Vec::new();
    for _ in 0..10 {
        let st = proc_status(pid).ok_or("serve vanished while idle")?;
        idle_kb.push(st.rss_kb as f64);
        tokio::time::sleep(POLL).await;
    }

    let started = Instant::now();
    let enqueue = load(
        &client(s.concurrency),
        webhooks(&base, &keys, "mem"),
        s.concurrency,
        Duration::from_secs(60),
    )
    .await;
    let limit = Duration::from_secs(if s.quick { 90 } else { 180 }) + s.mem_window;
    let mut samples = Vec::new();
    let mut window_kb = Vec::new();
    let mut all_in_flight: Option<Instant> = None;
    loop {
        let Some(st) = proc_status(pid) else {
            return Err(format!(
                "serve exited while jobs ran\n{}",
                tail(&serve.log, 20)
            ));
        };
        let t = started.elapsed().as_secs_f64();
        let hung = server.hits("implement: hang");
        samples.push((t, st.rss_kb as f64, st.threads, hung));
        if hung >= m && all_in_flight.is_none() {
            all_in_flight = Some(Instant::now());
        }
        if let Some(at) = all_in_flight {
            window_kb.push(st.rss_kb as f64);
            if at.elapsed() >= s.mem_window {
                break;
            }
        }
        if started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let hwm_kb = proc_status(pid).map_or(0, |st| st.hwm_kb);
    let store = svc.store().await?;
    let queue = fmt_histogram(&queue_histogram(
        &store
            .queue_entries(None)
            .await
            .map_err(err("reading the queue"))?,
    ));
    store.close().await;
    // The jobs hang in implement by design; a graceful stop would wait for them. Kill it.
    let _ = serve.child.kill().await;
    let stop = format!(
        "{} killed with SIGKILL after sampling (its jobs never finish by design)",
        serve.name
    );
    server.shutdown().await;
    Ok(Memory {
        log_issues: log_issues(&[&serve.log]),
        jobs: m,
        idle_kb,
        all_in_flight_at: all_in_flight.map(|at| (at - started).as_secs_f64()),
        samples,
        window_kb,
        hwm_kb,
        queue,
        enqueue,
        stop,
    })
}
