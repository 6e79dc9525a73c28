//! Remotes and the shared clone: probing, clone and fetch, default branch, remote refs, push.

use std::path::{Path, PathBuf};

use crate::lock::lock_repo;
use crate::repo::{Ctx, Layout, canonical_or_joined, looks_bare};
use crate::run::{Call, redact};
use crate::{Git, GitError, RemoteInfo, check_ref_name, check_rev};

const FETCH_REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";
// Named explicitly so a `remote.*.uploadpack`/`receivepack` in config is never what runs locally.
const UPLOAD_PACK: &str = "--upload-pack=git-upload-pack";
const RECEIVE_PACK: &str = "--receive-pack=git-receive-pack";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A URL as given, or an existing local path made absolute (a relative path would later be
/// resolved against the clone's directory).
fn normalize_url(url: &str) -> Result<String, GitError> {
    check_rev("repository URL", url)?;
    let as_path = Path::new(url);
    if !url.contains("://") && as_path.exists() {
        let abs = as_path.canonicalize().map_err(io_err(as_path))?;
        return Ok(abs.to_string_lossy().into_owned());
    }
    Ok(url.to_owned())
}

/// The branch named by `ref: refs/heads/<branch>\tHEAD` in `ls-remote --symref` output.
fn symref_head(out: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let (target, name) = line.strip_prefix("ref: ")?.split_once('\t')?;
        (name == "HEAD").then_some(())?;
        target.strip_prefix("refs/heads/").map(str::to_owned)
    })
}

/// The object named exactly `refname` in `ls-remote` output.
fn find_ref(out: &str, refname: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let (sha, name) = line.split_once('\t')?;
        (name == refname).then(|| sha.to_owned())
    })
}

impl Git {
    /// Check that `url` (a URL or local path) is a git repository reachable now, and return its
    /// default branch. Any failure to list it is [`GitError::NotARepository`] naming `url`.
    pub async fn probe_remote(&self, url: &str) -> Result<RemoteInfo, GitError> {
        let not_repo = |detail: String| GitError::NotARepository {
            path_or_url: redact(url),
            detail,
        };
        let target = normalize_url(url)?;
        let call = Call::new(["ls-remote", "--symref", UPLOAD_PACK, "--", &target, "HEAD"]);
        let out = self.output(None, call).await?;
        if !out.success() {
            let detail = redact(out.stderr.trim());
            return Err(not_repo(if detail.is_empty() {
                format!("git ls-remote exited with {:?}", out.code())
            } else {
                detail
            }));
        }
        match symref_head(&out.stdout) {
            Some(default_branch) => Ok(RemoteInfo { default_branch }),
            None => Err(GitError::NoDefaultBranch {
                repo: redact(url),
                detail: if out.stdout.trim().is_empty() {
                    "the repository has no commits".into()
                } else {
                    "its HEAD is not a branch".into()
                },
            }),
        }
    }

    /// Make sure a bare clone of `url` exists at `dir` with the fetch refspec
    /// `+refs/heads/*:refs/remotes/origin/*`, then `fetch --prune origin` and record the remote's
    /// HEAD as `refs/remotes/origin/HEAD`.
    ///
    /// A new clone is built in `.<name>.partial` beside `dir` and renamed into place only when
    /// complete, so a crash never leaves a half-made clone at `dir`; the next call throws the
    /// partial one away. An existing empty directory is replaced; a non-empty directory that is
    /// not a git repository is refused, never deleted. Takes the repository lock.
    pub async fn ensure_clone_and_fetch(&self, url: &str, dir: &Path) -> Result<(), GitError> {
        let url = normalize_url(url)?;
        let abs = std::path::absolute(dir).map_err(io_err(dir))?;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Err(GitError::InvalidArgument {
                what: "clone directory",
                value: dir.display().to_string(),
                reason: "has no parent directory",
            });
        };
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        // Canonical like every other lock key, so a symlinked clone path shares the same lock.
        let key = canonical_or_joined(&abs)?;
        let _lock = lock_repo(&key).await?;

        if key.exists() {
            if looks_bare(&key) {
                let ctx = self.guard_config(Ctx::bare(key.clone()), dir).await?;
                self.configure_origin(&ctx, &url).await?;
                return self.fetch_origin(&ctx).await;
            }
            let empty = std::fs::read_dir(&key)
                .map_err(io_err(&key))?
                .next()
                .is_none();
            if !empty {
                return Err(GitError::PathOccupied { path: abs });
            }
            std::fs::remove_dir(&key).map_err(io_err(&key))?;
        }

        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(".partial");
        let partial: PathBuf = key.with_file_name(partial_name);
        if std::fs::symlink_metadata(&partial).is_ok() {
            tracing::info!(path = %partial.display(), "removing a clone left half-made by a crash");
            std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
        }
        // No templates: nothing (sample hooks included) is copied into the clone.
        let init = Call::new([
            "init".as_ref(),
            "--bare".as_ref(),
            "--quiet".as_ref(),
            "--template=".as_ref(),
            "--".as_ref(),
            partial.as_os_str(),
        ]);
        self.run(None, init).await?;
        let ctx = Ctx::bare(partial.clone());
        self.configure_origin(&ctx, &url).await?;
        self.fetch_origin(&ctx).await?;
        std::fs::rename(&partial, &key).map_err(io_err(&key))?;
        tracing::info!(url = %redact(&url), dir = %key.display(), "cloned");
        Ok(())
    }

    /// Point `origin` at `url` with codemill's fetch refspec, changing only what differs.
    ///
    /// Plain `git config`, not `git remote`: some `git remote` subcommands do not load the core
    /// config and so run hooks from the repository's hooks directory despite
    /// `core.hooksPath=/dev/null` (measured with `remote set-head` on git 2.47).
    async fn configure_origin(&self, ctx: &Ctx, url: &str) -> Result<(), GitError> {
        let current = self
            .output(
                Some(ctx),
                Call::new(["config", "--get", "remote.origin.url"]),
            )
            .await?;
        let current = current.success().then(|| current.stdout.trim().to_owned());
        if current.as_deref() != Some(url) {
            if let Some(existing) = &current {
                tracing::info!(from = %redact(existing), to = %redact(url), "repository URL changed");
            }
            self.run(
                Some(ctx),
                Call::new(["config", "--replace-all", "remote.origin.url", url]),
            )
            .await?;
        }
        let refspecs = self
            .output(
                Some(ctx),
                Call::new(["config", "--get-all", "remote.origin.fetch"]),
            )
            .await?;
        if refspecs.stdout.trim() != FETCH_REFSPEC {
            self.run(
                Some(ctx),
                Call::new([
                    "config",
                    "--replace-all",
                    "remote.origin.fetch",
                    FETCH_REFSPEC,
                ]),
            )
            .await?;
        }
        Ok(())
    }

    async fn fetch_origin(&self, ctx: &Ctx) -> Result<(), GitError> {
        self.run(
            Some(ctx),
            Call::new(["fetch", "--prune", "--quiet", UPLOAD_PACK, "origin"]),
        )
        .await?;
        // Record the remote's HEAD as `refs/remotes/origin/HEAD` (what `remote set-head --auto`
        // does, without `git remote`: see `configure_origin`).
        let listed = self
            .run(
                Some(ctx),
                Call::new(["ls-remote", "--symref", UPLOAD_PACK, "origin", "HEAD"]),
            )
            .await?;
        let Some(branch) = symref_head(&listed) else {
            // An empty remote has no HEAD to follow; that is not an error for the clone itself.
            tracing::warn!(repo = %ctx.common_dir.display(), "the remote has no HEAD branch");
            return Ok(());
        };
        let target = format!("refs/remotes/origin/{branch}");
        if check_ref_name("branch", &branch).is_err()
            || self.rev_parse_in(ctx, &target).await?.is_none()
        {
            tracing::warn!(repo = %ctx.common_dir.display(), branch, "the remote's HEAD names a branch that was not fetched");
            return Ok(());
        }
        self.run(
            Some(ctx),
            Call::new([
                "symbolic-ref",
                "-m",
                "codemill: remote HEAD",
                "refs/remotes/origin/HEAD",
                &target,
            ]),
        )
        .await?;
        Ok(())
    }

    /// The remote's default branch as last fetched (`refs/remotes/origin/HEAD`), asking the
    /// remote (`ls-remote --symref origin HEAD`) when that was never recorded.
    pub async fn default_branch(&self, clone: &Path) -> Result<String, GitError> {
        let ctx = self.ctx(clone).await?;
        let out = self
            .output(
                Some(&ctx),
                Call::new(["symbolic-ref", "-q", "refs/remotes/origin/HEAD"]),
            )
            .await?;
        if out.success()
            && let Some(branch) = out.stdout.trim().strip_prefix("refs/remotes/origin/")
        {
            return Ok(branch.to_owned());
        }
        let listed = self
            .run(
                Some(&ctx),
                Call::new(["ls-remote", "--symref", UPLOAD_PACK, "origin", "HEAD"]),
            )
            .await?;
        symref_head(&listed).ok_or_else(|| GitError::NoDefaultBranch {
            repo: clone.display().to_string(),
            detail: "the remote has no HEAD branch".into(),
        })
    }

    /// The object `refname` (exact, e.g. `refs/heads/main`) names in the repository at
    /// `url_or_repo` (a URL or local path), via `ls-remote`; `None` when there is no such ref.
    pub async fn remote_ref(
        &self,
        url_or_repo: &str,
        refname: &str,
    ) -> Result<Option<String>, GitError> {
        check_ref_name("ref name", refname)?;
        let target = normalize_url(url_or_repo)?;
        let out = self
            .run(
                None,
                Call::new(["ls-remote", UPLOAD_PACK, "--", &target, refname]),
            )
            .await?;
        Ok(find_ref(&out, refname))
    }

    /// Push commit `sha` to `refs/heads/<branch>` on `origin` of the clone (or of the clone a
    /// worktree belongs to).
    ///
    /// Look before acting: when the remote branch already is `sha`, nothing is sent. Otherwise
    /// the push is forced with a lease on the value just seen, so a re-run can move codemill's
    /// own branch (e.g. after a rewrite) but never overwrites a push that happened in between.
    /// Takes the repository lock (the push updates `refs/remotes/origin/<branch>` in the clone).
    pub async fn push(
        &self,
        clone_or_worktree: &Path,
        sha: &str,
        branch: &str,
    ) -> Result<(), GitError> {
        check_rev("commit", sha)?;
        check_ref_name("branch", branch)?;
        let ctx = self.ctx(clone_or_worktree).await?;
        if ctx.layout != Layout::Bare {
            // A worktree's remote comes from its clone's config; a standalone repository's
            // config (remote URL included) could be the agent's.
            self.need_work_tree(&ctx, clone_or_worktree)?;
        }
        let _lock = lock_repo(&ctx.common_dir).await?;
        let commit = self
            .rev_parse_in(&ctx, &format!("{sha}^{{commit}}"))
            .await?
            .ok_or_else(|| GitError::InvalidArgument {
                what: "commit",
                value: sha.to_owned(),
                reason: "does not exist in the repository",
            })?;
        let remote_ref = format!("refs/heads/{branch}");
        let listed = self
            .run(
                Some(&ctx),
                Call::new(["ls-remote", UPLOAD_PACK, "origin", &remote_ref]),
            )
            .await?;
        let current = find_ref(&listed, &remote_ref);
        if current.as_deref() == Some(commit.as_str()) {
            tracing::debug!(branch, sha = %commit, "remote already has this commit; not pushing");
            return Ok(());
        }
        let lease = format!(
            "--force-with-lease={remote_ref}:{}",
            current.as_deref().unwrap_or("")
        );
        let refspec = format!("{commit}:{remote_ref}");
        self.run(
            Some(&ctx),
            Call::new([
                "push",
                "--porcelain",
                "--quiet",
                "--no-verify",
                &lease,
                RECEIVE_PACK,
                "origin",
                &refspec,
            ]),
        )
        .await?;
        tracing::info!(branch, sha = %commit, "pushed");
        Ok(())
    }

    /// `git gc` on a shared clone (auto gc is off in every call). Takes the repository lock.
    pub async fn gc(&self, clone: &Path) -> Result<(), GitError> {
        let ctx = self.ctx(clone).await?;
        let _lock = lock_repo(&ctx.common_dir).await?;
        self.run(Some(&ctx), Call::new(["gc", "--quiet"])).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ls_remote() {
        let out = "ref: refs/heads/trunk\tHEAD\nabc\tHEAD\n";
        assert_eq!(symref_head(out).as_deref(), Some("trunk"));
        let out = "abc\trefs/heads/main\ndef\trefs/remotes/x/refs/heads/main\n";
        assert_eq!(find_ref(out, "refs/heads/main").as_deref(), Some("abc"));
        assert_eq!(find_ref(out, "refs/heads/other"), None);
    }
}
