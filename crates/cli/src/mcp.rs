//! `codemill mcp --project P`: the project's knowledge served to an agent over MCP on stdio
//! (rmcp). Every result says where it came from — tag (`verified`, `inferred`, `human`), the
//! sources it cites, and whether and why it is stale — so an agent can weigh it; what an agent
//! records is always `inferred`, never `verified`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use codemill_core::ids::TicketKey;
use codemill_store::{KnowledgeRow, KnowledgeSource, KnowledgeTag, NewKnowledge, Store};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ErrorData, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::commands::Opened;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchArgs {
    /// What to look for, in plain words.
    pub query: String,
    /// At most this many results (default 5, at most 20).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReadArgs {
    /// The entry's id, from search_knowledge.
    pub id: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RecordArgs {
    /// A short statement of the finding.
    pub title: String,
    /// The finding, with what it is based on.
    pub body: String,
    /// The files it is based on: "PATH" or "PATH:FIRST-LAST" (at least one).
    pub sources: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TicketArgs {
    /// The ticket's key, like PROJ-12.
    pub key: String,
}

#[derive(Clone)]
pub struct KnowledgeServer {
    store: Store,
    project: String,
    /// Who records entries through this server (`agent:mcp`, or the job's stage and ticket).
    author: String,
    tool_router: ToolRouter<Self>,
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

fn invalid(message: String) -> ErrorData {
    ErrorData::invalid_params(message, None)
}

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("the knowledge store: {e}"), None)
}

fn text(value: &Value) -> Result<String, ErrorData> {
    serde_json::to_string_pretty(value).map_err(internal)
}

#[tool_router]
impl KnowledgeServer {
    pub fn new(store: Store, project: String, author: String) -> KnowledgeServer {
        KnowledgeServer {
            store,
            project,
            author,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Search this project's knowledge (architecture, conventions, how to test, past decisions). Each result has its provenance: tag verified (checked against the code), human (written by a person) or inferred (concluded by an agent), the sources it cites, and whether it is stale (a cited file changed since) and why."
    )]
    async fn search_knowledge(
        &self,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<String, ErrorData> {
        if args.query.trim().is_empty() {
            return Err(invalid("query is empty: say what to look for".into()));
        }
        let limit = args.limit.unwrap_or(5).clamp(1, 20);
        let hits = self
            .store
            .search_knowledge(&self.project, &args.query, limit)
            .await
            .map_err(internal)?;
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
        text(&json!({ "results": results }))
    }

    #[tool(description = "Read one knowledge entry in full, with its provenance.")]
    async fn read_knowledge(
        &self,
        Parameters(args): Parameters<ReadArgs>,
    ) -> Result<String, ErrorData> {
        let entry = self
            .store
            .knowledge(args.id)
            .await
            .map_err(internal)?
            .filter(|k| k.project == self.project)
            .ok_or_else(|| {
                invalid(format!(
                    "no knowledge entry {} in {}",
                    args.id, self.project
                ))
            })?;
        let mut v = provenance(&entry);
        v["id"] = json!(entry.id);
        v["title"] = json!(entry.title);
        v["body"] = json!(entry.body);
        text(&v)
    }

    #[tool(
        description = "Record a durable finding about this project for later work, citing the files it is based on. It is stored as inferred (an agent's conclusion) until a person verifies it."
    )]
    async fn record_knowledge(
        &self,
        Parameters(args): Parameters<RecordArgs>,
    ) -> Result<String, ErrorData> {
        let title = args.title.trim();
        let body = args.body.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(invalid("title must be 1-200 characters".into()));
        }
        if body.is_empty() || body.chars().count() > 20_000 {
            return Err(invalid("body must be 1-20000 characters".into()));
        }
        if args.sources.is_empty() {
            return Err(invalid(
                "sources is empty: cite at least one file the finding is based on".into(),
            ));
        }
        let sources = args
            .sources
            .iter()
            .map(|s| KnowledgeSource::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
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
            .map_err(internal)?;
        text(&json!({ "id": row.id, "tag": row.tag.as_str() }))
    }

    #[tool(
        description = "A ticket of this project: its text (which holds its acceptance criteria), status, and the tickets linked to it with how their work ended."
    )]
    async fn ticket_context(
        &self,
        Parameters(args): Parameters<TicketArgs>,
    ) -> Result<String, ErrorData> {
        let key: TicketKey = args
            .key
            .parse()
            .map_err(|e| invalid(format!("key {:?}: {e}", args.key)))?;
        let ticket = self
            .store
            .ticket(&key)
            .await
            .map_err(internal)?
            .filter(|t| t.project == self.project)
            .ok_or_else(|| invalid(format!("no ticket {key} in {}", self.project)))?;
        let mut related = Vec::new();
        for link in self.store.links(&key).await.map_err(internal)? {
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
                    .map_err(internal)?
                    .map(|v| v.status),
                Err(_) => None,
            };
            related.push(json!({"key": other, "link": link.kind, "outcome": outcome}));
        }
        let outcome = self
            .store
            .latest_view(&key)
            .await
            .map_err(internal)?
            .map(|v| v.status);
        text(&json!({
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

#[tool_handler(router = self.tool_router)]
impl ServerHandler for KnowledgeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "codemill's project knowledge. Weigh each result by its tag: verified and human \
             entries are facts, inferred ones are an agent's conclusions, and stale ones cite \
             files that changed since.",
        )
    }
}

/// `codemill mcp --project P`: serve until the client closes stdin.
pub async fn serve(opened: Opened, project: &str) -> Result<ExitCode> {
    if !opened.config.projects.contains_key(project) {
        return Err(anyhow!(
            "no project {project:?} (see `codemill project list`)"
        ));
    }
    let author = std::env::var("CODEMILL_AGENT_AUTHOR").unwrap_or_else(|_| "agent:mcp".into());
    let server = KnowledgeServer::new(opened.store.clone(), project.to_string(), author);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow!("MCP: {e}"))?;
    running.waiting().await.map_err(|e| anyhow!("MCP: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
