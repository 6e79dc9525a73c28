//! Request normalisation (pure): each provider's request body becomes one [`RequestView`] that
//! rules are matched against.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::script::Api;

/// Who wrote a message, across providers (OpenAI `developer` counts as system, Gemini `model` as
/// assistant, OpenAI `tool` messages and Responses `*_output` items as tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One message of the conversation as plain text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMessage {
    pub role: Role,
    /// Text blocks, tool calls as `name {input json}` and tool result contents, joined by `\n`.
    pub text: String,
}

/// A provider-independent view of a model request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// None for requests that are not model calls (`HEAD /`, unknown paths).
    pub api: Option<Api>,
    pub model: Option<String>,
    pub stream: bool,
    /// Top-level system prompt (Anthropic `system`, Responses `instructions`, Gemini
    /// `systemInstruction`).
    pub system: String,
    /// Conversation in order; consecutive assistant messages/items are merged into one, so each
    /// assistant message is one earlier model turn.
    pub messages: Vec<ViewMessage>,
    /// Number of tools offered.
    pub tools: usize,
    /// Number of tool results in the conversation.
    pub tool_results: usize,
    /// Bytes of the JSON of the prompt fields (messages, system, tools); basis of computed usage.
    pub input_bytes: usize,
}

impl RequestView {
    /// Number of assistant messages, i.e. model turns already taken in this conversation.
    pub fn turn(&self) -> usize {
        self.messages
            .iter()
            .filter(|message| message.role == Role::Assistant)
            .count()
    }

    /// All message texts joined by `\n`.
    pub fn text(&self) -> String {
        join(self.messages.iter())
    }

    /// Top-level system prompt plus system-role messages.
    pub fn system_text(&self) -> String {
        let mut out = self.system.clone();
        for message in &self.messages {
            if message.role == Role::System {
                push(&mut out, &message.text);
            }
        }
        out
    }

    /// The opening user turn: user messages before the first assistant message. (Codex sends
    /// its environment context and the prompt as separate user messages.)
    pub fn first_user_text(&self) -> String {
        join(
            self.messages
                .iter()
                .take_while(|message| message.role != Role::Assistant)
                .filter(|message| message.role == Role::User),
        )
    }

    /// The latest input: non-system messages after the last assistant message (for Anthropic
    /// the last user message, tool results included; for OpenAI all trailing tool messages).
    /// If the conversation ends with an assistant message, that message.
    pub fn last_text(&self) -> String {
        if let Some(last) = self.messages.last()
            && last.role == Role::Assistant
        {
            return last.text.clone();
        }
        let start = self
            .messages
            .iter()
            .rposition(|message| message.role == Role::Assistant)
            .map_or(0, |index| index + 1);
        join(
            self.messages[start..]
                .iter()
                .filter(|message| message.role != Role::System),
        )
    }

    /// Computed input tokens: a quarter of the prompt bytes, at least 1.
    pub fn input_tokens(&self) -> u64 {
        tokens_for_bytes(self.input_bytes)
    }

    fn add(&mut self, role: Role, text: String) {
        if role == Role::Assistant
            && let Some(last) = self.messages.last_mut()
            && last.role == Role::Assistant
        {
            push(&mut last.text, &text);
            return;
        }
        self.messages.push(ViewMessage { role, text });
    }
}

/// A quarter of `bytes`, rounded up, at least 1: the crate's deterministic token estimate.
pub fn tokens_for_bytes(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4).max(1)
}

/// Normalises a request body of `api`. `model` and `stream` come from the path where the
/// protocol puts them there (Gemini); otherwise they are read from the body.
pub fn normalise(
    api: Api,
    body: &Value,
    path_model: Option<&str>,
    path_stream: bool,
) -> RequestView {
    let mut view = match api {
        Api::Anthropic => anthropic(body),
        Api::OpenAiChat => openai_chat(body),
        Api::OpenAiResponses => openai_responses(body),
        Api::Gemini => gemini(body),
    };
    if let Some(model) = path_model {
        view.model = Some(model.to_owned());
    }
    view.stream |= path_stream;
    view
}

/// Anthropic Messages: `system` (string or text blocks), `messages` (content string or blocks;
/// `role: "system"` messages accepted), `tools`.
pub fn anthropic(body: &Value) -> RequestView {
    let mut view = base(Api::Anthropic, body, &["messages", "system", "tools"]);
    view.system = content_text(&body["system"], &mut 0);
    view.tools = array_len(&body["tools"]);
    let mut tool_results = 0;
    for message in array(&body["messages"]) {
        let text = content_text(&message["content"], &mut tool_results);
        view.add(role_of(&message["role"]), text);
    }
    view.tool_results = tool_results;
    view
}

/// OpenAI Chat Completions: `messages` with `tool_calls` on assistant messages and `tool`
/// messages for results; `tools` (and legacy `functions`).
pub fn openai_chat(body: &Value) -> RequestView {
    let mut view = base(Api::OpenAiChat, body, &["messages", "tools", "functions"]);
    view.tools = array_len(&body["tools"]) + array_len(&body["functions"]);
    for message in array(&body["messages"]) {
        let role = role_of(&message["role"]);
        let mut text = content_text(&message["content"], &mut 0);
        for call in array(&message["tool_calls"]) {
            let function = &call["function"];
            push(
                &mut text,
                &call_text(&function["name"], &function["arguments"]),
            );
        }
        if let Some(function) = message.get("function_call") {
            push(
                &mut text,
                &call_text(&function["name"], &function["arguments"]),
            );
        }
        if role == Role::Tool {
            view.tool_results += 1;
        }
        view.add(role, text);
    }
    view
}

/// OpenAI Responses: `instructions`, `input` (a string or a list of items), `tools`.
pub fn openai_responses(body: &Value) -> RequestView {
    let mut view = base(
        Api::OpenAiResponses,
        body,
        &["input", "instructions", "tools"],
    );
    view.system = content_text(&body["instructions"], &mut 0);
    view.tools = array_len(&body["tools"]);
    if let Some(text) = body["input"].as_str() {
        view.add(Role::User, text.to_owned());
    }
    for item in array(&body["input"]) {
        let kind = item["type"].as_str().unwrap_or("message");
        match kind {
            "message" => {
                let text = content_text(&item["content"], &mut 0);
                view.add(role_of(&item["role"]), text);
            }
            "function_call" => view.add(
                Role::Assistant,
                call_text(&item["name"], &item["arguments"]),
            ),
            "custom_tool_call" => {
                view.add(Role::Assistant, call_text(&item["name"], &item["input"]))
            }
            "function_call_output" | "custom_tool_call_output" | "local_shell_call_output" => {
                view.tool_results += 1;
                let text = content_text(&item["output"], &mut 0);
                view.add(Role::Tool, text);
            }
            // The tools a tool search found: their definitions are its result.
            "tool_search_output" => {
                view.tool_results += 1;
                view.add(Role::Tool, item["tools"].to_string());
            }
            // Other model-side items (reasoning, local_shell_call, web_search_call, ...) still
            // mark an earlier model turn.
            _ if kind.ends_with("_call") || kind == "reasoning" => {
                let text = if kind == "reasoning" {
                    String::new()
                } else {
                    item.to_string()
                };
                view.add(Role::Assistant, text);
            }
            _ => {}
        }
    }
    view
}

/// Gemini generateContent: `contents` (role `user`/`model`, parts with `text`, `functionCall`,
/// `functionResponse`), `systemInstruction`, `tools[].functionDeclarations`.
pub fn gemini(body: &Value) -> RequestView {
    let mut view = base(
        Api::Gemini,
        body,
        &["contents", "systemInstruction", "tools"],
    );
    view.system = gemini_parts(&body["systemInstruction"]["parts"], &mut 0);
    view.tools = array(&body["tools"])
        .map(|tool| match tool.get("functionDeclarations") {
            Some(declarations) => array_len(declarations),
            None => 1,
        })
        .sum();
    let mut tool_results = 0;
    for content in array(&body["contents"]) {
        let role = match content["role"].as_str() {
            Some("model") => Role::Assistant,
            _ => Role::User,
        };
        let text = gemini_parts(&content["parts"], &mut tool_results);
        view.add(role, text);
    }
    view.tool_results = tool_results;
    view
}

fn gemini_parts(parts: &Value, tool_results: &mut usize) -> String {
    let mut out = String::new();
    for part in array(parts) {
        if let Some(text) = part["text"].as_str() {
            push(&mut out, text);
        } else if let Some(call) = part.get("functionCall") {
            push(&mut out, &call_text(&call["name"], &call["args"]));
        } else if let Some(response) = part.get("functionResponse") {
            *tool_results += 1;
            push(&mut out, &response["response"].to_string());
        }
    }
    out
}

fn base(api: Api, body: &Value, prompt_fields: &[&str]) -> RequestView {
    RequestView {
        api: Some(api),
        model: body["model"].as_str().map(str::to_owned),
        stream: body["stream"].as_bool().unwrap_or(false),
        input_bytes: prompt_fields
            .iter()
            .filter_map(|field| body.get(*field))
            .map(|value| value.to_string().len())
            .sum(),
        ..RequestView::default()
    }
}

fn role_of(role: &Value) -> Role {
    match role.as_str() {
        Some("system" | "developer") => Role::System,
        Some("assistant" | "model") => Role::Assistant,
        Some("tool" | "function") => Role::Tool,
        _ => Role::User,
    }
}

/// Text of a content value: a string, or a list of blocks/parts. Text-like blocks give their
/// text, tool calls `name {input}`, tool results their content (counted in `tool_results`).
fn content_text(content: &Value, tool_results: &mut usize) -> String {
    let mut out = String::new();
    match content {
        Value::String(text) => push(&mut out, text),
        Value::Array(blocks) => {
            for block in blocks {
                match block["type"].as_str() {
                    Some("tool_use" | "server_tool_use") => {
                        push(&mut out, &call_text(&block["name"], &block["input"]))
                    }
                    Some("tool_result") => {
                        *tool_results += 1;
                        push(&mut out, &content_text(&block["content"], tool_results));
                    }
                    _ => {
                        if let Some(text) = block.as_str().or_else(|| block["text"].as_str()) {
                            push(&mut out, text);
                        }
                    }
                }
            }
        }
        Value::Null => {}
        other => push(&mut out, &other.to_string()),
    }
    out
}

/// `name {input}`; a string input (OpenAI `arguments`, custom tool input) is kept verbatim.
fn call_text(name: &Value, input: &Value) -> String {
    let input = match input {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    format!("{} {input}", name.as_str().unwrap_or_default())
}

fn array(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn array_len(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

fn push(out: &mut String, piece: &str) {
    if piece.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(piece);
}

fn join<'a>(messages: impl Iterator<Item = &'a ViewMessage>) -> String {
    let mut out = String::new();
    for message in messages {
        push(&mut out, &message.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anthropic_blocks_tool_results_and_system_messages() {
        let body = json!({
            "model": "claude-x",
            "stream": true,
            "system": [{"type": "text", "text": "You are Claude Code"}],
            "tools": [{"name": "Bash"}, {"name": "Write"}],
            "messages": [
                {"role": "system", "content": "extra rules"},
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "fix ISSUE-7"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm"},
                    {"type": "text", "text": "Writing."},
                    {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "a.txt"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "File created"}]},
                    {"type": "text", "text": "go on"}
                ]}
            ]
        });
        let view = anthropic(&body);
        assert_eq!(view.api, Some(Api::Anthropic));
        assert_eq!(view.model.as_deref(), Some("claude-x"));
        assert!(view.stream);
        assert_eq!(view.tools, 2);
        assert_eq!(view.tool_results, 1);
        assert_eq!(view.turn(), 1);
        assert_eq!(view.system_text(), "You are Claude Code\nextra rules");
        assert_eq!(
            view.first_user_text(),
            "<system-reminder>x</system-reminder>\nfix ISSUE-7"
        );
        assert_eq!(view.last_text(), "File created\ngo on");
        assert!(view.text().contains(r#"Write {"file_path":"a.txt"}"#));
        assert!(!view.text().contains("hmm"));
        assert!(view.input_bytes > 0);
    }

    #[test]
    fn anthropic_plain_string_system_and_content() {
        let view = anthropic(&json!({
            "system": "sys",
            "messages": [{"role": "user", "content": "hello"}]
        }));
        assert_eq!(view.system, "sys");
        assert_eq!(view.turn(), 0);
        assert_eq!(view.last_text(), "hello");
        assert_eq!(view.tools, 0);
        assert!(!view.stream);
    }

    #[test]
    fn openai_chat_tool_calls_and_trailing_tool_messages() {
        let view = openai_chat(&json!({
            "model": "gpt",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "task A"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{\"p\":1}"}},
                    {"id": "c2", "type": "function", "function": {"name": "list", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "one"},
                {"role": "tool", "tool_call_id": "c2", "content": "two"}
            ],
            "tools": [{"type": "function", "function": {"name": "read"}}]
        }));
        assert_eq!(view.system_text(), "be brief");
        assert_eq!(view.first_user_text(), "task A");
        assert_eq!(view.turn(), 1);
        assert_eq!(view.tool_results, 2);
        assert_eq!(view.tools, 1);
        assert_eq!(view.last_text(), "one\ntwo");
        assert!(view.text().contains("read {\"p\":1}"));
    }

    #[test]
    fn openai_responses_items_merge_into_turns() {
        let view = openai_responses(&json!({
            "model": "gpt-5.5",
            "instructions": "You are Codex",
            "stream": true,
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add a.txt"}]},
                {"type": "reasoning", "summary": []},
                {"type": "function_call", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}", "call_id": "c1"},
                {"type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin Patch", "call_id": "c2"},
                {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done!"}
            ],
            "tools": [{"type": "function", "name": "exec_command"}, {"type": "custom", "name": "apply_patch"}]
        }));
        assert_eq!(view.system_text(), "You are Codex\nsandbox");
        assert_eq!(view.first_user_text(), "<environment_context/>\nadd a.txt");
        assert_eq!(view.turn(), 1);
        assert_eq!(view.tool_results, 2);
        assert_eq!(view.tools, 2);
        assert_eq!(view.last_text(), "a.txt\nDone!");
        assert!(view.text().contains("apply_patch *** Begin Patch"));
        assert!(view.stream);
    }

    #[test]
    fn openai_responses_string_input() {
        let view = openai_responses(&json!({"input": "hi"}));
        assert_eq!(view.first_user_text(), "hi");
        assert_eq!(view.last_text(), "hi");
    }

    #[test]
    fn gemini_contents_and_function_parts() {
        let view = normalise(
            Api::Gemini,
            &json!({
                "systemInstruction": {"parts": [{"text": "You are Gemini CLI"}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "make b.txt"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "write_file", "args": {"path": "b.txt"}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {"output": "ok"}}}]}
                ],
                "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]
            }),
            Some("gemini-2.5-pro"),
            true,
        );
        assert_eq!(view.model.as_deref(), Some("gemini-2.5-pro"));
        assert!(view.stream);
        assert_eq!(view.system, "You are Gemini CLI");
        assert_eq!(view.tools, 2);
        assert_eq!(view.turn(), 1);
        assert_eq!(view.tool_results, 1);
        assert_eq!(view.last_text(), r#"{"output":"ok"}"#);
    }

    #[test]
    fn last_text_of_assistant_prefill_and_empty_body() {
        let view = anthropic(&json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "prefill"}
        ]}));
        assert_eq!(view.last_text(), "prefill");
        let empty = anthropic(&json!(null));
        assert_eq!(empty.text(), "");
        assert_eq!(empty.last_text(), "");
        assert_eq!(empty.input_tokens(), 1);
    }

    #[test]
    fn token_estimate_rounds_up() {
        assert_eq!(tokens_for_bytes(0), 1);
        assert_eq!(tokens_for_bytes(4), 1);
        assert_eq!(tokens_for_bytes(5), 2);
    }
}
