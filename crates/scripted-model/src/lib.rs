//! The scripted model server: impersonates model providers on 127.0.0.1 so tests (and the demo
//! model of `codemill demo`) can drive real agent CLIs and codemill's own agent loop offline.
//!
//! Endpoints:
//! - Anthropic Messages `POST /v1/messages` (query such as `?beta=true` ignored), SSE when
//!   `"stream": true`, the Messages JSON object otherwise;
//! - OpenAI Chat Completions `POST /v1/chat/completions` (SSE or JSON);
//! - OpenAI Responses `POST /v1/responses` or `/responses` (SSE as Codex reads it, or JSON);
//! - Gemini `POST /v1beta/models/{model}:streamGenerateContent` / `:generateContent`;
//! - `HEAD /` and `GET /` answer 200 (Claude Code's preconnect); other paths 404.
//!
//! Answers are chosen by content, not order: the first [`Rule`] of the [`Script`] whose
//! [`Match`] holds on the normalised request ([`RequestView`]) and whose `times` is not used up
//! answers. A model request no rule matches gets a provider-shaped 400 error whose message
//! starts with `scripted model server: no rule matched`, and shows in
//! [`ModelServer::unmatched`]. Every request is recorded ([`ModelServer::requests`]).
//!
//! # Script format
//! Scripts derive serde (unknown fields are rejected), so they can be written in JSON or TOML.
//! [`Reply`] is externally tagged in snake_case: `{"message": {"text", "tool_calls", "usage"}}`,
//! `{"error": {"status", "message", "retry_after"}}`, `"hang"`, `"endless_stream"`. A two-turn
//! conversation that writes a file and then reports:
//!
//! ```json
//! {"rules": [
//!   {"name": "write", "when": {"first_user_contains": "ISSUE-1", "turn": 0},
//!    "reply": {"message": {"text": "Creating the file.", "tool_calls": [
//!      {"name": "Write", "input": {"file_path": "hello.txt", "content": "hi\n"}}]}}},
//!   {"name": "done", "when": {"first_user_contains": "ISSUE-1", "tool_results": 1},
//!    "reply": {"message": {"text": "Done: hello.txt created."}}}
//! ]}
//! ```
//!
//! # Usage figures
//! A reply without `usage` reports deterministic figures: input tokens = bytes of the JSON of
//! the request's prompt fields (messages/input/contents, system/instructions, tools) / 4, output
//! tokens = bytes of the reply text plus tool-input JSON / 4, both rounded up and at least 1.
//!
//! # Tool calls
//! Tool calls without an id get a fresh unique one (`toolu_...` on Anthropic, `call_...`
//! elsewhere). On the Responses API a string `input` becomes a `custom_tool_call` (Codex's
//! `apply_patch`), anything else a `function_call`.

mod anthropic;
mod gemini;
mod openai;
mod reply;
mod script;
mod server;
pub mod view;

pub use script::{Api, Match, Reply, Rule, Script, ToolCall, Usage};
pub use server::{ModelServer, NO_ANSWER, RecordedRequest};
pub use view::{RequestView, Role, ViewMessage};
