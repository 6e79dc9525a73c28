//! The knowledge tools in an agent run: the MCP server every CLI starts (codemill itself, run
//! as `codemill mcp --gateway URL` inside the same sandbox, with the step's pass), and the names
//! each CLI gives its tools. The server reaches the project's knowledge only through the
//! gateway, so nothing in the sandbox opens the store.

use std::path::PathBuf;

use secrecy::ExposeSecret;

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
