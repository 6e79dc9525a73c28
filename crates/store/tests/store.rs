//! Store behaviour on a real SQLite file: numbering, idempotent comments, the append-only journal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_core::pipeline::{JobEvent, TicketStatus};
use codemill_store::{NewPr, Store, StoreError};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("codemill.db")).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn tickets_are_numbered_per_project() {
    let (_d, s) = store().await;
    let a: ProjectName = "A".parse().unwrap();
    let b: ProjectName = "B".parse().unwrap();
    let t1 = s
        .create_ticket(&a, "one", "", &["codemill".into()])
        .await
        .unwrap();
    let t2 = s.create_ticket(&a, "two", "body", &[]).await.unwrap();
    let t3 = s.create_ticket(&b, "three", "", &[]).await.unwrap();
    assert_eq!(
        [t1.key.to_string(), t2.key.to_string(), t3.key.to_string()],
        ["A-1", "A-2", "B-1"]
    );
    assert_eq!(t1.labels, vec!["codemill"]);
    assert_eq!(t1.status, TicketStatus::Todo);
    assert_eq!(s.tickets(Some("A")).await.unwrap().len(), 2);
    assert_eq!(s.tickets(None).await.unwrap().len(), 3);
    assert!(s.ticket(&"A-9".parse().unwrap()).await.unwrap().is_none());
}

#[tokio::test]
async fn comments_with_a_marker_are_posted_once() {
    let (_d, s) = store().await;
    let t = s
        .create_ticket(&"A".parse().unwrap(), "t", "", &[])
        .await
        .unwrap();
    assert!(
        s.add_comment(&t.key, "codemill", Some("m1"), "hello")
            .await
            .unwrap()
    );
    assert!(
        !s.add_comment(&t.key, "codemill", Some("m1"), "hello again")
            .await
            .unwrap()
    );
    assert!(s.add_comment(&t.key, "me", None, "free").await.unwrap());
    assert!(s.add_comment(&t.key, "me", None, "free").await.unwrap());
    let comments = s.comments(&t.key).await.unwrap();
    assert_eq!(comments.len(), 3);
    assert_eq!(comments[0].body, "hello");
    let missing: TicketKey = "A-7".parse().unwrap();
    assert!(matches!(
        s.add_comment(&missing, "x", None, "y").await,
        Err(StoreError::NoTicket(_))
    ));
}

#[tokio::test]
async fn status_changes_are_recorded_once() {
    let (_d, s) = store().await;
    let t = s
        .create_ticket(&"A".parse().unwrap(), "t", "", &[])
        .await
        .unwrap();
    assert!(
        s.set_ticket_status(&t.key, TicketStatus::InProgress, "codemill")
            .await
            .unwrap()
    );
    assert!(
        !s.set_ticket_status(&t.key, TicketStatus::InProgress, "codemill")
            .await
            .unwrap()
    );
    let changes = s.status_changes(&t.key).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].from.as_str(), changes[0].to.as_str()),
        ("todo", "in_progress")
    );
}

#[tokio::test]
async fn journal_is_append_only_and_sequenced() {
    let (dir, s) = store().await;
    let key: TicketKey = "A-1".parse().unwrap();
    let id = JobId::new();
    let created = JobEvent::Created {
        ticket: key.clone(),
        project: "A".parse().unwrap(),
        max_rounds: 3,
    };
    s.create_job(id, &key, &created).await.unwrap();
    let started = JobEvent::EffectStarted { effect: "x".into() };
    s.append(id, 1, &started).await.unwrap();
    // A second writer with a stale view cannot append the same step.
    assert!(matches!(
        s.append(id, 1, &started).await,
        Err(StoreError::Conflict { seq: 1, .. })
    ));
    let journal = s.journal(id).await.unwrap();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0].event, created);
    assert_eq!(s.latest_job(&key).await.unwrap().unwrap().id, id);

    // Updates and deletes are refused by the database itself.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("codemill.db").display()
    ))
    .await
    .unwrap();
    let err = sqlx::query("DELETE FROM journal")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = sqlx::query("UPDATE journal SET kind = 'x'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn pr_records_are_one_per_branch() {
    let (_d, s) = store().await;
    let pr = NewPr {
        project: "A",
        ticket: "A-1",
        branch: "codemill/A-1",
        base: "main",
        commit: "c1",
        title: "t",
        body: "b",
    };
    let first = s.upsert_pr(&pr).await.unwrap();
    let again = s.upsert_pr(&pr).await.unwrap();
    assert_eq!(first.id, again.id);
    let moved = s.upsert_pr(&NewPr { commit: "c2", ..pr }).await.unwrap();
    assert_eq!(moved.id, first.id);
    assert_eq!(moved.commit, "c2");
    assert_eq!(s.prs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn reopening_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codemill.db");
    {
        let s = Store::open(&path).await.unwrap();
        s.create_ticket(&"A".parse().unwrap(), "t", "", &[])
            .await
            .unwrap();
        s.close().await;
    }
    let s = Store::open(&path).await.unwrap();
    assert_eq!(s.tickets(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn edits_labels_and_linked_tickets() {
    let (_d, s) = store().await;
    let t = s
        .create_ticket(&"A".parse().unwrap(), "t", "b", &[])
        .await
        .unwrap();
    assert!(t.edited_at.is_none());
    let e = s.edit_ticket(&t.key, None, Some("new body")).await.unwrap();
    assert_eq!((e.title.as_str(), e.body.as_str()), ("t", "new body"));
    assert!(e.edited_at.is_some());
    assert!(
        s.set_label(&t.key, "codemill:needs-input", true)
            .await
            .unwrap()
    );
    assert!(
        !s.set_label(&t.key, "codemill:needs-input", true)
            .await
            .unwrap()
    );
    assert!(
        s.set_label(&t.key, "codemill:needs-input", false)
            .await
            .unwrap()
    );
    assert!(s.ticket(&t.key).await.unwrap().unwrap().labels.is_empty());
    let (b1, created) = s
        .create_linked_ticket(
            &t.key,
            "backlog_of",
            "m1",
            "follow-up",
            "detail",
            &["codemill:backlog".into()],
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(b1.key.to_string(), "A-2");
    let (b2, created) = s
        .create_linked_ticket(&t.key, "backlog_of", "m1", "x", "y", &[])
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(b2.key, b1.key);
    let links = s.links(&t.key).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (
            links[0].from.as_str(),
            links[0].to.as_str(),
            links[0].kind.as_str()
        ),
        ("A-1", "A-2", "backlog_of")
    );
    assert!(matches!(
        s.edit_ticket(&"A-9".parse().unwrap(), Some("x"), None)
            .await,
        Err(StoreError::NoTicket(_))
    ));
}
