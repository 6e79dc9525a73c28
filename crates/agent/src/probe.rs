//! A tiny real request to a model endpoint, to tell whether it answers and accepts the key.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::{Api, Endpoint};

/// What the endpoint said.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A 2xx answer.
    Ok { status: u16, latency: Duration },
    /// An HTTP error answer, with the provider's message.
    Status { status: u16, message: String },
    /// No HTTP answer at all (refused, DNS, timeout, TLS).
    Unreachable { error: String },
}

/// Send the smallest request `api` allows (one token) for `model`.
pub async fn probe(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    model: &str,
    timeout: Duration,
) -> Probe {
    let base = endpoint.base_url.trim_end_matches('/');
    let key = endpoint.api_key.expose_secret();
    let ping = "Reply with the single word: ok";
    let request = match endpoint.api {
        Api::Anthropic => http
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": ping}]})),
        Api::OpenAiChat => http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": ping}]})),
        Api::OpenAiResponses => http
            .post(format!("{base}/v1/responses"))
            .bearer_auth(key)
            .json(&json!({"model": model, "input": ping, "max_output_tokens": 16, "stream": false})),
        Api::Gemini => http
            .post(format!("{base}/v1beta/models/{model}:generateContent"))
            .header("x-goog-api-key", key)
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": ping}]}], "generationConfig": {"maxOutputTokens": 1}})),
    };
    let started = Instant::now();
    let response = match request.timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => {
            return Probe::Unreachable {
                error: without_url_secrets(&e.to_string()),
            };
        }
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Probe::Ok {
            status,
            latency: started.elapsed(),
        };
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body
        .pointer("/error/message")
        .or_else(|| body.pointer("/message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Probe::Status { status, message }
}

/// reqwest errors name the URL; ours never carry a key in the URL, but be safe.
fn without_url_secrets(text: &str) -> String {
    match text.find("key=") {
        Some(i) => format!("{}key=[redacted]", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_query_keys() {
        assert_eq!(
            without_url_secrets("error for http://x/?key=abc"),
            "error for http://x/?key=[redacted]"
        );
        assert_eq!(without_url_secrets("refused"), "refused");
    }
}
