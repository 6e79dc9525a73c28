//! The job's workspace: the project's shared clone and the ticket's worktree in the home (fresh
//! for a job, or at a PR's head for a feedback round), the repository's policy as of the base
//! commit, the commit, the push, WIP snapshots and cleanup. Only git and the home's paths; it
//! reaches a project's forge only for the token git sends to an HTTPS remote.

mod checkout;
mod portable;
mod queue;
mod review;

use portable::BASE;
pub(crate) use portable::Content;
pub(crate) use queue::QueueChecks;

use std::path::{Path, PathBuf};

use codemill_core::config::{GateSpec, RepoPolicy, Retention};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{Effect, JobEvent, JobState, Stage};
use codemill_core::prompts::RUN_DIR;
use codemill_git::{Git, Identity};
use codemill_store::{Lease, Store, StoreError, Ticket};

use crate::effects::failed;
use crate::gates::{POLICY_FILE, gates_from, parse_policy};
use crate::home::Home;
use crate::outside::Projects;
use crate::progress::{Emitter, Progress};

/// Repository policies by (project, base commit): a job's policy never changes.
pub(crate) type PolicyCache = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<(String, String), Option<RepoPolicy>>>,
>;

/// A fresh worktree for a new job, before its prepare steps ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    pub clone: PathBuf,
    pub worktree: PathBuf,
    pub branch: String,
    pub base: String,
    pub default_branch: String,
}

impl Prepared {
    pub(crate) fn event(self, key: &TicketKey) -> JobEvent {
        JobEvent::WorkspaceReady {
            worktree: relative_worktree(key),
            branch: self.branch,
            base_commit: self.base,
            default_branch: self.default_branch,
        }
    }
}

/// Git and the home's paths for jobs: where a ticket's work lives and how it is kept.
#[derive(Clone)]
pub(crate) struct Workspace {
    home: Home,
    store: Store,
    git: Git,
    projects: Projects,
    identity: Identity,
    retention: Retention,
    policies: PolicyCache,
    progress: Emitter,
}

impl Workspace {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        home: Home,
        store: Store,
        git: Git,
        projects: Projects,
        identity: Identity,
        retention: Retention,
        policies: PolicyCache,
        progress: Emitter,
    ) -> Workspace {
        Workspace {
            home,
            store,
            git,
            projects,
            identity,
            retention,
            policies,
            progress,
        }
    }

    /// Git for talking to the project's remote: with an HTTPS remote on GitHub, every fetch and
    /// push carries the forge's token (or the App's installation token) as an HTTP header that
    /// git reads from its environment — never in a URL, an argument or a config file.
    pub(crate) async fn remote_git(&self, project: &str) -> Result<Git, codemill_trackers::Error> {
        let Some(settings) = self.projects.get(project) else {
            return Ok(self.git.clone());
        };
        let Some(prefix) = http_prefix(&settings.repo) else {
            return Ok(self.git.clone());
        };
        let outside = self
            .projects
            .outside(project)
            .map_err(codemill_trackers::Error::Config)?;
        let Some(forge) = outside.forge else {
            return Ok(self.git.clone());
        };
        let auth = forge.git_auth(&prefix).await?;
        Ok(self.git.with_http_auth(Some(auth)))
    }

    /// The project's clone fetched now and a fresh worktree of the ticket's branch at the tip of
    /// the remote's default branch: the base every later diff and policy read refers to.
    pub(crate) async fn prepare(&self, git: &Git, key: &TicketKey) -> Result<Prepared, String> {
        let (clone, default_branch, base) = self.remote_tip(git, key).await?;
        let branch = key.branch();
        let worktree = self
            .fresh_worktree(git, &clone, key, &branch, &base, "a new job")
            .await?;
        Ok(Prepared {
            clone,
            worktree,
            branch,
            base,
            default_branch,
        })
    }

    /// A sub-job's worktree: the parent's base with the commits of the sub-tasks it depends on
    /// stacked on it (as the parent will stack them), kept with the job as a bundle so any
    /// worker can rebuild it.
    pub(crate) async fn prepare_subtask(
        &self,
        git: &Git,
        job: JobId,
        lease: &Lease,
        key: &TicketKey,
        sub: &codemill_core::subtasks::SubtaskOf,
    ) -> Result<Result<Prepared, String>, StoreError> {
        let clone = match self.fetched_clone(git, key).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let default_branch = match git.default_branch(&clone).await {
            Ok(b) => b,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut onto = sub.base_commit.clone();
        for below in &sub.below {
            if let Err(e) = self.import(below.job, &clone).await? {
                return Ok(Err(e));
            }
            match self
                .git
                .pick(&clone, &onto, &below.commit, below.base.as_deref())
                .await
            {
                Ok(codemill_git::Picked::Commit(c)) => onto = c,
                Ok(codemill_git::Picked::Conflicts(files)) => {
                    return Ok(Err(format!(
                        "the sub-tasks it depends on do not stack: {} changed on both sides",
                        files.join(", ")
                    )));
                }
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        if onto != sub.base_commit {
            let refname = format!("refs/codemill/jobs/{job}/base");
            let body = match self
                .git
                .bundle(&clone, &refname, &onto, &sub.base_commit)
                .await
            {
                Ok(b) => b,
                Err(e) => return Ok(Err(e.to_string())),
            };
            self.store
                .put_artifact(lease, BASE, &body, Some(&onto), chrono::Utc::now())
                .await?;
        }
        let branch = key.branch();
        let worktree = match self
            .fresh_worktree(git, &clone, key, &branch, &onto, "a new job")
            .await
        {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(Prepared {
            clone,
            worktree,
            branch,
            base: onto,
            default_branch,
        }))
    }

    /// The repository's `[[prepare]]` steps as of the trusted base commit.
    pub(crate) async fn prepare_steps(
        &self,
        clone: &Path,
        base: &str,
    ) -> Result<Vec<GateSpec>, String> {
        let text = self
            .git
            .read_file_at(clone, base, POLICY_FILE)
            .await
            .map_err(|e| e.to_string())?;
        crate::gates::prepare_steps(text.as_deref())
    }

    /// After the job's pull request was merged on an outside forge: the files the job changed
    /// (base to its commit) are checked again at the default branch's new tip. Problems are
    /// only reported.
    pub(crate) async fn recheck_after_outside_merge(
        &self,
        git: &Git,
        state: &codemill_core::pipeline::JobState,
    ) {
        let (Some(base), Some(commit)) = (&state.base_commit, &state.commit) else {
            return;
        };
        match self.remote_tip(git, &state.ticket).await {
            Ok((clone, _, tip)) => {
                self.recheck_merged(&clone, (base, commit), &tip, state.ticket.project())
                    .await
            }
            Err(e) => tracing::warn!(error = %e, "knowledge not re-checked after the merge"),
        }
    }

    /// Entries citing a file that changed between `changed.0` and `changed.1` are checked again
    /// at `tip`; what went stale, or why nothing could be checked, is only reported.
    async fn recheck_merged(&self, clone: &Path, changed: (&str, &str), tip: &str, project: &str) {
        let result = match self.git.changed_files(clone, changed.0, changed.1).await {
            Ok(files) => {
                crate::knowledge::recheck(&self.store, &self.git, clone, tip, project, &files).await
            }
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(stale) => {
                for (id, why) in stale {
                    tracing::info!(entry = id, %why, "knowledge entry is stale after the merge");
                }
            }
            Err(e) => tracing::warn!(error = %e, "knowledge not re-checked after the merge"),
        }
    }

    /// When a proposal is approved (before its push): the durable facts of the job's research
    /// notes become `inferred` knowledge citing their files at `commit`, which the project's
    /// clone has (see `ensure_commit`). Never fails the push: problems are reported.
    pub(crate) async fn learn_from_approval(
        &self,
        job: codemill_core::ids::JobId,
        state: &codemill_core::pipeline::JobState,
        commit: &str,
    ) {
        let Some(name) = &state.research_artifact else {
            return;
        };
        let notes = match self.store.artifact(job, name).await {
            Ok(Some(kept)) => String::from_utf8_lossy(&kept.body).into_owned(),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "research notes not read for knowledge");
                return;
            }
        };
        let clone = self.home.clone_dir(state.ticket.project());
        match crate::knowledge::learn(
            &self.store,
            &self.git,
            &clone,
            commit,
            state.ticket.project(),
            &state.ticket.to_string(),
            &notes,
        )
        .await
        {
            Ok(learned) => {
                for (fact, why) in &learned.rejected {
                    tracing::info!(%fact, %why, "research fact not kept as knowledge");
                }
                if !learned.added.is_empty() {
                    self.progress.emit(crate::progress::Progress::Info {
                        message: format!(
                            "knowledge: {} fact(s) of the research notes kept as inferred entries",
                            learned.added.len()
                        ),
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "knowledge not learned from the approval"),
        }
    }

    /// The outside forge of a project (`github`), `None` for the local forge.
    /// The project's outside forge, if it has one.
    pub(crate) fn forge(
        &self,
        project: &str,
    ) -> Result<Option<std::sync::Arc<crate::outside::AnyForge>>, String> {
        Ok(self.projects.outside(project)?.forge)
    }

    /// Whether the project's tickets live in an outside tracker.
    pub(crate) fn outside_tracker(&self, project: &str) -> bool {
        self.projects
            .get(project)
            .is_some_and(|p| !matches!(p.tracker, codemill_core::config::TrackerSettings::Local))
    }

    /// The repository's policy as the default branch has it now, read before the job's first
    /// model call, so a mistake in it costs nothing: the error names the file, the commit and
    /// the problem. The base commit's policy is what the job uses; this is only a check.
    pub(crate) async fn check_policy(
        &self,
        git: &Git,
        key: &TicketKey,
    ) -> Result<Option<RepoPolicy>, String> {
        let (clone, branch, commit) = self.remote_tip(git, key).await?;
        let text = self
            .git
            .read_file_at(&clone, &commit, POLICY_FILE)
            .await
            .map_err(|e| e.to_string())?;
        parse_policy(text.as_deref()).map_err(|e| {
            format!(
                "{e} (on {branch} at {}): fix it there and run the ticket again; no model was called",
                &commit[..commit.len().min(12)]
            )
        })
    }

    /// This worker's worktree of the job's ticket, if there is one. Only the engine's
    /// `ensure` says whether it holds the job's latest content; the journal names no path.
    pub(crate) fn worktree(&self, state: &JobState) -> Option<PathBuf> {
        state.worktree.as_ref()?;
        Some(self.home.worktree(&state.ticket)).filter(|p| p.is_dir())
    }

    /// Note that this worker's worktree of `key` holds `content` for `job` (it was just made).
    pub(crate) fn mark(&self, job: JobId, key: &TicketKey, head: &str) -> Result<(), String> {
        self.write_marker(
            key,
            job,
            &Content {
                head: head.to_string(),
                snapshot: None,
            },
        )
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
        let base = state.policy_base().ok_or("the job has no base commit")?;
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

    /// The gates of the job: from its policy, else detected from the files of its base commit
    /// (listing the tree is only needed when the policy names none).
    pub(crate) async fn gate_specs(&self, state: &JobState) -> Result<Vec<GateSpec>, String> {
        let policy = self.policy(state).await?;
        let files = if policy.as_ref().is_some_and(|p| !p.gates.is_empty()) {
            Vec::new()
        } else {
            let clone = self.home.clone_dir(state.ticket.project());
            let base = state.policy_base().unwrap_or_default();
            self.git
                .list_files(&clone, &base)
                .await
                .map_err(|e| e.to_string())?
        };
        Ok(gates_from(policy.as_ref(), &files))
    }

    /// The patch of the job's commit against the base (capped), for people to read.
    pub(crate) async fn proposal_diff(&self, state: &JobState) -> Result<String, String> {
        let Some(commit) = state.commit.clone() else {
            return Err("the job has no commit to propose".into());
        };
        let clone = self.home.clone_dir(state.ticket.project());
        let base = state.base_commit.clone().unwrap_or_default();
        self.git
            .diff(&clone, &base, Some(&commit))
            .await
            .map_err(|e| e.to_string())
    }

    /// The job's commit and its diff stat against the base, for the proposal (read in the
    /// clone, which has the commit: see `ensure_commit`).
    pub(crate) async fn diff_stat(&self, state: &JobState) -> Result<(String, String), String> {
        let Some(commit) = state.commit.clone() else {
            return Err("the job has no commit to propose".into());
        };
        let clone = self.home.clone_dir(state.ticket.project());
        let base = state.base_commit.clone().unwrap_or_default();
        let stat = self
            .git
            .diff_stat(&clone, &base, &commit)
            .await
            .map_err(|e| e.to_string())?;
        Ok((commit, stat))
    }

    /// Push the job's commit to the ticket's branch, unless the remote has it already.
    pub(crate) async fn push(
        &self,
        git: &Git,
        state: &JobState,
        commit: &str,
        effect: &Effect,
    ) -> JobEvent {
        let branch = state.pr_branch();
        let clone = self.home.clone_dir(state.ticket.project());
        match git.push(&clone, commit, &branch).await {
            Ok(()) => JobEvent::Pushed {
                commit: commit.to_string(),
                branch,
            },
            Err(e) => failed(effect, e),
        }
    }

    pub(crate) async fn commit(
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
        let message = commit_message(job, state, ticket);
        match self
            .git
            .commit_all(&worktree, &message, &self.identity)
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

    /// The project's shared clone, cloned or fetched from its remote now.
    pub(crate) async fn fetched_clone(
        &self,
        git: &Git,
        key: &TicketKey,
    ) -> Result<PathBuf, String> {
        let project = self
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
    pub(crate) async fn fresh_worktree(
        &self,
        git: &Git,
        clone: &Path,
        key: &TicketKey,
        branch: &str,
        start: &str,
        before: &str,
    ) -> Result<PathBuf, String> {
        exclude_run_dir(clone).map_err(|e| e.to_string())?;
        let worktree = self.home.worktree(key);
        if worktree.exists() {
            let msg = format!("codemill: work left in the worktree of {key} before {before}");
            git.snapshot_wip(&worktree, &key.wip_ref(), &msg, &self.identity)
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
    pub(crate) async fn prepare_feedback(
        &self,
        git: &Git,
        job: JobId,
        state: &JobState,
        effect: &Effect,
    ) -> JobEvent {
        let key = &state.ticket;
        let clone = match self.fetched_clone(git, key).await {
            Ok(clone) => clone,
            Err(e) => return failed(effect, e),
        };
        // The PR's branch on the remote (a sub-task's is in its parent's stack); the worktree's
        // own branch is always the ticket's.
        let remote = state.pr_branch();
        let branch = key.branch();
        let head = match self
            .git
            .rev_parse(&clone, &format!("refs/remotes/origin/{remote}"))
            .await
        {
            Ok(Some(sha)) => sha,
            Ok(None) => return failed(effect, format!("the remote has no branch {remote}")),
            Err(e) => return failed(effect, e),
        };
        match self
            .fresh_worktree(git, &clone, key, &branch, &head, "a feedback round")
            .await
        {
            Ok(_) => match self.mark(job, key, &head) {
                Ok(()) => JobEvent::FeedbackWorkspaceReady {
                    worktree: relative_worktree(key),
                    head,
                },
                Err(e) => failed(effect, e),
            },
            Err(e) => failed(effect, e),
        }
    }

    /// Keep a stopping job's work on its WIP ref. When another worker did the last step, the
    /// work is already kept with the job (its worktree bundle): that is named instead, without
    /// rebuilding a worktree for a job that is ending.
    pub(crate) async fn snapshot(
        &self,
        job: JobId,
        state: &JobState,
        effect: &Effect,
    ) -> Result<JobEvent, codemill_store::StoreError> {
        let nothing = JobEvent::Snapshotted {
            wip_ref: None,
            commit: None,
        };
        let Some(expected) = self.expected(job, state).await? else {
            return Ok(nothing);
        };
        let current = self
            .worktree(state)
            .filter(|_| self.holds(job, &state.ticket, &expected));
        let Some(worktree) = current else {
            let kept_commit = self
                .store
                .artifact(job, portable::COMMIT)
                .await?
                .and_then(|a| a.meta)
                .filter(|c| state.commit.as_ref() == Some(c));
            return Ok(match (expected.snapshot, kept_commit) {
                (Some(snapshot), _) => JobEvent::Snapshotted {
                    wip_ref: Some(format!("refs/codemill/jobs/{job}/worktree")),
                    commit: Some(snapshot),
                },
                (None, Some(commit)) => JobEvent::Snapshotted {
                    wip_ref: Some(format!("refs/codemill/jobs/{job}/commit")),
                    commit: Some(commit),
                },
                (None, None) => nothing,
            });
        };
        let wip_ref = state.ticket.wip_ref();
        let message = format!(
            "codemill WIP for {} (job {job}): {}",
            state.ticket,
            state.reason.as_deref().unwrap_or("stopped")
        );
        match self
            .git
            .snapshot_wip(&worktree, &wip_ref, &message, &self.identity)
            .await
        {
            Ok(Some(sha)) => Ok(JobEvent::Snapshotted {
                wip_ref: Some(wip_ref),
                commit: Some(sha),
            }),
            Ok(None) => Ok(nothing),
            Err(e) => Ok(failed(effect, e)),
        }
    }

    pub(crate) async fn cleanup(&self, state: &JobState, stopped: bool) -> JobEvent {
        let keep = keeps_worktree(self.retention, stopped);
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
        self.forget(&state.ticket);
        match self.git.remove_worktree(&clone, &worktree).await {
            Ok(()) => JobEvent::CleanedUp {
                worktree_removed: true,
            },
            Err(e) => {
                // Leaving a directory behind is not worth stopping a finished job for.
                self.progress.emit(Progress::Info {
                    message: format!("could not remove worktree {}: {e}", worktree.display()),
                });
                JobEvent::CleanedUp {
                    worktree_removed: false,
                }
            }
        }
    }
}

/// Where a ticket's worktree is, relative to any worker's home: what the journal records.
fn relative_worktree(key: &TicketKey) -> String {
    format!("worktrees/{}/{key}", key.project())
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

/// The message of the job's commit: the ticket's title, or the feedback round it answers; the
/// `Codemill-Job` trailer names the job that made it.
fn commit_message(job: JobId, state: &JobState, ticket: &Ticket) -> String {
    if state.stage == Stage::FeedbackCommit {
        format!(
            "{}: address pull request feedback (round {})\n\nCodemill-Job: {job}\n",
            ticket.key, state.feedback_round
        )
    } else {
        format!("{}: {}\n\nCodemill-Job: {job}\n", ticket.key, ticket.title)
    }
}

/// Whether cleanup keeps the worktree: by the retention setting, and for `keep_failed` only
/// when the job stopped rather than shipped.
fn keeps_worktree(retention: Retention, stopped: bool) -> bool {
    match retention {
        Retention::Remove => false,
        Retention::KeepFailed => stopped,
        Retention::Keep => true,
    }
}

#[cfg(test)]
mod tests;
