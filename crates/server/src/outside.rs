//! `POST /webhooks/{vendor}/{project}`: deliveries from Jira, GitHub, GitLab and Linear for one
//! project.
//!
//! Each project's hook has its own secret and scheme: GitHub `X-Hub-Signature-256`
//! (HMAC-SHA256), GitLab `X-Gitlab-Token` (the secret itself, compared in constant time), Linear `Linear-Signature` (HMAC-SHA256, timestamp within a minute), Jira an
//! HMAC `X-Hub-Signature`, a static token or a JWT, as configured. The signature is checked
//! before the body is parsed. A verified delivery that asks for something is stored in the inbox
//! and answered at once; the inbox processor ([`crate::inbox`]) hands it to the control, which
//! reads the issue afresh, checks the actor's role and journals or queues. A redelivery (same
//! vendor delivery id, or for a sender without ids the same body) is answered as a duplicate
//! without doing anything. This handler changes no job state and calls no tracker, so a slow or
//! unreachable tracker never slows the answer (Linear counts one slower than 5 s as failed).
//!
//! Answers, checked in this order: 404 no such hook; 413 too large; 401 bad or missing signature;
//! 415 a `Content-Type` other than `application/json` (GitHub sends form-encoded payloads when
//! its hook is set so); 400 a GitHub delivery without `X-GitHub-Delivery` (redeliveries could not
//! be de-duplicated), or a malformed payload; 202 `{"result": "ignored", "reason": ...}` for what
//! codemill has no use for, `{"result": "duplicate"}` for a redelivery, and `{"result":
//! "accepted", "delivery": ...}` once stored (what processing did is in `codemill inbox`); 503
//! when the store cannot take it (the vendor retries). A delivery of a shape the vendor documents
//! never gets a 4xx.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use codemill_core::config::{GithubSettings, GitlabSettings, WebhookAuthKind};
use codemill_store::{Delivery, Recorded};
use codemill_trackers::webhook::Hint;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::AppState;
use crate::control::OutsideEvent;
use crate::error::ApiError;
use crate::webhook::{Refused, is_json, read_body, refuse};

/// The vendor label of a known vendor name, for metrics.
pub(crate) fn label(vendor: &str) -> &'static str {
    VENDORS
        .iter()
        .copied()
        .find(|v| *v == vendor)
        .unwrap_or("unknown")
}

/// The vendors with per-project webhooks.
pub const VENDORS: &[&str] = &["jira", "github", "gitlab", "linear"];

/// One project's webhook from one vendor.
#[derive(Clone)]
pub struct OutsideHook {
    /// `jira`, `github` or `linear`.
    pub vendor: String,
    pub project: String,
    pub auth: WebhookAuthKind,
    pub secret: SecretString,
    /// GitHub only: the settings that say what a trigger is (label, assignee, bot login).
    pub github: Option<GithubSettings>,
    /// GitLab only: the trigger label and the bot's username.
    pub gitlab: Option<GitlabSettings>,
}

impl std::fmt::Debug for OutsideHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutsideHook")
            .field("vendor", &self.vendor)
            .field("project", &self.project)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The vendor's delivery id header, stable across redeliveries.
fn delivery_header(vendor: &str) -> &'static str {
    match vendor {
        "github" => "x-github-delivery",
        // Kept by GitLab when it retries a delivery.
        "gitlab" => "idempotency-key",
        "linear" => "linear-delivery",
        _ => "x-atlassian-webhook-identifier",
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
}

pub(crate) async fn receive(
    State(state): State<AppState>,
    Path((vendor, project)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(hook) = state.outside_hook(&vendor, &project).cloned() else {
        state.metrics().delivery("unknown", "no_such_provider");
        return ApiError::NotFound(format!("no webhook endpoint for {vendor}/{project}"))
            .into_response();
    };
    let label = label(&vendor);
    match handle(&state, &hook, &headers, body).await {
        Ok((result, answer)) => {
            state.metrics().delivery(label, result);
            (StatusCode::ACCEPTED, Json(answer)).into_response()
        }
        Err(refused) => {
            state.metrics().delivery(label, refused.result);
            refused.error.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    hook: &OutsideHook,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'static str, serde_json::Value), Refused> {
    let body = read_body(body, state.body_limit()).await?;
    let secret = hook.secret.expose_secret();
    let unauthorized = |e: codemill_trackers::webhook::VerifyError| {
        refuse(
            "unauthorized",
            ApiError::BadSignature(format!("{} webhook: {e}", hook.vendor)),
        )
    };
    let now = Utc::now();
    match hook.vendor.as_str() {
        "github" => codemill_trackers::github::verify_webhook(secret, headers, &body),
        "gitlab" => codemill_trackers::gitlab::verify_webhook(secret, headers),
        "linear" => codemill_trackers::linear::verify_webhook(secret, headers, &body, now),
        _ => codemill_trackers::jira::verify_webhook(hook.auth, secret, headers, &body, now),
    }
    .map_err(unauthorized)?;

    // Authenticated from here on: the sender may learn what is wrong with its request.
    if !is_json(headers) {
        return Err(refuse(
            "unsupported_media_type",
            ApiError::UnsupportedMediaType(format!(
                "{} webhook: Content-Type must be application/json (set the webhook's content \
                 type to application/json in its settings)",
                hook.vendor
            )),
        ));
    }
    let delivery_id = header(headers, delivery_header(&hook.vendor))
        // GitLab before 17.4 sends no Idempotency-Key; its event UUID names the delivery.
        .or_else(|| {
            (hook.vendor == "gitlab")
                .then(|| header(headers, "x-gitlab-event-uuid"))
                .flatten()
        })
        .map(str::to_string);
    // GitHub sends the id with every delivery and keeps it on redelivery; without it a
    // redelivery could not be told from a new event.
    if hook.vendor == "github" && delivery_id.is_none() {
        return Err(refuse(
            "bad_request",
            ApiError::BadRequest(
                "github webhook: missing or malformed X-GitHub-Delivery header".into(),
            ),
        ));
    }
    let event_header = if hook.vendor == "gitlab" {
        "x-gitlab-event"
    } else {
        "x-github-event"
    };
    let event = headers
        .get(event_header)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    let hint = parse(hook, event, &body).map_err(|e| {
        refuse(
            "bad_request",
            ApiError::BadRequest(format!("{} payload: {e}", hook.vendor)),
        )
    })?;
    if let Hint::Ignored { reason } = hint {
        return Ok(("ignored", json!({"result": "ignored", "reason": reason})));
    }
    // Jira and Linear name their deliveries too, but a sender that does not is still
    // de-duplicated: the same body twice is the same delivery.
    let delivery_id = delivery_id.unwrap_or_else(|| format!("sha256:{}", sha256_hex(&body)));
    let provider = format!("{}:{}", hook.vendor, hook.project);
    // Only what processing needs again; never the signature or a token.
    let kept: Vec<(&str, &str)> = if event.is_empty() {
        Vec::new()
    } else {
        vec![(event_header, event)]
    };
    let delivery = Delivery {
        provider: &provider,
        delivery_id: &delivery_id,
        headers: &kept,
        body: &body,
    };
    let recorded = state
        .store()
        .accept_delivery(&delivery, Utc::now())
        .await
        .map_err(|e| {
            tracing::error!(error = %codemill_core::text::log_safe(&e), "could not store a webhook delivery");
            refuse(
                "error",
                ApiError::Unavailable(
                    "the delivery could not be stored; deliver it again later".into(),
                ),
            )
        })?;
    if recorded == Recorded::Duplicate {
        return Ok(("duplicate", json!({"result": "duplicate"})));
    }
    state.wake_inbox();
    Ok((
        "accepted",
        json!({"result": "accepted", "delivery": delivery_id}),
    ))
}

fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

/// What a verified delivery of `hook` says; `event` is GitHub's `X-GitHub-Event` or GitLab's
/// `X-Gitlab-Event`. Pure: the
/// handler parses to answer a malformed or irrelevant delivery at once, the inbox again when it
/// processes the stored delivery.
pub(crate) fn parse(hook: &OutsideHook, event: &str, body: &[u8]) -> Result<Hint, String> {
    match hook.vendor.as_str() {
        "github" => {
            let settings = hook
                .github
                .as_ref()
                .ok_or_else(|| "GitHub hook without settings".to_string())?;
            codemill_trackers::github::parse_webhook(event, body, settings)
        }
        "gitlab" => {
            let settings = hook
                .gitlab
                .as_ref()
                .ok_or_else(|| "GitLab hook without settings".to_string())?;
            codemill_trackers::gitlab::parse_webhook(event, body, settings)
        }
        "linear" => codemill_trackers::linear::parse_webhook(body),
        _ => codemill_trackers::jira::parse_webhook(body),
    }
    .map_err(|e| e.to_string())
}

/// The control's event for a hint that asks for something (`None`: ignored, and why).
pub(crate) fn event(project: &str, hint: Hint) -> Result<OutsideEvent, String> {
    let project = project.to_string();
    Ok(match hint {
        Hint::Issue { key, actor } => OutsideEvent::Trigger {
            project,
            key,
            actor,
        },
        Hint::Feedback { head, pr, feedback } => OutsideEvent::Feedback {
            project,
            head,
            pr,
            feedback,
        },
        Hint::PrClosed {
            head,
            merged,
            actor,
            ..
        } => OutsideEvent::PrClosed {
            project,
            head,
            merged,
            actor,
        },
        Hint::Ignored { reason } => return Err(reason),
    })
}
