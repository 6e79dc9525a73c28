//! The `claude-code` backend: drives the real Claude Code CLI in print mode with stream-json output.
//!
//! The CLI runs in the worktree with an isolated HOME/config/tmp under the state dir and a
//! cleared environment, so nothing from the host (credentials, settings, auto-update) leaks in.
//! Raw stdout lines go to the log as they arrive; [`normalize`] maps them to events.

mod normalize;
mod protocol;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codemill_core::agent::{AgentEvent, AgentMode, AgentOutcome, AgentRun, TimeoutKind};
use codemill_core::cost::Usage;
use codemill_process::{Cmd, ProcessError, Running, drain_capped};
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::log::RawLog;
use crate::{Agent, AgentError, AgentRequest, EventSink, emit};

pub(crate) use normalize::Normalizer;

/// Stderr kept for error messages; the CLI is quiet there unless something is badly wrong.
const STDERR_CAP: usize = 64 * 1024;
/// After stdout closes, how long the CLI may take to exit before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
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

    /// The full command line for `req`, with `session` as `--session-id` or `--resume`.
    fn command(&self, req: &AgentRequest, dirs: &StateDirs, session: &SessionArg) -> Cmd {
        let mut cmd = Cmd::new(&self.program)
            .cwd(&req.workdir)
            .env_clear()
            .env("HOME", &dirs.home)
            .env("CLAUDE_CONFIG_DIR", &dirs.config)
            .env("CLAUDE_CODE_TMPDIR", &dirs.tmp)
            .env(
                "ANTHROPIC_BASE_URL",
                req.endpoint.base_url.trim_end_matches('/'),
            )
            .env("ANTHROPIC_API_KEY", req.endpoint.api_key.expose_secret())
            // Without this the CLI calls the vendor's own hosts (titles, telemetry, updates).
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("CLAUDE_CODE_MAX_RETRIES", self.max_api_retries.to_string())
            .env("API_TIMEOUT_MS", self.api_timeout_ms.to_string())
            .env("DISABLE_AUTOUPDATER", "1");
        if let Some(path) = std::env::var_os("PATH") {
            cmd = cmd.env("PATH", path);
        }
        for (key, value) in &req.extra_env {
            cmd = cmd.env(key, value);
        }
        cmd = cmd.args([
            "--print",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
            &req.limits.max_turns.to_string(),
            "--model",
            &req.model,
            // Edits and simple shell inside the cwd; as root bypassPermissions is refused anyway.
            "--permission-mode",
            "acceptEdits",
        ]);
        if req.mode == AgentMode::ReadOnly {
            cmd = cmd.args(["--tools", READ_ONLY_TOOLS, "--disallowedTools", WRITE_TOOLS]);
        }
        if let Some(system) = &req.system_prompt {
            cmd = cmd.args(["--append-system-prompt", system]);
        }
        cmd = match session {
            SessionArg::Resume(id) => cmd.args(["--resume", id]),
            SessionArg::New(id) => cmd.args(["--session-id", id]),
        };
        // `--` so a prompt starting with `-` is not read as an option.
        cmd.args(["--", &req.prompt])
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
        let cmd = self.command(req, &dirs, &session);
        tracing::debug!(command = ?cmd, "starting Claude Code");
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(ProcessError::NotFound { program }) => {
                return Ok(finished(
                    AgentOutcome::CliMissing {
                        program,
                        hint: INSTALL_HINT.to_string(),
                    },
                    None,
                ));
            }
            Err(e) => {
                return Ok(finished(
                    AgentOutcome::Failed {
                        message: e.to_string(),
                    },
                    None,
                ));
            }
        };
        tracing::debug!(pid = ?child.pid(), "Claude Code started");
        let stderr = tokio::spawn(drain_capped(child.take_stderr(), STDERR_CAP));
        let mut normalizer = Normalizer::new();
        let stopped = read_lines(&mut child, req, started, &mut normalizer, &mut log, events).await;
        let stopped = match stopped {
            Ok(stopped) => stopped,
            Err(e) => {
                child.kill().await;
                return Err(e);
            }
        };
        for event in normalizer.finish() {
            emit(events, event);
        }
        let outcome = match stopped {
            Some(limit) => {
                child.kill().await;
                AgentOutcome::TimedOut {
                    limit,
                    after_secs: started.elapsed().as_secs(),
                }
            }
            None => {
                let code = wait_exit(&mut child).await;
                // Only read stderr once the group is gone, so the drain has ended.
                let (stderr, _) = stderr.await.unwrap_or_default();
                if !stderr.trim().is_empty() {
                    tracing::debug!(%stderr, "Claude Code stderr");
                }
                normalize::judge(normalizer.result(), code, &stderr, normalizer.turns())
            }
        };
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
            fs_err::create_dir_all(dir).map_err(AgentError::StateDir)?;
        }
        Ok(dirs)
    }
}

/// Reads stdout line by line until it closes (`None`) or a limit is hit (`Some(kind)`).
async fn read_lines(
    child: &mut Running,
    req: &AgentRequest,
    started: Instant,
    normalizer: &mut Normalizer,
    log: &mut RawLog,
    events: &EventSink,
) -> Result<Option<TimeoutKind>, AgentError> {
    let Some(stdout) = child.take_stdout() else {
        return Ok(None);
    };
    let mut reader = BufReader::new(stdout);
    let deadline = tokio::time::Instant::from_std(started + req.limits.wall_clock);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(req.limits.idle, reader.read_until(b'\n', &mut line));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(Some(TimeoutKind::WallClock)),
            read = read => match read {
                Err(_) => return Ok(Some(TimeoutKind::Idle)),
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(_)) => {
                    log.line(&line).await?;
                    for event in normalizer.push_line(&String::from_utf8_lossy(&line)) {
                        if let AgentEvent::Notice { message } = &event {
                            tracing::debug!(%message, "claude-code notice");
                        }
                        emit(events, event);
                    }
                }
                Ok(Err(e)) => {
                    emit(events, AgentEvent::Notice {
                        message: format!("reading Claude Code output failed: {e}"),
                    });
                    return Ok(None);
                }
            },
        }
    }
}

/// The exit code once stdout has closed; kills the group if the CLI lingers.
async fn wait_exit(child: &mut Running) -> Option<i32> {
    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(Ok(status)) => {
            // Tools the CLI started in the background must not outlive the run.
            child.kill().await;
            status.code()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "waiting for Claude Code failed");
            child.kill().await;
            None
        }
        Err(_) => {
            tracing::warn!("Claude Code did not exit after closing stdout; killing it");
            child.kill().await;
            None
        }
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
