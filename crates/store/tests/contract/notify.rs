//! The notification outbox (each message once per event and channel) and followers' cursors.

use codemill_core::ids::JobId;
use codemill_store::{NewNotification, NotificationState, Sent};
use serde_json::json;

use crate::harness::{Db, at, key};

pub async fn a_message_is_stored_once_per_event_and_channel(db: Db) {
    let s = &db.store;
    let ticket = key("A-1");
    let job = JobId::new();
    let message = json!({"text": "A-1 waits for approval"});
    let note = |pos, channel| NewNotification {
        event_pos: pos,
        channel,
        kind: "proposal",
        project: "A",
        ticket: &ticket,
        job,
        message: &message,
    };
    // Many nodes reading the same event at once add it once per channel.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let s = db.store.clone();
        let (ticket, message) = (ticket.clone(), message.clone());
        tasks.spawn(async move {
            let n = |channel| NewNotification {
                event_pos: 7,
                channel,
                kind: "proposal",
                project: "A",
                ticket: &ticket,
                job,
                message: &message,
            };
            s.add_notifications(&[n("A/slack:X"), n("A/telegram:1")], at(0))
                .await
                .unwrap()
        });
    }
    let added: u64 = tasks.join_all().await.into_iter().sum();
    assert_eq!(added, 2);
    assert_eq!(
        s.add_notifications(&[note(7, "A/slack:X")], at(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.add_notifications(&[note(8, "A/slack:X")], at(1))
            .await
            .unwrap(),
        1
    );

    let claimed = s.claim_notifications(at(0), at(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "the one added at 1 s is not due at 0 s");
    assert_eq!(claimed[0].message, message);
    assert_eq!(claimed[0].ticket, ticket);
    assert_eq!(
        (claimed[0].attempts, claimed[0].state),
        (1, NotificationState::Pending)
    );
    assert!(
        s.claim_notifications(at(1), at(61), 10)
            .await
            .unwrap()
            .len()
            == 1
    );
    assert!(
        s.claim_notifications(at(2), at(62), 10)
            .await
            .unwrap()
            .is_empty(),
        "held"
    );

    s.settle_notification(claimed[0].id, &Sent::Sent)
        .await
        .unwrap();
    s.settle_notification(
        claimed[1].id,
        &Sent::Retry {
            at: at(30),
            error: "telegram: 500".into(),
        },
    )
    .await
    .unwrap();
    // Settling again changes nothing once sent.
    s.settle_notification(claimed[0].id, &Sent::Failed("late".into()))
        .await
        .unwrap();
    let retried = s.claim_notifications(at(61), at(120), 10).await.unwrap();
    assert_eq!(
        retried.len(),
        2,
        "the retry and the held one whose hold ended"
    );
    let again = retried.iter().find(|r| r.id == claimed[1].id).unwrap();
    assert_eq!(again.attempts, 2);
    assert_eq!(again.last_error.as_deref(), Some("telegram: 500"));
    s.settle_notification(again.id, &Sent::Failed("telegram: chat not found".into()))
        .await
        .unwrap();

    let all = s.notifications(10).await.unwrap();
    assert_eq!(all.len(), 3);
    let by_id = |id| all.iter().find(|r| r.id == id).unwrap();
    assert_eq!(by_id(claimed[0].id).state, NotificationState::Sent);
    assert!(by_id(claimed[0].id).sent_at.is_some());
    assert_eq!(by_id(claimed[1].id).state, NotificationState::Failed);
    assert_eq!(
        by_id(claimed[1].id).last_error.as_deref(),
        Some("telegram: chat not found")
    );
}

pub async fn a_follower_cursor_only_moves_forward(db: Db) {
    let s = &db.store;
    assert_eq!(s.follower_pos("notify").await.unwrap(), None);
    s.advance_follower("notify", 5).await.unwrap();
    s.advance_follower("notify", 3).await.unwrap();
    assert_eq!(s.follower_pos("notify").await.unwrap(), Some(5));
    s.advance_follower("notify", 9).await.unwrap();
    assert_eq!(s.follower_pos("notify").await.unwrap(), Some(9));
    assert_eq!(s.follower_pos("other").await.unwrap(), None);
}
