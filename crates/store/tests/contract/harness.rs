//! A fresh store per test, on SQLite (a temporary file) or PostgreSQL (a new database on the
//! server named by `CODEMILL_TEST_POSTGRES_URL`, dropped again when the test ends).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;
use codemill_store::{Backoff, Lease, Limits, NewJob, Store};
use sqlx::Connection;

pub const POSTGRES_URL: &str = "CODEMILL_TEST_POSTGRES_URL";

pub fn postgres_missing() -> String {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    format!(
        "{POSTGRES_URL} is not set, so the PostgreSQL half of the store's contract tests cannot run{}. \
         Run ./scripts/test (it installs and starts a local PostgreSQL and sets the variable), or \
         `eval \"$(./scripts/test postgres)\"` before `cargo test -p codemill-store`.",
        if ci {
            " (CI=true: nothing may be skipped)"
        } else {
            ""
        }
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

    pub async fn postgres() -> Db {
        let admin_url =
            std::env::var(POSTGRES_URL).unwrap_or_else(|_| panic!("{}", postgres_missing()));
        let name = format!("codemill_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connecting to {POSTGRES_URL}: {e}; is the server of ./scripts/test running?"
                )
            });
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

    /// The same database opened again, as after a restart.
    pub async fn reopen(&self) -> Store {
        match &self.kind {
            Kind::Sqlite { path, .. } => Store::open(path).await.unwrap(),
            Kind::Postgres { url, .. } => Store::connect_postgres(url).await.unwrap(),
        }
    }

    /// A connection of its own to this PostgreSQL database, behind the store's back (as
    /// another node's transaction).
    pub async fn postgres_connection(&self) -> sqlx::PgConnection {
        match &self.kind {
            Kind::Postgres { url, .. } => sqlx::PgConnection::connect(url).await.unwrap(),
            Kind::Sqlite { .. } => panic!("a PostgreSQL connection asked of a SQLite database"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }

    /// Run SQL behind the store's back; the database's error message on failure.
    pub async fn raw(&self, sql: &'static str) -> Result<u64, String> {
        match &self.kind {
            Kind::Sqlite { path, .. } => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                let r = sqlx::query(sql).execute(&pool).await;
                pool.close().await;
                r.map(|r| r.rows_affected()).map_err(|e| e.to_string())
            }
            Kind::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let r = sqlx::query(sql).execute(&mut conn).await;
                conn.close().await.unwrap();
                r.map(|r| r.rows_affected()).map_err(|e| e.to_string())
            }
        }
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
        // Drop runs inside the test's runtime (maybe while panicking): drop the database from a
        // thread with its own runtime. FORCE ends the store's pooled connections.
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

// ---- helpers shared by the tests ---------------------------------------------------------

/// A fixed instant: queue times come from the caller, so tests choose them.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

pub fn at(seconds: i64) -> DateTime<Utc> {
    t0() + chrono::TimeDelta::seconds(seconds)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(10),
    max: Duration::from_secs(60),
};

pub const TTL: Duration = Duration::from_secs(60);

pub fn key(s: &str) -> TicketKey {
    s.parse().unwrap()
}

pub fn created(ticket: &TicketKey) -> JobEvent {
    JobEvent::Created {
        ticket: ticket.clone(),
        project: ticket.project().parse().unwrap(),
        max_rounds: 3,
        acknowledge: false,
        follow_pr: false,
        subtask: None,
        refine: None,
    }
}

pub fn started(effect: &str) -> JobEvent {
    JobEvent::EffectStarted {
        effect: effect.into(),
    }
}

/// Enqueue a new job for `ticket` at `now`; returns its id (panics if the ticket was busy).
pub async fn enqueue(s: &Store, ticket: &str, max_attempts: u32, now: DateTime<Utc>) -> JobId {
    let ticket = key(ticket);
    let ev = created(&ticket);
    let id = JobId::new();
    let job = NewJob {
        id,
        ticket: &ticket,
        created: &ev,
        max_attempts,
    };
    let e = s.enqueue(&job, now).await.unwrap();
    assert_eq!(e, codemill_store::Enqueued::Created(id));
    id
}

pub async fn claim(s: &Store, owner: &str, now: DateTime<Utc>) -> Option<Lease> {
    s.claim(owner, TTL, Limits::UNLIMITED, now).await.unwrap()
}
