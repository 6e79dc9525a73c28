//! API tokens: stored and found by hash, revocable.

use codemill_store::StoreError;

use crate::harness::Db;

pub async fn api_tokens_are_found_by_hash_until_revoked(db: Db) {
    let s = &db.store;
    let ci = s.create_api_token("ci", "hash-1").await.unwrap();
    assert_eq!(ci.name, "ci");
    assert!(ci.revoked_at.is_none());
    assert_eq!(s.find_api_token("hash-1").await.unwrap(), Some(ci.clone()));
    assert_eq!(s.find_api_token("hash-2").await.unwrap(), None);
    assert!(matches!(
        s.create_api_token("other", "hash-1").await,
        Err(StoreError::DuplicateToken)
    ));
    assert!(matches!(
        s.create_api_token("ci", "hash-2").await,
        Err(StoreError::TokenNameTaken(n)) if n == "ci"
    ));
    assert!(s.revoke_api_token(ci.id).await.unwrap());
    assert!(!s.revoke_api_token(ci.id).await.unwrap());
    assert!(!s.revoke_api_token(ci.id + 100).await.unwrap());
    // A revoked token no longer authenticates; its name is free again, its hash is not.
    assert_eq!(s.find_api_token("hash-1").await.unwrap(), None);
    let ci2 = s.create_api_token("ci", "hash-2").await.unwrap();
    assert_ne!(ci2.id, ci.id);
    assert!(matches!(
        s.create_api_token("again", "hash-1").await,
        Err(StoreError::DuplicateToken)
    ));
    let all = s.api_tokens().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].revoked_at.is_some() && all[1].revoked_at.is_none());
}
