//! The dialect layer: each table's SQL is written once, in PostgreSQL's spelling, and run on
//! either backend. For SQLite the text is rewritten once per statement (`$1` → `?1`, casts and
//! row locks dropped, `GREATEST`/`LEAST` → `MAX`/`MIN`); values are bound and read through one
//! small set of types, so a timestamp is `TIMESTAMPTZ` on PostgreSQL and RFC 3339 text (whose
//! text order is time order) on SQLite without the callers knowing.
//!
//! Why not `sqlx::Any`: it has no timestamp type and passes placeholders through unchanged.
//! What differs beyond spelling (advisory locks, the event counter's row lock) is a branch on
//! [`Tx::is_postgres`] at the few places that need it.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use codemill_core::ids::JobId;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ColumnIndex, Row as _};

use crate::StoreError;
use crate::tables::Ingest;

/// How long a PostgreSQL statement waits for a connection (including making one).
pub(crate) const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pools of whichever backend this store has.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite {
        /// Reads.
        read: SqlitePool,
        /// Writes: one connection, so this process's writers take turns in order instead of
        /// meeting on SQLite's file lock, whose busy handler sleeps between tries.
        write: SqlitePool,
        /// Deliveries waiting to be written together (`tables::ingest`).
        ingest: Arc<Ingest>,
    },
    /// A pool, and deliveries waiting to be written together (`tables::ingest`).
    Postgres(PgPool, Arc<Ingest>),
}

/// A transaction of either backend.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Db {
    /// Open (creating if needed) a SQLite file in WAL mode and bring its schema up to date.
    /// Every transaction that writes starts with `BEGIN IMMEDIATE` (see [`Db::write`]).
    pub async fn open_sqlite(path: &Path) -> Result<Db, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A commit is fsynced before it returns: a 202 or an approval survives a power
            // loss, not only a crash of this process (NORMAL would only guarantee the latter).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let opened = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        // A connection to a local file cannot be lost the way a server's can: no ping (a
        // round trip to the connection's thread) before each use.
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(opened)?;
        sqlx::migrate!("./migrations/sqlite").run(&read).await?;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(crate::tables::ingest::SQLITE_SETUP)
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            // Room for a statement list per batch size (`tables::ingest`) beside the rest.
            .connect_with(options.statement_cache_capacity(512))
            .await
            .map_err(opened)?;
        Ok(Db::Sqlite {
            read,
            write,
            ingest: Arc::default(),
        })
    }

    /// Connect to PostgreSQL and bring its schema up to date; sqlx takes an advisory lock while
    /// migrating, so nodes starting together are fine. A statement that gets no connection
    /// within [`PG_ACQUIRE_TIMEOUT`] fails (`StoreError::is_unavailable`) instead of hanging
    /// while the database is down.
    pub async fn connect_postgres(url: &str) -> Result<Db, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(StoreError::Connect)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Db::Postgres(pool, Arc::default()))
    }

    /// A transaction that may write. On SQLite it holds the write lock from its first
    /// statement (`BEGIN IMMEDIATE`), so a read that decides a write cannot go stale; on
    /// PostgreSQL such reads take row or advisory locks instead.
    pub async fn write(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool, _) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// SQLite only: run a statement list that begins and commits its own transaction, on the
    /// write connection, in one hand-off to SQLite's thread. When any of it fails, what it
    /// began is rolled back before the connection is given back.
    pub(crate) async fn sqlite_transaction(&self, query: Q) -> Result<Vec<Row>, StoreError> {
        let Db::Sqlite { write, .. } = self else {
            return Err(StoreError::Corrupt(
                "a SQLite statement list was sent to PostgreSQL".into(),
            ));
        };
        let mut conn = write.acquire().await?;
        let Q { sql, args } = query;
        let query = bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sqlite_dialect(&sql))), args);
        match query.fetch_all(&mut *conn).await {
            Ok(rows) => Ok(rows.into_iter().map(Row::Sqlite).collect()),
            Err(e) => {
                // Fails harmlessly ("no transaction is active") when BEGIN itself failed.
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                Err(e.into())
            }
        }
    }

    /// Where single statements that read run.
    pub fn read(&self) -> On<'_> {
        On::Read(self)
    }

    /// Where a single statement that writes runs, outside any transaction of the caller.
    pub fn writer(&self) -> On<'_> {
        On::Write(self)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(..))
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        q("SELECT 1").fetch_one(self.read()).await?;
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { read, write, .. } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(pool, _) => pool.close().await,
        }
    }
}

impl Tx {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// Serialise writers on one name until this transaction ends. SQLite needs nothing: its
    /// write transactions already run one at a time.
    pub async fn lock(&mut self, namespace: i32, name: &str) -> Result<(), StoreError> {
        if self.is_postgres() {
            q("SELECT pg_advisory_xact_lock(CAST($1 AS INTEGER), hashtext($2))")
                .bind(i64::from(namespace))
                .bind(name)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}

/// Where a statement runs.
pub(crate) enum On<'e> {
    Tx(&'e mut Tx),
    Read(&'e Db),
    Write(&'e Db),
}

impl<'e> From<&'e mut Tx> for On<'e> {
    fn from(tx: &'e mut Tx) -> On<'e> {
        On::Tx(tx)
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bytes(Vec<u8>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    /// `UUID` on PostgreSQL, hyphenated text on SQLite.
    Uuid(Option<uuid::Uuid>),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Arg {
            fn from($v: $t) -> Arg {
                $e
            }
        })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(Some(v)),
    i32 => |v| Arg::Int(Some(i64::from(v))),
    u32 => |v| Arg::Int(Some(i64::from(v))),
    Option<i64> => |v| Arg::Int(v),
    f64 => |v| Arg::Real(Some(v)),
    Option<f64> => |v| Arg::Real(v),
    bool => |v| Arg::Bool(v),
    &str => |v| Arg::Text(Some(v.to_owned())),
    String => |v| Arg::Text(Some(v)),
    &String => |v| Arg::Text(Some(v.clone())),
    Option<&str> => |v| Arg::Text(v.map(str::to_owned)),
    Option<String> => |v| Arg::Text(v),
    &[u8] => |v| Arg::Bytes(v.to_vec()),
    Vec<u8> => |v| Arg::Bytes(v),
    DateTime<Utc> => |v| Arg::Time(Some(v)),
    Option<DateTime<Utc>> => |v| Arg::Time(v),
    JobId => |v| Arg::Uuid(Some(v.0)),
    Option<JobId> => |v| Arg::Uuid(v.map(|j| j.0)),
}

/// A statement and its values.
#[must_use = "a statement does nothing until it is executed or fetched"]
pub(crate) struct Q {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A statement in PostgreSQL's spelling.
pub(crate) fn q(sql: impl Into<Cow<'static, str>>) -> Q {
    Q {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// PostgreSQL's spelling turned into SQLite's. Only what this crate's SQL uses is handled;
/// the unit tests below pin each rule.
pub(crate) fn sqlite_dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if c == '$' && rest[1..].starts_with(|d: char| d.is_ascii_digit()) {
            out.push('?');
            rest = &rest[1..];
            continue;
        }
        if let Some(after) = ["::text", "::jsonb", "::bytea", "::bigint"]
            .iter()
            .find_map(|cast| rest.strip_prefix(cast))
        {
            rest = after;
            continue;
        }
        if let Some(after) = [" FOR UPDATE SKIP LOCKED", " FOR UPDATE"]
            .iter()
            .find_map(|lock| rest.strip_prefix(lock))
        {
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix("GREATEST(") {
            out.push_str("MAX(");
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix("LEAST(") {
            out.push_str("MIN(");
            rest = after;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Text timestamps of SQLite: microseconds and `Z`, so text order is time order.
pub(crate) fn sqlite_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_sqlite_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_sqlite(mut query: SqliteQuery<'static>, args: Vec<Arg>) -> SqliteQuery<'static> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Real(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::Time(v) => query.bind(v.map(sqlite_time)),
            Arg::Uuid(v) => query.bind(v.map(|u| u.to_string())),
        };
    }
    query
}

fn bind_pg(mut query: PgQuery<'static>, args: Vec<Arg>) -> PgQuery<'static> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Real(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::Time(v) => query.bind(v),
            Arg::Uuid(v) => query.bind(v),
        };
    }
    query
}

/// Run `$query` (a `Q`) with `$method` on wherever `$on` says, mapping each backend's row
/// with `$wrap`.
macro_rules! run {
    ($query:expr, $on:expr, $method:ident, $wrap:expr) => {{
        let Q { sql, args } = $query;
        match $on.into() {
            On::Tx(Tx::Sqlite(tx)) => {
                let query =
                    bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sqlite_dialect(&sql))), args);
                $wrap.sqlite(query.$method(&mut **tx).await?)
            }
            On::Tx(Tx::Postgres(tx)) => {
                let query = bind_pg(sqlx::query(sqlx::AssertSqlSafe(sql.into_owned())), args);
                $wrap.pg(query.$method(&mut **tx).await?)
            }
            On::Read(Db::Sqlite { read: pool, .. }) | On::Write(Db::Sqlite { write: pool, .. }) => {
                let query =
                    bind_sqlite(sqlx::query(sqlx::AssertSqlSafe(sqlite_dialect(&sql))), args);
                $wrap.sqlite(query.$method(pool).await?)
            }
            On::Read(Db::Postgres(pool, _)) | On::Write(Db::Postgres(pool, _)) => {
                let query = bind_pg(sqlx::query(sqlx::AssertSqlSafe(sql.into_owned())), args);
                $wrap.pg(query.$method(pool).await?)
            }
        }
    }};
}

/// Turns each backend's result into this layer's.
trait Wrap<S, P> {
    type Out;
    fn sqlite(&self, s: S) -> Self::Out;
    fn pg(&self, p: P) -> Self::Out;
}

struct Affected;
impl Wrap<sqlx::sqlite::SqliteQueryResult, sqlx::postgres::PgQueryResult> for Affected {
    type Out = u64;
    fn sqlite(&self, s: sqlx::sqlite::SqliteQueryResult) -> u64 {
        s.rows_affected()
    }
    fn pg(&self, p: sqlx::postgres::PgQueryResult) -> u64 {
        p.rows_affected()
    }
}

struct One;
impl Wrap<SqliteRow, PgRow> for One {
    type Out = Row;
    fn sqlite(&self, s: SqliteRow) -> Row {
        Row::Sqlite(s)
    }
    fn pg(&self, p: PgRow) -> Row {
        Row::Postgres(p)
    }
}

struct Maybe;
impl Wrap<Option<SqliteRow>, Option<PgRow>> for Maybe {
    type Out = Option<Row>;
    fn sqlite(&self, s: Option<SqliteRow>) -> Option<Row> {
        s.map(Row::Sqlite)
    }
    fn pg(&self, p: Option<PgRow>) -> Option<Row> {
        p.map(Row::Postgres)
    }
}

struct All;
impl Wrap<Vec<SqliteRow>, Vec<PgRow>> for All {
    type Out = Vec<Row>;
    fn sqlite(&self, s: Vec<SqliteRow>) -> Vec<Row> {
        s.into_iter().map(Row::Sqlite).collect()
    }
    fn pg(&self, p: Vec<PgRow>) -> Vec<Row> {
        p.into_iter().map(Row::Postgres).collect()
    }
}

impl Q {
    pub fn bind(mut self, value: impl Into<Arg>) -> Q {
        self.args.push(value.into());
        self
    }

    /// Run it; the number of rows it changed.
    pub async fn execute<'e>(self, on: impl Into<On<'e>>) -> Result<u64, StoreError> {
        Ok(run!(self, on, execute, Affected))
    }

    pub async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> Result<Row, StoreError> {
        Ok(run!(self, on, fetch_one, One))
    }

    pub async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e>>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(run!(self, on, fetch_optional, Maybe))
    }

    pub async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> Result<Vec<Row>, StoreError> {
        Ok(run!(self, on, fetch_all, All))
    }
}

/// A row of either backend, read through the types this layer binds.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A column by name or position.
pub(crate) trait Col: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> + Copy {}
impl Col for &str {}
impl Col for usize {}

impl Row {
    pub fn int(&self, col: impl Col) -> Result<i64, StoreError> {
        self.opt_int(col)?
            .ok_or_else(|| StoreError::Corrupt("an integer column is NULL".into()))
    }

    pub fn opt_int(&self, col: impl Col) -> Result<Option<i64>, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            // INTEGER columns are 4 bytes on PostgreSQL, and sqlx decodes only the exact width.
            Row::Postgres(r) => match r.try_get::<Option<i64>, _>(col) {
                Ok(v) => v,
                Err(sqlx::Error::ColumnDecode { .. }) => {
                    r.try_get::<Option<i32>, _>(col)?.map(i64::from)
                }
                Err(e) => return Err(e.into()),
            },
        })
    }

    pub fn real(&self, col: impl Col) -> Result<f64, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn text(&self, col: impl Col) -> Result<String, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn opt_text(&self, col: impl Col) -> Result<Option<String>, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn bytes(&self, col: impl Col) -> Result<Vec<u8>, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn boolean(&self, col: impl Col) -> Result<bool, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn job(&self, col: impl Col) -> Result<JobId, StoreError> {
        self.opt_job(col)?
            .ok_or_else(|| StoreError::Corrupt("a job id column is NULL".into()))
    }

    pub fn opt_job(&self, col: impl Col) -> Result<Option<JobId>, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => r
                .try_get::<Option<String>, _>(col)?
                .map(|j| crate::model::job_id(&j))
                .transpose()?,
            Row::Postgres(r) => r.try_get::<Option<uuid::Uuid>, _>(col)?.map(JobId),
        })
    }

    pub fn time(&self, col: impl Col) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(col)?
            .ok_or_else(|| StoreError::Corrupt("a timestamp column is NULL".into()))
    }

    pub fn opt_time(&self, col: impl Col) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            Row::Sqlite(r) => r
                .try_get::<Option<String>, _>(col)?
                .map(|t| parse_sqlite_time(&t))
                .transpose(),
            Row::Postgres(r) => Ok(r.try_get(col)?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Both of SQLite's pools fsync each commit: what a 202 promises.
    #[tokio::test]
    async fn sqlite_commits_are_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("codemill.db"))
            .await
            .unwrap();
        for on in [db.read(), db.writer()] {
            let row = q("PRAGMA synchronous").fetch_one(on).await.unwrap();
            // 2 is FULL (0 OFF, 1 NORMAL, 3 EXTRA).
            assert_eq!(row.int("synchronous").unwrap(), 2);
        }
    }

    /// The bundled SQLite is built with the workspace's flags (`.cargo/config.toml`): without
    /// memory statistics, whose mutex every allocation would take.
    #[tokio::test]
    async fn sqlite_is_built_without_memory_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("codemill.db"))
            .await
            .unwrap();
        let row = q("SELECT sqlite_compileoption_used('DEFAULT_MEMSTATUS=0') AS used")
            .fetch_one(db.read())
            .await
            .unwrap();
        assert_eq!(row.int("used").unwrap(), 1);
    }

    /// A statement list that began a transaction and failed leaves nothing behind: neither its
    /// rows nor an open transaction on the one write connection, which would refuse the next
    /// `BEGIN` of every writer.
    #[tokio::test]
    async fn a_failed_statement_list_rolls_back_what_it_began() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("codemill.db"))
            .await
            .unwrap();
        let failed = db
            .sqlite_transaction(q("BEGIN IMMEDIATE; \
                 INSERT INTO api_tokens_probe VALUES (1); COMMIT"))
            .await;
        assert!(failed.is_err(), "no such table");
        let failed = db
            .sqlite_transaction(q("BEGIN IMMEDIATE; \
                 INSERT INTO tickets (key, project, number, title, body, status, created_at, updated_at) \
                 VALUES ('P-1', 'P', 1, 't', 'b', 'todo', 'x', 'x'); \
                 INSERT INTO tickets (key, project, number, title, body, status, created_at, updated_at) \
                 VALUES ('P-1', 'P', 1, 't', 'b', 'todo', 'x', 'x'); COMMIT"))
            .await;
        assert!(failed.is_err(), "the second row repeats the key");
        // The write connection takes a new transaction, and the first row is gone.
        let mut tx = db.write().await.unwrap();
        let n = q("SELECT COUNT(*) AS n FROM tickets")
            .fetch_one(&mut tx)
            .await
            .unwrap();
        assert_eq!(n.int("n").unwrap(), 0);
        tx.rollback().await.unwrap();
    }

    #[test]
    fn placeholders_become_numbered_question_marks() {
        assert_eq!(
            sqlite_dialect("SELECT a FROM t WHERE b = $1 AND c = $12 OR d = $1"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?12 OR d = ?1"
        );
    }

    #[test]
    fn casts_and_row_locks_are_dropped() {
        assert_eq!(
            sqlite_dialect(
                "SELECT labels::text AS l FROM t WHERE ($1::text IS NULL OR p = $1) FOR UPDATE"
            ),
            "SELECT labels AS l FROM t WHERE (?1 IS NULL OR p = ?1)"
        );
        assert_eq!(
            sqlite_dialect("SELECT id FROM q LIMIT 1 FOR UPDATE SKIP LOCKED"),
            "SELECT id FROM q LIMIT 1"
        );
        assert_eq!(
            sqlite_dialect("INSERT INTO t (h, n) VALUES ($1::jsonb, $2::bigint)"),
            "INSERT INTO t (h, n) VALUES (?1, ?2)"
        );
    }

    #[test]
    fn greatest_and_least_become_max_and_min() {
        assert_eq!(
            sqlite_dialect("SET pos = GREATEST(f.pos, excluded.pos), m = LEAST(a, b)"),
            "SET pos = MAX(f.pos, excluded.pos), m = MIN(a, b)"
        );
    }

    #[test]
    fn a_lone_dollar_and_other_text_are_kept() {
        assert_eq!(sqlite_dialect("SELECT '$' || name"), "SELECT '$' || name");
        assert_eq!(sqlite_dialect("é $x"), "é $x");
    }

    #[test]
    fn sqlite_times_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000001Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let b = a + chrono::Duration::microseconds(1);
        assert!(sqlite_time(a) < sqlite_time(b));
        assert!(matches!(parse_sqlite_time(&sqlite_time(a)), Ok(t) if t == a));
    }
}
