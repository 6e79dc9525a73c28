//! Linear webhook deliveries: the `Linear-Signature` check with replay protection, and reading
//! a verified payload (`action`, `type`, `data`, `actor`, `webhookTimestamp`) into a [`Hint`].

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::has_codemill_marker;
use crate::webhook::{Hint, VerifyError, verify_hmac_hex};

/// How far `webhookTimestamp` may be from now (Linear's documented replay window).
const MAX_SKEW_MS: i64 = 60_000;

/// `Linear-Signature` hex HMAC-SHA256 of the raw body, constant time; and the payload's
/// `webhookTimestamp` within 60 s of `now` (replay protection).
pub fn verify_webhook(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<(), VerifyError> {
    let signature = headers
        .get("linear-signature")
        .ok_or(VerifyError::Missing("Linear-Signature header"))?
        .to_str()
        .map_err(|_| VerifyError::Malformed("Linear-Signature header"))?;
    verify_hmac_hex(secret.as_bytes(), body, signature)?;
    // Only a body that is known to come from Linear is parsed.
    let payload: Value =
        serde_json::from_slice(body).map_err(|_| VerifyError::Malformed("body"))?;
    let sent_ms = match payload.get("webhookTimestamp") {
        None | Some(Value::Null) => return Err(VerifyError::Missing("webhookTimestamp")),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .ok_or(VerifyError::Malformed("webhookTimestamp"))?,
    };
    if (now.timestamp_millis() - sent_ms).abs() > MAX_SKEW_MS {
        return Err(VerifyError::Expired);
    }
    Ok(())
}

/// Issue create/update → [`Hint::Issue`] `{ key: data.identifier, actor: actor.id (or email) }`;
/// Comment create → [`Hint::Issue`] for the comment's issue, unless the comment carries a
/// codemill marker → Ignored; anything else Ignored with a reason; malformed → Err.
///
/// A Comment names its issue by `data.issue.identifier` when Linear includes the issue, which
/// its schema marks nullable and its documented example leaves out; else by `data.issueId`, the
/// issue's id (or `data.issue.id`), which Linear's `issue(id:)` reads like an identifier. No
/// issue id at all: a comment on something else (a project update, a document), Ignored.
pub fn parse_webhook(body: &[u8]) -> std::result::Result<Hint, String> {
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| format!("linear webhook: body is not JSON: {e}"))?;
    let field = |name: &str| {
        payload
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("linear webhook: `{name}` is missing or not a string"))
    };
    let kind = field("type")?;
    let action = field("action")?;
    let data = payload
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| "linear webhook: `data` is missing or not an object".to_string())?;
    let actor = payload.get("actor").and_then(|a| {
        let s = |k: &str| a.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        s("id").or_else(|| s("email")).map(str::to_string)
    });
    let ignored = |reason: String| Ok(Hint::Ignored { reason });
    match (kind, action) {
        ("Issue", "create" | "update") => {
            let key = data
                .get("identifier")
                .and_then(Value::as_str)
                .ok_or_else(|| "linear webhook: Issue event without data.identifier".to_string())?;
            Ok(Hint::Issue {
                key: checked_key(key)?,
                actor,
            })
        }
        ("Comment", "create") => {
            let body = data.get("body").and_then(Value::as_str).unwrap_or("");
            if has_codemill_marker(body) {
                return ignored("linear Comment create: codemill's own comment".into());
            }
            let identifier = data.pointer("/issue/identifier").and_then(Value::as_str);
            let issue_id = data
                .get("issueId")
                .or_else(|| data.pointer("/issue/id"))
                .filter(|v| !v.is_null());
            let key = match (identifier, issue_id) {
                (Some(key), _) => checked_key(key)?,
                (None, Some(id)) => checked_id(id.as_str().ok_or_else(|| {
                    "linear webhook: Comment event with a data.issueId that is not a string"
                        .to_string()
                })?)?,
                (None, None) => {
                    return ignored("linear Comment create: not a comment on an issue".into());
                }
            };
            Ok(Hint::Issue { key, actor })
        }
        (kind, action) => ignored(format!("linear {kind} {action}: nothing for codemill")),
    }
}

/// A Linear identifier (`ENG-7`): team key, dash, number. Anything else is refused.
fn checked_key(key: &str) -> std::result::Result<String, String> {
    let valid = key.split_once('-').is_some_and(|(team, number)| {
        !team.is_empty()
            && team.len() <= 16
            && team.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !number.is_empty()
            && number.len() <= 12
            && number.chars().all(|c| c.is_ascii_digit())
    });
    if valid {
        Ok(key.to_ascii_uppercase())
    } else {
        Err(format!(
            "linear webhook: {key:?} is not an issue identifier"
        ))
    }
}

/// A Linear id (a UUID): hex digits and dashes. Anything else is refused, so it cannot be
/// mistaken for an identifier or carry anything into a query.
fn checked_id(id: &str) -> std::result::Result<String, String> {
    let valid = (1..=64).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && id.chars().any(|c| c.is_ascii_hexdigit());
    if valid {
        Ok(id.to_string())
    } else {
        Err(format!("linear webhook: {id:?} is not an issue id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert_eq!(checked_key("ENG-7"), Ok("ENG-7".to_string()));
        assert_eq!(checked_key("eng-7"), Ok("ENG-7".to_string()));
        assert!(checked_key("ENG-7; drop").is_err());
        assert!(checked_key("ENG").is_err());
        assert!(checked_key("-7").is_err());
    }

    #[test]
    fn ids_are_checked() {
        let id = "9b2f6a0e-1c3d-4e5f-8a7b-6c5d4e3f2a1b";
        assert_eq!(checked_id(id), Ok(id.to_string()));
        for bad in [
            "",
            "-",
            "ENG-7",
            "9b2f6a0e 1c3d",
            "9b2f6a0e\"}",
            &"a".repeat(65),
        ] {
            assert!(checked_id(bad).is_err(), "{bad:?}");
        }
    }
}
