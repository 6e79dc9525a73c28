//! Fake notification receivers on 127.0.0.1: Slack (incoming webhooks and `chat.postMessage`),
//! Telegram's Bot API `sendMessage`, and a plain webhook receiver, answering as each documents
//! (Slack `chat.postMessage` says 200 with `ok: false` for its errors; Telegram answers
//! `{"ok": false, "error_code", "description"}`). Every request is recorded; `fail_next(n)`
//! makes the next `n` requests answer 500, as an outage would.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{RecordedRequest, Recorder, serve};

/// What the fake accepts.
#[derive(Debug, Clone)]
pub struct FakeChatOptions {
    /// The Slack bot token `chat.postMessage` accepts.
    pub slack_token: String,
    /// Slack channel ids that exist.
    pub slack_channels: Vec<String>,
    /// The Telegram bot token in `/bot<token>/sendMessage`.
    pub telegram_token: String,
}

impl Default for FakeChatOptions {
    fn default() -> Self {
        FakeChatOptions {
            slack_token: "xoxb-test".into(),
            slack_channels: vec!["C0123".into()],
            telegram_token: "123456:telegram-test".into(),
        }
    }
}

struct Shared {
    opts: FakeChatOptions,
    recorder: Recorder,
    failing: AtomicU32,
    /// Raw bodies, for signature checks (the recorder keeps parsed JSON).
    raw: Mutex<Vec<Vec<u8>>>,
}

pub struct FakeChat {
    shared: Arc<Shared>,
    url: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeChat {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl FakeChat {
    pub async fn start(opts: FakeChatOptions) -> std::io::Result<FakeChat> {
        let shared = Arc::new(Shared {
            opts,
            recorder: Recorder::default(),
            failing: AtomicU32::new(0),
            raw: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (addr, handle) = serve(router).await?;
        Ok(FakeChat {
            shared,
            url: format!("http://{addr}"),
            handle,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A Slack incoming-webhook URL of this fake.
    pub fn slack_webhook_url(&self) -> String {
        format!("{}/services/T000/B000/XXXX", self.url)
    }

    /// The Slack Web API root (`api_url`).
    pub fn slack_api(&self) -> String {
        format!("{}/api", self.url)
    }

    /// A webhook receiver URL.
    pub fn hook_url(&self) -> String {
        format!("{}/hook", self.url)
    }

    /// The next `n` requests answer 500 (and are still recorded).
    pub fn fail_next(&self, n: u32) {
        self.shared.failing.store(n, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.requests()
    }

    /// Requests that were answered with success, by path prefix.
    pub fn delivered(&self, path_prefix: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(path_prefix) && r.header("x-fake-failed").is_none())
            .collect()
    }

    /// Raw request bodies in arrival order.
    pub fn raw_bodies(&self) -> Vec<Vec<u8>> {
        self.shared
            .raw
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    let failing = shared
        .failing
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        // Marked so `delivered` can leave it out.
        headers.insert("x-fake-failed", axum::http::HeaderValue::from_static("1"));
    }
    shared.recorder.record(&method, &uri, &headers, &body);
    if let Ok(mut raw) = shared.raw.lock() {
        raw.push(body.to_vec());
    }
    if failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected outage").into_response();
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
    };
    let path = uri.path();
    if path.starts_with("/services/") {
        // Slack incoming webhook: text/plain "ok", or an error word with a 4xx.
        return if json["text"].as_str().is_some_and(|t| !t.is_empty()) {
            (StatusCode::OK, "ok").into_response()
        } else {
            (StatusCode::BAD_REQUEST, "no_text").into_response()
        };
    }
    if path == "/api/chat.postMessage" {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let answer = if auth != format!("Bearer {}", shared.opts.slack_token) {
            json!({"ok": false, "error": "invalid_auth"})
        } else if !json["channel"]
            .as_str()
            .is_some_and(|c| shared.opts.slack_channels.iter().any(|k| k == c))
        {
            json!({"ok": false, "error": "channel_not_found"})
        } else if json["text"].as_str().is_none_or(str::is_empty) {
            json!({"ok": false, "error": "no_text"})
        } else {
            json!({"ok": true, "channel": json["channel"], "ts": "1700000000.000100", "message": {"text": json["text"]}})
        };
        return axum::Json(answer).into_response();
    }
    if let Some(rest) = path.strip_prefix("/bot") {
        let Some((token, method)) = rest.split_once('/') else {
            return (StatusCode::NOT_FOUND, "no method").into_response();
        };
        if token != shared.opts.telegram_token {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
            )
                .into_response();
        }
        if method != "sendMessage" {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"ok": false, "error_code": 404, "description": "Not Found"})),
            )
                .into_response();
        }
        let text = json["text"].as_str().unwrap_or_default();
        if json["chat_id"].is_null() || text.is_empty() {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"ok": false, "error_code": 400, "description": "Bad Request: message text is empty"})),
            )
                .into_response();
        }
        return axum::Json(json!({
            "ok": true,
            "result": {"message_id": 1, "date": 1_700_000_000, "chat": {"id": json["chat_id"]}, "text": text}
        }))
        .into_response();
    }
    if path == "/hook" {
        return (StatusCode::OK, axum::Json(json!({"received": true}))).into_response();
    }
    (StatusCode::NOT_FOUND, "no such route").into_response()
}
