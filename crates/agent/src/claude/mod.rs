//! The `claude-code` backend: drives the real Claude Code CLI in print mode with stream-json output.
//!
//! The CLI runs in the worktree under the request's exec policy (sandbox, environment built
//! from nothing) with an isolated HOME/config/tmp under the state dir, so nothing from the host
//! (credentials, settings, auto-update) leaks in; its model is codemill's gateway. Raw stdout
//! lines go to the log as they arrive; [`normalize`] maps them to events.

mod normalize;
mod protocol;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use codemill_core::agent::{AgentMode, AgentOutcome, AgentRun};
use codemill_core::cost::Usage;
use codemill_process::ExecPolicy;
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;

use crate::driver::{self, Launch};
use crate::log::RawLog;
use crate::{Agent, AgentError, AgentRequest, EventSink};

pub(crate) use normalize::Normalizer;

/// The tools a read-only reviewer gets; everything else (Write, Edit, Bash, sub-agents) is gone.
const READ_ONLY_TOOLS: &str = "Read,Grep,Glob";
/// Refused on top of the allow-list, in case a CLI version ignores `--tools`.
const WRITE_TOOLS: &str = "Edit,Write,Bash,NotebookEdit";

/// Shown when the CLI binary is missing.
pub const INSTALL_HINT: &str = "install it with ./scripts/install-agent-clis.sh (./scripts/test runs it) \
     or `npm install @anthropic-ai/claude-code`, then point the claude-code backend at the binary";

/// The Claude Code CLI backend.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    /// The `claude` binary (a bare name is looked up on PATH).
    pub program: PathBuf,
    /// `CLAUDE_CODE_MAX_RETRIES`: the CLI's own retries of failed API calls.
    pub max_api_retries: u32,
    /// `API_TIMEOUT_MS`: the CLI's timeout for one API call.
    pub api_timeout_ms: u64,
}

impl Default for ClaudeCode {
    fn default() -> Self {
        ClaudeCode::new("claude")
    }
}

impl ClaudeCode {
    pub fn new(program: impl Into<PathBuf>) -> ClaudeCode {
        ClaudeCode {
            program: program.into(),
            max_api_retries: 2,
            api_timeout_ms: 60_000,
        }
    }

    /// The arguments for `req`, with `session` as `--session-id` or `--resume`.
    fn args(
        &self,
        req: &AgentRequest,
        session: &SessionArg,
        mcp_config: Option<&Path>,
    ) -> Vec<OsString> {
        // Inside codemill's sandbox (the boundary) write stages run without the CLI's own
        // permission prompts, so the agent can run the repository's tests; unsandboxed, only
        // edits and simple shell inside the cwd are allowed.
        let write_mode = if req.exec.is_sandboxed() {
            "bypassPermissions"
        } else {
            "acceptEdits"
        };
        let mut args: Vec<OsString> = [
            "--print",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
            &req.limits.max_turns.to_string(),
            "--model",
            &req.model,
            "--permission-mode",
            match req.mode {
                AgentMode::Write => write_mode,
                AgentMode::ReadOnly => "default",
            },
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        if req.mode == AgentMode::ReadOnly {
            args.extend(
                ["--tools", READ_ONLY_TOOLS, "--disallowedTools", WRITE_TOOLS].map(OsString::from),
            );
        }
        if let Some(config) = mcp_config {
            // Only codemill's server (never a repository's `.mcp.json`), and its tools allowed
            // without a prompt.
            args.extend([
                "--mcp-config".into(),
                config.as_os_str().to_owned(),
                "--strict-mcp-config".into(),
                "--allowedTools".into(),
                crate::knowledge::names(&format!("mcp__{}__", crate::knowledge::SERVER))
                    .join(",")
                    .into(),
            ]);
        }
        if let Some(system) = &req.system_prompt {
            args.extend(["--append-system-prompt".into(), system.into()]);
        }
        let (flag, id) = match session {
            SessionArg::Resume(id) => ("--resume", id),
            SessionArg::New(id) => ("--session-id", id),
        };
        args.extend([flag.into(), id.into()]);
        // `--` so a prompt starting with `-` is not read as an option.
        args.extend(["--".into(), req.prompt.clone().into()]);
        args
    }

    /// The policy's environment plus the CLI's own: isolated HOME, config and tmp, the
    /// gateway as base URL and the per-step token as key.
    fn policy(&self, req: &AgentRequest, dirs: &StateDirs) -> ExecPolicy {
        req.exec
            .clone()
            .env("HOME", &dirs.home)
            .env("CLAUDE_CONFIG_DIR", &dirs.config)
            .env("CLAUDE_CODE_TMPDIR", &dirs.tmp)
            .env("TMPDIR", &dirs.tmp)
            .env(
                "ANTHROPIC_BASE_URL",
                req.endpoint.base_url.trim_end_matches('/'),
            )
            .env("ANTHROPIC_API_KEY", req.endpoint.api_key.expose_secret())
            // Without this the CLI calls the vendor's own hosts (titles, telemetry, updates).
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("CLAUDE_CODE_MAX_RETRIES", self.max_api_retries.to_string())
            .env("API_TIMEOUT_MS", self.api_timeout_ms.to_string())
            .env("DISABLE_AUTOUPDATER", "1")
            // The sandbox is the boundary: tell the CLI so bypassPermissions is accepted.
            .env(
                "IS_SANDBOX",
                if req.exec.is_sandboxed() { "1" } else { "0" },
            )
    }

    async fn run_inner(
        &self,
        req: &AgentRequest,
        events: &EventSink,
    ) -> Result<AgentRun, AgentError> {
        let dirs = StateDirs::create(&req.state_dir)?;
        let mut log = RawLog::open(&req.log_path)?;
        let session = match &req.resume_session {
            Some(id) => SessionArg::Resume(id.clone()),
            None => SessionArg::New(uuid::Uuid::new_v4().to_string()),
        };
        let mcp_config = write_mcp_config(req, &dirs)?;
        let started = Instant::now();
        let mut normalizer = Normalizer::new();
        let launch = Launch {
            name: "Claude Code",
            program: &self.program,
            args: self.args(req, &session, mcp_config.as_deref()),
            policy: self.policy(req, &dirs),
            cwd: &req.workdir,
            install_hint: INSTALL_HINT,
        };
        let stop = match driver::drive(launch, req, &mut normalizer, &mut log, events).await? {
            Ok(stop) => stop,
            Err(outcome) => return Ok(finished(outcome, None)),
        };
        let turns_at_limit = normalizer.turns();
        let outcome = stop.outcome(started, turns_at_limit, |code, stderr| {
            normalize::judge(normalizer.result(), code, stderr, normalizer.turns())
        });
        let session_id = normalizer
            .session_id()
            .map(str::to_string)
            .or_else(|| Some(session.id().to_string()));
        let result = normalizer.result();
        Ok(AgentRun {
            outcome,
            session_id,
            final_text: normalizer.final_text(),
            usage: result
                .and_then(|r| r.usage)
                .map(|u| u.to_usage())
                .unwrap_or_default(),
            reported_cost_usd: result.and_then(|r| r.total_cost_usd),
            turns: normalizer.turns(),
        })
    }
}

impl Agent for ClaudeCode {
    fn name(&self) -> &'static str {
        "claude-code"
    }

    fn run<'a>(
        &'a self,
        req: &'a AgentRequest,
        events: EventSink,
    ) -> BoxFuture<'a, Result<AgentRun, AgentError>> {
        Box::pin(async move { self.run_inner(req, &events).await })
    }
}

/// How the session is chosen on the command line.
enum SessionArg {
    /// `--session-id <uuid>`: we pick the id so it is known even if the CLI dies early.
    New(String),
    /// `--resume <id>`: continue with the full earlier history.
    Resume(String),
}

impl SessionArg {
    fn id(&self) -> &str {
        match self {
            SessionArg::New(id) | SessionArg::Resume(id) => id,
        }
    }
}

/// Writes `--mcp-config` for a run offered the knowledge tools (private: it holds the pass).
fn write_mcp_config(req: &AgentRequest, dirs: &StateDirs) -> Result<Option<PathBuf>, AgentError> {
    let Some(server) = crate::knowledge::server(req) else {
        return Ok(None);
    };
    let config = serde_json::json!({
        "mcpServers": {
            crate::knowledge::SERVER: {
                "type": "stdio",
                "command": server.command,
                "args": server.args,
                "env": {crate::knowledge::PASS_VAR: server.pass},
            }
        }
    });
    let path = dirs.config.join("codemill-mcp.json");
    crate::private::write(&path, config.to_string()).map_err(AgentError::StateDir)?;
    Ok(Some(path))
}

/// The isolated HOME, config and tmp directories under the state dir.
struct StateDirs {
    home: PathBuf,
    config: PathBuf,
    tmp: PathBuf,
}

impl StateDirs {
    fn create(state_dir: &Path) -> Result<StateDirs, AgentError> {
        let dirs = StateDirs {
            home: state_dir.join("home"),
            config: state_dir.join("config"),
            tmp: state_dir.join("tmp"),
        };
        for dir in [&dirs.home, &dirs.config, &dirs.tmp] {
            crate::private::create_dir(dir).map_err(AgentError::StateDir)?;
        }
        Ok(dirs)
    }
}

fn finished(outcome: AgentOutcome, session_id: Option<String>) -> AgentRun {
    AgentRun {
        outcome,
        session_id,
        final_text: String::new(),
        usage: Usage::default(),
        reported_cost_usd: None,
        turns: 0,
    }
}

impl driver::StreamNormalizer for Normalizer {
    fn push_line(&mut self, line: &str) -> Vec<codemill_core::agent::AgentEvent> {
        Normalizer::push_line(self, line)
    }

    fn finish(&mut self) -> Vec<codemill_core::agent::AgentEvent> {
        Normalizer::finish(self)
    }
}
