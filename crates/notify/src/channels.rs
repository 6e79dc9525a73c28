//! Sending one message on one channel, in each vendor's wire format, and telling an error worth
//! retrying (an outage, a rate limit) from one that will not mend (a revoked token, an unknown
//! chat). Secrets are read from the environment when sending and never appear in errors.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use codemill_core::config::{NotifyTarget, SmtpTls};
use serde_json::{Value, json};

use crate::message::Message;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    /// Worth trying again later; `retry_at` when the channel said when.
    pub retry: bool,
    pub retry_at: Option<DateTime<Utc>>,
}

impl SendError {
    fn later(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retry: true,
            retry_at: None,
        }
    }
    fn never(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retry: false,
            retry_at: None,
        }
    }
    fn after(message: impl Into<String>, secs: u64) -> Self {
        SendError {
            message: message.into(),
            retry: true,
            retry_at: Some(Utc::now() + chrono::TimeDelta::seconds(secs.min(3600) as i64)),
        }
    }
}

/// Where secrets come from: the process environment, or a table in tests.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(|name| std::env::var(name).ok())
}

/// Every environment variable `target` needs.
pub fn needed_env(target: &NotifyTarget) -> Vec<&str> {
    match target {
        NotifyTarget::SlackWebhook { webhook_url_env } => vec![webhook_url_env],
        NotifyTarget::SlackBot { token_env, .. } | NotifyTarget::Telegram { token_env, .. } => {
            vec![token_env]
        }
        NotifyTarget::Webhook { secret_env, .. } => secret_env.iter().map(String::as_str).collect(),
        NotifyTarget::Email {
            username_env,
            password_env,
            ..
        } => username_env
            .iter()
            .chain(password_env.iter())
            .map(String::as_str)
            .collect(),
    }
}

/// A transport error without the URL (it may carry a token, as Telegram's does).
fn transport(channel: &str, e: reqwest::Error) -> SendError {
    SendError::later(format!("{channel}: {}", e.without_url()))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The common HTTP answers: 2xx is `Ok`, 429 and 5xx are retried, other 4xx are final.
async fn by_status(channel: &str, res: reqwest::Response) -> Result<String, SendError> {
    let status = res.status();
    let wait = retry_after(res.headers());
    let body = res.text().await.unwrap_or_default();
    let said = crate::message::truncate(body.trim(), 200);
    if status.is_success() {
        return Ok(body);
    }
    let message = format!("{channel}: HTTP {} {said}", status.as_u16());
    Err(match status.as_u16() {
        429 => match wait {
            Some(secs) => SendError::after(message, secs),
            None => SendError::later(message),
        },
        408 | 500..=599 => SendError::later(message),
        _ => SendError::never(message),
    })
}

/// Sends messages; one per process, cheap to clone.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    env: Env,
}

impl Sender {
    pub fn new(env: Env) -> Sender {
        Sender {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            env,
        }
    }

    /// The value of environment variable `name`, or why not.
    fn secret(&self, name: &str) -> Result<String, SendError> {
        (self.env)(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SendError::never(format!("environment variable {name} is not set")))
    }

    /// Send `message` to `target`; `delivery` names it for receivers that de-duplicate.
    pub async fn send(
        &self,
        target: &NotifyTarget,
        message: &Message,
        delivery: &str,
    ) -> Result<(), SendError> {
        match target {
            NotifyTarget::SlackWebhook { webhook_url_env } => {
                let url = self.secret(webhook_url_env)?;
                let res = self
                    .http
                    .post(&url)
                    .json(&json!({"text": message.slack(), "unfurl_links": false}))
                    .send()
                    .await
                    .map_err(|e| transport("slack", e))?;
                by_status("slack", res).await.map(drop)
            }
            NotifyTarget::SlackBot {
                token_env,
                slack_channel,
                api_url,
            } => {
                let token = self.secret(token_env)?;
                let res = self
                    .http
                    .post(format!("{api_url}/chat.postMessage"))
                    .bearer_auth(token)
                    .json(&json!({
                        "channel": slack_channel,
                        "text": message.slack(),
                        "unfurl_links": false,
                    }))
                    .send()
                    .await
                    .map_err(|e| transport("slack", e))?;
                let body = by_status("slack", res).await?;
                // Slack answers 200 with `ok: false` for its own errors.
                let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if answer["ok"] == true {
                    return Ok(());
                }
                let error = answer["error"].as_str().unwrap_or("no `ok` in the answer");
                let message = format!("slack: chat.postMessage: {error}");
                Err(match error {
                    "ratelimited"
                    | "internal_error"
                    | "fatal_error"
                    | "service_unavailable"
                    | "request_timeout" => SendError::later(message),
                    _ => SendError::never(message),
                })
            }
            NotifyTarget::Telegram {
                token_env,
                chat_id,
                api_url,
            } => {
                let token = self.secret(token_env)?;
                let res = self
                    .http
                    .post(format!("{api_url}/bot{token}/sendMessage"))
                    .json(&json!({
                        "chat_id": chat_id,
                        "text": message.telegram(),
                        "parse_mode": "HTML",
                        "link_preview_options": {"is_disabled": true},
                    }))
                    .send()
                    .await
                    .map_err(|e| transport("telegram", e))?;
                let status = res.status().as_u16();
                let answer: Value = res.json().await.unwrap_or(Value::Null);
                if answer["ok"] == true {
                    return Ok(());
                }
                let description = answer["description"].as_str().unwrap_or("no description");
                let message = format!("telegram: sendMessage: {status} {description}");
                Err(
                    match (status, answer["parameters"]["retry_after"].as_u64()) {
                        (429, Some(secs)) => SendError::after(message, secs),
                        (429 | 500..=599, _) => SendError::later(message),
                        _ => SendError::never(message),
                    },
                )
            }
            NotifyTarget::Webhook { url, secret_env } => {
                let body = serde_json::to_vec(&json!({
                    "delivery": delivery,
                    "event": message.kind,
                    "project": message.project,
                    "ticket": message.ticket,
                    "job": message.job,
                    "title": message.title,
                    "headline": message.headline,
                    "details": message.details,
                    "link": message.link,
                    "action": message.action,
                    "text": message.plain(),
                }))
                .map_err(|e| SendError::never(format!("webhook: {e}")))?;
                let mut req = self
                    .http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Codemill-Delivery", delivery)
                    .header("X-Codemill-Event", message.kind.as_str());
                if let Some(env) = secret_env {
                    let key = self.secret(env)?;
                    req = req.header(
                        "X-Codemill-Signature-256",
                        format!("sha256={}", hmac_hex(key.as_bytes(), &body)),
                    );
                }
                let res = req
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| transport("webhook", e))?;
                by_status("webhook", res).await.map(drop)
            }
            NotifyTarget::Email {
                smtp_host,
                smtp_port,
                smtp_tls,
                username_env,
                password_env,
                from,
                to,
            } => {
                let credentials = match (username_env, password_env) {
                    (Some(u), Some(p)) => Some((self.secret(u)?, self.secret(p)?)),
                    _ => None,
                };
                email(
                    smtp_host,
                    *smtp_port,
                    *smtp_tls,
                    credentials,
                    from,
                    to,
                    message,
                )
                .await
            }
        }
    }
}

/// HMAC-SHA256 of `body` with `key`, lowercase hex (`X-Codemill-Signature-256`).
pub fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn email(
    host: &str,
    port: u16,
    tls: SmtpTls,
    credentials: Option<(String, String)>,
    from: &str,
    to: &[String],
    message: &Message,
) -> Result<(), SendError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| SendError::never(format!("email: address {a:?}: {e}")))
    };
    let mut builder = lettre::Message::builder()
        .from(mailbox(from)?)
        .subject(message.subject());
    for a in to {
        builder = builder.to(mailbox(a)?);
    }
    let mail = builder
        .header(ContentType::TEXT_PLAIN)
        .body(message.plain())
        .map_err(|e| SendError::never(format!("email: {e}")))?;
    let relay = match tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            host,
        )),
    }
    .map_err(|e| SendError::never(format!("email: {host}: {e}")))?;
    let mut relay = relay.port(port).timeout(Some(Duration::from_secs(30)));
    if let Some((user, password)) = credentials {
        relay = relay.credentials(Credentials::new(user, password));
    }
    match relay.build().send(mail).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let message = format!("email: {host}:{port}: {e}");
            if e.is_permanent() {
                Err(SendError::never(message))
            } else {
                Err(SendError::later(message))
            }
        }
    }
}
