//! Tickets of the local tracker, comments, status changes, links and PR records.

use codemill_core::ids::{ProjectName, TicketKey};
use codemill_core::pipeline::TicketStatus;
use codemill_store::{NewPr, StoreError};

use crate::harness::Db;

pub async fn tickets_are_numbered_per_project(db: Db) {
    let s = &db.store;
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

pub async fn concurrent_tickets_get_distinct_numbers(db: Db) {
    let a: ProjectName = "A".parse().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (s, a) = (db.store.clone(), a.clone());
        tasks.spawn(async move { s.create_ticket(&a, &format!("t{i}"), "", &[]).await });
    }
    let mut numbers: Vec<u64> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|t| t.unwrap().key.number())
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=20).collect::<Vec<u64>>());
}

pub async fn comments_with_a_marker_are_posted_once(db: Db) {
    let s = &db.store;
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

pub async fn status_changes_are_recorded_once(db: Db) {
    let s = &db.store;
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
    assert!(matches!(
        s.set_ticket_status(&"A-9".parse().unwrap(), TicketStatus::Done, "x")
            .await,
        Err(StoreError::NoTicket(_))
    ));
}

/// The pollers' question: the tickets in some statuses, by project and number.
pub async fn open_tickets_are_found_by_status(db: Db) {
    let s = &db.store;
    let mut keys = Vec::new();
    for (project, title) in [("B", "b1"), ("A", "a1"), ("A", "a2"), ("A", "a3")] {
        let t = s
            .create_ticket(&project.parse().unwrap(), title, "body", &[])
            .await
            .unwrap();
        keys.push(t.key);
    }
    s.set_ticket_status(&keys[1], TicketStatus::Done, "x")
        .await
        .unwrap();
    s.set_ticket_status(&keys[2], TicketStatus::NeedsInput, "x")
        .await
        .unwrap();
    let found = |tickets: Vec<codemill_store::Ticket>| {
        tickets
            .into_iter()
            .map(|t| (t.key.to_string(), t.status, t.body))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        found(
            s.tickets_in_status(&[TicketStatus::Todo, TicketStatus::NeedsInput])
                .await
                .unwrap()
        ),
        [
            ("A-2".into(), TicketStatus::NeedsInput, "body".into()),
            ("A-3".into(), TicketStatus::Todo, "body".into()),
            ("B-1".into(), TicketStatus::Todo, "body".into()),
        ]
    );
    assert_eq!(
        found(s.tickets_in_status(&[TicketStatus::Done]).await.unwrap()),
        [("A-1".into(), TicketStatus::Done, "body".into())]
    );
    assert!(
        s.tickets_in_status(&[TicketStatus::InReview])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.tickets_in_status(&[]).await.unwrap().is_empty());
}

pub async fn edits_labels_and_linked_tickets(db: Db) {
    let s = &db.store;
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
    assert_eq!(b1.labels, vec!["codemill:backlog"]);
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

pub async fn pr_records_are_one_per_branch(db: Db) {
    let s = &db.store;
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
    // A fix round moves the head of the same record.
    assert!(s.set_pr_commit("A", "codemill/A-1", "c3").await.unwrap());
    assert!(!s.set_pr_commit("A", "codemill/A-9", "c3").await.unwrap());
    assert_eq!(s.prs().await.unwrap()[0].commit, "c3");
    let moved = s.upsert_pr(&NewPr { commit: "c2", ..pr }).await.unwrap();
    assert_eq!(moved.commit, "c2");
    assert_eq!(
        s.find_pr("A", "codemill/A-1")
            .await
            .unwrap()
            .unwrap()
            .commit,
        "c2"
    );
}

/// A ticket mirrored from an outside tracker keeps its own key; a refresh updates the text and
/// counts as an edit only when the text changed; codemill's status is kept.
pub async fn mirrored_tickets_keep_their_key_and_status(db: Db) {
    use codemill_store::MirroredTicket;
    let s = &db.store;
    let key: TicketKey = "PROJ-42".parse().unwrap();
    let labels = vec!["codemill".to_string()];
    let mirror = |title: &'static str, body: &'static str| MirroredTicket {
        key: &key,
        external: "PROJ-42",
        url: "https://jira.test/browse/PROJ-42",
        title,
        body,
        labels: &labels,
    };
    let t = s
        .mirror_ticket(&mirror("Add a flag", "Do it."))
        .await
        .unwrap();
    assert_eq!(t.key, key);
    assert_eq!(t.external.as_deref(), Some("PROJ-42"));
    assert_eq!(t.url.as_deref(), Some("https://jira.test/browse/PROJ-42"));
    assert_eq!(t.status, TicketStatus::Todo);
    assert_eq!(t.edited_at, None);
    s.set_ticket_status(&key, TicketStatus::NeedsInput, "codemill")
        .await
        .unwrap();
    let same = s
        .mirror_ticket(&mirror("Add a flag", "Do it."))
        .await
        .unwrap();
    assert_eq!(same.edited_at, None, "an unchanged refresh is not an edit");
    let edited = s
        .mirror_ticket(&mirror("Add a flag", "Do it, with docs."))
        .await
        .unwrap();
    assert_eq!(edited.body, "Do it, with docs.");
    assert!(edited.edited_at.is_some(), "a changed body is an edit");
    assert_eq!(
        edited.status,
        TicketStatus::NeedsInput,
        "status is codemill's"
    );
    // Local tickets of other projects are numbered as before.
    let local = s
        .create_ticket(&"PROJ".parse().unwrap(), "local", "", &[])
        .await
        .unwrap();
    assert_eq!(local.key.to_string(), "PROJ-43");
}
