//! Finding the real git directories of a clone or worktree without trusting agent-writable files.
//!
//! A linked worktree's `.git` file and its admin directory (`<clone>/worktrees/<name>`) are
//! writable by the agent. Followed blindly, a rewritten `.git` file or `commondir` file would let
//! the agent hand host git a config and hooks of its choosing. So the admin directory must sit in
//! a `worktrees/` directory of a repository outside the worktree and point back at the worktree,
//! and every call then names `GIT_DIR`, `GIT_COMMON_DIR` and `GIT_WORK_TREE` explicitly.
//! Repository-local config keys that would run programs are then overridden or refused; that
//! verdict is cached per repository while its config files stay unchanged (see [`ConfigCache`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::lock::lock_file_path;
use crate::run::Call;
use crate::{Git, GitError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A bare repository (codemill's shared clones).
    Bare,
    /// A repository with its `.git` directory inside the work tree.
    Main,
    /// A linked worktree of some repository.
    Linked,
}

/// Where git should look for everything, fixed before any command runs.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) layout: Layout,
    /// The directory git keeps per-worktree state in (`HEAD`, `index`).
    pub(crate) git_dir: PathBuf,
    /// The shared repository: objects, refs, config. Also the lock key.
    pub(crate) common_dir: PathBuf,
    pub(crate) work_tree: Option<PathBuf>,
    overrides: Vec<(String, String)>,
    /// `remote.origin.*` as the config check read it (empty for a context not checked).
    pub(crate) origin: OriginConfig,
}

/// The `remote.origin.url` and `remote.origin.fetch` values in effect (all scopes, in order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OriginConfig {
    pub(crate) urls: Vec<String>,
    pub(crate) fetch: Vec<String>,
}

impl OriginConfig {
    /// What `git config --get remote.origin.url` prints: the last value.
    pub(crate) fn url(&self) -> Option<&str> {
        self.urls.last().map(String::as_str)
    }
}

impl Ctx {
    pub(crate) fn bare(dir: PathBuf) -> Ctx {
        Ctx {
            layout: Layout::Bare,
            git_dir: dir.clone(),
            common_dir: dir,
            work_tree: None,
            overrides: Vec::new(),
            origin: OriginConfig::default(),
        }
    }

    /// Take over the config overrides of `other`, a context of the same repository whose
    /// config was checked (for a worktree just created from it, before anything else ran there).
    pub(crate) fn with_overrides_of(mut self, other: &Ctx) -> Ctx {
        self.overrides = other.overrides.clone();
        self
    }

    pub(crate) fn cwd(&self) -> &Path {
        self.work_tree.as_deref().unwrap_or(&self.git_dir)
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, OsString)> {
        let mut env = vec![("GIT_DIR", self.git_dir.clone().into_os_string())];
        if self.layout == Layout::Linked {
            env.push(("GIT_COMMON_DIR", self.common_dir.clone().into_os_string()));
        }
        if let Some(wt) = &self.work_tree {
            env.push(("GIT_WORK_TREE", wt.clone().into_os_string()));
        }
        env
    }

    pub(crate) fn overrides(&self) -> &[(String, String)] {
        &self.overrides
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + '_ {
    move |source| GitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `path` made absolute and canonical; the path need not exist beyond its parent.
pub(crate) fn canonical_or_joined(path: &Path) -> Result<PathBuf, GitError> {
    let abs = std::path::absolute(path).map_err(io_err(path))?;
    if let Ok(c) = abs.canonicalize() {
        return Ok(c);
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => match parent.canonicalize() {
            Ok(p) => Ok(p.join(name)),
            Err(_) => Ok(abs),
        },
        _ => Ok(abs),
    }
}

pub(crate) fn looks_bare(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir()
}

/// Read a `gitdir: <path>` style pointer file; relative paths are relative to `base`.
fn read_pointer(file: &Path, prefix: &str, base: &Path) -> Result<PathBuf, String> {
    let text = fs_err::read_to_string(file).map_err(|e| e.to_string())?;
    let line = text.lines().next().unwrap_or("").trim_end();
    let target = if prefix.is_empty() {
        line
    } else {
        line.strip_prefix(prefix)
            .ok_or_else(|| format!("{} does not start with `{prefix}`", file.display()))?
    };
    if target.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    Ok(base.join(target))
}

/// Work out the layout of `path` (a bare clone, a repository, or a linked worktree).
pub(crate) fn resolve(path: &Path) -> Result<Ctx, GitError> {
    let not_repo = |detail: String| GitError::NotARepository {
        path_or_url: path.display().to_string(),
        detail,
    };
    let dir = path
        .canonicalize()
        .map_err(|e| not_repo(format!("cannot open: {e}")))?;
    let dot_git = dir.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git);
    match meta {
        Ok(m) if m.is_file() => resolve_linked(path, &dir, &dot_git),
        Ok(m) if m.is_dir() => Ok(Ctx {
            layout: Layout::Main,
            git_dir: dot_git.clone(),
            common_dir: dot_git,
            work_tree: Some(dir),
            overrides: Vec::new(),
            origin: OriginConfig::default(),
        }),
        Ok(_) => Err(not_repo(".git is neither a file nor a directory".into())),
        Err(_) if looks_bare(&dir) => Ok(Ctx::bare(dir)),
        Err(_) => Err(not_repo("no .git and not a bare repository".into())),
    }
}

fn resolve_linked(path: &Path, work_tree: &Path, dot_git: &Path) -> Result<Ctx, GitError> {
    let bad = |detail: String| GitError::NotAWorktree {
        path: path.to_owned(),
        detail,
    };
    let admin = read_pointer(dot_git, "gitdir: ", work_tree).map_err(bad)?;
    let admin = admin.canonicalize().map_err(|e| {
        bad(format!(
            "its git directory {} is missing: {e}",
            admin.display()
        ))
    })?;
    if admin.starts_with(work_tree) {
        return Err(bad(format!(
            "its git directory {} lies inside the worktree",
            admin.display()
        )));
    }
    let common = match admin.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == "worktrees") => p.parent(),
        _ => None,
    }
    .ok_or_else(|| {
        bad(format!(
            "its git directory {} is not inside a repository's worktrees/ directory",
            admin.display()
        ))
    })?
    .to_owned();
    if common.starts_with(work_tree) || !common.join("objects").is_dir() {
        return Err(bad(format!(
            "{} is not a repository outside the worktree",
            common.display()
        )));
    }
    // The admin directory must name this worktree as its own, or the `.git` file was redirected.
    let back = read_pointer(&admin.join("gitdir"), "", &admin).map_err(bad)?;
    let back = back.canonicalize().ok();
    if back.as_deref() != Some(dot_git) {
        return Err(bad(format!(
            "{} belongs to another worktree",
            admin.display()
        )));
    }
    // Git's ref store follows the admin directory's `commondir` file even when
    // `GIT_COMMON_DIR` is set (config, hooks and objects follow the variable). A rewritten
    // `commondir` would hand the agent the refs the host reads and writes: refuse it.
    let named = read_pointer(&admin.join("commondir"), "", &admin).map_err(bad)?;
    if named.canonicalize().ok().as_deref() != Some(common.as_path()) {
        return Err(bad(format!(
            "{} names a common directory other than {}",
            admin.join("commondir").display(),
            common.display()
        )));
    }
    Ok(Ctx {
        layout: Layout::Linked,
        git_dir: admin,
        common_dir: common,
        work_tree: Some(work_tree.to_owned()),
        overrides: Vec::new(),
        origin: OriginConfig::default(),
    })
}

/// What to do about a repository-scoped config key that makes git run a program (or adds
/// headers to codemill's HTTP requests).
enum Judgement {
    Fine,
    /// Override with these settings (highest precedence, so the program never runs).
    Neutralize(Vec<(String, String)>),
    /// No neutral value exists without dropping the operator's own setting: refuse.
    Refuse,
}

fn judge(key: &str) -> Judgement {
    let lower = key.to_ascii_lowercase();
    let (section, rest) = lower.split_once('.').unwrap_or((&lower, ""));
    let var = rest.rsplit('.').next().unwrap_or("");
    let has_sub = rest.contains('.');
    // The subsection keeps its original case: take it from `key`, not `lower`.
    let sub = if has_sub {
        &key[section.len() + 1..key.len() - var.len() - 1]
    } else {
        ""
    };
    match (section, has_sub, var) {
        ("filter", true, "clean" | "smudge" | "process" | "required") => {
            Judgement::Neutralize(vec![
                (format!("filter.{sub}.clean"), String::new()),
                (format!("filter.{sub}.smudge"), String::new()),
                (format!("filter.{sub}.process"), String::new()),
                (format!("filter.{sub}.required"), "false".into()),
            ])
        }
        // Not a program, but a header the clone's own config would add to codemill's requests
        // (next to or instead of its credentials, see module `auth`): cleared at the same URL,
        // which empties git's header list there. If that URL is more specific than the auth
        // prefix, git then sends no header at all there and the remote refuses: a clear error.
        ("http", _, "extraheader") => {
            let key = if has_sub {
                format!("http.{sub}.extraHeader")
            } else {
                "http.extraHeader".to_owned()
            };
            Judgement::Neutralize(vec![(key, String::new())])
        }
        ("core", false, "sshcommand" | "gitproxy" | "askpass") => Judgement::Refuse,
        ("credential", _, "helper") => Judgement::Refuse,
        ("remote", true, "uploadpack" | "receivepack" | "vcs") => Judgement::Refuse,
        _ => Judgement::Fine,
    }
}

/// Codemill's clones have no hooks directory, and hooks never run (`core.hooksPath=/dev/null`),
/// but a few git commands ignore that setting (e.g. `git remote set-head`, which codemill does
/// not use), so a hook appearing in the shared clone is worth a warning: something wrote there.
fn warn_about_hooks(common_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(common_dir.join("hooks")) else {
        return;
    };
    let planted: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".sample"))
        .collect();
    if !planted.is_empty() {
        tracing::warn!(repo = %common_dir.display(), hooks = ?planted, "hooks found in the repository (not run)");
    }
}

// ---------------------------------------------------------------------------------------------
// Caching the config verdict.
//
// The check below (`git config --list --show-scope`) used to run at the start of every public
// method, several times per job step on the same repository. Its verdict depends only on the
// repository-scoped config: the entries git reads from `<common>/config` and from the worktree
// config file (`config.worktree` of the worktree's git directory; read when
// `extensions.worktreeConfig` is set) -- command-line, global and system scopes are the
// operator's and are not judged. So the verdict is kept per (git directory, common directory)
// together with a stamp of those files, and reused while a fresh `stat` gives the same stamp.
//
// Why that is safe:
// - Any change to a file's contents, and any replacement of the file, sets its ctime to the
//   file system's current time. Nobody can set a ctime (`touch`/`utimensat` set atime and
//   mtime, and update the ctime to "now" while doing it) short of changing the host clock. The
//   stamp holds device, inode, mode, size, mtime and ctime (nanoseconds), of the path itself
//   and of what a symlink there points to, and "missing" for absent files (creating one changes
//   the stamp).
// - File times have a granularity (a clock tick; a second on some file systems), so a change
//   within the same tick as our `stat` could leave the stamp as it was. The same problem as
//   git's "racy" index entries, solved the same way: before the files are stat'ed for a check,
//   a probe file on the same file system (the repository's lock file) gets a fresh ctime, and a
//   verdict is only kept when every stamped time is strictly older than the probe's. Any change
//   made after the probe (so any change the check might not have seen) then has a ctime at or
//   after the probe's, hence differs from the stamp. Config changed in the same tick as the
//   probe is simply checked again next time.
// - Config that pulls in other files (`include.*`, `includeIf.*` in those scopes) can change
//   without these two files changing, and `includeIf` conditions depend on other state (the
//   branch checked out, for one): such a repository is never cached; it is checked every time.
// - A refusal (`UnsafeConfig`) and errors are never cached; neither is anything when a file's
//   metadata cannot be read or the probe cannot be written.
// The cache lives in the [`Git`] value (shared by its clones), so it is per process.

/// Bound on cached verdicts (one per worktree ever checked); past it the cache starts over.
const CACHE_MAX: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    Missing,
    Present {
        dev: u64,
        ino: u64,
        mode: u32,
        size: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
}

#[derive(Debug, Clone)]
struct Verdict {
    stamps: Vec<Stamp>,
    overrides: Vec<(String, String)>,
    origin: OriginConfig,
}

/// Verdicts of the config check per repository, valid while the stamps match (see above).
#[derive(Debug, Default)]
pub(crate) struct ConfigCache {
    verdicts: Mutex<HashMap<(PathBuf, PathBuf), Verdict>>,
}

impl ConfigCache {
    fn get(&self, key: &(PathBuf, PathBuf), stamps: &[Stamp]) -> Option<Verdict> {
        let map = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).filter(|v| v.stamps == stamps).cloned()
    }

    fn put(&self, key: (PathBuf, PathBuf), verdict: Option<Verdict>) {
        let mut map = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        match verdict {
            Some(v) => {
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
                map.insert(key, v);
            }
            None => {
                map.remove(&key);
            }
        }
    }
}

/// The repository-scoped config files git reads for `ctx`.
fn config_files(ctx: &Ctx) -> [PathBuf; 2] {
    let worktree_config = match ctx.layout {
        Layout::Linked => ctx.git_dir.join("config.worktree"),
        Layout::Bare | Layout::Main => ctx.common_dir.join("config.worktree"),
    };
    [ctx.common_dir.join("config"), worktree_config]
}

fn stamp_of(meta: std::io::Result<std::fs::Metadata>) -> Option<Stamp> {
    match meta {
        Ok(m) => Some(Stamp::Present {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Stamp::Missing),
        // Unreadable metadata: no stamp, so nothing is cached or reused.
        Err(_) => None,
    }
}

/// Stamps of the config files of `ctx`; `None` when a file's metadata cannot be read.
fn stamps(ctx: &Ctx) -> Option<Vec<Stamp>> {
    let mut out = Vec::with_capacity(4);
    for file in config_files(ctx) {
        out.push(stamp_of(std::fs::symlink_metadata(&file))?);
        out.push(stamp_of(std::fs::metadata(&file))?);
    }
    Some(out)
}

/// A fresh ctime from the file system of the repository: that of its lock file (see
/// `lock::lock_file_path`), just touched. `None` when it cannot be written.
fn probe(ctx: &Ctx) -> Option<(i64, i64)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_file_path(&ctx.common_dir))
        .ok()?;
    file.set_modified(SystemTime::now()).ok()?;
    let meta = file.metadata().ok()?;
    Some((meta.ctime(), meta.ctime_nsec()))
}

/// Whether every stamped file last changed strictly before `probe`.
fn settled(stamps: &[Stamp], probe: (i64, i64)) -> bool {
    stamps.iter().all(|s| match s {
        Stamp::Missing => true,
        Stamp::Present { mtime, ctime, .. } => *mtime < probe && *ctime < probe,
    })
}

impl Git {
    /// Resolve `path` and check its repository-scoped config (see [`judge`]).
    pub(crate) async fn ctx(&self, path: &Path) -> Result<Ctx, GitError> {
        let ctx = resolve(path)?;
        self.guard_config(ctx, path).await
    }

    /// Check the repository-scoped config of `ctx`, or reuse the verdict of an earlier check
    /// while the config files are unchanged (see [`ConfigCache`] for why that is safe).
    pub(crate) async fn guard_config(&self, mut ctx: Ctx, shown: &Path) -> Result<Ctx, GitError> {
        let key = (ctx.git_dir.clone(), ctx.common_dir.clone());
        if let Some(stamps) = stamps(&ctx)
            && let Some(known) = self.config_cache.get(&key, &stamps)
        {
            ctx.overrides = known.overrides;
            ctx.origin = known.origin;
            warn_about_hooks(&ctx.common_dir);
            return Ok(ctx);
        }
        // The probe before the stamps, the stamps before the check.
        let probe = probe(&ctx);
        let stamped = stamps(&ctx);
        let checked = self.check_config(&ctx, shown).await;
        let Ok((overrides, origin, includes)) = checked else {
            self.config_cache.put(key, None);
            return checked.map(|_| ctx);
        };
        let keep = match (probe, stamped) {
            (Some(probe), Some(stamps)) if !includes && settled(&stamps, probe) => Some(Verdict {
                stamps,
                overrides: overrides.clone(),
                origin: origin.clone(),
            }),
            _ => None,
        };
        self.config_cache.put(key, keep);
        ctx.overrides = overrides;
        ctx.origin = origin;
        warn_about_hooks(&ctx.common_dir);
        Ok(ctx)
    }

    /// `wt` was just created from `clone` (nothing but git has run in it): when the clone's
    /// verdict is cached and current, and neither has a worktree config file, `wt`'s config is
    /// exactly the clone's (`<common>/config`, same stamp), so its verdict is the same.
    pub(crate) fn inherit_config_verdict(&self, clone: &Ctx, wt: &Ctx) {
        if clone.common_dir != wt.common_dir {
            return;
        }
        let (Some(clone_stamps), Some(wt_stamps)) = (stamps(clone), stamps(wt)) else {
            return;
        };
        let key = (clone.git_dir.clone(), clone.common_dir.clone());
        let Some(known) = self.config_cache.get(&key, &clone_stamps) else {
            return;
        };
        // Stamps are `[config, config (followed), worktree config, worktree config (followed)]`.
        let no_worktree_config = |s: &[Stamp]| s[2..].iter().all(|s| *s == Stamp::Missing);
        if clone_stamps[..2] != wt_stamps[..2]
            || !no_worktree_config(&clone_stamps)
            || !no_worktree_config(&wt_stamps)
        {
            return;
        }
        let key = (wt.git_dir.clone(), wt.common_dir.clone());
        self.config_cache.put(
            key,
            Some(Verdict {
                stamps: wt_stamps,
                overrides: known.overrides,
                origin: known.origin,
            }),
        );
    }

    /// Run the check: the overrides to apply, `remote.origin.*`, and whether repository-scoped
    /// config includes other files.
    async fn check_config(
        &self,
        ctx: &Ctx,
        shown: &Path,
    ) -> Result<(Vec<(String, String)>, OriginConfig, bool), GitError> {
        let out = self
            .run(
                Some(ctx),
                Call::new(["config", "--list", "--show-scope", "-z"]),
            )
            .await?;
        let mut overrides: Vec<(String, String)> = Vec::new();
        let mut origin = OriginConfig::default();
        let mut includes = false;
        let mut fields = out.split('\0');
        while let (Some(scope), Some(entry)) = (fields.next(), fields.next()) {
            let (key, value) = entry.split_once('\n').unwrap_or((entry, ""));
            // Keys come back lower-cased except for subsections; `remote.origin.*` has none
            // that differ in case from what codemill writes.
            match key {
                "remote.origin.url" => origin.urls.push(value.to_owned()),
                "remote.origin.fetch" => origin.fetch.push(value.to_owned()),
                _ => {}
            }
            // Command-line, global and system config belong to the operator; the repository and
            // worktree scopes (and whatever they include) may have been written by an agent.
            if !matches!(scope, "local" | "worktree") {
                continue;
            }
            let lower = key.to_ascii_lowercase();
            if lower.starts_with("include.") || lower.starts_with("includeif.") {
                includes = true;
            }
            match judge(key) {
                Judgement::Fine => {}
                Judgement::Neutralize(settings) => {
                    tracing::warn!(repo = %shown.display(), key, "overriding a key in repository config that codemill does not honour");
                    for s in settings {
                        if !overrides.contains(&s) {
                            overrides.push(s);
                        }
                    }
                }
                Judgement::Refuse => {
                    return Err(GitError::UnsafeConfig {
                        repo: shown.to_owned(),
                        key: key.to_owned(),
                    });
                }
            }
        }
        Ok((overrides, origin, includes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_keys() {
        assert!(matches!(judge("core.bare"), Judgement::Fine));
        assert!(matches!(judge("core.sshCommand"), Judgement::Refuse));
        assert!(matches!(
            judge("credential.https://x.helper"),
            Judgement::Refuse
        ));
        match judge("filter.My.Drv.clean") {
            Judgement::Neutralize(s) => assert_eq!(s[0].0, "filter.My.Drv.clean"),
            _ => panic!("filter not neutralized"),
        }
        assert!(matches!(judge("filter.lfs"), Judgement::Fine));
        match judge("http.https://GitHub.com/a.b/.extraheader") {
            Judgement::Neutralize(s) => assert_eq!(
                s,
                [(
                    "http.https://GitHub.com/a.b/.extraHeader".into(),
                    String::new()
                )]
            ),
            _ => panic!("extra header not neutralized"),
        }
        assert!(matches!(
            judge("http.extraheader"),
            Judgement::Neutralize(_)
        ));
    }
}
