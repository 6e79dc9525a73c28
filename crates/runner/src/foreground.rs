//! The foreground path: `codemill run`, `approve`, `reject` and `cancel` queue the job (or
//! journal the decision) and then claim it in their own process under a lease, exactly as a
//! worker would, so a worker and this process never run the same job at once.

use std::time::Duration;

use chrono::Utc;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{JobState, Stage};
use codemill_store::{QueueState, Ticket};

use crate::engine::Runner;
use crate::error::RunError;
use crate::progress::Progress;
use crate::worker::{Worked, owner_here, owner_is_gone};
use crate::{control, jobs};

/// The lease of a job run in the foreground; renewed every third of it, so a killed process
/// gives the job up within this long.
const FOREGROUND_LEASE: Duration = Duration::from_secs(15);

impl Runner {
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
        let (job, state) = self.run_here(job, key).await?;
        let (job, state) = self.run_children_here(job, key, state).await?;
        // A refined ticket that went to the build queue is built here next.
        if queued_for_build(&state) {
            return Box::pin(self.run_ticket(key)).await;
        }
        Ok((job, state))
    }

    /// Accept a refined spec, then carry it out here (split tickets, or the build queue).
    pub async fn accept(&self, key: &TicketKey, by: &str) -> Result<(JobId, JobState), RunError> {
        let job = control::accept(&self.store, key, by).await?;
        self.after_decision(job, key).await
    }

    /// A split ticket run in the foreground: its sub-jobs run here one after another (workers
    /// may take some meanwhile), and the parent each time they end, until it no longer waits.
    async fn run_children_here(
        &self,
        job: JobId,
        key: &TicketKey,
        mut state: JobState,
    ) -> Result<(JobId, JobState), RunError> {
        while state.stage == Stage::AwaitingChildren {
            let mut ran = false;
            for child in state.children.iter().filter(|c| c.result.is_none()) {
                match self.run_here(child.job, &child.ticket).await {
                    Ok(_) => ran = true,
                    Err(RunError::Busy(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            // Workers may run them (or a retry waits out its backoff): look again in a moment.
            let pause = if ran { 100 } else { 1000 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            state = match self.run_here(job, key).await {
                Ok((_, s)) => s,
                Err(RunError::Busy(_)) => jobs::require(&self.store, key).await?.state,
                Err(e) => return Err(e),
            };
        }
        if state.stage.is_terminal() {
            // A parent that stopped stopped its sub-jobs: their stops run here too.
            for child in &state.children {
                match self.run_here(child.job, &child.ticket).await {
                    Ok(_) | Err(RunError::Busy(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((job, state))
    }

    /// Approve the proposal of a ticket, then ship it in this process.
    pub async fn approve(&self, key: &TicketKey, by: &str) -> Result<(JobId, JobState), RunError> {
        let job = control::approve(&self.store, key, by, None).await?;
        self.emit(Progress::Job {
            job,
            ticket: key.clone(),
            resumed: true,
        });
        let (job, state) = self.after_decision(job, key).await?;
        // A shipped stack's sub-jobs finish here too (they only clean up).
        for entry in &state.stack {
            match self.run_here(entry.job, &entry.ticket).await {
                Ok(_) | Err(RunError::Busy(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((job, state))
    }

    /// Reject the proposal of a ticket: its work is kept on a WIP ref, nothing is pushed.
    pub async fn reject(
        &self,
        key: &TicketKey,
        reason: &str,
        by: &str,
    ) -> Result<(JobId, JobState), RunError> {
        let job = control::reject(&self.store, key, reason, by).await?;
        // A sub-task sent back from its parent's stack: the parent sends it, it runs its fix
        // round here, and the parent stacks again.
        if let Some(latest) = jobs::latest(&self.store, key).await?
            && let Some(sub) = latest.state.subtask.filter(|s| s.parent == job)
        {
            let (job, state) = self.after_decision(job, &sub.parent_ticket).await?;
            return self.run_children_here(job, &sub.parent_ticket, state).await;
        }
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
        let owner = owner_here();
        let mut lease = self
            .store
            .claim_job(job, &owner, FOREGROUND_LEASE, Utc::now())
            .await?;
        if lease.is_none()
            && let Some(entry) = self.store.queue_entry(job).await?
            && entry.state == QueueState::Leased
        {
            let dead = entry.lease_owner.as_deref().is_some_and(owner_is_gone);
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
                Worked::Released { state, .. } => Ok((job, *state)),
                // Cancelled, or taken over: the job goes on elsewhere; say where it stands.
                Worked::Fenced { .. } => {
                    let latest = jobs::require(&self.store, key).await?;
                    Ok((latest.job, latest.state))
                }
                Worked::Retried { error, .. } => Err(RunError::Journal {
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
}

/// A refinement that ended by moving its ticket to the build trigger.
fn queued_for_build(state: &JobState) -> bool {
    state.build_queued
}
