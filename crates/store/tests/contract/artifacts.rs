//! Artifacts: written only under the job's lease, read back by anyone, replaced by name.

use codemill_store::{FenceReason, StoreError};

use crate::harness::{Db, at, claim, enqueue, t0};

pub async fn artifacts_are_written_under_the_lease_and_read_by_any_worker(db: Db) {
    let s = &db.store;
    let id = enqueue(s, "A-1", 3, t0()).await;
    let lease = claim(s, "worker-a", t0()).await.unwrap();
    s.put_artifact(&lease, "research.md", b"notes", None, at(1))
        .await
        .unwrap();
    let bundle = [0u8, 159, 146, 150, 255];
    s.put_artifact(&lease, "bundle/head", &bundle, Some("abc123"), at(1))
        .await
        .unwrap();
    // Replaced by name; a second store handle (another node) reads what was written.
    s.put_artifact(&lease, "research.md", b"better notes", None, at(2))
        .await
        .unwrap();
    let other = db.reopen().await;
    let notes = other.artifact(id, "research.md").await.unwrap().unwrap();
    assert_eq!(notes.body, b"better notes");
    assert_eq!(notes.meta, None);
    let head = other.artifact(id, "bundle/head").await.unwrap().unwrap();
    assert_eq!(head.body, bundle, "bytes survive as written");
    assert_eq!(head.meta.as_deref(), Some("abc123"));
    assert!(other.artifact(id, "plan.md").await.unwrap().is_none());
    let bundles = other.artifacts(id, "bundle/").await.unwrap();
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0].name, "bundle/head");
    assert_eq!(other.artifacts(id, "").await.unwrap().len(), 2);

    // Once the lease has expired (its owner went quiet), the owner can no longer write.
    let late = at(3600);
    match s
        .put_artifact(&lease, "research.md", b"stale", None, late)
        .await
    {
        Err(StoreError::Fenced {
            reason: FenceReason::Expired { .. },
            ..
        }) => {}
        other => panic!("expected an expired lease to be fenced off, got {other:?}"),
    }
    assert_eq!(
        s.artifact(id, "research.md").await.unwrap().unwrap().body,
        b"better notes"
    );
}
