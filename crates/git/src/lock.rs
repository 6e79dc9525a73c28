//! The per-repository lock around clone, fetch, push and worktree add/remove/prune.
//!
//! Git's own lock files make a second concurrent writer fail instead of wait (`index.lock`,
//! `config.lock`, `packed-refs.lock` exists), so writers of the shared clone queue here: a tokio
//! mutex per canonical clone path within this process, and an advisory file lock on
//! `<clone>.lock` beside the clone across processes (several workers on one machine).
//! The file lock is `flock(2)`, so it is released when the holder dies, crash included.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

use crate::GitError;

type LockMap = Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;

static LOCKS: LazyLock<LockMap> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Held while the clone is being changed; dropping it releases both locks.
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

/// Take the lock for the clone whose canonical path is `key`.
pub(crate) async fn lock_repo(key: &Path) -> Result<RepoLock, GitError> {
    let mutex = {
        // A panic while holding this short map lock leaves the map intact: ignore poisoning.
        let mut map = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.to_owned()).or_default().clone()
    };
    let guard = mutex.lock_owned().await;
    let path = lock_file_path(key);
    let for_thread = path.clone();
    // `File::lock` blocks the thread until another process lets go, so keep it off the runtime.
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&for_thread)?;
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

#[cfg(test)]
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
}
