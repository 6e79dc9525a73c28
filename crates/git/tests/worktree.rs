//! Worktrees per ticket: idempotent add, stale and crashed registrations, removal, concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use codemill_git::GitError;
use common::{Fixture, git, read, sh, who, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_is_idempotent_and_keeps_uncommitted_edits() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, head) = fx.with_worktree(&git, "PROJ-1").await;
    assert_eq!(
        Some(head.clone()),
        git.rev_parse(&fx.clone, "origin/main").await.unwrap()
    );
    assert_eq!(
        git.current_branch(&wt).await.unwrap().as_deref(),
        Some("codemill/PROJ-1")
    );

    write(&wt.join("README.md"), "edited by the agent\n");
    write(&wt.join("new.txt"), "untracked\n");
    // Origin moves on; a second add must not reset the worktree to the new start.
    fx.origin_commit("other.txt", "x\n").await;
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    let again = git
        .add_worktree(&fx.clone, &wt, "codemill/PROJ-1", "origin/main")
        .await
        .unwrap();
    assert_eq!(again, head);
    assert_eq!(read(&wt.join("README.md")), "edited by the agent\n");
    assert_eq!(read(&wt.join("new.txt")), "untracked\n");
    assert!(git.is_dirty(&wt).await.unwrap());

    // The same path for another branch is a conflict, not a silent switch.
    let err = git
        .add_worktree(&fx.clone, &wt, "codemill/PROJ-2", "origin/main")
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::WorktreeConflict { .. }), "{err:?}");
    assert_eq!(read(&wt.join("README.md")), "edited by the agent\n");

    // A non-empty directory that is not a worktree is left alone.
    let occupied = fx.wt("occupied");
    write(&occupied.join("x"), "x");
    let err = git
        .add_worktree(&fx.clone, &occupied, "codemill/X", "origin/main")
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::PathOccupied { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worktree_is_clean_for_git_and_its_kept_index_goes_with_it() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    // The agent's own `git status` sees a clean checkout, and nothing is left locked.
    assert_eq!(sh(&wt, &["status", "--porcelain"]).await, "");
    let listed = git.list_worktrees(&fx.clone).await.unwrap();
    assert!(listed.iter().all(|w| w.locked.is_none()), "{listed:?}");
    // Codemill's index of the worktree lives in the clone, outside the worktree's git dir.
    let kept = fx.clone.join("codemill-index/PROJ-1/index");
    assert!(kept.is_file());
    git.remove_worktree(&fx.clone, &wt).await.unwrap();
    assert!(!kept.exists());
    assert!(!wt.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_registration_is_pruned_and_old_branch_reset() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, start) = fx.with_worktree(&git, "PROJ-1").await;
    write(&wt.join("work.txt"), "work\n");
    let committed = git.commit_all(&wt, "work", &who()).await.unwrap().unwrap();

    // The directory vanishes behind git's back (disk cleanup, crash, operator).
    std::fs::remove_dir_all(&wt).unwrap();
    let listed = git.list_worktrees(&fx.clone).await.unwrap();
    assert!(listed.iter().any(|w| w.prunable), "{listed:?}");
    let head = git
        .add_worktree(&fx.clone, &wt, "codemill/PROJ-1", "origin/main")
        .await
        .unwrap();
    // The branch from the earlier job is reset to the start (`-B`).
    assert_eq!(head, start);
    assert_ne!(head, committed);
    assert!(!wt.join("work.txt").exists());
    assert!(!git.is_dirty(&wt).await.unwrap());

    // Same after a proper removal, at a different path.
    git.remove_worktree(&fx.clone, &wt).await.unwrap();
    let elsewhere = fx.wt("PROJ-1-again");
    let head = git
        .add_worktree(&fx.clone, &elsewhere, "codemill/PROJ-1", "origin/main")
        .await
        .unwrap();
    assert_eq!(head, start);
    let listed = git.list_worktrees(&fx.clone).await.unwrap();
    assert_eq!(listed.iter().filter(|w| !w.bare).count(), 1, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_cut_short_by_a_crash_is_redone() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, start) = fx.with_worktree(&git, "PROJ-1").await;
    // What `git worktree add` leaves when killed mid-checkout: locked "initializing", files missing.
    let admin = fx.clone.join("worktrees/PROJ-1");
    write(&admin.join("locked"), "initializing");
    std::fs::remove_file(wt.join("README.md")).unwrap();
    let head = git
        .add_worktree(&fx.clone, &wt, "codemill/PROJ-1", "origin/main")
        .await
        .unwrap();
    assert_eq!(head, start);
    assert_eq!(read(&wt.join("README.md")), "hello\n");
    let listed = git.list_worktrees(&fx.clone).await.unwrap();
    assert!(listed.iter().all(|w| w.locked.is_none()), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_is_idempotent_and_spares_foreign_directories() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    write(&wt.join("dirty.txt"), "uncommitted\n");
    git.remove_worktree(&fx.clone, &wt).await.unwrap();
    assert!(!wt.exists());
    git.remove_worktree(&fx.clone, &wt).await.unwrap();
    let listed = git.list_worktrees(&fx.clone).await.unwrap();
    assert_eq!(listed.iter().filter(|w| !w.bare).count(), 0, "{listed:?}");
    // The branch (and its commits) outlive the worktree.
    assert!(
        git.rev_parse(&fx.clone, "refs/heads/codemill/PROJ-1")
            .await
            .unwrap()
            .is_some()
    );

    // A half-deleted worktree (registration gone, files left) is finished off.
    let (wt2, _) = fx.with_worktree(&git, "PROJ-2").await;
    std::fs::remove_dir_all(fx.clone.join("worktrees/PROJ-2")).unwrap();
    git.remove_worktree(&fx.clone, &wt2).await.unwrap();
    assert!(!wt2.exists());

    let foreign = fx.wt("not-ours");
    write(&foreign.join("keep.txt"), "keep\n");
    let err = git.remove_worktree(&fx.clone, &foreign).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    assert!(foreign.join("keep.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn twenty_worktrees_added_concurrently() {
    let fx = Fixture::new("main").await;
    let git = git();
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let git = git.clone();
        let clone = fx.clone.clone();
        let path = fx.wt(&format!("T-{i}"));
        tasks.push(tokio::spawn(async move {
            let branch = format!("codemill/T-{i}");
            let head = git
                .add_worktree(&clone, &path, &branch, "origin/main")
                .await?;
            // Work in the new worktree right away, while others are still being added.
            write(&path.join(format!("t{i}.txt")), "x\n");
            let sha = git
                .commit_all(&path, &format!("T-{i}"), &common::who())
                .await?;
            Ok::<_, GitError>((path, branch, head, sha))
        }));
    }
    let mut branches = HashSet::new();
    for task in tasks {
        let (path, branch, _head, sha) = task.await.unwrap().unwrap();
        assert!(sha.is_some());
        assert_eq!(
            git.current_branch(&path).await.unwrap().as_deref(),
            Some(branch.as_str())
        );
        assert!(branches.insert(branch));
    }
    assert_eq!(branches.len(), 20);
    let listed = git.list_worktrees(&fx.clone).await.unwrap();
    assert_eq!(listed.iter().filter(|w| !w.bare).count(), 20);
    let heads = sh(
        &fx.clone,
        &["for-each-ref", "--format=%(refname)", "refs/heads/codemill"],
    )
    .await;
    assert_eq!(heads.lines().count(), 20);
    // And all removed concurrently.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let git = git.clone();
        let clone = fx.clone.clone();
        let path = fx.wt(&format!("T-{i}"));
        tasks.push(tokio::spawn(async move {
            git.remove_worktree(&clone, &path).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let listed = git.list_worktrees(&fx.clone).await.unwrap();
    assert_eq!(listed.iter().filter(|w| !w.bare).count(), 0);
}
