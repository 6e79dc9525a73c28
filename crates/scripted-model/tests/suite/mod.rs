//! Shared helpers for the integration cases: a client, SSE parsing, small script builders.

mod anthropic;
mod lifecycle;
mod matching;
mod openai;

use codemill_scripted_model::{Match, ModelServer, Reply, Rule, Script};
use serde_json::Value;

/// One parsed SSE event: the `event:` name (if any) and the `data:` payload.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|_| panic!("not JSON: {}", self.data))
    }
}

/// Splits an SSE body into events; comment-only frames are skipped.
pub fn parse_sse(body: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for frame in body.split("\n\n") {
        let mut name = None;
        let mut data = Vec::new();
        for line in frame.lines() {
            if let Some(value) = line.strip_prefix("event: ") {
                name = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push(value);
            }
        }
        if !data.is_empty() {
            events.push(Event {
                name,
                data: data.join("\n"),
            });
        }
    }
    events
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs `body` to `path` and returns status, headers and the body text.
pub async fn post(
    server: &ModelServer,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client()
        .post(format!("{}{path}", server.base_url()))
        .header("x-api-key", "test-key")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// POSTs and parses a JSON answer.
pub async fn post_json(server: &ModelServer, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, text) = post(server, path, body).await;
    (status, serde_json::from_str(&text).unwrap())
}

pub fn rule(name: &str, when: Match, reply: Reply) -> Rule {
    Rule::new(name, when, reply)
}

pub async fn start(rules: Vec<Rule>) -> ModelServer {
    ModelServer::start(Script::new(rules)).await.unwrap()
}
