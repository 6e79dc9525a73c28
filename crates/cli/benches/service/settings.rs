//! The bench's sizes, read from `BENCH_*` variables, and the small helpers every measurement
//! uses: percentiles, log tails and the warnings in a service's logs, the load average.

use std::path::Path;
use std::time::Duration;

pub(crate) struct Settings {
    pub(crate) quick: bool,
    pub(crate) tickets: usize,
    pub(crate) workers: Vec<usize>,
    pub(crate) deliveries: usize,
    pub(crate) concurrency: usize,
    pub(crate) mem_jobs: usize,
    pub(crate) mem_window: Duration,
    pub(crate) run_deadline: Duration,
    pub(crate) stall: Duration,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

impl Settings {
    pub(crate) fn from_env() -> Settings {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let q = |full: u64, small: u64| if quick { small } else { full };
        let workers = std::env::var("BENCH_WORKERS")
            .ok()
            .map(|v| {
                v.split(',')
                    .filter_map(|w| w.trim().parse().ok())
                    .filter(|w| *w > 0)
                    .collect::<Vec<usize>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![1, 2]);
        Settings {
            quick,
            tickets: env_num("BENCH_TICKETS", q(200, 20)) as usize,
            workers,
            deliveries: env_num("BENCH_DELIVERIES", q(2000, 200)) as usize,
            concurrency: env_num("BENCH_CONCURRENCY", 32) as usize,
            mem_jobs: env_num("BENCH_MEM_JOBS", q(50, 10)) as usize,
            mem_window: Duration::from_secs(env_num("BENCH_MEM_WINDOW_SECS", q(20, 5))),
            run_deadline: Duration::from_secs(env_num("BENCH_RUN_DEADLINE_SECS", q(1200, 300))),
            stall: Duration::from_secs(env_num("BENCH_STALL_SECS", 120)),
        }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// The p-th percentile (nearest rank); 0 for no samples.
pub(crate) fn pct(v: &[f64], p: f64) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub(crate) fn median(v: &[f64]) -> f64 {
    pct(v, 50.0)
}

pub(crate) fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The last `n` lines of a log file, indented, for failure reports.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let body: Vec<String> = lines[start..]
        .iter()
        .map(|l| format!("      | {l}"))
        .collect();
    format!("    last lines of {}:\n{}", path.display(), body.join("\n"))
}

/// Lines of the service's logs that mean trouble: tracing WARN/ERROR, a retried job, a fenced
/// worker, a worker loop error. Returns their count and up to three of them.
pub(crate) fn log_issues(paths: &[&Path]) -> (usize, String) {
    let mut found = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let bad = line.contains(" WARN ")
                || line.contains(" ERROR ")
                || line.contains("will be retried")
                || line.contains("another worker owns it")
                || (line.starts_with("worker: ")
                    && !line.starts_with("worker: Released")
                    && !line.starts_with("worker: stopping after"));
            if bad {
                found.push(line.chars().take(200).collect::<String>());
            }
        }
    }
    let examples = if found.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {:?})", &found[..found.len().min(3)])
    };
    (found.len(), examples)
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
