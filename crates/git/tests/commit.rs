//! Dirty check, commits, WIP snapshots and diffs in a ticket worktree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use codemill_git::{Git, GitError, Identity};
use common::{Fixture, git, read, sh, who, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_all_commits_once() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, start) = fx.with_worktree(&git, "PROJ-1").await;
    assert!(!git.is_dirty(&wt).await.unwrap());
    assert_eq!(git.commit_all(&wt, "nothing", &who()).await.unwrap(), None);

    // An ignored file alone is not a change.
    write(&wt.join("build.log"), "noise\n");
    assert!(!git.is_dirty(&wt).await.unwrap());

    write(&wt.join("src/lib.txt"), "one\nTWO\nthree\n");
    write(&wt.join("src/new.txt"), "brand new\n");
    std::fs::remove_file(wt.join("README.md")).unwrap();
    assert!(git.is_dirty(&wt).await.unwrap());
    let sha = git
        .commit_all(&wt, "PROJ-1: change things\n\nbody line", &who())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(git.rev_parse(&wt, "HEAD").await.unwrap(), Some(sha.clone()));
    assert_eq!(
        git.rev_parse(&fx.clone, "refs/heads/codemill/PROJ-1")
            .await
            .unwrap(),
        Some(sha.clone())
    );
    // Re-run: nothing left to commit, no second commit.
    assert_eq!(git.commit_all(&wt, "again", &who()).await.unwrap(), None);
    assert!(!git.is_dirty(&wt).await.unwrap());
    assert_eq!(
        git.commits_between(&wt, &start, "HEAD").await.unwrap(),
        vec![sha.clone()]
    );

    // The commit has exactly the files, the identity we passed, and the worktree's own index
    // was refreshed (plain `git status` in the worktree is clean apart from ignored files).
    let files = git.list_files(&wt, &sha).await.unwrap();
    assert_eq!(files, [".gitignore", "src/lib.txt", "src/new.txt"]);
    let author = sh(&wt, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", &sha]).await;
    assert_eq!(
        author,
        "codemill <codemill@example.com>|codemill <codemill@example.com>|PROJ-1: change things\n\nbody line"
    );
    assert_eq!(sh(&wt, &["status", "--porcelain"]).await, "");

    // An identity that would forge a header is refused.
    let bad = Identity {
        name: "x".into(),
        email: "a>\nb".into(),
    };
    write(&wt.join("more.txt"), "more\n");
    assert!(matches!(
        git.commit_all(&wt, "m", &bad).await.unwrap_err(),
        GitError::InvalidArgument { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_ignores_index_tricks_left_by_the_agent() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, _) = fx.with_worktree(&git, "PROJ-1").await;
    // The agent hides a change from `git add -A` with assume-unchanged, and leaves a stale lock.
    write(&wt.join("src/lib.txt"), "changed\n");
    sh(&wt, &["update-index", "--assume-unchanged", "src/lib.txt"]).await;
    assert_eq!(sh(&wt, &["status", "--porcelain"]).await, "");
    assert!(git.is_dirty(&wt).await.unwrap());
    let admin = fx.clone.join("worktrees/PROJ-1");
    write(&admin.join("index.lock"), "");
    let sha = git
        .commit_all(&wt, "take it all", &who())
        .await
        .unwrap()
        .unwrap();
    let committed = sh(&wt, &["show", &format!("{sha}:src/lib.txt")]).await;
    assert_eq!(committed, "changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_keeps_everything_and_touches_nothing() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, start) = fx.with_worktree(&git, "PROJ-1").await;
    let wip = "refs/codemill/wip/PROJ-1";

    // Nothing to keep on a fresh worktree.
    assert_eq!(
        git.snapshot_wip(&wt, wip, "wip", &who()).await.unwrap(),
        None
    );
    assert_eq!(
        git.snapshot_wip_since(&wt, wip, &start, "wip", &who())
            .await
            .unwrap(),
        None
    );
    assert_eq!(git.rev_parse(&wt, wip).await.unwrap(), None);

    write(&wt.join("src/lib.txt"), "modified\n");
    write(&wt.join("notes/untracked.md"), "untracked\n");
    write(&wt.join("debug.log"), "ignored\n");
    sh(&wt, &["add", "src/lib.txt"]).await; // something staged, to see the index is kept
    let index_file = fx.clone.join("worktrees/PROJ-1/index");
    let index_before = std::fs::read(&index_file).unwrap();
    let status_before = sh(&wt, &["status", "--porcelain"]).await;

    let snap = git
        .snapshot_wip(&wt, wip, "wip: PROJ-1", &who())
        .await
        .unwrap()
        .unwrap();
    // HEAD, index and files untouched.
    assert_eq!(
        git.rev_parse(&wt, "HEAD").await.unwrap(),
        Some(start.clone())
    );
    assert_eq!(std::fs::read(&index_file).unwrap(), index_before);
    assert_eq!(sh(&wt, &["status", "--porcelain"]).await, status_before);
    assert_eq!(read(&wt.join("src/lib.txt")), "modified\n");
    assert_eq!(read(&wt.join("notes/untracked.md")), "untracked\n");
    // The ref has the modified and the untracked file, not the ignored one, on top of HEAD.
    assert_eq!(
        git.rev_parse(&fx.clone, wip).await.unwrap(),
        Some(snap.clone())
    );
    assert_eq!(
        sh(&wt, &["show", &format!("{snap}:src/lib.txt")]).await,
        "modified"
    );
    assert_eq!(
        sh(&wt, &["show", &format!("{snap}:notes/untracked.md")]).await,
        "untracked"
    );
    let files = git.list_files(&wt, &snap).await.unwrap();
    assert!(!files.contains(&"debug.log".to_owned()), "{files:?}");
    assert_eq!(
        git.rev_parse(&wt, &format!("{snap}^")).await.unwrap(),
        Some(start.clone())
    );

    // Same state again: same snapshot, no new commit.
    let again = git.snapshot_wip(&wt, wip, "wip", &who()).await.unwrap();
    assert_eq!(again, Some(snap.clone()));

    // More work: a new snapshot; the old one stays in the reflog.
    write(&wt.join("notes/untracked.md"), "more\n");
    let newer = git
        .snapshot_wip(&wt, wip, "wip", &who())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(newer, snap);
    let reflog = sh(&fx.clone, &["reflog", "show", "--format=%H", wip]).await;
    assert!(reflog.contains(&snap), "{reflog}");

    // Committed but unpushed work with a clean tree: the snapshot is HEAD itself.
    let committed = git
        .commit_all(&wt, "commit", &who())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        git.snapshot_wip(&wt, wip, "wip", &who()).await.unwrap(),
        Some(committed.clone())
    );
    assert_eq!(
        git.snapshot_wip_since(&wt, wip, &committed, "wip", &who())
            .await
            .unwrap(),
        None
    );
    // Once pushed, there is nothing to keep.
    git.push(&wt, &committed, "codemill/PROJ-1").await.unwrap();
    git.ensure_clone_and_fetch(fx.url(), &fx.clone)
        .await
        .unwrap();
    assert_eq!(
        git.snapshot_wip(&wt, wip, "wip", &who()).await.unwrap(),
        None
    );

    assert!(matches!(
        git.snapshot_wip(&wt, "wip/PROJ-1", "wip", &who())
            .await
            .unwrap_err(),
        GitError::InvalidArgument { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diffs_of_commits_and_of_the_working_tree() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (wt, start) = fx.with_worktree(&git, "PROJ-1").await;
    write(&wt.join("src/lib.txt"), "one\nTWO\nthree\n");
    write(&wt.join("fresh.txt"), "untracked content\n");

    let live = git.diff(&wt, &start, None).await.unwrap();
    assert!(live.contains("+TWO"), "{live}");
    assert!(live.contains("-two"), "{live}");
    assert!(live.contains("b/fresh.txt"), "{live}");
    assert!(live.contains("+untracked content"), "{live}");
    // Diffing the working tree stages nothing.
    assert_eq!(sh(&wt, &["diff", "--cached", "--name-only"]).await, "");

    let sha = git.commit_all(&wt, "c", &who()).await.unwrap().unwrap();
    assert_eq!(git.diff(&wt, &start, Some(&sha)).await.unwrap(), live);
    let stat = git.diff_stat(&wt, &start, &sha).await.unwrap();
    assert!(stat.contains("fresh.txt"), "{stat}");
    assert!(stat.contains("2 files changed"), "{stat}");
    assert_eq!(git.diff(&wt, &sha, None).await.unwrap(), "");

    // Capped: head and tail kept, the middle dropped with a note.
    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    write(&wt.join("big.txt"), &big);
    let small = Git::new().with_diff_cap(4096);
    let capped = small.diff(&wt, &sha, None).await.unwrap();
    assert!(capped.len() < 5000, "{}", capped.len());
    assert!(capped.contains("truncated"));
    assert!(capped.starts_with("diff --git"));

    let err = git.diff(&wt, "--output=/tmp/x", None).await.unwrap_err();
    assert!(matches!(err, GitError::InvalidArgument { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_repositories_only_when_allowed() {
    let fx = Fixture::new("main").await;
    write(&fx.seed.join("extra.txt"), "extra\n");
    let strict = git();
    let err = strict.commit_all(&fx.seed, "x", &who()).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
    // Read-only questions are fine on any repository.
    assert!(strict.rev_parse(&fx.seed, "HEAD").await.unwrap().is_some());

    let relaxed = git().allow_standalone_worktrees(true);
    assert!(relaxed.is_dirty(&fx.seed).await.unwrap());
    let sha = relaxed
        .commit_all(&fx.seed, "extra", &who())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sh(&fx.seed, &["rev-parse", "HEAD"]).await, sha);
    assert_eq!(sh(&fx.seed, &["status", "--porcelain"]).await, "");
    // A bare clone is never a worktree.
    let err = relaxed.is_dirty(&fx.origin).await.unwrap_err();
    assert!(matches!(err, GitError::NotAWorktree { .. }), "{err:?}");
}

#[tokio::test]
async fn read_file_at_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.join(".codemill")).unwrap();
    std::fs::write(repo.join(".codemill/pipeline.toml"), "v1\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    let first = git(&["rev-parse", "HEAD"]);
    std::fs::write(repo.join(".codemill/pipeline.toml"), "v2\n").unwrap();
    let g = codemill_git::Git::new().allow_standalone_worktrees(true);
    assert_eq!(
        g.read_file_at(&repo, &first, ".codemill/pipeline.toml")
            .await
            .unwrap()
            .as_deref(),
        Some("v1\n")
    );
    assert_eq!(
        g.read_file_at(&repo, &first, "missing.txt").await.unwrap(),
        None
    );
}
