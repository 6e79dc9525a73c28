//! Remotes and the shared clone: probing, clone and fetch, default branch, remote refs, push.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::lock::lock_repo;
use crate::repo::{Ctx, Layout, OriginConfig, canonical_or_joined, looks_bare};
use crate::run::{Call, command_error, redact, shown};
use crate::{Git, GitError, RemoteInfo, check_ref_name, check_rev};

const FETCH_REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";
const ORIGIN_HEAD: &str = "refs/remotes/origin/HEAD";
/// A fetch asks the remote for its HEAD again when the recorded one is older than this (a
/// remote's default branch rarely changes; a missing or dangling record is refreshed at once).
const ORIGIN_HEAD_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
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

/// `refs/remotes/origin/HEAD` as codemill's clones store it, read without git: a loose symref
/// file `ref: refs/remotes/origin/<branch>`. Returns the branch, whether `origin/<branch>` is a
/// loose ref (then it certainly exists; otherwise git is asked), and when the record was
/// written. `None` (ask git) for anything else.
/// The clone's `refs/` is written only by codemill (the sandbox binds it read-only), and the
/// branch name is checked like any other; anything unexpected is left to git.
fn loose_origin_head(common_dir: &Path) -> Option<(String, bool, SystemTime)> {
    let file = common_dir.join(ORIGIN_HEAD);
    let meta = std::fs::symlink_metadata(&file).ok()?;
    if !meta.is_file() || meta.len() > 1024 {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let branch = text
        .strip_suffix('\n')?
        .strip_prefix("ref: refs/remotes/origin/")?;
    if branch == "HEAD" || check_ref_name("branch", branch).is_err() {
        return None;
    }
    let target = common_dir.join("refs/remotes/origin").join(branch);
    let loose = std::fs::symlink_metadata(target).is_ok_and(|m| m.is_file());
    Some((branch.to_owned(), loose, meta.modified().ok()?))
}

/// Whether `push --porcelain` output reports a ref rejected because the lease did not hold.
fn stale_lease(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with('!') && l.ends_with("[rejected] (stale info)"))
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
    /// `+refs/heads/*:refs/remotes/origin/*`, then `fetch --prune origin`. The remote's HEAD is
    /// recorded as `refs/remotes/origin/HEAD` when cloning, and asked for again only when that
    /// record is missing, names a branch that no longer exists, or is more than a day old.
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
                return self.fetch_origin(&ctx, false).await;
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
        // Just made by `init` with no templates: no origin yet.
        let ctx = Ctx::bare(partial.clone());
        self.configure_origin(&ctx, &url).await?;
        self.fetch_origin(&ctx, true).await?;
        std::fs::rename(&partial, &key).map_err(io_err(&key))?;
        tracing::info!(url = %redact(&url), dir = %key.display(), "cloned");
        Ok(())
    }

    /// Point `origin` at `url` with codemill's fetch refspec, changing only what differs.
    ///
    /// What is there comes from the config check of `ctx` (`ctx.origin`, as `git config --get`
    /// and `--get-all` would print it), so nothing runs when nothing differs.
    ///
    /// Plain `git config`, not `git remote`: some `git remote` subcommands do not load the core
    /// config and so run hooks from the repository's hooks directory despite
    /// `core.hooksPath=/dev/null` (measured with `remote set-head` on git 2.47).
    async fn configure_origin(&self, ctx: &Ctx, url: &str) -> Result<(), GitError> {
        let OriginConfig { fetch, .. } = &ctx.origin;
        let current = ctx.origin.url();
        if current != Some(url) {
            if let Some(existing) = current {
                tracing::info!(from = %redact(existing), to = %redact(url), "repository URL changed");
            }
            self.run(
                Some(ctx),
                Call::new(["config", "--replace-all", "remote.origin.url", url]),
            )
            .await?;
        }
        if fetch.join("\n").trim() != FETCH_REFSPEC {
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

    /// `fetch --prune origin`; then record the remote's HEAD if `cloned`, or if the recorded one
    /// is missing, dangling or old (see [`ORIGIN_HEAD_MAX_AGE`]).
    async fn fetch_origin(&self, ctx: &Ctx, cloned: bool) -> Result<(), GitError> {
        self.run(
            Some(ctx),
            Call::new(["fetch", "--prune", "--quiet", UPLOAD_PACK, "origin"]),
        )
        .await?;
        let refresh = cloned
            || match loose_origin_head(&ctx.common_dir) {
                Some((branch, loose, written)) => {
                    let old = SystemTime::now()
                        .duration_since(written)
                        .is_ok_and(|age| age > ORIGIN_HEAD_MAX_AGE);
                    old || (!loose && !self.origin_branch_exists(ctx, &branch).await?)
                }
                None => self.recorded_default_branch(ctx).await?.is_none(),
            };
        if refresh {
            self.record_origin_head(ctx).await?;
        }
        Ok(())
    }

    async fn origin_branch_exists(&self, ctx: &Ctx, branch: &str) -> Result<bool, GitError> {
        let target = format!("refs/remotes/origin/{branch}");
        Ok(self.rev_parse_in(ctx, &target).await?.is_some())
    }

    /// The branch `refs/remotes/origin/HEAD` names, if it is recorded and that branch exists.
    async fn recorded_default_branch(&self, ctx: &Ctx) -> Result<Option<String>, GitError> {
        if let Some((branch, loose, _)) = loose_origin_head(&ctx.common_dir) {
            let exists = loose || self.origin_branch_exists(ctx, &branch).await?;
            return Ok(exists.then_some(branch));
        }
        let out = self
            .output(Some(ctx), Call::new(["symbolic-ref", "-q", ORIGIN_HEAD]))
            .await?;
        let Some(branch) = out
            .success()
            .then(|| out.stdout.trim().strip_prefix("refs/remotes/origin/"))
            .flatten()
        else {
            return Ok(None);
        };
        if check_ref_name("branch", branch).is_err()
            || !self.origin_branch_exists(ctx, branch).await?
        {
            return Ok(None);
        }
        Ok(Some(branch.to_owned()))
    }

    /// Record the remote's HEAD as `refs/remotes/origin/HEAD` (what `remote set-head --auto`
    /// does, without `git remote`: see `configure_origin`).
    async fn record_origin_head(&self, ctx: &Ctx) -> Result<(), GitError> {
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
                ORIGIN_HEAD,
                &target,
            ]),
        )
        .await?;
        Ok(())
    }

    /// The remote's default branch as last fetched (`refs/remotes/origin/HEAD`), asking the
    /// remote (`ls-remote --symref origin HEAD`) when that was never recorded or names a branch
    /// that is gone.
    pub async fn default_branch(&self, clone: &Path) -> Result<String, GitError> {
        let ctx = self.ctx(clone).await?;
        if let Some(branch) = self.recorded_default_branch(&ctx).await? {
            return Ok(branch);
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

    /// Fetch the ref `refname` (exact, e.g. `refs/pull/7/head`) of the clone's `origin` into
    /// `local` and return the commit it names; `None` when `origin` has no such ref. For refs
    /// the clone's refspec does not bring, such as a forge's pull request heads, which outlive
    /// the branch. `local` should lie outside `refs/remotes/origin/`, which `fetch --prune`
    /// empties of what the refspec does not bring. Takes the repository lock.
    pub async fn fetch_ref(
        &self,
        clone: &Path,
        refname: &str,
        local: &str,
    ) -> Result<Option<String>, GitError> {
        check_ref_name("ref name", refname)?;
        check_ref_name("ref name", local)?;
        let ctx = self.ctx(clone).await?;
        let _lock = lock_repo(&ctx.common_dir).await?;
        let listed = self
            .run(
                Some(&ctx),
                Call::new(["ls-remote", UPLOAD_PACK, "origin", refname]),
            )
            .await?;
        if find_ref(&listed, refname).is_none() {
            return Ok(None);
        }
        let refspec = format!("+{refname}:{local}");
        self.run(
            Some(&ctx),
            Call::new([
                "fetch",
                "--quiet",
                "--no-tags",
                UPLOAD_PACK,
                "origin",
                &refspec,
            ]),
        )
        .await?;
        self.rev_parse_in(&ctx, &format!("{local}^{{commit}}"))
            .await
    }

    /// Push commit `sha` to `refs/heads/<branch>` on `origin` of the clone (or of the clone a
    /// worktree belongs to).
    ///
    /// Idempotent, and never overwrites a push it has not seen: the push is forced with a lease
    /// on what the clone last saw of the branch (`refs/remotes/origin/<branch>`, updated by
    /// fetches and by this push; absent = the branch must not exist). When the remote already
    /// is `sha`, git reports it up to date and sends nothing. When the lease does not hold, the
    /// remote is looked at (`ls-remote`): already `sha` is success; otherwise the push is
    /// repeated with a lease on the value just seen, so a re-run can move codemill's own branch
    /// (e.g. after a rewrite) but never overwrites a push that happened in between.
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
        let refspec = format!("{commit}:{remote_ref}");
        let push = |lease: String| {
            Call::new([
                "push",
                "--porcelain",
                "--quiet",
                "--no-verify",
                &lease,
                RECEIVE_PACK,
                "origin",
                &refspec,
            ])
        };
        // No value: git takes it from the remote-tracking ref, or expects no branch without one.
        let first = push(format!("--force-with-lease={remote_ref}"));
        let shown_first = shown(["push", "origin", &refspec]);
        let out = self.output(Some(&ctx), first).await?;
        if out.success() {
            tracing::info!(branch, sha = %commit, "pushed");
            return Ok(());
        }
        if !stale_lease(&out.stdout) {
            return Err(command_error(shown_first, &out));
        }
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
        self.run(Some(&ctx), push(lease)).await?;
        tracing::info!(branch, sha = %commit, "pushed");
        Ok(())
    }

    /// Move the remote's `branch` from exactly `expected` to `sha` (a descendant of it, so a
    /// fast-forward): `false`, with nothing changed, when the remote's branch is no longer at
    /// `expected` — someone else moved it since. How a merge queue lands exactly the commit it
    /// tested and never overwrites anything.
    pub async fn push_exact(
        &self,
        clone: &Path,
        sha: &str,
        branch: &str,
        expected: &str,
    ) -> Result<bool, GitError> {
        check_rev("commit", sha)?;
        check_rev("expected commit", expected)?;
        check_ref_name("branch", branch)?;
        let ctx = self.ctx(clone).await?;
        if ctx.layout != Layout::Bare {
            self.need_work_tree(&ctx, clone)?;
        }
        let _lock = lock_repo(&ctx.common_dir).await?;
        let remote_ref = format!("refs/heads/{branch}");
        let refspec = format!("{sha}:{remote_ref}");
        let lease = format!("--force-with-lease={remote_ref}:{expected}");
        let args = [
            "push",
            "--porcelain",
            "--quiet",
            "--no-verify",
            lease.as_str(),
            RECEIVE_PACK,
            "origin",
            refspec.as_str(),
        ];
        let out = self.output(Some(&ctx), Call::new(args)).await?;
        if out.success() {
            tracing::info!(branch, sha, "pushed the tested commit");
            return Ok(true);
        }
        let moved = out.stdout.lines().any(|l| {
            l.starts_with('!')
                && (l.ends_with("[rejected] (stale info)") || l.contains("(non-fast-forward)"))
        });
        if moved {
            return Ok(false);
        }
        Err(command_error(shown(["push", "origin", &refspec]), &out))
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
        let rejected = "To /r.git\n!\tabc:refs/heads/x\t[rejected] (stale info)\nDone\n";
        assert!(stale_lease(rejected));
        let declined = "To /r.git\n!\tabc:refs/heads/x\t[remote rejected] (hook declined)\n";
        assert!(!stale_lease(declined));
    }
}
