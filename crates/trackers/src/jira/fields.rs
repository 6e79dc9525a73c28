//! Jira's text in and out: notes with their marker, fitted to Jira's limits, issue keys and JQL
//! strings checked and escaped, and field values (rich, plain, options, links) read as text.

use super::*;

/// The marker as it appears in a document: visible (ADF has no hidden text) but quiet.
pub(super) fn marker_text(marker: &str) -> String {
    format!("[{marker}]")
}

/// Jira refuses rich text longer than 32 767 characters (of its JSON); a little room is kept.
const MAX_BODY_CHARS: usize = 32_000;

/// `markdown` as ADF with a final, emphasised paragraph carrying the marker, cut short (and
/// saying so) when it would be too long for Jira to accept.
pub(super) fn with_marker(markdown: &str, marker: &str) -> Value {
    fitted(markdown, |text: &str| {
        let mut doc = markdown_to_adf(text);
        let line = json!({"type": "paragraph", "content": [
            {"type": "text", "text": format!("codemill · {}", marker_text(marker)), "marks": [{"type": "em"}]}
        ]});
        if let Some(content) = doc.get_mut("content").and_then(Value::as_array_mut) {
            content.push(line);
        }
        doc
    })
}

/// `markdown` as wiki markup with a final, emphasised line carrying the marker (its brackets
/// escaped, so wiki markup keeps them as text), cut short like [`with_marker`].
pub(super) fn wiki_with_marker(markdown: &str, marker: &str) -> Value {
    let line = markdown_to_wiki(&format!("*codemill · {}*", marker_text(marker)));
    fitted(markdown, |text: &str| {
        Value::String(format!("{}\n\n{line}", markdown_to_wiki(text)))
    })
}

/// `build(markdown)`, or of a shortened `markdown` (saying so) while the result would be too long
/// for Jira to accept.
pub(super) fn fitted(markdown: &str, build: impl Fn(&str) -> Value) -> Value {
    let size = |doc: &Value| serde_json::to_string(doc).map_or(usize::MAX, |s| s.chars().count());
    let mut doc = build(markdown);
    let mut keep = markdown.len();
    while size(&doc) > MAX_BODY_CHARS && keep > 0 {
        keep = keep * 3 / 4;
        while !markdown.is_char_boundary(keep) {
            keep -= 1;
        }
        doc = build(&format!("{}\n\n… (truncated)", &markdown[..keep]));
    }
    doc
}

/// A title as Jira accepts a summary: one line, at most 255 characters.
pub(super) fn summary_line(title: &str) -> String {
    let line = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= 255 {
        return line;
    }
    let mut cut: String = line.chars().take(254).collect();
    cut.push('…');
    cut
}

/// A JQL string literal.
pub(super) fn jql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A key fit for a URL path: `PROJ-123`, or a numeric issue id.
pub(super) fn check_key(key: &str) -> Result<&str> {
    let valid = match key.rsplit_once('-') {
        Some((project, number)) => {
            project
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && project
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit())
        }
        None => !key.is_empty() && key.chars().all(|c| c.is_ascii_digit()),
    };
    if valid {
        Ok(key)
    } else {
        Err(Error::NotFound(format!(
            "jira: {key:?} is not a Jira issue key"
        )))
    }
}

pub(super) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

pub(super) fn protocol(message: String) -> Error {
    Error::Protocol {
        vendor: VENDOR,
        message,
    }
}

pub(super) fn array_at<'a>(v: &'a Value, field: &str, what: &str) -> Result<&'a Vec<Value>> {
    v.get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| protocol(format!("{what}: no `{field}` array in the answer")))
}

/// A linked issue's line: `relates to PROJ-9: title`.
pub(super) fn link_line(link: &Value) -> Option<String> {
    let (issue, verb) = if let Some(i) = link.get("outwardIssue") {
        (i, str_at(link, "/type/outward"))
    } else {
        (link.get("inwardIssue")?, str_at(link, "/type/inward"))
    };
    let key = str_at(issue, "/key")?;
    let verb = verb
        .or_else(|| str_at(link, "/type/name"))
        .unwrap_or("links to");
    Some(match str_at(issue, "/fields/summary") {
        Some(summary) => format!("{verb} {key}: {summary}"),
        None => format!("{verb} {key}"),
    })
}

pub(super) fn linked_keys(fields: &Value) -> Vec<String> {
    fields
        .get("issuelinks")
        .and_then(Value::as_array)
        .map(|links| {
            links
                .iter()
                .filter_map(|l| {
                    str_at(l, "/outwardIssue/key").or_else(|| str_at(l, "/inwardIssue/key"))
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A custom field's value as text: rich text (ADF), a string, an option, a list of them.
pub(super) fn field_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("doc") => {
            adf_to_markdown(value)
        }
        Value::Object(o) => o
            .get("value")
            .or_else(|| o.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string()),
        Value::Array(items) => items
            .iter()
            .filter_map(field_text)
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    };
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

pub(super) fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn keys_are_checked_before_they_reach_a_path() {
        assert!(check_key("PROJ-12").is_ok());
        assert!(check_key("A_B2-1").is_ok());
        assert!(check_key("10042").is_ok());
        for bad in [
            "",
            "PROJ-",
            "-1",
            "PROJ-1/comment",
            "../x-1",
            "PROJ-1?x=1",
            "1PROJ-2",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn summaries_are_one_line_and_short_enough() {
        assert_eq!(summary_line("  Fix\nthe   thing "), "Fix the thing");
        let long = summary_line(&"é".repeat(300));
        assert_eq!(long.chars().count(), 255);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn jql_strings_escape_quotes_and_backslashes() {
        assert_eq!(jql_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn the_marker_paragraph_closes_the_comment() {
        let doc = with_marker("Hello", "codemill:j1:plan");
        let content = doc["content"].as_array().unwrap();
        assert_eq!(content.len(), 2);
        assert_eq!(
            content[1]["content"][0]["text"],
            "codemill · [codemill:j1:plan]"
        );
        assert!(has_codemill_marker(&adf_to_markdown(&doc)));
    }

    #[test]
    fn data_center_notes_are_wiki_markup_with_a_findable_marker() {
        let note = Dialect::DataCenter.note("### Plan\n\nAdd **hello.txt**.", "codemill:j1:plan");
        let wiki = note.as_str().unwrap();
        assert_eq!(
            wiki,
            "h3. Plan\n\nAdd *hello.txt*.\n\n_codemill · \\[codemill:j1:plan\\]_"
        );
        let plain = Dialect::DataCenter.plain(&note);
        assert!(plain.contains(&marker_text("codemill:j1:plan")), "{plain}");
        assert!(has_codemill_marker(&plain));
        assert_eq!(
            Dialect::DataCenter.to_markdown(&note),
            "### Plan\n\nAdd **hello.txt**.\n\n*codemill · [codemill:j1:plan]*"
        );
        let long = "A line of a very long gate log that goes on.\n".repeat(5000);
        let cut = Dialect::DataCenter.note(&long, "codemill:j1:stopped");
        assert!(cut.as_str().unwrap().chars().count() <= MAX_BODY_CHARS);
        assert!(
            Dialect::DataCenter
                .plain(&cut)
                .contains("[codemill:j1:stopped]")
        );
    }

    #[test]
    fn long_notes_are_cut_to_what_jira_accepts() {
        let long = "A line of a very long gate log that goes on.\n".repeat(5000);
        let doc = with_marker(&long, "codemill:j1:stopped");
        let json = serde_json::to_string(&doc).unwrap();
        assert!(json.chars().count() <= MAX_BODY_CHARS, "{}", json.len());
        let text = plain_text(&doc);
        assert!(text.contains("… (truncated)"));
        assert!(text.trim_end().ends_with("[codemill:j1:stopped]"));
        let short = with_marker("short", "m");
        assert!(!plain_text(&short).contains("truncated"));
    }

    #[test]
    fn field_text_reads_rich_plain_and_option_fields() {
        assert_eq!(field_text(&json!("  x ")), Some("x".into()));
        assert_eq!(field_text(&Value::Null), None);
        assert_eq!(field_text(&json!({"value": "High"})), Some("High".into()));
        assert_eq!(
            field_text(&markdown_to_adf("- a\n- b")),
            Some("- a\n- b".into())
        );
    }
}
