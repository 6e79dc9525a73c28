//! Measurement 2: webhook ingest on SQLite and PostgreSQL, against `GET /health` under the
//! same load.

use std::path::Path;
use std::time::Duration;

use codemill_store::QueueState;

use crate::fixtures::{DEMO_AGENT, make_remote};
use crate::home::{Svc, create_tickets, start_serve};
use crate::load::{Load, client, health, load, webhooks};
use crate::pg::PgDb;
use crate::settings::{Settings, err, log_issues, tail};
pub(crate) struct Ingest {
    pub(crate) backend: &'static str,
    pub(crate) health: Load,
    pub(crate) hooks: Load,
    pub(crate) queued: usize,
    pub(crate) stop: String,
    pub(crate) log_issues: (usize, String),
}

pub(crate) async fn ingest_run(
    s: &Settings,
    bin: &Path,
    pg_admin: Option<&str>,
) -> Result<Ingest, String> {
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
