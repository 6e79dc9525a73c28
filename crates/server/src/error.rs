//! Errors: configuration problems found at start, and request failures as JSON responses.

use std::any::Any;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use codemill_core::text::log_safe;
use codemill_store::StoreError;

use crate::control::ControlError;

/// A [`crate::ServerConfig`] that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown webhook provider {0:?} (known: local, generic)")]
    UnknownProvider(String),
    #[error("the webhook secret of provider {0:?} is empty")]
    EmptySecret(String),
    #[error("webhook provider {0:?} is configured twice")]
    DuplicateProvider(String),
    #[error("invalid server setting: {0}")]
    Invalid(String),
}

/// Why a request failed; answered as `{"error": "<message>"}` with the matching status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Missing, malformed, unknown or revoked bearer token: one message for all, so a caller
    /// learns nothing about which tokens exist.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    BadSignature(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
    /// An outside system could not be reached; the sender should retry.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(StoreError::NoTicket(_)) => StatusCode::NOT_FOUND,
            ApiError::Store(StoreError::ActiveJob { .. })
            | ApiError::Store(StoreError::InvalidTransition { .. }) => StatusCode::CONFLICT,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(m) => ApiError::NotFound(m),
            ControlError::Conflict(m) => ApiError::Conflict(m),
            ControlError::Failed(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %log_safe(&self), "request failed");
        }
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        if matches!(self, ApiError::Unauthorized) {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        (status, body).into_response()
    }
}

/// The fallback for unknown paths: a JSON 404 like every other error.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// The API and webhook routes answer every failure as `{"error": "..."}`, also those made
/// before a handler runs (a query string or path that does not parse, a body over the limit,
/// a method the route does not take), which axum and tower-http answer in plain text or with
/// no body at all. The dashboard's pages keep their own HTML.
pub(crate) async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let machine = path.starts_with("/api/") || path.starts_with("/webhooks/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !machine || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Framework messages are one line; a longer body is not one of them.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let mut answer = (status, Json(serde_json::json!({ "error": message }))).into_response();
    // Keep what the client needs from the original answer (`Allow` on a 405, `Retry-After`).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// A handler panicked: log what it said and answer 500 without details.
pub(crate) fn panicked(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    tracing::error!(panic = %log_safe(&message), "request handler panicked");
    let body = Json(serde_json::json!({ "error": "internal error" }));
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}
