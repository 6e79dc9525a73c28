//! Executing effects. Each one looks before it acts, so running it twice (after a crash) leaves
//! the same result as running it once. Failures the job cannot recover from become
//! `EffectFailed` events; only store and journal problems are errors.

use std::path::{Path, PathBuf};

use codemill_core::config::{RepoPolicy, Retention};
use codemill_core::ids::JobId;
use codemill_core::pipeline::{
    AgentStage, Effect, JobEvent, JobState, NEEDS_INPUT_LABEL, NoteKind, Proposal, TicketStatus,
};
use codemill_core::prompts::RUN_DIR;
use codemill_git::Identity;
use codemill_store::{JournalEntry, Ticket};

use codemill_trackers::{Forge, Tracker};

use crate::agents::Step;
use crate::engine::{RunError, Runner};
use crate::gates::{POLICY_FILE, parse_policy};
use crate::local::{LocalForge, LocalTracker};
use crate::notes;
use crate::progress::Progress;

pub(crate) fn failed(effect: &Effect, error: impl std::fmt::Display) -> JobEvent {
    JobEvent::EffectFailed {
        effect: effect.name(),
        error: error.to_string(),
    }
}

impl Runner {
    pub(crate) fn identity(&self) -> Identity {
        Identity {
            name: self.config.author_name.clone(),
            email: self.config.author_email.clone(),
        }
    }

    pub(crate) async fn execute(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
        ticket: &Ticket,
        effect: &Effect,
    ) -> Result<JobEvent, RunError> {
        Ok(match effect {
            Effect::UpdateTicket { status, note } => {
                self.update_ticket(job, state, *status, *note).await?
            }
            Effect::PrepareWorkspace => match self.remote_git(state).await {
                Ok(git) => self.prepare_workspace(&git, job, state, effect).await,
                Err(e) => return self.outside_failure(state, effect, e),
            },
            Effect::RunAgent {
                stage,
                round,
                resume,
                angle,
            } => {
                self.run_agent(Step {
                    job,
                    state,
                    ticket,
                    effect,
                    stage: *stage,
                    round: *round,
                    resume: resume.clone(),
                    angle: angle.clone(),
                })
                .await?
            }
            Effect::PlanReview { round } => self.plan_review(job, state, effect, *round).await,
            Effect::CreateBacklogTickets => self.create_backlog(job, state, ticket).await?,
            Effect::RunGates { round } => self.gates(job, state, effect, *round).await,
            Effect::Commit => self.commit(job, state, ticket, effect).await,
            Effect::Propose => self.propose(state, journal, ticket, effect).await,
            Effect::Push { commit } => {
                let branch = state.ticket.branch();
                let clone = self.home.clone_dir(state.ticket.project());
                let git = match self.remote_git(state).await {
                    Ok(git) => git,
                    Err(e) => return self.outside_failure(state, effect, e),
                };
                match git.push(&clone, commit, &branch).await {
                    Ok(()) => JobEvent::Pushed {
                        commit: commit.clone(),
                        branch,
                    },
                    Err(e) => failed(effect, e),
                }
            }
            Effect::RecordPr { commit } => self.record_pr(state, ticket, commit).await?,
            Effect::SnapshotWip => self.snapshot(job, state, effect).await,
            Effect::Cleanup { stopped } => self.cleanup(state, *stopped).await,
            Effect::PrepareFeedback { .. } => match self.remote_git(state).await {
                Ok(git) => self.prepare_feedback(&git, state, effect).await,
                Err(e) => return self.outside_failure(state, effect, e),
            },
            Effect::ReplyFeedback { round } => {
                self.reply_feedback(job, state, journal, effect, *round)
                    .await?
            }
        })
    }

    /// The project's outside clients; an unusable setting (missing credential) is the job's
    /// failure, not a crash.
    pub(crate) fn outside(&self, state: &JobState) -> Result<crate::outside::Outside, String> {
        match self.config.projects.get(state.ticket.project()) {
            Some(p) => self.outside.get(p),
            None => Ok(crate::outside::Outside::default()),
        }
    }

    /// A failure of an outside system: transient ones (rate limits, 5xx, timeouts) leave the
    /// effect to be retried later by the queue; others fail the effect.
    pub(crate) fn outside_failure(
        &self,
        state: &JobState,
        effect: &Effect,
        e: codemill_trackers::Error,
    ) -> Result<JobEvent, RunError> {
        if e.is_transient() {
            Err(RunError::Outside {
                project: state.ticket.project().to_string(),
                message: e.to_string(),
            })
        } else {
            Ok(failed(effect, e))
        }
    }

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

    async fn update_ticket(
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

    /// Git for talking to the project's remote: with an HTTPS remote on GitHub, every fetch and
    /// push carries the forge's token (or the App's installation token) as an HTTP header that
    /// git reads from its environment — never in a URL, an argument or a config file.
    pub(crate) async fn remote_git(
        &self,
        state: &JobState,
    ) -> Result<codemill_git::Git, codemill_trackers::Error> {
        let Some(project) = self.config.projects.get(state.ticket.project()) else {
            return Ok(self.git.clone());
        };
        let Some(prefix) = http_prefix(&project.repo) else {
            return Ok(self.git.clone());
        };
        let outside = self
            .outside(state)
            .map_err(codemill_trackers::Error::Config)?;
        let Some(forge) = outside.forge else {
            return Ok(self.git.clone());
        };
        let token = forge.git_token().await?;
        Ok(self
            .git
            .with_http_auth(Some(codemill_git::HttpAuth::github_token(&prefix, &token))))
    }

    async fn prepare_workspace(
        &self,
        git: &codemill_git::Git,
        job: JobId,
        state: &JobState,
        effect: &Effect,
    ) -> JobEvent {
        let key = &state.ticket;
        let clone = match self.fetched_clone(git, key).await {
            Ok(clone) => clone,
            Err(e) => return failed(effect, e),
        };
        let default_branch = match git.default_branch(&clone).await {
            Ok(b) => b,
            Err(e) => return failed(effect, e),
        };
        let start = format!("refs/remotes/origin/{default_branch}");
        let base = match git.rev_parse(&clone, &start).await {
            Ok(Some(sha)) => sha,
            Ok(None) => {
                return failed(
                    effect,
                    format!("the repository has no branch {default_branch}"),
                );
            }
            Err(e) => return failed(effect, e),
        };
        let worktree = match self
            .fresh_worktree(git, &clone, key, &key.branch(), &base, "a new job")
            .await
        {
            Ok(worktree) => worktree,
            Err(e) => return failed(effect, e),
        };
        if let Err(e) = self.run_prepare(job, &clone, &base, &worktree).await {
            return failed(effect, e);
        }
        JobEvent::WorkspaceReady {
            worktree: worktree.display().to_string(),
            branch: key.branch(),
            base_commit: base,
            default_branch,
        }
    }

    pub(crate) fn worktree(&self, state: &JobState) -> Option<PathBuf> {
        state
            .worktree
            .as_ref()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
    }

    /// The policy once a workspace exists; before that (readiness) there is none to read.
    pub(crate) async fn policy_if_prepared(
        &self,
        state: &JobState,
    ) -> Result<Option<RepoPolicy>, String> {
        if state.base_commit.is_none() {
            return Ok(None);
        }
        self.policy(state).await
    }

    /// The repository's policy as of the job's base commit: the agent cannot change it mid-job.
    pub(crate) async fn policy(&self, state: &JobState) -> Result<Option<RepoPolicy>, String> {
        let clone = self.home.clone_dir(state.ticket.project());
        let base = state
            .base_commit
            .clone()
            .ok_or("the job has no base commit")?;
        let key = (state.ticket.project().to_string(), base.clone());
        if let Some(p) = self.policies.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(p);
        }
        let text = self
            .git
            .read_file_at(&clone, &base, POLICY_FILE)
            .await
            .map_err(|e| e.to_string())?;
        let policy = parse_policy(text.as_deref()).map_err(|e| e.to_string())?;
        if let Ok(mut m) = self.policies.lock() {
            m.insert(key, policy.clone());
        }
        Ok(policy)
    }

    async fn commit(
        &self,
        job: JobId,
        state: &JobState,
        ticket: &Ticket,
        effect: &Effect,
    ) -> JobEvent {
        let Some(worktree) = self.worktree(state) else {
            return failed(effect, "the ticket's worktree is missing");
        };
        let base = state.base_commit.clone().unwrap_or_default();
        let links = crate::links::outside_links(&worktree);
        if !links.is_empty() {
            let listed: Vec<String> = links
                .iter()
                .map(|(link, target)| format!("{link} -> {target}"))
                .collect();
            return failed(
                effect,
                format!(
                    "refused to commit symlinks that point outside the worktree: {} (remove \
                     them or point them inside the repository)",
                    listed.join(", ")
                ),
            );
        }
        let message = if state.stage == codemill_core::pipeline::Stage::FeedbackCommit {
            format!(
                "{}: address pull request feedback (round {})\n\nCodemill-Job: {job}\n",
                ticket.key, state.feedback_round
            )
        } else {
            format!("{}: {}\n\nCodemill-Job: {job}\n", ticket.key, ticket.title)
        };
        match self
            .git
            .commit_all(&worktree, &message, &self.identity())
            .await
        {
            Ok(Some(sha)) => JobEvent::Committed { commit: sha },
            Ok(None) => {
                // Nothing to commit: either the commit exists from a run that crashed after it, or no change.
                match self.git.rev_parse(&worktree, "HEAD").await {
                    Ok(Some(head)) if head != base => JobEvent::Committed { commit: head },
                    Ok(_) => failed(effect, "the agent made no changes to commit"),
                    Err(e) => failed(effect, e),
                }
            }
            Err(e) => failed(effect, e),
        }
    }

    async fn propose(
        &self,
        state: &JobState,
        journal: &[JournalEntry],
        ticket: &Ticket,
        effect: &Effect,
    ) -> JobEvent {
        let (Some(worktree), Some(commit)) = (self.worktree(state), state.commit.clone()) else {
            return failed(effect, "the worktree or the commit is missing");
        };
        let base = state.base_commit.clone().unwrap_or_default();
        let diff_stat = match self.git.diff_stat(&worktree, &base, &commit).await {
            Ok(s) => s,
            Err(e) => return failed(effect, e),
        };
        // The summary: what the implementer and each fix round said they did.
        let summary: Vec<String> = journal
            .iter()
            .filter_map(|e| match &e.event {
                JobEvent::AgentFinished {
                    stage: AgentStage::Implement,
                    run,
                    ..
                } => Some(run.summary.clone()),
                JobEvent::AgentFinished {
                    stage: AgentStage::Fix,
                    round,
                    run,
                } => Some(format!("Fix round {round}: {}", run.summary)),
                _ => None,
            })
            .collect();
        JobEvent::Proposed {
            proposal: Proposal {
                commit,
                branch: state.ticket.branch(),
                base: state.default_branch.clone().unwrap_or_default(),
                title: format!("{}: {}", ticket.key, ticket.title),
                summary: summary.join("\n\n"),
                diff_stat,
                findings: state
                    .current_triage()
                    .unwrap_or_default()
                    .iter()
                    .filter(|d| d.bucket != codemill_core::triage::Bucket::FixNow)
                    .map(|d| d.finding.clone())
                    .collect(),
                decisions: state.triage.iter().flat_map(|(_, d)| d.clone()).collect(),
                rounds: state.round,
                usage: state.usage,
                cost_usd: state.cost_usd,
            },
        }
    }

    async fn record_pr(
        &self,
        state: &JobState,
        ticket: &Ticket,
        commit: &str,
    ) -> Result<JobEvent, RunError> {
        let branch = state.ticket.branch();
        let base = state.default_branch.clone().unwrap_or_default();
        let (title, body) = match &state.proposal {
            Some(p) => {
                let mut body = format!(
                    "{}\n\nTicket: {}\n\n```\n{}\n```\n\nTokens: {}. Cost: ${:.4}. Fix rounds: {}.\n",
                    p.summary.trim(),
                    ticket.key,
                    p.diff_stat.trim_end(),
                    p.usage.total(),
                    p.cost_usd,
                    p.rounds
                );
                body.push_str(&notes::triage_summary(state));
                (p.title.clone(), body)
            }
            None => (format!("{}: {}", ticket.key, ticket.title), String::new()),
        };
        let body = match &ticket.url {
            Some(url) => body.replacen(
                &format!("Ticket: {}", ticket.key),
                &format!(
                    "Ticket: [{}]({url})",
                    ticket
                        .external
                        .as_deref()
                        .unwrap_or(&ticket.key.to_string())
                ),
                1,
            ),
            None => body,
        };
        let effect = Effect::RecordPr {
            commit: commit.to_string(),
        };
        let outside = match self.outside(state) {
            Ok(o) => o,
            Err(e) => return Ok(failed(&effect, e)),
        };
        let mut remote = None;
        if let Some(forge) = outside.forge.as_deref() {
            let draft = match self
                .config
                .projects
                .get(state.ticket.project())
                .map(|p| &p.forge)
            {
                Some(codemill_core::config::ForgeSettings::Github(g)) => g.draft,
                _ => true,
            };
            match forge
                .open_pr(&codemill_trackers::PrRequest {
                    head: &branch,
                    base: &base,
                    title: &title,
                    body: &body,
                    draft,
                })
                .await
            {
                Ok(pr) => remote = Some(pr),
                Err(e) => return self.outside_failure(state, &effect, e),
            }
        }
        // The local forge's record: the PR itself for a local project, its record otherwise.
        let local = LocalForge::new(self.store.clone(), state.ticket.clone(), commit.to_string());
        let pr = match local
            .open_pr(&codemill_trackers::PrRequest {
                head: &branch,
                base: &base,
                title: &title,
                body: &body,
                draft: false,
            })
            .await
        {
            Ok(pr) => pr,
            Err(e) => return self.outside_failure(state, &effect, e),
        };
        Ok(JobEvent::PrRecorded {
            pr: pr.number as i64,
            number: remote.as_ref().map(|r| r.number),
            url: remote.map(|r| r.url),
        })
    }

    /// The project's shared clone, cloned or fetched from its remote now.
    async fn fetched_clone(
        &self,
        git: &codemill_git::Git,
        key: &codemill_core::ids::TicketKey,
    ) -> Result<PathBuf, String> {
        let project = self
            .config
            .projects
            .get(key.project())
            .ok_or_else(|| format!("project {} is not registered", key.project()))?;
        let clone = self.home.clone_dir(key.project());
        git.ensure_clone_and_fetch(&project.repo, &clone)
            .await
            .map_err(|e| e.to_string())?;
        Ok(clone)
    }

    /// A fresh worktree of `key` on `branch` at `start`, codemill's run directory excluded.
    /// Work left in an earlier worktree is kept on the WIP ref before it is removed.
    async fn fresh_worktree(
        &self,
        git: &codemill_git::Git,
        clone: &Path,
        key: &codemill_core::ids::TicketKey,
        branch: &str,
        start: &str,
        before: &str,
    ) -> Result<PathBuf, String> {
        exclude_run_dir(clone).map_err(|e| e.to_string())?;
        let worktree = self.home.worktree(key);
        if worktree.exists() {
            let msg = format!("codemill: work left in the worktree of {key} before {before}");
            git.snapshot_wip(&worktree, &key.wip_ref(), &msg, &self.identity())
                .await
                .map_err(|e| e.to_string())?;
            git.remove_worktree(clone, &worktree)
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(parent) = worktree.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        git.add_worktree(clone, &worktree, branch, start)
            .await
            .map_err(|e| e.to_string())?;
        Ok(worktree)
    }

    /// A fresh worktree on the PR branch as the remote has it now (a person may have pushed).
    async fn prepare_feedback(
        &self,
        git: &codemill_git::Git,
        state: &JobState,
        effect: &Effect,
    ) -> JobEvent {
        let key = &state.ticket;
        let clone = match self.fetched_clone(git, key).await {
            Ok(clone) => clone,
            Err(e) => return failed(effect, e),
        };
        let branch = key.branch();
        let head = match self
            .git
            .rev_parse(&clone, &format!("refs/remotes/origin/{branch}"))
            .await
        {
            Ok(Some(sha)) => sha,
            Ok(None) => return failed(effect, format!("the remote has no branch {branch}")),
            Err(e) => return failed(effect, e),
        };
        match self
            .fresh_worktree(git, &clone, key, &branch, &head, "a feedback round")
            .await
        {
            Ok(worktree) => JobEvent::FeedbackWorkspaceReady {
                worktree: worktree.display().to_string(),
                head,
            },
            Err(e) => failed(effect, e),
        }
    }

    /// Answer the round's feedback on the PR: in the thread of each review comment, and once on
    /// the conversation for the rest. Each reply carries a marker, so a retry posts nothing twice.
    async fn reply_feedback(
        &self,
        job: JobId,
        state: &JobState,
        journal: &[JournalEntry],
        effect: &Effect,
        round: u32,
    ) -> Result<JobEvent, RunError> {
        let summary = journal.iter().rev().find_map(|e| match &e.event {
            JobEvent::AgentFinished {
                stage: AgentStage::Fix,
                run,
                ..
            } => Some(run.summary.clone()),
            _ => None,
        });
        let body = notes::feedback_reply(state, summary.as_deref());
        let outside = match self.outside(state) {
            Ok(o) => o,
            Err(e) => return Ok(failed(effect, e)),
        };
        let (Some(forge), Some(number)) = (&outside.forge, state.pr_number) else {
            return Ok(JobEvent::FeedbackReplied { round });
        };
        let mut conversation = false;
        for f in &state.feedback {
            let result = match (&f.kind, &f.reply_to) {
                (codemill_core::pipeline::FeedbackKind::ReviewComment, Some(id)) => {
                    let marker = format!("codemill:{job}:feedback:{round}:{id}");
                    forge
                        .reply(
                            number,
                            codemill_trackers::ReplyTo::ReviewComment(id),
                            &marker,
                            &body,
                        )
                        .await
                }
                _ => {
                    conversation = true;
                    Ok(())
                }
            };
            if let Err(e) = result {
                return self.outside_failure(state, effect, e);
            }
        }
        if conversation {
            let marker = format!("codemill:{job}:feedback:{round}");
            if let Err(e) = forge
                .reply(
                    number,
                    codemill_trackers::ReplyTo::Conversation,
                    &marker,
                    &body,
                )
                .await
            {
                return self.outside_failure(state, effect, e);
            }
        }
        Ok(JobEvent::FeedbackReplied { round })
    }

    async fn snapshot(&self, job: JobId, state: &JobState, effect: &Effect) -> JobEvent {
        let Some(worktree) = self.worktree(state) else {
            return JobEvent::Snapshotted {
                wip_ref: None,
                commit: None,
            };
        };
        let wip_ref = state.ticket.wip_ref();
        let message = format!(
            "codemill WIP for {} (job {job}): {}",
            state.ticket,
            state.reason.as_deref().unwrap_or("stopped")
        );
        match self
            .git
            .snapshot_wip(&worktree, &wip_ref, &message, &self.identity())
            .await
        {
            Ok(Some(sha)) => JobEvent::Snapshotted {
                wip_ref: Some(wip_ref),
                commit: Some(sha),
            },
            Ok(None) => JobEvent::Snapshotted {
                wip_ref: None,
                commit: None,
            },
            Err(e) => failed(effect, e),
        }
    }

    async fn cleanup(&self, state: &JobState, stopped: bool) -> JobEvent {
        let keep = match self.config.worktree_retention {
            Retention::Remove => false,
            Retention::KeepFailed => stopped,
            Retention::Keep => true,
        };
        let Some(worktree) = self.worktree(state) else {
            return JobEvent::CleanedUp {
                worktree_removed: false,
            };
        };
        if keep {
            return JobEvent::CleanedUp {
                worktree_removed: false,
            };
        }
        let clone = self.home.clone_dir(state.ticket.project());
        match self.git.remove_worktree(&clone, &worktree).await {
            Ok(()) => JobEvent::CleanedUp {
                worktree_removed: true,
            },
            Err(e) => {
                // Leaving a directory behind is not worth stopping a finished job for.
                self.emit(Progress::Info {
                    message: format!("could not remove worktree {}: {e}", worktree.display()),
                });
                JobEvent::CleanedUp {
                    worktree_removed: false,
                }
            }
        }
    }
}

/// `scheme://host/` of an HTTP(S) remote URL: the prefix git scopes the auth header to.
fn http_prefix(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| url.strip_prefix("http://").map(|r| ("http", r)))?;
    let host = rest.1.split('/').next().filter(|h| !h.is_empty())?;
    // Credentials written into the URL are the user's own choice; leave that remote alone.
    if host.contains('@') {
        return None;
    }
    Some(format!("{}://{host}/", rest.0))
}

/// Keep codemill's run directory out of every commit of every worktree of a clone.
fn exclude_run_dir(clone: &Path) -> std::io::Result<()> {
    let info = clone.join("info");
    std::fs::create_dir_all(&info)?;
    let file = info.join("exclude");
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    let line = format!("/{RUN_DIR}/");
    if current.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    std::fs::write(file, text)
}

#[cfg(test)]
mod tests {
    use super::http_prefix;

    #[test]
    fn http_prefixes_of_remotes() {
        assert_eq!(
            http_prefix("https://github.com/acme/shop.git").as_deref(),
            Some("https://github.com/")
        );
        assert_eq!(
            http_prefix("http://127.0.0.1:8080/r.git").as_deref(),
            Some("http://127.0.0.1:8080/")
        );
        assert_eq!(http_prefix("git@github.com:acme/shop.git"), None);
        assert_eq!(http_prefix("/srv/git/shop.git"), None);
        assert_eq!(
            http_prefix("https://user:pw@github.com/acme/shop.git"),
            None
        );
    }
}
