//! The script: rules that say which scripted answer a request gets, and how a rule is chosen.

use serde::{Deserialize, Serialize};

use crate::view::RequestView;

/// The wire protocol a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Api {
    /// Anthropic Messages, `POST /v1/messages`.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    #[serde(rename = "openai_chat")]
    OpenAiChat,
    /// OpenAI Responses, `POST /v1/responses` (Codex).
    #[serde(rename = "openai_responses")]
    OpenAiResponses,
    /// Gemini `models/{model}:streamGenerateContent` / `:generateContent` (Gemini CLI).
    #[serde(rename = "gemini")]
    Gemini,
}

impl Api {
    /// The name used in scripts and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Anthropic => "anthropic",
            Api::OpenAiChat => "openai_chat",
            Api::OpenAiResponses => "openai_responses",
            Api::Gemini => "gemini",
        }
    }
}

/// An ordered list of rules; the first rule whose `when` holds and whose `times` is not used up
/// answers the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Script {
    pub rules: Vec<Rule>,
}

impl Script {
    pub fn new(rules: Vec<Rule>) -> Script {
        Script { rules }
    }

    /// Parses a script written as JSON.
    pub fn from_json(text: &str) -> Result<Script, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Index of the rule that answers `view`, given how often each rule has been used already
    /// (`used[i]` for `rules[i]`; missing entries count as 0).
    pub fn select(&self, view: &RequestView, used: &[usize]) -> Option<usize> {
        self.rules.iter().enumerate().position(|(index, rule)| {
            let spent = used.get(index).copied().unwrap_or(0);
            rule.times.is_none_or(|times| spent < times) && rule.when.holds(view)
        })
    }
}

/// One scripted answer and the condition under which it is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in recorded requests (`matched_rule`) so tests can tell which rule answered.
    pub name: String,
    /// All set fields must hold; an empty `when` matches every model request.
    #[serde(default)]
    pub when: Match,
    pub reply: Reply,
    /// The rule answers at most this many requests per server (None = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<usize>,
    /// Answer only after this many milliseconds, like a slow model (None = at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl Rule {
    pub fn new(name: impl Into<String>, when: Match, reply: Reply) -> Rule {
        Rule {
            name: name.into(),
            when,
            reply,
            times: None,
            delay_ms: None,
        }
    }

    /// Answers only after `delay`, as a slow model would.
    pub fn after(mut self, delay: std::time::Duration) -> Rule {
        self.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Limits the rule to `times` uses.
    pub fn times(mut self, times: usize) -> Rule {
        self.times = Some(times);
        self
    }
}

/// Conditions on the normalised request ([`RequestView`]). Text conditions are case-sensitive
/// substring tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Match {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// Exact model name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The request offers at least one tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_tools: Option<bool>,
    /// The system prompt (top-level system/instructions plus system-role messages) contains this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_contains: Option<String>,
    /// Some message (any role, including tool calls and tool results) contains this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The opening user turn (user messages before the first assistant message) contains this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_user_contains: Option<String>,
    /// The latest input (messages after the last assistant message) contains this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_contains: Option<String>,
    /// No message contains this (same scope as `contains`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_contains: Option<String>,
    /// Number of assistant turns already in the request (0 = first call of a conversation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<usize>,
    /// Number of tool results in the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_results: Option<usize>,
}

impl Match {
    /// Whether every set condition holds for `view`.
    pub fn holds(&self, view: &RequestView) -> bool {
        let text_has = |needle: &Option<String>, haystack: &dyn Fn() -> String| {
            needle
                .as_deref()
                .is_none_or(|needle| haystack().contains(needle))
        };
        self.api.is_none_or(|api| view.api == Some(api))
            && self
                .model
                .as_deref()
                .is_none_or(|model| view.model.as_deref() == Some(model))
            && self.has_tools.is_none_or(|has| (view.tools > 0) == has)
            && self.turn.is_none_or(|turn| view.turn() == turn)
            && self
                .tool_results
                .is_none_or(|count| view.tool_results == count)
            && text_has(&self.system_contains, &|| view.system_text())
            && text_has(&self.contains, &|| view.text())
            && text_has(&self.first_user_contains, &|| view.first_user_text())
            && text_has(&self.last_contains, &|| view.last_text())
            && self
                .not_contains
                .as_deref()
                .is_none_or(|needle| !view.text().contains(needle))
    }
}

/// What the server answers.
///
/// Serialised externally tagged in snake_case: `{"message": {"text": "hi"}}`,
/// `{"error": {"status": 429, "message": "slow down", "retry_after": 1}}`, `"hang"`,
/// `"endless_stream"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// A normal model answer: optional text, then tool calls (in that order).
    Message {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
        /// None = computed from the request and reply sizes (see the crate docs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// A provider-shaped error body with this HTTP status, and a `retry-after` header if set.
    Error {
        status: u16,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Accept the request and never answer (until the server shuts down).
    Hang,
    /// Start a stream and send keep-alives forever (until the server shuts down). Behaves like
    /// `Hang` on a non-streaming request.
    EndlessStream,
}

impl Reply {
    /// A plain text answer that ends the turn.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Message {
            text: Some(text.into()),
            tool_calls: Vec::new(),
            usage: None,
        }
    }

    /// An answer that only calls tools.
    pub fn tool_calls(tool_calls: Vec<ToolCall>) -> Reply {
        Reply::Message {
            text: None,
            tool_calls,
            usage: None,
        }
    }

    /// An answer that calls one tool.
    pub fn tool_call(name: impl Into<String>, input: serde_json::Value) -> Reply {
        Reply::tool_calls(vec![ToolCall::new(name, input)])
    }

    /// A provider-shaped error.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::Error {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A tool call in a scripted answer.
///
/// On the Responses API a string `input` becomes a `custom_tool_call` (Codex's freeform
/// `apply_patch`); any other input becomes a `function_call` with the JSON as `arguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// None = a fresh unique id (`toolu_...` for Anthropic, `call_...` for OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default = "empty_object")]
    pub input: serde_json::Value,
    /// The Responses API's tool namespace (Codex puts the MCP tools a tool search found in
    /// one, `mcp__<server>`); other APIs have none and ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl ToolCall {
    pub fn new(name: impl Into<String>, input: serde_json::Value) -> ToolCall {
        ToolCall {
            id: None,
            name: name.into(),
            input,
            namespace: None,
        }
    }

    /// The call of a tool in a Responses API namespace.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> ToolCall {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn with_id(mut self, id: impl Into<String>) -> ToolCall {
        self.id = Some(id.into());
        self
    }
}

/// Token figures reported to the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn script_json_round_trips() {
        let text = r#"{"rules": [
            {"name": "plan", "when": {"turn": 0, "has_tools": true},
             "reply": {"message": {"tool_calls": [{"name": "Write", "input": {"file_path": "a"}}]}},
             "times": 1},
            {"name": "slow", "reply": {"error": {"status": 429, "message": "busy", "retry_after": 2}}},
            {"name": "stuck", "reply": "hang"},
            {"name": "ping", "reply": "endless_stream"}
        ]}"#;
        let script = Script::from_json(text).unwrap();
        assert_eq!(script.rules.len(), 4);
        assert_eq!(script.rules[0].when.turn, Some(0));
        assert_eq!(script.rules[0].times, Some(1));
        assert_eq!(
            script.rules[0].reply,
            Reply::tool_call("Write", json!({"file_path": "a"}))
        );
        assert_eq!(script.rules[2].reply, Reply::Hang);
        assert_eq!(script.rules[3].reply, Reply::EndlessStream);
        let again: Script = serde_json::from_value(serde_json::to_value(&script).unwrap()).unwrap();
        assert_eq!(again, script);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        for bad in [
            r#"{"rules": [{"name": "a", "reply": "hang", "oops": 1}]}"#,
            r#"{"rules": [{"name": "a", "when": {"tunr": 1}, "reply": "hang"}]}"#,
            r#"{"rules": [{"name": "a", "reply": {"message": {"txt": "x"}}}]}"#,
            r#"{"rules": [{"name": "a", "reply": {"message": {"tool_calls": [{"name": "x", "args": {}}]}}}]}"#,
        ] {
            assert!(Script::from_json(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn select_skips_exhausted_and_failing_rules() {
        let script = Script::new(vec![
            Rule::new(
                "first",
                Match {
                    turn: Some(0),
                    ..Match::default()
                },
                Reply::text("a"),
            )
            .times(1),
            Rule::new(
                "tools",
                Match {
                    has_tools: Some(true),
                    ..Match::default()
                },
                Reply::text("b"),
            ),
            Rule::new("rest", Match::default(), Reply::text("c")),
        ]);
        let view = RequestView::default();
        assert_eq!(script.select(&view, &[]), Some(0));
        assert_eq!(script.select(&view, &[1]), Some(2));
    }
}
