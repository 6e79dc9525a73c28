//! Merging an approved branch into a repository's default branch without a worktree: a
//! fast-forward when possible, else a merge commit whose tree git computes in memory
//! (`merge-tree --write-tree`); conflicts are reported, never half-resolved.

use std::path::Path;

use crate::run::Call;
use crate::tmp::Scratch;
use crate::{Git, GitError, Identity, check_identity, check_rev};

/// What merging `theirs` into `ours` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// `ours` is an ancestor of `theirs`: the branch moves to `theirs`.
    FastForward(String),
    /// A new merge commit with `ours` and `theirs` as parents.
    Commit(String),
    /// `theirs` is already part of `ours`.
    UpToDate,
    /// The files both sides changed differently.
    Conflicts(Vec<String>),
}

impl Git {
    /// Merge commit `theirs` into commit `ours` in `repo` (a clone: nothing checked out changes).
    pub async fn merge_commits(
        &self,
        repo: &Path,
        ours: &str,
        theirs: &str,
        message: &str,
        who: &Identity,
    ) -> Result<Merged, GitError> {
        check_rev("commit", ours)?;
        check_rev("commit", theirs)?;
        check_identity(who)?;
        let ctx = self.ctx(repo).await?;
        let is_ancestor = |a: &str, b: &str| Call::new(["merge-base", "--is-ancestor", a, b]);
        if self
            .output(Some(&ctx), is_ancestor(theirs, ours))
            .await?
            .success()
        {
            return Ok(Merged::UpToDate);
        }
        if self
            .output(Some(&ctx), is_ancestor(ours, theirs))
            .await?
            .success()
        {
            return Ok(Merged::FastForward(theirs.to_owned()));
        }
        let args = [
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            ours,
            theirs,
        ];
        let out = self.output(Some(&ctx), Call::new(args)).await?;
        let mut lines = out.stdout.lines();
        let tree = lines.next().unwrap_or("").trim().to_owned();
        match out.code() {
            Some(0) => {}
            Some(1) => {
                let files = lines
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
                return Ok(Merged::Conflicts(files));
            }
            _ => return Err(crate::run::command_error(crate::run::shown(args), &out)),
        }
        let scratch = Scratch::new()?;
        let msg = scratch.write("message", message)?;
        let msg = msg.to_string_lossy().into_owned();
        let call = Call::new(["commit-tree", &tree, "-p", ours, "-p", theirs, "-F", &msg])
            .config("user.name", &who.name)
            .config("user.email", &who.email)
            .config("user.useConfigOnly", "true");
        let commit = self.run_line(Some(&ctx), call).await?;
        Ok(Merged::Commit(commit))
    }
}
