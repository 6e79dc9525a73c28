//! Gemini generateContent answers (Gemini CLI): one SSE chunk or a JSON response, and errors.

use serde_json::{Value, json};

use crate::reply::{Answer, Endless, Rendered, sse};

/// Renders the whole answer as one candidate; streamed as a single `data:` chunk.
pub(crate) fn render(answer: &Answer, stream: bool) -> Rendered {
    let mut parts = Vec::new();
    if let Some(text) = &answer.text {
        parts.push(json!({"text": text}));
    }
    for call in &answer.tool_calls {
        parts.push(json!({"functionCall": {"id": call.id, "name": call.name, "args": call.input}}));
    }
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {
            "promptTokenCount": answer.usage.input_tokens,
            "candidatesTokenCount": answer.usage.output_tokens,
            "totalTokenCount": answer.usage.input_tokens + answer.usage.output_tokens,
        },
        "modelVersion": answer.model,
    });
    if stream {
        Rendered::Sse(sse(None, &body))
    } else {
        Rendered::Json(body)
    }
}

/// A Gemini stream that never sends a chunk, only SSE comments.
pub(crate) fn endless() -> Endless {
    Endless {
        head: String::new(),
        keep_alive: ": keep-alive\n\n".to_owned(),
    }
}

/// The Google API error body for `status`.
pub(crate) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 | 529 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": kind}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::ToolCall;
    use crate::view::RequestView;

    #[test]
    fn function_call_part_and_usage() {
        let answer = Answer::new(
            &RequestView::default(),
            Some("ok"),
            &[ToolCall::new("write_file", json!({"path": "b"})).with_id("g1")],
            None,
            "call_",
        );
        let Rendered::Json(body) = render(&answer, false) else {
            panic!("expected json");
        };
        let parts = &body["candidates"][0]["content"]["parts"];
        assert_eq!(parts[0]["text"], "ok");
        assert_eq!(parts[1]["functionCall"]["name"], "write_file");
        assert_eq!(body["usageMetadata"]["promptTokenCount"], 1);
        assert_eq!(
            error_body(429, "x")["error"]["status"],
            "RESOURCE_EXHAUSTED"
        );
    }
}
