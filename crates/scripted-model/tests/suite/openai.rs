//! OpenAI Chat Completions (SSE and JSON), Responses (Codex SSE), Gemini, and their errors.

use codemill_scripted_model::{Api, Match, Reply, ToolCall, Usage};
use serde_json::json;

use super::{parse_sse, post, post_json, rule, start};

fn chat_request(stream: bool) -> serde_json::Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "You are codemill"},
            {"role": "user", "content": "Fix ISSUE-2"}
        ],
        "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    })
}

fn two_calls() -> Reply {
    Reply::Message {
        text: Some("Reading.".into()),
        tool_calls: vec![
            ToolCall::new("read_file", json!({"path": "a.rs"})),
            ToolCall::new("read_file", json!({"path": "b.rs"})).with_id("call_b"),
        ],
        usage: Some(Usage {
            input_tokens: 100,
            output_tokens: 20,
        }),
    }
}

#[tokio::test]
async fn chat_stream_with_tool_calls_usage_chunk_and_done() {
    let server = start(vec![rule(
        "chat",
        Match {
            api: Some(Api::OpenAiChat),
            model: Some("gpt-test".into()),
            ..Match::default()
        },
        two_calls(),
    )])
    .await;
    let (status, headers, body) = post(&server, "/v1/chat/completions", &chat_request(true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(!body.contains("event:"), "chat SSE has data lines only");
    let events = parse_sse(&body);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<_> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], chunks[0]["id"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Reading.");
    let first = &chunks[2]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["index"], 0);
    assert_eq!(first["type"], "function");
    assert!(first["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(first["function"]["name"], "read_file");
    assert_eq!(first["function"]["arguments"], r#"{"path":"a.rs"}"#);
    let second = &chunks[3]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(second["index"], 1);
    assert_eq!(second["id"], "call_b");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    let usage_chunk = &chunks[5];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})
    );
    assert_eq!(chunks.len(), 6);
}

#[tokio::test]
async fn chat_stream_without_usage_option_has_no_usage_chunk() {
    let server = start(vec![rule("any", Match::default(), Reply::text("hi"))]).await;
    let mut request = chat_request(true);
    request.as_object_mut().unwrap().remove("stream_options");
    let (_, _, body) = post(&server, "/v1/chat/completions", &request).await;
    let events = parse_sse(&body);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert!(!body.contains("\"usage\""));
    let finish = events[events.len() - 2].json();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn chat_json_completion() {
    let server = start(vec![rule(
        "chat",
        Match::default(),
        Reply::text("Plain answer."),
    )])
    .await;
    let (status, body) = post_json(&server, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-test");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Plain answer.");
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 10);
    assert_eq!(usage["completion_tokens"], 4); // 13 bytes
    assert_eq!(usage["total_tokens"], prompt + 4);
}

#[tokio::test]
async fn responses_stream_as_codex_reads_it() {
    let server = start(vec![rule(
        "codex",
        Match {
            api: Some(Api::OpenAiResponses),
            first_user_contains: Some("add a.txt".into()),
            ..Match::default()
        },
        Reply::Message {
            text: Some("Patching.".into()),
            tool_calls: vec![
                ToolCall::new("exec_command", json!({"cmd": "ls"})).with_id("c1"),
                ToolCall::new(
                    "apply_patch",
                    json!("*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"),
                )
                .with_id("c2"),
            ],
            usage: None,
        },
    )])
    .await;
    let request = json!({
        "model": "gpt-5.5",
        "stream": true,
        "instructions": "You are Codex",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add a.txt"}]}
        ],
        "tools": [{"type": "function", "name": "exec_command"}]
    });
    for path in ["/v1/responses", "/responses"] {
        let (status, _, body) = post(&server, path, &request).await;
        assert_eq!(status, 200, "{body}");
        let events = parse_sse(&body);
        let names: Vec<_> = events.iter().filter_map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.output_item.done",
                "response.output_item.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let items: Vec<_> = events[1..4]
            .iter()
            .map(|e| e.json()["item"].clone())
            .collect();
        assert_eq!(items[0]["type"], "message");
        assert_eq!(items[0]["content"][0]["type"], "output_text");
        assert_eq!(items[0]["content"][0]["text"], "Patching.");
        assert_eq!(items[1]["type"], "function_call");
        assert_eq!(items[1]["name"], "exec_command");
        assert_eq!(items[1]["arguments"], r#"{"cmd":"ls"}"#);
        assert_eq!(items[1]["call_id"], "c1");
        assert_eq!(items[2]["type"], "custom_tool_call");
        assert_eq!(items[2]["call_id"], "c2");
        assert!(
            items[2]["input"]
                .as_str()
                .unwrap()
                .starts_with("*** Begin Patch")
        );
        let completed = &events[4].json()["response"];
        assert!(completed["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(completed["status"], "completed");
        let usage = &completed["usage"];
        let total =
            usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap();
        assert_eq!(usage["total_tokens"], total);
    }
    assert_eq!(server.hits("codex"), 2);
}

#[tokio::test]
async fn gemini_stream_chunk() {
    let server = start(vec![rule(
        "gemini",
        Match {
            api: Some(Api::Gemini),
            model: Some("gemini-2.5-pro".into()),
            ..Match::default()
        },
        Reply::tool_call("write_file", json!({"file_path": "b.txt"})),
    )])
    .await;
    let request = json!({"contents": [{"role": "user", "parts": [{"text": "make b"}]}]});
    let (status, _, body) = post(
        &server,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        &request,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let events = parse_sse(&body);
    assert_eq!(events.len(), 1);
    let chunk = events[0].json();
    let call = &chunk["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["name"], "write_file");
    assert_eq!(call["args"]["file_path"], "b.txt");
    assert!(chunk["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 1);
}

#[tokio::test]
async fn openai_endpoints_answer_openai_shaped_errors() {
    let server = start(vec![rule(
        "anthropic only",
        Match {
            api: Some(Api::Anthropic),
            ..Match::default()
        },
        Reply::text("x"),
    )])
    .await;
    let (status, body) = post_json(&server, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("scripted model server: no rule matched openai_chat"),
        "{message}"
    );
    assert_eq!(server.unmatched().len(), 1);
}
