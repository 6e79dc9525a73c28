//! Reading and recording worktree state: dirty check, commit, WIP snapshot, diffs, revisions.
//!
//! The worktree's own index lives in the agent-writable admin directory (an agent can mark
//! entries assume-unchanged or skip-worktree, or leave `index.lock` behind). So the state of a
//! worktree is always taken with an index codemill owns: for a linked worktree a copy of
//! codemill's base index of it (module `index`: HEAD's tree with stat data, so only changed
//! files are hashed), otherwise a fresh temporary one; then `add -A` and `write-tree`.
//! "Dirty", "what gets committed" and "what a snapshot keeps" are then one and the same thing:
//! HEAD plus the files on disk, tracked or untracked, minus ignored ones.

use std::path::{Path, PathBuf};

use crate::index::{IndexStore, install_worktree_index};
use crate::lock::lock_repo;
use crate::repo::{Ctx, Layout};
use crate::run::{Call, command_error, shown};
use crate::tmp::Scratch;
use crate::{Git, GitError, Identity, check_identity, check_ref_name, check_rev, is_hex_sha};

const DIFF_FLAGS: &[&str] = &[
    "--no-color",
    // External diff drivers and textconv filters are programs named by config or attributes.
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
];

/// A worktree's HEAD: the commit and its tree.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) commit: String,
    pub(crate) tree: String,
}

/// The files on disk staged in an index codemill owns, for the length of one call.
struct Staged {
    /// The index holding them.
    index: PathBuf,
    /// Codemill's index of the worktree (locked), when `index` is its work copy.
    store: Option<IndexStore>,
    _scratch: Option<Scratch>,
}

impl Staged {
    /// HEAD now is a commit of exactly `tree`, the staged tree: keep the staged index (with its
    /// fresh stat data) as the base.
    fn adopt(&mut self, tree: &str) -> Result<(), GitError> {
        if let Some(store) = &self.store {
            store.adopt_work(tree)?;
            self.index = store.base();
        }
        Ok(())
    }
}

/// What a snapshot is compared with to decide there is nothing to keep.
enum Base<'a> {
    /// HEAD is already on the remote (reachable from `refs/remotes/origin/*`).
    Remote,
    /// HEAD equals this revision.
    Rev(&'a str),
}

impl Git {
    /// Methods that read or write a work tree (and `push` from one) need a linked worktree.
    ///
    /// A standalone repository where a ticket worktree should be means the agent replaced the
    /// `.git` file with a directory of its own: its config (remote URL included), refs and
    /// hooks are the agent's. Accepted only when [`Git::allow_standalone_worktrees`] says so.
    pub(crate) fn need_work_tree(&self, ctx: &Ctx, path: &Path) -> Result<(), GitError> {
        match ctx.layout {
            Layout::Linked => Ok(()),
            Layout::Main if self.standalone_worktrees => Ok(()),
            Layout::Main => Err(GitError::NotAWorktree {
                path: path.to_owned(),
                detail: "it is a standalone repository, not a linked worktree of a clone".into(),
            }),
            Layout::Bare => Err(GitError::NotAWorktree {
                path: path.to_owned(),
                detail: "it is a bare repository".into(),
            }),
        }
    }

    /// `rev-parse --verify` in a resolved repository; `None` when `rev` does not exist.
    pub(crate) async fn rev_parse_in(
        &self,
        ctx: &Ctx,
        rev: &str,
    ) -> Result<Option<String>, GitError> {
        let args = ["rev-parse", "--verify", "--quiet", "--end-of-options", rev];
        let out = self.output(Some(ctx), Call::new(args)).await?;
        match out.code() {
            Some(0) => {
                let sha = out.stdout.trim().to_owned();
                if is_hex_sha(&sha) {
                    Ok(Some(sha))
                } else {
                    Err(GitError::Unexpected {
                        command: shown(args),
                        detail: format!("not an object id: {sha:?}"),
                    })
                }
            }
            Some(1) if out.stderr.trim().is_empty() => Ok(None),
            _ => Err(command_error(shown(args), &out)),
        }
    }

    /// The object id `rev` names in `repo` (clone, repository or worktree); `None` when it does
    /// not exist. Not peeled: pass `<rev>^{commit}` for a commit.
    pub async fn rev_parse(&self, repo: &Path, rev: &str) -> Result<Option<String>, GitError> {
        check_rev("revision", rev)?;
        let ctx = self.ctx(repo).await?;
        self.rev_parse_in(&ctx, rev).await
    }

    /// The branch checked out in `worktree` (`codemill/PROJ-1`), `None` when HEAD is detached.
    pub async fn current_branch(&self, worktree: &Path) -> Result<Option<String>, GitError> {
        let ctx = self.ctx(worktree).await?;
        let out = self
            .output(Some(&ctx), Call::new(["symbolic-ref", "-q", "HEAD"]))
            .await?;
        Ok(out.success().then(|| {
            let full = out.stdout.trim();
            full.strip_prefix("refs/heads/").unwrap_or(full).to_owned()
        }))
    }

    /// The tree of the empty directory in this repository's hash format (not written).
    async fn empty_tree(&self, ctx: &Ctx) -> Result<String, GitError> {
        // stdin is /dev/null, so this hashes an empty tree object.
        self.run_line(
            Some(ctx),
            Call::new(["hash-object", "-t", "tree", "--stdin"]),
        )
        .await
    }

    /// HEAD's commit and tree in one call; `None` when HEAD is unborn.
    pub(crate) async fn head_in(&self, ctx: &Ctx) -> Result<Option<Head>, GitError> {
        // `--`: both must be revisions (never taken for file names in the work tree).
        let args = ["rev-parse", "HEAD^{commit}", "HEAD^{tree}", "--"];
        let out = self.output(Some(ctx), Call::new(args)).await?;
        if out.success() {
            let mut lines = out.stdout.lines().map(str::trim);
            return match (lines.next(), lines.next()) {
                (Some(commit), Some(tree)) if is_hex_sha(commit) && is_hex_sha(tree) => {
                    Ok(Some(Head {
                        commit: commit.to_owned(),
                        tree: tree.to_owned(),
                    }))
                }
                _ => Err(GitError::Unexpected {
                    command: shown(args),
                    detail: format!("not two object ids: {:?}", out.stdout),
                }),
            };
        }
        // Unborn, or broken: ask the question that tells them apart.
        match self.rev_parse_in(ctx, "HEAD^{commit}").await? {
            None => Ok(None),
            Some(_) => Err(command_error(shown(args), &out)),
        }
    }

    async fn head_tree(&self, ctx: &Ctx, head: Option<&Head>) -> Result<String, GitError> {
        match head {
            Some(h) => Ok(h.tree.clone()),
            None => self.empty_tree(ctx).await,
        }
    }

    /// `add --all` of the files on disk into `index` (HEAD, the real index and the files are not
    /// touched).
    async fn add_all(&self, ctx: &Ctx, index: &Path) -> Result<(), GitError> {
        self.run(
            Some(ctx),
            Call::new(["add", "--all", "--", "."]).index(index),
        )
        .await?;
        Ok(())
    }

    /// Stage the files on disk (tracked and untracked, not ignored) on top of HEAD in an index
    /// codemill owns: a copy of its base index of a linked worktree, else a temporary index.
    async fn stage(&self, ctx: &Ctx, head: Option<&Head>) -> Result<Staged, GitError> {
        let store = match head {
            Some(_) => IndexStore::lock(ctx).await.unwrap_or_else(|e| {
                // E.g. a clone the host cannot write to: stage the old way.
                tracing::debug!(error = %e, "staging without codemill's index of the worktree");
                None
            }),
            None => None,
        };
        if let (Some(head), Some(store)) = (head, store) {
            let work = match self.stage_in_store(ctx, &store, head).await {
                Ok(work) => work,
                // A base git cannot read (or any other failure): start it over once.
                Err(e @ GitError::Command { .. }) => {
                    tracing::warn!(error = %e, "rebuilding codemill's index of the worktree");
                    store.clear()?;
                    self.stage_in_store(ctx, &store, head).await?
                }
                Err(e) => return Err(e),
            };
            return Ok(Staged {
                index: work,
                store: Some(store),
                _scratch: None,
            });
        }
        let scratch = Scratch::new()?;
        let index = scratch.path().join("index");
        let read = match head {
            Some(h) => Call::new(["read-tree", h.tree.as_str()]),
            None => Call::new(["read-tree", "--empty"]),
        };
        self.run(Some(ctx), read.index(&index)).await?;
        self.add_all(ctx, &index).await?;
        Ok(Staged {
            index,
            store: None,
            _scratch: Some(scratch),
        })
    }

    async fn stage_in_store(
        &self,
        ctx: &Ctx,
        store: &IndexStore,
        head: &Head,
    ) -> Result<PathBuf, GitError> {
        if store.base_tree().as_deref() != Some(head.tree.as_str()) {
            // HEAD moved (or there is no base yet): entries equal in both keep their stat data
            // (`read-tree -m` with one tree), the others are hashed once by the refresh.
            store.forget()?;
            let base = store.base();
            self.run(
                Some(ctx),
                Call::new(["read-tree", "-m", head.tree.as_str()]).index(&base),
            )
            .await?;
            self.run(
                Some(ctx),
                Call::new(["update-index", "-q", "--refresh"]).index(&base),
            )
            .await?;
            store.set_base_tree(&head.tree, false)?;
        } else if store.needs_settling() {
            // Reads each file once more and writes the base in this later second: from then on
            // unchanged files are known by their stat data (entries stay those of HEAD's tree).
            self.run(
                Some(ctx),
                Call::new(["update-index", "-q", "--refresh", "--force-write-index"])
                    .index(&store.base()),
            )
            .await?;
            store.set_base_tree(&head.tree, false)?;
        }
        let work = store.copy_base_to_work()?;
        self.add_all(ctx, &work).await?;
        Ok(work)
    }

    /// Write the staged tree. When it is HEAD's (nothing changed), the staged index becomes the
    /// base, so the stat data it just refreshed is kept.
    async fn staged_tree(
        &self,
        ctx: &Ctx,
        staged: &mut Staged,
        head: Option<&Head>,
    ) -> Result<String, GitError> {
        let tree = self
            .run_line(Some(ctx), Call::new(["write-tree"]).index(&staged.index))
            .await?;
        if head.is_some_and(|h| h.tree == tree)
            && let Err(e) = staged.adopt(&tree)
        {
            tracing::debug!(error = %e, "could not keep the refreshed index");
        }
        Ok(tree)
    }

    /// Whether the files differ from HEAD: tracked changes, or untracked files not ignored.
    pub async fn is_dirty(&self, worktree: &Path) -> Result<bool, GitError> {
        let ctx = self.ctx(worktree).await?;
        self.need_work_tree(&ctx, worktree)?;
        let head = self.head_in(&ctx).await?;
        let mut staged = self.stage(&ctx, head.as_ref()).await?;
        let tree = self.staged_tree(&ctx, &mut staged, head.as_ref()).await?;
        Ok(tree != self.head_tree(&ctx, head.as_ref()).await?)
    }

    pub(crate) async fn commit_tree(
        &self,
        ctx: &Ctx,
        scratch: &Scratch,
        tree: &str,
        parent: Option<&str>,
        message: &str,
        who: &Identity,
    ) -> Result<String, GitError> {
        let msg = scratch.write("message", message)?;
        let mut args = vec!["commit-tree".into(), tree.to_owned()];
        if let Some(p) = parent {
            args.push("-p".into());
            args.push(p.to_owned());
        }
        args.push("-F".into());
        args.push(msg.to_string_lossy().into_owned());
        let call = Call::new(args)
            .config("user.name", &who.name)
            .config("user.email", &who.email)
            .config("user.useConfigOnly", "true");
        self.run_line(Some(ctx), call).await
    }

    /// Stage everything (`add -A` semantics) and commit it on the worktree's branch.
    /// Returns the new commit, or `None` when the files equal HEAD (so a re-run commits once).
    pub async fn commit_all(
        &self,
        worktree: &Path,
        message: &str,
        who: &Identity,
    ) -> Result<Option<String>, GitError> {
        check_identity(who)?;
        let ctx = self.ctx(worktree).await?;
        self.need_work_tree(&ctx, worktree)?;
        let head = self.head_in(&ctx).await?;
        let mut staged = self.stage(&ctx, head.as_ref()).await?;
        let tree = self.staged_tree(&ctx, &mut staged, head.as_ref()).await?;
        if tree == self.head_tree(&ctx, head.as_ref()).await? {
            return Ok(None);
        }
        let parent = head.as_ref().map(|h| h.commit.as_str());
        let scratch = Scratch::new()?;
        let commit = self
            .commit_tree(&ctx, &scratch, &tree, parent, message, who)
            .await?;
        // The old value makes this a compare-and-swap: a HEAD moved meanwhile is not overwritten.
        let old = parent.unwrap_or_default();
        // Ref writes in the shared clone queue behind fetch/gc/worktree changes (ref locks fail
        // instead of waiting); the slow part, hashing the files, ran without the lock.
        let lock = lock_repo(&ctx.common_dir).await?;
        self.run(
            Some(&ctx),
            Call::new(["update-ref", "-m", "codemill: commit", "HEAD", &commit, old]),
        )
        .await?;
        drop(lock);
        // HEAD's tree is now the staged one: keep that index as the base, and bring the
        // worktree's own index in line (a copy of ours) so `git status` there is clean. The
        // commit stands if either fails (e.g. a stale index.lock in the worktree's git directory).
        if let Err(e) = staged.adopt(&tree) {
            tracing::debug!(error = %e, "could not keep the staged index");
        }
        let refreshed = if ctx.layout == Layout::Linked {
            install_worktree_index(&ctx.git_dir, &staged.index).map_err(|e| e.to_string())
        } else {
            // A standalone repository's own index may carry what a copy would drop (sparse
            // checkout bits, extensions): let git bring it in line.
            let out = self
                .output(Some(&ctx), Call::new(["reset", "--quiet"]))
                .await?;
            if out.success() {
                Ok(())
            } else {
                Err(out.stderr.trim().to_owned())
            }
        };
        if let Err(e) = refreshed {
            tracing::warn!(worktree = %worktree.display(), error = %e, "committed, but could not refresh the worktree index");
        }
        tracing::info!(worktree = %worktree.display(), sha = %commit, "committed");
        Ok(Some(commit))
    }

    /// Keep the worktree's state (tracked and untracked files, not ignored) on `refname`
    /// (e.g. `refs/codemill/wip/PROJ-1`) without touching HEAD, the index or the files.
    ///
    /// The snapshot is a commit of the files with HEAD as parent; when the files equal HEAD it
    /// is HEAD itself. Returns `None` when there is nothing to keep: the files equal HEAD and
    /// HEAD is already on the remote (reachable from `refs/remotes/origin/*`). Re-running with
    /// nothing changed returns the same snapshot. Earlier snapshots stay in the ref's reflog.
    pub async fn snapshot_wip(
        &self,
        worktree: &Path,
        refname: &str,
        message: &str,
        who: &Identity,
    ) -> Result<Option<String>, GitError> {
        self.snapshot(worktree, refname, Base::Remote, message, who)
            .await
    }

    /// Like [`Git::snapshot_wip`], but "nothing to keep" means: the files equal HEAD and HEAD
    /// equals `base` (e.g. the commit the worktree was started from).
    pub async fn snapshot_wip_since(
        &self,
        worktree: &Path,
        refname: &str,
        base: &str,
        message: &str,
        who: &Identity,
    ) -> Result<Option<String>, GitError> {
        check_rev("base", base)?;
        self.snapshot(worktree, refname, Base::Rev(base), message, who)
            .await
    }

    async fn snapshot(
        &self,
        worktree: &Path,
        refname: &str,
        base: Base<'_>,
        message: &str,
        who: &Identity,
    ) -> Result<Option<String>, GitError> {
        check_ref_name("ref name", refname)?;
        if !refname.starts_with("refs/") {
            return Err(GitError::InvalidArgument {
                what: "ref name",
                value: refname.to_owned(),
                reason: "must start with refs/",
            });
        }
        check_identity(who)?;
        let ctx = self.ctx(worktree).await?;
        self.need_work_tree(&ctx, worktree)?;
        let head = self.head_in(&ctx).await?;
        let mut staged = self.stage(&ctx, head.as_ref()).await?;
        let tree = self.staged_tree(&ctx, &mut staged, head.as_ref()).await?;
        let clean = tree == self.head_tree(&ctx, head.as_ref()).await?;
        let head = head.map(|h| h.commit);
        let published = match (&head, base) {
            (None, _) => true,
            // The usual case: `base` is the full id of the commit the worktree started from.
            (Some(h), Base::Rev(rev)) if rev == h => true,
            (Some(_), Base::Rev(rev)) => {
                self.rev_parse_in(&ctx, &format!("{rev}^{{commit}}"))
                    .await?
                    == head
            }
            (Some(h), Base::Remote) => {
                let unpublished = self
                    .run(
                        Some(&ctx),
                        Call::new(["rev-list", "-n", "1", h, "--not", "--remotes=origin"]),
                    )
                    .await?;
                unpublished.trim().is_empty()
            }
        };
        if clean && published {
            return Ok(None);
        }
        let existing = self.rev_parse_in(&ctx, refname).await?;
        let target = match (&head, clean) {
            (Some(h), true) => h.clone(),
            _ => match self
                .reusable_snapshot(&ctx, existing.as_deref(), &tree, head.as_deref())
                .await?
            {
                Some(same) => same,
                None => {
                    let scratch = Scratch::new()?;
                    self.commit_tree(&ctx, &scratch, &tree, head.as_deref(), message, who)
                        .await?
                }
            },
        };
        drop(staged);
        if existing.as_deref() != Some(target.as_str()) {
            let old = existing.unwrap_or_default();
            let _lock = lock_repo(&ctx.common_dir).await?;
            self.run(
                Some(&ctx),
                Call::new([
                    "update-ref",
                    "--create-reflog",
                    "-m",
                    "codemill: wip snapshot",
                    refname,
                    &target,
                    &old,
                ]),
            )
            .await?;
            tracing::info!(worktree = %worktree.display(), refname, sha = %target, "wip snapshot");
        }
        Ok(Some(target))
    }

    /// The existing snapshot when it already holds exactly `tree` on top of `parent`.
    async fn reusable_snapshot(
        &self,
        ctx: &Ctx,
        existing: Option<&str>,
        tree: &str,
        parent: Option<&str>,
    ) -> Result<Option<String>, GitError> {
        let Some(existing) = existing else {
            return Ok(None);
        };
        // One call for its tree and parents; not a commit: not reusable.
        let out = self
            .output(Some(ctx), Call::new(["cat-file", "commit", existing]))
            .await?;
        if !out.success() {
            return Ok(None);
        }
        let mut existing_tree = None;
        let mut parents = Vec::new();
        for line in out.stdout.lines().take_while(|l| !l.is_empty()) {
            if let Some(t) = line.strip_prefix("tree ") {
                existing_tree = Some(t);
            } else if let Some(p) = line.strip_prefix("parent ") {
                parents.push(p);
            }
        }
        if existing_tree != Some(tree) {
            return Ok(None);
        }
        let same_parent = match parent {
            Some(p) => parents == [p],
            None => parents.is_empty(),
        };
        Ok(same_parent.then(|| existing.to_owned()))
    }

    /// The paths that differ between `base` and `head` (both commits), repository-relative.
    pub async fn changed_files(
        &self,
        repo: &Path,
        base: &str,
        head: &str,
    ) -> Result<Vec<String>, GitError> {
        check_rev("base", base)?;
        check_rev("head", head)?;
        let ctx = self.ctx(repo).await?;
        let out = self
            .run(
                Some(&ctx),
                Call::new([
                    "diff",
                    "--name-only",
                    "-z",
                    "--no-renames",
                    "--end-of-options",
                    base,
                    head,
                    "--",
                ]),
            )
            .await?;
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// `git diff --stat <base> <head>`.
    pub async fn diff_stat(
        &self,
        worktree: &Path,
        base: &str,
        head: &str,
    ) -> Result<String, GitError> {
        check_rev("base", base)?;
        check_rev("head", head)?;
        let ctx = self.ctx(worktree).await?;
        let mut args = vec!["diff", "--stat"];
        args.extend_from_slice(DIFF_FLAGS);
        args.extend(["--end-of-options", base, head, "--"]);
        self.run(Some(&ctx), Call::new(args)).await
    }

    /// The patch from `base` to `head`, or with `head` `None` to the files on disk, untracked
    /// ones included (via a temporary index; nothing is staged). Capped at the diff cap (head
    /// and tail kept, with a truncation note in between).
    pub async fn diff(
        &self,
        worktree: &Path,
        base: &str,
        head: Option<&str>,
    ) -> Result<String, GitError> {
        check_rev("base", base)?;
        let ctx = self.ctx(worktree).await?;
        let mut args = vec!["diff"];
        match head {
            Some(h) => {
                check_rev("head", h)?;
                args.extend_from_slice(DIFF_FLAGS);
                args.extend(["--end-of-options", base, h, "--"]);
                self.run(Some(&ctx), Call::new(args).capped(self.diff_cap))
                    .await
            }
            None => {
                self.need_work_tree(&ctx, worktree)?;
                let current = self.head_in(&ctx).await?;
                let staged = self.stage(&ctx, current.as_ref()).await?;
                // `base` against the staged index: the same patch as against its tree.
                args.push("--cached");
                args.extend_from_slice(DIFF_FLAGS);
                args.extend(["--end-of-options", base, "--"]);
                let call = Call::new(args).index(&staged.index).capped(self.diff_cap);
                self.run(Some(&ctx), call).await
            }
        }
    }

    /// The commits reachable from `head` but not from `base`, oldest first.
    pub async fn commits_between(
        &self,
        repo: &Path,
        base: &str,
        head: &str,
    ) -> Result<Vec<String>, GitError> {
        check_rev("base", base)?;
        check_rev("head", head)?;
        let ctx = self.ctx(repo).await?;
        let not_base = format!("^{base}");
        let out = self
            .run(
                Some(&ctx),
                Call::new(["rev-list", "--reverse", "--end-of-options", head, &not_base]),
            )
            .await?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// The text of `path` at `rev` (for example the repository's policy at the job's base
    /// commit, which the agent cannot change), or `None` when the file does not exist there.
    pub async fn read_file_at(
        &self,
        repo: &Path,
        rev: &str,
        path: &str,
    ) -> Result<Option<String>, GitError> {
        check_rev("revision", rev)?;
        let ctx = self.ctx(repo).await?;
        let object = format!("{rev}:{path}");
        let exists = self
            .output(Some(&ctx), Call::new(["cat-file", "-e", &object]))
            .await?;
        if !exists.success() {
            return Ok(None);
        }
        let text = self
            .run(
                Some(&ctx),
                Call::new(["cat-file", "blob", &object]).capped(1 << 20),
            )
            .await?;
        Ok(Some(text))
    }

    /// The paths of all files in `rev` (e.g. `HEAD`, `origin/main`), repository-relative.
    pub async fn list_files(&self, repo: &Path, rev: &str) -> Result<Vec<String>, GitError> {
        check_rev("revision", rev)?;
        let ctx = self.ctx(repo).await?;
        let tree = format!("{rev}^{{tree}}");
        let out = self
            .run(
                Some(&ctx),
                Call::new(["ls-tree", "-r", "-z", "--name-only", "--full-tree", &tree]),
            )
            .await?;
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    }
}
