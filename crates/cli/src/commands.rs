//! The commands: each opens the home, does its work, and prints a result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use codemill_core::config::{Config, ProviderApi};
use codemill_core::ids::{ProjectName, TicketKey};
use codemill_core::pipeline::JobState;
use codemill_git::Git;
use codemill_runner::{Home, Runner, RunnerOptions};
use codemill_scripted_model::ModelServer;
use codemill_store::Store;

use crate::output::{err, out};
use crate::{Cli, Command, ProjectCommand, demo, progress};

pub fn home_of(flag: Option<PathBuf>) -> Home {
    Home::resolve(
        flag,
        std::env::var_os("CODEMILL_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// An opened home: config, store, and the demo model when the config asks for it.
pub struct Opened {
    pub home: Home,
    pub config: Config,
    pub store: Store,
    pub demo_model: Option<ModelServer>,
    /// Outside tracker and forge clients, shared by the runner and the webhook side.
    pub outside: codemill_runner::outside::OutsideCache,
}

impl Opened {
    pub async fn open(home: Home) -> Result<Opened> {
        let config = home.load_config()?;
        let store = match &config.postgres_url_env {
            Some(var) => {
                let url = std::env::var(var).map_err(|_| {
                    anyhow!("store.postgres_url_env names {var}, but that environment variable is not set")
                })?;
                Store::connect_postgres(&url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL (URL from {var})"))?
            }
            None => Store::open(&home.database())
                .await
                .with_context(|| format!("opening the database of {}", home.root().display()))?,
        };
        Ok(Opened {
            home,
            config,
            store,
            demo_model: None,
            outside: Default::default(),
        })
    }

    /// A runner; starts the embedded demo model when the configured provider is the demo.
    pub async fn runner(&mut self) -> Result<Runner> {
        let mut options = RunnerOptions {
            demo_base_url: None,
            actor: whoami(),
            crash_after_effect: std::env::var("CODEMILL_CRASH_AFTER_EFFECT")
                .ok()
                .filter(|v| !v.is_empty()),
            crash_in_merge: std::env::var("CODEMILL_CRASH_IN_MERGE")
                .ok()
                .filter(|v| !v.is_empty()),
        };
        if self.config.provider().api == ProviderApi::Demo {
            if self.demo_model.is_none() {
                self.demo_model = Some(
                    ModelServer::start(demo::script::script())
                        .await
                        .context("starting the demo model server")?,
                );
            }
            options.demo_base_url = self.demo_model.as_ref().map(|m| m.base_url());
        }
        Ok(Runner::new(
            self.home.clone(),
            self.config.clone(),
            self.store.clone(),
            options,
        )
        .with_outside(self.outside.clone()))
    }
}

/// Sets up the sandbox and the model gateway before any job is taken, so a host that cannot
/// sandbox refuses to work (with the reason and the fix) instead of failing job by job; warns
/// when the sandbox is off.
pub async fn guard_ready(runner: &Runner) -> Result<()> {
    let guard = runner.guard().await.map_err(|e| anyhow!("sandbox: {e}"))?;
    if !guard.setup.is_sandboxed() {
        crate::output::err(&format!(
            "warning: {}",
            codemill_runner::guard::SANDBOX_OFF_WARNING
        ));
    }
    Ok(())
}

pub fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "cli".into())
}

pub fn key(s: &str) -> Result<TicketKey> {
    Ok(s.parse::<TicketKey>()?)
}

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let home = home_of(cli.home.clone());
    match cli.command {
        Command::Init => {
            let created = home.init()?;
            home.load_config()?;
            Store::open(&home.database()).await?;
            if created {
                out(&format!("Created codemill home {}", home.root().display()));
            } else {
                out(&format!(
                    "codemill home {} already exists; kept its codemill.toml",
                    home.root().display()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Project(cmd) => project(home, cmd).await,
        Command::Ticket(cmd) => crate::tickets::ticket(home, cmd).await,
        Command::Idea(crate::IdeaCommand::Add {
            project,
            title,
            body,
            body_file,
        }) => crate::tickets::idea_add(home, project, title, body, body_file).await,
        Command::Assistant {
            project,
            ask,
            conversation,
            save,
            list,
            json,
        } => {
            let mut opened = Opened::open(home).await?;
            crate::assistant::run(
                &mut opened,
                crate::assistant::Request {
                    project,
                    ask,
                    conversation,
                    save,
                    list,
                    json,
                },
            )
            .await
        }
        Command::Learn {
            project,
            list,
            apply,
            reject,
            metrics,
            json,
        } => {
            let mut opened = Opened::open(home).await?;
            crate::learn::run(
                &mut opened,
                crate::learn::Request {
                    project,
                    list,
                    apply,
                    reject,
                    metrics,
                    json,
                },
            )
            .await
        }
        Command::Refine(crate::RefineCommand::Accept { key: k }) => {
            let k = key(&k)?;
            let mut opened = Opened::open(home).await?;
            let runner = opened.runner().await?;
            let (job, state) =
                progress::run_with_progress(&runner, &k, progress::Op::Accept(whoami())).await?;
            Ok(finish(&opened, job, &state))
        }
        Command::Run { key: k } => {
            let k = key(&k)?;
            let mut opened = Opened::open(home).await?;
            let runner = opened.runner().await?;
            let (job, state) = progress::run_with_progress(&runner, &k, progress::Op::Run).await?;
            Ok(finish(&opened, job, &state))
        }
        Command::Enqueue { key: k } => {
            let k = key(&k)?;
            let opened = Opened::open(home).await?;
            let options = codemill_runner::control::JobOptions::registered(&opened.config, &k)?;
            let (job, created) =
                codemill_runner::control::enqueue(&opened.store, &k, options).await?;
            if created {
                out(&format!("{k}: queued as job {job}"));
            } else {
                out(&format!("{k}: already has an active job {job}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker {
            once,
            owner,
            concurrency,
            global_limit,
            project_limit,
            lease_secs,
            poll_ms,
            retry_secs,
        } => {
            let mut opened = Opened::open(home).await?;
            opened.store = opened.store.clone().with_backoff(codemill_store::Backoff {
                base: std::time::Duration::from_secs(retry_secs),
                max: std::time::Duration::from_secs(3600),
            });
            let runner = opened.runner().await?;
            guard_ready(&runner).await?;
            let options = codemill_runner::worker::WorkerOptions {
                owner: owner.unwrap_or_else(codemill_runner::worker::owner_here),
                limits: codemill_store::Limits {
                    global: global_limit,
                    per_project: project_limit,
                },
                lease_ttl: std::time::Duration::from_secs(lease_secs.max(3)),
                poll: std::time::Duration::from_millis(poll_ms),
            };
            // A lasting worker notifies as it goes; one pass (`--once`) tells what its job asked
            // for before it ends.
            let (notifier, once_notifier) = if once {
                (None, crate::service::notifier_once(&opened).await?)
            } else {
                (crate::service::notifier(&opened)?, None)
            };
            let worked = crate::progress::work(&runner, &options, once, concurrency.max(1)).await;
            if let Some(n) = notifier {
                n.abort();
            }
            if let Some(n) = &once_notifier {
                crate::service::tell_once(n).await;
            }
            worked?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve { key: k } => {
            let k = key(&k)?;
            let mut opened = Opened::open(home).await?;
            let runner = opened.runner().await?;
            let (job, state) =
                progress::run_with_progress(&runner, &k, progress::Op::Approve(whoami())).await?;
            Ok(finish(&opened, job, &state))
        }
        Command::Merge { keys, json } => {
            let keys = keys.iter().map(|k| key(k)).collect::<Result<Vec<_>>>()?;
            let mut opened = Opened::open(home).await?;
            let runner = opened.runner().await?;
            let report = progress::merge_with_progress(&runner, &keys, &whoami()).await?;
            if json {
                out(&serde_json::to_string_pretty(&report)?);
            } else {
                print_merge_report(&report);
            }
            let ejected = report
                .outcomes
                .iter()
                .any(|o| o.state == codemill_store::MergeState::Ejected);
            Ok(if ejected {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Reject { key: k, reason } => {
            let k = key(&k)?;
            let reason = codemill_core::text::reason(&reason)
                .map_err(|why| anyhow::anyhow!("--reason: {why}"))?
                .to_string();
            let mut opened = Opened::open(home).await?;
            let runner = opened.runner().await?;
            let (job, state) =
                progress::run_with_progress(&runner, &k, progress::Op::Reject(reason, whoami()))
                    .await?;
            Ok(finish(&opened, job, &state))
        }
        Command::Cancel { key: k } => {
            let k = key(&k)?;
            let mut opened = Opened::open(home).await?;
            let runner = opened.runner().await?;
            let (job, state) =
                progress::run_with_progress(&runner, &k, progress::Op::Cancel(whoami())).await?;
            Ok(finish(&opened, job, &state))
        }
        Command::Retry { key: k } => {
            let k = key(&k)?;
            let opened = Opened::open(home).await?;
            let options = codemill_runner::control::JobOptions::registered(&opened.config, &k)?;
            let job = codemill_runner::control::retry(&opened.store, &k, options).await?;
            out(&format!(
                "{k}: queued again as job {job}; `codemill run {k}` runs it here, or a worker picks it up"
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let opened = Opened::open(home).await?;
            crate::views::status(&opened, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { key: k, json } => {
            let k = key(&k)?;
            let opened = Opened::open(home).await?;
            crate::views::show(&opened, &k, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { json } => demo::run(cli.home, json).await,
        Command::Budget { day, json } => {
            let opened = Opened::open(home).await?;
            crate::views::budget(&opened, day, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            role,
            workers,
            webhook_secret_env,
            global_limit,
            project_limit,
            lease_secs,
            poll_secs,
            public_url,
        } => {
            let opened = Opened::open(home).await?;
            let worker = codemill_runner::worker::WorkerOptions {
                owner: codemill_runner::worker::owner_here(),
                limits: codemill_store::Limits {
                    global: global_limit,
                    per_project: project_limit,
                },
                lease_ttl: std::time::Duration::from_secs(lease_secs.max(3)),
                poll: std::time::Duration::from_millis(500),
            };
            crate::service::serve(
                opened,
                crate::service::ServeArgs {
                    listen,
                    web_only: role == "web",
                    workers,
                    webhook_secret_env,
                    worker,
                    poll: std::time::Duration::from_secs(poll_secs),
                    public_url,
                },
            )
            .await
        }
        Command::Notifications { limit, json } => {
            let opened = Opened::open(home).await?;
            crate::service::notifications(&opened, limit, json).await
        }
        Command::Inbox { state, limit, json } => {
            let opened = Opened::open(home).await?;
            crate::service::inbox(&opened, state.as_deref(), limit, json).await
        }
        Command::Token(crate::TokenCommand::Create { name }) => {
            let opened = Opened::open(home).await?;
            crate::accounts::token_create(&opened, &name).await
        }
        Command::Token(crate::TokenCommand::List { json }) => {
            let opened = Opened::open(home).await?;
            crate::accounts::token_list(&opened, json).await
        }
        Command::Token(crate::TokenCommand::Revoke { token }) => {
            let opened = Opened::open(home).await?;
            crate::accounts::token_revoke(&opened, &token).await
        }
        Command::Mcp { project, gateway } => match (project, gateway) {
            (_, Some(url)) => crate::mcp::serve_gateway(&url).await,
            (Some(project), None) => {
                let opened = Opened::open(home).await?;
                crate::mcp::serve(opened, &project).await
            }
            (None, None) => Err(anyhow::anyhow!("codemill mcp needs --project or --gateway")),
        },
        Command::Knowledge(k) => {
            let opened = Opened::open(home).await?;
            use crate::KnowledgeCommand as K;
            match k {
                K::Ingest { project, json } => {
                    crate::knowledge::ingest(&opened, &project, json).await
                }
                K::Add {
                    project,
                    title,
                    body,
                    body_file,
                    tag,
                    sources,
                } => {
                    crate::knowledge::add(
                        &opened,
                        crate::knowledge::Add {
                            project,
                            title,
                            body,
                            body_file,
                            tag,
                            sources,
                        },
                    )
                    .await
                }
                K::List {
                    project,
                    tag,
                    stale,
                    json,
                } => crate::knowledge::list(&opened, &project, tag.as_deref(), stale, json).await,
                K::Show { id, json } => crate::knowledge::show(&opened, id, json).await,
                K::Remove { id } => crate::knowledge::remove(&opened, id).await,
                K::Edit {
                    id,
                    title,
                    body,
                    body_file,
                    tag,
                } => crate::knowledge::edit(&opened, id, title, body, body_file, tag).await,
                K::Search {
                    project,
                    query,
                    limit,
                    json,
                } => crate::knowledge::search(&opened, &project, &query, limit, json).await,
            }
        }
        Command::User(crate::UserCommand::Add {
            name,
            role,
            password_stdin: _,
        }) => {
            let opened = Opened::open(home).await?;
            crate::accounts::user_add(&opened, &name, &role).await
        }
        Command::User(crate::UserCommand::List { json }) => {
            let opened = Opened::open(home).await?;
            crate::accounts::user_list(&opened, json).await
        }
        Command::User(crate::UserCommand::Remove { name }) => {
            let opened = Opened::open(home).await?;
            crate::accounts::user_remove(&opened, &name).await
        }
        Command::Doctor { json } => crate::doctor::run(Opened::open(home).await?, json).await,
    }
}

/// Print how a job ended and pick the exit code: 0 when it waits for approval or is done.
/// One line per ticket of `codemill merge`: merged (stdout) or taken out (stderr), then the
/// gate runs this process made.
fn print_merge_report(report: &codemill_runner::MergeReport) {
    for o in &report.outcomes {
        match (o.state, o.already, &o.merged_as) {
            (codemill_store::MergeState::Ejected, ..) => err(&format!(
                "{}: taken out of the merge queue: {}",
                o.ticket,
                o.reason.as_deref().unwrap_or("no reason recorded")
            )),
            (_, true, _) => out(&format!("{}: already merged into {}", o.ticket, o.target)),
            (_, false, Some(sha)) => out(&format!(
                "{}: merged into {} (now {}); the ticket is done",
                o.ticket,
                o.target,
                &sha[..sha.len().min(12)]
            )),
            (_, false, None) => out(&format!(
                "{}: {} already contained it; the ticket is done",
                o.ticket, o.target
            )),
        }
    }
    if report.gate_runs > 0 {
        err(&format!(
            "merge queue: {} entries settled with {} gate runs",
            report.settled, report.gate_runs
        ));
    }
}

fn finish(opened: &Opened, job: codemill_core::ids::JobId, state: &JobState) -> ExitCode {
    let key = &state.ticket;
    if state.refine.is_some() {
        match state.status() {
            "awaiting_acceptance" => {
                out(&format!(
                    "{key}: refined — the spec is on the ticket (`codemill ticket show {key}`). Accept it with `codemill refine accept {key}`, or edit the ticket to refine it again."
                ));
                return ExitCode::SUCCESS;
            }
            "done" if !state.split_tickets.is_empty() => {
                out(&format!(
                    "{key}: accepted — split into {}, each queued for its build.",
                    state.split_tickets.join(", ")
                ));
                return ExitCode::SUCCESS;
            }
            "done" => {
                out(&format!(
                    "{key}: refined and queued for its build; `codemill run {key}` builds it here, or a worker picks it up."
                ));
                return ExitCode::SUCCESS;
            }
            _ => {}
        }
    }
    match state.status() {
        "awaiting_approval" => {
            out(&format!(
                "{key}: proposal ready — commit {} on {} (job {}). Approve with `codemill approve {key}`, inspect with `codemill show {key}`.",
                state
                    .commit
                    .as_deref()
                    .map(|c| &c[..c.len().min(12)])
                    .unwrap_or("-"),
                key.branch(),
                job.short()
            ));
            ExitCode::SUCCESS
        }
        "done" => {
            out(&format!(
                "{key}: shipped — branch {} pushed to {}, PR #{}.",
                key.branch(),
                opened
                    .config
                    .projects
                    .get(key.project())
                    .map(|p| p.repo.as_str())
                    .unwrap_or("-"),
                state
                    .pr
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into())
            ));
            ExitCode::SUCCESS
        }
        "in_review" => {
            out(&format!(
                "{key}: shipped — draft PR {} from {}; codemill follows its reviews, checks and merge while `codemill serve` runs.",
                state
                    .pr_url
                    .clone()
                    .or_else(|| state.pr_number.map(|n| format!("#{n}")))
                    .unwrap_or_else(|| "-".into()),
                key.branch(),
            ));
            ExitCode::SUCCESS
        }
        "rejected" | "cancelled" => {
            out(&format!(
                "{key}: {}; {}",
                state.status(),
                state.reason.as_deref().unwrap_or("")
            ));
            ExitCode::SUCCESS
        }
        // A worker took the job over after the decision: it finishes there.
        "shipping" | "stopping" => {
            out(&format!(
                "{key}: {} — a worker is finishing job {}; follow it with `codemill show {key}`.",
                state.status(),
                job.short()
            ));
            ExitCode::SUCCESS
        }
        "needs_input" => {
            let mut text = format!(
                "{key}: needs input before any code is written. Questions (also on the ticket):"
            );
            for q in &state.questions {
                text.push_str(&format!("\n  - {q}"));
            }
            text.push_str(&format!(
                "\nEdit the ticket (`codemill ticket edit {key} --body-file ...`) and run it again."
            ));
            err(&text);
            ExitCode::from(4)
        }
        _ => {
            err(&format!(
                "{key}: needs attention — {}\nThe reason and context are on the ticket (`codemill ticket show {key}`).",
                state.reason.as_deref().unwrap_or("unknown reason")
            ));
            ExitCode::from(3)
        }
    }
}

async fn project(home: Home, cmd: ProjectCommand) -> Result<ExitCode> {
    match cmd {
        ProjectCommand::Add { name, repo } => {
            let name: ProjectName = name.parse()?;
            let config = home.load_config()?;
            if config.projects.contains_key(name.as_str()) {
                bail!(
                    "project {name} is already registered (repo {})",
                    config.projects[name.as_str()].repo
                );
            }
            // A local path is stored absolute so the project works from any directory.
            let path = PathBuf::from(&repo);
            let repo = if path.exists() {
                std::fs::canonicalize(&path)
                    .with_context(|| format!("resolving {repo}"))?
                    .display()
                    .to_string()
            } else {
                repo
            };
            let info = Git::new()
                .probe_remote(&repo)
                .await
                .map_err(|e| anyhow!("cannot register {name}: {e}"))?;
            home.add_project(name.as_str(), &repo)?;
            out(&format!(
                "Registered project {name}: {repo} (default branch {}, local tracker, local forge)",
                info.default_branch
            ));
            // A working copy with the default branch checked out takes pushed branches (approve),
            // but git refuses to move that branch itself (merge).
            let path = Path::new(&repo);
            if path.join(".git").exists()
                && Git::new()
                    .current_branch(path)
                    .await
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some(info.default_branch.as_str())
            {
                crate::output::err(&format!(
                    "warning: {repo} is a working copy with {} checked out: `codemill approve` can \
                     push branches to it, but `codemill merge` cannot move {} unless you {}",
                    info.default_branch,
                    info.default_branch,
                    codemill_git::CHECKED_OUT_ADVICE.replacen("use a bare", "switch to a bare", 1)
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        ProjectCommand::Remove { name } => {
            let config = home.load_config()?;
            if !config.projects.contains_key(&name) {
                bail!("no project {name} (see `codemill project list`)");
            }
            let opened = Opened::open(home.clone()).await?;
            let active: Vec<String> = opened
                .store
                .queue_entries(None)
                .await?
                .into_iter()
                .filter(|e| e.project == name && e.state.is_active())
                .map(|e| format!("{} ({})", e.ticket, e.state))
                .collect();
            if !active.is_empty() {
                bail!(
                    "project {name} has active jobs: {}; cancel them first (`codemill cancel KEY`)",
                    active.join(", ")
                );
            }
            if !home.remove_project(&name)? {
                bail!("project {name} could not be taken out of codemill.toml");
            }
            for dir in [
                home.clone_dir(&name),
                home.root().join("worktrees").join(&name),
            ] {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("deleting {}", dir.display()))?;
                }
            }
            out(&format!(
                "Removed project {name}: its clone and worktrees are deleted; its tickets and job history stay in the store"
            ));
            Ok(ExitCode::SUCCESS)
        }
        ProjectCommand::List => {
            let config = home.load_config()?;
            if config.projects.is_empty() {
                out("No projects. Add one with `codemill project add NAME --repo PATH_OR_URL`.");
            }
            for p in config.projects.values() {
                out(&format!(
                    "{:<12} {}  (tracker {}, forge {})",
                    p.name,
                    p.repo,
                    p.tracker.name(),
                    p.forge.name()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether the ticket's latest job belongs to the workers' queue (rather than a CLI run).
/// Used by `status`/`show` to load a state.
pub async fn latest_state(
    opened: &Opened,
    key: &TicketKey,
) -> Result<
    Option<(
        codemill_core::ids::JobId,
        JobState,
        Vec<codemill_store::JournalEntry>,
    )>,
> {
    let Some(row) = opened.store.latest_job(key).await? else {
        return Ok(None);
    };
    let journal = opened.store.journal(row.id).await?;
    let state = codemill_runner::jobs::replay(row.id, &journal)?;
    Ok(Some((row.id, state, journal)))
}
