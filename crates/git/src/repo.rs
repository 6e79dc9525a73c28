//! Finding the real git directories of a clone or worktree without trusting agent-writable files.
//!
//! A linked worktree's `.git` file and its admin directory (`<clone>/worktrees/<name>`) are
//! writable by the agent. Followed blindly, a rewritten `.git` file or `commondir` file would let
//! the agent hand host git a config and hooks of its choosing. So the admin directory must sit in
//! a `worktrees/` directory of a repository outside the worktree and point back at the worktree,
//! and every call then names `GIT_DIR`, `GIT_COMMON_DIR` and `GIT_WORK_TREE` explicitly.
//! Repository-local config keys that would run programs are then overridden or refused.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

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
}

impl Ctx {
    pub(crate) fn bare(dir: PathBuf) -> Ctx {
        Ctx {
            layout: Layout::Bare,
            git_dir: dir.clone(),
            common_dir: dir,
            work_tree: None,
            overrides: Vec::new(),
        }
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
    })
}

/// What to do about a repository-scoped config key that makes git run a program.
enum Verdict {
    Fine,
    /// Override with these settings (highest precedence, so the program never runs).
    Neutralize(Vec<(String, String)>),
    /// No neutral value exists without dropping the operator's own setting: refuse.
    Refuse,
}

fn judge(key: &str) -> Verdict {
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
        ("filter", true, "clean" | "smudge" | "process" | "required") => Verdict::Neutralize(vec![
            (format!("filter.{sub}.clean"), String::new()),
            (format!("filter.{sub}.smudge"), String::new()),
            (format!("filter.{sub}.process"), String::new()),
            (format!("filter.{sub}.required"), "false".into()),
        ]),
        ("core", false, "sshcommand" | "gitproxy" | "askpass") => Verdict::Refuse,
        ("credential", _, "helper") => Verdict::Refuse,
        ("remote", true, "uploadpack" | "receivepack" | "vcs") => Verdict::Refuse,
        _ => Verdict::Fine,
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

impl Git {
    /// Resolve `path` and check its repository-scoped config (see [`judge`]).
    pub(crate) async fn ctx(&self, path: &Path) -> Result<Ctx, GitError> {
        let ctx = resolve(path)?;
        self.guard_config(ctx, path).await
    }

    pub(crate) async fn guard_config(&self, mut ctx: Ctx, shown: &Path) -> Result<Ctx, GitError> {
        let out = self
            .run(
                Some(&ctx),
                Call::new(["config", "--list", "--show-scope", "-z"]),
            )
            .await?;
        let mut overrides: Vec<(String, String)> = Vec::new();
        let mut fields = out.split('\0');
        while let (Some(scope), Some(entry)) = (fields.next(), fields.next()) {
            // Command-line, global and system config belong to the operator; the repository and
            // worktree scopes (and whatever they include) may have been written by an agent.
            if !matches!(scope, "local" | "worktree") {
                continue;
            }
            let key = entry.split_once('\n').map_or(entry, |(k, _)| k);
            match judge(key) {
                Verdict::Fine => {}
                Verdict::Neutralize(settings) => {
                    tracing::warn!(repo = %shown.display(), key, "ignoring program-running key in repository config");
                    for s in settings {
                        if !overrides.contains(&s) {
                            overrides.push(s);
                        }
                    }
                }
                Verdict::Refuse => {
                    return Err(GitError::UnsafeConfig {
                        repo: shown.to_owned(),
                        key: key.to_owned(),
                    });
                }
            }
        }
        ctx.overrides = overrides;
        warn_about_hooks(&ctx.common_dir);
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_keys() {
        assert!(matches!(judge("core.bare"), Verdict::Fine));
        assert!(matches!(judge("core.sshCommand"), Verdict::Refuse));
        assert!(matches!(
            judge("credential.https://x.helper"),
            Verdict::Refuse
        ));
        match judge("filter.My.Drv.clean") {
            Verdict::Neutralize(s) => assert_eq!(s[0].0, "filter.My.Drv.clean"),
            _ => panic!("filter not neutralized"),
        }
        assert!(matches!(judge("filter.lfs"), Verdict::Fine));
    }
}
