//! Dashboard users' passwords: hashed with argon2id (a random salt each, the crate's default
//! cost) before they reach the store, and checked against the stored hash at sign-in. The
//! password itself is never stored or logged.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

/// The roles a user can have, from least to most allowed.
pub use codemill_core::config::ROLES;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

/// Why a password cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the password is shorter than {MIN_PASSWORD} characters")]
    TooShort,
    #[error("the password could not be hashed: {0}")]
    Hash(String),
}

/// The argon2id hash (PHC string) of `password`, with a fresh random salt.
pub fn hash_password(password: &SecretString) -> Result<String, PasswordError> {
    let text = password.expose_secret();
    if text.is_empty() {
        return Err(PasswordError::Empty);
    }
    if text.chars().count() < MIN_PASSWORD {
        return Err(PasswordError::TooShort);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(text.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the stored `hash` (false for a malformed hash).
pub fn verify_password(password: &SecretString, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.expose_secret().as_bytes(), &parsed)
        .is_ok()
}

/// Whether `name` can be a user name: 1–64 letters, digits, '.', '_', '-' or '@'.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// A role name as given, if it is one of [`ROLES`].
pub fn parse_role(role: &str) -> Option<&'static str> {
    ROLES.iter().copied().find(|r| *r == role)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn passwords_are_hashed_with_argon2id_and_a_salt_each() {
        let pw = SecretString::from("correct horse battery");
        let a = hash_password(&pw).unwrap();
        let b = hash_password(&pw).unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.contains("correct horse"));
        assert!(verify_password(&pw, &a));
        assert!(verify_password(&pw, &b));
        assert!(!verify_password(
            &SecretString::from("correct horse batterz"),
            &a
        ));
        assert!(!verify_password(&pw, "not a hash"));
    }

    #[test]
    fn weak_passwords_and_unknown_roles_are_refused() {
        assert_eq!(
            hash_password(&SecretString::from("")),
            Err(PasswordError::Empty)
        );
        assert_eq!(
            hash_password(&SecretString::from("short")),
            Err(PasswordError::TooShort)
        );
        assert_eq!(parse_role("approver"), Some("approver"));
        assert_eq!(parse_role("owner"), None);
    }
}
