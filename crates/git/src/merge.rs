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

/// What putting one commit's change on top of another gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    /// The new commit (the commit itself when it already sat on `onto`).
    Commit(String),
    /// The files whose change does not apply on `onto`.
    Conflicts(Vec<String>),
}

impl Git {
    /// Apply the change `commit` makes to its first parent on top of `onto`, as `cherry-pick`
    /// would, but in memory and reproducibly: the new commit keeps the original's author,
    /// committer, dates and message, so picking the same commit onto the same base gives the
    /// same id on every machine. A commit whose parent already is `onto` is returned as it is.
    ///
    /// With `from`, the change picked is `from..commit` (several commits become one); without,
    /// the commit's own change against its first parent.
    pub async fn pick(
        &self,
        repo: &Path,
        onto: &str,
        commit: &str,
        from: Option<&str>,
    ) -> Result<Picked, GitError> {
        check_rev("commit", onto)?;
        check_rev("commit", commit)?;
        if let Some(from) = from {
            check_rev("commit", from)?;
        }
        let ctx = self.ctx(repo).await?;
        let full = |rev: String| {
            let ctx = &ctx;
            async move {
                self.run_line(Some(ctx), Call::new(["rev-parse", "--verify", &rev]))
                    .await
            }
        };
        let parent = full(format!("{commit}^1^{{commit}}")).await?;
        let onto_full = full(format!("{onto}^{{commit}}")).await?;
        let from = match from {
            Some(f) => full(format!("{f}^{{commit}}")).await?,
            None => parent.clone(),
        };
        if parent == onto_full && from == onto_full {
            return Ok(Picked::Commit(commit.to_owned()));
        }
        let tree = if from == onto_full {
            // Already on top, as several commits: their tree, as one.
            full(format!("{commit}^{{tree}}")).await?
        } else {
            let base = format!("--merge-base={from}");
            let args = [
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                base.as_str(),
                onto_full.as_str(),
                commit,
            ];
            let out = self.output(Some(&ctx), Call::new(args)).await?;
            let mut lines = out.stdout.lines();
            let tree = lines.next().unwrap_or("").trim().to_owned();
            match out.code() {
                Some(0) => tree,
                Some(1) => {
                    let files = lines
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect();
                    return Ok(Picked::Conflicts(files));
                }
                _ => return Err(crate::run::command_error(crate::run::shown(args), &out)),
            }
        };
        // Who and when, NUL-separated: author name, e-mail, date; committer name, e-mail, date.
        let who = self
            .run(
                Some(&ctx),
                Call::new([
                    "show",
                    "-s",
                    "--format=%an%x00%ae%x00%ad%x00%cn%x00%ce%x00%cd",
                    "--date=raw",
                    commit,
                ]),
            )
            .await?;
        let fields: Vec<&str> = who.trim_end_matches('\n').split('\0').collect();
        let [an, ae, ad, cn, ce, cd] = fields.as_slice() else {
            return Err(GitError::InvalidArgument {
                what: "commit",
                value: commit.to_owned(),
                reason: "has no readable author and committer",
            });
        };
        let message = self
            .run(Some(&ctx), Call::new(["show", "-s", "--format=%B", commit]))
            .await?;
        let scratch = Scratch::new()?;
        let msg = scratch.write("message", message.trim_end())?;
        let msg = msg.to_string_lossy().into_owned();
        let call = Call::new(["commit-tree", &tree, "-p", &onto_full, "-F", &msg])
            .env("GIT_AUTHOR_NAME", an)
            .env("GIT_AUTHOR_EMAIL", ae)
            .env("GIT_AUTHOR_DATE", ad)
            .env("GIT_COMMITTER_NAME", cn)
            .env("GIT_COMMITTER_EMAIL", ce)
            .env("GIT_COMMITTER_DATE", cd);
        Ok(Picked::Commit(self.run_line(Some(&ctx), call).await?))
    }
}
