//! Atlassian Document Format (ADF) ↔ Markdown: how codemill reads Jira Cloud's rich text (issue
//! descriptions, comments, rich custom fields) and writes its own notes.
//!
//! Reading is lossy by design (colours, layouts and panels' kinds have no Markdown form); the
//! Markdown is for agents and people, so text is not escaped. Writing covers the Markdown codemill
//! produces and never panics: whatever the input, the result is a valid `doc` (no empty text
//! nodes, only children ADF allows in each container), and nesting deeper than [`MAX_DEPTH`] is
//! kept as plain text rather than recursed into.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// Deepest nesting of quotes, lists and emphasis followed, both ways (keeps hostile input from
/// exhausting the stack).
const MAX_DEPTH: usize = 24;

/// Longest link text or URL looked for, so a stray `[` cannot make parsing quadratic.
const MAX_LINK_SCAN: usize = 600;

// ───────────────────────────── ADF → Markdown ─────────────────────────────

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

fn node_type(node: &Value) -> &str {
    node.get("type").and_then(Value::as_str).unwrap_or("")
}

fn str_field<'a>(node: &'a Value, field: &str) -> &'a str {
    node.get(field).and_then(Value::as_str).unwrap_or("")
}

fn attr_str<'a>(node: &'a Value, attr: &str) -> &'a str {
    node.pointer(&format!("/attrs/{attr}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn children(node: &Value) -> &[Value] {
    node.get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
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

// ───────────────────────────── Markdown → ADF ─────────────────────────────

/// Markdown as an ADF document (`{"type":"doc","version":1,"content":[...]}`).
///
/// Covers ATX headings, paragraphs (a line break inside one stays a line break), bullet and
/// ordered lists (nested), fenced code with a language, blockquotes, horizontal rules, pipe
/// tables, inline code, bold, italic, strikethrough, links and bare URLs. HTML comments are
/// dropped, as a Markdown renderer would hide them.
pub fn markdown_to_adf(markdown: &str) -> Value {
    let text = markdown.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let content = parse_blocks(&lines, 0, true);
    json!({"type": "doc", "version": 1, "content": content})
}

/// Columns of leading whitespace (a tab counts four).
fn indent_of(line: &str) -> usize {
    let mut cols = 0;
    for c in line.chars() {
        match c {
            ' ' => cols += 1,
            '\t' => cols += 4,
            _ => break,
        }
    }
    cols
}

/// `line` without up to `cols` columns of leading whitespace.
fn strip_indent(line: &str, cols: usize) -> &str {
    let mut seen = 0;
    for (i, c) in line.char_indices() {
        if seen >= cols {
            return &line[i..];
        }
        match c {
            ' ' => seen += 1,
            '\t' => seen += 4,
            _ => return &line[i..],
        }
    }
    ""
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

struct Fence {
    ch: char,
    len: usize,
    language: String,
}

fn fence_open(line: &str) -> Option<Fence> {
    if indent_of(line) > 3 {
        return None;
    }
    let t = line.trim_start();
    let ch = t.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = t.chars().take_while(|c| *c == ch).count();
    if len < 3 {
        return None;
    }
    let info = t[len..].trim();
    // A backtick fence's info string may not hold backticks (that is inline code).
    if ch == '`' && info.contains('`') {
        return None;
    }
    let language = info.split_whitespace().next().unwrap_or("").to_string();
    Some(Fence { ch, len, language })
}

fn fence_closes(line: &str, fence: &Fence) -> bool {
    let t = line.trim();
    indent_of(line) <= 3
        && t.chars().take_while(|c| *c == fence.ch).count() >= fence.len
        && t.chars().all(|c| c == fence.ch)
}

fn atx_heading(line: &str) -> Option<(usize, &str)> {
    if indent_of(line) > 3 {
        return None;
    }
    let t = line.trim_start();
    let level = t.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    // Closing hashes are decoration.
    let rest = rest.trim();
    let without = rest.trim_end_matches('#');
    let rest = if without.is_empty() || without.ends_with([' ', '\t']) {
        without.trim_end()
    } else {
        rest
    };
    Some((level, rest))
}

fn is_rule(line: &str) -> bool {
    if indent_of(line) > 3 {
        return false;
    }
    let t: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(first) = t.chars().next() else {
        return false;
    };
    matches!(first, '-' | '*' | '_') && t.len() >= 3 && t.chars().all(|c| c == first)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ListMarker {
    indent: usize,
    ordered: bool,
    start: u64,
    /// Column where the item's text starts.
    content_col: usize,
    /// Byte offset of the item's text in the line.
    text_at: usize,
}

fn list_marker(line: &str) -> Option<ListMarker> {
    let indent = indent_of(line);
    let lead = line.len() - line.trim_start().len();
    let t = &line[lead..];
    let (ordered, start, marker_len) = match t.chars().next()? {
        '-' | '*' | '+' => (false, 1, 1),
        c if c.is_ascii_digit() => {
            let digits = t.chars().take_while(char::is_ascii_digit).count();
            if digits > 9 || !matches!(t[digits..].chars().next(), Some('.' | ')')) {
                return None;
            }
            (true, t[..digits].parse().ok()?, digits + 1)
        }
        _ => return None,
    };
    let after = &t[marker_len..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let spaces = after.len() - after.trim_start().len();
    let (gap, text_at) = if after.trim().is_empty() {
        (1, line.len())
    } else if spaces > 4 {
        // Deeply indented text after the marker: the item starts one space in.
        (1, lead + marker_len + 1)
    } else {
        (spaces, lead + marker_len + spaces)
    };
    Some(ListMarker {
        indent,
        ordered,
        start,
        content_col: indent + marker_len + gap,
        text_at,
    })
}

/// Whether `line` starts a block other than a paragraph (so it ends a paragraph).
fn starts_block(line: &str, depth: usize) -> bool {
    if is_blank(line) {
        return true;
    }
    if fence_open(line).is_some() || atx_heading(line).is_some() || is_rule(line) {
        return true;
    }
    if depth >= MAX_DEPTH {
        return false;
    }
    if line.trim_start().starts_with('>') {
        return true;
    }
    // Only a list starting at 1 interrupts a paragraph (`2024. was a good year` does not).
    match list_marker(line) {
        Some(m) if !m.ordered => m.text_at < line.len(),
        Some(m) => m.start == 1 && m.text_at < line.len(),
        None => false,
    }
}

fn parse_blocks(lines: &[&str], depth: usize, top: bool) -> Vec<Value> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_blank(line) {
            i += 1;
            continue;
        }
        if let Some(fence) = fence_open(line) {
            let indent = indent_of(line);
            let mut code = Vec::new();
            i += 1;
            while i < lines.len() && !fence_closes(lines[i], &fence) {
                code.push(strip_indent(lines[i], indent));
                i += 1;
            }
            i += 1; // the closing fence, or past the end
            out.push(code_block(&code.join("\n"), &fence.language));
            continue;
        }
        if let Some((level, text)) = atx_heading(line) {
            out.push(json!({"type": "heading", "attrs": {"level": level}, "content": inline_nodes(&[text], depth)}));
            i += 1;
            continue;
        }
        if is_rule(line) {
            out.push(json!({"type": "rule"}));
            i += 1;
            continue;
        }
        if depth < MAX_DEPTH && line.trim_start().starts_with('>') {
            let mut inner = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('>') {
                let t = lines[i].trim_start();
                let t = &t[1..];
                inner.push(t.strip_prefix(' ').unwrap_or(t));
                i += 1;
            }
            let content = sanitize(parse_blocks(&inner, depth + 1, false), Container::Quote);
            out.push(json!({"type": "blockquote", "content": content}));
            continue;
        }
        if depth < MAX_DEPTH
            && let Some(marker) = list_marker(line)
        {
            let (list, next) = parse_list(lines, i, marker, depth);
            out.push(list);
            i = next;
            continue;
        }
        if top && let Some((table, next)) = parse_table(lines, i, depth) {
            out.push(table);
            i = next;
            continue;
        }
        let start = i;
        i += 1;
        while i < lines.len() && !starts_block(lines[i], depth) {
            i += 1;
        }
        out.push(paragraph(&lines[start..i], depth));
    }
    out
}

fn code_block(code: &str, language: &str) -> Value {
    let mut node = Map::new();
    node.insert("type".into(), json!("codeBlock"));
    if !language.is_empty() {
        node.insert("attrs".into(), json!({"language": language}));
    }
    if !code.is_empty() {
        node.insert("content".into(), json!([{"type": "text", "text": code}]));
    }
    Value::Object(node)
}

fn paragraph(lines: &[&str], depth: usize) -> Value {
    let trimmed: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    json!({"type": "paragraph", "content": inline_nodes(&trimmed, depth)})
}

/// The list starting at `lines[start]` and the index after it.
fn parse_list(lines: &[&str], start: usize, first: ListMarker, depth: usize) -> (Value, usize) {
    let base = first.indent;
    let same_list =
        |m: &ListMarker| m.ordered == first.ordered && m.indent < first.content_col.max(base + 1);
    let mut items: Vec<Vec<String>> = Vec::new();
    let mut content_col = first.content_col;
    let mut i = start;
    while i < lines.len() {
        let line = lines[i];
        if let Some(m) = list_marker(line).filter(|m| m.indent <= base || same_list(m)) {
            if !same_list(&m) {
                break; // the other kind of list at this level: a new list
            }
            items.push(vec![line[m.text_at..].to_string()]);
            content_col = m.content_col;
            i += 1;
            continue;
        }
        let Some(item) = items.last_mut() else { break };
        if is_blank(line) {
            let Some(j) = (i + 1..lines.len()).find(|&j| !is_blank(lines[j])) else {
                break;
            };
            let next = lines[j];
            let continues = indent_of(next) > base
                || list_marker(next).is_some_and(|m| m.indent <= base && same_list(&m));
            if !continues {
                break;
            }
            item.push(String::new());
            i += 1;
            continue;
        }
        if indent_of(line) > base {
            item.push(strip_indent(line, content_col).to_string());
            i += 1;
            continue;
        }
        // A lazy continuation of the item's last paragraph.
        let last_blank = item.last().is_none_or(|l| l.trim().is_empty());
        if !last_blank && !starts_block(line, depth) {
            item.push(line.trim_start().to_string());
            i += 1;
            continue;
        }
        break;
    }
    let content: Vec<Value> = items
        .iter()
        .map(|item| {
            let refs: Vec<&str> = item.iter().map(String::as_str).collect();
            let blocks = sanitize(parse_blocks(&refs, depth + 1, false), Container::ListItem);
            json!({"type": "listItem", "content": blocks})
        })
        .collect();
    let list = if first.ordered {
        json!({"type": "orderedList", "attrs": {"order": first.start}, "content": content})
    } else {
        json!({"type": "bulletList", "content": content})
    };
    (list, i.max(start + 1))
}

fn table_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") {
        &t[..t.len() - 1]
    } else {
        t
    };
    let mut cells = vec![String::new()];
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                if let Some(s) = cells.last_mut() {
                    s.push('|');
                }
                chars.next();
            }
            '|' => cells.push(String::new()),
            _ => {
                if let Some(s) = cells.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

fn is_delimiter_row(line: &str) -> bool {
    let cells = table_cells(line);
    line.contains('-')
        && cells.iter().all(|c| {
            let c = c.trim_start_matches(':').trim_end_matches(':');
            !c.is_empty() && c.chars().all(|ch| ch == '-')
        })
}

fn parse_table(lines: &[&str], start: usize, depth: usize) -> Option<(Value, usize)> {
    let header = lines[start];
    let delimiter = lines.get(start + 1)?;
    if !header.contains('|') || !is_delimiter_row(delimiter) {
        return None;
    }
    let head = table_cells(header);
    let width = head.len();
    if table_cells(delimiter).len() != width {
        return None;
    }
    let cell = |kind: &str, text: &str| {
        json!({"type": kind, "attrs": {}, "content": [
            {"type": "paragraph", "content": inline_nodes(&[text], depth)}
        ]})
    };
    let row = |kind: &str, cells: &[String]| {
        let content: Vec<Value> = (0..width)
            .map(|i| cell(kind, cells.get(i).map(String::as_str).unwrap_or("")))
            .collect();
        json!({"type": "tableRow", "content": content})
    };
    let mut rows = vec![row("tableHeader", &head)];
    let mut i = start + 2;
    while i < lines.len() && !is_blank(lines[i]) && lines[i].contains('|') {
        rows.push(row("tableCell", &table_cells(lines[i])));
        i += 1;
    }
    let table = json!({"type": "table",
        "attrs": {"isNumberColumnEnabled": false, "layout": "default"},
        "content": rows});
    Some((table, i))
}

#[derive(Clone, Copy, PartialEq)]
enum Container {
    Quote,
    ListItem,
}

/// Keep only the children ADF allows in `container`: headings become bold paragraphs, nested
/// quotes are flattened, rules and tables become text or go.
fn sanitize(blocks: Vec<Value>, container: Container) -> Vec<Value> {
    let mut out = Vec::new();
    for b in blocks {
        match node_type(&b) {
            "paragraph" | "codeBlock" | "bulletList" | "orderedList" => out.push(b),
            "heading" => {
                let content: Vec<Value> = children(&b).iter().cloned().map(with_strong).collect();
                out.push(json!({"type": "paragraph", "content": content}));
            }
            "blockquote" => out.extend(sanitize(children(&b).to_vec(), container)),
            "rule" => {}
            _ => {
                let text = plain_text(&b);
                let text = text.trim();
                if !text.is_empty() {
                    out.push(
                        json!({"type": "paragraph", "content": [{"type": "text", "text": text}]}),
                    );
                }
            }
        }
    }
    let first_ok = out
        .first()
        .is_some_and(|b| matches!(node_type(b), "paragraph" | "codeBlock"));
    if (container == Container::ListItem && !first_ok) || out.is_empty() {
        out.insert(0, json!({"type": "paragraph", "content": []}));
    }
    out
}

fn with_strong(mut node: Value) -> Value {
    if node_type(&node) != "text" {
        return node;
    }
    let marks = node
        .get("marks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if marks
        .iter()
        .any(|m| matches!(node_type(m), "code" | "strong"))
    {
        return node;
    }
    let mut marks = marks;
    marks.push(json!({"type": "strong"}));
    if let Some(obj) = node.as_object_mut() {
        obj.insert("marks".into(), Value::Array(marks));
    }
    node
}

#[derive(Debug, Clone, PartialEq)]
enum Mark {
    Link(String),
    Em,
    Strong,
    Strike,
    Code,
}

#[derive(Debug)]
enum Piece {
    Text(String, Vec<Mark>),
    Break,
}

/// Inline ADF nodes for the lines of one paragraph; lines are joined by hard breaks.
fn inline_nodes(lines: &[&str], depth: usize) -> Vec<Value> {
    let mut pieces = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if n > 0 {
            pieces.push(Piece::Break);
        }
        // A trailing backslash is Markdown's explicit line break; the join makes it anyway.
        let line = line.strip_suffix('\\').unwrap_or(line);
        let chars: Vec<char> = line.chars().collect();
        Inline::new(&chars, depth).parse(&[], &mut pieces, 0);
    }
    to_nodes(pieces)
}

struct Inline<'a> {
    chars: &'a [char],
    base_depth: usize,
    /// Per delimiter, the position from which a search for its closer already failed: a later
    /// opener cannot find one either, so each kind is searched to the end at most once.
    /// Keyed by (delimiter, length, end of the range searched).
    failed: HashMap<(char, usize, usize), usize>,
}

impl<'a> Inline<'a> {
    fn new(chars: &'a [char], base_depth: usize) -> Inline<'a> {
        Inline {
            chars,
            base_depth,
            failed: HashMap::new(),
        }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn run(&self, i: usize, c: char) -> usize {
        self.chars[i..].iter().take_while(|&&x| x == c).count()
    }

    /// Parse `self.chars` with `marks` applied, into `out`.
    fn parse(&mut self, marks: &[Mark], out: &mut Vec<Piece>, depth: usize) {
        let end = self.chars.len();
        self.parse_range(0, end, marks, out, depth);
    }

    fn parse_range(
        &mut self,
        from: usize,
        to: usize,
        marks: &[Mark],
        out: &mut Vec<Piece>,
        depth: usize,
    ) {
        let nested = depth + self.base_depth < MAX_DEPTH;
        let in_link = marks.iter().any(|m| matches!(m, Mark::Link(_)));
        let mut buf = String::new();
        let flush = |buf: &mut String, out: &mut Vec<Piece>| {
            if !buf.is_empty() {
                out.push(Piece::Text(std::mem::take(buf), marks.to_vec()));
            }
        };
        let mut i = from;
        while i < to {
            let c = self.chars[i];
            match c {
                '\\' if i + 1 < to && self.chars[i + 1].is_ascii_punctuation() => {
                    buf.push(self.chars[i + 1]);
                    i += 2;
                }
                '`' => {
                    let n = self.run(i, '`').min(to - i);
                    match self.find_code_close(i + n, to, n) {
                        Some(close) => {
                            flush(&mut buf, out);
                            let raw: String = self.chars[i + n..close]
                                .iter()
                                .map(|&c| if c == '\n' { ' ' } else { c })
                                .collect();
                            let code = if raw.len() > 2
                                && raw.starts_with(' ')
                                && raw.ends_with(' ')
                                && !raw.trim().is_empty()
                            {
                                raw[1..raw.len() - 1].to_string()
                            } else {
                                raw
                            };
                            let mut m: Vec<Mark> = marks
                                .iter()
                                .filter(|m| matches!(m, Mark::Link(_)))
                                .cloned()
                                .collect();
                            m.push(Mark::Code);
                            out.push(Piece::Text(code, m));
                            i = close + n;
                        }
                        None => {
                            buf.extend(std::iter::repeat_n('`', n));
                            i += n;
                        }
                    }
                }
                '<' => {
                    if let Some(end) = self.html_comment_end(i, to) {
                        i = end;
                    } else if let Some((url, end)) = self.autolink(i, to).filter(|_| !in_link) {
                        flush(&mut buf, out);
                        push_link_text(out, &url, &url, marks);
                        i = end;
                    } else {
                        buf.push(c);
                        i += 1;
                    }
                }
                '[' | '!' if nested && !in_link => {
                    let open = if c == '!' { i + 1 } else { i };
                    match (self.at(open) == Some('['))
                        .then(|| self.link(open, to))
                        .flatten()
                    {
                        Some((text_end, url, end)) => {
                            flush(&mut buf, out);
                            let mut m = marks.to_vec();
                            m.push(Mark::Link(url.clone()));
                            let before = out.len();
                            self.parse_range(open + 1, text_end, &m, out, depth + 1);
                            if out.len() == before {
                                // `[](url)`: the URL is the text.
                                out.push(Piece::Text(url, m));
                            }
                            i = end;
                        }
                        None => {
                            buf.push(c);
                            i += 1;
                        }
                    }
                }
                '*' | '_' | '~' if nested => {
                    let run = self.run(i, c).min(to - i);
                    let len = match c {
                        '~' if run >= 2 => 2,
                        '~' => 0,
                        _ if run >= 2 => 2,
                        _ => 1,
                    };
                    let found = (len > 0)
                        .then(|| self.find_emphasis_close(i, to, c, len))
                        .flatten();
                    match found {
                        Some(close) => {
                            flush(&mut buf, out);
                            let mark = match (c, len) {
                                ('~', _) => Mark::Strike,
                                (_, 2) => Mark::Strong,
                                _ => Mark::Em,
                            };
                            let mut m = marks.to_vec();
                            m.push(mark);
                            self.parse_range(i + len, close, &m, out, depth + 1);
                            i = close + len;
                        }
                        None => {
                            buf.extend(std::iter::repeat_n(c, run));
                            i += run;
                        }
                    }
                }
                'h' if !in_link => match self.bare_url(i, to) {
                    Some(end) => {
                        flush(&mut buf, out);
                        let url: String = self.chars[i..end].iter().collect();
                        push_link_text(out, &url, &url, marks);
                        i = end;
                    }
                    None => {
                        buf.push(c);
                        i += 1;
                    }
                },
                _ => {
                    buf.push(c);
                    i += 1;
                }
            }
        }
        flush(&mut buf, out);
    }

    fn find_code_close(&mut self, from: usize, to: usize, n: usize) -> Option<usize> {
        let key = ('`', n, to);
        if self.failed.get(&key).is_some_and(|&p| p <= from) {
            return None;
        }
        let mut j = from;
        while j < to {
            if self.chars[j] == '`' {
                let run = self.run(j, '`');
                if run == n && j + run <= to {
                    return Some(j);
                }
                j += run;
            } else {
                j += 1;
            }
        }
        self.failed.insert(key, from);
        None
    }

    /// The closing delimiter of emphasis opened at `open`, if there is one.
    fn find_emphasis_close(
        &mut self,
        open: usize,
        to: usize,
        c: char,
        len: usize,
    ) -> Option<usize> {
        let word = |x: Option<char>| x.is_some_and(char::is_alphanumeric);
        let after = self.at(open + len);
        if after.is_none_or(char::is_whitespace) || open + len >= to {
            return None;
        }
        // `snake_case_names` are not emphasis.
        if c == '_' && open > 0 && word(self.at(open - 1)) {
            return None;
        }
        let key = (c, len, to);
        let from = open + len;
        if self.failed.get(&key).is_some_and(|&p| p <= from) {
            return None;
        }
        let mut j = from;
        while j < to {
            let ch = self.chars[j];
            if ch == '\\' {
                j += 2;
                continue;
            }
            if ch == '`' {
                let n = self.run(j, '`');
                match self.find_code_close(j + n, to, n) {
                    Some(close) => j = close + n,
                    None => j += n,
                }
                continue;
            }
            if ch == c {
                let run = self.run(j, c).min(to - j);
                let fits = run == len || (run > len && j + run == to) || (len == 2 && run == 3);
                let before_ok = j > from && !self.chars[j - 1].is_whitespace();
                let after_ok = c != '_' || !word(self.at(j + run));
                if fits && before_ok && after_ok {
                    return Some(j + run - len);
                }
                j += run;
                continue;
            }
            j += 1;
        }
        self.failed.insert(key, from);
        None
    }

    fn html_comment_end(&self, i: usize, to: usize) -> Option<usize> {
        let starts = self.chars[i..to].starts_with(&['<', '!', '-', '-']);
        if !starts {
            return None;
        }
        let mut j = i + 4;
        while j + 3 <= to {
            if self.chars[j..j + 3] == ['-', '-', '>'] {
                return Some(j + 3);
            }
            j += 1;
        }
        None
    }

    fn autolink(&self, i: usize, to: usize) -> Option<(String, usize)> {
        let end = (i + 1..to.min(i + MAX_LINK_SCAN)).find(|&j| self.chars[j] == '>')?;
        let inner: String = self.chars[i + 1..end].iter().collect();
        let is_url = (inner.starts_with("https://")
            || inner.starts_with("http://")
            || inner.starts_with("mailto:"))
            && !inner.contains(char::is_whitespace);
        is_url.then_some((inner, end + 1))
    }

    /// `[text](url "title")` at `open`: (end of text, url, index after the link).
    fn link(&self, open: usize, to: usize) -> Option<(usize, String, usize)> {
        let limit = to.min(open + MAX_LINK_SCAN);
        let mut level = 0usize;
        let mut j = open;
        let text_end = loop {
            if j >= limit {
                return None;
            }
            match self.chars[j] {
                '\\' => j += 1,
                '[' => level += 1,
                ']' => {
                    level -= 1;
                    if level == 0 {
                        break j;
                    }
                }
                _ => {}
            }
            j += 1;
        };
        if self.at(text_end + 1) != Some('(') {
            return None;
        }
        let limit = to.min(text_end + 2 + MAX_LINK_SCAN);
        let mut parens = 0usize;
        let mut k = text_end + 2;
        let close = loop {
            if k >= limit {
                return None;
            }
            match self.chars[k] {
                '(' => parens += 1,
                ')' if parens == 0 => break k,
                ')' => parens -= 1,
                _ => {}
            }
            k += 1;
        };
        let inside: String = self.chars[text_end + 2..close].iter().collect();
        let url = inside.split_whitespace().next().unwrap_or("");
        let url = url
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        if url.is_empty() {
            return None;
        }
        Some((text_end, url, close + 1))
    }

    /// The end of a bare `http(s)://` URL starting at `i`, trailing punctuation left out.
    fn bare_url(&self, i: usize, to: usize) -> Option<usize> {
        if i > 0 && self.chars[i - 1].is_alphanumeric() {
            return None;
        }
        let rest = &self.chars[i..to];
        let scheme = if rest.starts_with(&['h', 't', 't', 'p', 's', ':', '/', '/']) {
            8
        } else if rest.starts_with(&['h', 't', 't', 'p', ':', '/', '/']) {
            7
        } else {
            return None;
        };
        let mut end = i + scheme;
        while end < to
            && !self.chars[end].is_whitespace()
            && !matches!(self.chars[end], '<' | '>' | '"' | '`')
        {
            end += 1;
        }
        loop {
            let last = self.chars[end - 1];
            let unbalanced_paren = last == ')' && {
                let s = &self.chars[i..end];
                s.iter().filter(|&&c| c == '(').count() < s.iter().filter(|&&c| c == ')').count()
            };
            if matches!(
                last,
                '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '*' | '_' | '~'
            ) || unbalanced_paren
            {
                end -= 1;
            } else {
                break;
            }
        }
        (end > i + scheme).then_some(end)
    }
}

fn push_link_text(out: &mut Vec<Piece>, text: &str, url: &str, marks: &[Mark]) {
    let mut m = marks.to_vec();
    m.push(Mark::Link(url.to_string()));
    out.push(Piece::Text(text.to_string(), m));
}

/// Pieces as ADF inline nodes: empty text dropped, neighbours with equal marks merged, marks
/// deduplicated and ordered, `code` combined with `link` only.
fn to_nodes(pieces: Vec<Piece>) -> Vec<Value> {
    let mut merged: Vec<Piece> = Vec::new();
    for p in pieces {
        match p {
            Piece::Text(t, _) if t.is_empty() => {}
            Piece::Text(t, marks) => {
                let marks = normalize_marks(marks);
                if let Some(Piece::Text(prev, prev_marks)) = merged.last_mut()
                    && *prev_marks == marks
                {
                    prev.push_str(&t);
                    continue;
                }
                merged.push(Piece::Text(t, marks));
            }
            Piece::Break => merged.push(Piece::Break),
        }
    }
    while matches!(merged.last(), Some(Piece::Break)) {
        merged.pop();
    }
    merged
        .into_iter()
        .map(|p| match p {
            Piece::Break => json!({"type": "hardBreak"}),
            Piece::Text(text, marks) => {
                let mut node = Map::new();
                node.insert("type".into(), json!("text"));
                node.insert("text".into(), json!(text));
                if !marks.is_empty() {
                    let marks: Vec<Value> = marks
                        .iter()
                        .map(|m| match m {
                            Mark::Link(href) => json!({"type": "link", "attrs": {"href": href}}),
                            Mark::Em => json!({"type": "em"}),
                            Mark::Strong => json!({"type": "strong"}),
                            Mark::Strike => json!({"type": "strike"}),
                            Mark::Code => json!({"type": "code"}),
                        })
                        .collect();
                    node.insert("marks".into(), Value::Array(marks));
                }
                Value::Object(node)
            }
        })
        .collect()
}

fn normalize_marks(marks: Vec<Mark>) -> Vec<Mark> {
    let rank = |m: &Mark| match m {
        Mark::Link(_) => 0,
        Mark::Em => 1,
        Mark::Strong => 2,
        Mark::Strike => 3,
        Mark::Code => 4,
    };
    let code = marks.contains(&Mark::Code);
    let mut out: Vec<Mark> = Vec::new();
    for m in marks {
        // The outermost link wins; ADF allows one mark of each type.
        if out.iter().any(|o| rank(o) == rank(&m)) {
            continue;
        }
        if code && !matches!(m, Mark::Code | Mark::Link(_)) {
            continue;
        }
        out.push(m);
    }
    out.sort_by_key(rank);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn para(content: Value) -> Value {
        json!({"type": "paragraph", "content": content})
    }

    fn doc(content: Value) -> Value {
        json!({"type": "doc", "version": 1, "content": content})
    }

    #[test]
    fn adf_paragraphs_headings_and_marks() {
        let d = doc(json!([
            {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Goal"}]},
            para(json!([
                {"type": "text", "text": "Make "},
                {"type": "text", "text": "it", "marks": [{"type": "strong"}]},
                {"type": "text", "text": " fast ", "marks": [{"type": "em"}]},
                {"type": "text", "text": "now", "marks": [{"type": "strike"}]},
                {"type": "text", "text": " with "},
                {"type": "text", "text": "cargo", "marks": [{"type": "code"}]},
                {"type": "text", "text": " and "},
                {"type": "text", "text": "docs", "marks": [{"type": "link", "attrs": {"href": "https://x.test/d"}}]},
                {"type": "hardBreak"},
                {"type": "text", "text": "second line"}
            ]))
        ]));
        assert_eq!(
            adf_to_markdown(&d),
            "## Goal\n\nMake **it** *fast* ~~now~~ with `cargo` and [docs](https://x.test/d)\nsecond line"
        );
    }

    #[test]
    fn adf_lists_nest_and_number() {
        let item = |text: &str, extra: Option<Value>| {
            let mut content = vec![para(json!([{"type": "text", "text": text}]))];
            content.extend(extra);
            json!({"type": "listItem", "content": content})
        };
        let nested = json!({"type": "orderedList", "attrs": {"order": 3}, "content": [item("three", None), item("four", None)]});
        let d = doc(json!([
            {"type": "bulletList", "content": [item("one", Some(nested)), item("two", None)]}
        ]));
        assert_eq!(adf_to_markdown(&d), "- one\n  3. three\n  4. four\n- two");
    }

    #[test]
    fn adf_code_quote_rule_panel_media_table_and_inline_nodes() {
        let d = doc(json!([
            {"type": "codeBlock", "attrs": {"language": "rust"}, "content": [{"type": "text", "text": "fn main() {}\n"}]},
            {"type": "blockquote", "content": [para(json!([{"type": "text", "text": "quoted"}]))]},
            {"type": "rule"},
            {"type": "panel", "attrs": {"panelType": "info"}, "content": [para(json!([{"type": "text", "text": "note"}]))]},
            {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "abc", "type": "file", "collection": "c"}}]},
            {"type": "table", "content": [
                {"type": "tableRow", "content": [
                    {"type": "tableHeader", "content": [para(json!([{"type": "text", "text": "a"}]))]},
                    {"type": "tableHeader", "content": [para(json!([{"type": "text", "text": "b|c"}]))]}
                ]},
                {"type": "tableRow", "content": [
                    {"type": "tableCell", "content": [para(json!([{"type": "text", "text": "1"}]))]},
                    {"type": "tableCell", "content": [para(json!([{"type": "text", "text": "2"}]))]}
                ]}
            ]},
            para(json!([
                {"type": "mention", "attrs": {"id": "5b10", "text": "@Ada Lovelace"}},
                {"type": "text", "text": " "},
                {"type": "emoji", "attrs": {"shortName": ":smile:", "text": "😄"}},
                {"type": "text", "text": " "},
                {"type": "emoji", "attrs": {"shortName": ":party:"}}
            ])),
            {"type": "someFutureNode", "content": [{"type": "text", "text": "kept"}]}
        ]));
        let md = adf_to_markdown(&d);
        assert_eq!(
            md,
            "```rust\nfn main() {}\n```\n\n> quoted\n\n---\n\n> note\n\n[attachment]\n\n| a | b\\|c |\n| --- | --- |\n| 1 | 2 |\n\n@Ada Lovelace 😄 :party:\n\nkept"
        );
    }

    #[test]
    fn adf_strings_null_and_garbage_do_not_panic() {
        assert_eq!(adf_to_markdown(&Value::Null), "");
        assert_eq!(adf_to_markdown(&json!("plain *wiki*")), "plain *wiki*");
        assert_eq!(adf_to_markdown(&json!({"type": "doc"})), "");
        assert_eq!(
            adf_to_markdown(&json!({"type": "doc", "content": [1, "x", null, {"content": 3}]})),
            ""
        );
        // Nesting far deeper than MAX_DEPTH comes out as text.
        let mut node = para(json!([{"type": "text", "text": "deep"}]));
        for _ in 0..100 {
            node = json!({"type": "blockquote", "content": [node]});
        }
        assert!(adf_to_markdown(&doc(json!([node]))).contains("deep"));
    }

    #[test]
    fn plain_text_joins_split_text_nodes() {
        let d = doc(json!([para(json!([
            {"type": "text", "text": "codemill · [codemill:"},
            {"type": "text", "text": "j1:plan]", "marks": [{"type": "em"}]}
        ]))]));
        assert!(plain_text(&d).contains("[codemill:j1:plan]"));
    }

    #[test]
    fn markdown_blocks() {
        let md = "# Title\n\nSome **bold** and *it* and `code`.\nNext line.\n\n- a\n- b\n  1. x\n  2. y\n\n```rust\nlet x = 1;\n```\n\n> quote\n\n---\n3. three";
        let adf = markdown_to_adf(md);
        assert_eq!(
            adf,
            doc(json!([
                {"type": "heading", "attrs": {"level": 1}, "content": [{"type": "text", "text": "Title"}]},
                para(json!([
                    {"type": "text", "text": "Some "},
                    {"type": "text", "text": "bold", "marks": [{"type": "strong"}]},
                    {"type": "text", "text": " and "},
                    {"type": "text", "text": "it", "marks": [{"type": "em"}]},
                    {"type": "text", "text": " and "},
                    {"type": "text", "text": "code", "marks": [{"type": "code"}]},
                    {"type": "text", "text": "."},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "Next line."}
                ])),
                {"type": "bulletList", "content": [
                    {"type": "listItem", "content": [para(json!([{"type": "text", "text": "a"}]))]},
                    {"type": "listItem", "content": [
                        para(json!([{"type": "text", "text": "b"}])),
                        {"type": "orderedList", "attrs": {"order": 1}, "content": [
                            {"type": "listItem", "content": [para(json!([{"type": "text", "text": "x"}]))]},
                            {"type": "listItem", "content": [para(json!([{"type": "text", "text": "y"}]))]}
                        ]}
                    ]}
                ]},
                {"type": "codeBlock", "attrs": {"language": "rust"}, "content": [{"type": "text", "text": "let x = 1;"}]},
                {"type": "blockquote", "content": [para(json!([{"type": "text", "text": "quote"}]))]},
                {"type": "rule"},
                {"type": "orderedList", "attrs": {"order": 3}, "content": [
                    {"type": "listItem", "content": [para(json!([{"type": "text", "text": "three"}]))]}
                ]}
            ]))
        );
    }

    #[test]
    fn markdown_links_urls_and_snake_case() {
        let adf = markdown_to_adf(
            "See [the docs](https://x.test/a_b) or https://x.test/y. Keep snake_case_name and 2 * 3 * 4.<!-- hidden -->",
        );
        assert_eq!(
            adf["content"][0]["content"],
            json!([
                {"type": "text", "text": "See "},
                {"type": "text", "text": "the docs", "marks": [{"type": "link", "attrs": {"href": "https://x.test/a_b"}}]},
                {"type": "text", "text": " or "},
                {"type": "text", "text": "https://x.test/y", "marks": [{"type": "link", "attrs": {"href": "https://x.test/y"}}]},
                {"type": "text", "text": ". Keep snake_case_name and 2 * 3 * 4."}
            ])
        );
    }

    #[test]
    fn markdown_code_inside_bold_keeps_only_code() {
        let adf = markdown_to_adf("**run `cargo test` now**");
        assert_eq!(
            adf["content"][0]["content"],
            json!([
                {"type": "text", "text": "run ", "marks": [{"type": "strong"}]},
                {"type": "text", "text": "cargo test", "marks": [{"type": "code"}]},
                {"type": "text", "text": " now", "marks": [{"type": "strong"}]}
            ])
        );
    }

    #[test]
    fn markdown_table_and_headings_in_containers() {
        let adf = markdown_to_adf(
            "| a | b |\n|---|:-:|\n| 1 | 2 |\n\n> # quoted heading\n> > inner\n\n- # item heading",
        );
        let content = adf["content"].as_array().unwrap();
        assert_eq!(content[0]["type"], "table");
        assert_eq!(
            content[0]["content"][1]["content"][1]["content"][0]["content"][0]["text"],
            "2"
        );
        assert_eq!(content[1]["type"], "blockquote");
        assert_eq!(
            content[1]["content"][0],
            para(
                json!([{"type": "text", "text": "quoted heading", "marks": [{"type": "strong"}]}])
            )
        );
        assert_eq!(
            content[1]["content"][1],
            para(json!([{"type": "text", "text": "inner"}]))
        );
        assert_eq!(content[2]["content"][0]["content"][0]["type"], "paragraph");
    }

    #[test]
    fn markdown_round_trips_through_adf() {
        let md = "## Plan\n\n1. Read `src/lib.rs`\n2. Add **tests**\n   - unit\n   - integration\n\n```sh\ncargo test\n```\n\n> Careful with *edge* cases.";
        assert_eq!(adf_to_markdown(&markdown_to_adf(md)), md);
    }

    /// Every node has a type, text nodes are non-empty, containers hold what ADF allows.
    fn assert_valid(node: &Value, parent: &str) {
        let kind = node_type(node);
        assert!(!kind.is_empty(), "node without type under {parent}: {node}");
        if kind == "text" {
            assert!(
                !str_field(node, "text").is_empty(),
                "empty text node under {parent}"
            );
        }
        let kids = children(node);
        match kind {
            "listItem" => assert!(
                matches!(node_type(&kids[0]), "paragraph" | "codeBlock"),
                "{node}"
            ),
            "blockquote" => assert!(kids.iter().all(|k| matches!(
                node_type(k),
                "paragraph" | "bulletList" | "orderedList" | "codeBlock"
            ))),
            "bulletList" | "orderedList" => {
                assert!(!kids.is_empty() && kids.iter().all(|k| node_type(k) == "listItem"))
            }
            _ => {}
        }
        for k in kids {
            assert_valid(k, kind);
        }
    }

    /// Random Markdown-ish text (a fixed-seed xorshift, so failures reproduce).
    #[test]
    fn markdown_fuzz_never_panics_and_stays_valid() {
        let pieces = [
            "*",
            "**",
            "_",
            "__",
            "~~",
            "`",
            "```",
            "~~~",
            "[",
            "]",
            "(",
            ")",
            "<",
            ">",
            "<!--",
            "-->",
            "#",
            "- ",
            "1. ",
            "2) ",
            "> ",
            "|",
            "---",
            "\\",
            "\n",
            "\n\n",
            "  ",
            "\t",
            "http://a.b/c",
            "https://x.test/(y)",
            "word",
            "é",
            "😄",
            "\u{3000}",
            ":",
            "!",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let input: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let adf = markdown_to_adf(&input);
            assert_valid(&adf, "root");
            let _ = adf_to_markdown(&adf);
        }
    }

    #[test]
    fn markdown_never_panics_and_stays_valid() {
        let inputs = [
            "",
            "   \n\n",
            "*",
            "**",
            "***x***",
            "_a_b_",
            "`",
            "``code``",
            "[",
            "[a](",
            "[](https://x.test)",
            "![alt](https://x.test/i.png)",
            "<!-- unterminated",
            "<https://x.test>",
            "~~~\nunclosed fence",
            "```\n```",
            "- ",
            "-\n  - nested under empty",
            "1.\n2)",
            "> ",
            ">>>>>> deep",
            "#",
            "####### seven",
            "| a |\n|---|",
            "|---|",
            "\\",
            "a\\\nb",
            "\t- tabbed\n\t\t- more",
            "1234567890. not a list",
            "http://",
            "(https://x.test/a(b))",
            "ünïcödé **bøld** 😄 _ï_",
        ];
        for input in inputs {
            let adf = markdown_to_adf(input);
            assert_eq!(adf["type"], "doc", "{input:?}");
            assert_eq!(adf["version"], 1);
            assert_valid(&adf, "root");
        }
        let deep_quote = ">".repeat(5000) + " x";
        assert_valid(&markdown_to_adf(&deep_quote), "root");
        let deep_list: String = (0..400)
            .map(|i| format!("{}- x\n", "  ".repeat(i)))
            .collect();
        assert_valid(&markdown_to_adf(&deep_list), "root");
        let stars = "*a ".repeat(20000);
        assert_valid(&markdown_to_adf(&stars), "root");
        let brackets = "[".repeat(20000);
        assert_valid(&markdown_to_adf(&brackets), "root");
        let emphasis = "**_~~".repeat(2000) + "x";
        assert_valid(&markdown_to_adf(&emphasis), "root");
    }
}
