//! SQLite backend: one file in WAL mode for a single process (`codemill run`, `codemill serve`).
//! Timestamps are RFC 3339 text with microseconds and `Z`, so text order is time order.
//! Every transaction that writes starts with `BEGIN IMMEDIATE`: it takes the write lock up
//! front, so a read-then-write cannot fail with a stale snapshot when another connection wrote
//! in between (which `busy_timeout` cannot retry).

mod events;
mod queue;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_core::pipeline::{JobEvent, TicketStatus};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::StoreError;
use crate::model::{
    self, Comment, JobRow, JournalEntry, Link, MirroredTicket, NewPr, PrRecord, StatusChange,
    Ticket,
};

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

#[derive(Debug, Clone)]
pub(crate) struct Sqlite {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection, so this process's writers take turns in order.
    writer: SqlitePool,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn now() -> String {
    ts(Utc::now())
}

fn time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

fn time_at(r: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    time(&r.try_get::<String, _>(column)?)
}

fn time_opt(r: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    r.try_get::<Option<String>, _>(column)?
        .map(|t| time(&t))
        .transpose()
}

impl Sqlite {
    pub async fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // Writers of this process queue for one connection instead of meeting on SQLite's file
        // lock, whose busy handler sleeps (up to 100 ms a time) between tries.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let store = Sqlite { pool, writer };
        Ok(store)
    }

    pub(crate) fn db(&self) -> crate::sql::Db {
        crate::sql::Db::Sqlite {
            read: self.pool.clone(),
            write: self.writer.clone(),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// A transaction holding the write lock from its first statement.
    async fn write(&self) -> Result<Tx, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    // ---- tickets -------------------------------------------------------------------------

    pub async fn create_ticket(
        &self,
        project: &ProjectName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Ticket, StoreError> {
        let mut tx = self.write().await?;
        let key = atomically!(tx, {
            insert_ticket(&mut tx, project, title, body, labels, &now()).await
        })?;
        self.existing_ticket(&key).await
    }

    async fn existing_ticket(&self, key: &TicketKey) -> Result<Ticket, StoreError> {
        self.ticket(key)
            .await?
            .ok_or_else(|| StoreError::NoTicket(key.to_string()))
    }

    /// Insert or refresh a ticket mirrored from an outside tracker; a changed title or body
    /// counts as an edit. Its status is codemill's own and is kept.
    pub async fn mirror_ticket(&self, t: &MirroredTicket<'_>) -> Result<Ticket, StoreError> {
        sqlx::query(
            "INSERT INTO tickets (key, project, number, title, body, labels, status, created_at, updated_at, external, url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10) ON CONFLICT(key) DO UPDATE SET edited_at = CASE WHEN tickets.title <> excluded.title OR tickets.body <> excluded.body THEN excluded.updated_at ELSE tickets.edited_at END, title = excluded.title, body = excluded.body, labels = excluded.labels, external = excluded.external, url = excluded.url, updated_at = excluded.updated_at",
        )
        .bind(t.key.to_string())
        .bind(t.key.project())
        .bind(t.key.number() as i64)
        .bind(t.title)
        .bind(t.body)
        .bind(model::to_json(t.labels)?)
        .bind(TicketStatus::Todo.as_str())
        .bind(now())
        .bind(t.external)
        .bind(t.url)
        .execute(&self.writer)
        .await?;
        self.ticket(t.key)
            .await?
            .ok_or_else(|| StoreError::NoTicket(t.key.to_string()))
    }

    pub async fn ticket(&self, key: &TicketKey) -> Result<Option<Ticket>, StoreError> {
        let row = sqlx::query("SELECT * FROM tickets WHERE key = ?")
            .bind(key.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| ticket_from_row(&r)).transpose()
    }

    pub async fn tickets(&self, project: Option<&str>) -> Result<Vec<Ticket>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM tickets WHERE (?1 IS NULL OR project = ?1) ORDER BY project, number",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ticket_from_row).collect()
    }

    pub async fn edit_ticket(
        &self,
        key: &TicketKey,
        title: Option<&str>,
        body: Option<&str>,
    ) -> Result<Ticket, StoreError> {
        let at = now();
        let result = sqlx::query(
            "UPDATE tickets SET title = COALESCE(?, title), body = COALESCE(?, body), edited_at = ?, updated_at = ? WHERE key = ?",
        )
        .bind(title)
        .bind(body)
        .bind(&at)
        .bind(&at)
        .bind(key.to_string())
        .execute(&self.writer)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NoTicket(key.to_string()));
        }
        self.existing_ticket(key).await
    }

    pub async fn set_label(
        &self,
        key: &TicketKey,
        label: &str,
        present: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let current: Option<String> = sqlx::query("SELECT labels FROM tickets WHERE key = ?")
                .bind(key.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            let Some(current) = current else {
                return Err(StoreError::NoTicket(key.to_string()));
            };
            let mut labels = model::labels(&key.to_string(), &current)?;
            let had = labels.iter().any(|l| l == label);
            if had == present {
                return Ok(false);
            }
            if present {
                labels.push(label.to_string());
            } else {
                labels.retain(|l| l != label);
            }
            sqlx::query("UPDATE tickets SET labels = ?, updated_at = ? WHERE key = ?")
                .bind(model::to_json(&labels)?)
                .bind(now())
                .bind(key.to_string())
                .execute(&mut *tx)
                .await?;
            Ok(true)
        })
    }

    pub async fn create_linked_ticket(
        &self,
        from: &TicketKey,
        kind: &str,
        marker: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<(Ticket, bool), StoreError> {
        let project: ProjectName = from
            .project()
            .parse()
            .map_err(|e: codemill_core::ids::IdError| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write().await?;
        let (key, created) = atomically!(tx, {
            let existing: Option<String> =
                sqlx::query("SELECT to_key FROM ticket_links WHERE marker = ?")
                    .bind(marker)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            if let Some(key) = existing {
                return Ok((model::ticket_key(&key)?, false));
            }
            let at = now();
            let key = insert_ticket(&mut tx, &project, title, body, labels, &at).await?;
            sqlx::query("INSERT INTO ticket_links (from_key, to_key, kind, marker, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(from.to_string())
                .bind(key.to_string())
                .bind(kind)
                .bind(marker)
                .bind(&at)
                .execute(&mut *tx)
                .await?;
            Ok((key, true))
        })?;
        Ok((self.existing_ticket(&key).await?, created))
    }

    pub async fn links(&self, key: &TicketKey) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query("SELECT from_key, to_key, kind FROM ticket_links WHERE from_key = ?1 OR to_key = ?1 ORDER BY id")
            .bind(key.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Link {
                    from: r.try_get("from_key")?,
                    to: r.try_get("to_key")?,
                    kind: r.try_get("kind")?,
                })
            })
            .collect()
    }

    pub async fn set_ticket_status(
        &self,
        key: &TicketKey,
        status: TicketStatus,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            let current: Option<String> = sqlx::query("SELECT status FROM tickets WHERE key = ?")
                .bind(key.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            let Some(current) = current else {
                return Err(StoreError::NoTicket(key.to_string()));
            };
            if current == status.as_str() {
                return Ok(false);
            }
            let at = now();
            sqlx::query("UPDATE tickets SET status = ?, updated_at = ? WHERE key = ?")
                .bind(status.as_str())
                .bind(&at)
                .bind(key.to_string())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO ticket_status_changes (ticket_key, from_status, to_status, actor, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(key.to_string())
            .bind(&current)
            .bind(status.as_str())
            .bind(actor)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            Ok(true)
        })
    }

    pub async fn add_comment(
        &self,
        key: &TicketKey,
        author: &str,
        marker: Option<&str>,
        body: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO ticket_comments (ticket_key, author, marker, body, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(key.to_string())
        .bind(author)
        .bind(marker)
        .bind(body)
        .bind(now())
        .execute(&self.writer)
        .await;
        match result {
            Ok(r) => Ok(r.rows_affected() == 1),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::NoTicket(key.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn comments(&self, key: &TicketKey) -> Result<Vec<Comment>, StoreError> {
        let rows = sqlx::query("SELECT author, marker, body, created_at FROM ticket_comments WHERE ticket_key = ? ORDER BY id")
            .bind(key.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Comment {
                    author: r.try_get("author")?,
                    marker: r.try_get("marker")?,
                    body: r.try_get("body")?,
                    created_at: time_at(r, "created_at")?,
                })
            })
            .collect()
    }

    pub async fn status_changes(&self, key: &TicketKey) -> Result<Vec<StatusChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT from_status, to_status, actor, created_at FROM ticket_status_changes WHERE ticket_key = ? ORDER BY id",
        )
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StatusChange {
                    from: r.try_get("from_status")?,
                    to: r.try_get("to_status")?,
                    actor: r.try_get("actor")?,
                    created_at: time_at(r, "created_at")?,
                })
            })
            .collect()
    }

    // ---- jobs and the journal ------------------------------------------------------------

    pub async fn create_job(
        &self,
        id: JobId,
        ticket: &TicketKey,
        created: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            insert_job(&mut tx, id, ticket, created, &ts(now)).await?;
            Ok(())
        })
    }

    pub async fn append(
        &self,
        id: JobId,
        seq: i64,
        event: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        atomically!(tx, {
            insert_entry(&mut tx, id, seq, event, &ts(now)).await?;
            Ok(())
        })
    }

    pub async fn journal(&self, id: JobId) -> Result<Vec<JournalEntry>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, event, created_at FROM journal WHERE job_id = ? ORDER BY seq")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(JournalEntry {
                    seq: r.try_get("seq")?,
                    at: time_at(r, "created_at")?,
                    event: model::event(id, &r.try_get::<String, _>("event")?)?,
                })
            })
            .collect()
    }

    pub async fn jobs_for_ticket(&self, key: &TicketKey) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE ticket_key = ? ORDER BY created_at, id")
            .bind(key.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    // ---- local forge ---------------------------------------------------------------------

    pub async fn find_pr(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<Option<PrRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM pull_requests WHERE project = ? AND branch = ?")
            .bind(project)
            .bind(branch)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| pr_from_row(&r)).transpose()
    }

    pub async fn upsert_pr(&self, pr: &NewPr<'_>) -> Result<PrRecord, StoreError> {
        let at = now();
        sqlx::query(
            "INSERT INTO pull_requests (project, ticket_key, branch, base, commit_sha, title, body, state, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)
             ON CONFLICT (project, branch) DO UPDATE SET base = excluded.base, commit_sha = excluded.commit_sha,
                 title = excluded.title, body = excluded.body, state = 'open', updated_at = excluded.updated_at",
        )
        .bind(pr.project)
        .bind(pr.ticket)
        .bind(pr.branch)
        .bind(pr.base)
        .bind(pr.commit)
        .bind(pr.title)
        .bind(pr.body)
        .bind(&at)
        .bind(&at)
        .execute(&self.writer)
        .await?;
        self.find_pr(pr.project, pr.branch)
            .await?
            .ok_or_else(|| StoreError::Corrupt("PR record vanished after upsert".into()))
    }

    pub async fn prs(&self) -> Result<Vec<PrRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pull_requests ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(pr_from_row).collect()
    }
}

/// Insert a ticket with the next free number of its project (the caller holds the write lock).
async fn insert_ticket(
    tx: &mut Tx,
    project: &ProjectName,
    title: &str,
    body: &str,
    labels: &[String],
    at: &str,
) -> Result<TicketKey, StoreError> {
    let number: i64 =
        sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 FROM tickets WHERE project = ?")
            .bind(project.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    let key = TicketKey::new(project, number as u64);
    sqlx::query(
        "INSERT INTO tickets (key, project, number, title, body, labels, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(key.to_string())
    .bind(project.as_str())
    .bind(number)
    .bind(title)
    .bind(body)
    .bind(model::to_json(labels)?)
    .bind(TicketStatus::Todo.as_str())
    .bind(at)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(key)
}

/// The job row and its first journal entry.
async fn insert_job(
    tx: &mut Tx,
    id: JobId,
    ticket: &TicketKey,
    created: &JobEvent,
    at: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO jobs (id, ticket_key, project, created_at) VALUES (?, ?, ?, ?)")
        .bind(id.to_string())
        .bind(ticket.to_string())
        .bind(ticket.project())
        .bind(at)
        .execute(&mut **tx)
        .await?;
    insert_entry(tx, id, 0, created, at).await
}

async fn insert_entry(
    tx: &mut Tx,
    id: JobId,
    seq: i64,
    event: &JobEvent,
    at: &str,
) -> Result<(), StoreError> {
    let result = sqlx::query(
        "INSERT INTO journal (job_id, seq, kind, event, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(seq)
    .bind(event.name())
    .bind(model::to_json(event)?)
    .bind(at)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => events::after_append(tx, id, seq, event, at).await,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Conflict { job: id, seq })
        }
        Err(e) => Err(e.into()),
    }
}

fn ticket_from_row(r: &SqliteRow) -> Result<Ticket, StoreError> {
    let key: String = r.try_get("key")?;
    Ok(Ticket {
        key: model::ticket_key(&key)?,
        project: r.try_get("project")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        labels: model::labels(&key, &r.try_get::<String, _>("labels")?)?,
        status: model::status(&key, &r.try_get::<String, _>("status")?)?,
        created_at: time_at(r, "created_at")?,
        updated_at: time_at(r, "updated_at")?,
        edited_at: time_opt(r, "edited_at")?,
        external: r.try_get("external")?,
        url: r.try_get("url")?,
    })
}

fn job_from_row(r: &SqliteRow) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        id: model::job_id(&r.try_get::<String, _>("id")?)?,
        ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
        project: r.try_get("project")?,
        created_at: time_at(r, "created_at")?,
    })
}

fn pr_from_row(r: &SqliteRow) -> Result<PrRecord, StoreError> {
    Ok(PrRecord {
        id: r.try_get("id")?,
        project: r.try_get("project")?,
        ticket: r.try_get("ticket_key")?,
        branch: r.try_get("branch")?,
        base: r.try_get("base")?,
        commit: r.try_get("commit_sha")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        state: r.try_get("state")?,
        created_at: time_at(r, "created_at")?,
    })
}
