//! Shared clone, fetch, default branch, probing and push against real local repositories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use codemill_git::GitError;
use common::{Fixture, git, plain, sh, who, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_and_fetch_a_local_repository_on_main() {
    let fx = Fixture::new("main").await;
    let git = git();
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();

    assert_eq!(git.default_branch(&fx.clone).await.unwrap(), "main");
    let seed_head = sh(&fx.seed, &["rev-parse", "HEAD"]).await;
    assert_eq!(
        git.rev_parse(&fx.clone, "origin/main").await.unwrap(),
        Some(seed_head.clone())
    );
    assert_eq!(git.rev_parse(&fx.clone, "origin/nope").await.unwrap(), None);
    let refspec = sh(&fx.clone, &["config", "--get-all", "remote.origin.fetch"]).await;
    assert_eq!(refspec, "+refs/heads/*:refs/remotes/origin/*");
    // Only remote-tracking refs: no stale local copies of the remote's branches.
    let heads = sh(&fx.clone, &["for-each-ref", "refs/heads"]).await;
    assert_eq!(heads, "");
    assert!(!fx.clone.join("hooks").exists(), "no template hooks copied");

    // Idempotent, and a second call fetches what is new.
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    let newer = fx.origin_commit("NEW.md", "new\n").await;
    assert_ne!(newer, seed_head);
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert_eq!(
        git.rev_parse(&fx.clone, "origin/main^{commit}")
            .await
            .unwrap(),
        Some(newer.clone())
    );
    assert_eq!(
        git.commits_between(&fx.clone, &seed_head, "origin/main")
            .await
            .unwrap(),
        vec![newer]
    );
    let files = git.list_files(&fx.clone, "origin/main").await.unwrap();
    assert_eq!(files, [".gitignore", "NEW.md", "README.md", "src/lib.txt"]);

    // fetch --prune: a branch deleted on origin disappears from the clone.
    sh(
        &fx.seed,
        &["push", "-q", fx.url(), "HEAD:refs/heads/feature"],
    )
    .await;
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert!(
        git.rev_parse(&fx.clone, "origin/feature")
            .await
            .unwrap()
            .is_some()
    );
    sh(&fx.seed, &["push", "-q", fx.url(), ":refs/heads/feature"]).await;
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert!(
        git.rev_parse(&fx.clone, "origin/feature")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_branch_master_and_probe() {
    let fx = Fixture::new("master").await;
    let git = git();
    let info = git.probe_remote(fx.url()).await.unwrap();
    assert_eq!(info.default_branch, "master");
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert_eq!(git.default_branch(&fx.clone).await.unwrap(), "master");

    // Without the recorded origin/HEAD, the remote is asked.
    sh(
        &fx.clone,
        &["symbolic-ref", "--delete", "refs/remotes/origin/HEAD"],
    )
    .await;
    assert_eq!(git.default_branch(&fx.clone).await.unwrap(), "master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_remote_on_a_plain_directory_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let plain_dir = tmp.path().join("just-files");
    write(&plain_dir.join("a.txt"), "not a repo\n");
    let shown = plain_dir.to_str().unwrap();
    let err = git().probe_remote(shown).await.unwrap_err();
    assert!(
        matches!(&err, GitError::NotARepository { path_or_url, .. } if path_or_url == shown),
        "{err:?}"
    );
    assert!(err.to_string().contains(shown), "{err}");

    let missing = tmp.path().join("missing");
    let err = git()
        .probe_remote(missing.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::NotARepository { .. }), "{err:?}");

    let err = git().probe_remote("--upload-pack=touch").await.unwrap_err();
    assert!(matches!(err, GitError::InvalidArgument { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_made_clone_is_redone_and_foreign_data_refused() {
    let fx = Fixture::new("main").await;
    let git = git();
    // A crash mid-clone leaves the partial directory beside the clone, never at its path.
    let partial = fx.clone.with_file_name(".proj.git.partial");
    write(&partial.join("objects/junk"), "half a clone");
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert!(!partial.exists());
    assert!(
        git.rev_parse(&fx.clone, "origin/main")
            .await
            .unwrap()
            .is_some()
    );

    // An empty directory at the clone path is taken over.
    let other = fx.tmp.path().join("clones/empty.git");
    std::fs::create_dir_all(&other).unwrap();
    git.ensure_clone_and_fetch(fx.url(), &other).await.unwrap();
    assert_eq!(git.default_branch(&other).await.unwrap(), "main");

    // A directory with someone's files in it is never deleted.
    let occupied = fx.tmp.path().join("clones/occupied");
    write(&occupied.join("precious.txt"), "keep me\n");
    let err = git
        .ensure_clone_and_fetch(fx.url(), &occupied)
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::PathOccupied { .. }), "{err:?}");
    assert!(occupied.join("precious.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_is_idempotent_and_the_remote_has_the_sha() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    // Count ref updates the remote receives (remote hooks are the remote's own business).
    let counter = fx.tmp.path().join("updates");
    let hook = fx.origin.join("hooks/update");
    common::write_exec(
        &hook,
        &format!("#!/bin/sh\necho \"$1\" >> {}\n", counter.display()),
    );

    write(&wt.join("feature.txt"), "feature\n");
    let sha = git
        .commit_all(&wt, "PROJ-1: add feature", &who())
        .await
        .unwrap()
        .unwrap();
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        Some(sha.clone())
    );
    assert_eq!(
        sh(&fx.origin, &["rev-parse", "refs/heads/codemill/PROJ-1"]).await,
        sha
    );
    // Second push: the remote already has it, nothing is sent.
    git.push(&fx.clone, &sha, "codemill/PROJ-1").await.unwrap();
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();
    let updates = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(updates.lines().count(), 1, "{updates}");

    // A rewritten branch (re-run after reset) is pushed over codemill's own branch.
    let base = git.rev_parse(&wt, "origin/main").await.unwrap().unwrap();
    sh(&wt, &["reset", "-q", "--hard", &base]).await;
    write(&wt.join("feature.txt"), "feature, second try\n");
    let again = git
        .commit_all(&wt, "PROJ-1: add feature", &who())
        .await
        .unwrap()
        .unwrap();
    git.push(&wt, &again, "codemill/PROJ-1").await.unwrap();
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        Some(again)
    );
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/nope").await.unwrap(),
        None
    );

    // Unknown commits are refused before anything is sent.
    let err = git
        .push(
            &wt,
            "0123456789012345678901234567890123456789",
            "codemill/PROJ-1",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::InvalidArgument { .. }), "{err:?}");
    // The plain helper can still see the remote (sanity for the counter above).
    assert!(plain(&fx.origin, &["rev-parse", "HEAD"]).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_when_the_clone_has_a_stale_view_of_the_remote_branch() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    let counter = fx.tmp.path().join("updates");
    common::write_exec(
        &fx.origin.join("hooks/update"),
        &format!("#!/bin/sh\necho \"$1\" >> {}\n", counter.display()),
    );
    write(&wt.join("feature.txt"), "feature\n");
    let sha = git.commit_all(&wt, "f", &who()).await.unwrap().unwrap();
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();

    // The clone forgets what it saw (as after a crash between the push and its ref update):
    // the remote already has the commit, nothing is sent.
    sh(
        &fx.clone,
        &["update-ref", "-d", "refs/remotes/origin/codemill/PROJ-1"],
    )
    .await;
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();
    let updates = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(updates.lines().count(), 1, "{updates}");

    // The branch moved on the remote since the clone last looked: the lease on the clone's view
    // fails, codemill looks again and moves its own branch back (as a re-run does).
    sh(
        &fx.seed,
        &[
            "push",
            "-q",
            "-f",
            fx.url(),
            "HEAD:refs/heads/codemill/PROJ-1",
        ],
    )
    .await;
    git.push(&wt, &sha, "codemill/PROJ-1").await.unwrap();
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        Some(sha)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_push_lands_only_on_the_expected_tip() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, base) = fx.with_worktree(&git, "PROJ-1").await;
    write(&wt.join("feature.txt"), "feature\n");
    let sha = git.commit_all(&wt, "f", &who()).await.unwrap().unwrap();
    // Expected somewhere else: nothing moves.
    assert!(!git.push_exact(&fx.clone, &sha, "main", &sha).await.unwrap());
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/main").await.unwrap(),
        Some(base.clone())
    );
    assert!(
        git.push_exact(&fx.clone, &sha, "main", &base)
            .await
            .unwrap()
    );
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/main").await.unwrap(),
        Some(sha.clone())
    );
    // The remote moved on since: a push expecting the old tip changes nothing.
    write(&wt.join("more.txt"), "more\n");
    let more = git.commit_all(&wt, "g", &who()).await.unwrap().unwrap();
    assert!(
        !git.push_exact(&fx.clone, &more, "main", &base)
            .await
            .unwrap()
    );
    assert_eq!(
        git.remote_ref(fx.url(), "refs/heads/main").await.unwrap(),
        Some(sha)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_holding_the_lock_file_is_waited_for() {
    let fx = Fixture::new("main").await;
    let git = git();
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    let lock_file = fx.clone.with_file_name("proj.git.lock");
    assert!(lock_file.exists(), "lock file beside the clone");
    // Another worker process holds the lock (flock(1) takes the same kind of lock).
    let ready = fx.tmp.path().join("held");
    let script = format!("touch '{}'; sleep 1.5", ready.display());
    let mut holder = codemill_process::Cmd::new("flock")
        .args([lock_file.to_str().unwrap(), "sh", "-c", &script])
        .spawn()
        .unwrap();
    while !ready.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1000),
        "did not wait: {:?}",
        started.elapsed()
    );
    holder.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_origin_is_followed() {
    let fx = Fixture::new("main").await;
    let git = git();
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    let moved = fx.tmp.path().join("moved.git");
    std::fs::rename(&fx.origin, &moved).unwrap();
    assert!(
        git.ensure_clone_and_fetch(fx.url(), &fx.clone)
            .await
            .is_err()
    );
    git.ensure_clone_and_fetch(moved.to_str().unwrap(), &fx.clone)
        .await
        .unwrap();
    let url = sh(&fx.clone, &["config", "remote.origin.url"]).await;
    assert_eq!(url, moved.canonicalize().unwrap().to_str().unwrap());
}

/// A pull request's head ref outlives its branch on a forge ("delete head branches" on merge):
/// `fetch_ref` brings it into the clone under a ref of codemill's, which later fetches keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_head_is_fetched_after_its_branch_is_gone() {
    let fx = Fixture::new("main").await;
    let git = git();
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    // A commit on a branch, also kept as the forge keeps a PR's head; then the branch goes.
    sh(&fx.seed, &["checkout", "-q", "-b", "feature"]).await;
    write(&fx.seed.join("feature.txt"), "feature\n");
    sh(&fx.seed, &["add", "feature.txt"]).await;
    sh(&fx.seed, &["commit", "-qm", "feature"]).await;
    let head = sh(&fx.seed, &["rev-parse", "HEAD"]).await;
    sh(
        &fx.seed,
        &[
            "push",
            "-q",
            fx.url(),
            "HEAD:refs/heads/feature",
            "HEAD:refs/pull/7/head",
        ],
    )
    .await;
    sh(&fx.seed, &["push", "-q", fx.url(), ":refs/heads/feature"]).await;
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert_eq!(
        git.rev_parse(&fx.clone, "origin/feature").await.unwrap(),
        None
    );

    let fetched = git
        .fetch_ref(&fx.clone, "refs/pull/7/head", "refs/codemill/pulls/7")
        .await
        .unwrap();
    assert_eq!(fetched, Some(head.clone()));
    // Kept by the next fetch, which prunes only the refspec's refs.
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert_eq!(
        git.rev_parse(&fx.clone, "refs/codemill/pulls/7^{commit}")
            .await
            .unwrap(),
        Some(head)
    );
    // No such ref on the remote: nothing, and no error.
    assert_eq!(
        git.fetch_ref(&fx.clone, "refs/pull/8/head", "refs/codemill/pulls/8")
            .await
            .unwrap(),
        None
    );
    // Option-like or malformed names are refused before git runs.
    for bad in ["--upload-pack=x", "refs/pull/../head"] {
        let err = git
            .fetch_ref(&fx.clone, bad, "refs/codemill/pulls/9")
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::InvalidArgument { .. }), "{err:?}");
    }
}
