//! Anthropic Messages: the SSE sequence Claude Code accepts, JSON mode, system messages.

use codemill_scripted_model::{Api, Match, Reply, ToolCall, Usage};
use serde_json::json;

use super::{parse_sse, post, post_json, rule, start};

fn request(stream: bool) -> serde_json::Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": stream,
        "system": [{"type": "text", "text": "You are Claude Code"}],
        "tools": [{"name": "Write", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "system", "content": "repository rules"},
            {"role": "user", "content": [{"type": "text", "text": "Fix ISSUE-1"}]}
        ]
    })
}

#[tokio::test]
async fn tool_use_stream_has_the_exact_event_sequence() {
    let input = json!({"file_path": "hello.txt", "content": "hi\n"});
    let server = start(vec![rule(
        "write",
        Match {
            api: Some(Api::Anthropic),
            system_contains: Some("repository rules".into()),
            has_tools: Some(true),
            ..Match::default()
        },
        Reply::Message {
            text: Some("Writing it.".into()),
            tool_calls: vec![ToolCall::new("Write", input.clone())],
            usage: None,
        },
    )])
    .await;
    let (status, headers, body) = post(&server, "/v1/messages?beta=true", &request(true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");

    let events = parse_sse(&body);
    let names: Vec<&str> = events
        .iter()
        .map(|event| event.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for event in &events {
        assert_eq!(event.json()["type"], event.name.as_deref().unwrap());
    }

    let start = events[0].json();
    let message = &start["message"];
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["model"], "claude-sonnet-4-5");
    assert_eq!(message["content"], json!([]));
    assert_eq!(message["usage"]["output_tokens"], 1);
    assert!(message["usage"]["input_tokens"].as_u64().unwrap() > 10);

    assert_eq!(
        events[2].json()["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        events[3].json()["delta"],
        json!({"type": "text_delta", "text": "Writing it."})
    );
    let tool_start = events[5].json();
    assert_eq!(tool_start["index"], 1);
    let block = &tool_start["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "Write");
    assert_eq!(block["input"], json!({}));
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    let delta = &events[6].json()["delta"];
    assert_eq!(delta["type"], "input_json_delta");
    let partial: serde_json::Value =
        serde_json::from_str(delta["partial_json"].as_str().unwrap()).unwrap();
    assert_eq!(partial, input);

    let message_delta = events[8].json();
    assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");
    // "Writing it." (11 bytes) + input JSON (41 bytes) = 52 bytes -> 13 tokens.
    let expected = (11 + input.to_string().len()).div_ceil(4) as u64;
    assert_eq!(message_delta["usage"]["output_tokens"], expected);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/messages");
    assert_eq!(recorded[0].matched_rule.as_deref(), Some("write"));
    assert_eq!(recorded[0].body["messages"][1]["role"], "user");
    assert_eq!(recorded[0].header("X-Api-Key"), Some("test-key"));
    assert!(recorded[0].text().contains("Fix ISSUE-1"));
    server.shutdown().await;
}

#[tokio::test]
async fn text_stream_ends_the_turn_with_scripted_usage() {
    let server = start(vec![rule(
        "answer",
        Match::default(),
        Reply::Message {
            text: Some("All done.".into()),
            tool_calls: Vec::new(),
            usage: Some(Usage {
                input_tokens: 1234,
                output_tokens: 56,
            }),
        },
    )])
    .await;
    let (status, _, body) = post(&server, "/v1/messages", &request(true)).await;
    assert_eq!(status, 200);
    let events = parse_sse(&body);
    let names: Vec<_> = events.iter().filter_map(|e| e.name.clone()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0].json()["message"]["usage"]["input_tokens"], 1234);
    assert_eq!(events[3].json()["delta"]["text"], "All done.");
    let delta = events[5].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 56);
}

#[tokio::test]
async fn json_mode_returns_a_messages_object() {
    let server = start(vec![rule(
        "tool",
        Match::default(),
        Reply::Message {
            text: None,
            tool_calls: vec![
                ToolCall::new("Bash", json!({"command": "ls"})).with_id("toolu_fixed"),
            ],
            usage: None,
        },
    )])
    .await;
    let (status, message) = post_json(&server, "/v1/messages", &request(false)).await;
    assert_eq!(status, 200);
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-sonnet-4-5");
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(
        message["content"],
        json!([{"type": "tool_use", "id": "toolu_fixed", "name": "Bash", "input": {"command": "ls"}}])
    );
    assert!(message["usage"]["input_tokens"].as_u64().unwrap() > 1);
    assert_eq!(message["usage"]["output_tokens"], 4); // {"command":"ls"} = 16 bytes
}
