//! `POST /webhooks/{provider}`: signed deliveries from the local tracker (`local`) or any other
//! system that speaks this format (`generic`), each provider with its own secret.
//!
//! # Request
//!
//! ```text
//! POST /webhooks/local
//! Content-Type: application/json
//! X-Codemill-Delivery: 6f1c0c9e-...          (required; stable across retries of one delivery)
//! X-Codemill-Timestamp: 1767225600           (required; Unix seconds when the request was signed)
//! X-Codemill-Signature-256: sha256=<hex>     (HMAC-SHA256 of "<timestamp>.<raw body>" with the secret)
//!
//! {"event": "ticket.ready", "ticket": "PROJ-12"}
//! ```
//!
//! The signed message is the timestamp exactly as sent in its header, a `.`, then the raw body,
//! so a captured request cannot be sent again later with a new timestamp. A sender retrying a
//! delivery signs it again with the current time and keeps its delivery id.
//!
//! Events: `ticket.ready` starts a job for `ticket`, which must exist in the local tracker. Other
//! event names are recorded and acknowledged without a job, so senders may send more than this
//! version understands. Unknown keys in the payload are ignored.
//!
//! # Checks, in order (nothing is written before all of them pass)
//!
//! | check | answer |
//! |---|---|
//! | provider has no secret configured | 404 |
//! | `Content-Length` over the body limit | 413, before any of the body is read |
//! | signature header missing, not `sha256=`, or not 64 hex digits | 401, before reading the body |
//! | `X-Codemill-Timestamp` missing or not Unix seconds | 401, before reading the body |
//! | body grows over the limit while read (chunked) | 413 |
//! | HMAC does not match (constant-time `verify_slice`) | 401 |
//! | timestamp more than 5 minutes from the server's clock, either way | 401 |
//! | `Content-Type` is not `application/json` | 415 |
//! | `X-Codemill-Delivery` missing or not 1-200 visible ASCII characters | 400 |
//! | body is not a JSON object with a string `event` | 400 |
//! | `ticket.ready` without a valid `ticket` key, or the ticket does not exist | 400 / 422 |
//!
//! Replays: a delivery id seen before is a duplicate for as long as the inbox remembers it
//! (days, see [`crate::ServerConfig::inbox_window`]), and a request older than 5 minutes is
//! refused, so a captured request cannot start work again once its id is forgotten.
//!
//! # Answer: always 202, at once
//!
//! The delivery and its job are written in one transaction (`Store::record_delivery`); a worker
//! does the rest. `{"job": "<id>", "duplicate": false, "existing": false, "ignored": false}` for
//! a new job; `existing: true` when the ticket already had an active job (no second one);
//! `duplicate: true` for a delivery id seen before (nothing written; `job` is the job the first
//! delivery started, if any); `ignored: true`, `job: null` for an event without a job.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_core::pipeline::JobEvent;
use codemill_store::{Delivery, Enqueued, NewJob, Recorded};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;

pub const SIGNATURE_HEADER: &str = "x-codemill-signature-256";
pub const DELIVERY_HEADER: &str = "x-codemill-delivery";
/// Unix seconds when the sender signed the request; part of the signed message.
pub const TIMESTAMP_HEADER: &str = "x-codemill-timestamp";
/// How far a delivery's timestamp may be from the server's clock, either way: long enough for
/// clock skew and a slow network, short enough that a captured request soon stops working.
pub const MAX_SKEW_SECS: i64 = 5 * 60;
/// The event that starts a job.
pub const TICKET_READY: &str = "ticket.ready";

const MAX_DELIVERY_ID_LEN: usize = 200;

/// Headers kept with the delivery in the inbox: enough to verify and replay it later, nothing
/// that authenticates anyone else.
const KEPT_HEADERS: [&str; 5] = [
    "content-type",
    "user-agent",
    DELIVERY_HEADER,
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
];

/// The payload; deliberately minimal: the ticket itself is read from the tracker, not trusted
/// from the sender.
#[derive(Debug, Deserialize)]
struct Payload {
    event: String,
    #[serde(default)]
    ticket: Option<String>,
}

#[derive(Debug, Serialize)]
struct Accepted {
    job: Option<JobId>,
    duplicate: bool,
    existing: bool,
    ignored: bool,
}

/// A refused delivery: the answer, and the result label it is counted under.
pub(crate) struct Refused {
    pub(crate) result: &'static str,
    pub(crate) error: ApiError,
}

pub(crate) fn refuse(result: &'static str, error: ApiError) -> Refused {
    Refused { result, error }
}

pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Only configured providers become metric labels; anything else is "unknown".
    let label = crate::PROVIDERS
        .iter()
        .copied()
        .find(|p| *p == provider && state.secret(p).is_some());
    let Some(provider) = label else {
        state.metrics().delivery("unknown", "no_such_provider");
        return ApiError::NotFound(format!("no webhook endpoint for provider {provider:?}"))
            .into_response();
    };
    match handle(&state, provider, &headers, body).await {
        Ok((result, accepted)) => {
            state.metrics().delivery(provider, result);
            (StatusCode::ACCEPTED, Json(accepted)).into_response()
        }
        Err(refused) => {
            state.metrics().delivery(provider, refused.result);
            refused.error.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    provider: &'static str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'static str, Accepted), Refused> {
    let tag = signature(headers).map_err(|e| refuse("unauthorized", e))?;
    let (timestamp, sent_at) = timestamp(headers).map_err(|e| refuse("unauthorized", e))?;
    let body = read_body(body, state.body_limit()).await?;
    let secret = state
        .secret(provider)
        .ok_or_else(|| refuse("error", ApiError::Internal("secret vanished".into())))?;
    verify(secret.expose_secret().as_bytes(), timestamp, &body, &tag)
        .map_err(|e| refuse("unauthorized", e))?;
    fresh(sent_at, Utc::now().timestamp()).map_err(|e| refuse("unauthorized", e))?;

    // Authenticated from here on: the sender may learn what is wrong with its request.
    if !is_json(headers) {
        return Err(refuse(
            "unsupported_media_type",
            ApiError::UnsupportedMediaType("Content-Type must be application/json".into()),
        ));
    }
    let delivery_id = delivery_id(headers).map_err(|e| refuse("bad_request", e))?;
    let payload: Payload = serde_json::from_slice(&body).map_err(|e| {
        refuse(
            "bad_request",
            ApiError::BadRequest(format!("body is not a valid payload: {e}")),
        )
    })?;
    let kept = kept_headers(headers);
    let delivery = Delivery {
        provider,
        delivery_id,
        headers: &kept,
        body: &body,
    };
    if payload.event != TICKET_READY {
        let recorded = state
            .store()
            .record_delivery(&delivery, None, Utc::now())
            .await
            .map_err(|e| refuse("error", e.into()))?;
        let duplicate = recorded == Recorded::Duplicate;
        return Ok((
            "ignored",
            Accepted {
                job: None,
                duplicate,
                existing: false,
                ignored: true,
            },
        ));
    }
    ticket_ready(state, &delivery, payload.ticket.as_deref()).await
}

async fn ticket_ready(
    state: &AppState,
    delivery: &Delivery<'_>,
    ticket: Option<&str>,
) -> Result<(&'static str, Accepted), Refused> {
    let Some(ticket) = ticket else {
        return Err(refuse(
            "bad_request",
            ApiError::BadRequest(format!("{TICKET_READY} needs a \"ticket\" key")),
        ));
    };
    let unprocessable = |m: String| refuse("unknown_ticket", ApiError::Unprocessable(m));
    let key: TicketKey = ticket.parse().map_err(|e| unprocessable(format!("{e}")))?;
    let project: ProjectName = key
        .project()
        .parse()
        .map_err(|e| unprocessable(format!("{e}")))?;
    let created = JobEvent::Created {
        ticket: key.clone(),
        project,
        max_rounds: state.max_rounds(),
        acknowledge: false,
        follow_pr: false,
        subtask: None,
        refine: None,
    };
    let job = NewJob {
        id: JobId::new(),
        ticket: &key,
        created: &created,
        max_attempts: state.max_attempts(),
    };
    // The ticket's existence is checked in the transaction that records the delivery.
    let recorded = state
        .store()
        .record_ticket_delivery(delivery, &job, Utc::now())
        .await
        .map_err(|e| refuse("error", e.into()))?;
    let accepted = |job, existing| Accepted {
        job,
        duplicate: false,
        existing,
        ignored: false,
    };
    Ok(match recorded {
        Recorded::Inserted {
            job: Some(Enqueued::Created(id)),
        } => ("job_created", accepted(Some(id), false)),
        Recorded::Inserted {
            job: Some(Enqueued::Existing(id)),
        } => ("existing_job", accepted(Some(id), true)),
        Recorded::Inserted { job: None } => ("recorded", accepted(None, false)),
        Recorded::UnknownTicket => {
            return Err(unprocessable(format!(
                "no ticket {key} in the local tracker"
            )));
        }
        Recorded::Duplicate => {
            // Tell the sender which job its first delivery started; one indexed read.
            let first = state
                .store()
                .delivery(delivery.provider, delivery.delivery_id)
                .await
                .map_err(|e| refuse("error", e.into()))?;
            (
                "duplicate",
                Accepted {
                    job: first.and_then(|row| row.job),
                    duplicate: true,
                    existing: false,
                    ignored: false,
                },
            )
        }
    })
}

/// The 32-byte tag of `sha256=<64 hex digits>`; anything else (absent, `sha1=`, bad hex) is 401.
fn signature(headers: &HeaderMap) -> Result<[u8; 32], ApiError> {
    let bad = |m: &str| ApiError::BadSignature(m.to_string());
    let value = headers
        .get(SIGNATURE_HEADER)
        .ok_or_else(|| bad("missing X-Codemill-Signature-256 header"))?
        .to_str()
        .map_err(|_| bad("malformed X-Codemill-Signature-256 header"))?;
    let hex_tag = value
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| bad("X-Codemill-Signature-256 must be sha256=<hex HMAC-SHA256>"))?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(hex_tag, &mut tag)
        .map_err(|_| bad("X-Codemill-Signature-256 must be sha256=<64 hex digits>"))?;
    Ok(tag)
}

/// `X-Codemill-Timestamp` as sent (it is signed as is) and as Unix seconds.
fn timestamp(headers: &HeaderMap) -> Result<(&str, i64), ApiError> {
    let bad = || {
        ApiError::BadSignature(
            "missing or malformed X-Codemill-Timestamp header (Unix seconds when the request \
             was signed)"
                .into(),
        )
    };
    let raw = headers
        .get(TIMESTAMP_HEADER)
        .ok_or_else(bad)?
        .to_str()
        .map_err(|_| bad())?;
    // Digits only (no sign, no spaces): the signed text must have one spelling per instant.
    let valid = !raw.is_empty() && raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit());
    let seconds = raw.parse::<i64>().ok().filter(|_| valid).ok_or_else(bad)?;
    Ok((raw, seconds))
}

/// Constant-time check of the HMAC of `"<timestamp>.<body>"`, as for every other signed webhook.
fn verify(secret: &[u8], timestamp: &str, body: &[u8], tag: &[u8]) -> Result<(), ApiError> {
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    codemill_trackers::webhook::verify_hmac(secret, &signed, tag).map_err(|_| {
        ApiError::BadSignature(
            "signature does not match the timestamp and body (sign \"<timestamp>.<body>\")".into(),
        )
    })
}

/// A verified timestamp within [`MAX_SKEW_SECS`] of `now` (both Unix seconds).
fn fresh(sent_at: i64, now: i64) -> Result<(), ApiError> {
    let age = now.saturating_sub(sent_at);
    if age > MAX_SKEW_SECS {
        return Err(ApiError::BadSignature(format!(
            "X-Codemill-Timestamp is {age} s old, older than {MAX_SKEW_SECS} s: a replayed or \
             delayed request (re-sign a retry with the current time)"
        )));
    }
    if -age > MAX_SKEW_SECS {
        return Err(ApiError::BadSignature(format!(
            "X-Codemill-Timestamp is {} s ahead of the server's clock, more than {MAX_SKEW_SECS} s \
             (check the sender's clock; the header is in seconds)",
            -age
        )));
    }
    Ok(())
}

/// Read the whole body, at most `limit` bytes. The body limit layer already refused a too
/// large `Content-Length`; a streamed body fails here once it passes the limit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, Refused> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            refuse("too_large", ApiError::TooLarge(limit))
        } else {
            refuse(
                "bad_request",
                ApiError::BadRequest(format!("could not read the body: {e}")),
            )
        }
    })
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn delivery_id(headers: &HeaderMap) -> Result<&str, ApiError> {
    let id = headers
        .get(DELIVERY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    let valid = !id.is_empty()
        && id.len() <= MAX_DELIVERY_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(format!(
            "X-Codemill-Delivery must be 1-{MAX_DELIVERY_ID_LEN} visible ASCII characters"
        )))
    }
}

fn kept_headers(headers: &HeaderMap) -> Vec<(&'static str, &str)> {
    KEPT_HEADERS
        .iter()
        .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_signature(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, v.parse().unwrap());
        h
    }

    use codemill_testkit::fakes::hmac_sha256_hex as sign;

    #[test]
    fn only_sha256_signatures_of_timestamp_and_body_verify() {
        let tag = signature(&with_signature(&format!(
            "sha256={}",
            sign(b"s", b"17.body")
        )))
        .unwrap();
        assert!(verify(b"s", "17", b"body", &tag).is_ok());
        assert!(verify(b"s", "17", b"body!", &tag).is_err());
        assert!(verify(b"s", "18", b"body", &tag).is_err());
        assert!(
            verify(b"s", "1", b"7body", &tag).is_err(),
            "the dot is signed"
        );
        assert!(verify(b"t", "17", b"body", &tag).is_err());
        let body_only = sign(b"s", b"body");
        let tag = signature(&with_signature(&format!("sha256={body_only}"))).unwrap();
        assert!(verify(b"s", "17", b"body", &tag).is_err());
        assert!(signature(&HeaderMap::new()).is_err());
        assert!(signature(&with_signature(&format!("sha1={}", "a".repeat(40)))).is_err());
        assert!(signature(&with_signature("sha256=zz")).is_err());
        assert!(signature(&with_signature(&format!("sha256={}", "a".repeat(62)))).is_err());
    }

    #[test]
    fn timestamps_are_unix_seconds_within_five_minutes() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(TIMESTAMP_HEADER, v.parse().unwrap());
            h
        };
        assert_eq!(
            timestamp(&with("1767225600")).unwrap(),
            ("1767225600", 1767225600)
        );
        for bad in [
            "",
            "-5",
            "+5",
            " 5",
            "1.5",
            "0x10",
            "soon",
            "9999999999999999999",
        ] {
            assert!(timestamp(&with(bad)).is_err(), "{bad:?}");
        }
        assert!(timestamp(&HeaderMap::new()).is_err());
        let now = 1_767_225_600;
        assert!(fresh(now, now).is_ok());
        assert!(fresh(now - MAX_SKEW_SECS, now).is_ok());
        assert!(fresh(now + MAX_SKEW_SECS, now).is_ok());
        assert!(fresh(now - MAX_SKEW_SECS - 1, now).is_err());
        assert!(fresh(now + MAX_SKEW_SECS + 1, now).is_err());
        assert!(fresh(0, now).is_err());
    }

    #[test]
    fn json_content_types() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            h
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("Application/JSON; charset=utf-8")));
        assert!(!is_json(&h("text/plain")));
        assert!(!is_json(&h("application/jsonx")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
