//! One model API call over HTTP: auth headers per API, timeouts, and retries of 429/5xx.

use std::time::Duration;

use codemill_core::agent::{AgentEvent, TimeoutKind};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use crate::text::one_line;
use crate::{Endpoint, EventSink, emit};

use super::anthropic;

/// Longest wait honoured from a `Retry-After` header.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// First backoff when the server gives no `Retry-After`; doubles per attempt.
const BACKOFF_START: Duration = Duration::from_millis(500);

/// Why a call produced no usable answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The server answered with an error status (after any retries).
    Status { status: u16, message: String },
    /// No HTTP answer at all: refused connection, reset, DNS, TLS.
    Transport(String),
    /// No answer within the idle limit (per request) or before the wall-clock deadline.
    Timeout(TimeoutKind),
    /// A 2xx answer that is not JSON.
    BadBody(String),
}

/// Everything fixed for the calls of one run.
/// The wire formats the built-in loop speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Anthropic,
    OpenAiChat,
}

pub(crate) struct Caller<'a> {
    pub http: &'a reqwest::Client,
    pub endpoint: &'a Endpoint,
    pub url: String,
    pub wire: Wire,
    pub max_retries: u32,
    pub idle: Duration,
    pub deadline: Instant,
    pub events: &'a EventSink,
}

impl Caller<'_> {
    /// POSTs `body`, retrying 429 and 5xx up to `max_retries` times.
    pub(crate) async fn post(&self, body: &Value) -> Result<Value, CallError> {
        let mut attempt = 0;
        loop {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let (limit, kind) = if self.idle < remaining {
                (self.idle, TimeoutKind::Idle)
            } else {
                (remaining, TimeoutKind::WallClock)
            };
            let send = self.request(body).send();
            let response = match tokio::time::timeout(limit, send).await {
                Err(_) => return Err(CallError::Timeout(kind)),
                Ok(Err(e)) if e.is_timeout() => return Err(CallError::Timeout(kind)),
                Ok(Err(e)) => return Err(CallError::Transport(error_chain(&e))),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            let retry_after = retry_after(response.headers());
            // The body can stall too: it shares the request's time budget.
            let text = match tokio::time::timeout(limit, response.text()).await {
                Err(_) => return Err(CallError::Timeout(kind)),
                Ok(Err(e)) if e.is_timeout() => return Err(CallError::Timeout(kind)),
                Ok(Err(e)) => return Err(CallError::Transport(error_chain(&e))),
                Ok(Ok(text)) => text,
            };
            if status.is_success() {
                return serde_json::from_str(&text)
                    .map_err(|e| CallError::BadBody(format!("{e}: {}", one_line(&text, 300))));
            }
            let message = error_message(&text);
            let retryable = status.as_u16() == 429 || status.is_server_error();
            if !retryable || attempt >= self.max_retries {
                return Err(CallError::Status {
                    status: status.as_u16(),
                    message,
                });
            }
            let delay = retry_after
                .unwrap_or(BACKOFF_START * 2u32.saturating_pow(attempt))
                .min(RETRY_AFTER_CAP);
            if Instant::now() + delay >= self.deadline {
                return Err(CallError::Status {
                    status: status.as_u16(),
                    message,
                });
            }
            attempt += 1;
            emit(
                self.events,
                AgentEvent::Notice {
                    message: format!(
                        "model API answered {status}: {message}; retry {attempt}/{} in {:.1} s",
                        self.max_retries,
                        delay.as_secs_f64()
                    ),
                },
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        let key = self.endpoint.api_key.expose_secret();
        let builder = self.http.post(&self.url).json(body);
        match self.wire {
            Wire::Anthropic => builder
                .header("x-api-key", key)
                .header("anthropic-version", anthropic::VERSION),
            Wire::OpenAiChat => builder.bearer_auth(key),
        }
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The provider's error message (`{"error": {"message": ...}}` on both APIs), else the body.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match message {
        Some(m) => m,
        None if body.trim().is_empty() => "(empty body)".to_string(),
        None => one_line(body.trim(), 300),
    }
}

/// reqwest's top-level message is vague ("error sending request"); the causes say what happened.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_body() {
        assert_eq!(
            error_message(
                r#"{"type":"error","error":{"type":"authentication_error","message":"bad key"}}"#
            ),
            "bad key"
        );
        assert_eq!(error_message(r#"{"error":"plain"}"#), "plain");
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
        assert_eq!(error_message(""), "(empty body)");
    }
}
