//! Checkouts of a project's default branch as the remote has it now: the remote's tip, a
//! read-only checkout for the assistant, and a file change pushed to a branch of its own.

use super::*;

impl Workspace {
    /// The project's clone fetched now, the remote's default branch, and the commit at its tip.
    pub(super) async fn remote_tip(
        &self,
        git: &Git,
        key: &TicketKey,
    ) -> Result<(PathBuf, String, String), String> {
        let clone = self.fetched_clone(git, key).await?;
        let branch = git
            .default_branch(&clone)
            .await
            .map_err(|e| e.to_string())?;
        let tip = format!("refs/remotes/origin/{branch}");
        match git.rev_parse(&clone, &tip).await {
            Ok(Some(sha)) => Ok((clone, branch, sha)),
            Ok(None) => Err(format!("the repository has no branch {branch}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The project's clone fetched now, with git for its remote, its default branch and that
    /// branch's tip on the remote.
    pub(super) async fn fetched_default(
        &self,
        project: &str,
    ) -> Result<(Git, PathBuf, String, String), String> {
        let settings = self
            .projects
            .get(project)
            .ok_or_else(|| format!("project {project} is not registered"))?;
        let git = self.remote_git(project).await.map_err(|e| e.to_string())?;
        let clone = self.home.clone_dir(project);
        git.ensure_clone_and_fetch(&settings.repo, &clone)
            .await
            .map_err(|e| e.to_string())?;
        let default = git
            .default_branch(&clone)
            .await
            .map_err(|e| e.to_string())?;
        let tip = git
            .rev_parse(&clone, &format!("refs/remotes/origin/{default}"))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the repository has no branch {default}"))?;
        Ok((git, clone, default, tip))
    }

    /// A read-only look at `project`'s default branch as the remote has it now (for the
    /// assistant and for learning): a worktree of its own on a throwaway branch, gone again
    /// after [`Workspace::drop_checkout`].
    pub(crate) async fn default_checkout(
        &self,
        project: &str,
        turn: JobId,
    ) -> Result<(PathBuf, String), String> {
        let (git, clone, _, tip) = self.fetched_default(project).await?;
        exclude_run_dir(&clone).map_err(|e| e.to_string())?;
        let path = self.home.root().join("assistant").join(turn.to_string());
        git.add_worktree(&clone, &path, &assistant_branch(turn), &tip)
            .await
            .map_err(|e| e.to_string())?;
        Ok((path, tip))
    }

    /// A branch `branch` from the default branch's tip with `file` (relative to the repository)
    /// written as `content`, committed and pushed to the project's remote. Returns the default
    /// branch and the commit. Pushing again the same change is a no-op.
    pub(crate) async fn push_file_change(
        &self,
        project: &str,
        branch: &str,
        file: &str,
        content: &str,
        message: &str,
    ) -> Result<(String, String), String> {
        let (git, clone, default, tip) = self.fetched_default(project).await?;
        let path = self
            .home
            .root()
            .join("guidance")
            .join(branch.replace('/', "-"));
        if path.exists() {
            git.remove_worktree(&clone, &path)
                .await
                .map_err(|e| e.to_string())?;
        }
        git.add_worktree(&clone, &path, branch, &tip)
            .await
            .map_err(|e| e.to_string())?;
        let written = async {
            let target = path.join(file);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::write(&target, content).map_err(|e| format!("{}: {e}", target.display()))?;
            let commit = git
                .commit_all(&path, message, &self.identity)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_else(|| tip.clone());
            git.push(&clone, &commit, branch)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(commit)
        }
        .await;
        let _ = git.remove_worktree(&clone, &path).await;
        Ok((default, written?))
    }

    /// Remove a checkout of [`Workspace::default_checkout`] and its branch.
    pub(crate) async fn drop_checkout(&self, project: &str, turn: JobId, path: &Path) {
        let clone = self.home.clone_dir(project);
        let removed = async {
            self.git.remove_worktree(&clone, path).await?;
            self.git
                .delete_branch(&clone, &assistant_branch(turn))
                .await
        }
        .await;
        if let Err(e) = removed {
            tracing::warn!(project, error = %e, "could not remove the assistant's checkout");
        }
    }
}

/// Keep codemill's run directory out of every commit of every worktree of a clone.
/// The throwaway branch of a read-only checkout.
fn assistant_branch(turn: JobId) -> String {
    format!("codemill-look/{}", turn.short())
}
