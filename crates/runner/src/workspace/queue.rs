//! The merge queue's git work: a project's clone fetched now, candidates stacked on the target
//! branch without a worktree, the target's trusted gates, a throwaway worktree to test a
//! candidate in, and the exact push that lands only the tested commit.

use std::path::{Path, PathBuf};

use codemill_core::config::GateSpec;
use codemill_git::{Git, Merged};

use super::Workspace;
use crate::gates::{POLICY_FILE, gates_from, parse_policy};

/// The gates and prepare steps a candidate is tested with: the target branch's own, never the
/// candidate's (a proposal cannot change what it is tested with).
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueChecks {
    pub gates: Vec<GateSpec>,
    pub prepare: Vec<GateSpec>,
}

impl Workspace {
    /// The project's clone fetched now, and the remote's `target` branch tip.
    pub(crate) async fn queue_tip(
        &self,
        git: &Git,
        project: &str,
        target: &str,
    ) -> Result<(PathBuf, String), String> {
        let settings = self
            .projects
            .get(project)
            .ok_or_else(|| format!("project {project} is not registered"))?;
        let clone = self.home.clone_dir(project);
        git.ensure_clone_and_fetch(&settings.repo, &clone)
            .await
            .map_err(|e| e.to_string())?;
        match git
            .rev_parse(&clone, &format!("refs/remotes/origin/{target}"))
            .await
        {
            Ok(Some(tip)) => Ok((clone, tip)),
            Ok(None) => Err(format!("the repository has no branch {target}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The gates and prepare steps of the target branch at `tip`.
    pub(crate) async fn queue_checks(
        &self,
        clone: &Path,
        tip: &str,
    ) -> Result<QueueChecks, String> {
        let text = self
            .git
            .read_file_at(clone, tip, POLICY_FILE)
            .await
            .map_err(|e| e.to_string())?;
        let policy = parse_policy(text.as_deref()).map_err(|e| e.to_string())?;
        let files = if policy.as_ref().is_some_and(|p| !p.gates.is_empty()) {
            Vec::new()
        } else {
            self.git
                .list_files(clone, tip)
                .await
                .map_err(|e| e.to_string())?
        };
        Ok(QueueChecks {
            gates: gates_from(policy.as_ref(), &files),
            prepare: crate::gates::prepare_steps(text.as_deref())?,
        })
    }

    /// `commit` stacked on `onto` in the clone: a fast-forward, a merge commit, already
    /// contained, or the conflicting files. Nothing is checked out or pushed.
    pub(crate) async fn stack(
        &self,
        clone: &Path,
        onto: &str,
        commit: &str,
        message: &str,
    ) -> Result<Merged, String> {
        if !self
            .git
            .has_commit(clone, commit)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!("commit {commit} is not on the remote"));
        }
        self.git
            .merge_commits(clone, onto, commit, message, &self.identity)
            .await
            .map_err(|e| e.to_string())
    }

    /// A fresh worktree of the clone at `commit` to test a candidate in (`name` keeps
    /// candidates of different queues apart).
    pub(crate) async fn candidate_worktree(
        &self,
        clone: &Path,
        project: &str,
        name: &str,
        commit: &str,
    ) -> Result<PathBuf, String> {
        let path = self.home.root().join("merge").join(project).join(name);
        self.git
            .remove_worktree(clone, &path)
            .await
            .map_err(|e| e.to_string())?;
        let branch = format!("codemill-queue/{name}");
        self.git
            .add_worktree(clone, &path, &branch, commit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(path)
    }

    pub(crate) async fn remove_candidate(&self, clone: &Path, path: &Path) {
        if let Err(e) = self.git.remove_worktree(clone, path).await {
            tracing::warn!(path = %path.display(), error = %e, "candidate worktree left behind");
        }
    }

    /// The text of `path` at `rev` in the queue's clone (`None`: no such file there).
    pub(crate) async fn file_at(
        &self,
        clone: &Path,
        rev: &str,
        path: &str,
    ) -> Result<Option<String>, String> {
        self.git
            .read_file_at(clone, rev, path)
            .await
            .map_err(|e| e.to_string())
    }

    /// Land `candidate` on the remote's `target` only if it is still at `expected`.
    pub(crate) async fn land(
        &self,
        git: &Git,
        clone: &Path,
        candidate: &str,
        target: &str,
        expected: &str,
    ) -> Result<bool, String> {
        git.push_exact(clone, candidate, target, expected)
            .await
            .map_err(|e| {
                let error = e.to_string();
                if codemill_git::refused_checked_out(&error) {
                    format!(
                        "{error}; {target} is checked out in the project's repository: {}",
                        codemill_git::CHECKED_OUT_ADVICE
                    )
                } else {
                    error
                }
            })
    }

    /// Knowledge citing files changed by a merge is checked again at its tip.
    pub(crate) async fn recheck_landed(&self, clone: &Path, from: &str, to: &str, project: &str) {
        self.recheck_merged(clone, (from, to), to, project).await;
    }
}
