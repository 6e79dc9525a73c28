//! The knowledge tools every agent gets (`search_knowledge`, `read_knowledge`,
//! `record_knowledge`, `ticket_context`): their one definition, and their answers over a
//! project's store. The MCP server (`codemill mcp`) and the built-in agent offer exactly these;
//! inside a sandbox they reach the store only through the gateway's `/codemill/knowledge/{tool}`
//! route under the step's pass, which fixes the project and the author.
//!
//! Invariant: every answer states its provenance (tag, sources, author, stale and why), and
//! what an agent records is `inferred`, never `verified` or `human`.

use codemill_core::ids::TicketKey;
use codemill_store::{KnowledgeRow, KnowledgeSource, KnowledgeTag, NewKnowledge, Store};
use serde_json::{Value, json};

pub use codemill_core::knowledge::{ToolSpec, is_tool, tools};

/// Why a tool call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments are wrong; the message says how (the model can try again).
    #[error("{0}")]
    Invalid(String),
    #[error(
        "no knowledge tool {0:?} (there are search_knowledge, read_knowledge, record_knowledge and ticket_context)"
    )]
    Unknown(String),
    #[error("the knowledge store: {0}")]
    Store(String),
}

fn store_err(e: impl std::fmt::Display) -> ToolError {
    ToolError::Store(e.to_string())
}

/// The knowledge of one project, as one agent (or person) sees it.
#[derive(Clone)]
pub struct Knowledge {
    store: Store,
    project: String,
    /// Who records entries: `agent:mcp`, or the stage and ticket of a job's step.
    author: String,
}

fn provenance(k: &KnowledgeRow) -> Value {
    json!({
        "tag": k.tag.as_str(),
        "sources": k.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "author": k.author,
        "stale": k.stale.is_some(),
        "stale_why": k.stale,
        "updated_at": k.updated_at,
    })
}

fn string_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ToolError::Invalid(format!(
            "{name} must be a string, not {other}"
        ))),
        None => Err(ToolError::Invalid(format!("{name} is missing"))),
    }
}

impl Knowledge {
    pub fn new(store: Store, project: impl Into<String>, author: impl Into<String>) -> Knowledge {
        Knowledge {
            store,
            project: project.into(),
            author: author.into(),
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// Answers one call; the answer is JSON the model reads as the tool's result.
    pub async fn call(&self, tool: &str, args: &Value) -> Result<Value, ToolError> {
        if !args.is_object() {
            return Err(ToolError::Invalid(
                "the arguments must be a JSON object".into(),
            ));
        }
        match tool {
            "search_knowledge" => self.search(args).await,
            "read_knowledge" => self.read(args).await,
            "record_knowledge" => self.record(args).await,
            "ticket_context" => self.ticket(args).await,
            other => Err(ToolError::Unknown(other.to_string())),
        }
    }

    async fn search(&self, args: &Value) -> Result<Value, ToolError> {
        let query = string_arg(args, "query")?;
        if query.trim().is_empty() {
            return Err(ToolError::Invalid(
                "query is empty: say what to look for".into(),
            ));
        }
        let limit = match args.get("limit") {
            None | Some(Value::Null) => 5,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| ToolError::Invalid(format!("limit must be 1-20, not {v}")))?,
        }
        .clamp(1, 20) as u32;
        let hits = self
            .store
            .search_knowledge(&self.project, query, limit)
            .await
            .map_err(store_err)?;
        let results: Vec<Value> = hits
            .iter()
            .map(|h| {
                let mut v = provenance(&h.entry);
                v["id"] = json!(h.entry.id);
                v["title"] = json!(h.entry.title);
                v["excerpt"] = json!(h.excerpt);
                v
            })
            .collect();
        Ok(json!({ "results": results }))
    }

    async fn read(&self, args: &Value) -> Result<Value, ToolError> {
        let id = args
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ToolError::Invalid("id must be an entry's number".into()))?;
        let entry = self
            .store
            .knowledge(id)
            .await
            .map_err(store_err)?
            .filter(|k| k.project == self.project)
            .ok_or_else(|| {
                ToolError::Invalid(format!("no knowledge entry {id} in {}", self.project))
            })?;
        let mut v = provenance(&entry);
        v["id"] = json!(entry.id);
        v["title"] = json!(entry.title);
        v["body"] = json!(entry.body);
        Ok(v)
    }

    async fn record(&self, args: &Value) -> Result<Value, ToolError> {
        let title = string_arg(args, "title")?.trim();
        let body = string_arg(args, "body")?.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ToolError::Invalid("title must be 1-200 characters".into()));
        }
        if body.is_empty() || body.chars().count() > 20_000 {
            return Err(ToolError::Invalid("body must be 1-20000 characters".into()));
        }
        let sources = match args.get("sources") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| {
                    s.as_str()
                        .ok_or_else(|| format!("each source must be a string, not {s}"))
                        .and_then(KnowledgeSource::parse)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(ToolError::Invalid)?,
            _ => Vec::new(),
        };
        if sources.is_empty() {
            return Err(ToolError::Invalid(
                "sources is empty: cite at least one file the finding is based on".into(),
            ));
        }
        let row = self
            .store
            .add_knowledge(&NewKnowledge {
                project: &self.project,
                title,
                body,
                tag: KnowledgeTag::Inferred,
                sources: &sources,
                author: &self.author,
                origin: None,
            })
            .await
            .map_err(store_err)?;
        Ok(json!({ "id": row.id, "tag": row.tag.as_str() }))
    }

    async fn ticket(&self, args: &Value) -> Result<Value, ToolError> {
        let raw = string_arg(args, "key")?;
        let key: TicketKey = raw
            .parse()
            .map_err(|e| ToolError::Invalid(format!("key {raw:?}: {e}")))?;
        let ticket = self
            .store
            .ticket(&key)
            .await
            .map_err(store_err)?
            .filter(|t| t.project == self.project)
            .ok_or_else(|| ToolError::Invalid(format!("no ticket {key} in {}", self.project)))?;
        let mut related = Vec::new();
        for link in self.store.links(&key).await.map_err(store_err)? {
            let other = if link.from == key.to_string() {
                &link.to
            } else {
                &link.from
            };
            let outcome = match other.parse::<TicketKey>() {
                Ok(k) => self
                    .store
                    .latest_view(&k)
                    .await
                    .map_err(store_err)?
                    .map(|v| v.status),
                Err(_) => None,
            };
            related.push(json!({"key": other, "link": link.kind, "outcome": outcome}));
        }
        let outcome = self
            .store
            .latest_view(&key)
            .await
            .map_err(store_err)?
            .map(|v| v.status);
        Ok(json!({
            "key": ticket.key.to_string(),
            "title": ticket.title,
            "body": ticket.body,
            "labels": ticket.labels,
            "status": ticket.status,
            "job": outcome,
            "related": related,
        }))
    }
}
