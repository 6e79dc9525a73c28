//! The one HTTP client every tracker and forge uses: timeouts, rate limits and retries.
//!
//! - Every request has a connect and a total timeout.
//! - `429` (and `403` with `X-RateLimit-Remaining: 0`) is retried after `Retry-After` or the
//!   rate-limit reset, never sooner; the wait holds back *every* request of this client, not just
//!   the retried one. A wait longer than [`RetryPolicy::max_wait`] is not slept: the error is
//!   returned so a worker can come back later.
//! - `5xx` and transport errors are retried with capped exponential backoff only for requests
//!   that are safe to repeat (GET, PUT, DELETE, and POSTs marked idempotent, such as GraphQL
//!   queries). A failed create is returned to its caller, which looks the object up before
//!   trying again (see [`retry_op`]), so a create that had in fact succeeded is not repeated.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use codemill_core::text::{clip, log_safe};

use crate::{Error, Result};

/// How long and how often to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    /// The longest backoff between two attempts.
    pub max_delay: Duration,
    /// The longest rate-limit wait honoured in-process.
    pub max_wait: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `n` (1-based retry count): base·2ⁿ⁻¹, capped.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// How a request authenticates. The value never appears in errors or logs.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic {
        user: String,
        password: SecretString,
    },
    Bearer(SecretString),
    /// A header sent as is (Linear's `Authorization: <key>`).
    Header(&'static str, SecretString),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Basic { .. } => "Auth::Basic(..)",
            Auth::Bearer(_) => "Auth::Bearer(..)",
            Auth::Header(..) => "Auth::Header(..)",
        })
    }
}

/// One request: method, path below the base URL (or an absolute URL), query, JSON body.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub json: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
    /// Safe to send twice even after a 5xx (reads, and writes that replace rather than add).
    pub idempotent: bool,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Req {
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE);
        Req {
            method,
            path: path.into(),
            query: Vec::new(),
            json: None,
            headers: Vec::new(),
            idempotent,
        }
    }
    pub fn get(path: impl Into<String>) -> Req {
        Req::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>, body: Value) -> Req {
        Req::new(Method::POST, path).json(body)
    }
    pub fn put(path: impl Into<String>, body: Value) -> Req {
        Req::new(Method::PUT, path).json(body)
    }
    pub fn patch(path: impl Into<String>, body: Value) -> Req {
        Req::new(Method::PATCH, path).json(body)
    }
    pub fn json(mut self, body: Value) -> Req {
        self.json = Some(body);
        self
    }
    pub fn query(mut self, key: &str, value: impl Into<String>) -> Req {
        self.query.push((key.to_string(), value.into()));
        self
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Req {
        self.headers.push((name, value.into()));
        self
    }
    /// Mark a POST safe to repeat (a GraphQL query, a search).
    pub fn idempotent(mut self) -> Req {
        self.idempotent = true;
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON; `Null` when empty.
    pub body: Value,
}

impl Answer {
    /// The `rel="next"` URL of a `Link` header (GitHub pagination).
    pub fn next_link(&self) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|p| p.trim() == "rel=\"next\"")
                .then(|| {
                    url.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
        })
    }
}

/// The shared client of one vendor endpoint.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    vendor: &'static str,
    base: String,
    policy: RetryPolicy,
    /// No request leaves before this instant (set by rate-limit answers).
    not_before: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("vendor", &self.vendor)
            .field("base", &self.base)
            .finish()
    }
}

impl HttpClient {
    pub fn new(vendor: &'static str, base: &str, policy: RetryPolicy) -> Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .user_agent(concat!("codemill/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("{vendor}: cannot build an HTTP client: {e}")))?;
        Ok(HttpClient {
            client,
            vendor,
            base: base.trim_end_matches('/').to_string(),
            policy,
            not_before: Arc::new(Mutex::new(None)),
        })
    }

    pub fn vendor(&self) -> &'static str {
        self.vendor
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    async fn wait_turn(&self) {
        let until = self.not_before.lock().ok().and_then(|g| *g);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Hold back every request of this client (and its clones) until `until`: for rate-limit
    /// signals only a vendor module can read (Linear's `RATELIMITED` in a 400 or 200 body).
    pub fn hold_until(&self, until: Instant) {
        if let Ok(mut g) = self.not_before.lock() {
            *g = Some(g.map_or(until, |cur| cur.max(until)));
        }
    }

    /// Send `req`, retrying as the module documents. Non-2xx answers become [`Error::Status`].
    pub async fn send(&self, req: &Req, auth: &Auth) -> Result<Answer> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.wait_turn().await;
            let span = self.request_span(req, attempt);
            let outcome = self.once(req, auth).instrument(span.clone()).await;
            match &outcome {
                Ok(answer) => {
                    span.record("http.response.status_code", i64::from(answer.status));
                }
                Err(Failure::RateLimited { error, .. })
                | Err(Failure::Retryable { error, .. })
                | Err(Failure::Final(error)) => {
                    if let Error::Status { status, .. } = error {
                        span.record("http.response.status_code", i64::from(*status));
                        span.record("error.type", status.to_string());
                    } else {
                        span.record("error.type", "transport");
                    }
                }
            }
            drop(span);
            let last = attempt >= self.policy.attempts;
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(Failure::RateLimited { wait, error }) => {
                    if last || wait > self.policy.max_wait {
                        return Err(error);
                    }
                    let wait = wait.max(self.policy.backoff(attempt));
                    tracing::warn!(vendor = self.vendor, path = %log_safe(&req.path), wait_ms = wait.as_millis() as u64, "rate limited; waiting");
                    self.hold_until(Instant::now() + wait);
                }
                Err(Failure::Retryable { error, sent }) => {
                    if last || (sent && !req.idempotent) {
                        return Err(error);
                    }
                    let wait = self.policy.backoff(attempt);
                    tracing::warn!(vendor = self.vendor, path = %log_safe(&req.path), error = %log_safe(&error), "retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(Failure::Final(error)) => return Err(error),
            }
        }
    }

    /// One attempt at an outside request, as an HTTP client span of the job's trace. Only the
    /// path is named (never the query, which may carry search text).
    fn request_span(&self, req: &Req, attempt: u32) -> tracing::Span {
        let host = self
            .base
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or("");
        tracing::info_span!(
            "outside_request",
            otel.name = %format!("{} {}", req.method, self.vendor),
            otel.kind = "client",
            http.request.method = %req.method,
            server.address = %host,
            url.path = %log_safe(req.path.split('?').next().unwrap_or("")),
            vendor = self.vendor,
            attempt = i64::from(attempt),
            http.response.status_code = tracing::field::Empty,
            error.r#type = tracing::field::Empty,
        )
    }

    async fn once(&self, req: &Req, auth: &Auth) -> std::result::Result<Answer, Failure> {
        let mut builder = self.client.request(req.method.clone(), self.url(&req.path));
        // A vendor's own media type (GitHub's) replaces the generic one.
        if !req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
        {
            builder = builder.header("accept", "application/json");
        }
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        builder = match auth {
            Auth::None => builder,
            Auth::Basic { user, password } => {
                builder.basic_auth(user, Some(password.expose_secret()))
            }
            Auth::Bearer(token) => builder.bearer_auth(token.expose_secret()),
            Auth::Header(name, value) => {
                let mut v = HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                    Failure::Final(Error::Config(format!(
                        "{}: the credential is not a valid header value",
                        self.vendor
                    )))
                })?;
                v.set_sensitive(true);
                builder.header(*name, v)
            }
        };
        if let Some(body) = &req.json {
            builder = builder.json(body);
        }
        let method = req.method.to_string();
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                // A connect error means nothing reached the server: safe to repeat any request.
                let sent = !e.is_connect();
                return Err(Failure::Retryable {
                    error: Error::Transport {
                        vendor: self.vendor,
                        method,
                        path: req.path.clone(),
                        message: without_url(&e),
                    },
                    sent,
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| Failure::Retryable {
            error: Error::Transport {
                vendor: self.vendor,
                method: method.clone(),
                path: req.path.clone(),
                message: without_url(&e),
            },
            sent: true,
        })?;
        if status.is_success() {
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    Failure::Final(Error::Protocol {
                        vendor: self.vendor,
                        message: format!("{} {}: body is not JSON: {e}", method, req.path),
                    })
                })?
            };
            return Ok(Answer {
                status: status.as_u16(),
                headers,
                body,
            });
        }
        let error = Error::Status {
            vendor: self.vendor,
            method,
            path: req.path.clone(),
            status: status.as_u16(),
            body: clip(&text, 500),
        };
        if let Some(wait) = rate_limit_wait(status, &headers) {
            return Err(Failure::RateLimited { wait, error });
        }
        if status.is_server_error() {
            return Err(Failure::Retryable { error, sent: true });
        }
        Err(Failure::Final(error))
    }
}

enum Failure {
    RateLimited { wait: Duration, error: Error },
    Retryable { error: Error, sent: bool },
    Final(Error),
}

/// How long a rate-limit answer asks us to wait, if it is one.
pub fn rate_limit_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header("retry-after").and_then(parse_retry_after);
    // GitHub and Jira say `X-RateLimit-*`, GitLab `RateLimit-*`.
    let either = |name: &str| header(&format!("x-{name}")).or_else(|| header(name));
    let exhausted = either("ratelimit-remaining").is_some_and(|v| v.trim() == "0");
    let reset = either("ratelimit-reset").and_then(parse_reset);
    match status.as_u16() {
        429 => Some(retry_after.or(reset).unwrap_or(Duration::from_secs(1))),
        403 if retry_after.is_some() || exhausted => {
            Some(retry_after.or(reset).unwrap_or(Duration::from_secs(60)))
        }
        503 if retry_after.is_some() => retry_after,
        _ => None,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// `X-RateLimit-Reset`: epoch seconds (GitHub) or an ISO timestamp (Jira).
fn parse_reset(v: &str) -> Option<Duration> {
    let v = v.trim();
    let at = match v.parse::<i64>() {
        Ok(epoch) => epoch,
        Err(_) => chrono::DateTime::parse_from_rfc3339(v).ok()?.timestamp(),
    };
    let secs = (at - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

fn without_url(e: &reqwest::Error) -> String {
    // reqwest's message carries the URL; ours names the path already.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_string(),
    }
}

/// Run a whole operation (usually look-up-then-create) again after a transient error, with the
/// client's backoff. The operation itself must look before it acts.
pub async fn retry_op<T, F, Fut>(policy: RetryPolicy, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if e.is_transient() && attempt < policy.attempts => {
                tracing::warn!(error = %log_safe(&e), "retrying the operation");
                tokio::time::sleep(policy.backoff(attempt)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(3), Duration::from_secs(2));
        assert_eq!(p.backoff(30), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_seconds_and_rate_limit_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(
            rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(3))
        );
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = (chrono::Utc::now().timestamp() + 5).to_string();
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset).unwrap_or(HeaderValue::from_static("0")),
        );
        let wait = rate_limit_wait(StatusCode::FORBIDDEN, &h).unwrap_or_default();
        assert!(
            wait >= Duration::from_secs(4) && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &HeaderMap::new()),
            None
        );
        assert_eq!(
            rate_limit_wait(StatusCode::BAD_GATEWAY, &HeaderMap::new()),
            None
        );
    }

    #[test]
    fn next_link_is_read_from_the_link_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/repositories/1/issues?page=2>; rel=\"next\", <https://api.github.com/repositories/1/issues?page=5>; rel=\"last\"",
            ),
        );
        let a = Answer {
            status: 200,
            headers,
            body: Value::Null,
        };
        assert_eq!(
            a.next_link().as_deref(),
            Some("https://api.github.com/repositories/1/issues?page=2")
        );
    }
}
