//! One worktree per ticket: list, add (idempotent), remove, prune — all under the repository lock.

use std::path::{Path, PathBuf};

use crate::index::{self, IndexStore, install_worktree_index};
use crate::lock::lock_repo;
use crate::repo::{Ctx, Layout, canonical_or_joined, resolve};
use crate::run::{Call, command_error, shown};
use crate::{Git, GitError, WorktreeInfo, check_ref_name, check_rev};

/// The lock reason of a worktree being set up (what `git worktree add` itself writes while it
/// runs): a registration left with it was cut short by a crash.
const INITIALIZING: &str = "initializing";

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

/// `worktree remove --force --force <target>`: also when locked or dirty.
fn remove_call(target: &Path) -> Call {
    Call::new([
        "worktree".as_ref(),
        "remove".as_ref(),
        "--force".as_ref(),
        "--force".as_ref(),
        "--".as_ref(),
        target.as_os_str(),
    ])
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
    ///
    /// The common case, nothing at `path`, is a plain add; the registry is only listed (and
    /// pruned) when something is there or the add fails.
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

        if std::fs::symlink_metadata(&target).is_err() {
            match self.create_worktree(&ctx, &target, branch, start).await? {
                Ok(head) => return Ok(head),
                // E.g. a registration for this path whose directory is gone: sorted out below.
                Err(e) => {
                    tracing::debug!(path = %target.display(), error = %e, "worktree add failed; looking at the registry")
                }
            }
        }

        self.run(Some(&ctx), Call::new(["worktree", "prune"]))
            .await?;
        let listed = self.list_in(&ctx).await?;
        if let Some(existing) = listed.iter().find(|w| same_path(&w.path, &target)) {
            if existing.locked.as_deref() == Some(INITIALIZING) {
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
        self.create_worktree(&ctx, &target, branch, start)
            .await?
            .map_err(|e| *e)
    }

    /// Register and check out a new worktree (the repository lock is held). The outer error is
    /// a failure after the registration; the inner one is `worktree add` itself failing.
    ///
    /// The registration is made without a checkout and stays locked as `initializing` (as git
    /// does during its own checkout) until the files are out, so a crash in between is redone
    /// by the next add. The checkout goes through codemill's index of the worktree (module
    /// `index`), which so starts with every file's stat data; the worktree gets a copy as its
    /// own index.
    async fn create_worktree(
        &self,
        ctx: &Ctx,
        target: &Path,
        branch: &str,
        start: &str,
    ) -> Result<Result<String, Box<GitError>>, GitError> {
        let args = [
            "worktree".as_ref(),
            "add".as_ref(),
            "--quiet".as_ref(),
            "--no-checkout".as_ref(),
            "--lock".as_ref(),
            "--reason".as_ref(),
            INITIALIZING.as_ref(),
            "--no-track".as_ref(),
            "-B".as_ref(),
            branch.as_ref(),
            "--".as_ref(),
            target.as_os_str(),
            start.as_ref(),
        ];
        let out = self.output(Some(ctx), Call::new(args)).await?;
        if !out.success() {
            return Ok(Err(Box::new(command_error(shown(args), &out))));
        }
        // Nothing but git has run in it yet; the repository's config was checked for `ctx`.
        let wt = resolve(target)?.with_overrides_of(ctx);
        self.inherit_config_verdict(ctx, &wt);
        let head = self
            .head_in(&wt)
            .await?
            .ok_or_else(|| GitError::NotAWorktree {
                path: target.to_owned(),
                detail: "its HEAD does not name a commit".into(),
            })?;
        let checkout = |index: Option<&Path>| {
            let call = Call::new(["read-tree", "-m", "-u", head.tree.as_str()]);
            match index {
                Some(index) => call.index(index),
                // The worktree's own index; same settings as for codemill's.
                None => call.index(&wt.git_dir.join("index")),
            }
        };
        // Only tried: waiting for an index lock under the repository lock could deadlock.
        match IndexStore::try_lock(&wt) {
            Ok(Some(store)) => {
                // A base left by an earlier worktree of the same name would make `read-tree`
                // skip files it thinks are out already.
                store.clear()?;
                let base = store.base();
                self.run(Some(&wt), checkout(Some(&base))).await?;
                store.set_base_tree(&head.tree, true)?;
                install_worktree_index(&wt.git_dir, &base)?;
            }
            other => {
                if let Err(e) = other {
                    tracing::debug!(error = %e, "checking out without codemill's index");
                }
                self.run(Some(&wt), checkout(None)).await?;
            }
        }
        let locked = wt.git_dir.join("locked");
        std::fs::remove_file(&locked).map_err(io_err(&locked))?;
        Ok(Ok(head.commit))
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

    /// Delete the local branch `branch` (no worktree may have it checked out); a no-op when
    /// there is none. Takes the repository lock.
    pub async fn delete_branch(&self, clone: &Path, branch: &str) -> Result<(), GitError> {
        check_ref_name("branch", branch)?;
        let ctx = self.ctx(clone).await?;
        let _lock = lock_repo(&ctx.common_dir).await?;
        let refname = format!("refs/heads/{branch}");
        self.run(Some(&ctx), Call::new(["update-ref", "-d", &refname]))
            .await?;
        Ok(())
    }

    /// Remove the worktree at `path` (discarding its changes) and prune; a no-op when it is
    /// already gone. A directory that is not a worktree of `clone` is left untouched (error).
    /// Takes the repository lock.
    ///
    /// A plain `worktree remove` first (git only removes what its registry names); the registry
    /// is only pruned and listed when that fails.
    pub async fn remove_worktree(&self, clone: &Path, path: &Path) -> Result<(), GitError> {
        let ctx = self.ctx(clone).await?;
        let target = canonical_or_joined(path)?;
        let _lock = lock_repo(&ctx.common_dir).await?;
        // Which of codemill's indexes to drop; a `.git` file that does not lead back to this
        // clone just means there is none to drop.
        let admin = resolve(&target)
            .ok()
            .filter(|wt| wt.layout == Layout::Linked && wt.common_dir == ctx.common_dir)
            .and_then(|wt| wt.git_dir.file_name().map(ToOwned::to_owned));
        let discard = || {
            if let Some(name) = &admin {
                index::discard(&ctx.common_dir, name);
            }
        };
        if std::fs::symlink_metadata(&target).is_ok() {
            let out = self.output(Some(&ctx), remove_call(&target)).await?;
            if out.success() {
                discard();
                return Ok(());
            }
            tracing::debug!(path = %target.display(), stderr = %out.stderr.trim(), "worktree remove failed; looking at the registry");
        }
        self.run(Some(&ctx), Call::new(["worktree", "prune"]))
            .await?;
        let listed = self.list_in(&ctx).await?;
        if listed
            .iter()
            .any(|w| !w.bare && same_path(&w.path, &target))
        {
            self.force_remove(&ctx, &target).await?;
            discard();
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
        let out = self.output(Some(ctx), remove_call(target)).await?;
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
