//! Picking a commit's change onto another commit in memory: reproducible ids, fast paths,
//! conflicts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use codemill_git::Picked;
use common::{Fixture, git, sh, who, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_are_reproducible_and_conflicts_are_named() {
    let fx = Fixture::new("main").await;
    let git = git();
    let (a, base) = fx.with_worktree(&git, "A").await;
    write(&a.join("a.txt"), "a\n");
    let ca = git
        .commit_all(&a, "A: add a", &who())
        .await
        .unwrap()
        .unwrap();
    let b = fx.wt("B");
    git.add_worktree(&fx.clone, &b, "codemill/B", &base)
        .await
        .unwrap();
    write(&b.join("b.txt"), "b\n");
    let cb = git
        .commit_all(&b, "B: add b", &who())
        .await
        .unwrap()
        .unwrap();

    // Already on top: the commit itself.
    assert_eq!(
        git.pick(&fx.clone, &base, &ca, None).await.unwrap(),
        Picked::Commit(ca.clone())
    );
    // B's change on top of A: a new commit with both files, B's message, A as parent.
    let Picked::Commit(first) = git.pick(&fx.clone, &ca, &cb, None).await.unwrap() else {
        panic!("no conflict expected");
    };
    assert_ne!(first, cb);
    let files = sh(&fx.clone, &["ls-tree", "--name-only", &first]).await;
    assert!(
        files.contains("a.txt") && files.contains("b.txt"),
        "{files}"
    );
    assert_eq!(
        sh(&fx.clone, &["rev-parse", &format!("{first}^")]).await,
        ca
    );
    assert_eq!(
        sh(&fx.clone, &["show", "-s", "--format=%B", &first]).await,
        "B: add b"
    );
    // The same pick a second later gives the same id (dates come from the original).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        git.pick(&fx.clone, &ca, &cb, None).await.unwrap(),
        Picked::Commit(first.clone())
    );

    // A change to a line another commit also changed does not apply: the file is named.
    let c = fx.wt("C");
    git.add_worktree(&fx.clone, &c, "codemill/C", &base)
        .await
        .unwrap();
    write(&c.join("src/lib.txt"), "one\nTWO\nthree\n");
    let cc = git.commit_all(&c, "C", &who()).await.unwrap().unwrap();
    let d = fx.wt("D");
    git.add_worktree(&fx.clone, &d, "codemill/D", &base)
        .await
        .unwrap();
    write(&d.join("src/lib.txt"), "one\ndos\nthree\n");
    let cd = git.commit_all(&d, "D", &who()).await.unwrap().unwrap();
    assert_eq!(
        git.pick(&fx.clone, &cc, &cd, None).await.unwrap(),
        Picked::Conflicts(vec!["src/lib.txt".into()])
    );

    // Two commits of one change picked as one: from their base, onto another commit.
    write(&b.join("b2.txt"), "more\n");
    let cb2 = git
        .commit_all(&b, "B: add b, reworked", &who())
        .await
        .unwrap()
        .unwrap();
    let Picked::Commit(both) = git.pick(&fx.clone, &ca, &cb2, Some(&base)).await.unwrap() else {
        panic!("no conflict expected");
    };
    let files = sh(&fx.clone, &["ls-tree", "--name-only", &both]).await;
    assert!(
        files.contains("b.txt") && files.contains("b2.txt") && files.contains("a.txt"),
        "{files}"
    );
    assert_eq!(sh(&fx.clone, &["rev-parse", &format!("{both}^")]).await, ca);
    // On the base they started from: squashed into one commit on it.
    let Picked::Commit(one) = git.pick(&fx.clone, &base, &cb2, Some(&base)).await.unwrap() else {
        panic!("no conflict expected");
    };
    assert_eq!(
        sh(&fx.clone, &["rev-parse", &format!("{one}^")]).await,
        base
    );
    assert_eq!(
        sh(&fx.clone, &["rev-parse", &format!("{one}^{{tree}}")]).await,
        sh(&fx.clone, &["rev-parse", &format!("{cb2}^{{tree}}")]).await
    );
}
