//! One GraphQL call to Linear through the shared [`HttpClient`]: the request shape, GraphQL
//! `errors` turned into [`Error`]s that name the operation, and Linear's own rate-limit signal.
//!
//! Linear answers an exhausted budget with HTTP 400 and an error whose `extensions.code` is
//! `RATELIMITED` (not 429), so [`HttpClient`] sees a plain 400 and gives up. This module
//! recognises it and waits with the same capped policy: the documented
//! `X-RateLimit-Requests-Reset` (epoch milliseconds) or `Retry-After` when the headers are
//! visible (a 2xx answer), else the policy's backoff, because [`Error::Status`] carries no
//! headers. A rate-limited request was not executed, so even a mutation is safe to send again.
//! An answer that reports `X-RateLimit-Requests-Remaining: 0` holds back the next request of
//! this client until the reset, so codemill does not spend a request just to be refused.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::{Auth, HttpClient, Req};
use crate::{Error, Result};

pub(crate) const VENDOR: &str = "linear";

/// Whether an operation reads (safe to repeat after a 5xx) or writes (never repeated blindly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Query,
    Mutation,
}

/// The GraphQL endpoint of one Linear workspace, shared by clones of [`super::Linear`].
#[derive(Clone)]
pub(crate) struct Gql {
    http: HttpClient,
    auth: Auth,
    /// The endpoint's path below the client's base (`/graphql`).
    path: String,
}

impl std::fmt::Debug for Gql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gql")
            .field("base", &self.http.base())
            .field("path", &self.path)
            .finish()
    }
}

impl Gql {
    pub(crate) fn new(http: HttpClient, auth: Auth, path: String) -> Gql {
        Gql { http, auth, path }
    }

    /// Run operation `op` (its name in `query`) with `variables`; the `data` object on success.
    pub(crate) async fn run(
        &self,
        kind: Kind,
        op: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<Value> {
        let body = json!({"query": query, "operationName": op, "variables": variables});
        let mut req = Req::post(self.path.clone(), body);
        if kind == Kind::Query {
            req = req.idempotent();
        }
        let policy = self.http.policy();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // `send` waits out any hold set below before the request leaves.
            let limited = match self.http.send(&req, &self.auth).await {
                Ok(answer) => {
                    self.note_budget(&answer.headers);
                    match graphql_errors(&answer.body) {
                        Some(errors) if is_rate_limited(errors) => {
                            RateLimited(header_wait(&answer.headers))
                        }
                        Some(errors) => return Err(errors_to_error(op, errors)),
                        None => return data_of(op, answer.body),
                    }
                }
                Err(Error::Status {
                    vendor,
                    method,
                    path,
                    status,
                    body,
                }) => {
                    let parsed: Option<Value> = serde_json::from_str(&body).ok();
                    let errors = parsed.as_ref().and_then(graphql_errors);
                    match errors {
                        Some(errors) if is_rate_limited(errors) => RateLimited(None),
                        // A clipped body may cut the JSON; the code still shows.
                        None if status == 400 && body.contains("RATELIMITED") => RateLimited(None),
                        Some(errors) if status == 400 => return Err(errors_to_error(op, errors)),
                        _ => {
                            return Err(Error::Status {
                                vendor,
                                method,
                                path: format!("{path} ({op})"),
                                status,
                                body,
                            });
                        }
                    }
                }
                Err(Error::Transport {
                    vendor,
                    method,
                    path,
                    message,
                }) => {
                    return Err(Error::Transport {
                        vendor,
                        method,
                        path: format!("{path} ({op})"),
                        message,
                    });
                }
                Err(other) => return Err(other),
            };
            let RateLimited(hint) = limited;
            let wait = hint.unwrap_or_default().max(policy.backoff(attempt));
            if attempt >= policy.attempts || wait > policy.max_wait {
                // 429 keeps the error transient, so a worker comes back later.
                return Err(Error::Status {
                    vendor: VENDOR,
                    method: "POST".into(),
                    path: format!("{} ({op})", self.path),
                    status: 429,
                    body: format!(
                        "rate limited (RATELIMITED) after {attempt} attempt(s); next wait {} ms",
                        wait.as_millis()
                    ),
                });
            }
            tracing::warn!(
                vendor = VENDOR,
                op,
                wait_ms = wait.as_millis() as u64,
                "rate limited; waiting"
            );
            self.http.hold_until(Instant::now() + wait);
        }
    }

    /// An answer that spent the last request of the budget holds back the next one.
    fn note_budget(&self, headers: &HeaderMap) {
        let remaining = header(headers, "x-ratelimit-requests-remaining");
        if remaining.is_some_and(|v| v.trim() == "0")
            && let Some(wait) = header_wait(headers)
            && wait <= self.http.policy().max_wait
        {
            self.http.hold_until(Instant::now() + wait);
        }
    }
}

struct RateLimited(Option<Duration>);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After` (seconds) or `X-RateLimit-Requests-Reset` (epoch milliseconds).
fn header_wait(headers: &HeaderMap) -> Option<Duration> {
    if let Some(secs) = header(headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let reset_ms = header(headers, "x-ratelimit-requests-reset")?
        .trim()
        .parse::<i64>()
        .ok()?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis((reset_ms - now_ms).max(0) as u64))
}

/// The non-empty `errors` array of a GraphQL answer.
fn graphql_errors(body: &Value) -> Option<&Vec<Value>> {
    body.get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
}

fn code_of(error: &Value) -> Option<&str> {
    error.pointer("/extensions/code").and_then(Value::as_str)
}

fn is_rate_limited(errors: &[Value]) -> bool {
    errors.iter().any(|e| code_of(e) == Some("RATELIMITED"))
}

fn errors_to_error(op: &str, errors: &[Value]) -> Error {
    let messages: Vec<String> = errors
        .iter()
        .map(|e| {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)");
            match code_of(e) {
                Some(code) => format!("{message} [{code}]"),
                None => message.to_string(),
            }
        })
        .collect();
    let joined = messages.join("; ");
    let not_found = errors.iter().any(|e| {
        code_of(e) == Some("ENTITY_NOT_FOUND")
            || e.get("message")
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("Entity not found"))
    });
    if not_found {
        Error::NotFound(format!("{VENDOR} {op}: {joined}"))
    } else {
        Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: {joined}"),
        }
    }
}

fn data_of(op: &str, body: Value) -> Result<Value> {
    match body {
        Value::Object(mut map) => match map.remove("data") {
            Some(data @ Value::Object(_)) => Ok(data),
            _ => Err(Error::Protocol {
                vendor: VENDOR,
                message: format!("{op}: the answer has no data object"),
            }),
        },
        _ => Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: the answer is not a JSON object"),
        }),
    }
}

/// Split an endpoint URL into the client's base (`scheme://host[:port]`) and the path.
pub(crate) fn split_endpoint(url: &str) -> Result<(String, String)> {
    let url = url.trim();
    let Some(scheme_end) = url.find("://") else {
        return Err(Error::Config(format!(
            "{VENDOR}: api_url {url:?} is not an http(s) URL"
        )));
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::Config(format!(
            "{VENDOR}: api_url {url:?} is not an http(s) URL"
        )));
    }
    let after = scheme_end + 3;
    match url[after..].find('/') {
        Some(i) => Ok((url[..after + i].to_string(), url[after + i..].to_string())),
        None => Ok((url.to_string(), "/".to_string())),
    }
}

/// A field of `value` at JSON pointer `pointer`, or a protocol error naming the operation.
pub(crate) fn at<'a>(op: &str, value: &'a Value, pointer: &str) -> Result<&'a Value> {
    match value.pointer(pointer) {
        Some(v) if !v.is_null() => Ok(v),
        _ => Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: the answer lacks {pointer}"),
        }),
    }
}

pub(crate) fn str_at<'a>(op: &str, value: &'a Value, pointer: &str) -> Result<&'a str> {
    at(op, value, pointer)?
        .as_str()
        .ok_or_else(|| Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: {pointer} is not a string"),
        })
}

pub(crate) fn array_at<'a>(op: &str, value: &'a Value, pointer: &str) -> Result<&'a Vec<Value>> {
    at(op, value, pointer)?
        .as_array()
        .ok_or_else(|| Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: {pointer} is not a list"),
        })
}

/// A mutation payload's `success` must be true.
pub(crate) fn check_success(op: &str, data: &Value, field: &str) -> Result<()> {
    if data.pointer(&format!("/{field}/success")) == Some(&Value::Bool(true)) {
        Ok(())
    } else {
        Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: {field} did not report success"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_splits_into_base_and_path() {
        let split = |u: &str| split_endpoint(u).ok();
        assert_eq!(
            split("https://api.linear.app/graphql"),
            Some(("https://api.linear.app".into(), "/graphql".into()))
        );
        assert_eq!(
            split("http://127.0.0.1:9/graphql"),
            Some(("http://127.0.0.1:9".into(), "/graphql".into()))
        );
        assert_eq!(split("ftp://x/graphql"), None);
        assert_eq!(split("api.linear.app"), None);
    }

    #[test]
    fn errors_name_the_operation_and_spot_not_found() {
        let errors = vec![
            json!({"message": "Argument Validation Error", "extensions": {"code": "INVALID_INPUT"}}),
        ];
        let e = errors_to_error("CodemillIssue", &errors).to_string();
        assert!(
            e.contains("CodemillIssue")
                && e.contains("Argument Validation Error")
                && e.contains("INVALID_INPUT"),
            "{e}"
        );
        let errors = vec![json!({"message": "Entity not found: Issue"})];
        assert!(matches!(
            errors_to_error("CodemillIssue", &errors),
            Error::NotFound(_)
        ));
        assert!(is_rate_limited(&[
            json!({"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED"}})
        ]));
    }
}
