//! Markdown → ADF, the blocks: headings, paragraphs, lists, fenced code, quotes, rules and pipe
//! tables, each kept to the children ADF allows in its container.

use serde_json::{Map, Value, json};

use super::inline::inline_nodes;
use super::{MAX_DEPTH, children, node_type, plain_text};

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
