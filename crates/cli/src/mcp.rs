//! `codemill mcp`: a project's knowledge served to an agent over MCP on stdio (rmcp). With
//! `--project P` it reads this home's store; with `--gateway URL` (how every agent CLI starts it
//! inside a job's sandbox) it asks codemill's gateway under the step's pass and never opens the
//! store. The tools and their answers are [`codemill_gateway::knowledge`]'s, so both ways say
//! the same: every result with its provenance, and what an agent records is always `inferred`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use codemill_gateway::knowledge::{Knowledge, ToolError, is_tool, tools};
use codemill_store::Store;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use secrecy::SecretString;
use serde_json::Value;

use crate::commands::Opened;

/// The variable holding the step's pass for `--gateway`.
pub const PASS_VAR: &str = "CODEMILL_PASS";

/// Where the answers come from.
#[derive(Clone)]
enum Source {
    Store(Knowledge),
    Gateway {
        http: reqwest::Client,
        url: String,
        pass: SecretString,
    },
}

impl Source {
    async fn call(&self, tool: &str, args: &Value) -> Result<Value, ToolError> {
        match self {
            Source::Store(k) => k.call(tool, args).await,
            Source::Gateway { http, url, pass } => {
                use codemill_agent::knowledge::{CallError, call_gateway};
                call_gateway(http, url, pass, tool, args)
                    .await
                    .map_err(|e| match e {
                        CallError::Refused {
                            status: 400,
                            message,
                        } => ToolError::Invalid(message),
                        CallError::Refused { status: 404, .. } => {
                            ToolError::Unknown(tool.to_string())
                        }
                        other => ToolError::Store(format!("codemill: {other}")),
                    })
            }
        }
    }
}

#[derive(Clone)]
pub struct KnowledgeServer {
    source: Source,
    tools: Arc<Vec<Tool>>,
}

impl KnowledgeServer {
    fn new(source: Source) -> KnowledgeServer {
        let tools = tools()
            .into_iter()
            .map(|t| {
                let schema = match t.schema {
                    Value::Object(map) => map,
                    _ => Default::default(),
                };
                Tool::new(t.name, t.description, schema)
            })
            .collect();
        KnowledgeServer {
            source,
            tools: Arc::new(tools),
        }
    }
}

impl ServerHandler for KnowledgeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "codemill's project knowledge. Weigh each result by its tag: verified and human \
             entries are facts, inferred ones are an agent's conclusions, and stale ones cite \
             files that changed since.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !is_tool(&request.name) {
            return Err(ErrorData::invalid_params(
                ToolError::Unknown(request.name.to_string()).to_string(),
                None,
            ));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        // A failed call is a tool result marked as an error, so the model reads why.
        let result = match self.source.call(&request.name, &args).await {
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(
                serde_json::to_string_pretty(&value).unwrap_or_default(),
            )]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        Ok(result.into())
    }
}

async fn run(server: KnowledgeServer) -> Result<ExitCode> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow!("MCP: {e}"))?;
    running.waiting().await.map_err(|e| anyhow!("MCP: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// `codemill mcp --project P`: serve from this home's store until the client closes stdin.
pub async fn serve(opened: Opened, project: &str) -> Result<ExitCode> {
    if !opened.config.projects.contains_key(project) {
        return Err(anyhow!(
            "no project {project:?} (see `codemill project list`)"
        ));
    }
    let store: Store = opened.store.clone();
    run(KnowledgeServer::new(Source::Store(Knowledge::new(
        store,
        project,
        "agent:mcp",
    ))))
    .await
}

/// `codemill mcp --gateway URL`: serve through codemill's gateway under the pass in
/// `CODEMILL_PASS`.
pub async fn serve_gateway(url: &str) -> Result<ExitCode> {
    let pass = std::env::var(PASS_VAR)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| anyhow!("codemill mcp --gateway needs the step's pass in {PASS_VAR}"))?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(anyhow!("--gateway {url:?}: give an http:// URL"));
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| anyhow!("cannot start an HTTP client: {e}"))?;
    run(KnowledgeServer::new(Source::Gateway {
        http,
        url: url.to_string(),
        pass: SecretString::from(pass),
    }))
    .await
}
