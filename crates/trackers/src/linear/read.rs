//! Reading Linear's answers: page cursors, comment authors and bodies, relations, and an issue
//! with its comments as an [`Issue`].

use super::*;

/// The cursor of the next page, if there is one; a repeated or missing cursor is an error
/// rather than an endless loop.
pub(super) fn next_cursor(
    op: &str,
    page: &Value,
    previous: Option<&str>,
) -> Result<Option<String>> {
    let more = page
        .pointer("/pageInfo/hasNextPage")
        .and_then(Value::as_bool)
        .ok_or_else(|| Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: the answer lacks pageInfo.hasNextPage"),
        })?;
    if !more {
        return Ok(None);
    }
    match page.pointer("/pageInfo/endCursor").and_then(Value::as_str) {
        Some(c) if Some(c) != previous => Ok(Some(c.to_string())),
        _ => Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: hasNextPage without a new endCursor"),
        }),
    }
}

/// Whether two Markdown bodies say the same once Linear's re-rendering is allowed for.
pub(super) fn same_markdown(stored: &str, ours: &str) -> bool {
    stored == ours || stored.replace('\\', "").trim() == ours.replace('\\', "").trim()
}

pub(super) fn author_of(comment: &Value) -> String {
    let s = |p: &str| {
        comment
            .pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    s("/user/id")
        .or_else(|| s("/user/email"))
        .or_else(|| s("/botActor/name"))
        .unwrap_or("unknown")
        .to_string()
}

pub(super) fn relation_line(kind: &str, inverse: bool, identifier: &str, title: &str) -> String {
    let verb = match (kind, inverse) {
        ("blocks", false) => "blocks",
        ("blocks", true) => "blocked by",
        ("duplicate", false) => "duplicate of",
        ("duplicate", true) => "duplicated by",
        ("related", _) => "related",
        ("similar", _) => "similar to",
        (other, _) => other,
    };
    format!("{verb} {identifier}: {title}")
}

pub(super) fn to_issue(issue: &Value, comments: &[Value]) -> Result<Issue> {
    let op = ops::ISSUE;
    let key = str_at(op, issue, "/identifier")?.to_string();
    let number = issue
        .get("number")
        .and_then(Value::as_f64)
        .map(|n| n as u64)
        .or_else(|| key.rsplit('-').next().and_then(|n| n.parse().ok()))
        .ok_or_else(|| Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: {key} has no number"),
        })?;
    let text = |p: &str| {
        issue
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let labels = array_at(op, issue, "/labels/nodes")?
        .iter()
        .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let assignees = issue
        .get("assignee")
        .filter(|a| !a.is_null())
        .and_then(|a| {
            a.get("email")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .or_else(|| a.get("id").and_then(Value::as_str))
        })
        .map(|a| vec![a.to_string()])
        .unwrap_or_default();
    let comments = comments
        .iter()
        .map(|c| {
            let body = c
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Ok(IssueComment {
                id: str_at(op, c, "/id")?.to_string(),
                author: author_of(c),
                by_codemill: has_codemill_marker(&body),
                body,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut links = Vec::new();
    for (list, inverse, other) in [
        ("/relations/nodes", false, "relatedIssue"),
        ("/inverseRelations/nodes", true, "issue"),
    ] {
        for r in array_at(op, issue, list)? {
            let kind = r.get("type").and_then(Value::as_str).unwrap_or("related");
            let Some(o) = r.get(other).filter(|o| !o.is_null()) else {
                continue;
            };
            let line = relation_line(
                kind,
                inverse,
                o.get("identifier").and_then(Value::as_str).unwrap_or("?"),
                o.get("title").and_then(Value::as_str).unwrap_or(""),
            );
            if !links.contains(&line) {
                links.push(line);
            }
        }
    }
    let subtasks = array_at(op, issue, "/children/nodes")?
        .iter()
        .map(|c| {
            format!(
                "{}: {} ({})",
                c.get("identifier").and_then(Value::as_str).unwrap_or("?"),
                c.get("title").and_then(Value::as_str).unwrap_or(""),
                c.pointer("/state/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
            )
        })
        .collect();
    Ok(Issue {
        number,
        url: text("/url"),
        title: text("/title"),
        body: text("/description"),
        acceptance_criteria: None,
        status: str_at(op, issue, "/state/name")?.to_string(),
        labels,
        assignees,
        comments,
        links,
        subtasks,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_found_escaped_or_not() {
        let line = marker_line("codemill:status");
        assert!(line.ends_with("_codemill · [codemill:status]_"));
        assert!(carries_marker(&format!("hi{line}"), "codemill:status"));
        assert!(carries_marker(
            "hi\n\n---\n*codemill · \\[codemill:status\\]*",
            "codemill:status"
        ));
        assert!(!carries_marker("hi [codemill:other]", "codemill:status"));
        assert!(has_codemill_marker(&line));
    }

    #[test]
    fn relations_read_as_lines() {
        assert_eq!(
            relation_line("related", false, "ENG-9", "t"),
            "related ENG-9: t"
        );
        assert_eq!(
            relation_line("blocks", true, "ENG-9", "t"),
            "blocked by ENG-9: t"
        );
    }
}
