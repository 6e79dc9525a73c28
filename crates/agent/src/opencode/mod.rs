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
//! The environment is the exec policy's plus: `HOME`, `XDG_{CONFIG,DATA,CACHE,STATE}_HOME` and `TMPDIR`
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
//! - Wall-clock and idle limits kill the run → `TimedOut`. opencode starts each bash command
//!   in a new session, outside its group: in the sandbox they die with it; unsandboxed, every
//!   process carrying the run's marker variable is killed too (the driver's reaper).
//! - API errors arrive as an `error` line with the HTTP status → `ApiError`. opencode retries
//!   429/5xx and connection errors itself, 5 times, waiting `retry-after(-ms)` when the server
//!   sends one and 2, 4, 8, 16, 30 s otherwise; this is not configurable in 1.18. A 401 is not
//!   retried.

mod normalize;
mod protocol;
mod setup;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codemill_core::agent::{AgentEvent, AgentOutcome, AgentRun};
use codemill_core::cost::Usage;
use codemill_process::ExecPolicy;
use futures_util::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use crate::driver::{self, Launch};
use crate::log::RawLog;
use crate::{Agent, AgentError, AgentRequest, EventSink};

use normalize::Normalizer;
use setup::{AGENT_NAME, API_KEY_VAR, PROVIDER_ID, StateDirs};

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

    /// The policy plus opencode's isolated HOME, XDG directories and TMPDIR.
    fn base_policy(req: &AgentRequest, dirs: &StateDirs) -> ExecPolicy {
        req.exec
            .clone()
            .env("HOME", &dirs.home)
            .env("XDG_CONFIG_HOME", &dirs.xdg_config)
            .env("XDG_DATA_HOME", &dirs.xdg_data)
            .env("XDG_CACHE_HOME", &dirs.xdg_cache)
            .env("XDG_STATE_HOME", &dirs.xdg_state)
            .env("TMPDIR", &dirs.tmp)
    }

    /// The policy of a run: config, token and the switches that keep opencode offline.
    fn policy(req: &AgentRequest, dirs: &StateDirs) -> ExecPolicy {
        let mut policy = Self::base_policy(req, dirs);
        if let Some(server) = crate::knowledge::server(req) {
            policy.set_env(crate::knowledge::PASS_VAR, server.pass);
        }
        policy
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
    }

    /// `sh -c 'p=$1; shift; exec "$@" < "$p"' sh <prompt> <opencode> run ...`: `sh` is the
    /// program, opencode an argument.
    fn args(&self, req: &AgentRequest, dirs: &StateDirs) -> Vec<OsString> {
        let model = format!("{PROVIDER_ID}/{}", req.model);
        let mut args: Vec<OsString> = ["-c", "p=$1; shift; exec \"$@\" < \"$p\"", "sh"]
            .map(OsString::from)
            .to_vec();
        args.push(dirs.prompt_file.clone().into_os_string());
        // opencode is an argument of `sh` here: resolve it as the policy resolves programs.
        let program = req
            .exec
            .resolve(self.program.as_os_str())
            .unwrap_or_else(|_| self.program.clone());
        args.push(program.into_os_string());
        args.extend(
            ["run", "--format", "json", "--agent", AGENT_NAME, "--model"].map(OsString::from),
        );
        args.push(model.into());
        match &req.resume_session {
            Some(id) => args.extend(["--session".into(), id.into()]),
            None => args.extend(["--title", SESSION_TITLE].map(OsString::from)),
        }
        args
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
        if let Err(outcome) = driver::check_version(
            &self.version,
            &self.program,
            &Self::base_policy(req, &dirs),
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
        let started = Instant::now();
        let mut normalizer = Normalizer::new(Some(req.model.clone()));
        let launch = Launch {
            name: "opencode",
            program: Path::new("sh"),
            args: self.args(req, &dirs),
            policy: Self::policy(req, &dirs),
            cwd: &req.workdir,
            install_hint: INSTALL_HINT,
        };
        let stop = match driver::drive(launch, req, &mut normalizer, &mut log, events).await? {
            Ok(stop) => stop,
            Err(outcome) => return Ok(finished(outcome, None)),
        };
        let turns_at_limit = req.limits.max_turns;
        let outcome = stop.outcome(started, turns_at_limit, |code, stderr| {
            normalize::judge(normalizer.error(), code, stderr, normalizer.turns())
        });
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
        Normalizer::over_turn_limit(self, max_turns)
    }
}
