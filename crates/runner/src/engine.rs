//! The job loop: replay the journal, run the pending effect, journal its result, repeat.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use codemill_agent::{Api, Endpoint};
use codemill_core::config::{Config, ProviderApi, ProviderConfig};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{Action, JobEvent, JobState, apply, next_action};
use codemill_git::Git;
use codemill_store::{JournalEntry, Lease, QueueState, Store, StoreError, Ticket};
use secrecy::SecretString;

use crate::home::Home;
use crate::progress::{Progress, ProgressSink};
use crate::{control, jobs};

/// The lease of a job run in the foreground (`codemill run`, `approve`, `reject`, `cancel`);
/// renewed every third of it, so a killed process gives the job up within this long.
const FOREGROUND_LEASE: Duration = Duration::from_secs(15);

/// Why a run could not proceed. Job-level failures are not errors: they end the job as
/// needs_attention. These are about the request itself or our own infrastructure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no ticket {0} (see `codemill ticket list`)")]
    NoTicket(TicketKey),
    #[error(
        "ticket {ticket} belongs to project {project}, which is not registered (see `codemill project add`)"
    )]
    NoProject { ticket: TicketKey, project: String },
    #[error("{ticket} has no job yet; run `codemill run {ticket}` first")]
    NoJob { ticket: TicketKey },
    #[error("{ticket} is not awaiting approval (its job is {status})")]
    NotAwaitingApproval { ticket: TicketKey, status: String },
    #[error("{ticket}: {message}")]
    WrongState { ticket: TicketKey, message: String },
    #[error(
        "a worker is running {0} right now (see `codemill show {0}`), or its job changed while this request was made; try again"
    )]
    Busy(TicketKey),
    #[error(
        "provider {provider:?}: environment variable {var} is not set (codemill reads the API key from it)"
    )]
    MissingKey { provider: String, var: String },
    #[error(
        "the demo provider needs the embedded demo model, which is not running in this process"
    )]
    NoDemoModel,
    /// Untrusted code cannot be run safely here (bubblewrap missing or unable to sandbox).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The project's outside tracker or forge could not be reached or refused a request.
    #[error("project {project}: {message}")]
    Outside { project: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job {job}: {message}")]
    Journal { job: JobId, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Repository policies by (project, base commit): a job's policy never changes.
pub(crate) type PolicyCache = std::sync::Arc<
    std::sync::Mutex<
        std::collections::HashMap<(String, String), Option<codemill_core::config::RepoPolicy>>,
    >,
>;

/// Settings of a runner that do not come from the config file.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Base URL of the in-process demo model server, when one runs.
    pub demo_base_url: Option<String>,
    /// Who approves or rejects from this process (shown on tickets).
    pub actor: String,
    /// Fault injection for crash tests: after running the effect with this name, and before
    /// journalling its result, the process kills itself with SIGKILL. Set from
    /// `CODEMILL_CRASH_AFTER_EFFECT`; never set in normal use.
    pub crash_after_effect: Option<String>,
}

/// Drives jobs for one codemill home.
pub struct Runner {
    pub(crate) home: Home,
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) git: Git,
    pub(crate) options: RunnerOptions,
    pub(crate) progress: Option<ProgressSink>,
    /// Repository policies by (project, base commit): a job's policy never changes.
    pub(crate) policies: PolicyCache,
    /// One HTTP client for every built-in agent step: its connection pool and TLS setup are
    /// made once, not per step.
    pub(crate) http: reqwest::Client,
    /// Each project's outside tracker and forge clients, built on first use.
    pub(crate) outside: crate::outside::OutsideCache,
    /// The sandbox setup and the model gateway, made on first use.
    pub(crate) guard: crate::guard::GuardCell,
    /// Fires when the job this runner drives lost its lease (a person cancelled it, or another
    /// owner took it over): the running agent step stops instead of spending on.
    pub(crate) lost: tokio_util::sync::CancellationToken,
}

impl Runner {
    pub fn new(home: Home, config: Config, store: Store, options: RunnerOptions) -> Self {
        Runner {
            home,
            config,
            store,
            git: Git::new(),
            options,
            progress: None,
            policies: Default::default(),
            http: reqwest::Client::new(),
            outside: Default::default(),
            guard: Default::default(),
            lost: Default::default(),
        }
    }

    /// Use these outside clients (shared with the webhook side, or with test retry waits).
    pub fn with_outside(mut self, outside: crate::outside::OutsideCache) -> Self {
        self.outside = outside;
        self
    }

    pub fn outside_cache(&self) -> crate::outside::OutsideCache {
        self.outside.clone()
    }

    /// Stream live progress to `sink`.
    pub fn with_progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    /// The same runner reporting progress to `sink`.
    pub fn clone_with_progress(&self, sink: ProgressSink) -> Runner {
        Runner {
            home: self.home.clone(),
            config: self.config.clone(),
            store: self.store.clone(),
            git: self.git.clone(),
            options: self.options.clone(),
            progress: Some(sink),
            policies: self.policies.clone(),
            http: self.http.clone(),
            outside: self.outside.clone(),
            guard: self.guard.clone(),
            lost: self.lost.clone(),
        }
    }

    /// The same runner, stopping its agent steps when `lost` fires.
    pub(crate) fn with_lost(&self, lost: tokio_util::sync::CancellationToken) -> Runner {
        let mut runner = self.clone_with_progress(tokio::sync::mpsc::unbounded_channel().0);
        runner.progress = self.progress.clone();
        runner.lost = lost;
        runner
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn emit(&self, p: Progress) {
        if let Some(sink) = &self.progress {
            let _ = sink.send(p);
        }
    }

    /// The endpoint of the default provider (`[agent]`), with the key read from its variable.
    pub fn endpoint(&self) -> Result<Endpoint, RunError> {
        self.endpoint_for(self.config.provider())
    }

    /// A provider's endpoint, with the key read from its environment variable.
    pub fn endpoint_for(&self, p: &ProviderConfig) -> Result<Endpoint, RunError> {
        let (api, base_url) = match p.api {
            ProviderApi::Demo => (
                Api::Anthropic,
                self.options
                    .demo_base_url
                    .clone()
                    .ok_or(RunError::NoDemoModel)?,
            ),
            ProviderApi::Anthropic => (Api::Anthropic, p.base_url.clone()),
            ProviderApi::OpenaiChat => (Api::OpenAiChat, p.base_url.clone()),
            ProviderApi::OpenaiResponses => (Api::OpenAiResponses, p.base_url.clone()),
            ProviderApi::Gemini => (Api::Gemini, p.base_url.clone()),
        };
        let api_key = match &p.api_key_env {
            Some(var) => std::env::var(var).map_err(|_| RunError::MissingKey {
                provider: p.name.clone(),
                var: var.clone(),
            })?,
            None if p.api == ProviderApi::Demo => "codemill-demo-key".to_string(),
            None => String::new(),
        };
        Ok(Endpoint {
            api,
            base_url,
            api_key: SecretString::from(api_key),
        })
    }

    pub async fn ticket(&self, key: &TicketKey) -> Result<Ticket, RunError> {
        self.store
            .ticket(key)
            .await?
            .ok_or_else(|| RunError::NoTicket(key.clone()))
    }

    /// Run a ticket in this process until it waits for approval or ends: it is queued (its
    /// unfinished job, or a new one when there is none or the last one stopped) and then
    /// claimed here under a lease, exactly as a worker would, so a worker and this process can
    /// never run the same job at once.
    pub async fn run_ticket(&self, key: &TicketKey) -> Result<(JobId, JobState), RunError> {
        let ticket = self.ticket(key).await?;
        if !self.config.projects.contains_key(key.project()) {
            return Err(RunError::NoProject {
                ticket: key.clone(),
                project: key.project().to_string(),
            });
        }
        // Fail before creating a job when no agent step could ever reach the model, or when
        // nothing could run sandboxed.
        self.endpoint()?;
        self.guard().await.map_err(RunError::Sandbox)?;
        // A ticket waiting for answers starts again only once a person has edited it.
        if let Some(latest) = jobs::latest(&self.store, key).await?
            && !latest.state.answered(ticket.edited_at, latest.last_at())
        {
            return Ok((latest.job, latest.state));
        }
        let options = control::JobOptions::for_project(&self.config, key.project());
        let (job, created) = control::enqueue(&self.store, key, options).await?;
        self.emit(Progress::Job {
            job,
            ticket: key.clone(),
            resumed: !created,
        });
        self.run_here(job, key).await
    }

    /// Approve the proposal of a ticket, then ship it in this process.
    pub async fn approve(&self, key: &TicketKey, by: &str) -> Result<(JobId, JobState), RunError> {
        let job = control::approve(&self.store, key, by).await?;
        self.emit(Progress::Job {
            job,
            ticket: key.clone(),
            resumed: true,
        });
        self.after_decision(job, key).await
    }

    /// Reject the proposal of a ticket: its work is kept on a WIP ref, nothing is pushed.
    pub async fn reject(
        &self,
        key: &TicketKey,
        reason: &str,
        by: &str,
    ) -> Result<(JobId, JobState), RunError> {
        let job = control::reject(&self.store, key, reason, by).await?;
        self.after_decision(job, key).await
    }

    /// Cancel a ticket's job and run its stop (WIP ref, note, cleanup) in this process.
    pub async fn cancel(&self, key: &TicketKey, by: &str) -> Result<(JobId, JobState), RunError> {
        let job = control::cancel(&self.store, key, by).await?;
        self.after_decision(job, key).await
    }

    /// Carry out a journalled decision here; when a worker took the job first, it finishes
    /// there and the decision stands, so that is no error.
    async fn after_decision(
        &self,
        job: JobId,
        key: &TicketKey,
    ) -> Result<(JobId, JobState), RunError> {
        match self.run_here(job, key).await {
            Err(RunError::Busy(_)) => {
                let latest = jobs::require(&self.store, key).await?;
                Ok((latest.job, latest.state))
            }
            other => other,
        }
    }

    /// Claim `job` in this process and drive it under a lease with a heartbeat, as a worker
    /// does. A job a worker holds is refused (`Busy`) unless that worker was a process of this
    /// host that is gone; a job that waits for a person or has ended is returned as it is.
    pub async fn run_here(
        &self,
        job: JobId,
        key: &TicketKey,
    ) -> Result<(JobId, JobState), RunError> {
        let owner = crate::worker::owner_here();
        let mut lease = self
            .store
            .claim_job(job, &owner, FOREGROUND_LEASE, Utc::now())
            .await?;
        if lease.is_none()
            && let Some(entry) = self.store.queue_entry(job).await?
            && entry.state == QueueState::Leased
        {
            let dead = entry
                .lease_owner
                .as_deref()
                .is_some_and(crate::worker::owner_is_gone);
            if !dead {
                return Err(RunError::Busy(key.clone()));
            }
            // A codemill of this host that was killed mid-job: take its job over now.
            self.store
                .expire_lease(job, entry.lease_token, Utc::now())
                .await?;
            self.store.reap(Utc::now()).await?;
            lease = self
                .store
                .claim_job(job, &owner, FOREGROUND_LEASE, Utc::now())
                .await?;
        }
        match lease {
            Some(lease) => match self.work_lease(&lease).await? {
                crate::worker::Worked::Released { state, .. } => Ok((job, *state)),
                // Cancelled, or taken over: the job goes on elsewhere; say where it stands.
                crate::worker::Worked::Fenced { .. } => {
                    let latest = jobs::require(&self.store, key).await?;
                    Ok((latest.job, latest.state))
                }
                crate::worker::Worked::Retried { error, .. } => Err(RunError::Journal {
                    job,
                    message: format!("{error} (the job is queued again for a retry)"),
                }),
            },
            None => {
                let latest = jobs::require(&self.store, key).await?;
                Ok((latest.job, latest.state))
            }
        }
    }

    /// The loop: until the job waits or ends, run its pending effect and journal the result.
    /// Every append is fenced by the lease: once another owner has taken the job over (or a
    /// person cancelled it), the next write is refused and the loop stops without further
    /// side effects.
    pub(crate) async fn drive(
        &self,
        job: JobId,
        ticket: &Ticket,
        lease: &Lease,
    ) -> Result<JobState, RunError> {
        // Read and replay once; afterwards the state advances in memory with each append, which
        // is exactly what a replay of the stored journal would give.
        let mut journal = self.store.journal(job).await?;
        let mut state = replay(job, &journal)?;
        loop {
            match next_action(&state) {
                Action::Finished | Action::AwaitApproval | Action::AwaitPr => return Ok(state),
                Action::GiveUp { effect, reason } => {
                    let event = JobEvent::EffectFailed {
                        effect,
                        error: reason,
                    };
                    state = self.record(job, &state, &mut journal, event, lease).await?;
                }
                Action::Run(effect) => {
                    let started = JobEvent::EffectStarted {
                        effect: effect.name(),
                    };
                    state = self
                        .record(job, &state, &mut journal, started, lease)
                        .await?;
                    self.emit(Progress::Step {
                        effect: effect.name(),
                        round: state.round,
                    });
                    let event = self.execute(job, &state, &journal, ticket, &effect).await?;
                    if self.options.crash_after_effect.as_deref() == Some(effect.name().as_str()) {
                        crash_now().await;
                    }
                    state = self.record(job, &state, &mut journal, event, lease).await?;
                }
            }
        }
    }

    /// Journal `event` as the next entry and return the state it leads to.
    async fn record(
        &self,
        job: JobId,
        state: &JobState,
        journal: &mut Vec<JournalEntry>,
        event: JobEvent,
        lease: &Lease,
    ) -> Result<JobState, RunError> {
        let next = apply(state, &event).map_err(|e| RunError::Journal {
            job,
            message: e.to_string(),
        })?;
        let seq = journal.len() as i64;
        self.store
            .append_fenced(lease, seq, &event, chrono::Utc::now())
            .await?;
        journal.push(JournalEntry {
            seq,
            at: chrono::Utc::now(),
            event,
        });
        Ok(next)
    }
}

/// SIGKILL this process, as `kill -9` would: no destructors, no flushing.
async fn crash_now() {
    let pid = std::process::id().to_string();
    let _ = codemill_process::Cmd::new("kill")
        .args(["-9", &pid])
        .output(None, 1024)
        .await;
    // The signal is asynchronous; never carry on past this point.
    std::process::abort();
}

/// Fold a journal into a state.
pub fn replay(job: JobId, journal: &[JournalEntry]) -> Result<JobState, RunError> {
    JobState::replay(journal.iter().map(|e| &e.event)).map_err(|e| RunError::Journal {
        job,
        message: e.to_string(),
    })
}
