//! One worktree per ticket: list, add (idempotent), remove, prune — all under the repository lock.

use std::path::{Path, PathBuf};

use crate::lock::lock_repo;
use crate::repo::{Ctx, canonical_or_joined, resolve};
use crate::run::Call;
use crate::{Git, GitError, WorktreeInfo, check_ref_name, check_rev};

/// Parse `git worktree list --porcelain -z`: records of NUL-terminated fields, an empty field
/// ending each record.
fn parse_list(out: &str) -> Vec<WorktreeInfo> {
    let mut list = Vec::new();
    let mut cur: Option<WorktreeInfo> = None;
    for field in out.split('\0') {
        if field.is_empty() {
            list.extend(cur.take());
            continue;
        }
        let (key, value) = field.split_once(' ').unwrap_or((field, ""));
        if key == "worktree" {
            list.extend(cur.take());
            cur = Some(WorktreeInfo {
                path: PathBuf::from(value),
                head: None,
                branch: None,
                bare: false,
                locked: None,
                prunable: false,
            });
            continue;
        }
        let Some(wt) = cur.as_mut() else { continue };
        match key {
            "HEAD" if value.bytes().any(|b| b != b'0') => wt.head = Some(value.to_owned()),
            "branch" => wt.branch = Some(value.to_owned()),
            "bare" => wt.bare = true,
            "locked" => wt.locked = Some(value.to_owned()),
            "prunable" => wt.prunable = true,
            _ => {}
        }
    }
    list.extend(cur);
    list
}

fn same_path(listed: &Path, target: &Path) -> bool {
    listed == target || listed.canonicalize().is_ok_and(|c| c == target)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Git {
    /// The worktrees registered in `clone` (the bare clone itself comes first, marked `bare`).
    pub async fn list_worktrees(&self, clone: &Path) -> Result<Vec<WorktreeInfo>, GitError> {
        let ctx = self.ctx(clone).await?;
        self.list_in(&ctx).await
    }

    async fn list_in(&self, ctx: &Ctx) -> Result<Vec<WorktreeInfo>, GitError> {
        let out = self
            .run(
                Some(ctx),
                Call::new(["worktree", "list", "--porcelain", "-z"]),
            )
            .await?;
        Ok(parse_list(&out))
    }

    /// Forget registered worktrees whose directories are gone. Takes the repository lock.
    pub async fn prune_worktrees(&self, clone: &Path) -> Result<(), GitError> {
        let ctx = self.ctx(clone).await?;
        let _lock = lock_repo(&ctx.common_dir).await?;
        self.run(Some(&ctx), Call::new(["worktree", "prune"]))
            .await?;
        Ok(())
    }

    /// A worktree for a ticket: `worktree add -B <branch> <path> <start>`; returns its HEAD.
    ///
    /// Idempotent: when `path` already is a worktree of this clone on `branch` it is kept as it
    /// is (it may hold uncommitted work) and its HEAD returned. A registration whose directory is
    /// gone is pruned first, and one left locked as `initializing` by a crashed add is removed
    /// and redone. An existing `branch` without a worktree is reset to `start` (callers snapshot
    /// first). Takes the repository lock.
    pub async fn add_worktree(
        &self,
        clone: &Path,
        path: &Path,
        branch: &str,
        start: &str,
    ) -> Result<String, GitError> {
        check_ref_name("branch", branch)?;
        check_rev("start commit", start)?;
        let ctx = self.ctx(clone).await?;
        let abs = std::path::absolute(path).map_err(io_err(path))?;
        if let Some(parent) = abs.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let target = canonical_or_joined(&abs)?;
        let want_ref = format!("refs/heads/{branch}");
        let _lock = lock_repo(&ctx.common_dir).await?;

        self.run(Some(&ctx), Call::new(["worktree", "prune"]))
            .await?;
        let listed = self.list_in(&ctx).await?;
        if let Some(existing) = listed.iter().find(|w| same_path(&w.path, &target)) {
            if existing.locked.as_deref() == Some("initializing") {
                // We hold the lock, so no add is running: this one was cut short by a crash.
                tracing::warn!(path = %target.display(), "redoing a worktree add cut short by a crash");
                self.force_remove(&ctx, &target).await?;
            } else if existing.branch.as_deref() == Some(want_ref.as_str()) {
                tracing::debug!(path = %target.display(), branch, "worktree already in place");
                return self.head_of(&target).await;
            } else {
                return Err(GitError::WorktreeConflict {
                    path: target,
                    detail: format!(
                        "it is on {} instead of {want_ref}",
                        existing.branch.as_deref().unwrap_or("a detached HEAD")
                    ),
                });
            }
        } else if target.exists() {
            let empty = std::fs::read_dir(&target)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(GitError::PathOccupied { path: target });
            }
        }

        let add = Call::new([
            "worktree".as_ref(),
            "add".as_ref(),
            "--quiet".as_ref(),
            "--no-track".as_ref(),
            "-B".as_ref(),
            branch.as_ref(),
            "--".as_ref(),
            target.as_os_str(),
            start.as_ref(),
        ]);
        self.run(Some(&ctx), add).await?;
        self.head_of(&target).await
    }

    async fn head_of(&self, worktree: &Path) -> Result<String, GitError> {
        let ctx = resolve(worktree)?;
        self.rev_parse_in(&ctx, "HEAD^{commit}")
            .await?
            .ok_or_else(|| GitError::NotAWorktree {
                path: worktree.to_owned(),
                detail: "its HEAD does not name a commit".into(),
            })
    }

    /// Remove the worktree at `path` (discarding its changes) and prune; a no-op when it is
    /// already gone. A directory that is not a worktree of `clone` is left untouched (error).
    /// Takes the repository lock.
    pub async fn remove_worktree(&self, clone: &Path, path: &Path) -> Result<(), GitError> {
        let ctx = self.ctx(clone).await?;
        let target = canonical_or_joined(path)?;
        let _lock = lock_repo(&ctx.common_dir).await?;
        self.run(Some(&ctx), Call::new(["worktree", "prune"]))
            .await?;
        let listed = self.list_in(&ctx).await?;
        if listed
            .iter()
            .any(|w| !w.bare && same_path(&w.path, &target))
        {
            self.force_remove(&ctx, &target).await?;
        } else if std::fs::symlink_metadata(&target).is_ok() {
            if !self.is_leftover_of(&ctx, &target) {
                return Err(GitError::NotAWorktree {
                    path: target,
                    detail: format!(
                        "it is not a worktree of {}; left untouched",
                        ctx.common_dir.display()
                    ),
                });
            }
            tracing::info!(path = %target.display(), "removing a worktree directory whose registration is gone");
            std::fs::remove_dir_all(&target).map_err(io_err(&target))?;
        }
        Ok(())
    }

    /// `worktree remove --force --force`, falling back to deleting the directory (which git
    /// refuses for a half-deleted worktree or one containing submodules), then prune.
    async fn force_remove(&self, ctx: &Ctx, target: &Path) -> Result<(), GitError> {
        let remove = Call::new([
            "worktree".as_ref(),
            "remove".as_ref(),
            "--force".as_ref(),
            "--force".as_ref(),
            "--".as_ref(),
            target.as_os_str(),
        ]);
        let out = self.output(Some(ctx), remove).await?;
        if !out.success() {
            tracing::warn!(path = %target.display(), stderr = %out.stderr.trim(), "git worktree remove failed; deleting the directory");
            // Only a real directory: never follow a symlink put in the worktree's place.
            if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(target).map_err(io_err(target))?;
            } else if std::fs::symlink_metadata(target).is_ok() {
                std::fs::remove_file(target).map_err(io_err(target))?;
            }
        }
        self.run(Some(ctx), Call::new(["worktree", "prune"]))
            .await?;
        let still = self.list_in(ctx).await?;
        if still.iter().any(|w| !w.bare && same_path(&w.path, target)) {
            return Err(GitError::WorktreeConflict {
                path: target.to_owned(),
                detail: "it could not be removed".into(),
            });
        }
        Ok(())
    }

    /// A directory whose `.git` file names an admin directory of this clone that no longer
    /// exists: what a crash between git's two deletion steps leaves behind.
    fn is_leftover_of(&self, ctx: &Ctx, target: &Path) -> bool {
        if !std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
            return false;
        }
        let Ok(text) = std::fs::read_to_string(target.join(".git")) else {
            return false;
        };
        let Some(admin) = text.lines().next().and_then(|l| l.strip_prefix("gitdir: ")) else {
            return false;
        };
        let admin = target.join(admin.trim_end());
        admin.starts_with(ctx.common_dir.join("worktrees")) && !admin.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_porcelain_list() {
        let out = "worktree /c.git\0bare\0\0worktree /w/a\0HEAD 1234\0branch refs/heads/x\0\0\
                   worktree /w/b\0HEAD 5678\0detached\0locked initializing\0prunable gitdir file points to non-existent location\0\0";
        let list = parse_list(out);
        assert_eq!(list.len(), 3);
        assert!(list[0].bare);
        assert_eq!(list[1].branch.as_deref(), Some("refs/heads/x"));
        assert_eq!(list[1].head.as_deref(), Some("1234"));
        assert_eq!(list[2].locked.as_deref(), Some("initializing"));
        assert!(list[2].prunable);
        assert_eq!(list[2].branch, None);
    }
}
