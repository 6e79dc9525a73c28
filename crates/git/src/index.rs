//! The index codemill stages a linked worktree's files in: its own, kept in the shared clone.
//!
//! A worktree's own index (`<clone>/worktrees/<name>/index`) is writable by the agent, which can
//! mark entries assume-unchanged or skip-worktree, or record stat data that hides a change. So
//! codemill never reads it. Staging from an empty temporary index (`read-tree HEAD`, `add -A`)
//! is safe but hashes every file on every call; instead codemill keeps, per worktree, a *base
//! index* at `<clone>/codemill-index/<name>/index`:
//!
//! - It lives in the clone's top directory, which the sandbox binds read-only (only the
//!   worktree and `worktrees/<name>` are writable there), and only codemill writes it. Git keeps
//!   nothing there; `gc` and `worktree prune` leave it alone.
//! - Its entries are exactly the tree named in `<name>/tree` (the worktree's HEAD tree when it
//!   was last brought up to date) and its stat data was recorded by codemill's own git calls,
//!   so it tells which files are unchanged since; only the others are hashed again.
//! - Each staging works on a copy (`<name>/work`, same modification time so git's racy-entry
//!   checks stay as they were) to which `add --all` adds the files on disk, tracked or not:
//!   the base never collects untracked files, so "what is staged" is, as before, HEAD plus the
//!   files on disk minus ignored ones, whatever earlier calls saw.
//! - Git's stat check is made trustworthy against repository config an agent may have written:
//!   [`INDEX_CONFIG`] forces ctime and inode checks on and turns off the features that would
//!   keep state elsewhere (split index, untracked cache) or skip paths (sparse checkout).
//!   A change to a file always changes its ctime, which nobody can set.
//!
//! `<name>/tree` is removed before the base changes and written after, and it is only believed
//! while the base exists, so a crash at any point at worst costs a rebuild. All of it happens
//! under a per-worktree lock (`<name>/lock`); the repository lock may be taken while holding it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::lock::{RepoLock, lock_file, try_lock_file};
use crate::repo::{Ctx, Layout};
use crate::{GitError, is_hex_sha};

/// Directory in the clone holding codemill's index of each worktree.
const INDEX_DIR: &str = "codemill-index";

/// `-c` settings for every git call that reads or writes codemill's own indexes.
pub(crate) const INDEX_CONFIG: &[(&str, &str)] = &[
    // Compare ctime, inode, uid/gid too: a file rewritten with its old size and mtime
    // (`touch -d`) is then still seen as changed.
    ("core.trustctime", "true"),
    ("core.checkStat", "default"),
    // `ignoreStat` would mark added entries assume-unchanged.
    ("core.ignoreStat", "false"),
    // A shared index would be kept in the (agent-writable) git directory of the worktree.
    ("core.splitIndex", "false"),
    // Cached directory listings could hide a new file from `add` (a directory's mtime can be
    // set back).
    ("core.untrackedCache", "false"),
    // Sparse checkout makes `add` skip paths outside the cone the agent may define.
    ("core.sparseCheckout", "false"),
    ("index.sparse", "false"),
];

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
    }
}

fn remove_if_present(path: &Path) -> Result<(), GitError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// `<clone>/codemill-index/<name>` for a linked worktree whose git directory is
/// `<clone>/worktrees/<name>` (checked by `repo::resolve`); `None` for other layouts.
fn store_dir(ctx: &Ctx) -> Option<PathBuf> {
    if ctx.layout != Layout::Linked {
        return None;
    }
    let name = ctx.git_dir.file_name()?;
    Some(ctx.common_dir.join(INDEX_DIR).join(name))
}

/// Forget codemill's index of the worktree whose git directory is `git_dir` in the clone at
/// `common_dir` (it is being removed). Without the worktree's lock: the files are only removed,
/// and a base without its `tree` file (or the reverse) is never believed.
pub(crate) fn discard(common_dir: &Path, name: &std::ffi::OsStr) {
    let dir = common_dir.join(INDEX_DIR).join(name);
    for file in ["tree", "index", "work"] {
        if let Err(e) = remove_if_present(&dir.join(file)) {
            tracing::debug!(error = %e, "could not remove codemill's index of a removed worktree");
        }
    }
}

/// Codemill's index of one linked worktree, locked for the holder.
#[derive(Debug)]
pub(crate) struct IndexStore {
    dir: PathBuf,
    _lock: RepoLock,
}

impl IndexStore {
    /// The store of `ctx`'s worktree, waiting for its lock; `None` unless `ctx` is a linked
    /// worktree.
    pub(crate) async fn lock(ctx: &Ctx) -> Result<Option<IndexStore>, GitError> {
        let Some(dir) = store_dir(ctx) else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = lock_file(dir.join("lock")).await?;
        Ok(Some(IndexStore::opened(dir, lock)?))
    }

    /// Like [`IndexStore::lock`], but `None` at once when someone holds the lock (for callers
    /// holding the repository lock, which must not wait for an index lock).
    pub(crate) fn try_lock(ctx: &Ctx) -> Result<Option<IndexStore>, GitError> {
        let Some(dir) = store_dir(ctx) else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        match try_lock_file(dir.join("lock"))? {
            Some(lock) => Ok(Some(IndexStore::opened(dir, lock)?)),
            None => Ok(None),
        }
    }

    fn opened(dir: PathBuf, lock: RepoLock) -> Result<IndexStore, GitError> {
        let store = IndexStore { dir, _lock: lock };
        // Every writer of these files holds the lock, so git lock files found now were left by
        // a crash; they would make the next git call fail.
        for stale in ["index.lock", "work.lock"] {
            remove_if_present(&store.dir.join(stale))?;
        }
        remove_if_present(&store.work())?;
        Ok(store)
    }

    /// The base index.
    pub(crate) fn base(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// The copy a staging works on.
    pub(crate) fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn tree_file(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// The tree the base index holds, when known.
    pub(crate) fn base_tree(&self) -> Option<String> {
        self.base_state().map(|(tree, _)| tree)
    }

    /// The tree the base index holds, and whether it was written by the checkout that made the
    /// worktree (see [`IndexStore::needs_settling`]).
    pub(crate) fn base_state(&self) -> Option<(String, bool)> {
        if !self.base().is_file() {
            return None;
        }
        let text = std::fs::read_to_string(self.tree_file()).ok()?;
        let mut words = text.split_whitespace();
        let tree = words.next().filter(|t| is_hex_sha(t))?;
        let seeded = words.next() == Some("seeded");
        Some((tree.to_owned(), seeded))
    }

    /// Whether the base, written by the checkout, should be written once more now. The
    /// checkout wrote the files in the same second as the base, and this git does not compare
    /// sub-second times, so it takes every entry as "racy" and reads every file again on each
    /// use, until the index is written in a later second (as `git status` does). True once such
    /// a second has come.
    pub(crate) fn needs_settling(&self) -> bool {
        let written = std::fs::metadata(self.base()).and_then(|m| m.modified());
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        matches!(self.base_state(), Some((_, true)))
            && written.is_ok_and(|w| secs(SystemTime::now()) > secs(w))
    }

    /// Before the base changes: it no longer holds a known tree.
    pub(crate) fn forget(&self) -> Result<(), GitError> {
        remove_if_present(&self.tree_file())
    }

    /// Forget the base entirely (it is rebuilt from nothing).
    pub(crate) fn clear(&self) -> Result<(), GitError> {
        self.forget()?;
        remove_if_present(&self.base())
    }

    /// After the base was made to hold exactly `tree` (`seeded`: by the worktree's checkout).
    pub(crate) fn set_base_tree(&self, tree: &str, seeded: bool) -> Result<(), GitError> {
        let tmp = self.dir.join("tree.tmp");
        let text = if seeded {
            format!("{tree} seeded\n")
        } else {
            format!("{tree}\n")
        };
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        let file = self.tree_file();
        std::fs::rename(&tmp, &file).map_err(io_err(&file))
    }

    /// Copy the base to the work index, keeping its modification time (git takes entries
    /// changed at or after the index's own time as "racy" and compares their contents).
    pub(crate) fn copy_base_to_work(&self) -> Result<PathBuf, GitError> {
        let work = self.work();
        copy_index(&self.base(), &work)?;
        Ok(work)
    }

    /// Make the work index the base: it holds exactly `tree` (the worktree is clean, or HEAD
    /// was just moved to a commit of that tree).
    pub(crate) fn adopt_work(&self, tree: &str) -> Result<(), GitError> {
        let unchanged = self.base_tree().as_deref() == Some(tree);
        if !unchanged {
            self.forget()?;
        }
        let base = self.base();
        std::fs::rename(self.work(), &base).map_err(io_err(&base))?;
        if !unchanged || self.base_state().is_some_and(|(_, seeded)| seeded) {
            self.set_base_tree(tree, false)?;
        }
        Ok(())
    }
}

impl Drop for IndexStore {
    fn drop(&mut self) {
        // Still under the lock (fields drop after this).
        let _ = std::fs::remove_file(self.work());
    }
}

/// Copy index `from` to `to` (replacing it), with `from`'s modification time.
fn copy_index(from: &Path, to: &Path) -> Result<(), GitError> {
    let mtime = std::fs::metadata(from)
        .and_then(|m| m.modified())
        .map_err(io_err(from))?;
    std::fs::copy(from, to).map_err(io_err(to))?;
    set_mtime(to, mtime)
}

fn set_mtime(path: &Path, mtime: SystemTime) -> Result<(), GitError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .map_err(io_err(path))
}

/// Replace the worktree's own index (`<git dir>/index`, agent-writable) with a copy of `ours`,
/// so that `git status` in the worktree agrees with HEAD. Done the way git does it: a new file
/// created exclusively (a planted symlink makes that fail instead of being followed), then
/// renamed over the old one (which replaces a symlink rather than writing through it).
/// Skipped while a git process in the worktree holds `index.lock`.
pub(crate) fn install_worktree_index(git_dir: &Path, ours: &Path) -> Result<(), GitError> {
    if std::fs::symlink_metadata(git_dir.join("index.lock")).is_ok() {
        return Err(io_err(&git_dir.join("index.lock"))(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the worktree's index is locked",
        )));
    }
    let mtime = std::fs::metadata(ours)
        .and_then(|m| m.modified())
        .map_err(io_err(ours))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = git_dir.join(format!("index.codemill-{}-{n}", std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    // From here on `tmp` is the file we created.
    let written = (|| {
        let mut from = std::fs::File::open(ours).map_err(io_err(ours))?;
        std::io::copy(&mut from, &mut out).map_err(io_err(&tmp))?;
        out.set_modified(mtime).map_err(io_err(&tmp))?;
        drop(out);
        let index = git_dir.join("index");
        std::fs::rename(&tmp, &index).map_err(io_err(&index))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
