//! Jira wiki markup ↔ Markdown: how codemill reads Jira Data Center's text fields (REST v2 answers
//! descriptions and comments as wiki markup strings) and writes its own notes there.
//!
//! Covered both ways: headings, bold, italic, strikethrough, inline code, code blocks, links,
//! bullet and numbered lists (nested), quotes and rules; anything else is kept as text. Text inside
//! code is never converted. Neither direction panics, whatever the input, and nesting deeper than
//! [`MAX_DEPTH`] is kept as text rather than recursed into.

/// Deepest nesting of emphasis and quotes followed (keeps hostile input from exhausting the stack).
const MAX_DEPTH: usize = 24;

/// Longest link looked for, so a stray `[` cannot make parsing quadratic.
const MAX_LINK_SCAN: usize = 600;

/// Wiki markup as Markdown.
pub fn wiki_to_markdown(wiki: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut in_quote = false;
    // Per list depth: the last number given (numbered items count up).
    let mut counters: Vec<u32> = Vec::new();
    let mut lines = wiki.lines();
    while let Some(line) = lines.next() {
        let quote = |s: String, in_quote: bool| {
            if !in_quote {
                s
            } else if s.is_empty() {
                ">".to_string()
            } else {
                format!("> {s}")
            }
        };
        if let Some((lang, first, close)) = code_open(line.trim_start()) {
            counters.clear();
            out.push(quote(format!("```{lang}"), in_quote));
            let mut body: Vec<String> = Vec::new();
            let mut rest = first.to_string();
            let mut opening = true;
            loop {
                if let Some(end) = rest.find(close) {
                    if !rest[..end].trim().is_empty() {
                        body.push(rest[..end].to_string());
                    }
                    break;
                }
                if !(opening && rest.trim().is_empty()) {
                    body.push(rest.clone());
                }
                opening = false;
                match lines.next() {
                    Some(l) => rest = l.to_string(),
                    None => break,
                }
            }
            while body.last().is_some_and(|l| l.trim().is_empty()) {
                body.pop();
            }
            out.extend(body.into_iter().map(|l| quote(l, in_quote)));
            out.push(quote("```".to_string(), in_quote));
            continue;
        }
        for (n, part) in line.split("{quote}").enumerate() {
            if n > 0 {
                in_quote = !in_quote;
                counters.clear();
            }
            // The tag's own line (or what is left of it) is no line of the text.
            if part.trim().is_empty() && line.contains("{quote}") {
                continue;
            }
            let md = wiki_block_line(part, &mut counters);
            out.push(quote(md, in_quote));
        }
    }
    let text = out.join("\n");
    text.trim_matches('\n').to_string()
}

/// `{code}`, `{code:lang}`, `{code:title=x|lang}` or `{noformat}` opening a line: (language,
/// the rest of the line, the closing tag).
fn code_open(line: &str) -> Option<(String, &str, &'static str)> {
    let (name, close) = if line.starts_with("{code") {
        ("code", "{code}")
    } else if line.starts_with("{noformat") {
        ("noformat", "{noformat}")
    } else {
        return None;
    };
    let end = line.find('}')?;
    let params = line[1..end].strip_prefix(name)?;
    if !(params.is_empty() || params.starts_with(':')) {
        return None;
    }
    let lang = params
        .trim_start_matches(':')
        .split('|')
        .find(|p| !p.contains('=') && !p.trim().is_empty())
        .filter(|_| name == "code")
        .unwrap_or("")
        .trim()
        .to_string();
    Some((lang, &line[end + 1..], close))
}

/// One line outside code: a heading, quote line, rule, list item or text.
fn wiki_block_line(line: &str, counters: &mut Vec<u32>) -> String {
    let t = line.trim();
    let markers: String = t.chars().take_while(|c| matches!(c, '*' | '#')).collect();
    let is_item = (!markers.is_empty() && t[markers.len()..].starts_with(' '))
        || (t.starts_with("- ") && !t.starts_with("----"));
    if is_item {
        let markers = if markers.is_empty() { "-" } else { &markers };
        let depth = markers.chars().count();
        counters.truncate(depth);
        counters.resize(depth, 0);
        let indent: usize = markers
            .chars()
            .take(depth - 1)
            .map(|k| if k == '#' { 3 } else { 2 })
            .sum();
        let item = if markers.ends_with('#') {
            counters[depth - 1] += 1;
            format!("{}. ", counters[depth - 1])
        } else {
            "- ".to_string()
        };
        let text = inline_to_markdown(t[markers.len()..].trim(), 0);
        return format!("{}{item}{text}", " ".repeat(indent));
    }
    counters.clear();
    if let Some(rest) = t.strip_prefix("bq.") {
        return format!("> {}", inline_to_markdown(rest.trim(), 0));
    }
    let b = t.as_bytes();
    if b.len() >= 3 && b[0] == b'h' && (b'1'..=b'6').contains(&b[1]) && b[2] == b'.' {
        let level = usize::from(b[1] - b'0');
        return format!(
            "{} {}",
            "#".repeat(level),
            inline_to_markdown(t[3..].trim(), 0)
        );
    }
    if t.len() >= 4 && t.chars().all(|c| c == '-') {
        return "---".to_string();
    }
    inline_to_markdown(line.trim_end(), 0)
}

/// Whether `c[i]` opens an emphasis run delimited by `d` (wiki rules: after a non-word character,
/// before a non-space), and where its closing delimiter is.
fn emphasis_close(c: &[char], i: usize, d: char) -> Option<usize> {
    let before_ok = i == 0 || !c[i - 1].is_alphanumeric();
    let next = *c.get(i + 1)?;
    if !before_ok || next.is_whitespace() || next == d {
        return None;
    }
    (i + 2..c.len()).find(|&j| {
        c[j] == d && !c[j - 1].is_whitespace() && c.get(j + 1).is_none_or(|n| !n.is_alphanumeric())
    })
}

fn find_seq(c: &[char], from: usize, seq: &[char]) -> Option<usize> {
    (from..c.len().saturating_sub(seq.len() - 1)).find(|&j| c[j..].starts_with(seq))
}

/// Inline wiki markup as Markdown.
fn inline_to_markdown(s: &str, depth: usize) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        match ch {
            // `\\` is a forced line break; `\x` a literal `x`.
            '\\' if next == Some('\\') => {
                out.push('\n');
                i += 2;
            }
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                out.push(next.unwrap_or_default());
                i += 2;
            }
            '{' if next == Some('{') => match find_seq(&c, i + 2, &['}', '}']) {
                Some(end) => {
                    let code: String = c[i + 2..end].iter().collect();
                    out.push('`');
                    out.push_str(&code);
                    out.push('`');
                    i = end + 2;
                }
                None => {
                    out.push_str("{{");
                    i += 2;
                }
            },
            '[' => {
                let end = (i + 1..c.len().min(i + MAX_LINK_SCAN))
                    .find(|&j| c[j] == ']' || c[j] == '[')
                    .filter(|&j| c[j] == ']');
                let Some(end) = end else {
                    out.push('[');
                    i += 1;
                    continue;
                };
                let inner: String = c[i + 1..end].iter().collect();
                out.push_str(&wiki_link(&inner, depth));
                i = end + 1;
            }
            '*' | '_' | '-' if depth < MAX_DEPTH => match emphasis_close(&c, i, ch) {
                Some(end) => {
                    let inner: String = c[i + 1..end].iter().collect();
                    let mark = match ch {
                        '*' => "**",
                        '_' => "*",
                        _ => "~~",
                    };
                    out.push_str(mark);
                    out.push_str(&inline_to_markdown(&inner, depth + 1));
                    out.push_str(mark);
                    i = end + 1;
                }
                None => {
                    out.push(ch);
                    i += 1;
                }
            },
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// The inside of `[...]` as Markdown: `text|url` a link, `~user` a mention, a bare URL an
/// autolink; anything else stays in brackets.
fn wiki_link(inner: &str, depth: usize) -> String {
    if let Some((text, rest)) = inner.split_once('|') {
        let url = rest.split('|').next().unwrap_or("").trim();
        return format!("[{}]({url})", inline_to_markdown(text, depth + 1));
    }
    if let Some(user) = inner.strip_prefix('~') {
        return format!("@{user}");
    }
    if inner.contains("://") || inner.starts_with("mailto:") {
        return format!("<{}>", inner.trim());
    }
    format!("[{inner}]")
}

/// Markdown as wiki markup.
pub fn markdown_to_wiki(markdown: &str) -> String {
    block_to_wiki(markdown, 0)
}

fn block_to_wiki(markdown: &str, depth: usize) -> String {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out: Vec<String> = Vec::new();
    // Open list levels: (indentation, '*' bullet or '#' numbered).
    let mut stack: Vec<(usize, char)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if let Some(fence) = ["```", "~~~"].into_iter().find(|f| t.starts_with(f)) {
            stack.clear();
            let lang = t[3..].split_whitespace().next().unwrap_or("");
            out.push(if lang.is_empty() {
                "{code}".to_string()
            } else {
                format!("{{code:{lang}}}")
            });
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with(fence) {
                let l = lines[i];
                let strip = l.len() - l.trim_start().len();
                out.push(l[strip.min(indent)..].to_string());
                i += 1;
            }
            out.push("{code}".to_string());
            i += 1;
            continue;
        }
        if t.starts_with('>') && depth < MAX_DEPTH {
            stack.clear();
            let mut quoted = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('>') {
                let q = &lines[i].trim_start()[1..];
                quoted.push(q.strip_prefix(' ').unwrap_or(q));
                i += 1;
            }
            let inner = block_to_wiki(&quoted.join("\n"), depth + 1);
            if inner.contains('\n') || inner.starts_with("{code") {
                out.push(format!("{{quote}}\n{inner}\n{{quote}}"));
            } else {
                out.push(format!("bq. {inner}"));
            }
            continue;
        }
        i += 1;
        if t.is_empty() {
            out.push(String::new());
            continue;
        }
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && (t.len() == hashes || t[hashes..].starts_with(' ')) {
            stack.clear();
            let text = t[hashes..].trim().trim_end_matches('#').trim_end();
            out.push(format!("h{hashes}. {}", inline_to_wiki(text, 0)));
            continue;
        }
        let rule: String = t.chars().filter(|c| !c.is_whitespace()).collect();
        if rule.len() >= 3
            && ["-", "*", "_"]
                .iter()
                .any(|d| rule.chars().all(|c| c.to_string() == *d))
        {
            stack.clear();
            out.push("----".to_string());
            continue;
        }
        if let Some((kind, text)) = list_item(t) {
            while stack.last().is_some_and(|&(ind, _)| ind > indent) {
                stack.pop();
            }
            match stack.last_mut() {
                Some(top) if top.0 == indent => top.1 = kind,
                _ => stack.push((indent, kind)),
            }
            let prefix: String = stack.iter().map(|&(_, k)| k).collect();
            out.push(format!("{prefix} {}", inline_to_wiki(text, 0)));
            continue;
        }
        let text = inline_to_wiki(t, 0);
        // A wiki list item is one line: a continuation line joins the item it belongs to.
        if indent > 0
            && !stack.is_empty()
            && let Some(last) = out.last_mut()
        {
            last.push(' ');
            last.push_str(&text);
            continue;
        }
        stack.clear();
        out.push(text);
    }
    out.join("\n").trim_matches('\n').to_string()
}

/// A Markdown list item: ('*' or '#', its text).
fn list_item(t: &str) -> Option<(char, &str)> {
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(bullet) {
            return Some(('*', rest.trim()));
        }
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let rest = &t[digits..];
    if (1..=9).contains(&digits) && (rest.starts_with(". ") || rest.starts_with(") ")) {
        return Some(('#', rest[2..].trim()));
    }
    None
}

/// Where a Markdown emphasis run of `n` delimiters `d` opened at `i` closes.
fn md_emphasis_close(c: &[char], i: usize, d: char, n: usize) -> Option<usize> {
    let first = *c.get(i + n)?;
    if first.is_whitespace() || (d == '_' && i > 0 && c[i - 1].is_alphanumeric()) {
        return None;
    }
    let run = vec![d; n];
    (i + n + 1..c.len()).find(|&j| {
        c[j..].starts_with(&run)
            && c.get(j + n) != Some(&d)
            && !c[j - 1].is_whitespace()
            && (d != '_' || c.get(j + n).is_none_or(|a| !a.is_alphanumeric()))
    })
}

/// A character of plain text as wiki markup: the ones wiki markup gives a meaning to escaped.
fn push_literal(out: &mut String, ch: char) {
    if matches!(ch, '[' | ']' | '{' | '}' | '*' | '_') {
        out.push('\\');
    }
    out.push(ch);
}

/// Inline Markdown as wiki markup.
fn inline_to_wiki(s: &str, depth: usize) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        match ch {
            '\\' if next.is_some_and(|n| n.is_ascii_punctuation()) => {
                push_literal(&mut out, next.unwrap_or_default());
                i += 2;
            }
            '`' => {
                let n = c[i..].iter().take_while(|&&x| x == '`').count();
                let run = vec!['`'; n];
                let close = (i + n..c.len()).find(|&j| {
                    c[j..].starts_with(&run) && c.get(j + n) != Some(&'`') && c[j - 1] != '`'
                });
                match close {
                    Some(end) => {
                        let code: String = c[i + n..end].iter().collect();
                        let code = code.strip_prefix(' ').unwrap_or(&code);
                        let code = code.strip_suffix(' ').unwrap_or(code);
                        out.push_str("{{");
                        out.push_str(code);
                        out.push_str("}}");
                        i = end + n;
                    }
                    None => {
                        out.push_str(&"`".repeat(n));
                        i += n;
                    }
                }
            }
            '*' | '_' if depth < MAX_DEPTH => {
                let n = if next == Some(ch) { 2 } else { 1 };
                match md_emphasis_close(&c, i, ch, n) {
                    Some(end) => {
                        let inner: String = c[i + n..end].iter().collect();
                        let mark = if n == 2 { '*' } else { '_' };
                        out.push(mark);
                        out.push_str(&inline_to_wiki(&inner, depth + 1));
                        out.push(mark);
                        i = end + n;
                    }
                    None => {
                        let intraword = ch == '_'
                            && i > 0
                            && c[i - 1].is_alphanumeric()
                            && next.is_some_and(char::is_alphanumeric);
                        if intraword {
                            out.push('_');
                        } else {
                            push_literal(&mut out, ch);
                        }
                        i += 1;
                    }
                }
            }
            '~' if next == Some('~') && depth < MAX_DEPTH => {
                match find_seq(&c, i + 2, &['~', '~']).filter(|&e| e > i + 2) {
                    Some(end) => {
                        let inner: String = c[i + 2..end].iter().collect();
                        out.push('-');
                        out.push_str(&inline_to_wiki(&inner, depth + 1));
                        out.push('-');
                        i = end + 2;
                    }
                    None => {
                        out.push_str("~~");
                        i += 2;
                    }
                }
            }
            '[' => match md_link(&c, i) {
                Some((text, url, end)) => {
                    let text = inline_to_wiki(&text, depth + 1);
                    if text == url {
                        out.push_str(&format!("[{url}]"));
                    } else {
                        out.push_str(&format!("[{text}|{url}]"));
                    }
                    i = end;
                }
                None => {
                    push_literal(&mut out, ch);
                    i += 1;
                }
            },
            '<' => {
                let end = (i + 1..c.len().min(i + MAX_LINK_SCAN)).find(|&j| c[j] == '>');
                let url: String = end
                    .map(|e| c[i + 1..e].iter().collect())
                    .unwrap_or_default();
                match end {
                    Some(e) if url.contains("://") && !url.contains(char::is_whitespace) => {
                        out.push_str(&format!("[{url}]"));
                        i = e + 1;
                    }
                    _ => {
                        out.push('<');
                        i += 1;
                    }
                }
            }
            _ => {
                push_literal(&mut out, ch);
                i += 1;
            }
        }
    }
    out
}

/// `[text](url)` at `i`: (text, url, index after it).
fn md_link(c: &[char], i: usize) -> Option<(String, String, usize)> {
    let limit = c.len().min(i + MAX_LINK_SCAN);
    let mut level = 0usize;
    let close = (i..limit).find(|&j| {
        match c[j] {
            '[' => level += 1,
            ']' => level = level.saturating_sub(1),
            _ => {}
        }
        level == 0
    })?;
    if c.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = (close + 2..limit).find(|&j| c[j] == ')')?;
    let text: String = c[i + 1..close].iter().collect();
    let target: String = c[close + 2..end].iter().collect();
    let url = target.split_whitespace().next()?.to_string();
    Some((text, url, end + 1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn wiki_headings_marks_code_and_links() {
        let wiki = "h2. Goal\nMake *it* _fast_ -now- with {{cargo *run*}} and [docs|https://x.test/d]\n[~alice] see [https://x.test] or \\[not a link\\]";
        assert_eq!(
            wiki_to_markdown(wiki),
            "## Goal\nMake **it** *fast* ~~now~~ with `cargo *run*` and [docs](https://x.test/d)\n@alice see <https://x.test> or [not a link]"
        );
    }

    #[test]
    fn wiki_words_with_marks_inside_stay_text() {
        assert_eq!(
            wiki_to_markdown("snake_case_name, well-known, 2*3*4, a * b"),
            "snake_case_name, well-known, 2*3*4, a * b"
        );
    }

    #[test]
    fn wiki_lists_nest_and_number() {
        let wiki = "* one\n*# first\n*# second\n* two\n- dash\n# a\n# b\n## b.1";
        assert_eq!(
            wiki_to_markdown(wiki),
            "- one\n  1. first\n  2. second\n- two\n- dash\n1. a\n2. b\n   1. b.1"
        );
    }

    #[test]
    fn wiki_code_blocks_are_kept_verbatim() {
        let wiki = "Before\n{code:rust}\nlet x = *a* + _b_; // [x|y]\n\n{code}\n{code:title=A.java|java}int a;{code}\n{noformat}\nh1. raw\n{noformat}";
        assert_eq!(
            wiki_to_markdown(wiki),
            "Before\n```rust\nlet x = *a* + _b_; // [x|y]\n```\n```java\nint a;\n```\n```\nh1. raw\n```"
        );
    }

    #[test]
    fn wiki_quotes_and_rules() {
        let wiki = "bq. short *one*\n{quote}\nfirst\n\nsecond\n{quote}\n----\nafter";
        assert_eq!(
            wiki_to_markdown(wiki),
            "> short **one**\n> first\n>\n> second\n---\nafter"
        );
        assert_eq!(wiki_to_markdown("{quote}inline{quote}"), "> inline");
    }

    #[test]
    fn markdown_headings_marks_code_and_links() {
        let md = "### Plan\nMake **it** *fast* _now_ ~~not~~ with `cargo *run*` and [docs](https://x.test/d \"t\")\nSee <https://x.test>, [https://y.test](https://y.test) and [codemill:j1:plan].";
        assert_eq!(
            markdown_to_wiki(md),
            "h3. Plan\nMake *it* _fast_ _now_ -not- with {{cargo *run*}} and [docs|https://x.test/d]\nSee [https://x.test], [https://y.test] and \\[codemill:j1:plan\\]."
        );
    }

    #[test]
    fn markdown_literal_marks_are_escaped() {
        assert_eq!(
            markdown_to_wiki("snake_case, 2 * 3, a {b}, \\*x\\*"),
            "snake_case, 2 \\* 3, a \\{b\\}, \\*x\\*"
        );
    }

    #[test]
    fn markdown_lists_quotes_code_and_rules() {
        let md = "- one\n  1. first\n     more of first\n  2. second\n- two\n\n---\n> quoted **line**\n\n> a\n>\n> b\n\n```rust\nlet x = **a**;\n```";
        assert_eq!(
            markdown_to_wiki(md),
            "* one\n*# first more of first\n*# second\n* two\n\n----\nbq. quoted *line*\n\n{quote}\na\n\nb\n{quote}\n\n{code:rust}\nlet x = **a**;\n{code}"
        );
    }

    #[test]
    fn markdown_survives_a_round_trip() {
        let md = "### Plan\n\nAdd **hello.txt** with *one* line, see [the docs](https://x.test/d).\n\n- first step\n  - nested `step`\n- second\n\n1. a\n2. b\n\n> a quote\n\n```sh\necho *hi* [x]\n```\n\n*codemill · [codemill:j1:plan]*";
        assert_eq!(wiki_to_markdown(&markdown_to_wiki(md)), md);
    }

    #[test]
    fn odd_input_never_panics() {
        let pieces = [
            "*", "_", "-", "{", "}", "{{", "}}", "[", "]", "|", "\\", "`", "~~", "#", "> ", "h1.",
            "{code}", "{quote}", "é", "\n", " ", "a", "**", "](", ")", "<", ">", "```", "1. ",
        ];
        let mut seed = 7u64;
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(seed % 40) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let _ = wiki_to_markdown(&s);
            let _ = markdown_to_wiki(&s);
        }
        let deep = "*_".repeat(5000);
        let _ = wiki_to_markdown(&deep);
        let _ = markdown_to_wiki(&deep);
        let _ = markdown_to_wiki(&">".repeat(5000));
    }
}
