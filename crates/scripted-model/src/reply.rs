//! Provider-independent pieces of an answer: resolved tool-call ids, computed usage, SSE framing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::script::{ToolCall, Usage};
use crate::view::{RequestView, tokens_for_bytes};

/// Model name echoed when the request named none.
pub(crate) const FALLBACK_MODEL: &str = "scripted-model";

/// A `Reply::Message` made concrete for one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub model: String,
    pub text: Option<String>,
    pub tool_calls: Vec<ResolvedCall>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedCall {
    pub id: String,
    pub name: String,
    pub input: Value,
    pub namespace: Option<String>,
}

impl Answer {
    /// Resolves ids (fresh `{id_prefix}...` ids where the script gave none) and usage (computed
    /// from sizes where the script gave none).
    pub fn new(
        view: &RequestView,
        text: Option<&str>,
        tool_calls: &[ToolCall],
        usage: Option<Usage>,
        id_prefix: &str,
    ) -> Answer {
        let tool_calls: Vec<ResolvedCall> = tool_calls
            .iter()
            .map(|call| ResolvedCall {
                id: call.id.clone().unwrap_or_else(|| fresh_id(id_prefix)),
                name: call.name.clone(),
                input: call.input.clone(),
                namespace: call.namespace.clone(),
            })
            .collect();
        let usage = usage.unwrap_or_else(|| {
            let reply_bytes = text.map_or(0, str::len)
                + tool_calls
                    .iter()
                    .map(|call| call.input.to_string().len())
                    .sum::<usize>();
            Usage {
                input_tokens: view.input_tokens(),
                output_tokens: tokens_for_bytes(reply_bytes),
            }
        });
        Answer {
            model: view
                .model
                .clone()
                .unwrap_or_else(|| FALLBACK_MODEL.to_owned()),
            text: text.map(str::to_owned),
            tool_calls,
            usage,
        }
    }

    pub fn stops_for_tools(&self) -> bool {
        !self.tool_calls.is_empty()
    }
}

/// What a renderer produced for a successful answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rendered {
    Json(Value),
    Sse(String),
}

/// The parts of an endless stream: sent once, then `keep_alive` repeatedly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Endless {
    pub head: String,
    pub keep_alive: String,
}

/// One SSE event; `event` None gives a data-only event (OpenAI Chat, Gemini).
pub(crate) fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// A process-wide unique id such as `toolu_0000a1b2000000000000002a`.
pub(crate) fn fresh_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:08x}{serial:016x}", std::process::id())
}

/// Seconds since the epoch, for `created` fields.
pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn computed_usage_and_fresh_ids() {
        let view = RequestView {
            input_bytes: 41,
            model: Some("m".into()),
            ..RequestView::default()
        };
        let answer = Answer::new(
            &view,
            Some("abcde"),
            &[ToolCall::new("x", json!({"a": 1}))],
            None,
            "toolu_",
        );
        // "abcde" (5) + {"a":1} (7) = 12 bytes -> 3 tokens; 41 bytes -> 11 tokens.
        assert_eq!(
            answer.usage,
            Usage {
                input_tokens: 11,
                output_tokens: 3
            }
        );
        assert!(answer.tool_calls[0].id.starts_with("toolu_"));
        assert_ne!(fresh_id("a"), fresh_id("a"));
        assert_eq!(answer.model, "m");
    }

    #[test]
    fn scripted_usage_and_ids_win() {
        let usage = Usage {
            input_tokens: 7,
            output_tokens: 9,
        };
        let answer = Answer::new(
            &RequestView::default(),
            None,
            &[ToolCall::new("x", json!({})).with_id("mine")],
            Some(usage),
            "call_",
        );
        assert_eq!(answer.usage, usage);
        assert_eq!(answer.tool_calls[0].id, "mine");
        assert_eq!(answer.model, FALLBACK_MODEL);
    }

    #[test]
    fn sse_framing() {
        assert_eq!(
            sse(Some("ping"), &json!({"type": "ping"})),
            "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(sse(None, &json!(1)), "data: 1\n\n");
    }
}
