//! A job's work carried between two clones with nothing shared but the origin: a bundle of the
//! job's commits, fetched into the other clone, and a fresh worktree set to the snapshot's tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Fixture, git, read, sh, who, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_moves_to_another_clone_through_a_bundle() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, base) = fx.with_worktree(&git, "PROJ-1").await;
    write(&wt.join("README.md"), "edited\n");
    write(&wt.join("new.txt"), "added\n");
    std::fs::remove_file(wt.join("src/lib.txt")).unwrap();
    let snapshot = git
        .snapshot_wip_since(&wt, "refs/codemill/snap/PROJ-1", &base, "snapshot", &who())
        .await
        .unwrap()
        .expect("a snapshot of the changes");
    let bytes = git
        .bundle(&fx.clone, "refs/codemill/jobs/j1/head", &snapshot, &base)
        .await
        .unwrap();
    assert!(bytes.starts_with(b"# v2 git bundle") || bytes.starts_with(b"# v3 git bundle"));
    assert!(
        bytes.len() < 4096,
        "only the job's objects: {} bytes",
        bytes.len()
    );

    // The other worker: its own clone of the origin, which has never seen the snapshot.
    let other = fx.tmp.path().join("other").join("proj.git");
    git.ensure_clone_and_fetch(fx.url(), &other).await.unwrap();
    assert!(!git.has_commit(&other, &snapshot).await.unwrap());
    git.unbundle(&other, &bytes, "refs/codemill/jobs/j1/")
        .await
        .unwrap();
    assert!(git.has_commit(&other, &snapshot).await.unwrap());
    assert_eq!(
        git.rev_parse(&other, "refs/codemill/jobs/j1/head")
            .await
            .unwrap(),
        Some(snapshot.clone())
    );

    // A fresh worktree at the base, its files set to the snapshot: the same changes as before.
    let wt2 = fx.tmp.path().join("other-wt").join("PROJ-1");
    git.add_worktree(&other, &wt2, "codemill/PROJ-1", &base)
        .await
        .unwrap();
    git.restore_tree(&wt2, &snapshot).await.unwrap();
    assert_eq!(read(&wt2.join("README.md")), "edited\n");
    assert_eq!(read(&wt2.join("new.txt")), "added\n");
    assert!(!wt2.join("src/lib.txt").exists());
    assert_eq!(
        git.rev_parse(&wt2, "HEAD").await.unwrap(),
        Some(base.clone())
    );
    let committed = git
        .commit_all(&wt2, "the job's commit", &who())
        .await
        .unwrap()
        .expect("the restored changes commit");
    assert_eq!(
        sh(&wt2, &["rev-parse", &format!("{committed}^{{tree}}")]).await,
        sh(&wt, &["rev-parse", &format!("{snapshot}^{{tree}}")]).await
    );

    // A bundle whose base the clone lacks is refused with git's reason, nothing half-done.
    let stranger = fx.tmp.path().join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    sh(&stranger, &["init", "-q", "--bare"]).await;
    let err = git
        .unbundle(&stranger, &bytes, "refs/codemill/jobs/j1/")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("prerequisite"), "{err}");
}
