//! Markdown → ADF, the text inside a block: code spans, emphasis, strikethrough, links and bare
//! URLs as text nodes with marks.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{MAX_DEPTH, MAX_LINK_SCAN};

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
pub(super) fn inline_nodes(lines: &[&str], depth: usize) -> Vec<Value> {
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
