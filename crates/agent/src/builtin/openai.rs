//! OpenAI Chat Completions wire format: the request body from the neutral session, and the reply back.

use codemill_core::cost::Usage;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ModelReply;
use super::session::{Block, Message};
use super::tools::ToolSpec;

pub(crate) fn url(base: &str) -> String {
    format!("{}/v1/chat/completions", base.trim_end_matches('/'))
}

pub(crate) fn request(
    model: &str,
    system: &str,
    messages: &[Message],
    tools: &[ToolSpec],
) -> Value {
    let mut wire = vec![json!({"role": "system", "content": system})];
    for message in messages {
        push_message(&mut wire, message);
    }
    let tools: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.schema
            }})
        })
        .collect();
    let mut body = json!({"model": model, "messages": wire});
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    body
}

/// One neutral message can become several wire messages: tool results are `tool` messages.
fn push_message(wire: &mut Vec<Value>, message: &Message) {
    match message {
        Message::User { content } => {
            let mut text = Vec::new();
            for block in content {
                match block {
                    Block::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } => {
                        // Chat Completions has no error flag on tool messages: say it in the text.
                        let content = if *is_error {
                            format!("ERROR: {content}")
                        } else {
                            content.clone()
                        };
                        wire.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
                    }
                    Block::Text { text: t } => text.push(t.as_str()),
                    Block::ToolUse { .. } => {}
                }
            }
            if !text.is_empty() {
                wire.push(json!({"role": "user", "content": text.join("\n\n")}));
            }
        }
        Message::Assistant { content } => {
            let text: Vec<&str> = content
                .iter()
                .filter_map(|b| match b {
                    Block::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            let calls: Vec<Value> = content
                .iter()
                .filter_map(|b| match b {
                    Block::ToolUse { id, name, input } => {
                        let arguments = match input {
                            Value::String(raw) => raw.clone(),
                            other => other.to_string(),
                        };
                        Some(json!({"id": id, "type": "function",
                                    "function": {"name": name, "arguments": arguments}}))
                    }
                    _ => None,
                })
                .collect();
            let mut out = json!({
                "role": "assistant",
                "content": if text.is_empty() { Value::Null } else { Value::String(text.join("\n\n")) },
            });
            if !calls.is_empty() {
                out["tool_calls"] = Value::Array(calls);
            }
            wire.push(out);
        }
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: ResponseUsage,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChoiceMessage {
    content: Option<String>,
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponseUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

pub(crate) fn parse(body: &Value) -> Result<ModelReply, String> {
    let response = Response::deserialize(body).map_err(|e| e.to_string())?;
    let Some(choice) = response.choices.into_iter().next() else {
        return Err("the response has no choices".to_string());
    };
    let mut content = Vec::new();
    if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
        content.push(Block::Text { text });
    }
    for call in choice.message.tool_calls {
        let raw = call.function.arguments;
        // Keep unparsable arguments as a string: the tool answers with an error the model can fix.
        let input = if raw.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&raw).unwrap_or(Value::String(raw))
        };
        content.push(Block::ToolUse {
            id: call.id,
            name: call.function.name,
            input,
        });
    }
    let u = response.usage;
    let prompt = u.prompt_tokens.unwrap_or(0);
    let cached = u
        .prompt_tokens_details
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0)
        .min(prompt);
    Ok(ModelReply {
        content,
        usage: Usage {
            // OpenAI counts cached tokens inside prompt_tokens; codemill keeps them apart.
            input_tokens: prompt - cached,
            output_tokens: u.completion_tokens.unwrap_or(0),
            cache_read_tokens: cached,
            cache_write_tokens: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn tool_results_become_tool_messages() {
        let messages = vec![
            Message::User {
                content: vec![Block::Text { text: "go".into() }],
            },
            Message::Assistant {
                content: vec![Block::ToolUse {
                    id: "c1".into(),
                    name: "read_file".into(),
                    input: json!({"path": "a"}),
                }],
            },
            Message::User {
                content: vec![
                    Block::ToolResult {
                        tool_use_id: "c1".into(),
                        content: "nope".into(),
                        is_error: true,
                    },
                    Block::Text {
                        text: "now fix it".into(),
                    },
                ],
            },
        ];
        let body = request("m", "sys", &messages, &[]);
        let wire = body["messages"].as_array().unwrap();
        assert_eq!(wire[0]["role"], "system");
        assert_eq!(
            wire[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"path":"a"}"#
        );
        assert_eq!(wire[3]["role"], "tool");
        assert_eq!(wire[3]["content"], "ERROR: nope");
        assert_eq!(wire[4]["content"], "now fix it");
        assert!(body.get("tools").is_none());
    }

    #[test]
    fn parses_calls_and_usage() {
        let reply = parse(&json!({
            "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "list_dir", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "read_file", "arguments": "{bad"}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 7,
                      "prompt_tokens_details": {"cached_tokens": 40}}
        }))
        .unwrap();
        assert_eq!(reply.content.len(), 2);
        assert!(matches!(
            &reply.content[1],
            Block::ToolUse {
                input: Value::String(_),
                ..
            }
        ));
        assert_eq!(reply.usage.input_tokens, 60);
        assert_eq!(reply.usage.cache_read_tokens, 40);
        assert_eq!(reply.usage.output_tokens, 7);
    }
}
