//! The store: SQLite (WAL) with migrations — tickets of the local tracker, the append-only job
//! journal, and PR records of the local forge.
//!
//! Job state is never written here: only journal events, from which `codemill_core` derives it.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_core::pipeline::{JobEvent, TicketStatus};
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("no ticket {0}")]
    NoTicket(String),
    #[error(
        "journal of job {job} already has an entry {seq}: another runner is working on this job"
    )]
    Conflict { job: JobId, seq: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A ticket of the local tracker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    pub key: TicketKey,
    pub project: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub status: TicketStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a person last changed the title or body.
    pub edited_at: Option<DateTime<Utc>>,
}

/// A link between two tickets, e.g. a backlog ticket created from a finding on another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comment {
    pub author: String,
    pub marker: Option<String>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    pub from: String,
    pub to: String,
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub id: JobId,
    pub ticket: TicketKey,
    pub project: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub event: JobEvent,
}

/// A PR record of the local forge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrRecord {
    pub id: i64,
    pub project: String,
    pub ticket: String,
    pub branch: String,
    pub base: String,
    pub commit: String,
    pub title: String,
    pub body: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewPr<'a> {
    pub project: &'a str,
    pub ticket: &'a str,
    pub branch: &'a str,
    pub base: &'a str,
    pub commit: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

impl Store {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- tickets -------------------------------------------------------------------------

    /// Create a ticket with the next free number of its project.
    pub async fn create_ticket(
        &self,
        project: &ProjectName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Ticket, StoreError> {
        let labels_json =
            serde_json::to_string(labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let at = now();
        let mut tx = self.pool.begin().await?;
        let number: i64 =
            sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 FROM tickets WHERE project = ?")
                .bind(project.as_str())
                .fetch_one(&mut *tx)
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
        .bind(&labels_json)
        .bind(TicketStatus::Todo.as_str())
        .bind(&at)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.ticket(&key)
            .await?
            .ok_or_else(|| StoreError::NoTicket(key.to_string()))
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

    /// Change a ticket's title and/or body (a person's edit).
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
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NoTicket(key.to_string()));
        }
        self.ticket(key)
            .await?
            .ok_or_else(|| StoreError::NoTicket(key.to_string()))
    }

    /// Add or remove one label; returns whether the labels changed.
    pub async fn set_label(
        &self,
        key: &TicketKey,
        label: &str,
        present: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let current: Option<String> = sqlx::query("SELECT labels FROM tickets WHERE key = ?")
            .bind(key.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let Some(current) = current else {
            return Err(StoreError::NoTicket(key.to_string()));
        };
        let mut labels: Vec<String> = serde_json::from_str(&current)
            .map_err(|e| StoreError::Corrupt(format!("labels of {key}: {e}")))?;
        let had = labels.iter().any(|l| l == label);
        if had == present {
            return Ok(false);
        }
        if present {
            labels.push(label.to_string());
        } else {
            labels.retain(|l| l != label);
        }
        let text =
            serde_json::to_string(&labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE tickets SET labels = ?, updated_at = ? WHERE key = ?")
            .bind(text)
            .bind(now())
            .bind(key.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Create a ticket linked from `from`, once per `marker`: a second call returns the first
    /// ticket and `false`.
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
        let mut tx = self.pool.begin().await?;
        let existing: Option<String> =
            sqlx::query("SELECT to_key FROM ticket_links WHERE marker = ?")
                .bind(marker)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        if let Some(key) = existing {
            drop(tx);
            let key: TicketKey = key
                .parse()
                .map_err(|e: codemill_core::ids::IdError| StoreError::Corrupt(e.to_string()))?;
            let t = self
                .ticket(&key)
                .await?
                .ok_or(StoreError::NoTicket(key.to_string()))?;
            return Ok((t, false));
        }
        let number: i64 =
            sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 FROM tickets WHERE project = ?")
                .bind(project.as_str())
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let key = TicketKey::new(&project, number as u64);
        let at = now();
        let labels_json =
            serde_json::to_string(labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO tickets (key, project, number, title, body, labels, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(key.to_string())
        .bind(project.as_str())
        .bind(number)
        .bind(title)
        .bind(body)
        .bind(&labels_json)
        .bind(TicketStatus::Todo.as_str())
        .bind(&at)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO ticket_links (from_key, to_key, kind, marker, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(from.to_string())
            .bind(key.to_string())
            .bind(kind)
            .bind(marker)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let t = self
            .ticket(&key)
            .await?
            .ok_or(StoreError::NoTicket(key.to_string()))?;
        Ok((t, true))
    }

    /// Links from and to a ticket.
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

    /// Set a ticket's status; records a change only when it differs. Returns whether it changed.
    pub async fn set_ticket_status(
        &self,
        key: &TicketKey,
        status: TicketStatus,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(true)
    }

    /// Add a comment. With a marker it is idempotent: returns false when that marker exists.
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
        .execute(&self.pool)
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
                    created_at: time(&r.try_get::<String, _>("created_at")?)?,
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
                    created_at: time(&r.try_get::<String, _>("created_at")?)?,
                })
            })
            .collect()
    }

    // ---- jobs and the journal ------------------------------------------------------------

    /// Create a job with its first journal entry (`Created`) in one transaction.
    pub async fn create_job(
        &self,
        id: JobId,
        ticket: &TicketKey,
        created: &JobEvent,
    ) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO jobs (id, ticket_key, project, created_at) VALUES (?, ?, ?, ?)")
            .bind(id.to_string())
            .bind(ticket.to_string())
            .bind(ticket.project())
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        insert_entry(&mut tx, id, 0, created, &at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Append `event` as entry `seq`. Fails with `Conflict` if that entry already exists.
    pub async fn append(&self, id: JobId, seq: i64, event: &JobEvent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_entry(&mut tx, id, seq, event, &now()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn journal(&self, id: JobId) -> Result<Vec<JournalEntry>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, event, created_at FROM journal WHERE job_id = ? ORDER BY seq")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("event")?;
                Ok(JournalEntry {
                    seq: r.try_get("seq")?,
                    at: time(&r.try_get::<String, _>("created_at")?)?,
                    event: serde_json::from_str(&text).map_err(|e| {
                        StoreError::Corrupt(format!("journal entry of job {id}: {e}"))
                    })?,
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

    pub async fn latest_job(&self, key: &TicketKey) -> Result<Option<JobRow>, StoreError> {
        Ok(self.jobs_for_ticket(key).await?.pop())
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

    /// Create the PR record of a branch, or update it to the new commit; one per (project, branch).
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
        .execute(&self.pool)
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

async fn insert_entry(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: JobId,
    seq: i64,
    event: &JobEvent,
    at: &str,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let result = sqlx::query(
        "INSERT INTO journal (job_id, seq, kind, event, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(seq)
    .bind(event.name())
    .bind(text)
    .bind(at)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Conflict { job: id, seq })
        }
        Err(e) => Err(e.into()),
    }
}

fn ticket_from_row(r: &SqliteRow) -> Result<Ticket, StoreError> {
    let key: String = r.try_get("key")?;
    let status: String = r.try_get("status")?;
    let labels: String = r.try_get("labels")?;
    Ok(Ticket {
        key: TicketKey::from_str(&key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        project: r.try_get("project")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        labels: serde_json::from_str(&labels)
            .map_err(|e| StoreError::Corrupt(format!("labels of {key}: {e}")))?,
        status: TicketStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?} of {key}")))?,
        created_at: time(&r.try_get::<String, _>("created_at")?)?,
        updated_at: time(&r.try_get::<String, _>("updated_at")?)?,
        edited_at: r
            .try_get::<Option<String>, _>("edited_at")?
            .map(|t| time(&t))
            .transpose()?,
    })
}

fn job_from_row(r: &SqliteRow) -> Result<JobRow, StoreError> {
    let id: String = r.try_get("id")?;
    let key: String = r.try_get("ticket_key")?;
    Ok(JobRow {
        id: id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("job id {id:?}: {e}")))?,
        ticket: key
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        project: r.try_get("project")?,
        created_at: time(&r.try_get::<String, _>("created_at")?)?,
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
        created_at: time(&r.try_get::<String, _>("created_at")?)?,
    })
}
