//! Anthropic Messages wire format: the request body from the neutral session, and the reply back.

use codemill_core::cost::Usage;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ModelReply;
use super::session::{Block, Message};
use super::tools::ToolSpec;

/// Upper bound on one answer; the API requires one.
const MAX_TOKENS: u32 = 8192;
pub(crate) const VERSION: &str = "2023-06-01";

pub(crate) fn url(base: &str) -> String {
    format!("{}/v1/messages", base.trim_end_matches('/'))
}

pub(crate) fn request(
    model: &str,
    system: &str,
    messages: &[Message],
    tools: &[ToolSpec],
) -> Value {
    let messages: Vec<Value> = messages.iter().map(message).collect();
    let tools: Vec<Value> = tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}))
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": MAX_TOKENS,
        "system": system,
        "messages": messages,
    });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools);
    }
    body
}

fn message(message: &Message) -> Value {
    let (role, content) = match message {
        Message::User { content } => ("user", content),
        Message::Assistant { content } => ("assistant", content),
    };
    let blocks: Vec<Value> = content
        .iter()
        .map(|block| match block {
            Block::Text { text } => json!({"type": "text", "text": text}),
            Block::ToolUse { id, name, input } => {
                // Arguments that did not parse (from an OpenAI session) cannot be an object here.
                let input = if input.is_object() {
                    input.clone()
                } else {
                    json!({})
                };
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => json!({
                "type": "tool_result",
                "tool_use_id": tool_use_id,
                "content": content,
                "is_error": is_error,
            }),
        })
        .collect();
    json!({"role": role, "content": blocks})
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    usage: ResponseUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking and anything newer: not part of the neutral history.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponseUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

pub(crate) fn parse(body: &Value) -> Result<ModelReply, String> {
    let response = Response::deserialize(body).map_err(|e| e.to_string())?;
    let content = response
        .content
        .into_iter()
        .filter_map(|block| match block {
            ContentBlock::Text { text } => Some(Block::Text { text }),
            ContentBlock::ToolUse { id, name, input } => Some(Block::ToolUse { id, name, input }),
            ContentBlock::Other => None,
        })
        .collect();
    let u = response.usage;
    Ok(ModelReply {
        content,
        usage: Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
            cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn request_carries_history_and_tools() {
        let messages = vec![
            Message::User {
                content: vec![Block::Text { text: "go".into() }],
            },
            Message::Assistant {
                content: vec![Block::ToolUse {
                    id: "t1".into(),
                    name: "list_dir".into(),
                    input: json!({}),
                }],
            },
            Message::User {
                content: vec![Block::ToolResult {
                    tool_use_id: "t1".into(),
                    content: "a.txt".into(),
                    is_error: false,
                }],
            },
        ];
        let tools = vec![ToolSpec {
            name: "list_dir",
            description: "list",
            schema: json!({"type": "object"}),
        }];
        let body = request("m", "sys", &messages, &tools);
        assert_eq!(body["system"], "sys");
        assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "t1");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    }

    #[test]
    fn parses_text_tool_use_and_usage() {
        let reply = parse(&json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "hi"},
                {"type": "tool_use", "id": "t", "name": "read_file", "input": {"path": "a"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3}
        }))
        .unwrap();
        assert_eq!(reply.content.len(), 2);
        assert_eq!(reply.usage.input_tokens, 10);
        assert_eq!(reply.usage.cache_read_tokens, 3);
    }
}
