//! Clipping text for messages and summaries, and escaping outside text for log lines. Pure.

use std::fmt::{self, Write};

/// The longest reason a person may give for a decision (a rejection): it goes into the
/// journal, onto the ticket, and into what `codemill learn` reads.
pub const MAX_REASON_BYTES: usize = 4000;

/// A person's reason for a decision, trimmed; an empty or over-long one is refused with why,
/// the same way from the CLI, the API and the dashboard.
pub fn reason(reason: &str) -> Result<&str, String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err("the reason is empty: say why, in a few words".into());
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(format!(
            "the reason is {} bytes; at most {MAX_REASON_BYTES} are kept",
            reason.len()
        ));
    }
    Ok(reason)
}

/// At most `max` bytes of `s`, cut on a char boundary, with `…` when anything was cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `value` as a log line may show it: control characters (C0, DEL, C1) and the characters that
/// reorder or break a line on screen (bidi marks, embeddings, overrides and isolates; line and
/// paragraph separators) are escaped, `\n`/`\r`/`\t` or `\u{202e}`, everything else is kept.
/// For strings that come from outside (request paths, webhook and vendor text): a U+202E in a
/// path must not make the rest of the log line read backwards, nor a newline forge a line.
pub fn log_safe<T: fmt::Display>(value: T) -> LogSafe<T> {
    LogSafe(value)
}

/// See [`log_safe`]; escapes while formatting, so nothing is allocated.
#[derive(Debug, Clone, Copy)]
pub struct LogSafe<T>(T);

impl<T: fmt::Display> fmt::Display for LogSafe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaping(f), "{}", self.0)
    }
}

fn hides_or_reorders(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| hides_or_reorders(c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:04x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_REASON_BYTES, clip, log_safe, reason};

    #[test]
    fn a_reason_is_trimmed_and_must_say_something_in_bounds() {
        assert_eq!(reason("  tests are missing \n"), Ok("tests are missing"));
        for blank in ["", " \t\n "] {
            assert!(
                reason(blank).is_err_and(|e| e.contains("empty")),
                "{blank:?}"
            );
        }
        let long = "x".repeat(MAX_REASON_BYTES + 1);
        assert!(reason(&long).is_err_and(|e| e.contains("4001 bytes")));
        assert!(reason(&long[1..]).is_ok());
    }

    #[test]
    fn clips_on_char_boundaries() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("hello world", 5), "hello…");
        assert_eq!(clip("ééé", 3), "é…");
    }

    #[test]
    fn log_safe_escapes_controls_and_bidi_characters() {
        assert_eq!(
            log_safe("/webhooks/jira/\u{202e}gpj.exe").to_string(),
            "/webhooks/jira/\\u{202e}gpj.exe"
        );
        for (c, shown) in [
            ('\u{200e}', "\\u{200e}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{202a}', "\\u{202a}"),
            ('\u{2066}', "\\u{2066}"),
            ('\u{2069}', "\\u{2069}"),
            ('\u{0}', "\\u{0000}"),
            ('\u{1b}', "\\u{001b}"),
            ('\u{7f}', "\\u{007f}"),
            ('\u{85}', "\\u{0085}"),
            ('\u{9f}', "\\u{009f}"),
            ('\n', "\\n"),
            ('\r', "\\r"),
            ('\t', "\\t"),
        ] {
            assert_eq!(log_safe(format!("a{c}b")).to_string(), format!("a{shown}b"));
        }
        assert_eq!(
            log_safe("line\nforged: INFO ok").to_string(),
            "line\\nforged: INFO ok"
        );
    }

    #[test]
    fn log_safe_keeps_ordinary_text_and_formats_any_display() {
        let text = "PROJ-12 delivery 7f3a, Grüße, שלום, 日本語, emoji 🎉, back\\slash";
        assert_eq!(log_safe(text).to_string(), text);
        assert_eq!(log_safe(42).to_string(), "42");
        assert_eq!(log_safe("").to_string(), "");
    }
}
