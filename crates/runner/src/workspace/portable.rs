//! A job's portable state, so any worker can run its next step with nothing shared but the
//! store and the project's remote: the worktree's files after each writing step and the job's
//! commits are kept in the store as git bundles of only the job's new objects (usually a few
//! KB), and a worker whose own worktree is not the job's latest rebuilds it from the remote's
//! base commit plus those bundles. The team's remote sees nothing before a person approves.
//!
//! A small marker beside each worktree (outside it, so no agent can write it) says which job
//! and which content it holds, so the worker that did the last step reuses its worktree as is.

use std::path::PathBuf;

use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobState;
use codemill_git::Git;
use codemill_store::{Lease, StoreError};

use super::Workspace;
use crate::error::RunError;

/// The bundle of the worktree's files after the last writing step; meta `"<head> <snapshot>"`,
/// or just `"<head>"` when the files equal HEAD.
pub(crate) const WORKTREE: &str = "git/worktree";
/// A sub-job's base: the commits of the sub-tasks below it, stacked on the parent's base
/// (imported first: the names sort before the others).
pub(crate) const BASE: &str = "git/base";
/// The bundle of the job's latest commit (the proposal, or a feedback round's commit).
pub(crate) const COMMIT: &str = "git/commit";

/// What a job's worktree holds: HEAD, and the commit of its files when they differ from HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Content {
    pub head: String,
    pub snapshot: Option<String>,
}

impl Content {
    fn meta(&self) -> String {
        match &self.snapshot {
            Some(s) => format!("{} {s}", self.head),
            None => self.head.clone(),
        }
    }

    fn from_meta(meta: &str) -> Option<Content> {
        let mut parts = meta.split_whitespace();
        let head = parts.next()?.to_string();
        Some(Content {
            head,
            snapshot: parts.next().map(str::to_string),
        })
    }
}

/// Refs under which a job's bundled commits live in a clone.
fn job_refs(job: JobId) -> String {
    format!("refs/codemill/jobs/{job}/")
}

/// The commit the job's worktree has as HEAD now: its latest commit, else its base.
fn head_of(state: &JobState) -> Option<String> {
    state.commit.clone().or_else(|| state.base_commit.clone())
}

impl Workspace {
    /// The marker beside a ticket's worktree: `<job> <head> [<snapshot>]`.
    fn marker(&self, key: &TicketKey) -> PathBuf {
        let worktree = self.home.worktree(key);
        worktree.with_file_name(format!(".{key}.content"))
    }

    fn read_marker(&self, key: &TicketKey) -> Option<(String, Content)> {
        let text = std::fs::read_to_string(self.marker(key)).ok()?;
        let (job, rest) = text.trim().split_once(' ')?;
        Some((job.to_string(), Content::from_meta(rest)?))
    }

    pub(super) fn write_marker(
        &self,
        key: &TicketKey,
        job: JobId,
        content: &Content,
    ) -> Result<(), String> {
        let file = self.marker(key);
        std::fs::write(&file, format!("{job} {}\n", content.meta()))
            .map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Whether this worker's worktree of `key` holds `content` of `job`.
    pub(crate) fn holds(&self, job: JobId, key: &TicketKey, content: &Content) -> bool {
        self.read_marker(key) == Some((job.to_string(), content.clone()))
    }

    /// Forget which content this worker's worktree of `key` holds (it was removed).
    pub(crate) fn forget(&self, key: &TicketKey) {
        let _ = std::fs::remove_file(self.marker(key));
    }

    /// What the job's worktree must hold now, from the journal and the store.
    pub(crate) async fn expected(
        &self,
        job: JobId,
        state: &JobState,
    ) -> Result<Option<Content>, StoreError> {
        let Some(head) = head_of(state) else {
            return Ok(None);
        };
        let kept = self.store.artifact(job, WORKTREE).await?;
        // A snapshot taken on an older HEAD (before the commit) says nothing about this one.
        let snapshot = kept
            .and_then(|a| a.meta.as_deref().and_then(Content::from_meta))
            .filter(|c| c.head == head)
            .and_then(|c| c.snapshot);
        Ok(Some(Content { head, snapshot }))
    }

    /// The job's worktree on this worker, holding exactly the job's latest content: as it is
    /// when this worker did the last step, else rebuilt from the remote and the job's bundles.
    /// The flag says it was rebuilt, so the repository's prepare steps must run in it again.
    pub(crate) async fn ensure(
        &self,
        git: &Git,
        job: JobId,
        state: &JobState,
    ) -> Result<(PathBuf, bool), RunError> {
        let key = &state.ticket;
        let rebuild_error = |message: String| RunError::Outside {
            project: key.project().to_string(),
            message: format!("rebuilding the worktree of {key}: {message}"),
        };
        let Some(expected) = self.expected(job, state).await? else {
            return Err(rebuild_error("the job has no base commit yet".into()));
        };
        let path = self.home.worktree(key);
        if path.is_dir() && self.holds(job, key, &expected) {
            return Ok((path, false));
        }
        let clone = self.fetched_clone(git, key).await.map_err(rebuild_error)?;
        self.import(job, &clone).await?.map_err(rebuild_error)?;
        let worktree = self
            .fresh_worktree(
                git,
                &clone,
                key,
                &key.branch(),
                &expected.head,
                "it was rebuilt for another worker's job",
            )
            .await
            .map_err(rebuild_error)?;
        if let Some(snapshot) = &expected.snapshot {
            self.git
                .restore_tree(&worktree, snapshot)
                .await
                .map_err(|e| rebuild_error(e.to_string()))?;
        }
        self.write_marker(key, job, &expected)
            .map_err(rebuild_error)?;
        self.progress.emit(crate::progress::Progress::Info {
            message: format!(
                "rebuilt the worktree of {key} at {} from the job's kept state",
                short(expected.snapshot.as_deref().unwrap_or(&expected.head))
            ),
        });
        Ok((worktree, true))
    }

    /// Fetch every bundle the job kept into `clone`.
    pub(crate) async fn import(
        &self,
        job: JobId,
        clone: &std::path::Path,
    ) -> Result<Result<(), String>, StoreError> {
        for kept in self.store.artifacts(job, "git/").await? {
            if kept.body.is_empty() {
                continue;
            }
            if let Err(e) = self.git.unbundle(clone, &kept.body, &job_refs(job)).await {
                return Ok(Err(format!("{}: {e}", kept.name)));
            }
        }
        Ok(Ok(()))
    }

    /// Keep the worktree's files where every worker finds them, after a step that may have
    /// changed them. Written under the lease: a worker that lost the job cannot overwrite it.
    /// Says whether the files differ from HEAD (the base, before the job's commit).
    pub(crate) async fn checkpoint(
        &self,
        job: JobId,
        lease: &Lease,
        state: &JobState,
    ) -> Result<Result<bool, String>, StoreError> {
        let (Some(worktree), Some(head)) = (self.worktree(state), head_of(state)) else {
            return Ok(Err("the ticket's worktree is missing".into()));
        };
        let refname = format!("{}worktree", job_refs(job));
        let message = format!("codemill: the worktree of {} (job {job})", state.ticket);
        let snapshot = match self
            .git
            .snapshot_wip_since(&worktree, &refname, &head, &message, &self.identity)
            .await
        {
            Ok(s) => s.filter(|s| *s != head),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let content = Content {
            head: head.clone(),
            snapshot,
        };
        let body = match &content.snapshot {
            Some(s) => {
                let clone = self.home.clone_dir(state.ticket.project());
                match self.git.bundle(&clone, &refname, s, &head).await {
                    Ok(b) => b,
                    Err(e) => return Ok(Err(e.to_string())),
                }
            }
            None => Vec::new(),
        };
        let meta = content.meta();
        self.store
            .put_artifact(lease, WORKTREE, &body, Some(&meta), chrono::Utc::now())
            .await?;
        Ok(self
            .write_marker(&state.ticket, job, &content)
            .map(|()| content.snapshot.is_some()))
    }

    /// Keep the job's new commit (parent: a commit the remote has) where every worker finds it,
    /// so whichever worker pushes it has it.
    pub(crate) async fn keep_commit(
        &self,
        job: JobId,
        lease: &Lease,
        state: &JobState,
        commit: &str,
        parent: &str,
    ) -> Result<Result<(), String>, StoreError> {
        let clone = self.home.clone_dir(state.ticket.project());
        let refname = format!("{}commit", job_refs(job));
        let body = match self.git.bundle(&clone, &refname, commit, parent).await {
            Ok(b) => b,
            Err(e) => return Ok(Err(e.to_string())),
        };
        self.store
            .put_artifact(lease, COMMIT, &body, Some(commit), chrono::Utc::now())
            .await?;
        let content = Content {
            head: commit.to_string(),
            snapshot: None,
        };
        Ok(self.write_marker(&state.ticket, job, &content))
    }

    /// Make sure the project's clone on this worker has `commit` (made by whichever worker built
    /// the proposal): fetched from the remote and the job's bundles when it is missing.
    pub(crate) async fn ensure_commit(
        &self,
        git: &Git,
        job: JobId,
        state: &JobState,
        commit: &str,
    ) -> Result<Result<(), String>, StoreError> {
        let clone = self.home.clone_dir(state.ticket.project());
        if clone.is_dir() && matches!(self.git.has_commit(&clone, commit).await, Ok(true)) {
            return Ok(Ok(()));
        }
        let clone = match self.fetched_clone(git, &state.ticket).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.import(job, &clone).await? {
            return Ok(Err(e));
        }
        match self.git.has_commit(&clone, commit).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => Ok(Err(format!(
                "commit {commit} is neither on the remote nor kept with the job"
            ))),
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_through_its_meta() {
        let both = Content {
            head: "aaa".into(),
            snapshot: Some("bbb".into()),
        };
        assert_eq!(Content::from_meta(&both.meta()), Some(both));
        let clean = Content {
            head: "aaa".into(),
            snapshot: None,
        };
        assert_eq!(Content::from_meta(&clean.meta()), Some(clean));
        assert_eq!(Content::from_meta(""), None);
    }
}
