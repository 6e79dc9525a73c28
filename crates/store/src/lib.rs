//! The store: SQLite (one process, WAL) or PostgreSQL (web nodes and workers on several
//! machines) behind one facade — tickets of the local tracker, the append-only job journal, PR
//! records of the local forge, the job queue with leases and fencing, the webhook inbox and API
//! token hashes.
//!
//! Job state is never written here: only journal events, from which `codemill_core` derives it.
//! The queue row only says who may work on a job and when. Both backends have the same
//! semantics, checked by one contract test suite (`tests/contract`). Each area's SQL is written
//! once (`tables/`) over a small dialect layer (`sql.rs`) that runs it on either backend; only
//! the migrations are per backend, because the column types differ.
//!
//! Time: every queue, lease and inbox timestamp is the `now` the caller passes in (the worker's
//! clock, cut to microseconds because PostgreSQL keeps no more), never the database's clock, on
//! both backends alike, which keeps tests deterministic. Clock skew between workers only shifts
//! when a lease counts as expired; it cannot let two owners act on one job, because the fencing
//! token is checked in the same transaction as every fenced write. Plain record timestamps
//! (tickets, comments, tokens) are taken from the local clock when written.

/// Run `$body` (statements using the transaction `$tx`, ending in a `Result`) and then commit
/// on `Ok` or roll back on `Err`, awaiting either. A dropped sqlx transaction only queues its
/// rollback until the pooled connection is next used, holding its locks meanwhile: an early
/// return would leave a queue row locked and invisible to `FOR UPDATE SKIP LOCKED` claimers.
macro_rules! atomically {
    ($tx:ident, $body:block) => {{
        let result = crate::scoped(async $body).await;
        crate::Finish::finish($tx, result).await
    }};
}

/// Fixes the error type of an `atomically!` body, so `?` inside it converts into `StoreError`.
fn scoped<T, F: std::future::Future<Output = Result<T, StoreError>>>(f: F) -> F {
    f
}

/// Commit on `Ok`, roll back on `Err`.
trait Finish: Sized {
    fn finish<T: Send>(
        self,
        result: Result<T, StoreError>,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send;
}

impl Finish for sql::Tx {
    async fn finish<T: Send>(self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = self.rollback().await {
                    tracing::warn!(error = %rollback, after = %e, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

impl<DB: sqlx::Database> Finish for sqlx::Transaction<'static, DB> {
    async fn finish<T: Send>(self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(rollback) = self.rollback().await {
                    tracing::warn!(error = %rollback, after = %e, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

mod dashboard;
mod error;
mod events;
mod knowledge;
mod merge_queue;
mod metering;
mod model;
mod notify;
mod queue;
mod sql;
mod tables;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_core::pipeline::{JobEvent, TicketStatus};

pub use error::{FenceReason, StoreError};
pub use events::{ActivityRow, ActivityStep, EventRow, JobView};
pub use knowledge::{KnowledgeHit, KnowledgeRow, KnowledgeSource, KnowledgeTag, NewKnowledge};
pub use merge_queue::{MergeEntry, MergeState, NewMergeEntry};
pub use metering::{ModelCall, ProjectSpend, Spend, SpendScope, day_of};
pub use model::{
    Artifact, Comment, JobRow, JournalEntry, Link, MirroredTicket, NewPr, PROPOSAL_DIFF, PrRecord,
    SessionRow, StatusChange, Ticket, UserRow,
};
pub use notify::{NewNotification, NotificationRow, NotificationState, Sent};
pub use queue::{
    Backoff, Delivery, Enqueued, InboxRow, Lease, Limits, NewJob, Outcome, QueueEntry, QueueState,
    Reaped, Recorded, TokenRow,
};
pub use queue::{InboxPruned, InboxState, Settled};

use queue::micros;

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: sql::Db,
    backoff: Backoff,
}

impl Store {
    /// Open (creating if needed) a SQLite database file and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::with(sql::Db::open_sqlite(path).await?).await
    }

    /// Connect to a PostgreSQL database (e.g. `postgres://user:pass@host/db`) and bring its
    /// schema up to date; several nodes may do this at once.
    pub async fn connect_postgres(url: &str) -> Result<Store, StoreError> {
        Store::with(sql::Db::connect_postgres(url).await?).await
    }

    /// Views for jobs journalled before views existed are built once here.
    async fn with(db: sql::Db) -> Result<Store, StoreError> {
        let store = Store {
            db,
            backoff: Backoff::default(),
        };
        store.db.build_missing_views().await?;
        Ok(store)
    }

    /// The retry delays used when a release or the reaper does not name one.
    pub fn with_backoff(mut self, backoff: Backoff) -> Store {
        self.backoff = backoff;
        self
    }

    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The job whose id is `text`: a whole UUID, or the short form the CLI prints (the last 8
    /// to 12 hex digits); `Invalid` when that is no job id or names more than one job.
    pub async fn find_job(&self, text: &str) -> Result<Option<JobId>, StoreError> {
        self.db.find_job(text).await
    }

    /// One round trip to the database: `Ok` when it answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        if self.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub async fn close(&self) {
        self.db.close().await
    }

    // ---- tickets -------------------------------------------------------------------------

    /// Create a ticket with the next free number of its project.
    pub async fn create_ticket(
        &self,
        project: &ProjectName,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<Ticket, StoreError> {
        self.db.create_ticket(project, title, body, labels).await
    }

    /// Insert or refresh a ticket mirrored from an outside tracker (its key is
    /// `<project>-<number>`); a changed title or body counts as an edit; status is kept.
    pub async fn mirror_ticket(&self, ticket: &MirroredTicket<'_>) -> Result<Ticket, StoreError> {
        self.db.mirror_ticket(ticket).await
    }

    pub async fn ticket(&self, key: &TicketKey) -> Result<Option<Ticket>, StoreError> {
        self.db.ticket(key).await
    }

    pub async fn tickets(&self, project: Option<&str>) -> Result<Vec<Ticket>, StoreError> {
        self.db.tickets(project).await
    }

    /// Change a ticket's title and/or body (a person's edit).
    pub async fn edit_ticket(
        &self,
        key: &TicketKey,
        title: Option<&str>,
        body: Option<&str>,
    ) -> Result<Ticket, StoreError> {
        self.db.edit_ticket(key, title, body).await
    }

    /// Add or remove one label; returns whether the labels changed.
    pub async fn set_label(
        &self,
        key: &TicketKey,
        label: &str,
        present: bool,
    ) -> Result<bool, StoreError> {
        self.db.set_label(key, label, present).await
    }

    /// Create a ticket linked from `from`, once per `marker`: a second call returns the first
    /// ticket and `false`.
    pub async fn create_linked_ticket(
        &self,
        from: &TicketKey,
        kind: &str,
        marker: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<(Ticket, bool), StoreError> {
        self.db
            .create_linked_ticket(from, kind, marker, title, body, labels)
            .await
    }

    /// Links from and to a ticket.
    pub async fn links(&self, key: &TicketKey) -> Result<Vec<Link>, StoreError> {
        self.db.links(key).await
    }

    /// Set a ticket's status; records a change only when it differs. Returns whether it changed.
    pub async fn set_ticket_status(
        &self,
        key: &TicketKey,
        status: TicketStatus,
        actor: &str,
    ) -> Result<bool, StoreError> {
        self.db.set_ticket_status(key, status, actor).await
    }

    /// Add a comment. With a marker it is idempotent: returns false when that marker exists.
    pub async fn add_comment(
        &self,
        key: &TicketKey,
        author: &str,
        marker: Option<&str>,
        body: &str,
    ) -> Result<bool, StoreError> {
        self.db.add_comment(key, author, marker, body).await
    }

    pub async fn comments(&self, key: &TicketKey) -> Result<Vec<Comment>, StoreError> {
        self.db.comments(key).await
    }

    pub async fn status_changes(&self, key: &TicketKey) -> Result<Vec<StatusChange>, StoreError> {
        self.db.status_changes(key).await
    }

    // ---- jobs and the journal ------------------------------------------------------------

    /// Create a job with its first journal entry (`Created`) in one transaction, without a
    /// queue row: the single-process path (`codemill run`) that needs no lease.
    pub async fn create_job(
        &self,
        id: JobId,
        ticket: &TicketKey,
        created: &JobEvent,
    ) -> Result<(), StoreError> {
        self.db
            .create_job(id, ticket, created, micros(Utc::now()))
            .await
    }

    /// Append `event` as entry `seq`. Fails with `Conflict` if that entry already exists.
    /// Unfenced: for the single-process path; workers use [`Store::append_fenced`].
    pub async fn append(&self, id: JobId, seq: i64, event: &JobEvent) -> Result<(), StoreError> {
        self.db.append(id, seq, event, micros(Utc::now())).await
    }

    /// Append like [`Store::append`], but only while `lease` is valid (same token, still
    /// leased, not expired at `now`), checked in the same transaction; else `Fenced`.
    pub async fn append_fenced(
        &self,
        lease: &Lease,
        seq: i64,
        event: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db.append_fenced(lease, seq, event, micros(now)).await
    }

    pub async fn journal(&self, id: JobId) -> Result<Vec<JournalEntry>, StoreError> {
        self.db.journal(id).await
    }

    pub async fn jobs_for_ticket(&self, key: &TicketKey) -> Result<Vec<JobRow>, StoreError> {
        self.db.jobs_for_ticket(key).await
    }

    pub async fn latest_job(&self, key: &TicketKey) -> Result<Option<JobRow>, StoreError> {
        Ok(self.jobs_for_ticket(key).await?.pop())
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.db.jobs().await
    }

    // ---- followers of the event stream and the notification outbox ----------------------

    /// Where follower `name` has read the event stream up to; `None` before its first read.
    pub async fn follower_pos(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.db.follower_pos(name).await
    }

    /// Record that follower `name` has handled every event up to `pos`. A cursor only moves
    /// forward: a slower node recording an older position changes nothing.
    pub async fn advance_follower(&self, name: &str, pos: i64) -> Result<(), StoreError> {
        self.db
            .advance_follower(name, pos, micros(Utc::now()))
            .await
    }

    /// Store messages to send, in one transaction; each (event, channel) once, however often
    /// it is added. Returns how many were new.
    pub async fn add_notifications(
        &self,
        new: &[NewNotification<'_>],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.db.add_notifications(new, micros(now)).await
    }

    /// Take up to `limit` pending messages due at `now`, oldest first, held until `hold_until`
    /// (as [`Store::claim_deliveries`]); each claim counts as an attempt.
    pub async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        self.db
            .claim_notifications(micros(now), micros(hold_until), limit.max(1))
            .await
    }

    /// Record how sending a claimed message ended. Only a pending message changes.
    pub async fn settle_notification(&self, id: i64, sent: &Sent) -> Result<(), StoreError> {
        let sent = match sent {
            Sent::Retry { at, error } => Sent::Retry {
                at: micros(*at),
                error: error.clone(),
            },
            other => other.clone(),
        };
        self.db
            .settle_notification(id, &sent, micros(Utc::now()))
            .await
    }

    /// The newest messages first.
    pub async fn notifications(&self, limit: u32) -> Result<Vec<NotificationRow>, StoreError> {
        self.db.notifications(limit.max(1)).await
    }

    // ---- the event stream and job views ------------------------------------------------------

    /// Up to `limit` journal entries after stream position `after` (0: from the start), in
    /// order. Resuming from the last `pos` read misses nothing: see [`events`](crate::EventRow).
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        self.db.events_since(after, limit.max(1)).await
    }

    /// The position of the newest entry (0 when there is none): where a follower that wants only
    /// what happens from now on starts.
    pub async fn last_event_pos(&self) -> Result<i64, StoreError> {
        self.db.last_event_pos().await
    }

    /// Record what an agent did during a step (a batch, in one transaction), for live pages.
    /// Long texts are clipped; this is a view, the journal is the record.
    pub async fn record_activity(
        &self,
        step: &ActivityStep<'_>,
        events: &[(DateTime<Utc>, codemill_core::agent::AgentEvent)],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events: Vec<_> = events
            .iter()
            .map(|(at, e)| (micros(*at), events::clipped(e)))
            .collect();
        self.db.record_activity(step, &events).await
    }

    /// A job's agent activity after `after` (0: from the start), oldest first.
    pub async fn activity_since(
        &self,
        job: JobId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ActivityRow>, StoreError> {
        self.db.activity_since(job, after, limit.max(1)).await
    }

    /// Forget activity recorded before `before`; returns how much.
    pub async fn prune_activity(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.db.prune_activity(micros(before)).await
    }

    /// The job's state after its latest entry, as written with that entry.
    pub async fn job_view(&self, job: JobId) -> Result<Option<JobView>, StoreError> {
        self.db.job_view(job).await
    }

    /// Job views, oldest job first, optionally of one status (`JobState::status()`) and ticket.
    pub async fn job_views(
        &self,
        status: Option<&str>,
        ticket: Option<&TicketKey>,
    ) -> Result<Vec<JobView>, StoreError> {
        let ticket = ticket.map(|t| t.to_string());
        self.db.job_views(status, ticket.as_deref()).await
    }

    /// The view of the ticket's latest job.
    pub async fn latest_view(&self, ticket: &TicketKey) -> Result<Option<JobView>, StoreError> {
        Ok(self.job_views(None, Some(ticket)).await?.pop())
    }

    // ---- artifacts -------------------------------------------------------------------------

    /// Keep `body` as the job's artifact `name` (replacing an earlier one), only while `lease`
    /// is valid at `now`; else `Fenced`. Every worker reads it back with [`Store::artifact`].
    pub async fn put_artifact(
        &self,
        lease: &Lease,
        name: &str,
        body: &[u8],
        meta: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .put_artifact(lease, name, body, meta, micros(now))
            .await
    }

    pub async fn artifact(&self, job: JobId, name: &str) -> Result<Option<Artifact>, StoreError> {
        self.db.artifact(job, name).await
    }

    /// The job's artifacts whose names start with `prefix`, by name.
    pub async fn artifacts(&self, job: JobId, prefix: &str) -> Result<Vec<Artifact>, StoreError> {
        self.db.artifacts(job, prefix).await
    }

    // ---- the queue -----------------------------------------------------------------------

    /// Create a job (row, first journal entry, queue row due at `now`) in one transaction, or
    /// return the ticket's active job if it has one: see [`Enqueued`].
    pub async fn enqueue(
        &self,
        job: &NewJob<'_>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        queue::check_max_attempts(job)?;
        self.db.enqueue(job, micros(now)).await
    }

    /// Lease the queued job that has been due longest (`run_after <= now`), with a new fencing
    /// token, unless that would exceed `limits`. The limits count leased jobs, expired ones
    /// included until [`Store::reap`] takes them back, so run the reaper before claiming.
    /// `None` when nothing may run now.
    pub async fn claim(
        &self,
        owner: &str,
        ttl: Duration,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let now = micros(now);
        let until = queue::later(now, ttl)?;
        self.db.claim(owner, ttl, until, limits, now).await
    }

    /// Lease one given job now, whatever its `run_after` and the limits: the foreground run of
    /// `codemill run`, `approve` and `reject` asked for this job. `None` when it is not queued
    /// (a worker holds it, it waits for a person, or it has ended).
    pub async fn claim_job(
        &self,
        job: JobId,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let now = micros(now);
        let until = queue::later(now, ttl)?;
        self.db.claim_job(job, owner, ttl, until, now).await
    }

    /// End the lease `token` on `job` now, when its owner is known to be gone (a killed
    /// process of this host); the reaper then hands the job back. `false` when that lease is
    /// no longer the job's.
    pub async fn expire_lease(
        &self,
        job: JobId,
        token: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db.expire_lease(job, token, micros(now)).await
    }

    /// A person's decision (approve, reject, cancel) as one transaction: the queue row must be
    /// in one of `from` (else `InvalidTransition` naming `action`), `event` becomes journal
    /// entry `seq` (else `Conflict`), and the row is queued again at once with a new lease
    /// token, so a worker still running the job is fenced off at its next write.
    pub async fn decide(
        &self,
        job: JobId,
        seq: i64,
        event: &JobEvent,
        from: &[QueueState],
        action: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .decide(job, seq, event, from, action, micros(now))
            .await
    }

    /// Extend a valid lease by its ttl from `now`; returns the new expiry, or `Fenced`.
    pub async fn heartbeat(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let now = micros(now);
        let until = queue::later(now, lease.ttl)?;
        self.db.heartbeat(lease, until, now).await
    }

    /// Give a valid lease back with the attempt's outcome; returns the job's new state (a
    /// retry on the last attempt makes it dead). `Fenced` if the lease is no longer valid.
    pub async fn release(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        self.db
            .release(lease, outcome, &self.backoff, micros(now))
            .await
    }

    /// Take back every lease expired at `now`: the job is queued again after the backoff with
    /// one more failed attempt, or dead at the attempt cap. Run it periodically on any node.
    pub async fn reap(&self, now: DateTime<Utc>) -> Result<Vec<Reaped>, StoreError> {
        self.db.reap(&self.backoff, micros(now)).await
    }

    /// Cancel a queued, leased or waiting job (a leased one's owner is fenced off). Returns
    /// false when it had already ended.
    pub async fn cancel(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.db.cancel(job, micros(now)).await
    }

    /// Queue a waiting, dead or cancelled job again, due now, with a fresh attempt count (a
    /// person decided). Returns false when it is already queued or leased; a done job cannot be
    /// requeued; `ActiveJob` if the ticket got another active job meanwhile.
    pub async fn requeue(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.db.requeue(job, micros(now), micros(now), false).await
    }

    /// `requeue`, due at `run_after` instead of now.
    pub async fn requeue_at(
        &self,
        job: JobId,
        run_after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .requeue(job, micros(run_after), micros(now), false)
            .await
    }

    /// Queue a job that ended done again, due now: a shipped job whose PR the merge queue took
    /// out runs a fix round. `ActiveJob` if the ticket got another active job meanwhile.
    pub async fn reopen(&self, job: JobId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.db.requeue(job, micros(now), micros(now), true).await
    }

    pub async fn queue_entry(&self, job: JobId) -> Result<Option<QueueEntry>, StoreError> {
        self.db.queue_entry(job).await
    }

    /// Queue rows, optionally of one state, oldest first.
    pub async fn queue_entries(
        &self,
        state: Option<QueueState>,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        self.db.queue_entries(state).await
    }

    // ---- webhook inbox -------------------------------------------------------------------

    /// Record a webhook delivery once per (provider, delivery id), and with it, in the same
    /// transaction, enqueue `job` if given. A repeated delivery writes nothing: `Duplicate`.
    pub async fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        job: Option<&NewJob<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        if let Some(job) = job {
            queue::check_max_attempts(job)?;
        }
        self.db
            .record_delivery(delivery, job, micros(now), false)
            .await
    }

    /// [`Store::record_delivery`] for a job of a local tracker ticket, checking in the same
    /// transaction that the ticket exists: `UnknownTicket` (nothing written) when it does not.
    pub async fn record_ticket_delivery(
        &self,
        delivery: &Delivery<'_>,
        job: &NewJob<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        queue::check_max_attempts(job)?;
        self.db
            .record_delivery(delivery, Some(job), micros(now), true)
            .await
    }

    pub async fn delivery(
        &self,
        provider: &str,
        delivery_id: &str,
    ) -> Result<Option<InboxRow>, StoreError> {
        self.db.delivery(provider, delivery_id).await
    }

    /// Store a delivery to be processed later (by [`Store::claim_deliveries`]), once per
    /// (provider, delivery id): a repeated delivery writes nothing and is a `Duplicate`. The
    /// answer can go out as soon as this returns: the delivery is committed.
    pub async fn accept_delivery(
        &self,
        delivery: &Delivery<'_>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        self.db.accept_delivery(delivery, micros(now)).await
    }

    /// Take up to `limit` pending deliveries that are due at `now`, oldest first, and hold
    /// them until `hold_until`: another node claims them only after that (so a node that dies
    /// while processing delays them, and loses nothing). Each claim counts as an attempt.
    pub async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        self.db
            .claim_deliveries(micros(now), micros(hold_until), limit.max(1))
            .await
    }

    /// Record how processing a claimed delivery ended. Only a pending delivery changes.
    pub async fn settle_delivery(&self, id: i64, settled: &Settled) -> Result<(), StoreError> {
        let settled = match settled {
            Settled::Retry { at, error } => Settled::Retry {
                at: micros(*at),
                error: error.clone(),
            },
            other => other.clone(),
        };
        self.db.settle_delivery(id, &settled).await
    }

    /// The newest deliveries first, of one state or all, without their bodies and headers.
    pub async fn deliveries(
        &self,
        state: Option<InboxState>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        self.db.deliveries(state, limit.max(1)).await
    }

    /// Keep the inbox small. A delivery is processed once nothing can need its body: it is no
    /// longer pending, and it started no job or its job is no longer queued, leased or waiting.
    /// Processed deliveries received before `forget_before` (the end of the de-duplication
    /// window) are deleted; the other processed ones lose their body and headers but keep their
    /// row, so a redelivery of their id is still a `Duplicate`. Run it periodically on any node.
    pub async fn prune_deliveries(
        &self,
        forget_before: DateTime<Utc>,
    ) -> Result<InboxPruned, StoreError> {
        self.db.prune_deliveries(micros(forget_before)).await
    }

    // ---- API tokens ----------------------------------------------------------------------

    /// Store a new API token by its hash (the caller hashes; plaintext never reaches the store).
    pub async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
    ) -> Result<TokenRow, StoreError> {
        self.db
            .create_api_token(name, token_hash, micros(Utc::now()))
            .await
    }

    /// The active (not revoked) token with this hash.
    pub async fn find_api_token(&self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        self.db.find_api_token(token_hash).await
    }

    /// Revoke a token; returns false when it was unknown or already revoked.
    pub async fn revoke_api_token(&self, id: i64) -> Result<bool, StoreError> {
        self.db.revoke_api_token(id, micros(Utc::now())).await
    }

    /// All tokens, revoked ones included.
    pub async fn api_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.db.api_tokens().await
    }

    // ---- metering --------------------------------------------------------------------------

    /// Record one model request of the gateway.
    pub async fn record_model_call(&self, call: &ModelCall) -> Result<(), StoreError> {
        self.db.record_model_call(call).await
    }

    /// Spend of a job, its ticket, its project's day and the whole day, for budget checks.
    pub async fn spend(&self, scope: SpendScope<'_>) -> Result<Spend, StoreError> {
        self.db.spend(scope).await
    }

    /// Spend per project on one UTC day (`YYYY-MM-DD`).
    pub async fn spend_by_project(&self, day: &str) -> Result<Vec<ProjectSpend>, StoreError> {
        self.db.spend_by_project(day).await
    }

    /// The model requests of one job, oldest first.
    pub async fn model_calls(&self, job: &str) -> Result<Vec<ModelCall>, StoreError> {
        self.db.model_calls(job).await
    }

    // ---- merge queue ---------------------------------------------------------------------

    /// Queue an approved pull request to land on its target branch, or return the ticket's
    /// entry already queued (`false`): a ticket is queued at most once at a time.
    pub async fn enqueue_merge(
        &self,
        new: &NewMergeEntry<'_>,
        now: DateTime<Utc>,
    ) -> Result<(MergeEntry, bool), StoreError> {
        self.db.enqueue_merge(new, micros(now)).await
    }

    /// The queued entries of a project's target branch, in the order they land.
    pub async fn merge_queue(
        &self,
        project: &str,
        target: &str,
    ) -> Result<Vec<MergeEntry>, StoreError> {
        self.db.merge_queue(project, target).await
    }

    /// Every entry, queued or settled, of one project or all, in the order queued.
    pub async fn merge_entries(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<MergeEntry>, StoreError> {
        self.db.merge_entries(project).await
    }

    /// The (project, target) queues that have queued entries; what workers poll.
    pub async fn merge_queues_waiting(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db.merge_queues_waiting().await
    }

    pub async fn merge_entry(&self, id: i64) -> Result<Option<MergeEntry>, StoreError> {
        self.db.merge_entry(id).await
    }

    /// Settle a queued entry (merged, with the commit that contains it; or ejected, with the
    /// reason). `false` when it was settled before, so settling twice changes nothing.
    pub async fn settle_merge(
        &self,
        id: i64,
        state: MergeState,
        reason: Option<&str>,
        merged_as: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .settle_merge(id, state, reason, merged_as, micros(now))
            .await
    }

    /// Take or renew the lease on working the queue of (`project`, `target`) until `until`:
    /// `true` when nobody else holds a live one.
    pub async fn claim_merge_run(
        &self,
        project: &str,
        target: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .claim_merge_run(project, target, owner, micros(until), micros(now))
            .await
    }

    /// Who holds the lease on working a queue, and until when.
    pub async fn merge_run_holder(
        &self,
        project: &str,
        target: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        self.db.merge_run_holder(project, target).await
    }

    pub async fn release_merge_run(
        &self,
        project: &str,
        target: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.db.release_merge_run(project, target, owner).await
    }

    // ---- local forge ---------------------------------------------------------------------

    pub async fn find_pr(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<Option<PrRecord>, StoreError> {
        self.db.find_pr(project, branch).await
    }

    /// Create the PR record of a branch, or update it to the new commit; one per (project, branch).
    /// Set the state of the PR record of `branch` (`merged` once the local forge merged it).
    pub async fn set_pr_state(
        &self,
        project: &str,
        branch: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        self.db
            .set_pr_state(project, branch, state, micros(Utc::now()))
            .await
    }

    /// Move a PR record's head to `commit` (a fix round pushed its branch); false when there is
    /// none.
    pub async fn set_pr_commit(
        &self,
        project: &str,
        branch: &str,
        commit: &str,
    ) -> Result<bool, StoreError> {
        self.db
            .set_pr_commit(project, branch, commit, micros(Utc::now()))
            .await
    }

    pub async fn upsert_pr(&self, pr: &NewPr<'_>) -> Result<PrRecord, StoreError> {
        self.db.upsert_pr(pr).await
    }

    pub async fn prs(&self) -> Result<Vec<PrRecord>, StoreError> {
        self.db.prs().await
    }
}
