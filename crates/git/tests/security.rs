//! The git escape: an agent plants fsmonitor, hooks, filters and diff drivers, or redirects the
//! worktree's git directory; the host then runs every git step it normally runs, and no program
//! of the agent's runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use codemill_git::GitError;
use common::{Fixture, git, plain, sh, who, write, write_exec};

const HOOKS: &[&str] = &[
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "post-checkout",
    "post-merge",
    "post-rewrite",
    "pre-push",
    "reference-transaction",
    "post-index-change",
    "pre-auto-gc",
    "push-to-checkout",
    "fsmonitor-watchman",
];

fn markers(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Each marker with what ran it, for the failure message.
fn dump(dir: &Path) -> String {
    markers(dir)
        .iter()
        .map(|m| {
            format!(
                "{m}:\n{}",
                std::fs::read_to_string(dir.join(m)).unwrap_or_default()
            )
        })
        .collect()
}

fn clear(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
}

/// A script that leaves `<markers>/<name>` behind, then behaves like `cat`.
fn script(marks: &Path, name: &str) -> String {
    format!(
        "#!/bin/sh\n{{ tr \"\\\\0\" \" \" < /proc/$PPID/cmdline; echo; env | grep ^GIT_; }} >> '{}/{name}'\ncat\nexit 0\n",
        marks.display()
    )
}

/// Everything an agent with a writable clone could plant. Returns the marker directory.
async fn plant(fx: &Fixture, wt: &Path) -> PathBuf {
    let marks = fx.tmp.path().join("markers");
    std::fs::create_dir_all(&marks).unwrap();
    let evil = fx.tmp.path().join("evil");
    let fsmonitor = evil.join("fsmonitor");
    write_exec(&fsmonitor, &script(&marks, "fsmonitor"));
    for (i, dir) in [
        fx.clone.join("hooks"),
        wt.join(".agent-hooks"),
        evil.join("hooks"),
    ]
    .iter()
    .enumerate()
    {
        for hook in HOOKS {
            write_exec(
                &dir.join(hook),
                &script(&marks, &format!("hook-{i}-{hook}")),
            );
        }
    }
    for name in ["clean", "smudge", "textconv", "extdiff", "difftool"] {
        write_exec(&evil.join(name), &script(&marks, name));
    }
    let e = |n: &str| evil.join(n).display().to_string();
    // Written from inside the worktree, as the agent would: these land in the shared config.
    let settings = [
        ("core.fsmonitor", fsmonitor.display().to_string()),
        (
            "core.hooksPath",
            wt.join(".agent-hooks").display().to_string(),
        ),
        ("filter.evil.clean", e("clean")),
        ("filter.evil.smudge", e("smudge")),
        ("filter.evil.required", "true".into()),
        ("diff.evil.textconv", e("textconv")),
        ("diff.evil.command", e("extdiff")),
        ("diff.external", e("extdiff")),
        ("commit.gpgsign", "true".into()),
        ("gpg.program", e("clean")),
        ("core.pager", e("clean")),
    ];
    for (k, v) in &settings {
        sh(wt, &["config", k, v]).await;
    }
    write(&wt.join(".gitattributes"), "* filter=evil diff=evil\n");
    marks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_fsmonitor_hooks_and_filters_never_run_on_the_host() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, start) = fx.with_worktree(&git, "PROJ-1").await;
    write(&wt.join("src/lib.txt"), "agent was here\n");
    write(&wt.join("agent-new.txt"), "new file\n");
    let marks = plant(&fx, &wt).await;

    // Control: plain git would run all of it (so the traps are armed).
    assert!(plain(&wt, &["status"]).await.success());
    assert!(plain(&wt, &["hook", "run", "pre-commit"]).await.success());
    plain(&wt, &["hash-object", "--path=README.md", "README.md"]).await;
    let armed = markers(&marks);
    for want in ["fsmonitor", "hook-1-pre-commit", "clean"] {
        assert!(
            armed.contains(&want.to_owned()),
            "trap {want} not armed: {armed:?}"
        );
    }
    clear(&marks);

    // Every host step of a job.
    assert!(git.is_dirty(&wt).await.unwrap());
    let live = git.diff(&wt, &start, None).await.unwrap();
    assert!(live.contains("agent was here"), "{live}");
    let wip = git
        .snapshot_wip(&wt, "refs/codemill/wip/PROJ-1", "wip", &who())
        .await
        .unwrap();
    assert!(wip.is_some());
    let sha = git
        .commit_all(&wt, "PROJ-1: agent work", &who())
        .await
        .unwrap()
        .unwrap();
    // Committed unsigned, content unfiltered.
    assert_eq!(
        sh(&wt, &["show", &format!("{sha}:src/lib.txt")]).await,
        "agent was here"
    );
    assert!(
        plain(&wt, &["cat-file", "commit", &sha])
            .await
            .stdout
            .lines()
            .all(|l| !l.starts_with("gpgsig"))
    );
    assert_eq!(git.commit_all(&wt, "again", &who()).await.unwrap(), None);
    assert!(!git.is_dirty(&wt).await.unwrap());
    git.diff(&wt, &start, Some(&sha)).await.unwrap();
    git.diff_stat(&wt, &start, &sha).await.unwrap();
    git.commits_between(&wt, &start, &sha).await.unwrap();
    git.rev_parse(&wt, "HEAD").await.unwrap();
    git.current_branch(&wt).await.unwrap();
    git.list_files(&wt, "HEAD").await.unwrap();
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();
    git.push(&fx.clone, &sha, "codemill/PROJ-1").await.unwrap();
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        Some(sha.clone())
    );
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    git.default_branch(&fx.clone).await.unwrap();
    // A second worktree checked out from the agent's commit (with its .gitattributes: smudge).
    let wt2 = fx.wt("PROJ-2");
    git.add_worktree(&fx.clone, &wt2, "codemill/PROJ-2", &sha)
        .await
        .unwrap();
    git.add_worktree(&fx.clone, &wt2, "codemill/PROJ-2", &sha)
        .await
        .unwrap();
    git.list_worktrees(&fx.clone).await.unwrap();
    git.prune_worktrees(&fx.clone).await.unwrap();
    git.remove_worktree(&fx.clone, &wt2).await.unwrap();
    git.remove_worktree(&fx.clone, &wt).await.unwrap();
    git.gc(&fx.clone).await.unwrap();

    assert_eq!(
        markers(&marks),
        Vec::<String>::new(),
        "agent code ran on the host: {}",
        dump(&marks)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_git_directory_is_not_followed() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    let (wt2, _) = fx.with_worktree(&git, "PROJ-2").await;
    let marks = plant(&fx, &wt).await;
    write(&wt.join("work.txt"), "work\n");

    // The agent points its admin directory's `commondir` at a repository of its own making.
    let fake_common = wt.join(".fake-common");
    sh(
        &wt,
        &["init", "-q", "--bare", fake_common.to_str().unwrap()],
    )
    .await;
    let admin = fx.clone.join("worktrees/PROJ-1");
    write(
        &admin.join("commondir"),
        &format!("{}\n", fake_common.display()),
    );
    let before = git
        .rev_parse(&fx.clone, "refs/heads/codemill/PROJ-1")
        .await
        .unwrap();
    // Git would take refs from there even with GIT_COMMON_DIR set: refused.
    let err = git.commit_all(&wt, "work", &who()).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    let err = git.is_dirty(&wt).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    assert_eq!(
        git.rev_parse(&fx.clone, "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        before
    );
    assert_eq!(sh(&fake_common, &["for-each-ref"]).await, "");
    // Put back, the worktree works again.
    write(&admin.join("commondir"), "../..\n");
    let sha = git.commit_all(&wt, "work", &who()).await.unwrap().unwrap();
    assert_eq!(
        git.rev_parse(&fx.clone, "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        Some(sha)
    );

    // The agent rewrites the worktree's `.git` file to a git directory inside the worktree.
    let fake_admin = wt.join(".fake-admin");
    sh(&wt, &["init", "-q", "--bare", fake_admin.to_str().unwrap()]).await;
    write(
        &wt.join(".git"),
        &format!("gitdir: {}\n", fake_admin.display()),
    );
    let err = git.is_dirty(&wt).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    let err = git.commit_all(&wt, "x", &who()).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");

    // ... or replaces it with a standalone repository whose origin is the agent's choice.
    std::fs::remove_file(wt.join(".git")).unwrap();
    sh(&wt, &["init", "-q"]).await;
    sh(
        &wt,
        &["remote", "add", "origin", "https://attacker.invalid/x.git"],
    )
    .await;
    sh(&wt, &["add", "-A"]).await;
    sh(&wt, &["commit", "-q", "-m", "forged"]).await;
    let forged = sh(&wt, &["rev-parse", "HEAD"]).await;
    let err = git.commit_all(&wt, "x", &who()).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    let err = git.push(&wt, &forged, "codemill/PROJ-1").await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    std::fs::remove_dir_all(wt.join(".git")).unwrap();

    // ... or points it at another worktree's admin directory.
    write(
        &wt.join(".git"),
        &format!("gitdir: {}\n", fx.clone.join("worktrees/PROJ-2").display()),
    );
    let err = git
        .snapshot_wip(&wt, "refs/codemill/wip/x", "w", &who())
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    assert!(!git.is_dirty(&wt2).await.unwrap());

    // Removal goes by the clone's own registry, whatever the `.git` file says.
    git.remove_worktree(&fx.clone, &wt).await.unwrap();
    assert!(!wt.exists());
    assert_eq!(
        markers(&marks),
        Vec::<String>::new(),
        "agent code ran on the host: {}",
        dump(&marks)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_valued_keys_without_a_neutral_value_are_refused() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    let marks = fx.tmp.path().join("markers");
    std::fs::create_dir_all(&marks).unwrap();
    let ssh = fx.tmp.path().join("ssh");
    write_exec(&ssh, &script(&marks, "ssh"));
    sh(&wt, &["config", "core.sshCommand", ssh.to_str().unwrap()]).await;
    let err = git.is_dirty(&wt).await.unwrap_err();
    assert!(
        matches!(&err, GitError::UnsafeConfig { key, .. } if key == "core.sshcommand"),
        "{err:?}"
    );
    assert!(err.to_string().contains("core.sshcommand"), "{err}");
    let err = git
        .ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::UnsafeConfig { .. }), "{err:?}");
    assert_eq!(markers(&marks), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_written_after_a_cached_check_is_checked_again() {
    let fx = Fixture::new("main").await;
    // Count the config checks through a logging git.
    let log = fx.tmp.path().join("git.log");
    let logged = fx.tmp.path().join("bin/git-logged");
    write_exec(
        &logged,
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec git \"$@\"\n",
            log.display()
        ),
    );
    let checks = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("config --list"))
            .count()
    };
    let git = git().with_program(&logged);
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    sh(&wt, &["config", "extensions.worktreeConfig", "true"]).await;
    let marks = fx.tmp.path().join("markers");
    std::fs::create_dir_all(&marks).unwrap();
    let ssh = fx.tmp.path().join("ssh");
    write_exec(&ssh, &script(&marks, "ssh"));
    let ssh = ssh.to_str().unwrap();

    // A verdict about config changed in the same clock tick is not kept: let it settle.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(!git.is_dirty(&wt).await.unwrap());
    let settled = checks();
    assert!(!git.is_dirty(&wt).await.unwrap());
    git.rev_parse(&wt, "HEAD").await.unwrap();
    assert_eq!(checks(), settled, "the verdict was not reused");
    // A worktree made now reads the same config as its clone: no check of its own.
    let (wt2, _) = fx.with_worktree(&git, "PROJ-2").await;
    let added = checks();
    assert!(!git.is_dirty(&wt2).await.unwrap());
    assert_eq!(
        checks(),
        added,
        "the new worktree did not inherit the verdict"
    );
    sh(&wt2, &["config", "--worktree", "core.sshCommand", ssh]).await;
    let err = git.is_dirty(&wt2).await.unwrap_err();
    assert!(matches!(err, GitError::UnsafeConfig { .. }), "{err:?}");
    assert!(!git.is_dirty(&wt).await.unwrap());

    // The agent writes a program-running key into the worktree config, then the shared config:
    // each is seen by the very next call.
    sh(&wt, &["config", "--worktree", "core.sshCommand", ssh]).await;
    let err = git.is_dirty(&wt).await.unwrap_err();
    assert!(matches!(err, GitError::UnsafeConfig { .. }), "{err:?}");
    sh(&wt, &["config", "--worktree", "--unset", "core.sshCommand"]).await;
    assert!(!git.is_dirty(&wt).await.unwrap());
    sh(&wt, &["config", "core.sshCommand", ssh]).await;
    let err = git.is_dirty(&wt).await.unwrap_err();
    assert!(matches!(err, GitError::UnsafeConfig { .. }), "{err:?}");
    let err = git.rev_parse(&fx.clone, "HEAD").await.unwrap_err();
    assert!(matches!(err, GitError::UnsafeConfig { .. }), "{err:?}");
    assert!(checks() > settled);
    assert_eq!(markers(&marks), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_hidden_from_stat_data_is_still_committed() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    let file = wt.join("src/lib.txt");
    let checked_out = std::fs::metadata(&file).unwrap().modified().unwrap();
    // A commit a while after the checkout: codemill's index then trusts the stat data of the
    // untouched files (they are older than the index itself).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    write(&wt.join("other.txt"), "other\n");
    git.commit_all(&wt, "other", &who()).await.unwrap().unwrap();
    assert!(!git.is_dirty(&wt).await.unwrap());

    // The agent rewrites a file with the same size, puts its modification time back, and tells
    // git to ignore ctime and inode numbers.
    std::fs::write(&file, "one\nTWO\nthree\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(checked_out)
        .unwrap();
    sh(&wt, &["config", "core.trustctime", "false"]).await;
    sh(&wt, &["config", "core.checkStat", "minimal"]).await;
    assert!(git.is_dirty(&wt).await.unwrap());
    let sha = git
        .commit_all(&wt, "take it", &who())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sh(&wt, &["show", &format!("{sha}:src/lib.txt")]).await,
        "one\nTWO\nthree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_symlink_for_the_worktree_index_is_not_written_through() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    let victim = fx.tmp.path().join("victim.txt");
    write(&victim, "precious\n");
    let index = fx.clone.join("worktrees/PROJ-1/index");
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink(&victim, &index).unwrap();
    write(&wt.join("work.txt"), "work\n");
    git.commit_all(&wt, "work", &who()).await.unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&index).unwrap().is_file());
    assert_eq!(sh(&wt, &["status", "--porcelain"]).await, "");
}
