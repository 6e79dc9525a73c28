//! The one driver loop of every CLI backend: start the CLI under the request's [`ExecPolicy`],
//! stream its stdout line by line into the raw log and the backend's normaliser, enforce the
//! wall-clock, idle and turn limits and the step's cancel signal, and end the run by killing
//! its whole sandbox (or, unsandboxed, its process group and every process carrying the run's
//! marker). Each backend keeps only what differs: arguments and config files, event
//! normalising, resume and judging the outcome.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use codemill_core::agent::{AgentEvent, AgentOutcome, TimeoutKind};
use codemill_process::{ExecPolicy, ProcessError, Running, drain_capped};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::OnceCell;

use crate::log::RawLog;
use crate::reap::{RUN_MARKER_VAR, Reaper};
use crate::{AgentError, AgentRequest, EventSink, emit};

/// Stderr kept for error messages.
const STDERR_CAP: usize = 64 * 1024;
/// After stdout closes, how long the CLI may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// What a backend's normaliser offers the driver.
pub(crate) trait StreamNormalizer: Send {
    /// One stdout line in, the normalised events it gives out.
    fn push_line(&mut self, line: &str) -> Vec<AgentEvent>;
    /// Events still pending when the stream ends.
    fn finish(&mut self) -> Vec<AgentEvent>;
    /// Whether to stop now because the run has gone (or is about to go) past `max_turns`. CLIs
    /// with a reliable turn limit of their own leave this false.
    fn over_turn_limit(&self, _max_turns: u32) -> bool {
        false
    }
}

/// A CLI invocation: the program, its arguments and the policy (with the CLI's own variables).
pub(crate) struct Launch<'a> {
    /// For messages: `Claude Code`, `Codex`, ...
    pub name: &'static str,
    pub program: &'a Path,
    pub args: Vec<OsString>,
    pub policy: ExecPolicy,
    pub cwd: &'a Path,
    pub install_hint: &'static str,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The CLI closed stdout and exited (or was killed after the grace period: `code` None).
    Exited {
        code: Option<i32>,
        stderr: String,
    },
    Timeout(TimeoutKind),
    TurnLimit,
    /// The step's cancel signal fired (a budget refused the agent's model request).
    Cancelled,
}

impl Stop {
    /// The outcome of a run that stopped this way: limits and the cancel signal are the same
    /// for every backend; how an exited CLI did is for its own `judge` to say.
    pub(crate) fn outcome(
        self,
        started: std::time::Instant,
        turns_at_limit: u32,
        judge: impl FnOnce(Option<i32>, &str) -> AgentOutcome,
    ) -> AgentOutcome {
        match self {
            Stop::Timeout(limit) => AgentOutcome::TimedOut {
                limit,
                after_secs: started.elapsed().as_secs(),
            },
            Stop::TurnLimit => AgentOutcome::MaxTurns {
                turns: turns_at_limit,
            },
            Stop::Cancelled => AgentOutcome::Killed,
            Stop::Exited { code, stderr } => judge(code, &stderr),
        }
    }
}

/// Runs the CLI to its end. `Ok(Err(outcome))` when it could not be started at all.
pub(crate) async fn drive(
    launch: Launch<'_>,
    req: &AgentRequest,
    normalizer: &mut dyn StreamNormalizer,
    log: &mut RawLog,
    events: &EventSink,
) -> Result<Result<Stop, AgentOutcome>, AgentError> {
    let mut policy = launch.policy;
    // Without a sandbox nothing contains a `setsid` child: mark every process of the run.
    let reaper = if policy.is_sandboxed() {
        None
    } else {
        let marker = uuid::Uuid::new_v4().to_string();
        policy.set_env(RUN_MARKER_VAR, &marker);
        Some(Reaper::new(&marker))
    };
    let cmd = match policy
        .hand_over()
        .and_then(|()| policy.command(launch.program, &launch.args, launch.cwd))
    {
        Ok(cmd) => cmd,
        Err(e) => return Ok(Err(start_failure(e, launch.install_hint))),
    };
    tracing::debug!(command = ?cmd, "starting {}", launch.name);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Ok(Err(start_failure(e, launch.install_hint))),
    };
    tracing::debug!(pid = ?child.pid(), "{} started", launch.name);
    let stderr = tokio::spawn(drain_capped(child.take_stderr(), STDERR_CAP));
    let read = read_lines(
        &mut child,
        req,
        started,
        normalizer,
        log,
        events,
        launch.name,
    )
    .await;
    let stop = match read {
        Ok(stop) => stop,
        Err(e) => {
            child.kill().await;
            if let Some(reaper) = reaper {
                reaper.reap().await;
            }
            return Err(e);
        }
    };
    for event in normalizer.finish() {
        emit(events, event);
    }
    let stop = match stop {
        Reading::Eof => {
            let code = wait_exit(&mut child, launch.name).await;
            // A process outside the group could hold stderr open: reap it before reading.
            if let Some(reaper) = reaper {
                reaper.reap().await;
            }
            let (stderr, _) = tokio::time::timeout(EXIT_GRACE, stderr)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            if !stderr.trim().is_empty() {
                tracing::debug!(%stderr, "{} stderr", launch.name);
            }
            Stop::Exited { code, stderr }
        }
        other => {
            child.kill().await;
            if let Some(reaper) = reaper {
                reaper.reap().await;
            }
            match other {
                Reading::Timeout(kind) => Stop::Timeout(kind),
                Reading::TurnLimit => Stop::TurnLimit,
                Reading::Cancelled | Reading::Eof => Stop::Cancelled,
            }
        }
    };
    Ok(Ok(stop))
}

fn start_failure(e: ProcessError, hint: &str) -> AgentOutcome {
    match e {
        ProcessError::NotFound { program } => AgentOutcome::CliMissing {
            program,
            hint: hint.to_string(),
        },
        other => AgentOutcome::Failed {
            message: other.to_string(),
        },
    }
}

enum Reading {
    Eof,
    Timeout(TimeoutKind),
    TurnLimit,
    Cancelled,
}

/// Reads stdout line by line until it closes, a limit is hit, or the step is cancelled.
async fn read_lines(
    child: &mut Running,
    req: &AgentRequest,
    started: Instant,
    normalizer: &mut dyn StreamNormalizer,
    log: &mut RawLog,
    events: &EventSink,
    name: &str,
) -> Result<Reading, AgentError> {
    let Some(stdout) = child.take_stdout() else {
        return Ok(Reading::Eof);
    };
    let mut reader = BufReader::new(stdout);
    let deadline = tokio::time::Instant::from_std(started + req.limits.wall_clock);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(req.limits.idle, reader.read_until(b'\n', &mut line));
        tokio::select! {
            _ = req.cancel.cancelled() => return Ok(Reading::Cancelled),
            _ = tokio::time::sleep_until(deadline) => return Ok(Reading::Timeout(TimeoutKind::WallClock)),
            read = read => match read {
                Err(_) => return Ok(Reading::Timeout(TimeoutKind::Idle)),
                Ok(Ok(0)) => return Ok(Reading::Eof),
                Ok(Ok(_)) => {
                    log.line(&line).await?;
                    for event in normalizer.push_line(&String::from_utf8_lossy(&line)) {
                        if let AgentEvent::Notice { message } = &event {
                            tracing::debug!(%message, "{name} notice");
                        }
                        emit(events, event);
                    }
                    if normalizer.over_turn_limit(req.limits.max_turns) {
                        return Ok(Reading::TurnLimit);
                    }
                }
                Ok(Err(e)) => {
                    emit(events, AgentEvent::Notice {
                        message: format!("reading {name} output failed: {e}"),
                    });
                    return Ok(Reading::Eof);
                }
            },
        }
    }
}

/// The exit code once stdout has closed; the group (or sandbox) is killed either way, so
/// nothing the CLI started in the background outlives the run.
async fn wait_exit(child: &mut Running, name: &str) -> Option<i32> {
    let code = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(Ok(status)) => status.code(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "waiting for {name} failed");
            None
        }
        Err(_) => {
            tracing::warn!("{name} did not exit after closing stdout; killing it");
            None
        }
    };
    child.kill().await;
    code
}

/// A CLI's version, read once per backend value with `<program> --version` under `policy`;
/// `Err` is the outcome to report instead of running. The version is the last word of stdout
/// that starts with a digit (warnings may come first; `codex-cli 0.169.0`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check_version(
    cell: &OnceCell<String>,
    program: &Path,
    policy: &ExecPolicy,
    cwd: &Path,
    timeout: Duration,
    supported_prefix: &str,
    supported: &str,
    hint: &str,
) -> Result<(), AgentOutcome> {
    let version = cell
        .get_or_try_init(|| read_version(program, policy, cwd, timeout, hint))
        .await?;
    if version.starts_with(supported_prefix) {
        Ok(())
    } else {
        Err(AgentOutcome::CliWrongVersion {
            program: program.display().to_string(),
            found: version.clone(),
            supported: supported.to_string(),
        })
    }
}

async fn read_version(
    program: &Path,
    policy: &ExecPolicy,
    cwd: &Path,
    timeout: Duration,
    hint: &str,
) -> Result<String, AgentOutcome> {
    policy.hand_over().map_err(|e| start_failure(e, hint))?;
    let out = policy
        .command(program, ["--version"], cwd)
        .map_err(|e| start_failure(e, hint))?
        .output(Some(timeout), 16 * 1024)
        .await
        .map_err(|e| start_failure(e, hint))?;
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
                "`{} --version` did not report a version{}: {}",
                program.display(),
                if out.timed_out { " (timed out)" } else { "" },
                crate::text::truncate(out.combined().trim(), 500)
            ),
        }),
    }
}
