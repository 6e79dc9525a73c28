//! SQLite only: a database written before the queue existed still opens and works.

use codemill_core::ids::JobId;
use codemill_store::Store;

use crate::harness::{at, enqueue};

/// `tests/fixtures/before-queue.db` was written by the store as it was before the queue
/// (migrations 0001 and 0002): one ticket A-1 and a job with two journal entries. sqlx checks
/// the recorded checksums of applied migrations, so this fails if those files ever change.
#[tokio::test]
async fn sqlite_database_from_before_the_queue_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codemill.db");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/before-queue.db");
    std::fs::copy(&fixture, &path).unwrap();
    let s = Store::open(&path).await.unwrap();
    let tickets = s.tickets(None).await.unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].title, "old ticket");
    let job: JobId = "0190b9a0-0000-7000-8000-000000000001".parse().unwrap();
    assert_eq!(s.journal(job).await.unwrap().len(), 2);
    // The old job has no queue row; the ticket can be enqueued now.
    assert!(s.queue_entry(job).await.unwrap().is_none());
    // Its entries are in the event stream, and its view was built when the store opened.
    let events = s.events_since(0, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| (e.job, e.seq)).collect::<Vec<_>>(),
        [(job, 0), (job, 1)]
    );
    let view = s
        .job_view(job)
        .await
        .unwrap()
        .expect("a view of the old job");
    assert_eq!((view.seq, view.pos), (1, 2));
    assert_eq!(view.ticket.to_string(), "A-1");
    let new = enqueue(&s, "A-1", 3, at(0)).await;
    assert_eq!(s.jobs().await.unwrap().len(), 2);
    assert_eq!(s.job_view(new).await.unwrap().unwrap().pos, 3);
}
