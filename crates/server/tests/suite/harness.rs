//! A real store (SQLite in a temporary directory, or a fresh PostgreSQL database), the router
//! served on 127.0.0.1:0, a reqwest client, and a recording fake of `Control`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_server::{AppState, Control, ControlError, ControlFuture, ServerConfig};
use codemill_store::{Store, Ticket};
use secrecy::SecretString;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const POSTGRES_URL: &str = "CODEMILL_TEST_POSTGRES_URL";
pub const LOCAL_SECRET: &str = "local-test-secret";

pub fn postgres_missing() -> String {
    format!(
        "{POSTGRES_URL} is not set, so the PostgreSQL webhook test cannot run. Run \
         ./scripts/test, or `eval \"$(./scripts/test postgres)\"` before \
         `cargo test -p codemill-server`."
    )
}

enum Kind {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        admin_url: String,
        url: String,
        name: String,
    },
}

/// `$body` with `$conn`, a fresh connection to `$db`'s database of either backend, closed after.
macro_rules! behind_the_store {
    ($db:expr, |$conn:ident| $body:expr) => {
        match &$db.kind {
            Kind::Sqlite { path, .. } => {
                let mut $conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                let out = $body;
                $conn.close().await.unwrap();
                out
            }
            Kind::Postgres { url, .. } => {
                let mut $conn = sqlx::PgConnection::connect(url).await.unwrap();
                let out = $body;
                $conn.close().await.unwrap();
                out
            }
        }
    };
}

pub struct Db {
    pub store: Store,
    kind: Kind,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codemill.db");
        let store = Store::open(&path).await.unwrap();
        Db {
            store,
            kind: Kind::Sqlite { _dir: dir, path },
        }
    }

    /// A new database on the server of `CODEMILL_TEST_POSTGRES_URL`, dropped on drop. Panics
    /// (fails the test, never skips it) when the variable is missing.
    pub async fn postgres() -> Db {
        let admin_url =
            std::env::var(POSTGRES_URL).unwrap_or_else(|_| panic!("{}", postgres_missing()));
        let name = format!("codemill_srv_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {POSTGRES_URL}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        let store = Store::connect_postgres(&url).await.unwrap();
        Db {
            store,
            kind: Kind::Postgres {
                admin_url,
                url,
                name,
            },
        }
    }

    /// The database URL, for PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        match &self.kind {
            Kind::Postgres { url, .. } => Some(url),
            Kind::Sqlite { .. } => None,
        }
    }

    /// Rows in a table, counted behind the store's back.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        behind_the_store!(self, |conn| sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .unwrap())
    }

    /// Run statements behind the store's back (the test's own SQL, written for its backend).
    pub async fn raw(&self, sql: &str) {
        behind_the_store!(self, |conn| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap();
        })
    }

    /// (inbox, jobs, queue) row counts.
    pub async fn rows(&self) -> (i64, i64, i64) {
        (
            self.count("inbox").await,
            self.count("jobs").await,
            self.count("queue").await,
        )
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Kind::Postgres {
            admin_url, name, ..
        } = &self.kind
        else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime: use a thread with its own. FORCE ends the
        // store's pooled connections.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the test database");
        }
    }
}

/// `postgres://user:pw@host:port/db?params` with another database.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

// ---- the Control fake --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Approve {
        ticket: String,
        by: String,
        seen: Option<String>,
    },
    Reject {
        ticket: String,
        reason: String,
        by: String,
    },
    Cancel {
        ticket: String,
        by: String,
    },
    Retry {
        ticket: String,
    },
    Outside(codemill_server::OutsideEvent),
}

/// Records every call. The ticket's project picks the answer: NOPE → not found, BUSY → wrong
/// state, FAIL → other failure, PANIC → panics, SLOW → sleeps 10 s; anything else → `job`.
pub struct Recording {
    pub calls: Mutex<Vec<Call>>,
    pub job: JobId,
    /// Outside events of project SLOW wait for a permit here (a tracker that does not answer).
    pub tracker: tokio::sync::Semaphore,
    /// Outside events of project FLAKY fail while this is above zero, counting down.
    pub flaky: std::sync::atomic::AtomicU32,
}

impl Recording {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn answer(&self, call: Call, ticket: &TicketKey) -> ControlFuture<'_, JobId> {
        self.calls.lock().unwrap().push(call);
        let ticket = ticket.clone();
        Box::pin(async move {
            match ticket.project() {
                "NOPE" => Err(ControlError::NotFound(format!("no ticket {ticket}"))),
                "BUSY" => Err(ControlError::Conflict(format!(
                    "{ticket} is not awaiting approval (its job is running)"
                ))),
                "FAIL" => Err(ControlError::Failed("the store went away".into())),
                "PANIC" => panic!("the fake control panics for {ticket}"),
                "SLOW" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(self.job)
                }
                _ => Ok(self.job),
            }
        })
    }
}

impl Control for Recording {
    fn approve<'a>(
        &'a self,
        ticket: &'a TicketKey,
        by: &'a str,
        seen: Option<&'a str>,
    ) -> ControlFuture<'a, JobId> {
        let call = Call::Approve {
            ticket: ticket.to_string(),
            by: by.into(),
            seen: seen.map(str::to_string),
        };
        self.answer(call, ticket)
    }

    fn reject<'a>(
        &'a self,
        ticket: &'a TicketKey,
        reason: &'a str,
        by: &'a str,
    ) -> ControlFuture<'a, JobId> {
        let call = Call::Reject {
            ticket: ticket.to_string(),
            reason: reason.into(),
            by: by.into(),
        };
        self.answer(call, ticket)
    }

    fn cancel<'a>(&'a self, ticket: &'a TicketKey, by: &'a str) -> ControlFuture<'a, JobId> {
        let call = Call::Cancel {
            ticket: ticket.to_string(),
            by: by.into(),
        };
        self.answer(call, ticket)
    }

    fn retry<'a>(&'a self, ticket: &'a TicketKey) -> ControlFuture<'a, JobId> {
        let call = Call::Retry {
            ticket: ticket.to_string(),
        };
        self.answer(call, ticket)
    }

    /// Outside events of project FAIL fail (the tracker is down), of FLAKY fail `flaky` times,
    /// of SLOW wait for a `tracker` permit; all others are "queued".
    fn outside<'a>(
        &'a self,
        event: codemill_server::OutsideEvent,
    ) -> ControlFuture<'a, serde_json::Value> {
        let project = match &event {
            codemill_server::OutsideEvent::Trigger { project, .. }
            | codemill_server::OutsideEvent::Feedback { project, .. }
            | codemill_server::OutsideEvent::PrClosed { project, .. } => project.clone(),
        };
        self.calls.lock().unwrap().push(Call::Outside(event));
        Box::pin(async move {
            let down = match project.as_str() {
                "FAIL" => true,
                "FLAKY" => self
                    .flaky
                    .fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |n| n.checked_sub(1),
                    )
                    .is_ok(),
                "SLOW" => {
                    self.tracker.acquire().await.unwrap().forget();
                    false
                }
                _ => false,
            };
            if down {
                Err(ControlError::Failed("jira: could not connect".into()))
            } else {
                Ok(serde_json::json!({"result": "queued"}))
            }
        })
    }
}

// ---- the server --------------------------------------------------------------------------

pub struct Server {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub control: Arc<Recording>,
    pub db: Db,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Webhooks for `local` only (so `generic` has no endpoint), 1 MiB body limit.
pub fn config() -> ServerConfig {
    ServerConfig {
        webhook_secrets: vec![("local".into(), SecretString::from(LOCAL_SECRET))],
        ..ServerConfig::default()
    }
}

pub async fn start(db: Db) -> Server {
    start_with(db, config()).await
}

pub async fn start_with(db: Db, config: ServerConfig) -> Server {
    let node = node(&db.store, config).await;
    Server {
        base: format!("http://{}", node.addr),
        addr: node.addr,
        client: reqwest::Client::new(),
        control: node.control,
        db,
        shutdown: Some(node.shutdown),
        task: Some(node.task),
    }
}

/// A serving node over `store`, with its own recording control.
pub struct Node {
    pub addr: std::net::SocketAddr,
    pub control: Arc<Recording>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

pub async fn node(store: &Store, config: ServerConfig) -> Node {
    let control = Arc::new(Recording {
        calls: Mutex::new(Vec::new()),
        job: JobId::new(),
        tracker: tokio::sync::Semaphore::new(0),
        flaky: std::sync::atomic::AtomicU32::new(0),
    });
    let state = AppState::new(store.clone(), control.clone(), config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(codemill_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Node {
        addr,
        control,
        shutdown,
        task,
    }
}

impl Node {
    /// Stop it as `serve` stops on a signal.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("graceful shutdown took over 10 s")
            .unwrap()
            .unwrap();
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn store(&self) -> &Store {
        &self.db.store
    }

    pub async fn ticket(&self, project: &str, title: &str) -> Ticket {
        let project: ProjectName = project.parse().unwrap();
        self.store()
            .create_ticket(&project, title, "body", &[])
            .await
            .unwrap()
    }

    /// A signed `POST /webhooks/local` of `body` as JSON with this delivery id, sent now.
    pub async fn deliver(&self, delivery: &str, body: &str) -> reqwest::Response {
        let timestamp = now();
        self.client
            .post(self.url("/webhooks/local"))
            .header("content-type", "application/json")
            .header("x-codemill-delivery", delivery)
            .header("x-codemill-timestamp", timestamp.to_string())
            .header(
                "x-codemill-signature-256",
                sign(LOCAL_SECRET, timestamp, body.as_bytes()),
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Wait (up to 20 s) until the stored outside delivery `id` of `provider` (`vendor:project`)
    /// satisfies `done`, and return it.
    pub async fn delivery_when(
        &self,
        provider: &str,
        id: &str,
        done: impl Fn(&codemill_store::InboxRow) -> bool,
    ) -> codemill_store::InboxRow {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let row = self.store().delivery(provider, id).await.unwrap();
            if let Some(row) = row {
                if done(&row) {
                    return row;
                }
                assert!(
                    std::time::Instant::now() < until,
                    "delivery {provider}/{id} never got there: {row:?}"
                );
            } else {
                assert!(
                    std::time::Instant::now() < until,
                    "delivery {provider}/{id} was never stored"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop accepting, finish what is in flight, and return what `serve` returned.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("graceful shutdown took over 10 s")
                .unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as a sender computes it.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    sign_raw(secret, format!("{timestamp}.").as_bytes(), body)
}

/// `sha256=<hex HMAC-SHA256 of prefix and body>`: [`sign`] with any prefix, or none (how
/// deliveries were signed before the timestamp was).
pub fn sign_raw(secret: &str, prefix: &[u8], body: &[u8]) -> String {
    let mut signed = prefix.to_vec();
    signed.extend_from_slice(body);
    format!(
        "sha256={}",
        codemill_testkit::fakes::hmac_sha256_hex(secret.as_bytes(), &signed)
    )
}

/// The sender's clock: Unix seconds, for `X-Codemill-Timestamp`.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn ready(ticket: &str) -> String {
    serde_json::json!({ "event": "ticket.ready", "ticket": ticket }).to_string()
}

/// An API token stored by hash; returns the plaintext.
pub async fn token(store: &Store, name: &str) -> String {
    let plain = codemill_server::new_token();
    store
        .create_api_token(name, &codemill_server::hash_token(&plain))
        .await
        .unwrap();
    plain
}
