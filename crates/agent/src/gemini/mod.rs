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
//! run in the worktree under the request's exec policy, with: `HOME=<state>/home`,
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

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use codemill_core::agent::{AgentEvent, AgentMode, AgentOutcome, AgentRun};
use codemill_core::cost::Usage;
use codemill_process::ExecPolicy;
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use crate::driver::{self, Launch};
use crate::log::RawLog;
use crate::{Agent, AgentError, AgentRequest, Api, EventSink};

use normalize::Normalizer;
use setup::StateDirs;

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

    /// The policy plus the CLI's own state and settings paths.
    fn base_policy(&self, req: &AgentRequest, dirs: &StateDirs) -> ExecPolicy {
        req.exec
            .clone()
            .env("HOME", &dirs.home)
            .env("TMPDIR", &dirs.tmp)
            .env("GEMINI_CLI_NO_RELAUNCH", "true")
            .env("GEMINI_CLI_SYSTEM_SETTINGS_PATH", &dirs.no_system_settings)
            .env("GEMINI_CLI_SYSTEM_DEFAULTS_PATH", &dirs.no_system_settings)
    }

    /// The policy of a run: the gateway as base URL, the per-step token as key.
    fn policy(&self, req: &AgentRequest, dirs: &StateDirs) -> ExecPolicy {
        self.base_policy(req, dirs)
            .env(
                "GOOGLE_GEMINI_BASE_URL",
                req.endpoint.base_url.trim_end_matches('/'),
            )
            .env("GEMINI_API_KEY", req.endpoint.api_key.expose_secret())
            .env("GEMINI_CLI_TRUST_WORKSPACE", "true")
            .env("GEMINI_TELEMETRY_ENABLED", "false")
    }

    /// The arguments for `req`, with `session` as `--session-id` or `--resume`.
    fn args(req: &AgentRequest, dirs: &StateDirs, session: &SessionArg) -> Vec<OsString> {
        // -m always: without it the CLI's router asks a model for JSON and retries ~80 s.
        let mut args: Vec<OsString> = ["--output-format", "stream-json", "-m", &req.model]
            .map(OsString::from)
            .to_vec();
        match req.mode {
            AgentMode::Write => args.extend(["--approval-mode", "yolo"].map(OsString::from)),
            AgentMode::ReadOnly => {
                args.extend(["--approval-mode", "default", "--policy"].map(OsString::from));
                args.push(dirs.read_only_policy.clone().into_os_string());
            }
        }
        let (flag, id) = match session {
            SessionArg::New(id) => ("--session-id", id),
            SessionArg::Resume(id) => ("--resume", id),
        };
        args.extend([flag.into(), id.into()]);
        // `--prompt=` so a prompt starting with `-` is not read as an option.
        args.push(format!("--prompt={}", req.prompt).into());
        args
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
        let mut settings = setup::settings(
            req.mode,
            self.cli_turn_limit.then_some(req.limits.max_turns),
            self.max_attempts,
        );
        let server = crate::knowledge::server(req);
        if let Some(server) = &server {
            setup::add_knowledge_server(&mut settings, server);
        }
        dirs.write(
            &settings,
            req.system_prompt.as_deref(),
            req.mode,
            server.is_some(),
        )?;
        let mut log = RawLog::open(&req.log_path)?;
        if let Err(outcome) = driver::check_version(
            &self.version,
            &self.program,
            &self.base_policy(req, &dirs),
            &dirs.home,
            VERSION_TIMEOUT,
            SUPPORTED_PREFIX,
            SUPPORTED_VERSION,
            INSTALL_HINT,
        )
        .await
        {
            return Ok(finished(outcome, req.resume_session.clone()));
        }
        let session = match &req.resume_session {
            Some(id) => SessionArg::Resume(id.clone()),
            None => SessionArg::New(uuid::Uuid::new_v4().to_string()),
        };
        let started = Instant::now();
        let mut normalizer = Normalizer::new();
        let launch = Launch {
            name: "Gemini CLI",
            program: &self.program,
            args: Self::args(req, &dirs, &session),
            policy: self.policy(req, &dirs),
            cwd: &req.workdir,
            install_hint: INSTALL_HINT,
        };
        let stop = match driver::drive(launch, req, &mut normalizer, &mut log, events).await? {
            Ok(stop) => stop,
            Err(outcome) => return Ok(finished(outcome, None)),
        };
        let turns_at_limit = req.limits.max_turns;
        let outcome = stop.outcome(started, turns_at_limit, |code, stderr| {
            normalizer.judge(code, stderr)
        });
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

    /// The model started a turn beyond `max_turns` (the CLI's own limit is the first line).
    fn over_turn_limit(&self, max_turns: u32) -> bool {
        self.turns() > max_turns
    }
}
