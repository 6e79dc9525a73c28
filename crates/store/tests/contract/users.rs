//! Dashboard users: one per name, found by name, listed without their hashes in debug output,
//! removed.

use codemill_store::StoreError;

use crate::harness::Db;

pub async fn users_are_unique_by_name_and_removable(db: Db) {
    let s = &db.store;
    let ada = s
        .create_user("ada", "admin", "$argon2id$hash-1")
        .await
        .unwrap();
    assert_eq!((ada.name.as_str(), ada.role.as_str()), ("ada", "admin"));
    assert!(matches!(
        s.create_user("ada", "viewer", "$argon2id$hash-2").await,
        Err(StoreError::UserExists(n)) if n == "ada"
    ));
    // The store refuses a role it does not know.
    assert!(s.create_user("eve", "owner", "h").await.is_err());
    s.create_user("bob", "approver", "$argon2id$hash-3")
        .await
        .unwrap();
    let found = s.user("ada").await.unwrap().unwrap();
    assert_eq!(found.password_hash, "$argon2id$hash-1");
    assert!(!format!("{found:?}").contains("hash-1"), "{found:?}");
    assert_eq!(
        s.users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["ada", "bob"]
    );
    assert!(s.remove_user("ada").await.unwrap());
    assert!(!s.remove_user("ada").await.unwrap());
    assert!(s.user("ada").await.unwrap().is_none());
}
