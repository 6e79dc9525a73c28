//! The per-repository lock around clone, fetch, push and worktree add/remove/prune, and the
//! per-worktree lock around codemill's own index of a worktree (module `index`).
//!
//! Git's own lock files make a second concurrent writer fail instead of wait (`index.lock`,
//! `config.lock`, `packed-refs.lock` exists), so writers of the shared clone queue here: a tokio
//! mutex per lock file within this process, and an advisory file lock on that file across
//! processes (several workers on one machine). For a clone the lock file is `<clone>.lock`
//! beside the clone. The file lock is `flock(2)`, so it is released when the holder dies, crash
//! included.
//!
//! Lock order: a worktree's index lock may be held while taking the repository lock, never the
//! other way round (a holder of the repository lock only ever *tries* an index lock).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::GitError;

type LockMap = Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;

static LOCKS: LazyLock<LockMap> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Held while the clone (or a worktree's index) is being changed; dropping it releases both locks.
#[derive(Debug)]
pub(crate) struct RepoLock {
    // Closing the file releases the advisory lock.
    _file: File,
    _guard: OwnedMutexGuard<()>,
}

/// The lock file for a clone at `dir`: a sibling, so it exists before the clone does. For the
/// `.git` directory of an ordinary repository, a sibling would sit in the work tree (and be
/// committed), so it goes inside.
pub(crate) fn lock_file_path(dir: &Path) -> PathBuf {
    if dir.file_name().is_some_and(|n| n == ".git") {
        return dir.join("codemill.lock");
    }
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

fn mutex_for(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    // A panic while holding this short map lock leaves the map intact: ignore poisoning.
    let mut map = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() > 1024 {
        // Forget mutexes nobody holds or waits for (one per worktree ever seen would pile up).
        map.retain(|_, m| Arc::strong_count(m) > 1);
    }
    map.entry(path.to_owned()).or_default().clone()
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Take the lock for the clone whose canonical path is `key`.
pub(crate) async fn lock_repo(key: &Path) -> Result<RepoLock, GitError> {
    lock_file(lock_file_path(key)).await
}

/// Take the lock whose file is `path` (created if missing), waiting for other holders.
pub(crate) async fn lock_file(path: PathBuf) -> Result<RepoLock, GitError> {
    let guard = mutex_for(&path).lock_owned().await;
    let for_thread = path.clone();
    // `File::lock` blocks the thread until another process lets go, so keep it off the runtime.
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        let file = open_lock_file(&for_thread)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| GitError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?
    .map_err(|source| GitError::Io { path, source })?;
    Ok(RepoLock {
        _file: file,
        _guard: guard,
    })
}

/// Take the lock whose file is `path` only if nobody holds it; `Ok(None)` when it is busy.
pub(crate) fn try_lock_file(path: PathBuf) -> Result<Option<RepoLock>, GitError> {
    let Ok(guard) = mutex_for(&path).try_lock_owned() else {
        return Ok(None);
    };
    let io = |source| GitError::Io {
        path: path.clone(),
        source,
    };
    let file = open_lock_file(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RepoLock {
            _file: file,
            _guard: guard,
        })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_places() {
        assert_eq!(
            lock_file_path(Path::new("/data/clones/proj.git")),
            Path::new("/data/clones/proj.git.lock")
        );
        assert_eq!(
            lock_file_path(Path::new("/src/repo/.git")),
            Path::new("/src/repo/.git/codemill.lock")
        );
    }

    #[tokio::test]
    async fn try_lock_sees_a_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = lock_file(path.clone()).await.unwrap();
        assert!(try_lock_file(path.clone()).unwrap().is_none());
        drop(held);
        assert!(try_lock_file(path).unwrap().is_some());
    }
}
