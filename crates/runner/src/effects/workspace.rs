//! The git side of effects: the job's clone and worktrees (fresh for a job or at a PR's head),
//! the repository's policy, the commit, WIP snapshots and cleanup.

use std::path::{Path, PathBuf};

use codemill_core::config::{RepoPolicy, Retention};
use codemill_core::ids::JobId;
use codemill_core::pipeline::{Effect, JobEvent, JobState};
use codemill_core::prompts::RUN_DIR;
use codemill_store::Ticket;

use crate::engine::Runner;
use crate::gates::{POLICY_FILE, parse_policy};
use crate::progress::Progress;

use super::failed;

impl Runner {
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

    pub(super) async fn prepare_workspace(
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

    pub(super) async fn commit(
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
    pub(super) async fn prepare_feedback(
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

    pub(super) async fn snapshot(&self, job: JobId, state: &JobState, effect: &Effect) -> JobEvent {
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

    pub(super) async fn cleanup(&self, state: &JobState, stopped: bool) -> JobEvent {
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
