//! Every write to trackers and forges: the ticket's notes, status and labels (the outside
//! tracker's progress comment first, then the local tracker), the PR (on the outside forge and
//! in the local record), replies to PR feedback, and backlog tickets. Every write carries a
//! marker or a branch the other side is looked up by, so a retry creates nothing twice.

use codemill_core::ids::JobId;
use codemill_core::pipeline::{
    Effect, FeedbackKind, JobEvent, JobState, NEEDS_INPUT_LABEL, NoteKind, TicketStatus,
};
use codemill_core::triage::Bucket;
use codemill_store::{Store, Ticket};
use codemill_trackers::{Forge, PrRequest, ReplyTo, Tracker};

use crate::effects::{failed, outside_failure};
use crate::error::RunError;
use crate::local::{LocalForge, LocalTracker};
use crate::notes;
use crate::outside::{AnyTracker, PROGRESS_MARKER, Projects, STATUS_LABELS, status_label};
use crate::progress::{Emitter, Progress};
use crate::proposal;

/// Speaks for a job on the trackers and forges of its project: the outside ones the project
/// names, and always the local ones (the ticket itself for a local project, the record of an
/// outside one).
#[derive(Clone)]
pub(crate) struct Announcer {
    store: Store,
    projects: Projects,
    progress: Emitter,
}

impl Announcer {
    pub(crate) fn new(store: Store, projects: Projects, progress: Emitter) -> Announcer {
        Announcer {
            store,
            projects,
            progress,
        }
    }

    /// Post the note of `note`, move the ticket to `status` and set its labels; `plan` is the
    /// plan the plan note shows (an outside ticket's progress comment keeps it afterwards).
    pub(crate) async fn update_ticket(
        &self,
        job: JobId,
        state: &JobState,
        status: TicketStatus,
        note: NoteKind,
        plan: Option<&str>,
    ) -> Result<JobEvent, RunError> {
        let effect = Effect::UpdateTicket { status, note };
        let project = state.ticket.project();
        let marker = notes::marker(job, note);
        let body = notes::render(note, job, state, plan);
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&effect, e)),
        };
        if let Some(tracker) = &outside.tracker {
            let external = self
                .store
                .ticket(&state.ticket)
                .await?
                .and_then(|t| t.external)
                .unwrap_or_else(|| state.ticket.number().to_string());
            let progress = notes::progress(note, job, state, plan, status);
            if let Err(e) = self
                .update_outside_ticket(tracker, &external, &progress, status)
                .await
            {
                return outside_failure(project, &effect, e);
            }
            // The spec is a section of its own that outlives the progress comment (a build
            // rewrites that one); refining again edits it in place.
            if note == NoteKind::Spec {
                let (add, remove) = note_labels(note, state);
                let written = async {
                    tracker
                        .upsert_comment(&external, SPEC_MARKER, &body)
                        .await?;
                    tracker.set_labels(&external, add, remove).await
                }
                .await;
                if let Err(e) = written {
                    return outside_failure(project, &effect, e);
                }
            }
        }
        // Comment first, then status: a crash between them re-posts nothing (marker) and sets
        // the status.
        let local = LocalTracker::new(self.store.clone());
        let key = state.ticket.to_string();
        let (add, remove) = note_labels(note, state);
        let written = async {
            local.upsert_comment(&key, &marker, &body).await?;
            local.transition(&key, status).await?;
            local.set_labels(&key, add, remove).await
        }
        .await;
        if let Err(e) = written {
            return outside_failure(project, &effect, e);
        }
        Ok(JobEvent::TicketUpdated { marker })
    }

    /// Post the progress comment, move the ticket and set its status label in the outside
    /// tracker. The transition is best effort: a workflow without the mapped state is reported,
    /// not fatal.
    async fn update_outside_ticket(
        &self,
        tracker: &AnyTracker,
        external: &str,
        body: &str,
        status: TicketStatus,
    ) -> Result<(), codemill_trackers::Error> {
        tracker
            .upsert_comment(external, PROGRESS_MARKER, body)
            .await?;
        if let Some((label, remove)) = status_labels(status) {
            tracker.set_labels(external, &[label], &remove).await?;
        }
        match tracker.transition(external, status).await {
            Ok(()) => Ok(()),
            Err(e @ codemill_trackers::Error::NotFound(_)) => {
                self.progress.emit(Progress::Info {
                    message: format!("{external}: {e}"),
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Open (or find) the PR of the ticket's branch: on the outside forge when the project has
    /// one, and always as the local record.
    pub(crate) async fn record_pr(
        &self,
        state: &JobState,
        ticket: &Ticket,
        commit: &str,
    ) -> Result<JobEvent, RunError> {
        let project = state.ticket.project();
        let branch = state.ticket.branch();
        let base = state.default_branch.clone().unwrap_or_default();
        let (title, body) = proposal::pr_text(state, ticket);
        let effect = Effect::RecordPr {
            commit: commit.to_string(),
        };
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&effect, e)),
        };
        let mut remote = None;
        if let Some(forge) = outside.forge.as_deref() {
            let draft = match self.projects.get(project).map(|p| &p.forge) {
                Some(codemill_core::config::ForgeSettings::Github(g)) => g.draft,
                _ => true,
            };
            match forge
                .open_pr(&PrRequest {
                    head: &branch,
                    base: &base,
                    title: &title,
                    body: &body,
                    draft,
                })
                .await
            {
                Ok(pr) => remote = Some(pr),
                Err(e) => return outside_failure(project, &effect, e),
            }
        }
        let local = LocalForge::new(self.store.clone(), state.ticket.clone(), commit.to_string());
        let pr = match local
            .open_pr(&PrRequest {
                head: &branch,
                base: &base,
                title: &title,
                body: &body,
                draft: false,
            })
            .await
        {
            Ok(pr) => pr,
            Err(e) => return outside_failure(project, &effect, e),
        };
        Ok(JobEvent::PrRecorded {
            pr: pr.number as i64,
            number: remote.as_ref().map(|r| r.number),
            url: remote.map(|r| r.url),
        })
    }

    /// The ticket of a split ticket's sub-task, made once per `marker`: a linked local ticket,
    /// or on an outside tracker a linked issue (labelled `codemill:subtask` where codemill
    /// labels its issues) mirrored locally. `Err` holds the event of a failure that will not
    /// mend by retrying.
    pub(crate) async fn subtask_ticket(
        &self,
        parent: &Ticket,
        marker: &str,
        title: &str,
        body: &str,
        effect: &Effect,
    ) -> Result<Result<codemill_core::ids::TicketKey, JobEvent>, RunError> {
        let project = parent.key.project();
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok(Err(failed(effect, e))),
        };
        let Some(tracker) = &outside.tracker else {
            let (ticket, _) = self
                .store
                .create_linked_ticket(
                    &parent.key,
                    "subtask_of",
                    marker,
                    title,
                    body,
                    &[codemill_trackers::SUBTASK_LABEL.to_string()],
                )
                .await?;
            return Ok(Ok(ticket.key));
        };
        let parent_ref = parent
            .external
            .clone()
            .unwrap_or_else(|| parent.key.number().to_string());
        let made = async {
            let key = tracker
                .create_subtask(&parent_ref, &format!("codemill:{marker}"), title, body)
                .await?;
            tracker.issue(&key).await
        };
        let issue = match made.await {
            Ok(issue) => issue,
            Err(e) => return outside_failure(project, effect, e).map(Err),
        };
        let name: codemill_core::ids::ProjectName = match project.parse() {
            Ok(n) => n,
            Err(e) => return Ok(Err(failed(effect, e))),
        };
        let key = codemill_core::ids::TicketKey::new(&name, issue.number);
        let (text_title, text_body) = crate::outside::ticket_text(&issue);
        self.store
            .mirror_ticket(&codemill_store::MirroredTicket {
                key: &key,
                external: &issue.key,
                url: &issue.url,
                title: &text_title,
                body: &text_body,
                labels: &issue.labels,
            })
            .await?;
        Ok(Ok(key))
    }

    /// The tickets of an accepted spec's proposed split, each linked to the refined one (found
    /// again by marker) and carrying the trigger label, so each is built on its own.
    pub(crate) async fn create_split(
        &self,
        job: JobId,
        state: &JobState,
        ticket: &Ticket,
    ) -> Result<JobEvent, RunError> {
        let effect = Effect::CreateSplitTickets;
        let Some(spec) = &state.spec else {
            return Ok(failed(&effect, "the job has no spec"));
        };
        let project = state.ticket.project();
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&effect, e)),
        };
        if let (Some(tracker), Some(p)) = (&outside.tracker, self.projects.get(project)) {
            // Each part is an issue linked to the idea (found again by marker), carrying the
            // build trigger label so it is built on its own.
            let parent = ticket
                .external
                .clone()
                .unwrap_or_else(|| ticket.key.number().to_string());
            let shown = match tracker.vendor() {
                "github" | "gitlab" => format!("#{parent}"),
                _ => parent.clone(),
            };
            let trigger = p.tracker.trigger_label();
            let mut keys = Vec::new();
            for (n, part) in spec.split.iter().enumerate() {
                let marker = format!("codemill:refine-split:{job}:{}", n + 1);
                let body = codemill_core::refine::part_body(&shown, part);
                let made = async {
                    let key = tracker
                        .create_subtask(&parent, &marker, part.title.trim(), &body)
                        .await?;
                    tracker.set_labels(&key, &[trigger], &[]).await?;
                    Ok::<_, codemill_trackers::Error>(key)
                }
                .await;
                match made {
                    Ok(key) => keys.push(key),
                    Err(e) => return outside_failure(project, &effect, e),
                }
            }
            return Ok(JobEvent::SplitCreated { tickets: keys });
        }
        let mut keys = Vec::new();
        for (n, part) in spec.split.iter().enumerate() {
            let marker = format!("refine-split:{job}:{}", n + 1);
            let body = codemill_core::refine::part_body(&ticket.key.to_string(), part);
            let (made, _) = self
                .store
                .create_linked_ticket(
                    &ticket.key,
                    "split_of",
                    &marker,
                    part.title.trim(),
                    &body,
                    &[crate::control::TRIGGER_LABEL.to_string()],
                )
                .await?;
            keys.push(made.key.to_string());
        }
        Ok(JobEvent::SplitCreated { tickets: keys })
    }

    /// A refined ticket goes to the build queue: the refine label off, the trigger label on,
    /// status to do.
    pub(crate) async fn queue_build(&self, state: &JobState) -> Result<JobEvent, RunError> {
        let effect = Effect::QueueBuild;
        let project = state.ticket.project();
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&effect, e)),
        };
        if let (Some(tracker), Some(p)) = (&outside.tracker, self.projects.get(project)) {
            // The tracker's own trigger: the build label on, the refine label and codemill's
            // status label off, back in the trigger state. Its poll or webhook starts the build.
            let external = self
                .store
                .ticket(&state.ticket)
                .await?
                .and_then(|t| t.external)
                .unwrap_or_else(|| state.ticket.number().to_string());
            let mut remove = vec![p.tracker.refine_label()];
            remove.extend(STATUS_LABELS);
            let moved = async {
                tracker
                    .set_labels(&external, &[p.tracker.trigger_label()], &remove)
                    .await?;
                match tracker.transition(&external, TicketStatus::Todo).await {
                    Err(codemill_trackers::Error::NotFound(_)) | Ok(()) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            .await;
            if let Err(e) = moved {
                return outside_failure(project, &effect, e);
            }
        }
        let local = LocalTracker::new(self.store.clone());
        let key = state.ticket.to_string();
        let moved = async {
            local
                .set_labels(
                    &key,
                    &[crate::control::TRIGGER_LABEL],
                    &[codemill_core::refine::REFINE_LABEL],
                )
                .await?;
            local.transition(&key, TicketStatus::Todo).await
        }
        .await;
        if let Err(e) = moved {
            return outside_failure(project, &effect, e);
        }
        Ok(JobEvent::BuildQueued)
    }

    /// One PR per sub-task of an approved stack, bottom first, each based on the branch of the
    /// one below it (the lowest on the default branch), with the stack drawn in each body.
    /// Returns the top PR as the job's, and every entry's local PR record.
    pub(crate) async fn record_stack_prs(
        &self,
        state: &JobState,
        ticket: &Ticket,
    ) -> Result<(JobEvent, Option<Vec<StackPr>>), RunError> {
        let project = state.ticket.project();
        let effect = Effect::RecordPr {
            commit: state.commit.clone().unwrap_or_default(),
        };
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok((failed(&effect, e), None)),
        };
        let draft = match self.projects.get(project).map(|p| &p.forge) {
            Some(codemill_core::config::ForgeSettings::Github(g)) => g.draft,
            _ => true,
        };
        let (_, summary) = proposal::pr_text(state, ticket);
        let total = state.stack.len();
        let mut prs = Vec::new();
        let mut top = None;
        for (i, entry) in state.stack.iter().enumerate() {
            let title = format!("{} [{}/{total}] {}", ticket.key, i + 1, entry.title);
            let body = format!(
                "Sub-task {} of {total} of {} ({}), ticket {}.\n\n{}\n---\n\n{}",
                i + 1,
                ticket.key,
                ticket.title,
                entry.ticket,
                notes::stack_drawing(&state.stack, Some(i)),
                summary
            );
            let request = PrRequest {
                head: &entry.branch,
                base: &entry.base,
                title: &title,
                body: &body,
                draft,
            };
            let mut remote = None;
            if let Some(forge) = outside.forge.as_deref() {
                match forge.open_pr(&request).await {
                    Ok(pr) => remote = Some(pr),
                    Err(e) => return outside_failure(project, &effect, e).map(|ev| (ev, None)),
                }
            }
            let local = LocalForge::new(
                self.store.clone(),
                entry.ticket.clone(),
                entry.commit.clone(),
            );
            let pr = match local
                .open_pr(&PrRequest {
                    draft: false,
                    ..request
                })
                .await
            {
                Ok(pr) => pr,
                Err(e) => return outside_failure(project, &effect, e).map(|ev| (ev, None)),
            };
            prs.push(StackPr {
                record: pr.number as i64,
                number: remote.as_ref().map(|r| r.number),
                url: remote.as_ref().map(|r| r.url.clone()),
            });
            top = Some((pr.number as i64, remote));
        }
        let Some((pr, remote)) = top else {
            return Ok((failed(&effect, "the stack is empty"), None));
        };
        Ok((
            JobEvent::PrRecorded {
                pr,
                number: remote.as_ref().map(|r| r.number),
                url: remote.map(|r| r.url),
            },
            Some(prs),
        ))
    }

    /// Answer the round's feedback on the PR: in the thread of each review comment, and once on
    /// the conversation for the rest. Each reply carries a marker, so a retry posts nothing twice.
    pub(crate) async fn reply_feedback(
        &self,
        job: JobId,
        state: &JobState,
        fix_summary: Option<&str>,
        effect: &Effect,
        round: u32,
    ) -> Result<JobEvent, RunError> {
        let project = state.ticket.project();
        let body = notes::feedback_reply(state, fix_summary);
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok(failed(effect, e)),
        };
        let (Some(forge), Some(number)) = (&outside.forge, state.pr_number) else {
            return Ok(JobEvent::FeedbackReplied { round });
        };
        let mut conversation = false;
        for f in &state.feedback {
            let result = match (&f.kind, &f.reply_to) {
                // A review comment, or a note that names its thread (GitLab): the reply goes
                // into that thread.
                (FeedbackKind::ReviewComment | FeedbackKind::Comment, Some(id)) => {
                    let marker = format!("codemill:{job}:feedback:{round}:{id}");
                    forge
                        .reply(number, ReplyTo::ReviewComment(id), &marker, &body)
                        .await
                }
                _ => {
                    conversation = true;
                    Ok(())
                }
            };
            if let Err(e) = result {
                return outside_failure(project, effect, e);
            }
        }
        if conversation {
            let marker = format!("codemill:{job}:feedback:{round}");
            if let Err(e) = forge
                .reply(number, ReplyTo::Conversation, &marker, &body)
                .await
            {
                return outside_failure(project, effect, e);
            }
        }
        Ok(JobEvent::FeedbackReplied { round })
    }

    /// After approval: every backlog finding becomes a ticket linked to this one (once each).
    pub(crate) async fn create_backlog(
        &self,
        job: JobId,
        state: &JobState,
        ticket: &Ticket,
    ) -> Result<JobEvent, RunError> {
        let effect = Effect::CreateBacklogTickets;
        let project = state.ticket.project();
        let mut keys = Vec::new();
        let outside = match self.projects.outside(project) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&effect, e)),
        };
        for d in state.backlog() {
            debug_assert_eq!(d.bucket, Bucket::Backlog);
            let f = &d.finding;
            let marker = format!("backlog:{job}:{}", f.fingerprint());
            let title = format!("{} ({})", f.title, f.location());
            let body = format!(
                "Found by codemill's review of {} ({}), angle(s): {}; severity {}.\n\n{}\n{}\nTriage: backlog — {}\n",
                ticket.key,
                ticket.title,
                f.angles.join(", "),
                f.severity.as_str(),
                f.detail,
                f.suggestion
                    .as_ref()
                    .map(|s| format!("\nSuggestion: {s}\n"))
                    .unwrap_or_default(),
                d.reason
            );
            let created = match &outside.tracker {
                Some(tracker) => {
                    let parent = ticket
                        .external
                        .clone()
                        .unwrap_or_else(|| ticket.key.number().to_string());
                    tracker
                        .create_linked(&parent, &format!("codemill:{marker}"), &title, &body)
                        .await
                }
                None => {
                    LocalTracker::new(self.store.clone())
                        .create_linked(&ticket.key.to_string(), &marker, &title, &body)
                        .await
                }
            };
            match created {
                Ok(k) => keys.push(k),
                Err(e) => return outside_failure(project, &effect, e),
            }
        }
        Ok(JobEvent::BacklogCreated { tickets: keys })
    }
}

/// The marker of the refined spec's own comment on an outside ticket.
const SPEC_MARKER: &str = "codemill:spec";

/// The labels a note adds and removes on the local ticket: the needs-input label is there
/// exactly while codemill waits for answers; a written spec marks the ticket refined.
fn note_labels(
    note: NoteKind,
    state: &JobState,
) -> (&'static [&'static str], &'static [&'static str]) {
    use codemill_core::refine::REFINED_LABEL;
    match note {
        NoteKind::NeedsInput => (&[NEEDS_INPUT_LABEL], &[]),
        NoteKind::Spec if !state.questions.is_empty() => (&[REFINED_LABEL, NEEDS_INPUT_LABEL], &[]),
        NoteKind::Spec => (&[REFINED_LABEL], &[NEEDS_INPUT_LABEL]),
        NoteKind::Started => (&[], &[NEEDS_INPUT_LABEL]),
        NoteKind::Acknowledged
        | NoteKind::Plan
        | NoteKind::Proposal
        | NoteKind::Shipped
        | NoteKind::Stopped
        | NoteKind::Merged
        | NoteKind::Closed => (&[], &[]),
    }
}

/// The status label an outside ticket gets for `status` and the others it loses, so exactly
/// one is on it at a time; `None` leaves its labels alone.
fn status_labels(status: TicketStatus) -> Option<(&'static str, Vec<&'static str>)> {
    let label = status_label(status)?;
    let remove = STATUS_LABELS
        .iter()
        .copied()
        .filter(|l| *l != label)
        .collect();
    Some((label, remove))
}

#[cfg(test)]
mod tests;

/// One sub-task's PR: its local record, and its number and link on an outside forge.
#[derive(Debug, Clone)]
pub(crate) struct StackPr {
    pub record: i64,
    pub number: Option<u64>,
    pub url: Option<String>,
}
