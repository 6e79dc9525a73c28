//! How a merge queue entry ends, said where people look: merged (the PR record, the ticket
//! done, a comment) or taken out (the reason on the ticket and the forge's PR, and a fix round
//! on its branch when one can help). Every announcement is by marker, so a retry after a crash
//! says nothing twice.

use std::path::Path;

use chrono::Utc;
use codemill_core::ids::TicketKey;
use codemill_core::pipeline::{Feedback, FeedbackKind, JobEvent, TicketStatus};
use codemill_store::{MergeEntry, MergeState};
use codemill_trackers::ReplyTo;

use super::{CONFLICT_FILE_CHARS, MAX_CONFLICT_FILES, short};
use crate::engine::Runner;
use crate::error::RunError;
use crate::progress::Progress;
use crate::{inbound, jobs};

impl Runner {
    /// Announce an entry as merged (PR record, ticket done, a comment — each by marker or
    /// idempotent), then settle it.
    pub(super) async fn settle_merged(
        &self,
        entry: &MergeEntry,
        merged_as: Option<&str>,
        gates: &[String],
        by: &str,
    ) -> Result<(), RunError> {
        let key: TicketKey = entry.ticket.parse().map_err(|_| RunError::Outside {
            project: entry.project.clone(),
            message: format!("merge queue entry {} names no ticket", entry.id),
        })?;
        self.store
            .set_pr_state(&entry.project, &entry.branch, "merged")
            .await?;
        self.store
            .set_ticket_status(&key, TicketStatus::Done, &entry.enqueued_by)
            .await?;
        let tested = if gates.is_empty() {
            String::new()
        } else {
            format!(
                " Gates passed on the merged result before it landed: {}.",
                gates
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let body = match merged_as {
            Some(sha) => format!(
                "**Merged** `{}` into `{}` (now `{}`) through the merge queue, queued by {}.{tested}",
                entry.branch,
                entry.target,
                short(sha),
                entry.enqueued_by
            ),
            None => format!(
                "**Merged**: `{}` already contained `{}` (marked by {by}).",
                entry.target, entry.branch
            ),
        };
        let marker = format!("codemill:merged:{}", entry.job);
        self.store
            .add_comment(&key, "codemill", Some(&marker), &body)
            .await?;
        self.tell_outside_tracker_merged(entry, &key).await?;
        // How the work ended, for learning from what people changed (recorded once per job,
        // also when a forge's PR event reports the same merge later).
        let journal = self.store.journal(entry.job).await?;
        let state = jobs::replay(entry.job, &journal)?;
        if state.subtask.is_none() {
            self.record_merged(entry.job, &state, &journal).await;
        }
        self.store
            .settle_merge(entry.id, MergeState::Merged, None, merged_as, Utc::now())
            .await?;
        self.settle_stack_of(&key).await
    }

    /// A ticket of an outside tracker whose PR the local forge's queue merged: Done there too,
    /// with the merged note (by marker, so a retry says it once). Nothing to do for the local
    /// tracker, whose ticket the entry's settling already marked.
    async fn tell_outside_tracker_merged(
        &self,
        entry: &MergeEntry,
        key: &TicketKey,
    ) -> Result<(), RunError> {
        let outside = self.workspace.outside_tracker(&entry.project);
        if !outside {
            return Ok(());
        }
        let Some(latest) = jobs::latest(&self.store, key).await? else {
            return Ok(());
        };
        if latest.job != entry.job {
            return Ok(());
        }
        let said = self
            .announcer
            .update_ticket(
                entry.job,
                &latest.state,
                TicketStatus::Done,
                codemill_core::pipeline::NoteKind::Merged,
                None,
            )
            .await?;
        if let JobEvent::EffectFailed { error, .. } = said {
            // It landed; a tracker that refuses the update for good does not undo that.
            tracing::warn!(ticket = %key, %error, "could not mark the merged ticket done in its tracker");
        }
        Ok(())
    }

    /// A sub-task merged: once every sub-task of its parent's stack has, the parent ticket is
    /// done too (said once, by marker).
    pub(crate) async fn settle_stack_of(&self, key: &TicketKey) -> Result<(), RunError> {
        let Some(sub) = jobs::latest(&self.store, key)
            .await?
            .and_then(|l| l.state.subtask)
        else {
            return Ok(());
        };
        let Some(parent) = jobs::latest(&self.store, &sub.parent_ticket).await? else {
            return Ok(());
        };
        if parent.job != sub.parent || parent.state.stack.is_empty() {
            return Ok(());
        }
        for e in &parent.state.stack {
            // Landed by the queue (the PR record), or merged on the forge (the sub-job saw it).
            let recorded = self
                .store
                .find_pr(key.project(), &e.branch)
                .await?
                .is_some_and(|pr| pr.state == "merged");
            let followed = jobs::latest(&self.store, &e.ticket)
                .await?
                .is_some_and(|l| l.job == e.job && l.state.merged == Some(true));
            if !recorded && !followed {
                return Ok(());
            }
        }
        // Said on the parent ticket as its merge is on any ticket (by marker, so once): Done in
        // its tracker, local or outside.
        let said = self
            .announcer
            .update_ticket(
                parent.job,
                &parent.state,
                TicketStatus::Done,
                codemill_core::pipeline::NoteKind::Merged,
                None,
            )
            .await?;
        if let JobEvent::EffectFailed { error, .. } = said {
            tracing::warn!(ticket = %sub.parent_ticket, %error, "could not mark the stack merged");
        }
        Ok(())
    }

    /// What a fix round needs to resolve a conflict: the reason, and the target's side of each
    /// conflicting file (the agent's sandbox holds only its own branch).
    pub(super) async fn conflict_feedback(
        &self,
        clone: &Path,
        onto: &str,
        target: &str,
        reason: &str,
        files: &[String],
    ) -> String {
        let mut body = format!(
            "The merge queue could not land this branch: {reason}\n\nChange the branch so it \
             merges cleanly into `{target}` and keeps both intents. What `{target}` holds now:\n"
        );
        for file in files.iter().take(MAX_CONFLICT_FILES) {
            let text = match self.workspace.file_at(clone, onto, file).await {
                Ok(Some(text)) => codemill_core::text::clip(&text, CONFLICT_FILE_CHARS),
                Ok(None) => "(deleted there)".into(),
                Err(e) => format!("(could not be read: {e})"),
            };
            body.push_str(&format!("\n`{file}`:\n```\n{}\n```\n", text.trim_end()));
        }
        body
    }

    /// Take an entry out of the queue with the reason on its ticket; its PR stays open. With
    /// `fix`, the ticket's job runs a fix round on its branch (as for PR feedback) with that
    /// text as the feedback, and is queued again by a person once it ends.
    pub(super) async fn eject(
        &self,
        entry: &MergeEntry,
        reason: &str,
        fix: Option<String>,
    ) -> Result<(), RunError> {
        let mut fixing = false;
        // A sub-task of a stack is fixed from its parent's stack, not by a round on its branch.
        let above = match entry.ticket.parse::<TicketKey>() {
            Ok(key) => self.stack_above(&key).await?,
            Err(_) => None,
        };
        let fix = if above.is_some() { None } else { fix };
        if let Ok(key) = entry.ticket.parse::<TicketKey>() {
            let id = format!("merge-queue:{}", entry.id);
            if let Some(body) = fix {
                let feedback = Feedback {
                    id: id.clone(),
                    kind: FeedbackKind::CheckFailed,
                    author: "merge queue".into(),
                    body,
                    path: None,
                    line: None,
                    reply_to: None,
                };
                inbound::record(
                    &self.store,
                    &key,
                    JobEvent::FeedbackReceived {
                        feedback: vec![feedback],
                    },
                )
                .await?;
            }
            // Decided from the job, not from this call: a retry after a crash records nothing
            // new but the round still runs.
            fixing = jobs::latest(&self.store, &key)
                .await?
                .is_some_and(|l| l.state.feedback_seen.contains(&id));
            let next = if fixing {
                format!(
                    "A fix round runs on the branch now (a worker, or `codemill run {key}`); once \
                     it ends, queue it again with `codemill merge {key}`."
                )
            } else {
                format!(
                    "Once the branch is fixed and its proposal approved again, queue it with \
                     `codemill merge {key}`."
                )
            };
            let body = format!(
                "**Taken out of the merge queue** for `{}`: {reason}\n\nNothing was merged. {next}",
                entry.target
            );
            let marker = format!("codemill:merge-ejected:{}", entry.id);
            self.store
                .add_comment(&key, "codemill", Some(&marker), &body)
                .await?;
            // On an outside forge the PR says it too (once, by marker).
            let forge =
                self.workspace
                    .forge(&entry.project)
                    .map_err(|message| RunError::Outside {
                        project: entry.project.clone(),
                        message,
                    })?;
            if let Some(forge) = forge {
                let number = self.forge_pr_number(entry).await?;
                forge
                    .reply(number, ReplyTo::Conversation, &marker, &body)
                    .await
                    .map_err(|e| RunError::Outside {
                        project: entry.project.clone(),
                        message: e.to_string(),
                    })?;
            }
        }
        self.store
            .settle_merge(
                entry.id,
                MergeState::Ejected,
                Some(reason),
                None,
                Utc::now(),
            )
            .await?;
        self.emit(Progress::Info {
            message: format!(
                "{}: taken out of the merge queue: {reason}{}",
                entry.ticket,
                if fixing {
                    "; a fix round starts on its branch"
                } else {
                    ""
                }
            ),
        });
        // The sub-tasks above it in its stack contain it: they cannot land without it.
        if let Some(above) = above {
            let queued = self
                .store
                .merge_queue(&entry.project, &entry.target)
                .await?;
            for later in queued.iter().filter(|e| {
                e.state == MergeState::Queued && above.iter().any(|k| k.to_string() == e.ticket)
            }) {
                let why = format!(
                    "the sub-task below it in its stack ({}) was taken out of the queue",
                    entry.ticket
                );
                Box::pin(self.eject(later, &why, None)).await?;
            }
        }
        Ok(())
    }

    /// For a sub-task of a stack, the sub-tasks above it (they contain its commit); `None` for
    /// a ticket that is no sub-task.
    async fn stack_above(&self, key: &TicketKey) -> Result<Option<Vec<TicketKey>>, RunError> {
        let Some(sub) = jobs::latest(&self.store, key)
            .await?
            .and_then(|l| l.state.subtask)
        else {
            return Ok(None);
        };
        let Some(parent) = jobs::latest(&self.store, &sub.parent_ticket).await? else {
            return Ok(Some(Vec::new()));
        };
        let stack = &parent.state.stack;
        let at = stack.iter().position(|e| &e.ticket == key);
        Ok(Some(match at {
            Some(i) => stack[i + 1..].iter().map(|e| e.ticket.clone()).collect(),
            None => Vec::new(),
        }))
    }
}
