//! Split tickets. A parent job whose plan is a graph of sub-tasks makes one linked ticket and
//! one job per sub-task (by marker and through the queue, so a retry makes nothing twice),
//! starting each once the sub-tasks it depends on are ready; a sub-job reports how it ended
//! into its parent's journal (one transaction with requeueing the parent); when all are ready
//! the parent stacks their commits in dependency order — reproducibly, so a sub-task started on
//! the same stack has the same commits under it — and later pushes one branch per sub-task.
//! When the parent stops, its sub-jobs stop too.

use chrono::Utc;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{Effect, JobEvent, JobState, Stage};
use codemill_core::subtasks::{self, Below, Child, ChildResult, StackEntry, SubtaskOf};
use codemill_git::{Git, Picked};
use codemill_store::{Enqueued, Lease, NewJob};

use crate::control::{self, JobOptions};
use crate::effects::failed;
use crate::engine::Runner;
use crate::error::RunError;
use crate::jobs;
use crate::progress::Progress;

impl Runner {
    /// Make the tickets of the sub-tasks `ids` (found again by marker) and queue their jobs,
    /// each knowing the commits of the sub-tasks it depends on.
    pub(crate) async fn start_subtasks(
        &self,
        job: JobId,
        state: &JobState,
        parent: &codemill_store::Ticket,
        ids: &[String],
        effect: &Effect,
    ) -> Result<JobEvent, RunError> {
        let Some(checked) = state.checked_graph() else {
            return Ok(failed(effect, "the job has no sub-task graph"));
        };
        let Some(base_commit) = state.base_commit.clone() else {
            return Ok(failed(effect, "the job has no base commit"));
        };
        let tasks = &checked.graph.subtasks;
        let total = checked.order.len();
        let options = JobOptions::for_project(&self.config, state.ticket.project());
        let mut children = Vec::new();
        for id in ids {
            let Some(i) = tasks.iter().position(|t| &t.id == id) else {
                return Ok(failed(effect, format!("sub-task {id} is not in the graph")));
            };
            let n = checked.order.iter().position(|&o| o == i).unwrap_or(i) + 1;
            let task = &tasks[i];
            let mut below = Vec::new();
            for j in subtasks::below(&checked, i) {
                let ready = state.children.iter().find_map(|c| match &c.result {
                    Some(ChildResult::Ready { commit, base }) if c.id == tasks[j].id => {
                        Some(Below {
                            job: c.job,
                            commit: commit.clone(),
                            base: base.clone(),
                        })
                    }
                    _ => None,
                });
                match ready {
                    Some(b) => below.push(b),
                    None => {
                        return Ok(failed(
                            effect,
                            format!(
                                "sub-task {id} depends on {}, which is not ready",
                                tasks[j].id
                            ),
                        ));
                    }
                }
            }
            let marker = format!("subtask:{job}:{id}");
            let title = format!("{} [{n}/{total}]", task.title.trim());
            let body = subtasks::ticket_body(&state.ticket.to_string(), task, n, total);
            let key = match self
                .announcer
                .subtask_ticket(parent, &marker, &title, &body, effect)
                .await?
            {
                Ok(key) => key,
                Err(failed) => return Ok(failed),
            };
            let id_new = JobId::new();
            let mut created = options.created(&key, id_new)?;
            if let JobEvent::Created { subtask, .. } = &mut created {
                *subtask = Some(SubtaskOf {
                    parent: job,
                    parent_ticket: state.ticket.clone(),
                    id: id.clone(),
                    n: n as u32,
                    base_commit: base_commit.clone(),
                    below,
                });
            }
            let queued = self
                .store
                .enqueue(
                    &NewJob {
                        id: id_new,
                        ticket: &key,
                        created: &created,
                        max_attempts: control::MAX_ATTEMPTS,
                    },
                    Utc::now(),
                )
                .await?;
            let child_job = match queued {
                Enqueued::Created(j) | Enqueued::Existing(j) => j,
            };
            self.emit(Progress::Info {
                message: format!(
                    "{}: sub-task {id} ({}) queued as {} (job {})",
                    state.ticket,
                    task.title.trim(),
                    key,
                    child_job.short()
                ),
            });
            children.push(Child {
                id: id.clone(),
                ticket: key,
                job: child_job,
                result: None,
                reworks: 0,
            });
        }
        Ok(JobEvent::SubtasksStarted { children })
    }

    /// Tell the parent how this sub-job ended, unless it knows already (or is gone).
    pub(crate) async fn report_to_parent(&self, state: &JobState) -> Result<JobEvent, RunError> {
        let Some(sub) = &state.subtask else {
            return Ok(JobEvent::ParentTold {
                parent: state.ticket.clone(),
            });
        };
        let told = JobEvent::ParentTold {
            parent: sub.parent_ticket.clone(),
        };
        let result = match (&state.stop, &state.commit) {
            (None, Some(commit)) => ChildResult::Ready {
                commit: commit.clone(),
                base: state.base_commit.clone(),
            },
            _ => ChildResult::Stopped {
                status: match state.stop {
                    Some(codemill_core::pipeline::StopKind::Rejected) => "rejected",
                    Some(codemill_core::pipeline::StopKind::Cancelled) => "cancelled",
                    _ => "needs_attention",
                }
                .to_string(),
                reason: state.reason.clone().unwrap_or_else(|| "it stopped".into()),
            },
        };
        let Some(parent) = jobs::latest(&self.store, &sub.parent_ticket).await? else {
            return Ok(told);
        };
        let known = parent
            .state
            .children
            .iter()
            .any(|c| c.id == sub.id && c.result.as_ref() == Some(&result));
        if parent.job != sub.parent || parent.state.stage.is_terminal() || known {
            return Ok(told);
        }
        let child_job = jobs::latest(&self.store, &state.ticket)
            .await?
            .map(|l| l.job);
        let event = JobEvent::SubtaskFinished {
            id: sub.id.clone(),
            result,
            job: child_job,
        };
        let decided = jobs::decide(
            &self.store,
            &sub.parent_ticket,
            "report",
            jobs::ACTIVE,
            |latest| {
                if latest.job != sub.parent {
                    return Err(RunError::WrongState {
                        ticket: sub.parent_ticket.clone(),
                        message: "its job changed".into(),
                    });
                }
                Ok(event.clone())
            },
        )
        .await;
        match decided {
            Ok(_) | Err(RunError::WrongState { .. }) => Ok(told),
            Err(e) => Err(e),
        }
    }

    /// Stack the sub-tasks' commits on the parent's base in dependency order, and keep the
    /// stack with the job so any worker can push it.
    pub(crate) async fn build_stack(
        &self,
        git: &Git,
        job: JobId,
        state: &JobState,
        lease: &Lease,
        effect: &Effect,
    ) -> Result<JobEvent, RunError> {
        let (Some(checked), Some(base), Some(default_branch)) = (
            state.checked_graph(),
            state.base_commit.clone(),
            state.default_branch.clone(),
        ) else {
            return Ok(failed(effect, "the job has no sub-task graph or base"));
        };
        let clone = match self.workspace.fetched_clone(git, &state.ticket).await {
            Ok(c) => c,
            Err(e) => return Ok(failed(effect, e)),
        };
        let tasks = &checked.graph.subtasks;
        let mut onto = base.clone();
        let mut below = default_branch;
        let mut entries = Vec::new();
        for (n, &i) in checked.order.iter().enumerate() {
            let task = &tasks[i];
            let ready = state.children.iter().find_map(|c| match &c.result {
                Some(ChildResult::Ready { commit, base }) if c.id == task.id => {
                    Some((c, commit, base))
                }
                _ => None,
            });
            let Some((child, commit, from)) = ready else {
                return Ok(failed(effect, format!("sub-task {} is not ready", task.id)));
            };
            if let Err(e) = self.workspace.import(child.job, &clone).await? {
                return Ok(failed(effect, format!("sub-task {}: {e}", task.id)));
            }
            let stacked = match self.git.pick(&clone, &onto, commit, from.as_deref()).await {
                Ok(Picked::Commit(c)) => c,
                Ok(Picked::Conflicts(files)) => {
                    return Ok(failed(
                        effect,
                        format!(
                            "sub-task {} ({}) does not apply on top of the ones below it: {} \
                             changed on both sides",
                            task.id,
                            child.ticket,
                            files.join(", ")
                        ),
                    ));
                }
                Err(e) => return Ok(failed(effect, e)),
            };
            let branch = subtasks::branch(&state.ticket.to_string(), n + 1, &task.title);
            entries.push(StackEntry {
                id: task.id.clone(),
                title: task.title.trim().to_string(),
                ticket: child.ticket.clone(),
                job: child.job,
                commit: stacked.clone(),
                branch: branch.clone(),
                base: below,
            });
            below = branch;
            onto = stacked;
        }
        if let Err(e) = self
            .workspace
            .keep_commit(job, lease, state, &onto, &base)
            .await?
        {
            return Ok(failed(effect, e));
        }
        // The parent's worktree is still at the base: the next step rebuilds it at the top.
        self.workspace.forget(&state.ticket);
        Ok(JobEvent::Stacked {
            entries,
            commit: onto,
        })
    }

    /// Send sub-task `id`, which a person rejected from the proposed stack, back for its fix
    /// round — unless its journal shows it was sent already (as often as the parent asked).
    pub(crate) async fn rework_subtask(
        &self,
        state: &JobState,
        id: &str,
        effect: &Effect,
    ) -> Result<JobEvent, RunError> {
        let sent = JobEvent::SubtaskReworkSent { id: id.to_string() };
        let (Some(child), Some(rework)) = (
            state.children.iter().find(|c| c.id == id),
            state.rework.iter().find(|r| r.id == id),
        ) else {
            return Ok(failed(
                effect,
                format!("sub-task {id} has no rework to send"),
            ));
        };
        let Some(latest) = jobs::latest(&self.store, &child.ticket).await? else {
            return Ok(failed(effect, format!("sub-task {id} has no job")));
        };
        let told = latest
            .journal
            .iter()
            .filter(|e| matches!(e.event, JobEvent::Reworked { .. }))
            .count() as u32;
        if latest.job != child.job || told >= child.reworks {
            return Ok(sent);
        }
        let event = JobEvent::Reworked {
            reason: rework.reason.clone(),
            by: rework.by.clone(),
        };
        match jobs::decide(&self.store, &child.ticket, "rework", jobs::WAITING, |_| {
            Ok(event.clone())
        })
        .await
        {
            Ok(_) => Ok(sent),
            Err(RunError::WrongState { message, .. }) => Ok(failed(
                effect,
                format!("sub-task {id} ({}) cannot go back: {message}", child.ticket),
            )),
            Err(e) => Err(e),
        }
    }

    /// Push every branch of the approved stack, bottom first.
    pub(crate) async fn push_stack(
        &self,
        git: &Git,
        state: &JobState,
        effect: &Effect,
    ) -> Result<JobEvent, RunError> {
        let clone = self.home.clone_dir(state.ticket.project());
        for entry in &state.stack {
            if let Err(e) = git.push(&clone, &entry.commit, &entry.branch).await {
                return Ok(failed(effect, format!("{}: {e}", entry.branch)));
            }
        }
        let top = state.stack.last();
        Ok(JobEvent::Pushed {
            commit: top.map(|e| e.commit.clone()).unwrap_or_default(),
            branch: top.map(|e| e.branch.clone()).unwrap_or_default(),
        })
    }

    /// The parent stopped: sub-jobs waiting for it are rejected, running ones cancelled, each
    /// with the reason.
    pub(crate) async fn stop_children(&self, job: JobId, state: &JobState) -> Result<(), RunError> {
        let why = format!(
            "its parent {} stopped: {}",
            state.ticket,
            state.reason.as_deref().unwrap_or("stopped")
        );
        let by = format!("codemill ({})", state.ticket);
        for child in &state.children {
            let Some(latest) = jobs::latest(&self.store, &child.ticket).await? else {
                continue;
            };
            // Its latest job is this parent's (the one started, or a retry of it).
            let ours = latest
                .state
                .subtask
                .as_ref()
                .is_some_and(|s| s.parent == job);
            if !ours {
                continue;
            }
            let stopped = if latest.state.stage == Stage::AwaitingApproval {
                control::reject_as(&self.store, &child.ticket, &why, &by, true).await
            } else if latest.state.stage.is_cancellable() {
                control::cancel(&self.store, &child.ticket, &by).await
            } else {
                continue;
            };
            match stopped {
                Ok(_) | Err(RunError::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Tell each sub-job its commit shipped with the parent's stack (it then cleans up and is
    /// done); `prs` holds each entry's PR record, bottom first. A sub-job may still be in its
    /// report step (its result reached the parent, its own journal not yet): it is told too, so
    /// none is left waiting for an approval that already happened.
    pub(crate) async fn ship_children(
        &self,
        state: &JobState,
        prs: &[crate::announcer::StackPr],
    ) -> Result<(), RunError> {
        for (entry, pr) in state.stack.iter().zip(prs) {
            let Some(latest) = jobs::latest(&self.store, &entry.ticket).await? else {
                continue;
            };
            // Ready, or still telling the parent so (perhaps on a worker that died doing it).
            let waiting = matches!(
                latest.state.stage,
                Stage::AwaitingApproval | Stage::ReportToParent
            );
            if latest.job != entry.job || !waiting {
                continue;
            }
            let event = JobEvent::ShippedWithParent {
                parent: state.ticket.clone(),
                pr: pr.record,
                branch: entry.branch.clone(),
                number: pr.number,
                url: pr.url.clone(),
            };
            // A worker still reporting is fenced off; the sub-job goes on from the shipped state.
            let decided = jobs::decide(&self.store, &entry.ticket, "ship", jobs::ACTIVE, |_| {
                Ok(event.clone())
            })
            .await;
            match decided {
                Ok(_) | Err(RunError::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Used by the merge queue: the tickets of a parent's stack, bottom first.
pub(crate) fn stack_tickets(state: &JobState) -> Vec<TicketKey> {
    state.stack.iter().map(|e| e.ticket.clone()).collect()
}
