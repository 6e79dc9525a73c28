//! Atlassian Document Format (ADF) ↔ Markdown: how codemill reads Jira Cloud's rich text (issue
//! descriptions, comments, rich custom fields) and writes its own notes.
//!
//! Reading is lossy by design (colours, layouts and panels' kinds have no Markdown form); the
//! Markdown is for agents and people, so text is not escaped. Writing covers the Markdown codemill
//! produces and never panics: whatever the input, the result is a valid `doc` (no empty text
//! nodes, only children ADF allows in each container), and nesting deeper than [`MAX_DEPTH`] is
//! kept as plain text rather than recursed into.

mod from_markdown;
mod inline;
mod to_markdown;

#[cfg(test)]
mod tests;

pub use from_markdown::markdown_to_adf;
pub use to_markdown::{adf_to_markdown, plain_text};

use serde_json::Value;

/// Deepest nesting of quotes, lists and emphasis followed, both ways (keeps hostile input from
/// exhausting the stack).
const MAX_DEPTH: usize = 24;

/// Longest link text or URL looked for, so a stray `[` cannot make parsing quadratic.
const MAX_LINK_SCAN: usize = 600;

fn node_type(node: &Value) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

fn str_field<'a>(node: &'a Value, field: &str) -> &'a str {
    node.get(field).and_then(Value::as_str).unwrap_or("")
}

fn children(node: &Value) -> &[Value] {
    node.get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
