//! The `codex` backend: drives the real Codex CLI (`codex exec --json`) against codemill's
//! model endpoint, which must speak the OpenAI Responses API.
//!
//! Each run gets an isolated `CODEX_HOME` (with a generated `config.toml`, see [`config`]),
//! HOME and TMPDIR under the state dir and the request's exec policy; the per-step gateway token
//! reaches Codex only through the provider's `env_key` variable. Fix rounds use `codex exec
//! resume <thread_id>`; the sandbox mode is given on the command line of every run (a resumed
//! session does not take it from `config.toml`). Inside codemill's sandbox Codex's own is off
//! (`danger-full-access`: bubblewrap cannot nest, and ours is the boundary, read-only stages
//! included, by the mount); unsandboxed, Codex's own `workspace-write`/`read-only` apply.
//! Raw stdout lines go to the log as they arrive; [`normalize`] maps them to events and counts
//! turns (Codex has no turn limit of its own, so the driver kills the run at the limit). Codex
//! reports nothing for tool calls its sandbox refused; [`rollout`] digs them out of its session
//! file afterwards.

mod config;
mod normalize;
mod protocol;
mod rollout;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codemill_core::agent::{AgentEvent, AgentMode, AgentOutcome, AgentRun};
use codemill_core::cost::Usage;
use codemill_process::ExecPolicy;
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use crate::driver::{self, Launch};
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
/// `codex --version` starts node and the native binary; generous for a loaded machine.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

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
            version: OnceCell::new(),
        }
    }

    /// Codex's own `sandbox_mode` for this run.
    fn sandbox_mode(req: &AgentRequest) -> &'static str {
        match (req.exec.is_sandboxed(), req.mode) {
            (true, _) => "danger-full-access",
            (false, AgentMode::ReadOnly) => "read-only",
            (false, AgentMode::Write) => "workspace-write",
        }
    }

    /// `exec [resume] -c sandbox_mode=.. --json --strict-config --skip-git-repo-check --
    /// [<thread_id>] <prompt>`. Everything else is in `config.toml`.
    fn args(req: &AgentRequest, resume: Option<&str>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["exec".into()];
        if resume.is_some() {
            args.push("resume".into());
        }
        let mode = format!("sandbox_mode=\"{}\"", Self::sandbox_mode(req));
        args.extend(["-c".into(), mode.into()]);
        // `--` so a prompt such as "review" or "-x" is not read as a subcommand or option.
        args.extend(
            ["--json", "--strict-config", "--skip-git-repo-check", "--"].map(OsString::from),
        );
        if let Some(id) = resume {
            args.push(id.into());
        }
        args.push(req.prompt.clone().into());
        args
    }

    /// The policy plus Codex's state directories and the token (set last: nothing the runner
    /// added can redirect them).
    fn policy(req: &AgentRequest, dirs: &StateDirs) -> ExecPolicy {
        let mut policy = req.exec.clone();
        if let Some(server) = crate::knowledge::server(req) {
            policy.set_env(crate::knowledge::PASS_VAR, server.pass);
        }
        policy
            .env("HOME", &dirs.home)
            .env("CODEX_HOME", &dirs.codex_home)
            // Outside CODEX_HOME: under it, every sandboxed command fails.
            .env("TMPDIR", &dirs.tmp)
            .env(KEY_ENV, req.endpoint.api_key.expose_secret())
    }

    fn write_config(&self, req: &AgentRequest, dirs: &StateDirs) -> Result<(), AgentError> {
        let server = crate::knowledge::server(req);
        let text = config::render(&config::RunConfig {
            mcp: server
                .as_ref()
                .map(|s| (s.command.as_str(), s.args.as_slice())),
            model: &req.model,
            base_url: &req.endpoint.base_url,
            sandbox_mode: Self::sandbox_mode(req),
            developer_instructions: req.system_prompt.as_deref(),
            key_env: KEY_ENV,
            request_max_retries: self.request_max_retries,
            stream_max_retries: self.stream_max_retries,
            stream_idle_timeout: self.stream_idle_timeout,
        });
        crate::private::write(dirs.codex_home.join("config.toml"), text)
            .map_err(AgentError::StateDir)
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
        let policy = Self::policy(req, &dirs);
        if let Err(outcome) = driver::check_version(
            &self.version,
            &self.program,
            &policy,
            &dirs.home,
            VERSION_TIMEOUT,
            VERSION_PREFIX,
            SUPPORTED_VERSION,
            INSTALL_HINT,
        )
        .await
        {
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
        let started = Instant::now();
        let workdir = req.workdir.display().to_string();
        let mut normalizer = Normalizer::new(Some(req.model.clone()), Some(workdir));
        let launch = Launch {
            name: "Codex",
            program: &self.program,
            args: Self::args(req, resume),
            policy,
            cwd: &req.workdir,
            install_hint: INSTALL_HINT,
        };
        let stop = match driver::drive(launch, req, &mut normalizer, &mut log, events).await? {
            Ok(stop) => stop,
            Err(outcome) => return Ok(finished(outcome, None)),
        };
        let turns_at_limit = normalizer.turns();
        let outcome = stop.outcome(started, turns_at_limit, |code, stderr| {
            normalize::judge(&normalizer, code, stderr)
        });
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

/// At the limit a finished tool means Codex is about to ask the model once more: stop it
/// now, before that response can act. Work done so far stays on disk.
fn over_turn_limit(n: &Normalizer, max_turns: u32) -> bool {
    n.turns() > max_turns || (n.turns() >= max_turns && n.response_due())
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
    fn push_line(&mut self, line: &str) -> Vec<AgentEvent> {
        Normalizer::push_line(self, line)
    }

    fn finish(&mut self) -> Vec<AgentEvent> {
        Normalizer::finish(self)
    }

    fn over_turn_limit(&self, max_turns: u32) -> bool {
        over_turn_limit(self, max_turns)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

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
