//! Ticket updates: the progress comment, status and labels in the outside tracker, then the
//! note, status and labels in the local one.

use codemill_core::ids::JobId;
use codemill_core::pipeline::{
    Effect, JobEvent, JobState, NEEDS_INPUT_LABEL, NoteKind, TicketStatus,
};

use codemill_trackers::Tracker;

use crate::engine::{RunError, Runner};
use crate::local::LocalTracker;
use crate::notes;
use crate::progress::Progress;

use super::failed;

impl Runner {
    /// Post the progress comment, move the ticket and set its status label in the outside
    /// tracker. The transition is best effort: a workflow without the mapped state is reported,
    /// not fatal.
    async fn update_outside_ticket(
        &self,
        tracker: &crate::outside::AnyTracker,
        external: &str,
        body: &str,
        status: TicketStatus,
    ) -> Result<(), codemill_trackers::Error> {
        tracker
            .upsert_comment(external, crate::outside::PROGRESS_MARKER, body)
            .await?;
        if let Some(label) = crate::outside::status_label(status) {
            let remove: Vec<&str> = crate::outside::STATUS_LABELS
                .iter()
                .copied()
                .filter(|l| *l != label)
                .collect();
            tracker.set_labels(external, &[label], &remove).await?;
        }
        match tracker.transition(external, status).await {
            Ok(()) => Ok(()),
            Err(e @ codemill_trackers::Error::NotFound(_)) => {
                self.emit(Progress::Info {
                    message: format!("{external}: {e}"),
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn update_ticket(
        &self,
        job: JobId,
        state: &JobState,
        status: TicketStatus,
        note: NoteKind,
    ) -> Result<JobEvent, RunError> {
        let marker = notes::marker(job, note);
        // The plan note shows the plan; an outside ticket's progress comment keeps it afterwards.
        let plan = state
            .plan_artifact
            .as_ref()
            .and_then(|a| std::fs::read_to_string(self.home.artifacts(job).join(a)).ok());
        let body = notes::render(note, job, state, plan.as_deref());
        let outside = match self.outside(state) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&Effect::UpdateTicket { status, note }, e)),
        };
        if let Some(tracker) = &outside.tracker {
            let external = self
                .store
                .ticket(&state.ticket)
                .await?
                .and_then(|t| t.external)
                .unwrap_or_else(|| state.ticket.number().to_string());
            let progress = notes::progress(note, job, state, plan.as_deref(), status);
            if let Err(e) = self
                .update_outside_ticket(tracker, &external, &progress, status)
                .await
            {
                return self.outside_failure(state, &Effect::UpdateTicket { status, note }, e);
            }
        }
        // The local tracker: the ticket itself for a local project, the record of an outside
        // one. Comment first, then status: a crash between them re-posts nothing (marker) and
        // sets the status.
        let local = LocalTracker::new(self.store.clone());
        let key = state.ticket.to_string();
        // The needs-input label is there exactly while codemill waits for answers.
        let (add, remove): (&[&str], &[&str]) = match note {
            NoteKind::NeedsInput => (&[NEEDS_INPUT_LABEL], &[]),
            NoteKind::Started => (&[], &[NEEDS_INPUT_LABEL]),
            NoteKind::Acknowledged
            | NoteKind::Plan
            | NoteKind::Proposal
            | NoteKind::Shipped
            | NoteKind::Stopped
            | NoteKind::Merged
            | NoteKind::Closed => (&[], &[]),
        };
        let written = async {
            local.upsert_comment(&key, &marker, &body).await?;
            local.transition(&key, status).await?;
            local.set_labels(&key, add, remove).await
        }
        .await;
        if let Err(e) = written {
            return self.outside_failure(state, &Effect::UpdateTicket { status, note }, e);
        }
        Ok(JobEvent::TicketUpdated { marker })
    }
}
