//! Carrying a job's commits between workers without any shared remote: a bundle of the commits
//! reachable from one ref and not from the job's base, fetched back into another clone, and a
//! worktree's files set to a commit's tree with HEAD left where it is.

use std::path::Path;

use crate::lock::lock_repo;
use crate::run::Call;
use crate::tmp::Scratch;
use crate::{Git, GitError, check_ref_name, check_rev};

impl Git {
    /// The commits reachable from `tip` and not from `base`, as git bundle bytes in which `tip`
    /// is named `refname` (which is also set in `repo`). Usually a few KB: only what the job
    /// added. `tip` must differ from `base` (git refuses an empty bundle).
    pub async fn bundle(
        &self,
        repo: &Path,
        refname: &str,
        tip: &str,
        base: &str,
    ) -> Result<Vec<u8>, GitError> {
        check_ref_name("ref name", refname)?;
        check_rev("commit", tip)?;
        check_rev("base", base)?;
        let ctx = self.ctx(repo).await?;
        let scratch = Scratch::new()?;
        let file = scratch.path().join("job.bundle");
        let lock = lock_repo(&ctx.common_dir).await?;
        self.run(
            Some(&ctx),
            Call::new(["update-ref", "-m", "codemill: job commit", refname, tip]),
        )
        .await?;
        drop(lock);
        let exclude = format!("^{base}");
        let path = file.to_string_lossy().into_owned();
        self.run(
            Some(&ctx),
            Call::new(["bundle", "create", "--quiet", &path, refname, &exclude]),
        )
        .await?;
        std::fs::read(&file).map_err(|source| GitError::Io { path: file, source })
    }

    /// Fetch the refs under `prefix` (e.g. `refs/codemill/jobs/ID/`) of a bundle made by
    /// [`Git::bundle`] into `repo`, overwriting refs of the same name. The bundle's base must
    /// already be in `repo` (fetch the project's remote first).
    pub async fn unbundle(&self, repo: &Path, bytes: &[u8], prefix: &str) -> Result<(), GitError> {
        check_ref_name("ref prefix", prefix.trim_end_matches('/'))?;
        let ctx = self.ctx(repo).await?;
        let scratch = Scratch::new()?;
        let file = scratch.path().join("job.bundle");
        std::fs::write(&file, bytes).map_err(|source| GitError::Io {
            path: file.clone(),
            source,
        })?;
        let path = file.to_string_lossy().into_owned();
        let refspec = format!("+{prefix}*:{prefix}*");
        let _lock = lock_repo(&ctx.common_dir).await?;
        self.run(
            Some(&ctx),
            Call::new([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                &path,
                &refspec,
            ]),
        )
        .await?;
        Ok(())
    }

    /// Whether `commit` exists in `repo` as a commit.
    pub async fn has_commit(&self, repo: &Path, commit: &str) -> Result<bool, GitError> {
        check_rev("commit", commit)?;
        let ctx = self.ctx(repo).await?;
        Ok(self
            .rev_parse_in(&ctx, &format!("{commit}^{{commit}}"))
            .await?
            .is_some())
    }

    /// Set a linked worktree's index and files to `commit`'s tree; HEAD stays, so what differs
    /// from HEAD shows as the worktree's changes (a job's work restored on another worker).
    pub async fn restore_tree(&self, worktree: &Path, commit: &str) -> Result<(), GitError> {
        check_rev("commit", commit)?;
        let ctx = self.ctx(worktree).await?;
        self.need_work_tree(&ctx, worktree)?;
        self.run(
            Some(&ctx),
            Call::new(["read-tree", "-u", "--reset", "--end-of-options", commit]),
        )
        .await?;
        Ok(())
    }
}
