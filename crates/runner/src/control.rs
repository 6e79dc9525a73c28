//! State changes asked for from outside a job's loop — the CLI, the HTTP API, webhooks and the
//! poller: approve, reject, cancel, retry, and enqueueing a ticket. Each decision is checked
//! against the pure pipeline and journalled together with its queue change (see [`jobs`]).

use chrono::Utc;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{JobEvent, JobState, Stage};
use codemill_store::{Enqueued, NewJob, Store};

use crate::error::RunError;
use crate::jobs;

/// Attempts a queued job gets before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;

fn not_waiting(key: &TicketKey, state: &JobState) -> RunError {
    RunError::NotAwaitingApproval {
        ticket: key.clone(),
        status: state.status().into(),
    }
}

/// Approve the proposed commit; shipping happens when the job runs next. With `seen`, the
/// commit the person looked at (whole or at least 7 characters of it): a proposal that has
/// changed since is refused, so nobody approves what they did not see.
pub async fn approve(
    store: &Store,
    key: &TicketKey,
    by: &str,
    seen: Option<&str>,
) -> Result<JobId, RunError> {
    if let Some(seen) = seen
        && (seen.len() < 7 || !seen.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(RunError::WrongState {
            ticket: key.clone(),
            message: format!(
                "{seen:?} is not a commit id: give the proposal's commit (at least 7 hex digits)"
            ),
        });
    }
    jobs::decide(store, key, "approve", jobs::WAITING, |latest| {
        if latest.state.stage != Stage::AwaitingApproval {
            return Err(not_waiting(key, &latest.state));
        }
        if let Some(sub) = &latest.state.subtask {
            return Err(part_of_stack(key, sub));
        }
        let commit = latest.state.commit.clone().unwrap_or_default();
        if let Some(seen) = seen
            && !commit.starts_with(&seen.to_ascii_lowercase())
        {
            return Err(RunError::WrongState {
                ticket: key.clone(),
                message: format!(
                    "the proposal changed since {seen} was shown: it is now {}; look at it again before approving",
                    &commit[..commit.len().min(12)]
                ),
            });
        }
        Ok(JobEvent::Approved {
            commit,
            by: by.to_string(),
        })
    })
    .await
}

/// A sub-task's proposal is approved with its parent's stack.
fn part_of_stack(key: &TicketKey, sub: &codemill_core::subtasks::SubtaskOf) -> RunError {
    RunError::WrongState {
        ticket: key.clone(),
        message: format!(
            "it is sub-task {} of {}: its commit ships in {}'s stack; approve {} instead (rejecting \
             {key} sends it alone back for a fix round)",
            sub.n, sub.parent_ticket, sub.parent_ticket, sub.parent_ticket
        ),
    }
}

/// Reject one sub-task's commit of its parent's proposed stack: the parent journals it (and
/// sends that sub-task alone back for a fix round when it runs next), then stacks again. Returns
/// the parent's job.
async fn send_back(
    store: &Store,
    key: &TicketKey,
    sub: &codemill_core::subtasks::SubtaskOf,
    reason: &str,
    by: &str,
) -> Result<JobId, RunError> {
    let rework = codemill_core::subtasks::Rework {
        id: sub.id.clone(),
        reason: reason.to_string(),
        by: by.to_string(),
    };
    jobs::decide(store, &sub.parent_ticket, "reject", jobs::WAITING, |parent| {
        let proposed = parent.state.stage == Stage::AwaitingApproval
            && parent.state.stack.iter().any(|e| e.id == sub.id);
        if parent.job != sub.parent || !proposed {
            return Err(RunError::WrongState {
                ticket: key.clone(),
                message: format!(
                    "it is sub-task {} of {}, whose stack is not awaiting approval ({}): a sub-task \
                     is sent back only from its parent's proposed stack",
                    sub.n,
                    sub.parent_ticket,
                    parent.state.status()
                ),
            });
        }
        Ok(JobEvent::SubtaskRejected {
            rework: rework.clone(),
        })
    })
    .await
}

/// Accept a refined spec: the ticket goes to the build queue (or its proposed split becomes
/// tickets) when the job runs next.
pub async fn accept(store: &Store, key: &TicketKey, by: &str) -> Result<JobId, RunError> {
    jobs::decide(store, key, "accept", jobs::WAITING, |latest| {
        if latest.state.stage != Stage::AwaitingAcceptance {
            return Err(RunError::WrongState {
                ticket: key.clone(),
                message: format!(
                    "its job {} is {}, not a refined spec awaiting acceptance",
                    latest.job,
                    latest.state.status()
                ),
            });
        }
        Ok(JobEvent::Accepted { by: by.to_string() })
    })
    .await
}

/// Reject the proposal; the work is kept on a WIP ref when the job runs next.
pub async fn reject(
    store: &Store,
    key: &TicketKey,
    reason: &str,
    by: &str,
) -> Result<JobId, RunError> {
    reject_as(store, key, reason, by, false).await
}

/// [`reject`]; `parent` lets a stopping parent reject its own sub-jobs.
pub(crate) async fn reject_as(
    store: &Store,
    key: &TicketKey,
    reason: &str,
    by: &str,
    parent: bool,
) -> Result<JobId, RunError> {
    if !parent
        && let Some(latest) = jobs::latest(store, key).await?
        && let Some(sub) = &latest.state.subtask
    {
        return send_back(store, key, sub, reason, by).await;
    }
    jobs::decide(store, key, "reject", jobs::WAITING, |latest| {
        if latest.state.stage != Stage::AwaitingApproval {
            return Err(not_waiting(key, &latest.state));
        }
        Ok(JobEvent::Rejected {
            reason: reason.to_string(),
            by: by.to_string(),
        })
    })
    .await
}

/// Cancel the ticket's job before its proposal is decided. The job stops the way a rejection
/// does — its work kept on a WIP ref, a note on the ticket — and ends `cancelled`; a worker
/// still running it is fenced off at its next write, and the stop runs when the job is next
/// claimed. A job whose proposal was approved or rejected finishes that decision instead.
pub async fn cancel(store: &Store, key: &TicketKey, by: &str) -> Result<JobId, RunError> {
    jobs::decide(store, key, "cancel", jobs::ACTIVE, |latest| {
        if !latest.state.stage.is_cancellable() {
            return Err(RunError::WrongState {
                ticket: key.clone(),
                message: format!(
                    "its job {} is {} and cannot be cancelled{}",
                    latest.job,
                    latest.state.status(),
                    match latest.state.status() {
                        "shipping" => " (the approved proposal is being shipped)",
                        "stopping" => " (it is already stopping)",
                        "in_review" | "fixing_feedback" =>
                            " (its PR is open: close the PR to stop following it)",
                        _ => "",
                    }
                ),
            });
        }
        Ok(JobEvent::Cancelled { by: by.to_string() })
    })
    .await
}

/// How a new job of a ticket runs: its round cap, and whether its ticket and PR live outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOptions {
    pub max_rounds: u32,
    pub acknowledge: bool,
    pub follow_pr: bool,
    /// `[projects.NAME.refinement] auto_queue`, for a ticket that asks for refinement.
    pub auto_queue: bool,
    /// The ticket asks for a spec, not a build (an outside ticket with its tracker's refine
    /// label; a local ticket's label is read by [`enqueue`] itself).
    pub refine: bool,
}

impl JobOptions {
    /// The options for a ticket of `project` (local ones when the project is unknown).
    pub fn for_project(config: &codemill_core::config::Config, project: &str) -> JobOptions {
        use codemill_core::config::{ForgeSettings, TrackerSettings};
        let p = config.projects.get(project);
        JobOptions {
            max_rounds: config.max_fix_rounds,
            acknowledge: p.is_some_and(|p| !matches!(p.tracker, TrackerSettings::Local)),
            follow_pr: p.is_some_and(|p| !matches!(p.forge, ForgeSettings::Local)),
            auto_queue: p.is_some_and(|p| p.refinement.auto_queue),
            refine: false,
        }
    }

    /// The options for a ticket whose project must be registered: a job of an unregistered
    /// project would only fail on a worker, so starting one is refused here, as `run` does.
    pub fn registered(
        config: &codemill_core::config::Config,
        ticket: &TicketKey,
    ) -> Result<JobOptions, RunError> {
        if !config.projects.contains_key(ticket.project()) {
            return Err(RunError::NoProject {
                ticket: ticket.clone(),
                project: ticket.project().to_string(),
            });
        }
        Ok(JobOptions::for_project(config, ticket.project()))
    }

    /// A local ticket's job.
    pub fn local(max_rounds: u32) -> JobOptions {
        JobOptions {
            max_rounds,
            acknowledge: false,
            follow_pr: false,
            auto_queue: false,
            refine: false,
        }
    }

    pub fn created(&self, key: &TicketKey, id: JobId) -> Result<JobEvent, RunError> {
        Ok(JobEvent::Created {
            ticket: key.clone(),
            project: key.project().parse().map_err(|e| RunError::Journal {
                job: id,
                message: format!("{e}"),
            })?,
            max_rounds: self.max_rounds,
            acknowledge: self.acknowledge,
            follow_pr: self.follow_pr,
            subtask: None,
            refine: None,
        })
    }
}

/// Queue the ticket for the workers: its unfinished job, or a new one. Returns the job and
/// whether it was created now.
pub async fn enqueue(
    store: &Store,
    key: &TicketKey,
    options: JobOptions,
) -> Result<(JobId, bool), RunError> {
    let Some(ticket) = store.ticket(key).await? else {
        return Err(RunError::NoTicket(key.clone()));
    };
    let id = JobId::new();
    let mut created = options.created(key, id)?;
    // A ticket labelled for refinement gets a refinement job, not a build.
    let local_refine = !options.acknowledge
        && ticket
            .labels
            .iter()
            .any(|l| l == codemill_core::refine::REFINE_LABEL);
    if (options.refine || local_refine)
        && let JobEvent::Created { refine, .. } = &mut created
    {
        *refine = Some(codemill_core::refine::Mode {
            auto_queue: options.auto_queue,
        });
    }
    let job = NewJob {
        id,
        ticket: key,
        created: &created,
        max_attempts: MAX_ATTEMPTS,
    };
    Ok(match store.enqueue(&job, Utc::now()).await? {
        Enqueued::Created(j) => (j, true),
        Enqueued::Existing(j) => (j, false),
    })
}

/// A refinement job whose spec awaits acceptance ends when its ticket was edited since the
/// spec was written, so a new job refines the edited text. Returns whether it ended.
pub async fn supersede_if_edited(
    store: &Store,
    latest: &jobs::Latest,
    ticket: &codemill_store::Ticket,
) -> Result<bool, RunError> {
    let edited = matches!(
        (ticket.edited_at, latest.last_at()),
        (Some(edited), Some(at)) if edited > at
    );
    if latest.state.stage != Stage::AwaitingAcceptance || latest.state.refine.is_none() || !edited {
        return Ok(false);
    }
    let job = jobs::decide(store, &ticket.key, "supersede", jobs::WAITING, |now| {
        if now.job != latest.job || now.state.stage != Stage::AwaitingAcceptance {
            return Err(RunError::WrongState {
                ticket: ticket.key.clone(),
                message: format!("its job {} is {}", now.job, now.state.status()),
            });
        }
        Ok(JobEvent::Superseded {
            by: "an edit of the ticket".into(),
        })
    })
    .await?;
    // The job is over: its queue row goes too, so the new job can be queued at once.
    store.cancel(job, Utc::now()).await?;
    Ok(true)
}

/// Run a stopped ticket again (needs attention, rejected, needs input, cancelled or dead): a new job.
pub async fn retry(store: &Store, key: &TicketKey, options: JobOptions) -> Result<JobId, RunError> {
    let jobs::Latest { job, state, .. } = jobs::require(store, key).await?;
    let subtask = state.subtask.clone();
    let entry = store.queue_entry(job).await?;
    let active = entry.as_ref().is_some_and(|e| {
        matches!(
            e.state,
            codemill_store::QueueState::Queued
                | codemill_store::QueueState::Leased
                | codemill_store::QueueState::Waiting
        )
    });
    if active || !(state.stage.is_terminal() || entry.is_some()) {
        return Err(RunError::WrongState {
            ticket: key.clone(),
            message: format!(
                "already has an unfinished job {job} ({})",
                state.shown_status(
                    entry
                        .as_ref()
                        .is_some_and(|e| { e.state == codemill_store::QueueState::Queued })
                )
            ),
        });
    }
    if let Some(why) = shipped(store, key, &state).await? {
        return Err(RunError::WrongState {
            ticket: key.clone(),
            message: why,
        });
    }
    match subtask {
        // A sub-task tried again stays its parent's: it stacks where it did and reports back.
        Some(sub) => enqueue_subtask(store, key, options, sub).await,
        None => Ok(enqueue(store, key, options).await?.0),
    }
}

/// Why a ticket whose work shipped cannot be tried again, if it did: a new job would redo
/// merged work, or force its branch over an open PR's approved commits. Retry is for stopped
/// work; a ticket whose PR was closed unmerged may run again.
async fn shipped(
    store: &Store,
    key: &TicketKey,
    state: &JobState,
) -> Result<Option<String>, RunError> {
    if state.merged == Some(true) {
        return Ok(Some(
            "its PR was merged, so it is done; open a new ticket for more work".into(),
        ));
    }
    if state.stage != Stage::Done || state.pr.is_none() {
        return Ok(None);
    }
    // The local forge's record says how the PR stands (outside forges report through PR events).
    let branch = match (&state.subtask, &state.branch) {
        (Some(_), Some(b)) => b.clone(),
        _ => key.branch(),
    };
    let Some(pr) = store.find_pr(key.project(), &branch).await? else {
        return Ok(None);
    };
    Ok(match pr.state.as_str() {
        "merged" => Some(format!(
            "PR #{} was merged, so it is done; open a new ticket for more work",
            pr.id
        )),
        "open" => Some(format!(
            "shipped as PR #{} ({}), which is still open: a new job would replace the approved \
             work on its branch; `codemill merge {key}` lands it",
            pr.id, pr.branch
        )),
        _ => None,
    })
}

/// Queue a new job of a sub-task's ticket, under the same parent.
async fn enqueue_subtask(
    store: &Store,
    key: &TicketKey,
    options: JobOptions,
    sub: codemill_core::subtasks::SubtaskOf,
) -> Result<JobId, RunError> {
    let id = JobId::new();
    let mut created = options.created(key, id)?;
    if let JobEvent::Created { subtask, .. } = &mut created {
        *subtask = Some(sub);
    }
    let job = NewJob {
        id,
        ticket: key,
        created: &created,
        max_attempts: MAX_ATTEMPTS,
    };
    Ok(store.enqueue(&job, Utc::now()).await?.job())
}

/// The label that asks codemill to work on a ticket of the local tracker.
pub const TRIGGER_LABEL: &str = "codemill";

/// What one pass of the reconciling poller did.
#[derive(Debug, Default)]
pub struct Polled {
    /// Tickets queued, with their new jobs.
    pub queued: Vec<(TicketKey, JobId)>,
    /// Tickets that could not be looked at (a journal that no longer replays, a ticket that
    /// changed meanwhile), with why; the pass went on past them.
    pub skipped: Vec<(TicketKey, RunError)>,
}

/// One pass of the reconciling poller: every ticket labelled for codemill that is still to do
/// and has no job, and every ticket that waited for input and was edited since, is queued.
/// Webhooks normally get there first; this catches what they missed. Safe to run on every web
/// node at once: a ticket has at most one active job. Only the store failing ends the pass: a
/// ticket that cannot be looked at is skipped, so one broken job cannot keep every ticket after
/// it from being queued.
pub async fn poll_once(
    store: &Store,
    config: &codemill_core::config::Config,
) -> Result<Polled, RunError> {
    use codemill_core::pipeline::TicketStatus;
    let mut polled = Polled::default();
    let open = [
        TicketStatus::Todo,
        TicketStatus::NeedsInput,
        TicketStatus::AwaitingApproval,
    ];
    for ticket in store.tickets_in_status(&open).await? {
        match poll_ticket(store, config, &ticket).await {
            Ok(Some(job)) => polled.queued.push((ticket.key.clone(), job)),
            Ok(None) => {}
            Err(e @ RunError::Store(_)) => return Err(e),
            Err(e) => polled.skipped.push((ticket.key.clone(), e)),
        }
    }
    Ok(polled)
}

/// The poller's look at one open ticket: the new job when it queued one.
async fn poll_ticket(
    store: &Store,
    config: &codemill_core::config::Config,
    ticket: &codemill_store::Ticket,
) -> Result<Option<JobId>, RunError> {
    use codemill_core::pipeline::TicketStatus;
    let asks = |label: &str| ticket.labels.iter().any(|l| l == label);
    if !asks(TRIGGER_LABEL) && !asks(codemill_core::refine::REFINE_LABEL) {
        return Ok(None);
    }
    let due = match ticket.status {
        // Never worked on, or refined and moved to the build queue since.
        TicketStatus::Todo => match jobs::latest(store, &ticket.key).await? {
            None => true,
            Some(latest) => {
                latest.state.refine.is_some()
                    && latest.state.stage == codemill_core::pipeline::Stage::Done
                    && asks(TRIGGER_LABEL)
            }
        },
        TicketStatus::NeedsInput => match jobs::latest(store, &ticket.key).await? {
            Some(latest) => latest.state.answered(ticket.edited_at, latest.last_at()),
            None => false,
        },
        // A spec awaiting acceptance whose ticket was edited is refined again.
        TicketStatus::AwaitingApproval if ticket.external.is_none() => {
            match jobs::latest(store, &ticket.key).await? {
                Some(latest) => supersede_if_edited(store, &latest, ticket).await?,
                None => false,
            }
        }
        _ => false,
    };
    // Outside tickets are found by their tracker's poll, not by the local label.
    if !due || ticket.external.is_some() {
        return Ok(None);
    }
    let options = JobOptions::for_project(config, ticket.key.project());
    let (job, created) = enqueue(store, &ticket.key, options).await?;
    Ok(created.then_some(job))
}
