//! `codemill serve` and `codemill token`: the HTTP service (API, webhooks, metrics), with the
//! workers in the same process unless the role is `web`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use codemill_core::ids::{JobId, TicketKey};
use codemill_runner::inbound::{Gateway, Inbound};
use codemill_runner::{RunError, control};
use codemill_server::{
    AppState, Control, ControlError, ControlFuture, OutsideEvent, OutsideHook, ServerConfig,
};
use codemill_store::{Store, StoreError};
use secrecy::SecretString;

use crate::commands::Opened;
use crate::output::{err, out};

/// Plugs the runner's control functions into the server's API.
struct RunnerControl {
    store: Store,
    config: codemill_core::config::Config,
    gateway: Gateway,
}

fn control_error(e: RunError) -> ControlError {
    match e {
        RunError::NoTicket(_) | RunError::NoJob { .. } => ControlError::NotFound(e.to_string()),
        RunError::NotAwaitingApproval { .. }
        | RunError::WrongState { .. }
        | RunError::Busy(_)
        | RunError::NoProject { .. } => ControlError::Conflict(e.to_string()),
        RunError::Store(StoreError::ActiveJob { .. } | StoreError::InvalidTransition { .. }) => {
            ControlError::Conflict(e.to_string())
        }
        // A request the assistant cannot serve as asked: the person can change it.
        RunError::Assistant(_) | RunError::Learn(_) => ControlError::Conflict(e.to_string()),
        other => ControlError::Failed(other.to_string()),
    }
}

impl Control for RunnerControl {
    fn approve<'a>(
        &'a self,
        ticket: &'a TicketKey,
        by: &'a str,
        seen: Option<&'a str>,
    ) -> ControlFuture<'a, JobId> {
        Box::pin(async move {
            control::approve(&self.store, ticket, by, seen)
                .await
                .map_err(control_error)
        })
    }
    fn reject<'a>(
        &'a self,
        ticket: &'a TicketKey,
        reason: &'a str,
        by: &'a str,
    ) -> ControlFuture<'a, JobId> {
        Box::pin(async move {
            control::reject(&self.store, ticket, reason, by)
                .await
                .map_err(control_error)
        })
    }
    fn cancel<'a>(&'a self, ticket: &'a TicketKey, by: &'a str) -> ControlFuture<'a, JobId> {
        Box::pin(async move {
            control::cancel(&self.store, ticket, by)
                .await
                .map_err(control_error)
        })
    }
    fn ask_assistant<'a>(
        &'a self,
        project: &'a str,
        conversation: Option<&'a str>,
        question: &'a str,
        by: &'a str,
    ) -> ControlFuture<'a, codemill_store::AssistantTurn> {
        Box::pin(async move {
            codemill_runner::assistant::ask(
                &self.store,
                &self.config,
                project,
                conversation,
                question,
                by,
                None,
            )
            .await
            .map_err(control_error)
        })
    }
    fn save_assistant_draft<'a>(
        &'a self,
        turn: i64,
        n: i64,
        by: &'a str,
    ) -> ControlFuture<'a, String> {
        Box::pin(async move {
            codemill_runner::assistant::save(
                &self.store,
                &self.config,
                &self.gateway.outside,
                turn,
                n,
                by,
            )
            .await
            .map_err(control_error)
        })
    }
    fn decide_guidance<'a>(&'a self, id: i64, approve: bool, by: &'a str) -> ControlFuture<'a, ()> {
        Box::pin(async move {
            if approve {
                codemill_runner::learn::approve(&self.store, id, by).await
            } else {
                codemill_runner::learn::reject(&self.store, id, by).await
            }
            .map_err(control_error)
        })
    }
    fn accept<'a>(&'a self, ticket: &'a TicketKey, by: &'a str) -> ControlFuture<'a, JobId> {
        Box::pin(async move {
            control::accept(&self.store, ticket, by)
                .await
                .map_err(control_error)
        })
    }
    fn retry<'a>(&'a self, ticket: &'a TicketKey) -> ControlFuture<'a, JobId> {
        Box::pin(async move {
            let options =
                control::JobOptions::registered(&self.config, ticket).map_err(control_error)?;
            control::retry(&self.store, ticket, options)
                .await
                .map_err(control_error)
        })
    }
    fn merge<'a>(
        &'a self,
        ticket: &'a TicketKey,
        by: &'a str,
    ) -> ControlFuture<'a, serde_json::Value> {
        Box::pin(async move {
            let tickets = codemill_runner::merge_queue::stack_or_self(&self.store, ticket)
                .await
                .map_err(control_error)?;
            if tickets.len() > 1 || tickets.first() != Some(ticket) {
                // A split ticket: each sub-task's PR is queued, bottom first.
                let mut stack = Vec::new();
                for key in &tickets {
                    stack.push(self.merge_one(key, by).await?);
                }
                return Ok(serde_json::json!({
                    "ticket": ticket.to_string(),
                    "action": "queued_stack",
                    "stack": stack,
                }));
            }
            self.merge_one(ticket, by).await
        })
    }
    fn outside<'a>(&'a self, event: OutsideEvent) -> ControlFuture<'a, serde_json::Value> {
        Box::pin(async move {
            let result = match &event {
                OutsideEvent::Trigger {
                    project,
                    key,
                    actor,
                } => self.gateway.trigger(project, key, actor.as_deref()).await,
                OutsideEvent::Feedback {
                    project,
                    head,
                    pr,
                    feedback,
                } => {
                    self.gateway
                        .feedback(project, head, *pr, feedback.clone())
                        .await
                }
                OutsideEvent::PrClosed {
                    project,
                    head,
                    merged,
                    actor,
                } => {
                    self.gateway
                        .pr_closed(project, head, *merged, actor.as_deref())
                        .await
                }
            };
            match result {
                Ok(inbound) => {
                    if let Inbound::Ignored { reason } = &inbound {
                        err(&format!("webhook ignored: {reason}"));
                    }
                    serde_json::to_value(&inbound).map_err(|e| ControlError::Failed(e.to_string()))
                }
                Err(e) => Err(control_error(e)),
            }
        })
    }
}

impl RunnerControl {
    /// Queue one ticket's PR on the merge queue; the API's answer for it.
    async fn merge_one(
        &self,
        ticket: &TicketKey,
        by: &str,
    ) -> Result<serde_json::Value, ControlError> {
        let queued = codemill_runner::merge_queue::enqueue(&self.store, &self.config, ticket, by)
            .await
            .map_err(control_error)?;
        let answer = match queued {
            Ok((entry, created)) => {
                let position = self
                    .store
                    .merge_queue(&entry.project, &entry.target)
                    .await
                    .map_err(|e| ControlError::Failed(e.to_string()))?
                    .iter()
                    .position(|e| e.id == entry.id)
                    .map_or(0, |p| p + 1);
                serde_json::json!({
                    "ticket": ticket.to_string(),
                    "action": if created { "queued" } else { "already_queued" },
                    "entry": entry.id,
                    "target": entry.target,
                    "position": position,
                })
            }
            Err(merged) => serde_json::json!({
                "ticket": ticket.to_string(),
                "action": "already_merged",
                "target": merged.target,
            }),
        };
        Ok(answer)
    }
}

/// The per-project webhooks of outside trackers and forges, with their secrets read from the
/// environment variables the config names.
fn outside_hooks(config: &codemill_core::config::Config) -> Result<Vec<OutsideHook>> {
    use codemill_core::config::{ForgeSettings, TrackerSettings, WebhookSettings};
    let mut hooks = Vec::new();
    let mut add = |vendor: &str,
                   project: &str,
                   w: &Option<WebhookSettings>,
                   github: Option<codemill_core::config::GithubSettings>,
                   gitlab: Option<codemill_core::config::GitlabSettings>|
     -> Result<()> {
        let Some(w) = w else { return Ok(()) };
        if hooks
            .iter()
            .any(|h: &OutsideHook| h.vendor == vendor && h.project == project)
        {
            return Ok(());
        }
        let secret = std::env::var(&w.secret_env).map_err(|_| {
            anyhow!(
                "projects.{project}.{vendor}.webhook.secret_env names {}, but that environment variable is not set",
                w.secret_env
            )
        })?;
        hooks.push(OutsideHook {
            vendor: vendor.to_string(),
            project: project.to_string(),
            auth: w.auth,
            secret: SecretString::from(secret),
            github,
            gitlab,
        });
        Ok(())
    };
    for (name, p) in &config.projects {
        match &p.tracker {
            TrackerSettings::Local => {}
            TrackerSettings::Jira(j) => add("jira", name, &j.webhook, None, None)?,
            TrackerSettings::Github(g) => add("github", name, &g.webhook, Some(g.clone()), None)?,
            TrackerSettings::Linear(l) => add("linear", name, &l.webhook, None, None)?,
            TrackerSettings::Gitlab(g) => add("gitlab", name, &g.webhook, None, Some(g.clone()))?,
        }
        match &p.forge {
            ForgeSettings::Local => {}
            ForgeSettings::Github(g) => add("github", name, &g.webhook, Some(g.clone()), None)?,
            ForgeSettings::Gitlab(g) => add("gitlab", name, &g.webhook, None, Some(g.clone()))?,
        }
    }
    Ok(hooks)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// After the first stop request, a second Ctrl-C or SIGTERM stops the process at once. Every
/// journal write is its own transaction, so nothing is left half-written; the jobs it held
/// resume when their leases expire (at once when codemill restarts on this host).
pub fn exit_on_second_signal() {
    tokio::spawn(async {
        shutdown_signal().await;
        err("codemill: stopping now (second signal); its jobs resume after a restart");
        std::process::exit(130);
    });
}

/// `PROVIDER=VAR`: the webhook secret of PROVIDER is in environment variable VAR.
fn webhook_secrets(specs: &[String]) -> Result<Vec<(String, SecretString)>> {
    specs
        .iter()
        .map(|spec| {
            let (provider, var) = spec
                .split_once('=')
                .ok_or_else(|| anyhow!("--webhook-secret-env {spec:?}: expected PROVIDER=ENV_VAR, e.g. local=CODEMILL_WEBHOOK_SECRET"))?;
            let secret = std::env::var(var)
                .map_err(|_| anyhow!("--webhook-secret-env {provider}={var}: environment variable {var} is not set"))?;
            Ok((provider.to_string(), SecretString::from(secret)))
        })
        .collect()
}

pub struct ServeArgs {
    pub listen: SocketAddr,
    pub web_only: bool,
    pub workers: usize,
    pub webhook_secret_env: Vec<String>,
    pub worker: codemill_runner::worker::WorkerOptions,
    /// Between passes of the reconciling poller; zero turns it off.
    pub poll: Duration,
    /// The dashboard's public URL (`--public-url`).
    pub public_url: Option<String>,
}

/// `[web.oidc]` with its client secret from the environment variable it names.
fn oidc_settings(
    config: &codemill_core::config::Config,
) -> Result<Option<codemill_server::OidcSettings>> {
    let Some(oidc) = &config.web.oidc else {
        return Ok(None);
    };
    let secret = std::env::var(&oidc.client_secret_env)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "[web.oidc] client_secret_env names {}, which is not set: export the client \
                 secret of {} there",
                oidc.client_secret_env,
                oidc.provider
            )
        })?;
    Ok(Some(codemill_server::OidcSettings {
        config: oidc.clone(),
        client_secret: secrecy::SecretString::from(secret),
    }))
}

pub async fn serve(mut opened: Opened, args: ServeArgs) -> Result<ExitCode> {
    let config = ServerConfig {
        webhook_secrets: webhook_secrets(&args.webhook_secret_env)?,
        max_rounds: opened.config.max_fix_rounds,
        max_attempts: control::MAX_ATTEMPTS,
        outside_hooks: outside_hooks(&opened.config)?,
        public_url: args.public_url.clone(),
        budgets: opened.config.budgets,
        project_budgets: opened
            .config
            .projects
            .keys()
            .map(|p| (p.to_string(), opened.config.budgets_for(p)))
            .collect(),
        assistant_budgets: opened
            .config
            .projects
            .iter()
            .map(|(name, p)| (name.clone(), p.assistant.budget_usd))
            .collect(),
        oidc: oidc_settings(&opened.config)?,
        trace_url: opened.config.telemetry.trace_url.clone(),
        ..ServerConfig::default()
    };
    let gateway = Gateway::new(
        opened.store.clone(),
        opened.config.clone(),
        opened.outside.clone(),
    );
    let control = Arc::new(RunnerControl {
        store: opened.store.clone(),
        config: opened.config.clone(),
        gateway: gateway.clone(),
    });
    let state = AppState::new(opened.store.clone(), control, config).map_err(|e| anyhow!("{e}"))?;
    let notifier = notifier(&opened)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    out(&format!(
        "codemill serving on http://{addr} (role {})",
        if args.web_only { "web" } else { "all" }
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    if !args.web_only {
        let runner = opened.runner().await?;
        crate::commands::guard_ready(&runner).await?;
        {
            // Queued merges land beside the job loops, so a merge waiting for checks holds no
            // job.
            let runner = runner.clone_with_progress(tokio::sync::mpsc::unbounded_channel().0);
            let (stop, poll) = (stop.clone(), args.worker.poll);
            workers.spawn(async move { crate::progress::merge_loop(&runner, stop, poll).await });
        }
        {
            // Weekly learning: each project once per ISO week, by whichever node starts first.
            let runner = runner.clone_with_progress(tokio::sync::mpsc::unbounded_channel().0);
            let (stop, store) = (stop.clone(), opened.store.clone());
            let projects: Vec<String> = opened.config.projects.keys().cloned().collect();
            workers.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let week = codemill_runner::learn::this_week();
                    for project in &projects {
                        match store
                            .start_learn_run(project, &week, chrono::Utc::now())
                            .await
                        {
                            Ok(true) => match runner.learn(project).await {
                                // Nothing was asked: look again within the week.
                                Ok(l) if l.too_little() => {
                                    err(&format!(
                                        "learning: {project} {week}: not yet ({})",
                                        l.note.unwrap_or_default()
                                    ));
                                    if let Err(e) = store.forget_learn_run(project, &week).await {
                                        err(&format!("learning: {e}"));
                                    }
                                }
                                Ok(l) => err(&format!(
                                    "learning: {project} {week}: {} new proposal(s){}",
                                    l.proposals.len(),
                                    l.note.map(|n| format!(" ({n})")).unwrap_or_default()
                                )),
                                Err(e) => err(&format!("learning: {project}: {e}")),
                            },
                            Ok(false) => {}
                            Err(e) => err(&format!("learning: {e}")),
                        }
                    }
                    // Look again hourly; short naps so a shutdown is not held up.
                    for _ in 0..3600 {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
        for _ in 0..args.workers.max(1) {
            let runner = runner.clone_with_progress(tokio::sync::mpsc::unbounded_channel().0);
            let options = args.worker.clone();
            let stop = stop.clone();
            workers.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match runner.work_once(&options).await {
                        Ok(Some(w)) => err(&format!("worker: {}", crate::progress::describe(&w))),
                        // No job: a question for the assistant, if one waits.
                        Ok(None) if crate::progress::answer_one(&runner).await => {}
                        Ok(None) => tokio::time::sleep(options.poll).await,
                        Err(e) => {
                            err(&format!("worker: {e}"));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
    }
    if !args.poll.is_zero() {
        let store = opened.store.clone();
        let config = opened.config.clone();
        let stop = stop.clone();
        let every = args.poll;
        workers.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match control::poll_once(&store, &config).await {
                    Ok(polled) => {
                        for (key, job) in polled.queued {
                            err(&format!("poller: queued {key} as job {job}"));
                        }
                        for (key, e) in polled.skipped {
                            err(&format!("poller: skipped {key}: {e}"));
                        }
                    }
                    Err(e) => err(&format!("poller: {e}")),
                }
                for result in gateway.poll().await {
                    match result {
                        Ok(Inbound::Queued {
                            ticket,
                            job,
                            created: true,
                        }) => err(&format!("poller: queued {ticket} as job {job}")),
                        Ok(_) => {}
                        Err(e) => err(&format!("poller: {e}")),
                    }
                }
                // Short naps so a shutdown is not held up by a long poll interval.
                let until = std::time::Instant::now() + every;
                while std::time::Instant::now() < until
                    && !stop.load(std::sync::atomic::Ordering::SeqCst)
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }
    let shutdown = {
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            err("codemill: shutting down (finishing running jobs; a second signal stops at once)");
            exit_on_second_signal();
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    codemill_server::serve(listener, state, shutdown).await?;
    while workers.join_next().await.is_some() {}
    if let Some(n) = notifier {
        n.abort();
    }
    Ok(ExitCode::SUCCESS)
}

/// `codemill inbox`: the newest deliveries with what processing them did.
pub async fn inbox(
    opened: &Opened,
    state: Option<&str>,
    limit: u32,
    json: bool,
) -> Result<ExitCode> {
    let state = match state {
        None => None,
        Some("pending") => Some(codemill_store::InboxState::Pending),
        Some("done") => Some(codemill_store::InboxState::Done),
        Some("failed") => Some(codemill_store::InboxState::Failed),
        Some(other) => bail!("--state {other:?}: expected pending, done or failed"),
    };
    let rows = opened.store.deliveries(state, limit).await?;
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "provider": r.provider,
                    "delivery": r.delivery_id,
                    "received_at": r.received_at,
                    "state": r.state,
                    "attempts": r.attempts,
                    "next_at": r.next_at,
                    "job": r.job,
                    "outcome": r.outcome,
                })
            })
            .collect();
        out(&serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        out("No webhook deliveries.");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        let what = match (&r.outcome, r.state) {
            (Some(o), _) => summary(o),
            (None, codemill_store::InboxState::Pending) => "not processed yet".into(),
            // Local deliveries are handled in the transaction that stores them.
            (None, _) => match &r.job {
                Some(job) => format!("handled when received: job {job}"),
                None => "handled when received: started no job".into(),
            },
        };
        let retry = match (r.state, r.next_at) {
            (codemill_store::InboxState::Pending, Some(at)) if r.attempts > 0 => {
                format!(
                    " (attempt {}, next {})",
                    r.attempts + 1,
                    at.format("%H:%M:%S")
                )
            }
            _ => String::new(),
        };
        out(&format!(
            "{}  {:<18} {:<8} {}  {}{}",
            r.received_at.format("%Y-%m-%d %H:%M:%S"),
            codemill_core::text::log_safe(&r.provider),
            r.state.as_str(),
            codemill_core::text::log_safe(&r.delivery_id),
            codemill_core::text::log_safe(&what),
            retry
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line for a processing outcome: `queued DEMO-3 (job …)`, `ignored: <reason>`, `error: …`.
fn summary(outcome: &serde_json::Value) -> String {
    let field = |k: &str| outcome.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    match field("result") {
        "queued" => format!("queued {} (job {})", field("ticket"), field("job")),
        "recorded" => format!("recorded on {} (job {})", field("ticket"), field("job")),
        "ignored" => format!("ignored: {}", field("reason")),
        "error" => format!("error: {}", field("error")),
        other => other.to_string(),
    }
}

/// Start sending the projects' notifications in the background, if any project has channels.
/// A channel whose environment variable is not set stops the start with its name.
pub fn notifier(opened: &Opened) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let notifier = codemill_notify::Notifier::new(
        opened.store.clone(),
        &opened.config,
        codemill_notify::NotifierOptions::default(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    Ok(notifier.map(|n| tokio::spawn(n.run())))
}

/// The notifier of a one-pass worker (`worker --once`), checked like a lasting one's; it reads
/// the stream before the pass (so a first run has a place to start from) and tells what the
/// pass's job asked for after it ([`tell_once`]).
pub async fn notifier_once(opened: &Opened) -> Result<Option<codemill_notify::Notifier>> {
    let notifier = codemill_notify::Notifier::new(
        opened.store.clone(),
        &opened.config,
        codemill_notify::NotifierOptions::default(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    if let Some(n) = &notifier
        && let Err(e) = n.collect().await
    {
        err(&format!("warning: notifications: {e}"));
    }
    Ok(notifier)
}

/// Collect and send once; a channel that is down is tried again by the next worker or `serve`.
pub async fn tell_once(notifier: &codemill_notify::Notifier) {
    if let Err(e) = notifier.collect().await {
        err(&format!("warning: notifications: {e}"));
    }
    if let Err(e) = notifier.deliver().await {
        err(&format!("warning: notifications: {e}"));
    }
}

/// `codemill notifications`: the newest messages with where they went and how it ended.
pub async fn notifications(opened: &Opened, limit: u32, json: bool) -> Result<ExitCode> {
    let rows = opened.store.notifications(limit).await?;
    if json {
        out(&serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        out("No notifications.");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        let how = match (r.state, &r.last_error) {
            (codemill_store::NotificationState::Sent, _) => "sent".to_string(),
            (state, Some(e)) => format!("{} after {} attempt(s): {e}", state.as_str(), r.attempts),
            (state, None) => state.as_str().to_string(),
        };
        out(&format!(
            "{}  {:<9} {:<16} {:<32} {}",
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            r.ticket,
            r.kind,
            codemill_core::text::log_safe(&r.channel),
            codemill_core::text::log_safe(&how)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
