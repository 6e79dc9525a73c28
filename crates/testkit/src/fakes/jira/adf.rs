//! Atlassian Document Format on the fake's side: plain text as ADF and back, and the checks
//! Jira's ADF validator and rich-text limit apply to what codemill writes.

use serde_json::{Value, json};

/// Plain text as an ADF document: one paragraph per non-empty line.
pub fn adf_text(text: &str) -> Value {
    let content: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json!({"type": "paragraph", "content": [{"type": "text", "text": l}]}))
        .collect();
    json!({"type": "doc", "version": 1, "content": content})
}

/// Every text in an ADF value, blocks on their own lines.
pub fn adf_plain_text(doc: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => out.push_str(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => {
                let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "text" => {
                        if let Some(t) = o.get("text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    "hardBreak" => out.push('\n'),
                    "mention" | "emoji" => {
                        if let Some(t) = v.pointer("/attrs/text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    _ => {}
                }
                if let Some(c) = o.get("content") {
                    walk(c, out);
                }
                if matches!(kind, "paragraph" | "heading" | "codeBlock") {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(doc, &mut out);
    out
}

pub(super) const TOO_LONG: &str =
    "The entered text is too long. It exceeds the allowed limit of 32,767 characters.";

/// Jira's limit on rich text, counted over the document's JSON.
pub(super) fn too_long(doc: &Value) -> bool {
    serde_json::to_string(doc).map_or(true, |s| s.chars().count() > 32_767)
}

pub(super) fn adf_message(detail: &str) -> String {
    format!(
        "Operation value must be an Atlassian Document (see the Atlassian Document Format): {detail}"
    )
}

const BLOCKS: &[&str] = &[
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "taskList",
    "decisionList",
    "codeBlock",
    "blockquote",
    "panel",
    "rule",
    "table",
    "mediaSingle",
    "mediaGroup",
    "expand",
    "nestedExpand",
    "blockCard",
    "embedCard",
    "layoutSection",
    "extension",
    "bodiedExtension",
];
const INLINES: &[&str] = &[
    "text",
    "hardBreak",
    "mention",
    "emoji",
    "inlineCard",
    "date",
    "status",
    "placeholder",
    "mediaInline",
    "inlineExtension",
];
const MARKS: &[&str] = &[
    "code",
    "em",
    "link",
    "strike",
    "strong",
    "subsup",
    "textColor",
    "underline",
    "backgroundColor",
    "border",
    "annotation",
];

/// Check a document the way Jira's ADF validator does for what codemill writes.
pub fn validate_adf(doc: &Value) -> Result<(), String> {
    let Some(obj) = doc.as_object() else {
        return Err("the document is not an object".into());
    };
    if obj.get("type").and_then(Value::as_str) != Some("doc") {
        return Err("the root node's type must be \"doc\"".into());
    }
    if obj.get("version").and_then(Value::as_u64) != Some(1) {
        return Err("the root node's version must be 1".into());
    }
    let Some(content) = obj.get("content").and_then(Value::as_array) else {
        return Err("the root node must have a content array".into());
    };
    for node in content {
        validate_node(node, "doc", 0)?;
    }
    Ok(())
}

fn validate_node(node: &Value, parent: &str, depth: usize) -> Result<(), String> {
    if depth > 100 {
        return Err("the document is nested too deeply".into());
    }
    let Some(obj) = node.as_object() else {
        return Err(format!("a child of {parent} is not an object"));
    };
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err(format!("a child of {parent} has no type"));
    };
    let content: &[Value] = match obj.get("content") {
        None => &[],
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("{kind}: content must be an array")),
    };
    let kinds: Vec<&str> = content
        .iter()
        .map(|c| c.get("type").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let all = |allowed: &[&str]| kinds.iter().all(|k| allowed.contains(k));
    let ok = match kind {
        "text" => {
            let text = obj.get("text").and_then(Value::as_str).unwrap_or("");
            if text.is_empty() {
                return Err(format!("empty text node in {parent}"));
            }
            validate_marks(obj.get("marks"))?;
            true
        }
        "paragraph" | "heading" => {
            if kind == "heading" {
                let level = node.pointer("/attrs/level").and_then(Value::as_u64);
                if !level.is_some_and(|l| (1..=6).contains(&l)) {
                    return Err("heading: attrs.level must be 1 to 6".into());
                }
            }
            all(INLINES)
        }
        "codeBlock" => {
            for c in content {
                if c.get("marks")
                    .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()))
                {
                    return Err("codeBlock: text may not have marks".into());
                }
            }
            all(&["text"])
        }
        "bulletList" | "orderedList" => !kinds.is_empty() && all(&["listItem"]),
        "listItem" => {
            !kinds.is_empty()
                && matches!(kinds[0], "paragraph" | "codeBlock" | "mediaSingle")
                && all(&[
                    "paragraph",
                    "bulletList",
                    "orderedList",
                    "codeBlock",
                    "mediaSingle",
                    "taskList",
                ])
        }
        "blockquote" => {
            !kinds.is_empty()
                && all(&[
                    "paragraph",
                    "bulletList",
                    "orderedList",
                    "codeBlock",
                    "mediaGroup",
                    "mediaSingle",
                ])
        }
        "rule" | "hardBreak" | "mention" | "emoji" | "date" | "status" | "inlineCard"
        | "placeholder" | "media" | "mediaInline" => content.is_empty(),
        "table" => !kinds.is_empty() && all(&["tableRow"]),
        "tableRow" => !kinds.is_empty() && all(&["tableHeader", "tableCell"]),
        "tableHeader" | "tableCell" | "panel" | "expand" | "nestedExpand" | "layoutColumn"
        | "bodiedExtension" => all(BLOCKS),
        _ if BLOCKS.contains(&kind) || INLINES.contains(&kind) => true,
        "taskItem" | "decisionItem" | "layoutSection" => true,
        other => return Err(format!("unknown node type {other:?} in {parent}")),
    };
    if !ok {
        return Err(format!("{kind} may not contain [{}]", kinds.join(", ")));
    }
    if matches!(parent, "doc") && !BLOCKS.contains(&kind) {
        return Err(format!("{kind} is not a block node (in doc)"));
    }
    for c in content {
        validate_node(c, kind, depth + 1)?;
    }
    Ok(())
}

fn validate_marks(marks: Option<&Value>) -> Result<(), String> {
    let Some(marks) = marks else { return Ok(()) };
    let Some(marks) = marks.as_array() else {
        return Err("marks must be an array".into());
    };
    let mut seen: Vec<&str> = Vec::new();
    for m in marks {
        let Some(kind) = m.get("type").and_then(Value::as_str) else {
            return Err("a mark has no type".into());
        };
        if !MARKS.contains(&kind) {
            return Err(format!("unknown mark {kind:?}"));
        }
        if seen.contains(&kind) {
            return Err(format!("mark {kind:?} twice on one text node"));
        }
        if kind == "link"
            && m.pointer("/attrs/href")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Err("link mark without attrs.href".into());
        }
        seen.push(kind);
    }
    if seen.contains(&"code")
        && seen
            .iter()
            .any(|k| !matches!(*k, "code" | "link" | "annotation"))
    {
        return Err("the code mark may only be combined with link".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn adf_validation_catches_what_jira_refuses() {
        assert!(validate_adf(&adf_text("hi")).is_ok());
        assert!(validate_adf(&json!({"type": "paragraph"})).is_err());
        assert!(
            validate_adf(
                &json!({"type": "doc", "version": 1, "content": [{"type": "text", "text": "x"}]})
            )
            .is_err()
        );
        assert!(validate_adf(&json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]})).is_err());
        assert!(validate_adf(&json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x", "marks": [{"type": "code"}, {"type": "strong"}]}]}]})).is_err());
    }
}
