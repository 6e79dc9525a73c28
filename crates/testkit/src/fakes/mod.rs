//! Fake Jira, GitHub, GitLab and Linear servers for tests: each speaks its vendor's documented
//! wire format on 127.0.0.1, keeps the state a real one would (issues, comments, PRs), records
//! every request for field-by-field assertions, and can inject faults (an error after the write
//! was applied, an error before it, a 429 with `Retry-After`). Beside them, the receivers of
//! notifications: Slack, Telegram and a webhook (`chat`), and an SMTP server (`smtp`); and an
//! OpenID Connect identity provider for the dashboard's single sign-on (`oidc`); and an
//! OpenTelemetry collector's OTLP/HTTP trace receiver (`otlp`).

pub mod chat;
pub mod github;
pub mod gitlab;
pub mod jira;
pub mod linear;
pub mod oidc;
pub mod otlp;
pub mod smtp;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// HMAC-SHA256 of `body` with `secret`, lowercase hex: how every vendor here signs deliveries.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: serde_json::Value,
    pub at: Instant,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|s| s.as_str())
    }
    /// `"POST /rest/api/3/issue/PROJ-1/comment"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A fault to inject on the next request matching `method` and a path starting with `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub method: String,
    pub path: String,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Apply the request, then answer this status anyway (a 5xx after success).
    AfterApply(u16),
    /// Answer this status without applying.
    Before(u16),
    /// Answer 429 with `Retry-After: <secs>` without applying.
    RateLimit { retry_after_secs: u64 },
}

/// Requests and pending faults, shared by a fake's handlers.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl Recorder {
    /// Record a request and return the fault to apply to it, if one is queued.
    pub fn record(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Option<FaultKind> {
        let req = RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or_default().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
            at: Instant::now(),
        };
        let fault = self.faults.lock().ok().and_then(|mut faults| {
            let i = faults
                .iter()
                .position(|f| f.method == req.method && req.path.starts_with(&f.path))?;
            Some(faults.remove(i).kind)
        });
        if let Ok(mut r) = self.requests.lock() {
            r.push(req);
        }
        fault
    }

    pub fn inject(&self, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.push(fault);
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut r) = self.requests.lock() {
            r.clear();
        }
    }
}

/// The answer for a fault that stops a request before it is applied.
pub fn fault_response(kind: &FaultKind) -> Option<Response> {
    match kind {
        FaultKind::Before(status) => Some(error_status(*status)),
        FaultKind::RateLimit { retry_after_secs } => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                axum::Json(serde_json::json!({"message": "rate limited (injected)"})),
            )
                .into_response(),
        ),
        FaultKind::AfterApply(_) => None,
    }
}

pub fn error_status(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        axum::Json(serde_json::json!({"message": format!("injected {status}")})),
    )
        .into_response()
}

/// Serve `router` on 127.0.0.1 on a free port.
pub async fn serve(
    router: axum::Router,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, handle))
}
