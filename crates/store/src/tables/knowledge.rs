//! Project knowledge: entries added, listed, read, marked stale, removed, and searched — FTS5
//! with bm25 on SQLite, a weighted `tsvector` with `ts_rank` on PostgreSQL (both split a file path
//! like `docs/testing.md` into its words, as a query is split); the rest written once.

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::knowledge::{KnowledgeHit, KnowledgeRow, KnowledgeSource, KnowledgeTag, NewKnowledge};
use crate::sql::{Db, Row, q};

const COLUMNS: &str = "k.id, k.project, k.title, k.body, k.tag, k.sources::text AS sources, \
                       k.author, k.origin, k.stale_reason, k.created_at, k.updated_at";
/// The same, for `RETURNING` (SQLite does not know an insert's alias there).
const RETURNED: &str = "id, project, title, body, tag, sources::text AS sources, author, origin, \
                        stale_reason, created_at, updated_at";

impl Db {
    pub async fn add_knowledge(
        &self,
        new: &NewKnowledge<'_>,
        now: DateTime<Utc>,
    ) -> Result<KnowledgeRow, StoreError> {
        let sources = serde_json::to_string(new.sources)
            .map_err(|e| StoreError::Corrupt(format!("knowledge sources: {e}")))?;
        let row = q(format!(
            "INSERT INTO knowledge (project, title, body, tag, sources, author, origin,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $8)
             RETURNING {RETURNED}"
        ))
        .bind(new.project)
        .bind(new.title)
        .bind(new.body)
        .bind(new.tag.as_str())
        .bind(sources)
        .bind(new.author)
        .bind(new.origin)
        .bind(now)
        .fetch_one(self.writer())
        .await?;
        knowledge_from_row(&row)
    }

    pub async fn knowledge(&self, id: i64) -> Result<Option<KnowledgeRow>, StoreError> {
        let row = q(format!("SELECT {COLUMNS} FROM knowledge k WHERE k.id = $1"))
            .bind(id)
            .fetch_optional(self.read())
            .await?;
        row.map(|r| knowledge_from_row(&r)).transpose()
    }

    pub async fn knowledge_of(&self, project: &str) -> Result<Vec<KnowledgeRow>, StoreError> {
        let rows = q(format!(
            "SELECT {COLUMNS} FROM knowledge k WHERE k.project = $1 ORDER BY k.id"
        ))
        .bind(project)
        .fetch_all(self.read())
        .await?;
        rows.iter().map(knowledge_from_row).collect()
    }

    pub async fn update_knowledge(
        &self,
        id: i64,
        title: &str,
        body: &str,
        sources: &[KnowledgeSource],
        stale: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sources = serde_json::to_string(sources)
            .map_err(|e| StoreError::Corrupt(format!("knowledge sources: {e}")))?;
        let n = q(
            "UPDATE knowledge SET title = $1, body = $2, sources = $3::jsonb,
                       stale_reason = $4, updated_at = $5
                   WHERE id = $6",
        )
        .bind(title)
        .bind(body)
        .bind(sources)
        .bind(stale)
        .bind(now)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(n == 1)
    }

    pub async fn set_knowledge_tag(
        &self,
        id: i64,
        tag: KnowledgeTag,
        author: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = q("UPDATE knowledge SET tag = $1, author = $2, updated_at = $3 WHERE id = $4")
            .bind(tag.as_str())
            .bind(author)
            .bind(now)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }

    pub async fn remove_knowledge(&self, id: i64) -> Result<bool, StoreError> {
        let n = q("DELETE FROM knowledge WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }

    pub async fn mark_knowledge_stale(
        &self,
        id: i64,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = q("UPDATE knowledge SET stale_reason = $1, updated_at = $2 WHERE id = $3")
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(n == 1)
    }

    pub async fn search_knowledge(
        &self,
        project: &str,
        words: &[String],
        limit: u32,
    ) -> Result<Vec<KnowledgeHit>, StoreError> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, query) = match self {
            // CROSS JOIN keeps the full-text match as SQLite's outer loop: planned the other
            // way round (the project's rows first), the match is evaluated again for every row.
            Db::Sqlite { .. } => (
                format!(
                    "SELECT {COLUMNS},
                         snippet(knowledge_fts, 1, '', '', '…', 24) AS excerpt
                     FROM knowledge_fts CROSS JOIN knowledge k ON k.id = knowledge_fts.rowid
                     WHERE knowledge_fts MATCH $1 AND k.project = $2
                     ORDER BY bm25(knowledge_fts, 4.0, 1.0), k.id
                     LIMIT $3"
                ),
                words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" OR "),
            ),
            Db::Postgres(..) => (
                format!(
                    "SELECT {COLUMNS},
                         ts_headline('english', k.body, tq, 'StartSel=\"\", StopSel=\"\", MaxWords=30, MinWords=12') AS excerpt
                     FROM knowledge k, to_tsquery('english', $1) tq
                     WHERE k.search @@ tq AND k.project = $2
                     ORDER BY ts_rank(k.search, tq) DESC, k.id
                     LIMIT $3"
                ),
                words.join(" | "),
            ),
        };
        let rows = q(sql)
            .bind(query)
            .bind(project)
            .bind(i64::from(limit))
            .fetch_all(self.read())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(KnowledgeHit {
                    entry: knowledge_from_row(r)?,
                    excerpt: r.text("excerpt")?,
                })
            })
            .collect()
    }
}

fn knowledge_from_row(r: &Row) -> Result<KnowledgeRow, StoreError> {
    let tag = r.text("tag")?;
    let sources = r.text("sources")?;
    Ok(KnowledgeRow {
        id: r.int("id")?,
        project: r.text("project")?,
        title: r.text("title")?,
        body: r.text("body")?,
        tag: KnowledgeTag::parse(&tag)
            .ok_or_else(|| StoreError::Corrupt(format!("knowledge tag {tag:?}")))?,
        sources: serde_json::from_str::<Vec<KnowledgeSource>>(&sources)
            .map_err(|e| StoreError::Corrupt(format!("knowledge sources: {e}")))?,
        author: r.text("author")?,
        origin: r.opt_text("origin")?,
        stale: r.opt_text("stale_reason")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}
