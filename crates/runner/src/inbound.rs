//! What arrives from outside trackers and forges — issue triggers, PR feedback, PR closes, and
//! the tracker poll — turned into queued jobs and journal events. Every delivery is treated as
//! a hint: the issue is read afresh, actors are checked against the project's roles, and a
//! redelivery changes nothing.

use chrono::Utc;
use codemill_core::config::Config;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{Feedback, FeedbackKind, JobEvent, JobState, Stage, apply};
use codemill_core::text::log_safe;
use codemill_store::{MirroredTicket, Store, StoreError};
use serde::Serialize;

use crate::control::{self, JobOptions};
use crate::error::RunError;
use crate::jobs::replay;
use crate::outside::{self, OutsideCache};

/// How long a feedback round waits for the rest of a review's deliveries.
const FEEDBACK_SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

/// What an inbound event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Inbound {
    /// A job was queued (`created`) or the ticket's active job was found.
    Queued {
        ticket: TicketKey,
        job: JobId,
        created: bool,
    },
    /// The event was journalled on the ticket's job.
    Recorded { ticket: TicketKey, job: JobId },
    /// Nothing to do, and why.
    Ignored { reason: String },
}

fn ignored(reason: impl Into<String>) -> Inbound {
    Inbound::Ignored {
        reason: reason.into(),
    }
}

/// The state shared by every inbound path.
#[derive(Clone)]
pub struct Gateway {
    pub store: Store,
    pub config: Config,
    pub outside: OutsideCache,
}

impl Gateway {
    pub fn new(store: Store, config: Config, outside: OutsideCache) -> Gateway {
        Gateway {
            store,
            config,
            outside,
        }
    }

    fn outside_error(project: &str, e: impl std::fmt::Display) -> RunError {
        RunError::Outside {
            project: project.to_string(),
            message: e.to_string(),
        }
    }

    /// An issue of `project`'s tracker may be ready: read it, and queue a job when it is in
    /// the trigger state and `actor` may start work (`None`: found by the poll, allowed only
    /// when the trigger role admits anyone, `"*"`).
    pub async fn trigger(
        &self,
        project: &str,
        key: &str,
        actor: Option<&str>,
    ) -> Result<Inbound, RunError> {
        let Some(p) = self.config.projects.get(project) else {
            return Ok(ignored(format!("no project {project}")));
        };
        let allowed = match actor {
            Some(a) => p.roles.may_trigger(a) || p.roles.may_trigger("*"),
            None => p.roles.may_trigger("*"),
        };
        if !allowed {
            return Ok(ignored(format!(
                "{} may not start work on project {project} (add them to [projects.{project}.roles] trigger)",
                actor.unwrap_or("the poller")
            )));
        }
        self.read_and_queue(project, p, key).await
    }

    /// An idea added by an operator (`codemill idea add`) on a project with an outside tracker:
    /// an issue there with the refine label, queued for refinement at once. Returns the
    /// outside issue's key and what was queued.
    pub async fn add_idea(
        &self,
        project: &str,
        title: &str,
        body: &str,
    ) -> Result<(String, Inbound), RunError> {
        let Some(p) = self.config.projects.get(project) else {
            return Ok((String::new(), ignored(format!("no project {project}"))));
        };
        let outside = self
            .outside
            .get(p)
            .map_err(|e| Self::outside_error(project, e))?;
        let Some(tracker) = outside.tracker else {
            return Ok((
                String::new(),
                ignored(format!("project {project} uses the local tracker")),
            ));
        };
        let marker = format!("codemill:idea:{}", JobId::new());
        let key = tracker
            .create_issue(&marker, title, body, p.tracker.refine_label())
            .await
            .map_err(|e| Self::outside_error(project, e))?;
        // Into the trigger state where the tracker has states (a new issue may start elsewhere).
        match tracker
            .transition(&key, codemill_core::pipeline::TicketStatus::Todo)
            .await
        {
            Ok(()) | Err(codemill_trackers::Error::NotFound(_)) => {}
            Err(e) => return Err(Self::outside_error(project, e)),
        }
        let queued = self.read_and_queue(project, p, &key).await?;
        Ok((key, queued))
    }

    /// Read the issue afresh and queue the job it asks for (no role check: the caller did it).
    async fn read_and_queue(
        &self,
        project: &str,
        p: &codemill_core::config::ProjectConfig,
        key: &str,
    ) -> Result<Inbound, RunError> {
        let outside = self
            .outside
            .get(p)
            .map_err(|e| Self::outside_error(project, e))?;
        let Some(tracker) = outside.tracker else {
            return Ok(ignored(format!("project {project} uses the local tracker")));
        };
        let issue = tracker
            .issue(key)
            .await
            .map_err(|e| Self::outside_error(project, e))?;
        let Some(asked) = outside::asked(&p.tracker, &issue) else {
            return Ok(ignored(format!(
                "{} is not in the trigger state (status {:?}, labels {:?})",
                issue.key, issue.status, issue.labels
            )));
        };
        let name: codemill_core::ids::ProjectName = project
            .parse()
            .map_err(|e| Self::outside_error(project, e))?;
        let ticket_key = TicketKey::new(&name, issue.number);
        let (title, body) = outside::ticket_text(&issue);
        let ticket = self
            .store
            .mirror_ticket(&MirroredTicket {
                key: &ticket_key,
                external: &issue.key,
                url: &issue.url,
                title: &title,
                body: &body,
                labels: &issue.labels,
            })
            .await?;
        if let Some(latest) = crate::jobs::latest(&self.store, &ticket_key).await? {
            let (row, state) = (latest.job, &latest.state);
            match state.stage {
                Stage::NeedsInput if !state.answered(ticket.edited_at, latest.last_at()) => {
                    return Ok(ignored(format!(
                        "{ticket_key} waits for answers to its questions; edit the ticket to run it again"
                    )));
                }
                // Unless the ticket was edited since: then the waiting job ends, and a new one
                // refines the edited text.
                Stage::AwaitingAcceptance
                    if !control::supersede_if_edited(&self.store, &latest, &ticket).await? =>
                {
                    return Ok(ignored(format!(
                        "{ticket_key}'s spec awaits acceptance; accept it or edit the ticket to refine it again"
                    )));
                }
                // A refined idea moved on to its build: the build is a new job.
                Stage::Done if state.refine.is_some() && asked == outside::Asked::Build => {}
                Stage::NeedsAttention | Stage::Rejected | Stage::Cancelled | Stage::Done => {
                    let active = self.store.queue_entry(row).await?.is_some_and(|e| {
                        matches!(
                            e.state,
                            codemill_store::QueueState::Queued
                                | codemill_store::QueueState::Leased
                                | codemill_store::QueueState::Waiting
                        )
                    });
                    if !active {
                        return Ok(ignored(format!(
                            "{ticket_key} already ran (job {} is {}); retry it to run again",
                            row,
                            state.status()
                        )));
                    }
                }
                _ => {}
            }
        }
        let mut options = JobOptions::for_project(&self.config, project);
        options.refine = asked == outside::Asked::Refine;
        let (job, created) = control::enqueue(&self.store, &ticket_key, options).await?;
        if created {
            // Visible at once, even when every worker is busy: the job's first step edits this
            // same comment. Best effort; the job does not depend on it.
            let note = format!(
                "**codemill** · job `{}` · queued\n\ncodemill queued {} and will pick it up as soon as a worker is free.\n",
                job.short(),
                issue.key
            );
            if let Err(e) = tracker
                .upsert_comment(&issue.key, outside::PROGRESS_MARKER, &note)
                .await
            {
                tracing::warn!(ticket = %ticket_key, error = %log_safe(&e), "could not post the queued note");
            }
        }
        Ok(Inbound::Queued {
            ticket: ticket_key,
            job,
            created,
        })
    }

    /// The ticket a codemill branch belongs to, if `head` is one of `project`'s: the ticket's
    /// own branch, or a stack branch (`codemill/<KEY>/<n>-…`), whose PR record names its
    /// sub-task's ticket.
    async fn ticket_of(&self, project: &str, head: &str) -> Result<Option<TicketKey>, RunError> {
        let Some(rest) = head.strip_prefix("codemill/") else {
            return Ok(None);
        };
        if let Ok(key) = rest.parse::<TicketKey>() {
            return Ok((key.project() == project).then_some(key));
        }
        let record = self.store.find_pr(project, head).await?;
        Ok(record.and_then(|pr| pr.ticket.parse().ok()))
    }

    /// Feedback on codemill's PR from `head`: journalled on the ticket's job when its author
    /// may review (failed checks need no role).
    pub async fn feedback(
        &self,
        project: &str,
        head: &str,
        pr: u64,
        feedback: Feedback,
    ) -> Result<Inbound, RunError> {
        let Some(p) = self.config.projects.get(project) else {
            return Ok(ignored(format!("no project {project}")));
        };
        // A delivery that names only the PR: its branch comes from the forge.
        let head = if head.is_empty() && pr > 0 {
            let outside = self
                .outside
                .get(p)
                .map_err(|e| Self::outside_error(project, e))?;
            let Some(forge) = outside.forge else {
                return Ok(ignored(format!("project {project} has no outside forge")));
            };
            forge
                .pr(pr)
                .await
                .map_err(|e| Self::outside_error(project, e))?
                .head
        } else {
            head.to_string()
        };
        let Some(key) = self.ticket_of(project, &head).await? else {
            return Ok(ignored(format!(
                "{head} is not a codemill branch of {project}"
            )));
        };
        if feedback.kind != FeedbackKind::CheckFailed && !p.roles.may_review(&feedback.author) {
            return Ok(ignored(format!(
                "{} may not start a fix round on project {project} (add them to [projects.{project}.roles] review)",
                feedback.author
            )));
        }
        self.journal(
            &key,
            JobEvent::FeedbackReceived {
                feedback: vec![feedback],
            },
        )
        .await
    }

    /// codemill's PR from `head` was closed (merged or not).
    pub async fn pr_closed(
        &self,
        project: &str,
        head: &str,
        merged: bool,
        actor: Option<&str>,
    ) -> Result<Inbound, RunError> {
        let Some(key) = self.ticket_of(project, head).await? else {
            return Ok(ignored(format!(
                "{head} is not a codemill branch of {project}"
            )));
        };
        self.journal(
            &key,
            JobEvent::PrClosed {
                merged,
                by: actor.unwrap_or("forge").to_string(),
            },
        )
        .await
    }

    async fn journal(&self, key: &TicketKey, event: JobEvent) -> Result<Inbound, RunError> {
        record(&self.store, key, event).await
    }

    /// One pass over every outside tracker: issues in the trigger state without a job are
    /// queued. Catches what webhooks missed; a tracker that fails is reported, the rest go on.
    pub async fn poll(&self) -> Vec<Result<Inbound, RunError>> {
        let mut out = Vec::new();
        for (name, p) in &self.config.projects {
            if matches!(p.tracker, codemill_core::config::TrackerSettings::Local)
                || !p.roles.may_trigger("*")
            {
                continue;
            }
            let tracker = match self.outside.get(p) {
                Ok(o) => o.tracker,
                Err(e) => {
                    out.push(Err(Self::outside_error(name, e)));
                    continue;
                }
            };
            let Some(tracker) = tracker else { continue };
            match tracker.triggered().await {
                Ok(keys) => {
                    for key in keys {
                        out.push(self.trigger(name, &key, None).await);
                    }
                }
                Err(e) => out.push(Err(Self::outside_error(name, e))),
            }
        }
        out
    }
}

/// Append `event` to the ticket's latest job when the pipeline accepts it there, and hand
/// a waiting job back to the workers. A worker appending at the same moment makes one of
/// the two appends fail on the journal's sequence; this side reads again and retries.
pub(crate) async fn record(
    store: &Store,
    key: &TicketKey,
    event: JobEvent,
) -> Result<Inbound, RunError> {
    let Some(row) = store.latest_job(key).await? else {
        return Ok(ignored(format!("{key} has no job")));
    };
    for _ in 0..5 {
        let journal = store.journal(row.id).await?;
        let state: JobState = replay(row.id, &journal)?;
        let next = match apply(&state, &event) {
            Ok(next) => next,
            Err(e) => return Ok(ignored(format!("{key}: {e}"))),
        };
        if next == state {
            return Ok(ignored(format!("{key}: nothing new")));
        }
        match store.append(row.id, journal.len() as i64, &event).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        // A review arrives as several deliveries a moment apart (the review, then each line
        // comment): the round waits briefly so they join it instead of starting another.
        let now = Utc::now();
        let due = if matches!(event, JobEvent::FeedbackReceived { .. }) {
            now + FEEDBACK_SETTLE
        } else {
            now
        };
        // A done job takes an event only from the merge queue of the local forge (a fix
        // round): it is reopened.
        let requeued = if state.stage == Stage::Done {
            store.reopen(row.id, now).await
        } else {
            store.requeue_at(row.id, due, now).await
        };
        match requeued {
            Ok(_) | Err(StoreError::NotQueued(_)) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Inbound::Recorded {
            ticket: key.clone(),
            job: row.id,
        });
    }
    Err(RunError::Journal {
        job: row.id,
        message: "the journal kept moving while recording an outside event".into(),
    })
}
