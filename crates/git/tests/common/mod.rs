//! Test fixtures: small real repositories built with plain git, and an "origin" to clone from.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use codemill_git::{Git, Identity};
use codemill_process::Cmd;
use tempfile::TempDir;

/// Plain git as a user (or an agent) would run it: no codemill hardening, no global config.
pub async fn plain(dir: &Path, args: &[&str]) -> codemill_process::Output {
    Cmd::new("git")
        .args(args)
        .cwd(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Seed")
        .env("GIT_AUTHOR_EMAIL", "seed@example.com")
        .env("GIT_COMMITTER_NAME", "Seed")
        .env("GIT_COMMITTER_EMAIL", "seed@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output(Some(Duration::from_secs(60)), 4 << 20)
        .await
        .unwrap()
}

/// Like [`plain`], panicking on failure; returns trimmed stdout.
pub async fn sh(dir: &Path, args: &[&str]) -> String {
    let out = plain(dir, args).await;
    assert!(
        out.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        out.combined()
    );
    out.stdout.trim().to_owned()
}

pub fn who() -> Identity {
    Identity {
        name: "codemill".into(),
        email: "codemill@example.com".into(),
    }
}

pub fn git() -> Git {
    Git::new().with_timeout(Duration::from_secs(60))
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Write an executable script.
pub fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A seed work repository, a bare "origin" cloned from it, and a (not yet created) clone path.
pub struct Fixture {
    pub tmp: TempDir,
    pub branch: String,
    pub seed: PathBuf,
    pub origin: PathBuf,
    pub clone: PathBuf,
}

impl Fixture {
    pub async fn new(branch: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let seed = tmp.path().join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        sh(&seed, &["init", "-q", "-b", branch]).await;
        write(&seed.join("README.md"), "hello\n");
        write(&seed.join("src/lib.txt"), "one\ntwo\nthree\n");
        write(&seed.join(".gitignore"), "*.log\n");
        sh(&seed, &["add", "-A"]).await;
        sh(&seed, &["commit", "-q", "-m", "initial"]).await;
        let origin = tmp.path().join("origin.git");
        sh(
            tmp.path(),
            &["clone", "-q", "--bare", "seed", origin.to_str().unwrap()],
        )
        .await;
        let clone = tmp.path().join("clones").join("proj.git");
        Fixture {
            tmp,
            branch: branch.to_owned(),
            seed,
            origin,
            clone,
        }
    }

    pub fn url(&self) -> &str {
        self.origin.to_str().unwrap()
    }

    /// A new commit on origin's branch (made in the seed and pushed); returns its sha.
    pub async fn origin_commit(&self, file: &str, text: &str) -> String {
        write(&self.seed.join(file), text);
        sh(&self.seed, &["add", "-A"]).await;
        sh(
            &self.seed,
            &["commit", "-q", "-m", &format!("change {file}")],
        )
        .await;
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        sh(&self.seed, &["push", "-q", self.url(), &refspec]).await;
        sh(&self.seed, &["rev-parse", "HEAD"]).await
    }

    pub fn wt(&self, name: &str) -> PathBuf {
        self.tmp.path().join("worktrees").join(name)
    }

    /// The shared clone, fetched, with one worktree `name` on `codemill/<name>` from origin.
    pub async fn with_worktree(&self, git: &Git, name: &str) -> (PathBuf, String) {
        git.ensure_clone_and_fetch(self.url(), &self.clone)
            .await
            .unwrap();
        let start = format!("origin/{}", self.branch);
        let path = self.wt(name);
        let head = git
            .add_worktree(&self.clone, &path, &format!("codemill/{name}"), &start)
            .await
            .unwrap();
        (path, head)
    }
}
