//! PostgreSQL backend: the shared store of a fleet (web nodes and workers on several machines).
//!
//! Transactions run at READ COMMITTED. Where a read decides a write (the next ticket number,
//! a ticket's labels or status, the active job of a ticket, the count of leased jobs), the
//! transaction first takes a row lock or a transaction-scoped advisory lock, so two nodes
//! cannot both act on the same stale read.

mod events;
mod queue;

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_core::pipeline::{JobEvent, TicketStatus};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

use crate::StoreError;
use crate::model::{
    self, Comment, JobRow, JournalEntry, Link, MirroredTicket, NewPr, PrRecord, StatusChange,
    Ticket,
};
use crate::queue::micros;

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Advisory lock namespaces (first key of `pg_advisory_xact_lock(int, int)`); the second key
/// is a hash of the locked name, or 0.
const LOCK_TICKET_NUMBERS: i32 = 0x636d_0001;
const LOCK_CLAIM: i32 = 0x636d_0002;
const LOCK_TICKET_JOBS: i32 = 0x636d_0003;

/// Ticket columns with the labels as JSON text, which `model::labels` parses.
macro_rules! ticket_columns {
    () => {
        "key, project, title, body, labels::text AS labels, status, created_at, updated_at, edited_at, external, url"
    };
}

#[derive(Debug, Clone)]
pub(crate) struct Postgres {
    pool: PgPool,
}

fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

/// Serialise writers on one name within this transaction.
async fn advisory_lock(tx: &mut Tx, namespace: i32, name: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(namespace)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Postgres {
    pub async fn connect(url: &str) -> Result<Postgres, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await
            .map_err(StoreError::Connect)?;
        // sqlx takes an advisory lock while migrating, so nodes starting together are fine.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = Postgres { pool };
        Ok(store)
    }

    pub(crate) fn db(&self) -> crate::sql::Db {
        crate::sql::Db::Postgres(self.pool.clone())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- tickets -------------------------------------------------------------------------

    pub async fn create_ticket(
        &self,
        project: &ProjectName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Ticket, StoreError> {
        let mut tx = self.pool.begin().await?;
        let key = atomically!(tx, {
            insert_ticket(&mut tx, project, title, body, labels, now()).await
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
            "INSERT INTO tickets (key, project, number, title, body, labels, status, created_at, updated_at, external, url) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $8, $9, $10) ON CONFLICT (key) DO UPDATE SET edited_at = CASE WHEN tickets.title <> excluded.title OR tickets.body <> excluded.body THEN excluded.updated_at ELSE tickets.edited_at END, title = excluded.title, body = excluded.body, labels = excluded.labels, external = excluded.external, url = excluded.url, updated_at = excluded.updated_at",
        )
        .bind(t.key.to_string())
        .bind(t.key.project())
        .bind(t.key.number() as i64)
        .bind(t.title)
        .bind(t.body)
        .bind(model::to_json(t.labels)?)
        .bind(TicketStatus::Todo.as_str())
        .bind(Utc::now())
        .bind(t.external)
        .bind(t.url)
        .execute(&self.pool)
        .await?;
        self.ticket(t.key)
            .await?
            .ok_or_else(|| StoreError::NoTicket(t.key.to_string()))
    }

    pub async fn ticket(&self, key: &TicketKey) -> Result<Option<Ticket>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE key = $1"
        ))
        .bind(key.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| ticket_from_row(&r)).transpose()
    }

    pub async fn tickets(&self, project: Option<&str>) -> Result<Vec<Ticket>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE ($1::text IS NULL OR project = $1) ORDER BY project, number"
        ))
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
        let result = sqlx::query(
            "UPDATE tickets SET title = COALESCE($1, title), body = COALESCE($2, body), edited_at = $3, updated_at = $3 WHERE key = $4",
        )
        .bind(title)
        .bind(body)
        .bind(now())
        .bind(key.to_string())
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        atomically!(tx, {
            let current: Option<String> =
                sqlx::query("SELECT labels::text FROM tickets WHERE key = $1 FOR UPDATE")
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
            sqlx::query("UPDATE tickets SET labels = $1::jsonb, updated_at = $2 WHERE key = $3")
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
        let mut tx = self.pool.begin().await?;
        let (key, created) = atomically!(tx, {
            // The numbering lock also covers the marker check: both concern this project.
            advisory_lock(&mut tx, LOCK_TICKET_NUMBERS, project.as_str()).await?;
            let existing: Option<String> =
                sqlx::query("SELECT to_key FROM ticket_links WHERE marker = $1")
                    .bind(marker)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            if let Some(key) = existing {
                return Ok((model::ticket_key(&key)?, false));
            }
            let at = now();
            let key = insert_ticket(&mut tx, &project, title, body, labels, at).await?;
            sqlx::query("INSERT INTO ticket_links (from_key, to_key, kind, marker, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(from.to_string())
                .bind(key.to_string())
                .bind(kind)
                .bind(marker)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            Ok((key, true))
        })?;
        Ok((self.existing_ticket(&key).await?, created))
    }

    pub async fn links(&self, key: &TicketKey) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query("SELECT from_key, to_key, kind FROM ticket_links WHERE from_key = $1 OR to_key = $1 ORDER BY id")
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
        let mut tx = self.pool.begin().await?;
        atomically!(tx, {
            let current: Option<String> =
                sqlx::query("SELECT status FROM tickets WHERE key = $1 FOR UPDATE")
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
            sqlx::query("UPDATE tickets SET status = $1, updated_at = $2 WHERE key = $3")
                .bind(status.as_str())
                .bind(at)
                .bind(key.to_string())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO ticket_status_changes (ticket_key, from_status, to_status, actor, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key.to_string())
            .bind(&current)
            .bind(status.as_str())
            .bind(actor)
            .bind(at)
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
            "INSERT INTO ticket_comments (ticket_key, author, marker, body, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
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
        let rows = sqlx::query("SELECT author, marker, body, created_at FROM ticket_comments WHERE ticket_key = $1 ORDER BY id")
            .bind(key.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Comment {
                    author: r.try_get("author")?,
                    marker: r.try_get("marker")?,
                    body: r.try_get("body")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn status_changes(&self, key: &TicketKey) -> Result<Vec<StatusChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT from_status, to_status, actor, created_at FROM ticket_status_changes WHERE ticket_key = $1 ORDER BY id",
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
                    created_at: r.try_get("created_at")?,
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
        let mut tx = self.pool.begin().await?;
        atomically!(tx, {
            insert_job(&mut tx, id, ticket, created, now).await?;
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
        let mut tx = self.pool.begin().await?;
        atomically!(tx, {
            insert_entry(&mut tx, id, seq, event, now).await?;
            Ok(())
        })
    }

    pub async fn journal(&self, id: JobId) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event::text AS event, created_at FROM journal WHERE job_id = $1 ORDER BY seq",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JournalEntry {
                    seq: r.try_get("seq")?,
                    at: r.try_get("created_at")?,
                    event: model::event(id, &r.try_get::<String, _>("event")?)?,
                })
            })
            .collect()
    }

    pub async fn jobs_for_ticket(&self, key: &TicketKey) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE ticket_key = $1 ORDER BY created_at, id")
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
        let row = sqlx::query("SELECT * FROM pull_requests WHERE project = $1 AND branch = $2")
            .bind(project)
            .bind(branch)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| pr_from_row(&r)).transpose()
    }

    pub async fn upsert_pr(&self, pr: &NewPr<'_>) -> Result<PrRecord, StoreError> {
        let row = sqlx::query(
            "INSERT INTO pull_requests (project, ticket_key, branch, base, commit_sha, title, body, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $8)
             ON CONFLICT (project, branch) DO UPDATE SET base = excluded.base, commit_sha = excluded.commit_sha,
                 title = excluded.title, body = excluded.body, state = 'open', updated_at = excluded.updated_at
             RETURNING *",
        )
        .bind(pr.project)
        .bind(pr.ticket)
        .bind(pr.branch)
        .bind(pr.base)
        .bind(pr.commit)
        .bind(pr.title)
        .bind(pr.body)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        pr_from_row(&row)
    }

    pub async fn prs(&self) -> Result<Vec<PrRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pull_requests ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(pr_from_row).collect()
    }
}

/// Insert a ticket with the next free number of its project; the advisory lock keeps two
/// nodes from picking the same number.
async fn insert_ticket(
    tx: &mut Tx,
    project: &ProjectName,
    title: &str,
    body: &str,
    labels: &[String],
    at: DateTime<Utc>,
) -> Result<TicketKey, StoreError> {
    advisory_lock(tx, LOCK_TICKET_NUMBERS, project.as_str()).await?;
    let number: i64 =
        sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 FROM tickets WHERE project = $1")
            .bind(project.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    let key = TicketKey::new(project, number as u64);
    sqlx::query(
        "INSERT INTO tickets (key, project, number, title, body, labels, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $8)",
    )
    .bind(key.to_string())
    .bind(project.as_str())
    .bind(number)
    .bind(title)
    .bind(body)
    .bind(model::to_json(labels)?)
    .bind(TicketStatus::Todo.as_str())
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
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO jobs (id, ticket_key, project, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id.0)
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
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let result = sqlx::query(
        "INSERT INTO journal (job_id, seq, kind, event, created_at) VALUES ($1, $2, $3, $4::jsonb, $5)",
    )
    .bind(id.0)
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

fn ticket_from_row(r: &PgRow) -> Result<Ticket, StoreError> {
    let key: String = r.try_get("key")?;
    Ok(Ticket {
        key: model::ticket_key(&key)?,
        project: r.try_get("project")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        labels: model::labels(&key, &r.try_get::<String, _>("labels")?)?,
        status: model::status(&key, &r.try_get::<String, _>("status")?)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        edited_at: r.try_get("edited_at")?,
        external: r.try_get("external")?,
        url: r.try_get("url")?,
    })
}

fn job_from_row(r: &PgRow) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        id: JobId(r.try_get("id")?),
        ticket: model::ticket_key(&r.try_get::<String, _>("ticket_key")?)?,
        project: r.try_get("project")?,
        created_at: r.try_get("created_at")?,
    })
}

fn pr_from_row(r: &PgRow) -> Result<PrRecord, StoreError> {
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
        created_at: r.try_get("created_at")?,
    })
}
