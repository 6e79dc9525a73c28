//! Dashboard sessions: found only while unexpired and with the user's current role, kept alive
//! by use, ended at sign-out and with the user.

use chrono::TimeDelta;
use serde_json::json;

use crate::harness::Db;

pub async fn sessions_expire_and_end_with_sign_out_or_their_user(db: Db) {
    let s = &db.store;
    s.create_user("ada", "approver", "h").await.unwrap();
    s.create_user("bob", "viewer", "h").await.unwrap();
    let day = TimeDelta::days(1);
    let now = chrono::Utc::now();
    s.create_session("hash-a", "ada", &json!({"csrf": "t1"}), now + day)
        .await
        .unwrap();
    s.create_session("hash-b", "bob", &json!({}), now + day)
        .await
        .unwrap();
    let a = s.session("hash-a", now).await.unwrap().unwrap();
    assert_eq!((a.user.as_str(), a.role.as_str()), ("ada", "approver"));
    assert_eq!(a.data, json!({"csrf": "t1"}));
    assert!(s.session("hash-x", now).await.unwrap().is_none());
    // Expired: not found, then pruned.
    assert!(s.session("hash-a", now + day * 2).await.unwrap().is_none());
    assert!(
        s.touch_session("hash-a", &json!({"csrf": "t2"}), now + day * 3)
            .await
            .unwrap()
    );
    let a = s.session("hash-a", now + day * 2).await.unwrap().unwrap();
    assert_eq!(a.data, json!({"csrf": "t2"}));
    assert_eq!(s.prune_sessions(now + day * 2).await.unwrap(), 1, "bob's");
    assert!(s.session("hash-b", now).await.unwrap().is_none());
    // Sign-out ends it; removing the user ends all of theirs.
    s.create_session("hash-c", "ada", &json!({}), now + day)
        .await
        .unwrap();
    assert!(s.delete_session("hash-a").await.unwrap());
    assert!(!s.delete_session("hash-a").await.unwrap());
    assert!(s.session("hash-c", now).await.unwrap().is_some());
    assert!(s.remove_user("ada").await.unwrap());
    assert!(s.session("hash-c", now).await.unwrap().is_none());
    // A session needs a user.
    assert!(
        s.create_session("hash-d", "nobody", &json!({}), now + day)
            .await
            .is_err()
    );
}

/// A single sign-on under way is taken once, and not at all once expired.
pub async fn sign_ins_are_taken_once_and_expire(db: Db) {
    let s = &db.store;
    let data = serde_json::json!({"state": "s1", "nonce": "n1"});
    let later = chrono::Utc::now() + chrono::TimeDelta::minutes(10);
    s.put_sign_in("h1", &data, later).await.unwrap();
    assert_eq!(s.take_sign_in("h1").await.unwrap(), Some(data.clone()));
    assert_eq!(s.take_sign_in("h1").await.unwrap(), None, "used once");
    assert_eq!(s.take_sign_in("nobody").await.unwrap(), None);
    let past = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    s.put_sign_in("h2", &data, past).await.unwrap();
    assert_eq!(s.take_sign_in("h2").await.unwrap(), None, "expired");
}
