//! Host-side git for codemill: shared clones, one worktree per ticket, commits, WIP snapshots, pushes.
//!
//! Agents edit files; the host commits and pushes. The worktree, its `.git` file and its admin
//! directory may all have been written by an agent, so every git process started here:
//! - gets `-c core.hooksPath=/dev/null -c core.fsmonitor=false` and friends (module `run`), so no hook
//!   or fsmonitor program from repository config ever runs on the host;
//! - is pointed at its repository explicitly (`GIT_DIR`, `GIT_COMMON_DIR`, `GIT_WORK_TREE`) after
//!   checking that a worktree's admin directory really belongs to it (module `repo`);
//! - has program-running keys in repository config overridden or refused;
//! - runs through [`codemill_process::Cmd`]: argument list, own process group, stdin null,
//!   timeout, capped output.
//!
//! HTTPS remotes that need credentials (GitHub tokens) get them as one header per URL prefix
//! ([`HttpAuth`], [`Git::with_http_auth`]): handed to git in the environment, only for commands
//! that contact a remote, never as an argument, in a remote URL or in a config file, and scrubbed
//! from anything git prints. Extra headers found in config files are cleared so they are never
//! sent alongside or instead of it (module `auth`, `SAFETY_CONFIG` in module `run`, and the
//! config check in module `repo`).
//!
//! Writers of a shared clone (clone, fetch, push, worktree add/remove/prune) take a
//! per-repository lock, in-process and across processes (module `lock`).
//!
//! Staying cheap: a worktree's files are staged in an index codemill keeps outside the agent's
//! reach, so only changed files are hashed again (module `index`); the config check's verdict is
//! reused while the repository's config files are unchanged (module `repo`).

mod auth;
mod bundle;
mod clone;
mod index;
mod lock;
mod merge;
mod repo;
mod run;
mod tmp;
mod tree;
mod worktree;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use auth::HttpAuth;
pub use codemill_process::ProcessError;
pub use merge::{Merged, Picked};

/// Who the host's commits are by; passed on every commit so no global git config is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// What [`Git::probe_remote`] learned about a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInfo {
    /// The branch the remote's `HEAD` points at, e.g. `main`.
    pub default_branch: String,
}

/// One entry of `git worktree list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeInfo {
    pub path: PathBuf,
    /// `None` for the bare clone itself or an unborn branch.
    pub head: Option<String>,
    /// Full ref name (`refs/heads/...`), `None` when detached or bare.
    pub branch: Option<String>,
    pub bare: bool,
    /// The lock reason when the worktree is locked (`initializing` while `worktree add` runs).
    pub locked: Option<String>,
    /// Registered, but its directory is gone.
    pub prunable: bool,
}

/// What to do when a project's repository is a working copy whose checked-out branch is the
/// one codemill lands on: git refuses to move a checked-out branch by a push.
pub const CHECKED_OUT_ADVICE: &str = "use a bare repository (`git clone --bare`) as the \
    project's repository, or run `git config receive.denyCurrentBranch updateInstead` in the \
    working copy so a push updates its files too";

/// Whether a failed push was refused because the branch is checked out in the receiving
/// working copy.
pub fn refused_checked_out(error: &str) -> bool {
    error.contains("refusing to update checked out branch")
}

/// How a command ended, for a message: `exit 128`, or `killed by a signal` without a code.
fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit {code}"),
        None => "killed by a signal".into(),
    }
}

/// Errors from host git operations; each names the repository or command concerned.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path_or_url} is not a git repository: {detail}")]
    NotARepository { path_or_url: String, detail: String },
    #[error("{path} is not a usable worktree: {detail}")]
    NotAWorktree { path: PathBuf, detail: String },
    #[error("`{command}` failed ({}): {stderr}", exit_text(*code))]
    Command {
        command: String,
        stderr: String,
        code: Option<i32>,
    },
    #[error("`{command}` did not finish within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("`{command}` printed more output than codemill keeps")]
    OutputTooLarge { command: String },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "repository config of {repo} sets `{key}`, which makes git run a program; \
         codemill does not run programs named by repository config (set it in the global config instead)"
    )]
    UnsafeConfig { repo: PathBuf, key: String },
    #[error("{path} is already a worktree but {detail}")]
    WorktreeConflict { path: PathBuf, detail: String },
    #[error("{path} exists and is not what codemill expected there; refusing to overwrite it")]
    PathOccupied { path: PathBuf },
    #[error("cannot tell the default branch of {repo}: {detail}")]
    NoDefaultBranch { repo: String, detail: String },
    #[error("unexpected output from `{command}`: {detail}")]
    Unexpected { command: String, detail: String },
}

/// The host git wrapper. Cheap to clone; clones share a cache of config-check verdicts (see
/// module `repo`); locks are global.
#[derive(Debug, Clone)]
pub struct Git {
    program: PathBuf,
    timeout: Duration,
    output_cap: usize,
    diff_cap: usize,
    standalone_worktrees: bool,
    config_cache: Arc<repo::ConfigCache>,
    /// Sent by fetch, push and ls-remote to URLs under its prefix (see module `auth`).
    http_auth: Option<HttpAuth>,
}

impl Default for Git {
    fn default() -> Self {
        Git::new()
    }
}

impl Git {
    /// `git` from PATH, 10-minute timeout per command, 1 MiB cap on diffs.
    pub fn new() -> Self {
        Git {
            program: PathBuf::from("git"),
            timeout: Duration::from_secs(600),
            output_cap: 64 * 1024 * 1024,
            diff_cap: 1024 * 1024,
            standalone_worktrees: false,
            config_cache: Arc::default(),
            http_auth: None,
        }
    }

    /// Use another git binary.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        // Verdicts were reached by another git.
        self.config_cache = Arc::default();
        self
    }

    /// Kill any single git command (and its process group) after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also accept a standalone repository (its own `.git` directory) where a worktree is
    /// expected, in [`Git::is_dirty`], [`Git::commit_all`], [`Git::snapshot_wip`], [`Git::diff`]
    /// of the files and [`Git::push`]. Off by default: for a ticket worktree this shape means
    /// the agent replaced the `.git` file with a repository of its own (config, remote URL,
    /// refs). For tests and tools working on ordinary repositories.
    pub fn allow_standalone_worktrees(mut self, allow: bool) -> Self {
        self.standalone_worktrees = allow;
        self
    }

    /// The same git whose every call carries `auth` (scoped by git to URLs under its prefix).
    ///
    /// "Every call" that can contact a remote: fetch, push and ls-remote (so clone, fetch,
    /// probing, remote refs and push); other commands never get the header. `None` removes it.
    /// The result shares this value's config-check cache and locks.
    pub fn with_http_auth(&self, auth: Option<HttpAuth>) -> Git {
        Git {
            http_auth: auth,
            ..self.clone()
        }
    }

    /// How many bytes of [`Git::diff`] output to keep (head and tail, with a truncation note).
    pub fn with_diff_cap(mut self, cap: usize) -> Self {
        self.diff_cap = cap.max(1024);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Argument checks. Git validates names itself; these keep caller text from being read as an
// option (`-x`) or from smuggling a second line into a command.

fn invalid(what: &'static str, value: &str, reason: &'static str) -> GitError {
    GitError::InvalidArgument {
        what,
        value: value.to_owned(),
        reason,
    }
}

pub(crate) fn check_rev(what: &'static str, value: &str) -> Result<(), GitError> {
    if value.is_empty() {
        return Err(invalid(what, value, "is empty"));
    }
    if value.starts_with('-') {
        return Err(invalid(what, value, "starts with '-'"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(invalid(what, value, "contains a control character"));
    }
    Ok(())
}

/// The rules of `git check-ref-format` that matter for names codemill builds.
pub(crate) fn check_ref_name(what: &'static str, value: &str) -> Result<(), GitError> {
    check_rev(what, value)?;
    let bad_char = |c: char| c.is_whitespace() || "~^:?*[\\".contains(c);
    if value.chars().any(bad_char) {
        return Err(invalid(
            what,
            value,
            "contains a character git forbids in ref names",
        ));
    }
    if value.contains("..") || value.contains("@{") || value.contains("//") || value == "@" {
        return Err(invalid(what, value, "is not a valid ref name"));
    }
    if value.starts_with('/') || value.ends_with('/') || value.ends_with('.') {
        return Err(invalid(what, value, "is not a valid ref name"));
    }
    if value
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err(invalid(what, value, "is not a valid ref name"));
    }
    Ok(())
}

pub(crate) fn check_identity(who: &Identity) -> Result<(), GitError> {
    for (what, v) in [("author name", &who.name), ("author email", &who.email)] {
        if v.trim().is_empty() {
            return Err(invalid(what, v, "is empty"));
        }
        if v.chars().any(|c| c.is_control() || c == '<' || c == '>') {
            return Err(invalid(what, v, "contains '<', '>' or a control character"));
        }
    }
    Ok(())
}

pub(crate) fn is_hex_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        assert!(check_ref_name("branch", "codemill/PROJ-1").is_ok());
        assert!(check_ref_name("branch", "-x").is_err());
        assert!(check_ref_name("branch", "a..b").is_err());
        assert!(check_ref_name("branch", "a b").is_err());
        assert!(check_ref_name("branch", "a/.hidden").is_err());
        assert!(check_ref_name("branch", "x.lock").is_err());
        assert!(check_ref_name("branch", "a\nb").is_err());
    }

    #[test]
    fn identities() {
        let ok = Identity {
            name: "codemill".into(),
            email: "bot@example.com".into(),
        };
        assert!(check_identity(&ok).is_ok());
        let bad = Identity {
            name: "x>".into(),
            email: "bot@example.com".into(),
        };
        assert!(check_identity(&bad).is_err());
    }
}
