//! Hand-run benchmark of the codemill service: queue throughput, webhook ingest, memory.
//!
//! Run with `eval "$(./scripts/test postgres)"; cargo bench -p codemill --bench service`
//! (`BENCH_QUICK=1` for a small smoke version). It drives the real binary (the
//! `target/release/codemill` cargo builds for the bench; `BENCH_CODEMILL_BIN` overrides it)
//! against the scripted model server on 127.0.0.1, with a small repository whose only gate is
//! `true`. Every figure comes with a baseline measured in the same run:
//!
//! 1. throughput: `serve --role web` plus N `worker` processes on one fresh PostgreSQL
//!    database; T tickets enqueued through signed webhooks, an instant scripted agent; wall
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use codemill_core::ids::ProjectName;
use codemill_core::pipeline::{AgentStage, JobEvent};
use codemill_runner::Home;
use codemill_store::{QueueState, Store};
use codemill_testkit::{Match, ModelServer, Reply, Rule, Script, ToolCall};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

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

// ---- settings -----------------------------------------------------------------------------------

struct Settings {
    quick: bool,
    tickets: usize,
    workers: Vec<usize>,
    deliveries: usize,
    concurrency: usize,
    mem_jobs: usize,
    mem_window: Duration,
    run_deadline: Duration,
    stall: Duration,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
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

// ---- small helpers ------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// The p-th percentile (nearest rank); 0 for no samples.
fn pct(v: &[f64], p: f64) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    pct(v, 50.0)
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The last `n` lines of a log file, indented, for failure reports.
fn tail(path: &Path, n: usize) -> String {
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
fn log_issues(paths: &[&Path]) -> (usize, String) {
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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Run git with hooks off; panics with its output on failure.
fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small bare "remote" (README, one source file, a policy whose only gate is `true`).
fn make_remote(root: &Path) -> PathBuf {
    let seed = root.join("seed");
    std::fs::create_dir_all(seed.join(".codemill")).unwrap();
    std::fs::create_dir_all(seed.join("src")).unwrap();
    std::fs::write(seed.join("README.md"), "# bench repository\n").unwrap();
    std::fs::write(seed.join("src/lib.txt"), "some source\n").unwrap();
    std::fs::write(
        seed.join(".codemill/pipeline.toml"),
        "[[gates]]\nname = \"noop\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(root, &["clone", "-q", "--bare", "seed", "remote.git"]);
    root.join("remote.git")
}

/// Every stage answers at once; implement writes one file (or, with `hang_implement`, never
/// answers its first call).
fn script(hang_implement: bool) -> Script {
    let when = |stage: &str, turn: usize| Match {
        first_user_contains: Some(format!("codemill stage: {stage}")),
        turn: Some(turn),
        ..Match::default()
    };
    let implement = if hang_implement {
        Rule::new("implement: hang", when("implement", 0), Reply::Hang)
    } else {
        Rule::new(
            "implement: write",
            when("implement", 0),
            Reply::Message {
                text: Some("Writing the file.".into()),
                tool_calls: vec![ToolCall::new(
                    "write_file",
                    json!({"path": "bench-change.txt", "content": "changed by the bench\n"}),
                )],
                usage: None,
            },
        )
    };
    Script::new(vec![
        Rule::new(
            "readiness",
            when("readiness", 0),
            Reply::text("```json\n{\"ready\": true, \"questions\": []}\n```"),
        ),
        Rule::new(
            "research",
            when("research", 0),
            Reply::text("Notes: README only."),
        ),
        Rule::new(
            "plan",
            when("plan", 0),
            Reply::text("Plan: write bench-change.txt."),
        ),
        implement,
        Rule::new(
            "implement: done",
            when("implement", 1),
            Reply::text("Wrote bench-change.txt."),
        ),
        Rule::new(
            "fix",
            Match {
                last_contains: Some("codemill stage: fix".into()),
                ..Match::default()
            },
            Reply::text("Tried to fix it."),
        ),
        Rule::new(
            "review",
            when("review", 0),
            Reply::text("```json\n{\"findings\": []}\n```"),
        ),
        Rule::new(
            "triage",
            when("triage", 0),
            Reply::text("```json\n{\"decisions\": []}\n```"),
        ),
    ])
}

fn scripted_agent(base_url: &str, idle_secs: u64, wall_secs: u64) -> String {
    format!(
        "[agent]\nbackend = \"builtin\"\nprovider = \"scripted\"\nmodel = \"bench-model\"\n\
         max_turns = 10\nwall_clock_secs = {wall_secs}\nidle_secs = {idle_secs}\n\n\
         [agents.builtin]\nmax_api_retries = 0\n\n\
         [providers.scripted]\napi = \"anthropic\"\nbase_url = \"{base_url}\"\napi_key_env = \"{KEY_VAR}\"\n\n\
         [prices.\"bench-model\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n"
    )
}

/// The embedded demo provider: for homes whose agents never run (role web).
const DEMO_AGENT: &str = "[agent]\nbackend = \"builtin\"\nprovider = \"demo\"\nmodel = \"bench\"\n";

// ---- PostgreSQL: a fresh database per run ------------------------------------------------------

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// libpq variables for `psql` from a URL, so the password never appears on a command line.
fn pg_env(url: &str) -> Vec<(&'static str, String)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or(rest);
    let (auth, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, "postgres"));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    vec![
        ("PGHOST", host.to_string()),
        ("PGPORT", port.to_string()),
        ("PGUSER", user.to_string()),
        ("PGPASSWORD", password.to_string()),
        (
            "PGDATABASE",
            if db.is_empty() { "postgres" } else { db }.to_string(),
        ),
        ("PGCONNECT_TIMEOUT", "10".to_string()),
    ]
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .envs(pg_env(url))
        .stdin(Stdio::null())
        .output()
        .map_err(err("running psql"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `postgres://user:pw@host:port/db?params` with another database.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A database created for one run and dropped (with its connections) when this is dropped.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    fn create(admin: &str, tag: &str) -> Result<PgDb, String> {
        let name = format!(
            "codemill_bench_{}_{tag}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDb {
            admin: admin.to_string(),
            url: with_database(admin, &name),
            name,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin, &sql) {
            println!("  warning: could not drop database {}: {e}", self.name);
        }
    }
}

// ---- homes and processes ------------------------------------------------------------------------

/// A codemill home on SQLite or on a PostgreSQL database.
struct Svc {
    home: PathBuf,
    pg_url: Option<String>,
    bin: PathBuf,
}

impl Svc {
    /// A home with `agent` as its agent config, project BENCH on `remote`, and the store.
    fn new(bin: &Path, dir: &Path, remote: &Path, agent: &str, pg: Option<&PgDb>) -> Svc {
        std::fs::create_dir_all(dir).unwrap();
        let home = Home::new(std::fs::canonicalize(dir).unwrap());
        home.init().unwrap();
        let store = if pg.is_some() {
            format!("\n[store]\npostgres_url_env = \"{PG_VAR}\"\n")
        } else {
            String::new()
        };
        std::fs::write(home.config_file(), format!("{agent}{store}")).unwrap();
        home.add_project(PROJECT, &remote.display().to_string())
            .unwrap();
        home.load_config().unwrap();
        Svc {
            home: home.root().to_path_buf(),
            pg_url: pg.map(|p| p.url.clone()),
            bin: bin.to_path_buf(),
        }
    }

    fn backend(&self) -> &'static str {
        if self.pg_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.arg("--home")
            .arg(&self.home)
            .args(args)
            .env(KEY_VAR, "bench-key")
            .env(SECRET_VAR, SECRET)
            .env_remove("CODEMILL_HOME")
            .env_remove("CODEMILL_CRASH_AFTER_EFFECT")
            .env_remove("CODEMILL_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.pg_url {
            Some(url) => c.env(PG_VAR, url),
            None => c.env_remove(PG_VAR),
        };
        c
    }

    /// The same store the service uses, opened by the bench (to add tickets and read the queue).
    async fn store(&self) -> Result<Store, String> {
        match &self.pg_url {
            Some(url) => Store::connect_postgres(url)
                .await
                .map_err(err("connecting to the bench database")),
            None => Store::open(&self.home.join("codemill.db"))
                .await
                .map_err(err("opening the bench SQLite database")),
        }
    }
}

/// A child process of the bench; killed (by its pid) if still running when dropped.
struct Proc {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait up to `grace`; SIGKILL if it is still running. Says what happened.
    async fn stop(&mut self, grace: Duration) -> String {
        if let Some(status) = self.exited() {
            return format!("{} had already exited ({status})", self.name);
        }
        let Some(pid) = self.pid() else {
            return format!("{} already reaped", self.name);
        };
        let started = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => format!(
                "{} stopped on SIGTERM in {:.1} s ({status})",
                self.name,
                started.elapsed().as_secs_f64()
            ),
            _ => {
                let _ = self.child.kill().await;
                format!(
                    "{} did not stop within {:.0} s of SIGTERM; killed",
                    self.name,
                    grace.as_secs_f64()
                )
            }
        }
    }
}

fn log_file(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).unwrap())
}

/// Start `codemill serve` on a free loopback port; returns it and its base URL.
async fn start_serve(svc: &Svc, log: &Path, extra: &[&str]) -> Result<(Proc, String), String> {
    let secret = format!("local={SECRET_VAR}");
    let mut c = svc.command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--webhook-secret-env",
        &secret,
    ]);
    c.args(extra).stdout(Stdio::piped()).stderr(log_file(log));
    let mut child = c.spawn().map_err(err("spawning codemill serve"))?;
    let stdout = child.stdout.take().ok_or("serve has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    let proc = Proc {
        name: format!("serve {}", extra.join(" ")),
        child,
        log: log.to_path_buf(),
    };
    let line = match first {
        Ok(Ok(Some(line))) => line,
        other => {
            return Err(format!(
                "serve printed no address within 60 s ({other:?})\n{}",
                tail(log, 20)
            ));
        }
    };
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| format!("no address in serve's first line {line:?}"))?
        .to_string();
    // Keep draining stdout so the service never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((proc, base))
}

async fn create_tickets(store: &Store, n: usize) -> Result<Vec<String>, String> {
    let project: ProjectName = PROJECT.parse().unwrap();
    let mut keys = Vec::with_capacity(n);
    for i in 1..=n {
        let t = store
            .create_ticket(
                &project,
                &format!("Bench change {i}"),
                "Write bench-change.txt.\n\nAcceptance: the file exists.",
                &[],
            )
            .await
            .map_err(err("creating a ticket"))?;
        keys.push(t.key.to_string());
    }
    Ok(keys)
}

// ---- HTTP load ----------------------------------------------------------------------------------

/// One prepared request: a GET, or a signed webhook delivery (id, body, timestamp header,
/// signature header).
struct Req {
    url: String,
    hook: Option<(String, Vec<u8>, String, String)>,
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, the local webhook signature.
fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "sha256={}",
        codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &signed)
    )
}

/// One signed `ticket.ready` delivery per key, each with its own delivery id. Signed up front,
/// so signing is not measured; a load is sent at once, well within the 5 minutes the service
/// accepts a timestamp for.
fn webhooks(base: &str, keys: &[String], tag: &str) -> Vec<Req> {
    let timestamp = Utc::now().timestamp().to_string();
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let body =
                serde_json::to_vec(&json!({"event": "ticket.ready", "ticket": key})).unwrap();
            let signature = sign(&timestamp, &body);
            Req {
                url: format!("{base}/webhooks/local"),
                hook: Some((
                    format!("bench-{tag}-{i}"),
                    body,
                    timestamp.clone(),
                    signature,
                )),
            }
        })
        .collect()
}

fn health(base: &str, n: usize) -> Vec<Req> {
    (0..n)
        .map(|_| Req {
            url: format!("{base}/health"),
            hook: None,
        })
        .collect()
}

struct Load {
    wall: Duration,
    lat_ms: Vec<f64>,
    outcomes: BTreeMap<String, usize>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.lat_ms.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn count(&self, outcome: &str) -> usize {
        self.outcomes.get(outcome).copied().unwrap_or(0)
    }

    fn outcomes(&self) -> String {
        let parts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{v} × {k}"))
            .collect();
        parts.join(", ")
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<26} {:>6} req in {:>7.2} s = {:>8.1} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            self.lat_ms.len(),
            self.wall.as_secs_f64(),
            self.rps(),
            pct(&self.lat_ms, 50.0),
            pct(&self.lat_ms, 99.0),
            pct(&self.lat_ms, 100.0),
        )
    }
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap()
}

async fn send(client: &reqwest::Client, r: &Req) -> String {
    let request = match &r.hook {
        Some((delivery, body, timestamp, signature)) => client
            .post(&r.url)
            .header("content-type", "application/json")
            .header("x-codemill-delivery", delivery)
            .header("x-codemill-timestamp", timestamp)
            .header("x-codemill-signature-256", signature)
            .body(body.clone()),
        None => client.get(&r.url),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return "transport error: timeout".into(),
        Err(e) if e.is_connect() => return "transport error: connect".into(),
        Err(_) => return "transport error: other".into(),
    };
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    if r.hook.is_none() {
        return format!("HTTP {status}");
    }
    if status != 202 {
        let text = String::from_utf8_lossy(&body);
        return format!(
            "HTTP {status}: {}",
            text.chars().take(120).collect::<String>()
        );
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let flag = |k: &str| v[k].as_bool() == Some(true);
    if flag("duplicate") {
        "202 duplicate".into()
    } else if flag("existing") {
        "202 existing job".into()
    } else if flag("ignored") {
        "202 ignored".into()
    } else if v["job"].is_string() {
        "202 job created".into()
    } else {
        format!("202 unexpected body {v}")
    }
}

/// Send every request once, at most `concurrency` in flight; requests not started within
/// `limit` are counted, not sent.
async fn load(
    client: &reqwest::Client,
    reqs: Vec<Req>,
    concurrency: usize,
    limit: Duration,
) -> Load {
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, reqs.len().max(1)) {
        let (client, reqs, next) = (client.clone(), reqs.clone(), next.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = reqs.get(i) else { break };
                if started.elapsed() > limit {
                    *outcomes.entry("not sent (time limit)".into()).or_default() += 1;
                    continue;
                }
                let t = Instant::now();
                let outcome = send(&client, r).await;
                lat.push(ms(t.elapsed()));
                *outcomes.entry(outcome).or_default() += 1;
            }
            (lat, outcomes)
        });
    }
    let mut all = Load {
        wall: Duration::ZERO,
        lat_ms: Vec::new(),
        outcomes: BTreeMap::new(),
    };
    while let Some(r) = tasks.join_next().await {
        let (lat, outcomes) = r.unwrap();
        all.lat_ms.extend(lat);
        for (k, v) in outcomes {
            *all.outcomes.entry(k).or_default() += v;
        }
    }
    all.wall = started.elapsed();
    all
}

// ---- 1 and 4: throughput of web node + workers on PostgreSQL -------------------------------------

struct RunResult {
    workers: usize,
    tickets: usize,
    wall: Duration,
    /// First `created` to last `proposed`, from the journals.
    journal_span: f64,
    /// Per job: first effect started -> proposed (the pipeline without queue wait), ms.
    service_ms: Vec<f64>,
    /// Jobs each worker reported as awaiting approval (from its log).
    per_worker: Vec<usize>,
    checks: Vec<String>,
    stops: Vec<String>,
}

impl RunResult {
    fn per_hour(&self) -> f64 {
        self.tickets as f64 * 3600.0 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn queue_histogram(entries: &[codemill_store::QueueEntry]) -> BTreeMap<&'static str, usize> {
    let mut by = BTreeMap::new();
    for e in entries {
        *by.entry(e.state.as_str()).or_default() += 1;
    }
    by
}

fn fmt_histogram(by: &BTreeMap<&'static str, usize>) -> String {
    let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

async fn throughput_run(
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
        let mut c = svc.command(&[
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
                .filter(|l| l.starts_with("job ") && l.ends_with("awaiting_approval"))
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

// ---- 2: webhook ingest --------------------------------------------------------------------------

struct Ingest {
    backend: &'static str,
    health: Load,
    hooks: Load,
    queued: usize,
    stop: String,
    log_issues: (usize, String),
}

async fn ingest_run(s: &Settings, bin: &Path, pg_admin: Option<&str>) -> Result<Ingest, String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let remote = make_remote(&root);
    let db = match pg_admin {
        Some(admin) => Some(PgDb::create(admin, "ingest")?),
        None => None,
    };
    let svc = Svc::new(bin, &root.join("home"), &remote, DEMO_AGENT, db.as_ref());
    let store = svc.store().await?;
    let keys = create_tickets(&store, s.deliveries).await?;
    store.close().await;
    let (mut web, base) = start_serve(&svc, &root.join("web.log"), &["--role", "web"]).await?;
    let http = client(s.concurrency);
    let limit = Duration::from_secs(300);
    // Warm-up (not counted): connections, the pool, the first queries.
    load(&http, health(&base, 100), s.concurrency, limit).await;
    let health = load(&http, health(&base, s.deliveries), s.concurrency, limit).await;
    let hooks = load(
        &http,
        webhooks(&base, &keys, "ingest"),
        s.concurrency,
        limit,
    )
    .await;
    let stop = web.stop(Duration::from_secs(15)).await;
    let store = svc.store().await?;
    let queued = store
        .queue_entries(Some(QueueState::Queued))
        .await
        .map_err(err("reading the queue"))?
        .len();
    store.close().await;
    drop(db);
    if health.count("HTTP 200") != s.deliveries {
        return Err(format!(
            "GET /health: {}\n{}",
            health.outcomes(),
            tail(&web.log, 10)
        ));
    }
    Ok(Ingest {
        log_issues: log_issues(&[&web.log]),
        backend: svc.backend(),
        health,
        hooks,
        queued,
        stop,
    })
}

// ---- 3: memory ----------------------------------------------------------------------------------

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

fn mib(kb: f64) -> f64 {
    kb / 1024.0
}

struct Memory {
    jobs: usize,
    idle_kb: Vec<f64>,
    /// (seconds since enqueueing, RSS kB, threads, agents in implement)
    samples: Vec<(f64, f64, u64, usize)>,
    all_in_flight_at: Option<f64>,
    window_kb: Vec<f64>,
    hwm_kb: u64,
    queue: String,
    enqueue: Load,
    stop: String,
    log_issues: (usize, String),
}

async fn memory_run(s: &Settings, bin: &Path) -> Result<Memory, String> {
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

// ---- main ---------------------------------------------------------------------------------------

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
