//! Jira webhook deliveries: proving who sent them (HMAC signature, shared token or JWT) and
//! reading what they hint at. A delivery only names an issue; the issue is read afresh.

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value;

use codemill_core::config::vendors::WebhookAuthKind;

use super::adf::plain_text;
use crate::has_codemill_marker;
use crate::webhook::{Hint, VerifyError, verify_hmac_hex};

/// Clock skew tolerated on a JWT's `exp` and `nbf`, in seconds (jsonwebtoken's default).
const JWT_LEEWAY_SECS: i64 = 60;

/// Verify a delivery by `kind`:
/// - `Hmac`: `X-Hub-Signature: sha256=<hex>`, HMAC-SHA256 of the raw body (what Jira Cloud sends
///   for admin webhooks with a secret);
/// - `Token`: `Authorization: Bearer <secret>` or `X-Codemill-Token: <secret>`;
/// - `Jwt`: `Authorization: JWT <token>` (or `Bearer`), HS256 with the secret, `exp` required
///   and checked against `now`.
///
/// Every comparison with the secret is constant-time.
pub fn verify_webhook(
    kind: WebhookAuthKind,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let header = |name: &'static str| -> Result<Option<&str>, VerifyError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim()))
                .map_err(|_| VerifyError::Malformed(name)),
        }
    };
    match kind {
        WebhookAuthKind::Hmac => {
            let value =
                header("x-hub-signature")?.ok_or(VerifyError::Missing("X-Hub-Signature"))?;
            let (algorithm, hex) = value
                .split_once('=')
                .ok_or(VerifyError::Malformed("X-Hub-Signature"))?;
            if !algorithm.trim().eq_ignore_ascii_case("sha256") {
                return Err(VerifyError::Malformed("X-Hub-Signature"));
            }
            verify_hmac_hex(secret.as_bytes(), body, hex)
        }
        WebhookAuthKind::Token => {
            let authorization = header("authorization")?;
            let bearer = authorization.and_then(|v| scheme_value(v, "bearer"));
            let token = header("x-codemill-token")?;
            let candidates: Vec<&str> = bearer.into_iter().chain(token).collect();
            if candidates.is_empty() {
                return Err(match authorization {
                    Some(_) => VerifyError::Malformed("Authorization"),
                    None => VerifyError::Missing("Authorization or X-Codemill-Token"),
                });
            }
            // Check every candidate so the time taken does not say which header was wrong.
            let matched = candidates.iter().fold(false, |ok, c| {
                crate::webhook::constant_time_eq(c.as_bytes(), secret.as_bytes()) | ok
            });
            if matched {
                Ok(())
            } else {
                Err(VerifyError::Mismatch)
            }
        }
        WebhookAuthKind::Jwt => {
            let authorization =
                header("authorization")?.ok_or(VerifyError::Missing("Authorization"))?;
            let token = scheme_value(authorization, "jwt")
                .or_else(|| scheme_value(authorization, "bearer"))
                .ok_or(VerifyError::Malformed("Authorization"))?;
            verify_jwt(token, secret, now)
        }
    }
}

/// The credentials of `Authorization: <scheme> <value>` when the scheme is `scheme`.
fn scheme_value<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, value) = header.split_once(' ')?;
    let value = value.trim();
    (s.eq_ignore_ascii_case(scheme) && !value.is_empty()).then_some(value)
}

#[derive(serde::Deserialize)]
struct Claims {
    exp: Option<i64>,
    nbf: Option<i64>,
}

fn verify_jwt(token: &str, secret: &str, now: DateTime<Utc>) -> Result<(), VerifyError> {
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let mut validation = Validation::new(Algorithm::HS256);
    // Time is checked below against the caller's `now`, not the library's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => VerifyError::Mismatch,
        ErrorKind::MissingRequiredClaim(_) => VerifyError::Malformed("JWT exp claim"),
        _ => VerifyError::Malformed("JWT"),
    })?;
    let now = now.timestamp();
    let exp = data
        .claims
        .exp
        .ok_or(VerifyError::Malformed("JWT exp claim"))?;
    if exp + JWT_LEEWAY_SECS <= now {
        return Err(VerifyError::Expired);
    }
    if data
        .claims
        .nbf
        .is_some_and(|nbf| nbf - JWT_LEEWAY_SECS > now)
    {
        return Err(VerifyError::Expired);
    }
    Ok(())
}

/// Read a delivery. Issue events (`jira:issue_created`, `jira:issue_updated`) name the issue and
/// `user.accountId`; comment events (`comment_created`, `comment_updated`) name the issue and
/// the comment's author (its last editor for an edit). A comment carrying a codemill marker is
/// codemill's own and ignored; so is every other event. Only a body that is not a JSON object,
/// or an event without its issue key, is an error.
pub fn parse_webhook(body: &[u8]) -> Result<Hint, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| format!("jira webhook: body is not JSON: {e}"))?;
    if !payload.is_object() {
        return Err("jira webhook: body is not a JSON object".into());
    }
    let Some(event) = payload.get("webhookEvent").and_then(Value::as_str) else {
        return Ok(ignored("jira webhook without webhookEvent"));
    };
    let issue_key = || {
        payload
            .pointer("/issue/key")
            .and_then(Value::as_str)
            .filter(|k| !k.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("jira webhook {event}: issue.key is missing"))
    };
    let account = |ptr: &str| {
        payload
            .pointer(ptr)
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
    };
    match event {
        "jira:issue_created" | "jira:issue_updated" => {
            // Older sites still embed the comment in `issue_commented` updates.
            if payload.get("comment").is_some_and(by_codemill) {
                return Ok(ignored(&format!("{event}: a comment written by codemill")));
            }
            Ok(Hint::Issue {
                key: issue_key()?,
                actor: account("/user/accountId"),
            })
        }
        "comment_created" | "comment_updated" => {
            let Some(comment) = payload.get("comment") else {
                return Err(format!("jira webhook {event}: comment is missing"));
            };
            if by_codemill(comment) {
                return Ok(ignored(&format!("{event}: a comment written by codemill")));
            }
            Ok(Hint::Issue {
                key: issue_key()?,
                actor: account("/comment/updateAuthor/accountId")
                    .filter(|_| event == "comment_updated")
                    .or_else(|| account("/comment/author/accountId")),
            })
        }
        other => Ok(ignored(&format!(
            "jira event {other} is not one codemill acts on"
        ))),
    }
}

fn ignored(reason: &str) -> Hint {
    Hint::Ignored {
        reason: reason.to_string(),
    }
}

/// Whether a webhook comment carries a codemill marker. Its body is ADF or, on sites that still
/// send v2 payloads, wiki markup, where the renderer escapes brackets (`\[codemill:…\]`).
fn by_codemill(comment: &Value) -> bool {
    let text = match comment.get("body") {
        Some(Value::String(s)) => s.clone(),
        Some(body) => plain_text(body),
        None => return false,
    };
    has_codemill_marker(&text.replace("\\[", "[").replace("\\]", "]"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn token_accepts_either_header_and_rejects_others() {
        let now = Utc::now();
        let t = WebhookAuthKind::Token;
        assert_eq!(
            verify_webhook(
                t,
                "s3",
                &headers(&[("authorization", "Bearer s3")]),
                b"{}",
                now
            ),
            Ok(())
        );
        assert_eq!(
            verify_webhook(t, "s3", &headers(&[("x-codemill-token", "s3")]), b"{}", now),
            Ok(())
        );
        assert_eq!(
            verify_webhook(
                t,
                "s3",
                &headers(&[("authorization", "Bearer nope"), ("x-codemill-token", "s3")]),
                b"{}",
                now
            ),
            Ok(())
        );
        assert_eq!(
            verify_webhook(t, "s3", &headers(&[("x-codemill-token", "s4")]), b"{}", now),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_webhook(
                t,
                "s3",
                &headers(&[("authorization", "Basic czM=")]),
                b"{}",
                now
            ),
            Err(VerifyError::Malformed("Authorization"))
        );
        assert!(matches!(
            verify_webhook(t, "s3", &HeaderMap::new(), b"{}", now),
            Err(VerifyError::Missing(_))
        ));
    }

    #[test]
    fn hmac_needs_the_sha256_prefix() {
        let now = Utc::now();
        let sig = codemill_testkit::fakes::hmac_sha256_hex(b"k", b"body");
        let h = headers(&[("x-hub-signature", &format!("sha256={sig}"))]);
        assert_eq!(
            verify_webhook(WebhookAuthKind::Hmac, "k", &h, b"body", now),
            Ok(())
        );
        let h = headers(&[("x-hub-signature", &format!("sha1={sig}"))]);
        assert_eq!(
            verify_webhook(WebhookAuthKind::Hmac, "k", &h, b"body", now),
            Err(VerifyError::Malformed("X-Hub-Signature"))
        );
    }

    #[test]
    fn wiki_markup_comment_bodies_are_unescaped() {
        let comment = serde_json::json!({"body": "_codemill · \\[codemill:j1:plan\\]_"});
        assert!(by_codemill(&comment));
        assert!(!by_codemill(
            &serde_json::json!({"body": "please do [this]"})
        ));
    }
}
