//! Workers: claim queued jobs under a lease, drive them with fenced writes and a heartbeat, and
//! hand them back to the queue — done, waiting for approval, or to be retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use codemill_core::ids::JobId;
use codemill_core::pipeline::Stage;
use codemill_store::{Lease, Limits, Outcome, StoreError};

use crate::engine::{RunError, Runner};
use crate::progress::Progress;

/// How a worker claims and holds jobs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Names this worker in leases (host and process are a good choice).
    pub owner: String,
    pub limits: Limits,
    /// A lease not renewed for this long is taken back by the reaper.
    pub lease_ttl: Duration,
    /// How long an idle worker waits before looking for work again.
    pub poll: Duration,
}

/// What one claimed job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Worked {
    /// The job reached a stage where it waits or ends; the queue was told.
    Released { job: JobId, status: String },
    /// Another owner took the job over (or it was cancelled); this worker stopped writing.
    Fenced { job: JobId, reason: String },
    /// Our own infrastructure failed; the job goes back to the queue with backoff.
    Retried { job: JobId, error: String },
}

impl Runner {
    /// Reap expired leases, claim one due job, and run it until it waits or ends.
    /// `None` when nothing was due.
    pub async fn work_once(&self, options: &WorkerOptions) -> Result<Option<Worked>, RunError> {
        self.store.reap(Utc::now()).await?;
        let Some(lease) = self
            .store
            .claim(
                &options.owner,
                options.lease_ttl,
                options.limits,
                Utc::now(),
            )
            .await?
        else {
            return Ok(None);
        };
        let job = lease.job;
        self.emit(Progress::Info {
            message: format!(
                "{} claimed job {} of {} (attempt {})",
                lease.owner,
                job.short(),
                lease.ticket,
                lease.attempt
            ),
        });
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = self.spawn_heartbeat(lease.clone(), lost.clone());
        let result = match self.store.ticket(&lease.ticket).await? {
            Some(ticket) => self.drive_leased(job, &ticket, Some(&lease)).await,
            None => Err(RunError::NoTicket(lease.ticket.clone())),
        };
        heartbeat.abort();
        let worked = match result {
            Ok(state) => {
                let outcome = if matches!(state.stage, Stage::AwaitingApproval | Stage::InReview) {
                    Outcome::Waiting
                } else {
                    Outcome::Done
                };
                match self.store.release(&lease, &outcome, Utc::now()).await {
                    Ok(_) => Worked::Released {
                        job,
                        status: state.status().to_string(),
                    },
                    Err(StoreError::Fenced { reason, .. }) => Worked::Fenced {
                        job,
                        reason: reason.to_string(),
                    },
                    Err(e) => return Err(e.into()),
                }
            }
            Err(RunError::Store(StoreError::Fenced { reason, .. })) => Worked::Fenced {
                job,
                reason: reason.to_string(),
            },
            Err(e) => {
                let error = e.to_string();
                match self
                    .store
                    .release(
                        &lease,
                        &Outcome::Retry {
                            error: error.clone(),
                            delay: None,
                        },
                        Utc::now(),
                    )
                    .await
                {
                    Ok(_) | Err(StoreError::Fenced { .. }) => Worked::Retried { job, error },
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if lost.load(Ordering::SeqCst) && !matches!(worked, Worked::Fenced { .. }) {
            tracing::warn!(%job, "heartbeat failed while the job ran");
        }
        Ok(Some(worked))
    }

    /// Renew the lease every third of its ttl until aborted; a refused renewal marks it lost.
    fn spawn_heartbeat(&self, lease: Lease, lost: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let every = lease.ttl / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if store.heartbeat(&lease, Utc::now()).await.is_err() {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        })
    }

    /// Work until `shutdown` resolves: one job at a time, polling when idle.
    pub async fn work(
        &self,
        options: &WorkerOptions,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), RunError> {
        tokio::pin!(shutdown);
        loop {
            let next = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = self.work_once(options) => r?,
            };
            if next.is_none() {
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(options.poll) => {}
                }
            }
        }
    }
}
