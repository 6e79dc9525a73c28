//! OpenAI answers: Chat Completions (SSE chunks or JSON) and Responses (Codex's SSE), errors.

use serde_json::{Value, json};

use crate::reply::{Answer, Endless, Rendered, fresh_id, now_seconds, sse};

/// Renders a Chat Completions answer. `include_usage` mirrors `stream_options.include_usage`.
pub(crate) fn render_chat(answer: &Answer, stream: bool, include_usage: bool) -> Rendered {
    let id = fresh_id("chatcmpl-");
    let created = now_seconds();
    let finish_reason = if answer.stops_for_tools() {
        "tool_calls"
    } else {
        "stop"
    };
    let usage = chat_usage(answer);
    if !stream {
        let mut message = json!({"role": "assistant", "content": answer.text});
        if answer.stops_for_tools() {
            message["tool_calls"] = Value::Array(chat_tool_calls(answer, false));
        }
        return Rendered::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": answer.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": usage,
        }));
    }
    let chunk = |choices: Value| {
        sse(
            None,
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.model,
                "choices": choices,
            }),
        )
    };
    let delta = |delta: Value| json!([{"index": 0, "delta": delta, "finish_reason": null}]);
    let mut out = chunk(delta(json!({"role": "assistant", "content": ""})));
    if let Some(text) = &answer.text {
        out.push_str(&chunk(delta(json!({"content": text}))));
    }
    for call in chat_tool_calls(answer, true) {
        out.push_str(&chunk(delta(json!({"tool_calls": [call]}))));
    }
    out.push_str(&chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": finish_reason}]),
    ));
    if include_usage {
        out.push_str(&sse(
            None,
            &json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.model,
                "choices": [],
                "usage": usage,
            }),
        ));
    }
    out.push_str("data: [DONE]\n\n");
    Rendered::Sse(out)
}

/// Tool calls in Chat shape; stream deltas also carry their `index`.
fn chat_tool_calls(answer: &Answer, with_index: bool) -> Vec<Value> {
    answer
        .tool_calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let mut value = json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.input.to_string()},
            });
            if with_index {
                value["index"] = json!(index);
            }
            value
        })
        .collect()
}

fn chat_usage(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.usage.input_tokens,
        "completion_tokens": answer.usage.output_tokens,
        "total_tokens": answer.usage.input_tokens + answer.usage.output_tokens,
    })
}

/// A Chat stream that sends its first chunk and then SSE comments.
pub(crate) fn chat_endless(model: &str) -> Endless {
    let head = sse(
        None,
        &json!({
            "id": fresh_id("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": now_seconds(),
            "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}],
        }),
    );
    Endless {
        head,
        keep_alive: ": keep-alive\n\n".to_owned(),
    }
}

/// Renders a Responses answer: SSE `response.created`, one `response.output_item.done` per
/// item, `response.completed`; or the response object when not streaming.
pub(crate) fn render_responses(answer: &Answer, stream: bool) -> Rendered {
    let id = fresh_id("resp_");
    let created = now_seconds();
    let items = response_items(answer);
    let completed = response_object(&id, created, &answer.model, "completed", &items, answer);
    if !stream {
        return Rendered::Json(completed);
    }
    let created_event = response_object(&id, created, &answer.model, "in_progress", &[], answer);
    let mut sequence = 0_u64;
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        sse(Some(kind), &data)
    };
    let mut out = event("response.created", json!({"response": created_event}));
    for (index, item) in items.into_iter().enumerate() {
        out.push_str(&event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
    }
    out.push_str(&event("response.completed", json!({"response": completed})));
    Rendered::Sse(out)
}

/// Output items: a message with the text, then function calls (custom tool calls for string
/// inputs, which is how Codex's freeform `apply_patch` is called; a `tool_search_call` for a
/// call of `tool_search`, Codex's search over the MCP tools it defers).
fn response_items(answer: &Answer) -> Vec<Value> {
    let mut items = Vec::new();
    if answer.text.is_some() || answer.tool_calls.is_empty() {
        items.push(json!({
            "type": "message",
            "id": fresh_id("msg_"),
            "status": "completed",
            "role": "assistant",
            "content": [{
                "type": "output_text",
                "text": answer.text.clone().unwrap_or_default(),
                "annotations": [],
            }],
        }));
    }
    for call in &answer.tool_calls {
        items.push(match &call.input {
            // Codex's client-side tool search (it defers MCP tools behind it): its own item type.
            input if call.name == "tool_search" => json!({
                "type": "tool_search_call",
                "id": fresh_id("tsc_"),
                "status": "completed",
                "call_id": call.id,
                "execution": "client",
                "arguments": input,
            }),
            Value::String(input) => json!({
                "type": "custom_tool_call",
                "id": fresh_id("ctc_"),
                "status": "completed",
                "call_id": call.id,
                "name": call.name,
                "input": input,
            }),
            input => {
                let mut item = json!({
                    "type": "function_call",
                    "id": fresh_id("fc_"),
                    "status": "completed",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": input.to_string(),
                });
                if let Some(namespace) = &call.namespace {
                    item["namespace"] = json!(namespace);
                }
                item
            }
        });
    }
    items
}

fn response_object(
    id: &str,
    created: u64,
    model: &str,
    status: &str,
    items: &[Value],
    answer: &Answer,
) -> Value {
    let mut object = json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": items,
    });
    if status == "completed" {
        object["usage"] = json!({
            "input_tokens": answer.usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": answer.usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": answer.usage.input_tokens + answer.usage.output_tokens,
        });
    }
    object
}

/// A Responses stream that sends `response.created` and then SSE comments.
pub(crate) fn responses_endless(model: &str) -> Endless {
    let response = json!({
        "id": fresh_id("resp_"),
        "object": "response",
        "created_at": now_seconds(),
        "status": "in_progress",
        "model": model,
        "output": [],
    });
    Endless {
        head: sse(
            Some("response.created"),
            &json!({"type": "response.created", "sequence_number": 0, "response": response}),
        ),
        keep_alive: ": keep-alive\n\n".to_owned(),
    }
}

/// The OpenAI error body for `status`.
pub(crate) fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("rate_limit_error", json!("rate_limit_exceeded")),
        _ => ("server_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::script::{ToolCall, Usage};
    use crate::view::RequestView;

    fn answer(text: Option<&str>, calls: &[ToolCall]) -> Answer {
        Answer::new(
            &RequestView::default(),
            text,
            calls,
            Some(Usage {
                input_tokens: 5,
                output_tokens: 2,
            }),
            "call_",
        )
    }

    #[test]
    fn chat_json_with_tool_call() {
        let answer = answer(None, &[ToolCall::new("read", json!({"p": 1}))]);
        let Rendered::Json(body) = render_chat(&answer, false, false) else {
            panic!("expected json");
        };
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"p\":1}"
        );
        assert!(
            body["choices"][0]["message"]["tool_calls"][0]
                .get("index")
                .is_none()
        );
        assert_eq!(body["usage"]["total_tokens"], 7);
    }

    #[test]
    fn responses_string_input_is_a_custom_tool_call() {
        let answer = answer(
            None,
            &[ToolCall::new("apply_patch", json!("*** Begin Patch\n")).with_id("c2")],
        );
        let Rendered::Json(body) = render_responses(&answer, false) else {
            panic!("expected json");
        };
        assert_eq!(body["output"][0]["type"], "custom_tool_call");
        assert_eq!(body["output"][0]["call_id"], "c2");
        assert_eq!(body["output"][0]["input"], "*** Begin Patch\n");
        assert_eq!(body["usage"]["total_tokens"], 7);
    }

    #[test]
    fn error_shape() {
        let body = error_body(429, "slow");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["message"], "slow");
    }
}
