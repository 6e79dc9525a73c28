//! The `codex` backend: drives the real Codex CLI (`codex exec --json`) against codemill's
//! model endpoint, which must speak the OpenAI Responses API.
//!
//! Each run gets an isolated `CODEX_HOME` (with a generated `config.toml`, see [`config`]),
//! HOME and TMPDIR under the state dir and a cleared environment; the key reaches Codex only
//! through the provider's `env_key` variable in the child's environment. Fix rounds use
//! `codex exec resume <thread_id>`. Raw stdout lines go to the log as they arrive;
//! [`normalize`] maps them to events and counts turns (Codex has no turn limit of its own, so
//! codemill kills the process group at the limit). Codex reports nothing for tool calls its
//! sandbox refused; [`rollout`] digs them out of its session file afterwards. Its sandbox
//! helpers live in their own sessions, so after the group kill [`reap`] kills what is left.

mod config;
mod normalize;
mod protocol;
mod reap;
mod rollout;

use std::path::{Path, PathBuf};
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

/// Shown when the CLI binary is missing.
pub const INSTALL_HINT: &str = "install it with ./scripts/install-agent-clis.sh (./scripts/test runs it) \
     or `npm install @openai/codex@0.169.0`, then point the codex backend at the binary";
/// The Codex CLI versions this backend was measured against.
pub const SUPPORTED_VERSION: &str = "0.169.x";
const VERSION_PREFIX: &str = "0.169.";
/// The variable the provider's `env_key` names; set only in the child's environment.
const KEY_ENV: &str = "CODEMILL_CODEX_API_KEY";
/// Stderr kept for error messages (config errors land there).
const STDERR_CAP: usize = 64 * 1024;
/// After stdout closes, how long the CLI may take to exit before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// `codex --version` starts node and the native binary; generous for a loaded machine.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on `git status` when checking a read-only run.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// How write-mode runs are sandboxed. Read-only runs always use Codex's `read-only` sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteSandbox {
    /// Codex's own bubblewrap sandbox (`workspace-write`): writes only in the worktree and
    /// temp dirs, `.git` read-only, no network. Its commands die with Codex.
    #[default]
    WorkspaceWrite,
    /// No sandbox (`danger-full-access`), for runs inside codemill's own sandbox. Commands
    /// then run in their own sessions, out of reach of the process-group kill; the backend's
    /// reaper kills what carries the run's marker, but a process that clears its environment
    /// escapes it, so the outer sandbox should contain the run as well.
    Bypass,
}

/// The Codex CLI backend.
#[derive(Debug, Clone)]
pub struct Codex {
    /// The `codex` binary (a bare name is looked up on PATH).
    pub program: PathBuf,
    /// Provider `request_max_retries`: retries of a failed model request.
    pub request_max_retries: u32,
    /// Provider `stream_max_retries`: retries of a stream that broke off.
    pub stream_max_retries: u32,
    /// Provider `stream_idle_timeout_ms`: a started stream silent this long fails (keep-alive
    /// comments do not count; a request that never gets headers waits for codemill's idle limit).
    pub stream_idle_timeout: Duration,
    pub write_sandbox: WriteSandbox,
    /// The version `codex --version` reported, checked once per value.
    version: OnceCell<String>,
}

impl Default for Codex {
    fn default() -> Self {
        Codex::new("codex")
    }
}

impl Codex {
    pub fn new(program: impl Into<PathBuf>) -> Codex {
        Codex {
            program: program.into(),
            request_max_retries: 2,
            stream_max_retries: 2,
            stream_idle_timeout: Duration::from_secs(300),
            write_sandbox: WriteSandbox::default(),
            version: OnceCell::new(),
        }
    }

    /// `None` when the binary runs and is a supported version; else the outcome to report.
    async fn check_version(&self, home: &Path) -> Option<AgentOutcome> {
        let found = self
            .version
            .get_or_try_init(|| probe_version(&self.program, home))
            .await;
        match found {
            Err(outcome) => Some(outcome),
            Ok(found) if found.starts_with(VERSION_PREFIX) => None,
            Ok(found) => Some(AgentOutcome::CliWrongVersion {
                program: self.program.display().to_string(),
                found: found.clone(),
                supported: SUPPORTED_VERSION.to_string(),
            }),
        }
    }

    fn sandbox_mode(&self, mode: AgentMode) -> &'static str {
        match (mode, self.write_sandbox) {
            (AgentMode::ReadOnly, _) => "read-only",
            (AgentMode::Write, WriteSandbox::WorkspaceWrite) => "workspace-write",
            (AgentMode::Write, WriteSandbox::Bypass) => "danger-full-access",
        }
    }

    /// The command line: `codex exec [resume] --json --strict-config --skip-git-repo-check --
    /// [<thread_id>] <prompt>`. Everything else is in `config.toml`. `run_marker` tags every
    /// process of the run for [`reap`].
    fn command(
        &self,
        req: &AgentRequest,
        dirs: &StateDirs,
        resume: Option<&str>,
        run_marker: &str,
    ) -> Cmd {
        let mut cmd = Cmd::new(&self.program).cwd(&req.workdir).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd = cmd.env("PATH", path);
        }
        for (key, value) in &req.extra_env {
            cmd = cmd.env(key, value);
        }
        // Set last so extra_env cannot redirect Codex's state or key.
        cmd = cmd
            .env("HOME", &dirs.home)
            .env("CODEX_HOME", &dirs.codex_home)
            // Outside CODEX_HOME: under it, every sandboxed command fails.
            .env("TMPDIR", &dirs.tmp)
            .env(KEY_ENV, req.endpoint.api_key.expose_secret())
            .env(reap::RUN_MARKER_VAR, run_marker)
            .arg("exec");
        if resume.is_some() {
            cmd = cmd.arg("resume");
        }
        // `--` so a prompt such as "review" or "-x" is not read as a subcommand or option.
        cmd = cmd.args(["--json", "--strict-config", "--skip-git-repo-check", "--"]);
        if let Some(id) = resume {
            cmd = cmd.arg(id);
        }
        cmd.arg(&req.prompt)
    }

    fn write_config(&self, req: &AgentRequest, dirs: &StateDirs) -> Result<(), AgentError> {
        let text = config::render(&config::RunConfig {
            model: &req.model,
            base_url: &req.endpoint.base_url,
            sandbox_mode: self.sandbox_mode(req.mode),
            developer_instructions: req.system_prompt.as_deref(),
            key_env: KEY_ENV,
            request_max_retries: self.request_max_retries,
            stream_max_retries: self.stream_max_retries,
            stream_idle_timeout: self.stream_idle_timeout,
        });
        fs_err::write(dirs.codex_home.join("config.toml"), text).map_err(AgentError::StateDir)
    }

    async fn run_inner(
        &self,
        req: &AgentRequest,
        events: &EventSink,
    ) -> Result<AgentRun, AgentError> {
        if req.endpoint.api != Api::OpenAiResponses {
            return Ok(finished(
                AgentOutcome::Failed {
                    message: format!(
                        "the codex backend needs an `{}` endpoint (Codex only speaks the OpenAI \
                         Responses API), but the endpoint is `{}`",
                        Api::OpenAiResponses.as_str(),
                        req.endpoint.api.as_str()
                    ),
                },
                None,
            ));
        }
        let dirs = StateDirs::create(&req.state_dir)?;
        if let Some(outcome) = self.check_version(&dirs.home).await {
            return Ok(finished(outcome, None));
        }
        self.write_config(req, &dirs)?;
        let mut log = RawLog::open(&req.log_path)?;
        let resume = req.resume_session.as_deref();
        // A resumed thread appends to its rollout: only what this run adds is read afterwards.
        let rollout_start = resume
            .and_then(|id| rollout::find(&dirs.codex_home, id))
            .and_then(|path| std::fs::metadata(path).ok())
            .map_or(0, |meta| meta.len());
        let worktree_before = match req.mode {
            AgentMode::ReadOnly => worktree_state(&req.workdir).await,
            AgentMode::Write => None,
        };
        let run_marker = uuid::Uuid::new_v4().to_string();
        let cmd = self.command(req, &dirs, resume, &run_marker);
        tracing::debug!(command = ?cmd, "starting Codex");
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
        tracing::debug!(pid = ?child.pid(), "Codex started");
        let stderr = tokio::spawn(drain_capped(child.take_stderr(), STDERR_CAP));
        let workdir = req.workdir.display().to_string();
        let mut normalizer = Normalizer::new(Some(req.model.clone()), Some(workdir));
        let stop = read_lines(&mut child, req, started, &mut normalizer, &mut log, events).await;
        let marked = format!("{}={run_marker}", reap::RUN_MARKER_VAR);
        let stop = match stop {
            Ok(stop) => stop,
            Err(e) => {
                child.kill().await;
                reap::kill_marked(&marked).await;
                return Err(e);
            }
        };
        for event in normalizer.finish() {
            emit(events, event);
        }
        let mut outcome = match stop {
            Stop::Limit(limit) => {
                child.kill().await;
                AgentOutcome::TimedOut {
                    limit,
                    after_secs: started.elapsed().as_secs(),
                }
            }
            Stop::MaxTurns => {
                child.kill().await;
                AgentOutcome::MaxTurns {
                    turns: normalizer.turns(),
                }
            }
            Stop::Eof => {
                let code = wait_exit(&mut child).await;
                // A helper outside the group could hold stderr open: reap it before reading.
                reap::kill_marked(&marked).await;
                let (stderr, _) = tokio::time::timeout(EXIT_GRACE, stderr)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                if !stderr.trim().is_empty() {
                    tracing::debug!(%stderr, "Codex stderr");
                }
                normalize::judge(&normalizer, code, &stderr)
            }
        };
        // The group is gone; sandbox helpers in their own sessions may not be.
        reap::kill_marked(&marked).await;
        let session_id = normalizer
            .thread_id()
            .map(str::to_string)
            .or_else(|| resume.map(str::to_string));
        if let Some(id) = &session_id {
            for call in refused_calls(&dirs.codex_home, id, rollout_start) {
                emit(
                    events,
                    AgentEvent::Notice {
                        message: call.describe(),
                    },
                );
            }
        }
        if let Some(before) = worktree_before
            && let Some(violation) = read_only_violation(&req.workdir, &before).await
        {
            outcome = violation;
        }
        Ok(AgentRun {
            outcome,
            session_id,
            final_text: normalizer.final_text(),
            usage: normalizer.usage(),
            // Codex reports no cost; the runner prices the tokens.
            reported_cost_usd: None,
            turns: normalizer.turns(),
        })
    }
}

impl Agent for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn run<'a>(
        &'a self,
        req: &'a AgentRequest,
        events: EventSink,
    ) -> BoxFuture<'a, Result<AgentRun, AgentError>> {
        Box::pin(async move { self.run_inner(req, &events).await })
    }
}

/// Runs `codex --version`; `Ok` is the version it printed (`codex-cli 0.169.0` -> `0.169.0`).
async fn probe_version(program: &Path, home: &Path) -> Result<String, AgentOutcome> {
    let mut cmd = Cmd::new(program)
        .arg("--version")
        .env_clear()
        .env("HOME", home);
    if let Some(path) = std::env::var_os("PATH") {
        cmd = cmd.env("PATH", path);
    }
    let out = match cmd.output(Some(VERSION_TIMEOUT), 4096).await {
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
    if !out.success() {
        return Err(AgentOutcome::Failed {
            message: format!(
                "`{} --version` failed{}: {}",
                program.display(),
                if out.timed_out { " (timed out)" } else { "" },
                out.combined().trim()
            ),
        });
    }
    let text = out.stdout.trim();
    Ok(text.rsplit(' ').next().unwrap_or(text).to_string())
}

/// Why reading stdout stopped.
enum Stop {
    /// Stdout closed: the CLI is done (or died).
    Eof,
    Limit(TimeoutKind),
    /// The next model response would exceed `limits.max_turns`.
    MaxTurns,
}

/// Reads stdout line by line until it closes or a limit is hit.
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
            _ = tokio::time::sleep_until(deadline) => return Ok(Stop::Limit(TimeoutKind::WallClock)),
            read = read => match read {
                Err(_) => return Ok(Stop::Limit(TimeoutKind::Idle)),
                Ok(Ok(0)) => return Ok(Stop::Eof),
                Ok(Ok(_)) => {
                    log.line(&line).await?;
                    for event in normalizer.push_line(&String::from_utf8_lossy(&line)) {
                        if let AgentEvent::Notice { message } = &event {
                            tracing::debug!(%message, "codex notice");
                        }
                        emit(events, event);
                    }
                    if over_turn_limit(normalizer, req.limits.max_turns) {
                        return Ok(Stop::MaxTurns);
                    }
                }
                Ok(Err(e)) => {
                    emit(events, AgentEvent::Notice {
                        message: format!("reading Codex output failed: {e}"),
                    });
                    return Ok(Stop::Eof);
                }
            },
        }
    }
}

/// At the limit a finished tool means Codex is about to ask the model once more: stop it
/// now, before that response can act. Work done so far stays on disk.
fn over_turn_limit(n: &Normalizer, max_turns: u32) -> bool {
    n.turns() > max_turns || (n.turns() >= max_turns && n.response_due())
}

/// The exit code once stdout has closed; kills the group if the CLI lingers.
async fn wait_exit(child: &mut Running) -> Option<i32> {
    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(Ok(status)) => {
            // Commands the CLI left in the background must not outlive the run.
            child.kill().await;
            status.code()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "waiting for Codex failed");
            child.kill().await;
            None
        }
        Err(_) => {
            tracing::warn!("Codex did not exit after closing stdout; killing it");
            child.kill().await;
            None
        }
    }
}

/// Tool calls this run's rollout records but the stream never showed.
fn refused_calls(codex_home: &Path, thread_id: &str, start: u64) -> Vec<rollout::UnreportedCall> {
    let Some(path) = rollout::find(codex_home, thread_id) else {
        return Vec::new();
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let start = usize::try_from(start).unwrap_or(0).min(bytes.len());
            rollout::unreported_calls(&String::from_utf8_lossy(&bytes[start..]))
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot read the Codex rollout");
            Vec::new()
        }
    }
}

/// Codex's sandbox should make a change impossible; if one ever happens, it is the outcome.
async fn read_only_violation(workdir: &Path, before: &str) -> Option<AgentOutcome> {
    let message = match worktree_state(workdir).await {
        Some(after) if after == before => return None,
        Some(after) => {
            format!("the read-only run changed the worktree; git status is now:\n{after}")
        }
        None => "cannot check that the read-only run left the worktree unchanged (git status \
                 failed)"
            .to_string(),
    };
    Some(AgentOutcome::Failed { message })
}

/// `git status` with the HEAD commit: what a read-only run must leave as it found it. `None`
/// when the workdir is not a git worktree (then nothing is compared).
async fn worktree_state(workdir: &Path) -> Option<String> {
    let out = Cmd::new("git")
        .args([
            "status",
            "--porcelain=v2",
            "--branch",
            "--untracked-files=all",
        ])
        .cwd(workdir)
        .output(Some(GIT_TIMEOUT), 1 << 20)
        .await
        .ok()?;
    out.success().then_some(out.stdout)
}

/// The isolated HOME, CODEX_HOME and TMPDIR under the state dir (siblings, so TMPDIR is
/// never inside CODEX_HOME).
struct StateDirs {
    home: PathBuf,
    codex_home: PathBuf,
    tmp: PathBuf,
}

impl StateDirs {
    fn create(state_dir: &Path) -> Result<StateDirs, AgentError> {
        let dirs = StateDirs {
            home: state_dir.join("home"),
            codex_home: state_dir.join("codex-home"),
            tmp: state_dir.join("tmp"),
        };
        for dir in [&dirs.home, &dirs.codex_home, &dirs.tmp] {
            fs_err::create_dir_all(dir).map_err(AgentError::StateDir)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn a_changed_worktree_fails_a_read_only_run() {
        let dir = tempfile::tempdir().unwrap();
        let out = Cmd::new("git")
            .args(["init", "-q"])
            .cwd(dir.path())
            .output(Some(GIT_TIMEOUT), 4096)
            .await
            .unwrap();
        assert!(out.success(), "{}", out.combined());
        let before = worktree_state(dir.path()).await.unwrap();
        assert_eq!(read_only_violation(dir.path(), &before).await, None);
        std::fs::write(dir.path().join("evil.txt"), "x").unwrap();
        let violation = read_only_violation(dir.path(), &before).await;
        assert!(
            matches!(&violation, Some(AgentOutcome::Failed { message }) if message.contains("evil.txt")),
            "{violation:?}"
        );
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(worktree_state(elsewhere.path()).await, None);
    }

    #[test]
    fn the_turn_limit_stops_before_the_next_response() {
        let mut n = Normalizer::new(None, None);
        n.push_line(r#"{"type":"turn.started"}"#);
        assert!(!over_turn_limit(&n, 1));
        n.push_line(r#"{"type":"item.started","item":{"id":"a","type":"command_execution","command":"ls"}}"#);
        assert!(
            !over_turn_limit(&n, 1),
            "the first response may run its tool"
        );
        n.push_line(r#"{"type":"item.completed","item":{"id":"a","type":"command_execution","command":"ls","exit_code":0}}"#);
        assert!(over_turn_limit(&n, 1), "a second response would follow");
        assert!(!over_turn_limit(&n, 2));
    }
}
