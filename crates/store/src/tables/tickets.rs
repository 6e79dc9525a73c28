//! Tickets of the local tracker (and codemill's record of outside ones): numbering, labels,
//! status with its history, comments and links; and the local forge's PR records.

use chrono::{DateTime, Utc};
use codemill_core::ids::{ProjectName, TicketKey};
use codemill_core::pipeline::TicketStatus;

use crate::StoreError;
use crate::model::{self, Comment, Link, MirroredTicket, NewPr, PrRecord, StatusChange, Ticket};
use crate::queue::micros;
use crate::sql::{Db, Row, Tx, q};

/// Advisory lock namespace of ticket numbers (PostgreSQL; see `Tx::lock`).
const LOCK_TICKET_NUMBERS: i32 = 0x636d_0001;

/// Ticket columns with the labels as JSON text, which `model::labels` parses.
macro_rules! ticket_columns {
    () => {
        "key, project, title, body, labels::text AS labels, status, created_at, updated_at, edited_at, external, url"
    };
}

/// The tickets whose status is one of `n` values (`$1`..`$n`).
pub(crate) fn tickets_in_status_sql(n: usize) -> String {
    let list = (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE status IN ({}) ORDER BY project, number"
        ),
        list
    )
}

fn now() -> chrono::DateTime<Utc> {
    micros(Utc::now())
}

impl Db {
    pub async fn create_ticket(
        &self,
        project: &ProjectName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Ticket, StoreError> {
        let mut tx = self.write().await?;
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
        q(
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
        .execute(self.writer())
        .await?;
        self.ticket(t.key)
            .await?
            .ok_or_else(|| StoreError::NoTicket(t.key.to_string()))
    }

    pub async fn ticket(&self, key: &TicketKey) -> Result<Option<Ticket>, StoreError> {
        let row = q(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE key = $1"
        ))
        .bind(key.to_string())
        .fetch_optional(self.read())
        .await?;
        row.map(|r| ticket_from_row(&r)).transpose()
    }

    pub async fn tickets(&self, project: Option<&str>) -> Result<Vec<Ticket>, StoreError> {
        let rows = q(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE ($1::text IS NULL OR project = $1) ORDER BY project, number"
        ))
        .bind(project)
        .fetch_all(self.read())
        .await?;
        rows.iter().map(ticket_from_row).collect()
    }

    /// The tickets in any of `statuses`, through `tickets_status`: what the pollers look at,
    /// a few among every ticket ever done.
    pub async fn tickets_in_status(
        &self,
        statuses: &[TicketStatus],
    ) -> Result<Vec<Ticket>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = q(tickets_in_status_sql(statuses.len()));
        for status in statuses {
            query = query.bind(status.as_str());
        }
        let rows = query.fetch_all(self.read()).await?;
        rows.iter().map(ticket_from_row).collect()
    }

    /// The projects that have tickets, by name.
    pub async fn ticket_projects(&self) -> Result<Vec<String>, StoreError> {
        let rows = q("SELECT DISTINCT project FROM tickets ORDER BY project")
            .fetch_all(self.read())
            .await?;
        rows.iter().map(|r| r.text("project")).collect()
    }

    pub async fn edit_ticket(
        &self,
        key: &TicketKey,
        title: Option<&str>,
        body: Option<&str>,
    ) -> Result<Ticket, StoreError> {
        let result = q(
            "UPDATE tickets SET title = COALESCE($1, title), body = COALESCE($2, body), edited_at = $3, updated_at = $3 WHERE key = $4",
        )
        .bind(title)
        .bind(body)
        .bind(now())
        .bind(key.to_string())
        .execute(self.writer())
        .await?;
        if result == 0 {
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
            let current: Option<String> =
                q("SELECT labels::text FROM tickets WHERE key = $1 FOR UPDATE")
                    .bind(key.to_string())
                    .fetch_optional(&mut tx)
                    .await?
                    .map(|r| r.text(0))
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
            q("UPDATE tickets SET labels = $1::jsonb, updated_at = $2 WHERE key = $3")
                .bind(model::to_json(&labels)?)
                .bind(now())
                .bind(key.to_string())
                .execute(&mut tx)
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
            // The numbering lock also covers the marker check: both concern this project.
            tx.lock(LOCK_TICKET_NUMBERS, project.as_str()).await?;
            let existing: Option<String> = q("SELECT to_key FROM ticket_links WHERE marker = $1")
                .bind(marker)
                .fetch_optional(&mut tx)
                .await?
                .map(|r| r.text(0))
                .transpose()?;
            if let Some(key) = existing {
                return Ok((model::ticket_key(&key)?, false));
            }
            let at = now();
            let key = insert_ticket(&mut tx, &project, title, body, labels, at).await?;
            q("INSERT INTO ticket_links (from_key, to_key, kind, marker, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(from.to_string())
                .bind(key.to_string())
                .bind(kind)
                .bind(marker)
                .bind(at)
                .execute(&mut tx)
                .await?;
            Ok((key, true))
        })?;
        Ok((self.existing_ticket(&key).await?, created))
    }

    pub async fn links(&self, key: &TicketKey) -> Result<Vec<Link>, StoreError> {
        let rows = q("SELECT from_key, to_key, kind FROM ticket_links WHERE from_key = $1 OR to_key = $1 ORDER BY id")
            .bind(key.to_string())
            .fetch_all(self.read())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Link {
                    from: r.text("from_key")?,
                    to: r.text("to_key")?,
                    kind: r.text("kind")?,
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
            let current: Option<String> = q("SELECT status FROM tickets WHERE key = $1 FOR UPDATE")
                .bind(key.to_string())
                .fetch_optional(&mut tx)
                .await?
                .map(|r| r.text(0))
                .transpose()?;
            let Some(current) = current else {
                return Err(StoreError::NoTicket(key.to_string()));
            };
            if current == status.as_str() {
                return Ok(false);
            }
            let at = now();
            q("UPDATE tickets SET status = $1, updated_at = $2 WHERE key = $3")
                .bind(status.as_str())
                .bind(at)
                .bind(key.to_string())
                .execute(&mut tx)
                .await?;
            q(
                "INSERT INTO ticket_status_changes (ticket_key, from_status, to_status, actor, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key.to_string())
            .bind(&current)
            .bind(status.as_str())
            .bind(actor)
            .bind(at)
            .execute(&mut tx)
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
        let result = q(
            "INSERT INTO ticket_comments (ticket_key, author, marker, body, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(key.to_string())
        .bind(author)
        .bind(marker)
        .bind(body)
        .bind(now())
        .execute(self.writer())
        .await;
        match result {
            Ok(added) => Ok(added == 1),
            Err(StoreError::Sql(sqlx::Error::Database(e))) if e.is_foreign_key_violation() => {
                Err(StoreError::NoTicket(key.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn comments(&self, key: &TicketKey) -> Result<Vec<Comment>, StoreError> {
        let rows = q("SELECT author, marker, body, created_at FROM ticket_comments WHERE ticket_key = $1 ORDER BY id")
            .bind(key.to_string())
            .fetch_all(self.read())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Comment {
                    author: r.text("author")?,
                    marker: r.opt_text("marker")?,
                    body: r.text("body")?,
                    created_at: r.time("created_at")?,
                })
            })
            .collect()
    }

    pub async fn status_changes(&self, key: &TicketKey) -> Result<Vec<StatusChange>, StoreError> {
        let rows = q(
            "SELECT from_status, to_status, actor, created_at FROM ticket_status_changes WHERE ticket_key = $1 ORDER BY id",
        )
        .bind(key.to_string())
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StatusChange {
                    from: r.text("from_status")?,
                    to: r.text("to_status")?,
                    actor: r.text("actor")?,
                    created_at: r.time("created_at")?,
                })
            })
            .collect()
    }

    // ---- local forge ---------------------------------------------------------------------

    /// Set a PR record's state (`open`, `merged`, `closed`); false when there is none.
    pub async fn set_pr_state(
        &self,
        project: &str,
        branch: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = q("UPDATE pull_requests SET state = $1, updated_at = $2 WHERE project = $3 AND branch = $4")
            .bind(state)
            .bind(now)
            .bind(project)
            .bind(branch)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }

    /// Move a PR record's head commit; false when there is none.
    pub async fn set_pr_commit(
        &self,
        project: &str,
        branch: &str,
        commit: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = q("UPDATE pull_requests SET commit_sha = $1, updated_at = $2 WHERE project = $3 AND branch = $4")
            .bind(commit)
            .bind(now)
            .bind(project)
            .bind(branch)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }

    pub async fn find_pr(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<Option<PrRecord>, StoreError> {
        let row = q("SELECT * FROM pull_requests WHERE project = $1 AND branch = $2")
            .bind(project)
            .bind(branch)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| pr_from_row(&r)).transpose()
    }

    pub async fn upsert_pr(&self, pr: &NewPr<'_>) -> Result<PrRecord, StoreError> {
        let row = q(
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
        .fetch_one(self.writer())
        .await?;
        pr_from_row(&row)
    }

    pub async fn prs(&self) -> Result<Vec<PrRecord>, StoreError> {
        let rows = q("SELECT * FROM pull_requests ORDER BY id")
            .fetch_all(self.read())
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
    tx.lock(LOCK_TICKET_NUMBERS, project.as_str()).await?;
    let number: i64 = q("SELECT COALESCE(MAX(number), 0) + 1 FROM tickets WHERE project = $1")
        .bind(project.as_str())
        .fetch_one(&mut *tx)
        .await?
        .int(0)?;
    let key = TicketKey::new(project, number as u64);
    q(
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
    .execute(&mut *tx)
    .await?;
    Ok(key)
}

fn ticket_from_row(r: &Row) -> Result<Ticket, StoreError> {
    let key: String = r.text("key")?;
    Ok(Ticket {
        key: model::ticket_key(&key)?,
        project: r.text("project")?,
        title: r.text("title")?,
        body: r.text("body")?,
        labels: model::labels(&key, &r.text("labels")?)?,
        status: model::status(&key, &r.text("status")?)?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        edited_at: r.opt_time("edited_at")?,
        external: r.opt_text("external")?,
        url: r.opt_text("url")?,
    })
}

fn pr_from_row(r: &Row) -> Result<PrRecord, StoreError> {
    Ok(PrRecord {
        id: r.int("id")?,
        project: r.text("project")?,
        ticket: r.text("ticket_key")?,
        branch: r.text("branch")?,
        base: r.text("base")?,
        commit: r.text("commit_sha")?,
        title: r.text("title")?,
        body: r.text("body")?,
        state: r.text("state")?,
        created_at: r.time("created_at")?,
    })
}
