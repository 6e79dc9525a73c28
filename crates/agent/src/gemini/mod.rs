//! The `gemini` backend: drives the real Gemini CLI (0.61.x) headless with stream-json output.
//!
//! The command line (see [`GeminiCli::command`]):
//!
//! ```text
//! gemini --output-format stream-json -m <model> --approval-mode yolo|default
//!        [--policy <state>/policies/read-only.toml]
//!        --session-id <new uuid> | --resume <session id>
//!        --prompt=<prompt>
//! ```
//!
//! run in the worktree with a cleared environment: `PATH`, `HOME=<state>/home`,
//! `TMPDIR=<state>/tmp`, `GOOGLE_GEMINI_BASE_URL`, `GEMINI_API_KEY` (only ever in the child's
//! environment), `GEMINI_CLI_TRUST_WORKSPACE=true` (headless runs refuse untrusted folders),
//! `GEMINI_CLI_NO_RELAUNCH=true` (one node process instead of a launcher plus a child),
//! `GEMINI_TELEMETRY_ENABLED=false` (env beats a repository's `.gemini/settings.json`), and the
//! system settings paths pointed at a missing file so host-wide settings do not leak in.
//! `HOME/.gemini/settings.json` ([`setup::settings`]) turns off usage statistics, telemetry,
//! auto-update, loop detection and `.env` loading; with it the CLI made no connection other than
//! to the model endpoint (strace: one loopback connect, no DNS).
//!
//! - Write mode: `--approval-mode yolo`, so write_file, replace and run_shell_command run.
//! - Read-only mode: three independent locks. `--approval-mode default`, under which headless
//!   runs drop every tool that would need a confirmation; a `--policy` that denies `*` and allows
//!   only the reading tools; and `tools.core` limited to them. The model is offered exactly
//!   list_directory, read_file, grep_search and glob; a call to anything else gets
//!   `Tool "write_file" not found` and changes nothing.
//! - Fix rounds resume: the CLI keeps sessions under `HOME/.gemini/tmp/<project>/chats/`, keyed
//!   by the worktree path, and `--resume <uuid>` sends the whole earlier conversation. New
//!   sessions get their id from us (`--session-id`), so it is known even if the CLI dies early.
//!   An unknown id ends with exit 42 and `Error resuming session` on stderr → `Failed`.
//! - Turns: the CLI's own limit (`model.maxSessionTurns`, counted per invocation) ends the run
//!   with a `FatalTurnLimitedError` result and exit 53 → `MaxTurns`. codemill also counts model
//!   responses in the stream and kills the process group when turn `max + 1` starts.
//! - Wall-clock and idle limits kill the group (SIGKILL, shell commands included) → `TimedOut`.
//! - API errors end with an `[API Error: ...]` result; the status comes from the message or the
//!   exit code ([`normalize::api_error`]). `general.maxAttempts` bounds the CLI's retries.
//! - `gemini --version` is checked once per backend value: not 0.61.x → `CliWrongVersion`.
//!
//! Known limit: the worktree must be trusted, so a repository's own `.gemini/settings.json` is
//! merged over ours. It cannot give a read-only run its tools back (the policy and the approval
//! mode are command-line arguments) nor turn telemetry on (the environment wins), but it could
//! turn usage statistics back on.

mod normalize;
mod protocol;
mod setup;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use codemill_core::agent::{AgentEvent, AgentMode, AgentOutcome, AgentRun, TimeoutKind};
use codemill_core::cost::Usage;
use codemill_process::{Cmd, ProcessError, Running, drain_capped};
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::OnceCell;

use crate::log::RawLog;
use crate::{Agent, AgentError, AgentRequest, Api, EventSink, emit};

use normalize::Normalizer;
use setup::StateDirs;

/// Stderr kept for error messages (the CLI prints stack traces there on API errors).
const STDERR_CAP: usize = 64 * 1024;
/// After stdout closes, how long the CLI may take to exit before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// `gemini --version` loads the whole bundle: ~2–3 s on a busy machine.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);
/// The supported CLI release line; flags, settings and events were measured on 0.61.0.
pub const SUPPORTED_VERSION: &str = "0.61.x";
const SUPPORTED_PREFIX: &str = "0.61.";

/// Shown when the CLI binary is missing.
pub const INSTALL_HINT: &str = "install it with ./scripts/install-agent-clis.sh (./scripts/test runs it) \
     or `npm install @google/gemini-cli@0.61.0`, then point the gemini backend at the binary";

/// The Gemini CLI backend.
#[derive(Debug, Clone)]
pub struct GeminiCli {
    /// The `gemini` binary (a bare name is looked up on PATH).
    pub program: PathBuf,
    /// `general.maxAttempts`: tries per model call, 1 = no retry (the CLI caps it at 10).
    pub max_attempts: u32,
    /// Also set the CLI's own turn limit (`model.maxSessionTurns`). On by default; codemill's
    /// own count is the backstop, and tests switch this off to exercise it.
    pub cli_turn_limit: bool,
    /// `gemini --version`, read once per backend value.
    version: OnceCell<String>,
}

impl Default for GeminiCli {
    fn default() -> Self {
        GeminiCli::new("gemini")
    }
}

impl GeminiCli {
    pub fn new(program: impl Into<PathBuf>) -> GeminiCli {
        GeminiCli {
            program: program.into(),
            max_attempts: 3,
            cli_turn_limit: true,
            version: OnceCell::new(),
        }
    }

    /// The environment every invocation gets, on top of a cleared one.
    fn base_command(&self, dirs: &StateDirs) -> Cmd {
        let mut cmd = Cmd::new(&self.program)
            .env_clear()
            .env("HOME", &dirs.home)
            .env("TMPDIR", &dirs.tmp)
            .env("GEMINI_CLI_NO_RELAUNCH", "true")
            .env("GEMINI_CLI_SYSTEM_SETTINGS_PATH", &dirs.no_system_settings)
            .env("GEMINI_CLI_SYSTEM_DEFAULTS_PATH", &dirs.no_system_settings);
        if let Some(path) = std::env::var_os("PATH") {
            cmd = cmd.env("PATH", path);
        }
        cmd
    }

    /// The full command line for `req`, with `session` as `--session-id` or `--resume`.
    fn command(&self, req: &AgentRequest, dirs: &StateDirs, session: &SessionArg) -> Cmd {
        let mut cmd = self
            .base_command(dirs)
            .cwd(&req.workdir)
            .env(
                "GOOGLE_GEMINI_BASE_URL",
                req.endpoint.base_url.trim_end_matches('/'),
            )
            .env("GEMINI_API_KEY", req.endpoint.api_key.expose_secret())
            .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
            .env("GEMINI_TELEMETRY_ENABLED", "false");
        for (key, value) in &req.extra_env {
            cmd = cmd.env(key, value);
        }
        // -m always: without it the CLI's router asks a model for JSON and retries ~80 s.
        cmd = cmd.args(["--output-format", "stream-json", "-m", &req.model]);
        cmd = match req.mode {
            AgentMode::Write => cmd.args(["--approval-mode", "yolo"]),
            AgentMode::ReadOnly => cmd
                .args(["--approval-mode", "default", "--policy"])
                .arg(&dirs.read_only_policy),
        };
        cmd = match session {
            SessionArg::New(id) => cmd.args(["--session-id", id]),
            SessionArg::Resume(id) => cmd.args(["--resume", id]),
        };
        // `--prompt=` so a prompt starting with `-` is not read as an option.
        cmd.arg(format!("--prompt={}", req.prompt))
    }

    /// The CLI's version, read once; `Err` is the outcome to report instead of running.
    async fn check_version(&self, dirs: &StateDirs) -> Result<(), AgentOutcome> {
        let version = match self.version.get() {
            Some(version) => version.clone(),
            None => {
                let version = self.read_version(dirs).await?;
                // A concurrent run may have set it first; both read the same binary.
                let _ = self.version.set(version.clone());
                version
            }
        };
        if version.starts_with(SUPPORTED_PREFIX) {
            Ok(())
        } else {
            Err(AgentOutcome::CliWrongVersion {
                program: self.program.display().to_string(),
                found: version,
                supported: SUPPORTED_VERSION.to_string(),
            })
        }
    }

    async fn read_version(&self, dirs: &StateDirs) -> Result<String, AgentOutcome> {
        let cmd = self.base_command(dirs).cwd(&dirs.home).arg("--version");
        let out = match cmd.output(Some(VERSION_TIMEOUT), 16 * 1024).await {
            Ok(out) => out,
            Err(ProcessError::NotFound { program }) => {
                return Err(AgentOutcome::CliMissing {
                    program,
                    hint: INSTALL_HINT.to_string(),
                });
            }
            Err(e) => {
                return Err(AgentOutcome::Failed {
                    message: e.to_string(),
                });
            }
        };
        // The version is the last line; warnings may come before it.
        let found = out
            .stdout
            .split_whitespace()
            .rev()
            .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string);
        match found {
            Some(version) if out.success() => Ok(version),
            _ => Err(AgentOutcome::Failed {
                message: format!(
                    "`{} --version` did not report a version: {}",
                    self.program.display(),
                    crate::text::truncate(out.combined().trim(), 500)
                ),
            }),
        }
    }

    async fn run_inner(
        &self,
        req: &AgentRequest,
        events: &EventSink,
    ) -> Result<AgentRun, AgentError> {
        if req.endpoint.api != Api::Gemini {
            return Ok(finished(
                AgentOutcome::Failed {
                    message: format!(
                        "the gemini backend speaks the Gemini API, but the endpoint is `{}`",
                        req.endpoint.api.as_str()
                    ),
                },
                None,
            ));
        }
        let dirs = StateDirs::create(&req.state_dir)?;
        let settings = setup::settings(
            req.mode,
            self.cli_turn_limit.then_some(req.limits.max_turns),
            self.max_attempts,
        );
        dirs.write(&settings, req.system_prompt.as_deref(), req.mode)?;
        let mut log = RawLog::open(&req.log_path)?;
        if let Err(outcome) = self.check_version(&dirs).await {
            return Ok(finished(outcome, req.resume_session.clone()));
        }
        let session = match &req.resume_session {
            Some(id) => SessionArg::Resume(id.clone()),
            None => SessionArg::New(uuid::Uuid::new_v4().to_string()),
        };
        let cmd = self.command(req, &dirs, &session);
        tracing::debug!(command = ?cmd, "starting Gemini CLI");
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(ProcessError::NotFound { program }) => {
                let hint = INSTALL_HINT.to_string();
                return Ok(finished(AgentOutcome::CliMissing { program, hint }, None));
            }
            Err(e) => {
                let message = e.to_string();
                return Ok(finished(AgentOutcome::Failed { message }, None));
            }
        };
        tracing::debug!(pid = ?child.pid(), "Gemini CLI started");
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
            Stop::Timeout(limit) => {
                child.kill().await;
                AgentOutcome::TimedOut {
                    limit,
                    after_secs: started.elapsed().as_secs(),
                }
            }
            Stop::TurnLimit => {
                child.kill().await;
                AgentOutcome::MaxTurns {
                    turns: req.limits.max_turns,
                }
            }
            Stop::Eof => {
                let code = wait_exit(&mut child).await;
                // Only read stderr once the group is gone, so the drain has ended.
                let (stderr, _) = stderr.await.unwrap_or_default();
                if !stderr.trim().is_empty() {
                    tracing::debug!(%stderr, "Gemini CLI stderr");
                }
                normalizer.judge(code, &stderr)
            }
        };
        let turns = match outcome {
            AgentOutcome::MaxTurns { turns } => turns,
            _ => normalizer.turns(),
        };
        let session_id = normalizer
            .session_id()
            .map(str::to_string)
            .or_else(|| Some(session.id().to_string()));
        Ok(AgentRun {
            outcome,
            session_id,
            final_text: normalizer.final_text(),
            usage: normalizer.usage(),
            // The CLI reports tokens only; the runner prices them.
            reported_cost_usd: None,
            turns,
        })
    }
}

impl Agent for GeminiCli {
    fn name(&self) -> &'static str {
        "gemini"
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

/// Why reading stdout stopped.
enum Stop {
    /// The CLI closed stdout (it is exiting).
    Eof,
    Timeout(TimeoutKind),
    /// The model started a turn beyond `max_turns`.
    TurnLimit,
}

/// Reads stdout line by line until it closes, a time limit is hit, or the turn limit is passed.
async fn read_lines(
    child: &mut Running,
    req: &AgentRequest,
    started: Instant,
    normalizer: &mut Normalizer,
    log: &mut RawLog,
    events: &EventSink,
) -> Result<Stop, AgentError> {
    let Some(stdout) = child.take_stdout() else {
        return Ok(Stop::Eof);
    };
    let mut reader = BufReader::new(stdout);
    let deadline = tokio::time::Instant::from_std(started + req.limits.wall_clock);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(req.limits.idle, reader.read_until(b'\n', &mut line));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(Stop::Timeout(TimeoutKind::WallClock)),
            read = read => match read {
                Err(_) => return Ok(Stop::Timeout(TimeoutKind::Idle)),
                Ok(Ok(0)) => return Ok(Stop::Eof),
                Ok(Ok(_)) => {
                    log.line(&line).await?;
                    for event in normalizer.push_line(&String::from_utf8_lossy(&line)) {
                        if let AgentEvent::Notice { message } = &event {
                            tracing::debug!(%message, "gemini notice");
                        }
                        emit(events, event);
                    }
                    if normalizer.turns() > req.limits.max_turns {
                        return Ok(Stop::TurnLimit);
                    }
                }
                Ok(Err(e)) => {
                    emit(events, AgentEvent::Notice {
                        message: format!("reading Gemini CLI output failed: {e}"),
                    });
                    return Ok(Stop::Eof);
                }
            },
        }
    }
}

/// The exit code once stdout has closed; kills the group if the CLI lingers.
async fn wait_exit(child: &mut Running) -> Option<i32> {
    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(Ok(status)) => {
            // Shell commands the CLI started in the background must not outlive the run.
            child.kill().await;
            status.code()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "waiting for Gemini CLI failed");
            child.kill().await;
            None
        }
        Err(_) => {
            tracing::warn!("Gemini CLI did not exit after closing stdout; killing it");
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
