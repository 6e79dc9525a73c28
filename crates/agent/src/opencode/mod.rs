//! The `opencode` backend: drives the real opencode CLI (1.18.x) with `run --format json`.
//!
//! The command line (see [`Opencode::command`]), run in the worktree:
//!
//! ```text
//! sh -c 'p=$1; shift; exec "$@" < "$p"' sh <state>/prompt.md \
//!   opencode run --format json --agent codemill --model codemill/<model> \
//!                [--title codemill | --session <id>]
//! ```
//!
//! The prompt goes in through stdin, redirected from a file: a message argument containing a
//! space is wrapped in quotes by opencode (inner quotes escaped), and splitting it into words
//! crashes opencode on any word that looks like a number (yargs turns it into one). stdin is
//! still a plain file, never a pipe, so nothing waits on it; `exec` keeps opencode the leader of
//! its own process group.
//!
//! The environment is cleared: `PATH`, `HOME`, `XDG_{CONFIG,DATA,CACHE,STATE}_HOME` and `TMPDIR`
//! under the state dir, `OPENCODE_CONFIG=<state>/opencode.json` ([`setup::config`]), the key in
//! `CODEMILL_OPENCODE_API_KEY` (the config says `{env:CODEMILL_OPENCODE_API_KEY}`, so the key is
//! never on disk), the `OPENCODE_DISABLE_*` switches and `OPENCODE_PURE=1` that stop model
//! catalogue fetches, auto-update, sharing, LSP downloads, plugins, external skills and the
//! repository's own `opencode.json`, and `npm_config_offline=true` as a backstop. With a stub
//! for opencode's plugin package in its config dir ([`setup`]) strace saw a single connection:
//! loopback, to the model endpoint. Like every variable, the key is inherited by the commands
//! the agent runs.
//!
//! - Write mode: the `codemill` agent allows every tool (write, edit, bash, ...) without asking,
//!   but denies web access, questions, sub-agents and edits outside the worktree.
//! - Read-only mode: the agent denies everything but read, glob, grep and list. Denied tools are
//!   not offered to the model; a call anyway fails with "unavailable tool" and changes nothing.
//! - Fix rounds: `--session <id>` continues the session stored under the state dir's XDG data
//!   dir; the model gets the whole earlier conversation. An unknown id: exit 1, `Session not
//!   found` on stderr → `Failed`.
//! - Turns: the agent's `steps` is `max_turns`, but at the limit opencode only tells the model to
//!   stop; a model that keeps calling tools goes on. codemill counts model calls and kills the
//!   group once the last allowed one asks for tools → `MaxTurns`; work done so far stays.
//! - Wall-clock and idle limits kill the group → `TimedOut`. opencode starts each bash command
//!   in a new session, outside its group, so after every run (and when a run is dropped) each
//!   process carrying this run's marker variable is killed too ([`reap`]).
//! - API errors arrive as an `error` line with the HTTP status → `ApiError`. opencode retries
//!   429/5xx and connection errors itself, 5 times, waiting `retry-after(-ms)` when the server
//!   sends one and 2, 4, 8, 16, 30 s otherwise; this is not configurable in 1.18. A 401 is not
//!   retried.

mod normalize;
mod protocol;
mod reap;
mod setup;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use codemill_core::agent::{AgentEvent, AgentOutcome, AgentRun, TimeoutKind};
use codemill_core::cost::Usage;
use codemill_process::{Cmd, ProcessError, Running, drain_capped};
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::OnceCell;

use crate::log::RawLog;
use crate::{Agent, AgentError, AgentRequest, EventSink, emit};

use normalize::Normalizer;
use reap::{RUN_MARKER_VAR, Reaper};
use setup::{AGENT_NAME, API_KEY_VAR, PROVIDER_ID, StateDirs};

/// Stderr kept for error messages.
const STDERR_CAP: usize = 64 * 1024;
/// After stdout closes, how long opencode may take to exit before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// `opencode --version` boots the whole 177 MB binary: 1.2–1.5 s measured.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);
/// The supported release line; flags, config and events were measured on 1.18.33.
pub const SUPPORTED_VERSION: &str = "1.18.x";
const SUPPORTED_PREFIX: &str = "1.18.";
/// Title of new sessions; an explicit title also saves the model request opencode would
/// otherwise make to invent one.
const SESSION_TITLE: &str = "codemill";

/// Shown when the CLI binary is missing.
pub const INSTALL_HINT: &str = "install it with ./scripts/install-agent-clis.sh (./scripts/test runs it) \
     or `npm install opencode-ai@1.18.33`, then point the opencode backend at the binary";

/// The opencode CLI backend.
#[derive(Debug, Clone)]
pub struct Opencode {
    /// The `opencode` binary (a bare name is looked up on PATH).
    pub program: PathBuf,
    /// `opencode --version`, read once per backend value.
    version: OnceCell<String>,
}

impl Default for Opencode {
    fn default() -> Self {
        Opencode::new("opencode")
    }
}

impl Opencode {
    pub fn new(program: impl Into<PathBuf>) -> Opencode {
        Opencode {
            program: program.into(),
            version: OnceCell::new(),
        }
    }

    /// The isolated environment every invocation gets, on top of a cleared one.
    fn base_command(&self, program: impl AsRef<std::ffi::OsStr>, dirs: &StateDirs) -> Cmd {
        let mut cmd = Cmd::new(program)
            .env_clear()
            .env("HOME", &dirs.home)
            .env("XDG_CONFIG_HOME", &dirs.xdg_config)
            .env("XDG_DATA_HOME", &dirs.xdg_data)
            .env("XDG_CACHE_HOME", &dirs.xdg_cache)
            .env("XDG_STATE_HOME", &dirs.xdg_state)
            .env("TMPDIR", &dirs.tmp);
        if let Some(path) = std::env::var_os("PATH") {
            cmd = cmd.env("PATH", path);
        }
        cmd
    }

    /// The full command line for `req`; `marker` is this run's `RUN_MARKER_VAR` value.
    fn command(&self, req: &AgentRequest, dirs: &StateDirs, marker: &str) -> Cmd {
        let mut cmd = self
            .base_command("sh", dirs)
            .cwd(&req.workdir)
            .env("OPENCODE_CONFIG", &dirs.config_file)
            .env(API_KEY_VAR, req.endpoint.api_key.expose_secret())
            // No catalogue download from models.dev: the config defines the model.
            .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
            .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
            .env("OPENCODE_DISABLE_SHARE", "1")
            .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
            .env("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1")
            .env("OPENCODE_PURE", "1")
            .env("OPENCODE_DISABLE_EXTERNAL_SKILLS", "1")
            // The repository's opencode.json could loosen the read-only permissions or add
            // plugins. This also hides its AGENTS.md, which the config lists instead.
            .env("OPENCODE_DISABLE_PROJECT_CONFIG", "1")
            .env("OPENCODE_DISABLE_EMBEDDED_WEB_UI", "1")
            .env("npm_config_offline", "true")
            .env(RUN_MARKER_VAR, marker);
        for (key, value) in &req.extra_env {
            cmd = cmd.env(key, value);
        }
        let model = format!("{PROVIDER_ID}/{}", req.model);
        cmd = cmd
            .args(["-c", "p=$1; shift; exec \"$@\" < \"$p\"", "sh"])
            .arg(&dirs.prompt_file)
            .arg(&self.program)
            .args(["run", "--format", "json", "--agent", AGENT_NAME, "--model"])
            .arg(model);
        match &req.resume_session {
            Some(id) => cmd.args(["--session", id]),
            None => cmd.args(["--title", SESSION_TITLE]),
        }
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
        let cmd = self
            .base_command(&self.program, dirs)
            .cwd(&dirs.home)
            .arg("--version");
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
        // `1.18.33` alone on stdout; take the last version-looking word in case of warnings.
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
        let Some(npm) = setup::provider_package(req.endpoint.api) else {
            let message = format!(
                "the opencode backend speaks the Anthropic or OpenAI Chat API, but the endpoint \
                 is `{}`",
                req.endpoint.api.as_str()
            );
            return Ok(finished(AgentOutcome::Failed { message }, None));
        };
        let dirs = StateDirs::new(&req.state_dir);
        dirs.create()?;
        dirs.write_files(req, npm)?;
        let mut log = RawLog::open(&req.log_path)?;
        if let Err(outcome) = self.check_version(&dirs).await {
            return Ok(finished(outcome, req.resume_session.clone()));
        }
        let marker = uuid::Uuid::new_v4().to_string();
        let cmd = self.command(req, &dirs, &marker);
        tracing::debug!(command = ?cmd, "starting opencode");
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let message = e.to_string();
                return Ok(finished(AgentOutcome::Failed { message }, None));
            }
        };
        tracing::debug!(pid = ?child.pid(), "opencode started");
        let stderr = tokio::spawn(drain_capped(child.take_stderr(), STDERR_CAP));
        let mut normalizer = Normalizer::new(Some(req.model.clone()));
        let reaper = Reaper::new(&marker);
        let stopped = read_lines(&mut child, req, started, &mut normalizer, &mut log, events).await;
        let stopped = match stopped {
            Ok(stopped) => stopped,
            Err(e) => {
                child.kill().await;
                reaper.reap().await;
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
                    tracing::debug!(%stderr, "opencode stderr");
                }
                normalize::judge(normalizer.error(), code, &stderr, normalizer.turns())
            }
        };
        // Commands its bash tool started (in their own sessions) must not outlive the run.
        reaper.reap().await;
        let turns = match outcome {
            AgentOutcome::MaxTurns { turns } => turns,
            _ => normalizer.turns(),
        };
        let session_id = normalizer
            .session_id()
            .map(str::to_string)
            .or_else(|| req.resume_session.clone());
        Ok(AgentRun {
            outcome,
            session_id,
            final_text: normalizer.final_text(),
            usage: normalizer.usage(),
            // opencode's cost comes from a price table codemill does not give it (always 0
            // here); the runner prices the tokens instead.
            reported_cost_usd: None,
            turns,
        })
    }
}

impl Agent for Opencode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn run<'a>(
        &'a self,
        req: &'a AgentRequest,
        events: EventSink,
    ) -> BoxFuture<'a, Result<AgentRun, AgentError>> {
        Box::pin(async move { self.run_inner(req, &events).await })
    }
}

/// Why reading stdout stopped.
enum Stop {
    /// opencode closed stdout (it is exiting).
    Eof,
    Timeout(TimeoutKind),
    /// The model wants a turn beyond `max_turns`.
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
                            tracing::debug!(%message, "opencode notice");
                        }
                        emit(events, event);
                    }
                    if normalizer.over_turn_limit(req.limits.max_turns) {
                        return Ok(Stop::TurnLimit);
                    }
                }
                Ok(Err(e)) => {
                    emit(events, AgentEvent::Notice {
                        message: format!("reading opencode output failed: {e}"),
                    });
                    return Ok(Stop::Eof);
                }
            },
        }
    }
}

/// The exit code once stdout has closed; kills the group if opencode lingers.
async fn wait_exit(child: &mut Running) -> Option<i32> {
    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(Ok(status)) => {
            child.kill().await;
            status.code()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "waiting for opencode failed");
            child.kill().await;
            None
        }
        Err(_) => {
            tracing::warn!("opencode did not exit after closing stdout; killing it");
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
