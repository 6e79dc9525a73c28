//! The knowledge tools in an agent run: the MCP server every CLI starts (codemill itself, run
//! as `codemill mcp --gateway URL` inside the same sandbox, with the step's pass), and the names
//! each CLI gives its tools. The server reaches the project's knowledge only through the
//! gateway, so nothing in the sandbox opens the store.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::AgentRequest;

/// The MCP server's name in every CLI's configuration (tools are named after it).
pub const SERVER: &str = "codemill";

/// The variable the server reads the step's pass from.
pub const PASS_VAR: &str = "CODEMILL_PASS";

/// How a run offers the knowledge tools.
#[derive(Debug, Clone)]
pub struct KnowledgeTools {
    /// The codemill binary, at a path that exists inside the sandbox; each CLI starts it as
    /// `mcp --gateway <the request's base URL>` with the pass in `CODEMILL_PASS`. The built-in
    /// agent calls the gateway itself and does not start it.
    pub program: PathBuf,
}

/// The MCP server of one run, ready for a CLI's configuration.
pub(crate) struct Server {
    pub command: String,
    pub args: Vec<String>,
    /// The step's pass: it dies with the step, and the configuration holding it is private.
    pub pass: String,
}

/// The server `req` asks for, if any.
pub(crate) fn server(req: &AgentRequest) -> Option<Server> {
    let tools = req.knowledge.as_ref()?;
    Some(Server {
        command: tools.program.display().to_string(),
        args: vec![
            "mcp".into(),
            "--gateway".into(),
            req.endpoint.base_url.trim_end_matches('/').to_string(),
        ],
        pass: req.endpoint.api_key.expose_secret().to_string(),
    })
}

/// The tool names as `prefix{tool}` (each CLI prefixes MCP tools its own way).
pub(crate) fn names(prefix: &str) -> Vec<String> {
    codemill_core::knowledge::tools()
        .iter()
        .map(|t| format!("{prefix}{}", t.name))
        .collect()
}

/// Why a knowledge call through the gateway gave no result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The gateway answered with an error: 400 (bad arguments, the message says how), 404 (no
    /// such tool), 401 (no live pass) or 503 (the store).
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("the knowledge tools are unavailable: {0}")]
    Unreachable(String),
}

/// One knowledge tool call through the gateway at `base_url` under `pass`: what every CLI's
/// MCP server (`codemill mcp --gateway`) and the built-in agent do.
pub async fn call_gateway(
    http: &reqwest::Client,
    base_url: &str,
    pass: &SecretString,
    tool: &str,
    args: &Value,
) -> Result<Value, CallError> {
    let url = format!(
        "{}{}{tool}",
        base_url.trim_end_matches('/'),
        codemill_core::knowledge::ROUTE
    );
    let response = http
        .post(url)
        .bearer_auth(pass.expose_secret())
        .json(args)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| CallError::Unreachable(e.without_url().to_string()))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| {
        CallError::Unreachable(format!("unreadable answer ({status}): {}", e.without_url()))
    })?;
    if status.is_success() {
        return Ok(body.get("result").cloned().unwrap_or(Value::Null));
    }
    Err(CallError::Refused {
        status: status.as_u16(),
        message: body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the knowledge tool failed")
            .to_string(),
    })
}
