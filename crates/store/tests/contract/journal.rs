//! The append-only job journal, and reopening a database.

use codemill_core::ids::{JobId, TicketKey};
use codemill_store::StoreError;

use crate::harness::{Db, created, key, started};

pub async fn journal_is_append_only_and_sequenced(db: Db) {
    let s = &db.store;
    let key: TicketKey = "A-1".parse().unwrap();
    let id = JobId::new();
    let created = created(&key);
    s.create_job(id, &key, &created).await.unwrap();
    let started = started("x");
    s.append(id, 1, &started).await.unwrap();
    // A second writer with a stale view cannot append the same step.
    assert!(matches!(
        s.append(id, 1, &started).await,
        Err(StoreError::Conflict { seq: 1, .. })
    ));
    let journal = s.journal(id).await.unwrap();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0].event, created);
    assert_eq!(journal[1].event, started);
    assert_eq!(s.latest_job(&key).await.unwrap().unwrap().id, id);
    assert_eq!(s.jobs().await.unwrap().len(), 1);
    // create_job is the single-process path: no queue row.
    assert!(s.queue_entry(id).await.unwrap().is_none());

    // Updates and deletes are refused by the database itself.
    for sql in ["DELETE FROM journal", "UPDATE journal SET kind = 'x'"] {
        let err = db.raw(sql).await.unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(s.journal(id).await.unwrap().len(), 2);
}

pub async fn reopening_keeps_data_and_schema(db: Db) {
    db.store
        .create_ticket(&"A".parse().unwrap(), "t", "", &[])
        .await
        .unwrap();
    db.store.close().await;
    // Opening again runs the migrations again: they must find nothing to do.
    let s = db.reopen().await;
    assert_eq!(s.tickets(None).await.unwrap().len(), 1);
    s.close().await;
}

pub async fn jobs_are_found_by_their_whole_id_or_its_short_form(db: Db) {
    let s = &db.store;
    let ticket = key("A-1");
    let id = JobId::new();
    s.create_job(id, &ticket, &created(&ticket)).await.unwrap();
    let other = JobId::new();
    s.create_job(other, &ticket, &created(&ticket))
        .await
        .unwrap();
    assert_eq!(s.find_job(&id.to_string()).await.unwrap(), Some(id));
    assert_eq!(s.find_job(&id.short()).await.unwrap(), Some(id));
    assert_eq!(
        s.find_job(&id.short().to_ascii_uppercase()).await.unwrap(),
        Some(id)
    );
    let hex = id.0.simple().to_string();
    assert_eq!(s.find_job(&hex[hex.len() - 12..]).await.unwrap(), Some(id));
    assert_eq!(s.find_job("0000000000ab").await.unwrap(), None);
    for bad in ["42", "zzzzzzzz", "not a job id at all"] {
        assert!(
            matches!(s.find_job(bad).await, Err(StoreError::Invalid(_))),
            "{bad}"
        );
    }
}
