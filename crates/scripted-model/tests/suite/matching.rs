//! Rule choice by content: turn, last/first message text, exclusions, `times`, no match.

use codemill_scripted_model::{Match, Reply, Script};
use serde_json::{Value, json};

use super::{post_json, rule, start};

/// An Anthropic JSON request with the given messages.
fn messages(messages: Value) -> Value {
    json!({"model": "claude-test", "max_tokens": 100, "messages": messages})
}

fn text_of(message: &Value) -> &str {
    message["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn turn_and_tool_results_drive_a_two_turn_conversation() {
    let script = Script::from_json(
        r#"{"rules": [
          {"name": "write", "when": {"first_user_contains": "ISSUE-1", "turn": 0},
           "reply": {"message": {"text": "Creating the file.", "tool_calls": [
             {"name": "Write", "input": {"file_path": "hello.txt", "content": "hi\n"}}]}}},
          {"name": "done", "when": {"first_user_contains": "ISSUE-1", "tool_results": 1},
           "reply": {"message": {"text": "Done: hello.txt created."}}}
        ]}"#,
    )
    .unwrap();
    let server = codemill_scripted_model::ModelServer::start(script)
        .await
        .unwrap();
    let first = messages(json!([{"role": "user", "content": "Please fix ISSUE-1"}]));
    let (status, reply) = post_json(&server, "/v1/messages", &first).await;
    assert_eq!(status, 200);
    let call = &reply["content"][1];
    assert_eq!(call["name"], "Write");
    let id = call["id"].as_str().unwrap();

    let second = messages(json!([
        {"role": "user", "content": "Please fix ISSUE-1"},
        {"role": "assistant", "content": reply["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "File created"}]}
    ]));
    let (status, reply) = post_json(&server, "/v1/messages", &second).await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&reply), "Done: hello.txt created.");
    assert_eq!(reply["stop_reason"], "end_turn");

    let rules: Vec<_> = server
        .requests()
        .iter()
        .map(|request| request.matched_rule.clone())
        .collect();
    assert_eq!(rules, [Some("write".to_owned()), Some("done".to_owned())]);
    assert_eq!(server.requests_for_rule("done")[0].view.turn(), 1);
}

#[tokio::test]
async fn last_contains_not_contains_and_first_user_contains() {
    let server = start(vec![
        rule(
            "failed",
            Match {
                last_contains: Some("error:".into()),
                ..Match::default()
            },
            Reply::text("fixing the error"),
        ),
        rule(
            "other task",
            Match {
                first_user_contains: Some("ISSUE-9".into()),
                not_contains: Some("secret".into()),
                ..Match::default()
            },
            Reply::text("issue nine"),
        ),
        rule("fallback", Match::default(), Reply::text("fallback")),
    ])
    .await;
    // "error:" only in an earlier message: last_contains does not hold.
    let earlier = messages(json!([
        {"role": "user", "content": "ISSUE-9 error: old"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "next"}
    ]));
    let (_, reply) = post_json(&server, "/v1/messages", &earlier).await;
    assert_eq!(text_of(&reply), "issue nine");

    let latest = messages(json!([
        {"role": "user", "content": "ISSUE-9"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "error: boom"}]}
    ]));
    let (_, reply) = post_json(&server, "/v1/messages", &latest).await;
    assert_eq!(text_of(&reply), "fixing the error");

    let excluded = messages(json!([{"role": "user", "content": "ISSUE-9 with a secret"}]));
    let (_, reply) = post_json(&server, "/v1/messages", &excluded).await;
    assert_eq!(text_of(&reply), "fallback");
}

#[tokio::test]
async fn times_limits_a_rule_and_set_script_resets_counters() {
    let rules = || {
        vec![
            rule("once", Match::default(), Reply::text("first")).times(1),
            rule("then", Match::default(), Reply::text("later")),
        ]
    };
    let server = start(rules()).await;
    let request = messages(json!([{"role": "user", "content": "hi"}]));
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (_, reply) = post_json(&server, "/v1/messages", &request).await;
        answers.push(text_of(&reply).to_owned());
    }
    assert_eq!(answers, ["first", "later", "later"]);
    assert_eq!(server.hits("once"), 1);
    assert_eq!(server.hits("then"), 2);

    server.set_script(Script::new(rules()));
    let (_, reply) = post_json(&server, "/v1/messages", &request).await;
    assert_eq!(text_of(&reply), "first");
}

#[tokio::test]
async fn model_and_has_tools_conditions() {
    let server = start(vec![
        rule(
            "title",
            Match {
                has_tools: Some(false),
                model: Some("claude-haiku".into()),
                ..Match::default()
            },
            Reply::text("A title"),
        ),
        rule(
            "work",
            Match {
                has_tools: Some(true),
                ..Match::default()
            },
            Reply::text("working"),
        ),
    ])
    .await;
    let mut side = messages(json!([{"role": "user", "content": "name this"}]));
    side["model"] = json!("claude-haiku");
    let (_, reply) = post_json(&server, "/v1/messages", &side).await;
    assert_eq!(text_of(&reply), "A title");

    let mut main = messages(json!([{"role": "user", "content": "do it"}]));
    main["tools"] = json!([{"name": "Bash", "input_schema": {}}]);
    let (_, reply) = post_json(&server, "/v1/messages", &main).await;
    assert_eq!(text_of(&reply), "working");

    // Neither: no tools and another model.
    let (status, body) = post_json(
        &server,
        "/v1/messages",
        &messages(json!([{"role": "user", "content": "x"}])),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("scripted model server: no rule matched anthropic request"),
        "{message}"
    );
    let unmatched = server.unmatched();
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0].status, 400);
    assert_eq!(unmatched[0].body["messages"][0]["content"], "x");
}
