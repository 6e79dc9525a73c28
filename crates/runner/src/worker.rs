//! Workers: claim queued jobs under a lease, drive them with fenced writes and a heartbeat, and
//! hand them back to the queue — done, waiting for approval, or to be retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use codemill_core::ids::JobId;
use codemill_core::pipeline::{JobState, Stage};
use codemill_store::{Lease, Limits, Outcome, QueueState, StoreError};

use crate::engine::Runner;
use crate::error::RunError;
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
    Released {
        job: JobId,
        status: String,
        state: Box<JobState>,
    },
    /// Another owner took the job over (or it was cancelled); this worker stopped writing.
    Fenced { job: JobId, reason: String },
    /// Our own infrastructure failed; the job goes back to the queue with backoff.
    Retried { job: JobId, error: String },
}

impl Runner {
    /// Reap expired leases, claim one due job, and run it until it waits or ends.
    /// `None` when nothing was due.
    pub async fn work_once(&self, options: &WorkerOptions) -> Result<Option<Worked>, RunError> {
        self.take_back_from_the_gone().await?;
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
        self.work_lease(&lease).await.map(Some)
    }

    /// Leases held by processes of this host that are gone (killed mid-job) end now, so the
    /// reaper hands their jobs back at once instead of after the lease's time.
    async fn take_back_from_the_gone(&self) -> Result<(), RunError> {
        for entry in self.store.queue_entries(Some(QueueState::Leased)).await? {
            if entry.lease_owner.as_deref().is_some_and(owner_is_gone) {
                self.store
                    .expire_lease(entry.job, entry.lease_token, Utc::now())
                    .await?;
            }
        }
        Ok(())
    }

    /// Drive a claimed job with fenced writes and a heartbeat until it waits or ends, then give
    /// the lease back: released, fenced off, or queued again for a retry.
    pub async fn work_lease(&self, lease: &Lease) -> Result<Worked, RunError> {
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
        let stop = tokio_util::sync::CancellationToken::new();
        let heartbeat = self.spawn_heartbeat(lease.clone(), lost.clone(), stop.clone());
        let runner = self.with_lost(stop.clone());
        let result = match self.store.ticket(&lease.ticket).await? {
            Some(ticket) => runner.drive(job, &ticket, lease).await,
            None => Err(RunError::NoTicket(lease.ticket.clone())),
        };
        heartbeat.abort();
        stop.cancel();
        let worked = match result {
            Ok(state) => {
                let outcome = if matches!(
                    state.stage,
                    Stage::AwaitingApproval
                        | Stage::InReview
                        | Stage::AwaitingChildren
                        | Stage::AwaitingAcceptance
                ) {
                    Outcome::Waiting
                } else {
                    Outcome::Done
                };
                match self.store.release(lease, &outcome, Utc::now()).await {
                    Ok(_) => {
                        if state.build_queued {
                            // A refined idea goes on to its build at once, without waiting for
                            // a poll (a tracker's webhook from codemill's own label change
                            // starts nothing). A crash here is caught by the poll.
                            let options = crate::control::JobOptions::for_project(
                                &self.config,
                                lease.ticket.project(),
                            );
                            crate::control::enqueue(&self.store, &lease.ticket, options).await?;
                        }
                        Worked::Released {
                            job,
                            status: state.status().to_string(),
                            state: Box::new(state),
                        }
                    }
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
                        lease,
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
        Ok(worked)
    }

    /// Renew the lease every third of its ttl until aborted. A lease that is no longer ours
    /// (cancelled, or taken over) stops the running step at once. A renewal the store could not
    /// take (an outage) is retried; if none gets through before the lease would run out, the
    /// step stops while the lease is still ours, so no other worker can be running the job at
    /// the same time once the store is back.
    fn spawn_heartbeat(
        &self,
        lease: Lease,
        lost: Arc<AtomicBool>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let every = lease.ttl / 3;
        tokio::spawn(async move {
            let mut renewal = Renewal::new(lease.until, every);
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                let now = Utc::now();
                let verdict = match store.heartbeat(&lease, now).await {
                    Ok(until) => renewal.renewed(until),
                    Err(StoreError::Fenced { .. }) => Verdict::Stop,
                    Err(e) => {
                        tracing::warn!(job = %lease.job, error = %e, "could not renew the lease");
                        lost.store(true, Ordering::SeqCst);
                        renewal.failed(Utc::now())
                    }
                };
                match verdict {
                    Verdict::Stop => {
                        lost.store(true, Ordering::SeqCst);
                        stop.cancel();
                        return;
                    }
                    Verdict::Again(after) => wait = after,
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

/// This host's name, for lease owners.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The lease owner name of this process: `<host>:<pid>`.
pub fn owner_here() -> String {
    format!("{}:{}", host(), std::process::id())
}

/// Whether a lease owner named `<host>:<pid>` was a process of this host that no longer runs
/// (killed mid-job): its lease need not be waited out. Owners of other hosts, or named any
/// other way, are never judged gone.
pub fn owner_is_gone(owner: &str) -> bool {
    let Some((h, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    h == host()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// What the heartbeat does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Renew again after this long.
    Again(Duration),
    /// Stop the job's running step now.
    Stop,
}

/// A lease's renewals as its holder knows them: when it runs out, and how often to renew.
#[derive(Debug, Clone, Copy)]
struct Renewal {
    until: chrono::DateTime<Utc>,
    every: Duration,
}

impl Renewal {
    fn new(until: chrono::DateTime<Utc>, every: Duration) -> Renewal {
        Renewal { until, every }
    }

    fn renewed(&mut self, until: chrono::DateTime<Utc>) -> Verdict {
        self.until = until;
        Verdict::Again(self.every)
    }

    /// A renewal failed at `now`: retry soon while the lease has more than one renewal period
    /// left, else stop (another worker may take the job over once it runs out).
    fn failed(&self, now: chrono::DateTime<Utc>) -> Verdict {
        let left = (self.until - now).to_std().unwrap_or_default();
        if left <= self.every {
            Verdict::Stop
        } else {
            Verdict::Again((self.every / 4).max(Duration::from_millis(100)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_process_of_this_host_is_gone() {
        assert!(!owner_is_gone(&owner_here()), "this process runs");
        let dead = format!("{}:{}", host(), u32::MAX - 1);
        assert!(owner_is_gone(&dead));
        assert!(!owner_is_gone(&format!(
            "elsewhere.example:{}",
            u32::MAX - 1
        )));
        assert!(!owner_is_gone("worker-1"));
        assert!(!owner_is_gone(&format!("{}:not-a-pid", host())));
    }

    #[test]
    fn renewals_that_fail_are_retried_until_the_lease_would_run_out() {
        let t0 = Utc::now();
        let every = Duration::from_secs(10);
        let mut r = Renewal::new(t0 + chrono::TimeDelta::seconds(30), every);
        assert_eq!(
            r.renewed(t0 + chrono::TimeDelta::seconds(30)),
            Verdict::Again(every)
        );
        // The store is down: retried soon while more than one period is left...
        assert_eq!(
            r.failed(t0 + chrono::TimeDelta::seconds(5)),
            Verdict::Again(Duration::from_millis(2500))
        );
        assert_eq!(
            r.failed(t0 + chrono::TimeDelta::seconds(19)),
            Verdict::Again(Duration::from_millis(2500))
        );
        // ...and the step stops while the lease is still ours.
        assert_eq!(r.failed(t0 + chrono::TimeDelta::seconds(20)), Verdict::Stop);
        assert_eq!(r.failed(t0 + chrono::TimeDelta::seconds(40)), Verdict::Stop);
        // A renewal that got through moves the end.
        r.renewed(t0 + chrono::TimeDelta::seconds(60));
        assert!(matches!(
            r.failed(t0 + chrono::TimeDelta::seconds(40)),
            Verdict::Again(_)
        ));
    }
}
