//! API tokens: creating them, hashing them, and the bearer check in front of `/api`.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Longer bearer values are refused before hashing: no token of ours is near this long.
const MAX_TOKEN_LEN: usize = 256;

/// The hex SHA-256 of a token: what the store keeps and looks tokens up by. A plain hash (no
/// salt, no slow KDF) is enough because tokens are 256 random bits, not passwords.
pub fn hash_token(plain: &str) -> String {
    hex::encode(Sha256::digest(plain.as_bytes()))
}

/// A new random API token, `cm_` and 64 hex digits (256 bits from the thread-local CSPRNG,
/// seeded by the OS). The prefix lets secret scanners recognise leaked tokens.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    format!("cm_{}", hex::encode(bytes))
}

/// A new token's name, trimmed: 1–64 characters on one line, and not only digits (`token
/// revoke` takes a name or an id, so a number would name two tokens). The same rule for the
/// CLI and the settings page.
pub fn token_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err("a token's name is 1–64 characters on one line".into());
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "a token's name cannot be a number ({name:?} would also read as a token id)"
        ));
    }
    Ok(name)
}

/// The API token a request was authenticated with.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub name: String,
}

/// Let the request through only with `Authorization: Bearer <token>` of an active token.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(&request) else {
        return ApiError::Unauthorized.into_response();
    };
    match state.store().find_api_token(&hash_token(token)).await {
        Ok(Some(row)) => {
            request.extensions_mut().insert(Caller { name: row.name });
            next.run(request).await
        }
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(e) => {
            // Details go to the log only: this caller is not authenticated.
            tracing::error!(error = %e, "looking up an API token failed");
            if e.is_unavailable() {
                ApiError::Unavailable(
                    "the store is unreachable, so the API token cannot be checked; try again"
                        .into(),
                )
                .into_response()
            } else {
                ApiError::Internal("could not check the API token".into()).into_response()
            }
        }
    }
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let plausible = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    plausible.then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_names_are_one_line_and_not_numbers() {
        assert_eq!(token_name("  ci ").unwrap(), "ci");
        assert_eq!(token_name("ci-2").unwrap(), "ci-2");
        for bad in ["", " ", "a\nb", "1", "0042"] {
            assert!(token_name(bad).is_err(), "{bad:?}");
        }
        assert!(token_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn new_tokens_are_prefixed_random_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert!(a.starts_with("cm_"));
        assert_eq!(a.len(), 3 + 64);
        assert!(a[3..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn bearer_header_forms() {
        let req = |v: &str| {
            axum::http::Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer cm_x")), Some("cm_x"));
        assert_eq!(bearer(&req("bearer cm_x")), Some("cm_x"));
        assert_eq!(bearer(&req("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
        assert_eq!(bearer(&req("Bearer a b")), None);
        assert_eq!(bearer(&req(&format!("Bearer {}", "x".repeat(300)))), None);
    }
}
