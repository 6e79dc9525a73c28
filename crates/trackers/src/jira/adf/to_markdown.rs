//! ADF → Markdown: blocks, lists, tables and marked text as the Markdown an agent or a person
//! reads; what Markdown cannot show (colours, layouts, panel kinds) is dropped.

use serde_json::Value;

use super::{MAX_DEPTH, children, node_type, str_field};

/// Jira's rich text as Markdown. A string is returned as is (webhook comment bodies and plain
/// custom fields are already text); `null` is empty.
pub fn adf_to_markdown(doc: &Value) -> String {
    let out = match doc {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(_) if node_type(doc) == "doc" => blocks(children(doc), 0),
        Value::Object(_) => block(doc, 0),
        Value::Array(nodes) => blocks(nodes, 0),
        other => other.to_string(),
    };
    out.trim_end().to_string()
}

/// Every piece of text in an ADF document, blocks on their own lines: what marker look-ups
/// search (marks and node boundaries never split a marker here).
pub fn plain_text(doc: &Value) -> String {
    fn walk(node: &Value, out: &mut String, depth: usize) {
        // serde_json stops parsing at 128 levels; deeper values can only be built in code.
        if depth > 256 {
            return;
        }
        match node {
            Value::String(s) => out.push_str(s),
            Value::Array(nodes) => nodes.iter().for_each(|n| walk(n, out, depth + 1)),
            Value::Object(_) => {
                match node_type(node) {
                    "text" => out.push_str(str_field(node, "text")),
                    "hardBreak" => out.push('\n'),
                    "mention" | "emoji" | "status" => out.push_str(attr_str(node, "text")),
                    _ => {}
                }
                for child in children(node) {
                    walk(child, out, depth + 1);
                }
                if is_block(node_type(node)) && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(doc, &mut out, 0);
    out
}

fn attr_str<'a>(node: &'a Value, attr: &str) -> &'a str {
    node.pointer(&format!("/attrs/{attr}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn is_block(kind: &str) -> bool {
    matches!(
        kind,
        "paragraph"
            | "heading"
            | "codeBlock"
            | "blockquote"
            | "panel"
            | "rule"
            | "bulletList"
            | "orderedList"
            | "listItem"
            | "taskList"
            | "taskItem"
            | "decisionList"
            | "decisionItem"
            | "table"
            | "tableRow"
            | "tableHeader"
            | "tableCell"
            | "mediaSingle"
            | "mediaGroup"
            | "expand"
            | "nestedExpand"
            | "blockCard"
            | "embedCard"
            | "layoutSection"
            | "layoutColumn"
            | "bodiedExtension"
            | "extension"
    )
}

fn is_inline(kind: &str) -> bool {
    matches!(
        kind,
        "text"
            | "hardBreak"
            | "mention"
            | "emoji"
            | "inlineCard"
            | "date"
            | "status"
            | "placeholder"
            | "mediaInline"
            | "inlineExtension"
    )
}

/// Blocks separated by blank lines; empty renderings dropped.
fn blocks(nodes: &[Value], depth: usize) -> String {
    let parts: Vec<String> = nodes
        .iter()
        .map(|n| block(n, depth))
        .filter(|s| !s.trim().is_empty())
        .collect();
    parts.join("\n\n")
}

fn block(node: &Value, depth: usize) -> String {
    if depth > MAX_DEPTH {
        return plain_text(node).trim().to_string();
    }
    let kind = node_type(node);
    match kind {
        "paragraph" => inlines(children(node)),
        "heading" => {
            let level = node
                .pointer("/attrs/level")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 6) as usize;
            format!("{} {}", "#".repeat(level), inlines(children(node)))
        }
        "bulletList" | "orderedList" | "taskList" | "decisionList" => list(node, depth),
        "codeBlock" => {
            let code: String = children(node)
                .iter()
                .map(|t| str_field(t, "text"))
                .collect();
            let fence = "`".repeat((longest_run(&code, '`') + 1).max(3));
            let language = attr_str(node, "language");
            format!(
                "{fence}{language}\n{}\n{fence}",
                code.trim_end_matches('\n')
            )
        }
        // A panel's kind (info, warning, …) has no Markdown form; a quote keeps it set apart.
        "blockquote" | "panel" => quote(&blocks(children(node), depth + 1)),
        "rule" => "---".to_string(),
        "table" => table(node, depth),
        "mediaSingle" | "mediaGroup" => {
            let n = children(node)
                .iter()
                .filter(|c| node_type(c) == "media")
                .count()
                .max(1);
            vec!["[attachment]"; n].join(" ")
        }
        "media" => "[attachment]".to_string(),
        "expand" | "nestedExpand" => {
            let title = attr_str(node, "title");
            let body = blocks(children(node), depth + 1);
            if title.is_empty() {
                body
            } else {
                format!("**{title}**\n\n{body}")
            }
        }
        "blockCard" | "embedCard" => attr_str(node, "url").to_string(),
        _ if is_inline(kind) => inlines(std::slice::from_ref(node)),
        // Unknown or layout nodes: whatever they hold, as blocks or as text.
        _ => {
            let content = children(node);
            if content.is_empty() {
                attr_str(node, "text").to_string()
            } else if content.iter().all(|c| is_inline(node_type(c))) {
                inlines(content)
            } else {
                blocks(content, depth + 1)
            }
        }
    }
}

fn quote(body: &str) -> String {
    body.lines()
        .map(|l| {
            if l.is_empty() {
                ">".to_string()
            } else {
                format!("> {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn list(node: &Value, depth: usize) -> String {
    let kind = node_type(node);
    let mut number = node
        .pointer("/attrs/order")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let mut items = Vec::new();
    for item in children(node) {
        let (marker, body) = match node_type(item) {
            // Task and decision items hold inline content directly.
            "taskItem" => {
                let done = attr_str(item, "state").eq_ignore_ascii_case("DONE");
                let mark = if done { "- [x] " } else { "- [ ] " };
                (mark.to_string(), item_body(item, depth))
            }
            "decisionItem" => ("- ".to_string(), item_body(item, depth)),
            _ if kind == "orderedList" => {
                let m = format!("{number}. ");
                number += 1;
                (m, item_body(item, depth))
            }
            _ => ("- ".to_string(), item_body(item, depth)),
        };
        let pad = " ".repeat(if marker.starts_with("- [") {
            2
        } else {
            marker.len()
        });
        let mut text = String::new();
        for (i, line) in body.lines().enumerate() {
            if i == 0 {
                text.push_str(&marker);
                text.push_str(line);
            } else {
                text.push('\n');
                if !line.is_empty() {
                    text.push_str(&pad);
                    text.push_str(line);
                }
            }
        }
        if body.is_empty() {
            text.push_str(marker.trim_end());
        }
        items.push(text);
    }
    items.join("\n")
}

/// A list item's blocks: a nested list follows its paragraph directly, other blocks after a
/// blank line.
fn item_body(item: &Value, depth: usize) -> String {
    let content = children(item);
    if content.iter().all(|c| is_inline(node_type(c))) {
        return inlines(content);
    }
    let mut out = String::new();
    for child in content {
        let text = block(child, depth + 1);
        if text.trim().is_empty() {
            continue;
        }
        if !out.is_empty() {
            let nested = matches!(
                node_type(child),
                "bulletList" | "orderedList" | "taskList" | "decisionList"
            );
            out.push_str(if nested { "\n" } else { "\n\n" });
        }
        out.push_str(&text);
    }
    out
}

fn table(node: &Value, depth: usize) -> String {
    let rows: Vec<Vec<String>> = children(node)
        .iter()
        .filter(|r| node_type(r) == "tableRow")
        .map(|row| {
            children(row)
                .iter()
                .map(|cell| {
                    let text = blocks(children(cell), depth + 1);
                    text.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .replace('|', "\\|")
                })
                .collect()
        })
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return String::new();
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for i in 0..width {
            s.push(' ');
            s.push_str(cells.get(i).map(String::as_str).unwrap_or(""));
            s.push_str(" |");
        }
        s
    };
    let mut out = vec![line(&rows[0])];
    out.push(format!("|{}", " --- |".repeat(width)));
    out.extend(rows[1..].iter().map(|r| line(r)));
    out.join("\n")
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        if ch == c {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// Inline nodes as Markdown; neighbouring text nodes with the same marks are joined first so
/// emphasis is not split into `**a****b**`.
fn inlines(nodes: &[Value]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nodes.len() {
        let node = &nodes[i];
        if node_type(node) == "text" {
            let marks = node.get("marks");
            let mut text = str_field(node, "text").to_string();
            let mut j = i + 1;
            while j < nodes.len()
                && node_type(&nodes[j]) == "text"
                && nodes[j].get("marks") == marks
            {
                text.push_str(str_field(&nodes[j], "text"));
                j += 1;
            }
            out.push_str(&marked(&text, marks));
            i = j;
            continue;
        }
        out.push_str(&inline_node(node));
        i += 1;
    }
    out
}

fn inline_node(node: &Value) -> String {
    match node_type(node) {
        "hardBreak" => "\n".to_string(),
        "mention" => {
            let text = attr_str(node, "text");
            if text.is_empty() {
                format!("@{}", attr_str(node, "id"))
            } else if text.starts_with('@') {
                text.to_string()
            } else {
                format!("@{text}")
            }
        }
        "emoji" => {
            let text = attr_str(node, "text");
            if text.is_empty() {
                attr_str(node, "shortName").to_string()
            } else {
                text.to_string()
            }
        }
        "inlineCard" => attr_str(node, "url").to_string(),
        "date" => {
            let ms = attr_str(node, "timestamp").parse::<i64>().ok();
            ms.and_then(chrono::DateTime::from_timestamp_millis)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        }
        "status" => attr_str(node, "text").to_string(),
        "mediaInline" => "[attachment]".to_string(),
        "placeholder" => String::new(),
        _ => plain_text(node).trim_end().to_string(),
    }
}

/// One run of text with its marks. Whitespace stays outside the delimiters (`** a**` is not
/// bold in Markdown).
fn marked(text: &str, marks: Option<&Value>) -> String {
    let marks: &[Value] = marks.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let has = |t: &str| marks.iter().any(|m| node_type(m) == t);
    let href = marks
        .iter()
        .find(|m| node_type(m) == "link")
        .map(|m| attr_str(m, "href"))
        .filter(|h| !h.is_empty());
    if text.is_empty() {
        return String::new();
    }
    if has("code") {
        let span = code_span(text);
        return match href {
            Some(h) => format!("[{span}]({h})"),
            None => span,
        };
    }
    let core = text.trim();
    if core.is_empty() {
        return text.to_string();
    }
    let start = text.len() - text.trim_start().len();
    let lead = &text[..start];
    let trail = &text[start + core.len()..];
    let mut s = core.to_string();
    if has("strike") {
        s = format!("~~{s}~~");
    }
    if has("em") {
        s = format!("*{s}*");
    }
    if has("strong") {
        s = format!("**{s}**");
    }
    if let Some(h) = href {
        s = format!("[{s}]({h})");
    }
    format!("{lead}{s}{trail}")
}

fn code_span(text: &str) -> String {
    let ticks = "`".repeat(longest_run(text, '`') + 1);
    if text.starts_with('`') || text.ends_with('`') {
        format!("{ticks} {text} {ticks}")
    } else {
        format!("{ticks}{text}{ticks}")
    }
}
