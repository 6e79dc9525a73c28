//! Anthropic Messages answers: the SSE sequence Claude Code accepts, the JSON message, errors.

use serde_json::{Value, json};

use crate::reply::{Answer, Endless, Rendered, fresh_id, sse};

/// Renders a scripted message as SSE (`stream`) or as the Messages JSON object.
pub(crate) fn render(answer: &Answer, stream: bool) -> Rendered {
    let id = fresh_id("msg_");
    if stream {
        Rendered::Sse(stream_body(&id, answer))
    } else {
        Rendered::Json(message_object(&id, answer))
    }
}

/// Content blocks in answer order: the text (if any, or an empty text when there is nothing
/// else, since a message without content confuses clients), then the tool calls.
fn blocks(answer: &Answer) -> Vec<Value> {
    let mut blocks = Vec::new();
    if answer.text.is_some() || answer.tool_calls.is_empty() {
        blocks.push(json!({"type": "text", "text": answer.text.clone().unwrap_or_default()}));
    }
    for call in &answer.tool_calls {
        blocks.push(json!({
            "type": "tool_use", "id": call.id, "name": call.name, "input": call.input,
        }));
    }
    blocks
}

fn stop_reason(answer: &Answer) -> &'static str {
    if answer.stops_for_tools() {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn message_object(id: &str, answer: &Answer) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": blocks(answer),
        "stop_reason": stop_reason(answer),
        "stop_sequence": null,
        "usage": {
            "input_tokens": answer.usage.input_tokens,
            "output_tokens": answer.usage.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    })
}

fn message_start(id: &str, model: &str, input_tokens: u64) -> String {
    let data = json!({
        "type": "message_start",
        "message": {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        },
    });
    sse(Some("message_start"), &data)
}

fn ping() -> String {
    sse(Some("ping"), &json!({"type": "ping"}))
}

fn stream_body(id: &str, answer: &Answer) -> String {
    let mut out = message_start(id, &answer.model, answer.usage.input_tokens);
    out.push_str(&ping());
    for (index, block) in blocks(answer).into_iter().enumerate() {
        // The start event carries an empty block; the content comes in one delta.
        let (start, delta) = if block["type"] == "tool_use" {
            let mut start = block.clone();
            start["input"] = json!({});
            let partial = block["input"].to_string();
            (
                start,
                json!({"type": "input_json_delta", "partial_json": partial}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        };
        out.push_str(&sse(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        out.push_str(&sse(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        out.push_str(&sse(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push_str(&sse(
        Some("message_delta"),
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(answer), "stop_sequence": null},
            "usage": {"output_tokens": answer.usage.output_tokens},
        }),
    ));
    out.push_str(&sse(Some("message_stop"), &json!({"type": "message_stop"})));
    out
}

/// A stream that starts like a real answer and then only pings.
pub(crate) fn endless(model: &str, input_tokens: u64) -> Endless {
    let mut head = message_start(&fresh_id("msg_"), model, input_tokens);
    head.push_str(&ping());
    Endless {
        head,
        keep_alive: ping(),
    }
}

/// The Anthropic error body for `status`.
pub(crate) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{ToolCall, Usage};
    use crate::view::RequestView;

    fn answer(text: Option<&str>, calls: &[ToolCall]) -> Answer {
        Answer::new(
            &RequestView::default(),
            text,
            calls,
            Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
            }),
            "toolu_",
        )
    }

    #[test]
    fn json_message_with_text_and_tool() {
        let answer = answer(
            Some("hi"),
            &[ToolCall::new("Bash", json!({"command": "ls"})).with_id("t1")],
        );
        let Rendered::Json(message) = render(&answer, false) else {
            panic!("expected json");
        };
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["content"][0], json!({"type": "text", "text": "hi"}));
        assert_eq!(message["content"][1]["input"], json!({"command": "ls"}));
        assert_eq!(message["usage"]["output_tokens"], 4);
    }

    #[test]
    fn empty_message_still_has_a_text_block() {
        let Rendered::Json(message) = render(&answer(None, &[]), false) else {
            panic!("expected json");
        };
        assert_eq!(message["content"], json!([{"type": "text", "text": ""}]));
        assert_eq!(message["stop_reason"], "end_turn");
    }

    #[test]
    fn error_types_follow_status() {
        assert_eq!(error_body(529, "x")["error"]["type"], "overloaded_error");
        assert_eq!(error_body(429, "x")["error"]["type"], "rate_limit_error");
        assert_eq!(error_body(418, "x")["error"]["type"], "api_error");
    }
}
