//! codemill command-line entry point: parses arguments and dispatches to the commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod accounts;
mod assistant;
mod commands;
mod demo;
mod doctor;
mod knowledge;
mod learn;
mod logs;
mod mcp;
mod output;
mod progress;
mod service;
mod telemetry;
mod tickets;
mod views;

/// codemill turns issue-tracker tickets into reviewed pull requests.
#[derive(Debug, Parser)]
#[command(name = "codemill", version, about, propagate_version = true)]
pub struct Cli {
    /// The codemill home (config, database, clones, worktrees, logs). Default: $CODEMILL_HOME or ~/.codemill.
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Log lines on stderr as readable text or one JSON object per line (for a log service);
    /// which lines is set by $CODEMILL_LOG (default `warn`, e.g. `info` or `codemill_runner=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CODEMILL_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the codemill home with a default codemill.toml.
    Init,
    /// Register and list projects (repositories).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Tickets of the local tracker.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// An idea for the refinement queue: a ticket labelled `codemill:refine`, queued to be
    /// refined into a spec.
    #[command(subcommand)]
    Idea(IdeaCommand),
    /// Refinement: accept a refined spec.
    #[command(subcommand)]
    Refine(RefineCommand),
    /// The product-owner assistant: questions about a project's code and backlog, answered
    /// read-only in the sandbox; drafted tickets saved to its tracker. Reads one question per
    /// line from stdin unless --ask, --save or --list is given.
    Assistant {
        project: String,
        /// Ask one question and print the answer.
        #[arg(long, conflicts_with_all = ["save", "list"])]
        ask: Option<String>,
        /// Go on with this conversation (its id from an earlier answer or --list).
        #[arg(long)]
        conversation: Option<String>,
        /// Save a drafted ticket to the project's tracker: TURN.N, e.g. 12.1.
        #[arg(long, value_name = "TURN.N", conflicts_with = "list")]
        save: Option<String>,
        /// List the project's conversations.
        #[arg(long)]
        list: bool,
        #[arg(long)]
        json: bool,
    },
    /// Learn from what people changed in codemill's work (commits added to its PRs, review
    /// comments, rejections): propose review checklist items and knowledge, applied only when
    /// a person approves. Runs weekly in `serve` too.
    Learn {
        project: String,
        /// Show the proposals with their diffs.
        #[arg(long, conflicts_with_all = ["apply", "reject", "metrics"])]
        list: bool,
        /// Apply a proposal: a checklist through a PR, a knowledge entry tagged human.
        #[arg(long, value_name = "ID", conflicts_with_all = ["reject", "metrics"])]
        apply: Option<i64>,
        /// Reject a proposal; nothing changes.
        #[arg(long, value_name = "ID", conflicts_with = "metrics")]
        reject: Option<i64>,
        /// Week by week: share of PRs merged unchanged, human lines per merged PR, fix rounds
        /// per ticket.
        #[arg(long)]
        metrics: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run one ticket in the foreground until its proposal waits for approval (exit 0) or it stops.
    Run {
        /// Ticket key, e.g. DEMO-1.
        key: String,
    },
    /// Every ticket with the state of its latest job.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// One ticket's job: timeline, findings, diff stat, branch, tokens, cost.
    Show {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a ticket's proposal: push the branch, record the PR, update the ticket.
    Approve { key: String },
    /// Reject a ticket's proposal; its work is kept on a WIP ref and nothing is pushed.
    Reject {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Cancel a ticket's job before its proposal is decided; its work is kept on a WIP ref.
    Cancel { key: String },
    /// Land shipped tickets' pull requests of the local forge through the merge queue: each
    /// candidate (the target branch's tip with the entries ahead of it and this one) is tested
    /// with the target's gates, then the branch moves to exactly the tested commit; a
    /// conflicting or red entry is taken out with the reason on its ticket.
    Merge {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        /// Print what became of each ticket as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a stopped ticket again (needs attention, rejected, cancelled, dead) as a new job.
    Retry { key: String },
    /// Queue a ticket for the workers (`codemill worker` or `codemill serve`).
    Enqueue { key: String },
    /// Claim queued jobs and run them: leases with heartbeats, fenced writes, retries with backoff.
    Worker {
        /// Stop after one claimed job (or none due).
        #[arg(long)]
        once: bool,
        /// Name used in leases; default host:pid.
        #[arg(long)]
        owner: Option<String>,
        /// Jobs run at once by this process.
        #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 1)]
        concurrency: usize,
        /// Leased jobs allowed at once across all workers, and per project.
        #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 10)]
        global_limit: usize,
        #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 3)]
        project_limit: usize,
        /// A lease not renewed for this long is taken back.
        #[arg(long, value_parser = at_least_one::<u64>, default_value_t = 60)]
        lease_secs: u64,
        /// How long an idle worker waits before looking again.
        #[arg(long, value_parser = at_least_one::<u64>, default_value_t = 1000)]
        poll_ms: u64,
        /// First retry delay of a failed or abandoned job; it doubles per attempt (max 1 h); 0
        /// retries at once.
        #[arg(long, default_value_t = 30)]
        retry_secs: u64,
    },
    /// The service: JSON API, signed webhooks, metrics, and (role `all`) workers in the same process.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// `all` runs workers in this process; `web` only serves HTTP (workers run elsewhere).
        #[arg(long, default_value = "all", value_parser = ["all", "web"])]
        role: String,
        /// Worker loops in this process (role `all`).
        #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 2)]
        workers: usize,
        /// `PROVIDER=ENV_VAR`: the webhook secret of PROVIDER (`local`, `generic`) is in ENV_VAR.
        #[arg(long = "webhook-secret-env", value_name = "PROVIDER=ENV_VAR")]
        webhook_secret_env: Vec<String>,
        #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 10)]
        global_limit: usize,
        #[arg(long, value_parser = at_least_one::<usize>, default_value_t = 3)]
        project_limit: usize,
        #[arg(long, value_parser = at_least_one::<u64>, default_value_t = 60)]
        lease_secs: u64,
        /// Seconds between passes of the poller that queues labelled tickets webhooks missed (0: off).
        #[arg(long, default_value_t = 30)]
        poll_secs: u64,
        /// Where people reach the dashboard, behind a proxy or TLS (`https://codemill.example.com`):
        /// its origin is trusted for form posts, and with https the session cookie is `Secure`.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// API tokens for the service.
    #[command(subcommand)]
    Token(TokenCommand),
    /// People who sign in to the dashboard, each with a role.
    #[command(subcommand)]
    User(UserCommand),
    /// A project's knowledge, each entry with its provenance: human, inferred or verified.
    #[command(subcommand)]
    Knowledge(KnowledgeCommand),
    /// Serve a project's knowledge to an agent over MCP on stdio (search_knowledge,
    /// read_knowledge, record_knowledge, ticket_context).
    Mcp {
        /// Read the project's knowledge from this home's store.
        #[arg(long, required_unless_present = "gateway", conflicts_with = "gateway")]
        project: Option<String>,
        /// Inside a job's sandbox: ask codemill's gateway at this URL, with the step's pass in
        /// CODEMILL_PASS (the pass fixes the project); the store is never opened.
        #[arg(long, value_name = "URL")]
        gateway: Option<String>,
    },
    /// Model spend per project on a UTC day (default today), against the budgets.
    Budget {
        /// The UTC day, YYYY-MM-DD.
        #[arg(long)]
        day: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Webhook deliveries, newest first: what each did, and those still pending or given up.
    Inbox {
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "done", "failed"])]
        state: Option<String>,
        /// At most this many.
        #[arg(long, value_parser = at_least_one::<u32>, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Notifications sent to Slack, Telegram, webhooks and e-mail, newest first, with how each ended.
    Notifications {
        /// At most this many.
        #[arg(long, value_parser = at_least_one::<u32>, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Check what is installed and reachable: git, the database, bubblewrap, the agent CLIs, the model providers.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Run three sample tickets end to end on a fresh home with the scripted demo model.
    Demo {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, only its hash is stored.
    Create { name: String },
    /// List tokens: id, name, when created and when revoked (never the token).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its name (the active one) or its id; requests with it are refused.
    Revoke {
        #[arg(value_name = "NAME_OR_ID")]
        token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin (one line) and stored only as an argon2id hash.
    Add {
        name: String,
        /// viewer reads; approver also approves, rejects, cancels and retries; admin also manages users and tokens.
        #[arg(long, value_parser = ["admin", "approver", "viewer"])]
        role: String,
        /// Read the password from stdin (the only way to give it: never an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users with their roles (never their password hashes).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KnowledgeCommand {
    /// Read the documentation on the project's default branch (README, CONTRIBUTING,
    /// ARCHITECTURE, docs/, doc/, adr/, .codemill/knowledge/) into entries, one per section; run
    /// again, it updates changed sections, removes vanished ones and marks entries citing
    /// changed or deleted places as stale.
    Ingest {
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Add an entry written by a person (tag `human`), with the places it cites.
    Add {
        project: String,
        #[arg(long)]
        title: String,
        /// The entry's text (or --body-file).
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<std::path::PathBuf>,
        #[arg(long, default_value = "human")]
        tag: String,
        /// A place in the repository it cites: PATH or PATH:FIRST-LAST (repeatable).
        #[arg(long = "source", value_name = "PATH[:L1-L2]")]
        sources: Vec<String>,
    },
    /// List a project's entries (filter by tag, or only the stale ones).
    List {
        project: String,
        #[arg(long, value_parser = ["verified", "inferred", "human"])]
        tag: Option<String>,
        #[arg(long)]
        stale: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show an entry with its sources, author and, when stale, why.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Edit an entry as a person: new text makes it `human` and current again; `--tag verified`
    /// says you checked it against the code.
    Edit {
        id: i64,
        #[arg(long)]
        title: Option<String>,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<std::path::PathBuf>,
        #[arg(long, value_parser = ["human", "verified"])]
        tag: Option<String>,
    },
    /// Remove an entry.
    Remove { id: i64 },
    /// Search a project's entries (best match first).
    Search {
        project: String,
        query: String,
        #[arg(long, value_parser = at_least_one::<u32>, default_value_t = 5)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Register a repository (a local path or a URL git can reach).
    Add {
        name: String,
        #[arg(long, value_name = "PATH_OR_URL")]
        repo: String,
    },
    /// List registered projects.
    List,
    /// Unregister a project: its table leaves codemill.toml and its clone and worktrees are
    /// deleted; its tickets and job history stay in the store. Refused while it has active jobs.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum IdeaCommand {
    /// Add an idea to a project and queue its refinement.
    Add {
        project: String,
        #[arg(long)]
        title: String,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RefineCommand {
    /// Accept a refined spec: it goes to the build queue, or its proposed split becomes tickets.
    Accept { key: String },
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Create a ticket in the local tracker.
    Add {
        project: String,
        #[arg(long)]
        title: String,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
        #[arg(long = "label", value_name = "LABEL")]
        labels: Vec<String>,
    },
    /// Edit a ticket's title or body (a ticket waiting for input runs again after an edit).
    Edit {
        key: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
    },
    /// List tickets.
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Comment on a ticket of the local tracker.
    Comment {
        key: String,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
        /// Who wrote it; default $USER.
        #[arg(long)]
        author: Option<String>,
    },
    /// Show a ticket with its comments and status changes.
    Show {
        key: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Traces need the home's `[telemetry]` before the first span; a home that cannot be read
    // is reported by the command itself.
    // The standard variable serves a run whose home has no `[telemetry]` (`codemill demo`).
    let telemetry = commands::home_of(cli.home.clone())
        .load_config()
        .map(|c| c.telemetry)
        .unwrap_or_default()
        .or_endpoint(std::env::var(telemetry::OTLP_ENDPOINT_VAR).ok());
    let (traces, layer, warning) = match telemetry::Traces::start(&telemetry) {
        Ok(Some((traces, layer))) => (Some(traces), Some(layer), None),
        Ok(None) => (None, None, None),
        // The command itself can still do its work; it says why nothing is traced.
        Err(e) => (
            None,
            None,
            Some(format!("warning: {e:#}; no traces are sent")),
        ),
    };
    logs::init(cli.log_format == LogFormat::Json, layer);
    if let Some(warning) = warning {
        output::err(&warning);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&format!("cannot start the async runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            output::error(&output::error_text(&e));
            std::process::ExitCode::FAILURE
        }
    };
    // Spans end as their tasks are dropped with the runtime; then the last batch goes out.
    drop(runtime);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    code
}

/// A count or duration that must be at least 1: 0 workers, a limit of 0 or a lease of 0 s
/// would be accepted and then never run anything.
fn at_least_one<T>(value: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let n: T = value.parse().map_err(|e: T::Err| e.to_string())?;
    if n < T::from(1) {
        return Err("must be 1 or more".into());
    }
    Ok(n)
}
