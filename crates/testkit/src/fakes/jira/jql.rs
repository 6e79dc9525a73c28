//! The JQL codemill writes: clauses joined by `AND`, text search, `ORDER BY`. Anything else is
//! refused, as Jira refuses JQL it does not know.

use super::{FIssue, adf_plain_text};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokenize(jql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = jql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("an unterminated string".into()),
                        Some('\\') => {
                            let Some(n) = chars.get(i + 1) else {
                                return Err("a string ends in a backslash".into());
                            };
                            s.push(*n);
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '=' | '~' => {
                out.push(Tok::Op(c.to_string()));
                i += 1;
            }
            '!' => match chars.get(i + 1) {
                Some('=') => {
                    out.push(Tok::Op("!=".into()));
                    i += 2;
                }
                Some('~') => {
                    out.push(Tok::Op("!~".into()));
                    i += 2;
                }
                _ => return Err("a lone '!'".into()),
            },
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
                {
                    i += 1;
                }
                let mut word: String = chars[start..i].iter().collect();
                // A function call such as currentUser().
                if chars.get(i) == Some(&'(') && chars.get(i + 1) == Some(&')') {
                    word.push_str("()");
                    i += 2;
                }
                out.push(Tok::Word(word));
            }
            other => return Err(format!("the character '{other}' is not supported")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Clause {
    field: String,
    op: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Query {
    clauses: Vec<Clause>,
    /// (field, ascending)
    pub(super) order: Option<(String, bool)>,
}

pub(super) fn parse_jql(jql: &str) -> Result<Query, String> {
    let toks = tokenize(jql)?;
    let mut i = 0;
    let mut clauses = Vec::new();
    let mut order = None;
    let word =
        |t: Option<&Tok>, w: &str| matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
    let value = |t: Option<&Tok>| match t {
        Some(Tok::Word(w)) | Some(Tok::Str(w)) => Some(w.clone()),
        _ => None,
    };
    while i < toks.len() {
        if word(toks.get(i), "order") && word(toks.get(i + 1), "by") {
            let Some(Tok::Word(field)) = toks.get(i + 2) else {
                return Err("ORDER BY needs a field".into());
            };
            let field = field.to_ascii_lowercase();
            if !matches!(field.as_str(), "created" | "key" | "updated" | "rank") {
                return Err(format!("ordering by '{field}' is not supported"));
            }
            let asc = !word(toks.get(i + 3), "desc");
            order = Some((field, asc));
            break;
        }
        let Some(Tok::Word(field)) = toks.get(i) else {
            return Err(format!("expected a field name at token {}", i + 1));
        };
        let field = field.to_ascii_lowercase();
        i += 1;
        let op = match toks.get(i) {
            Some(Tok::Op(op)) => {
                i += 1;
                op.clone()
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => {
                i += 1;
                "in".to_string()
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") && word(toks.get(i + 1), "in") => {
                i += 2;
                "not in".to_string()
            }
            _ => return Err(format!("expected an operator after '{field}'")),
        };
        let values = if op.ends_with("in") {
            if toks.get(i) != Some(&Tok::Open) {
                return Err("expected '(' after IN".into());
            }
            i += 1;
            let mut vals = Vec::new();
            loop {
                let Some(v) = value(toks.get(i)) else {
                    return Err("expected a value in the list".into());
                };
                vals.push(v);
                i += 1;
                match toks.get(i) {
                    Some(Tok::Comma) => i += 1,
                    Some(Tok::Close) => {
                        i += 1;
                        break;
                    }
                    _ => return Err("expected ',' or ')' in the list".into()),
                }
            }
            vals
        } else {
            let Some(v) = value(toks.get(i)) else {
                return Err(format!("expected a value after '{field} {op}'"));
            };
            i += 1;
            vec![v]
        };
        let text_field = matches!(
            field.as_str(),
            "summary" | "description" | "comment" | "text"
        );
        let known = matches!(
            field.as_str(),
            "project"
                | "status"
                | "labels"
                | "key"
                | "issuekey"
                | "id"
                | "issuetype"
                | "type"
                | "assignee"
                | "parent"
        );
        if text_field != (op == "~" || op == "!~") || !(text_field || known) {
            if !(text_field || known) {
                return Err(format!(
                    "Field '{field}' does not exist or you do not have permission to view it."
                ));
            }
            return Err(format!(
                "the operator '{op}' is not supported by the field '{field}'"
            ));
        }
        clauses.push(Clause { field, op, values });
        if i < toks.len() {
            if word(toks.get(i), "and") {
                i += 1;
            } else if word(toks.get(i), "order") {
                continue;
            } else {
                return Err("only AND joins clauses in the fake Jira".into());
            }
        }
    }
    Ok(Query { clauses, order })
}

impl Query {
    pub(super) fn matches(&self, issue: &FIssue, bot: &str) -> bool {
        self.clauses.iter().all(|c| c.matches(issue, bot))
    }
}

impl Clause {
    fn matches(&self, issue: &FIssue, bot: &str) -> bool {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let resolve = |v: &str| {
            if v.eq_ignore_ascii_case("currentUser()") {
                bot.to_string()
            } else {
                v.to_string()
            }
        };
        let text = || match self.field.as_str() {
            "summary" => issue.summary.clone(),
            "description" => adf_plain_text(&issue.description),
            "comment" => issue
                .comments
                .iter()
                .map(|c| adf_plain_text(&c.body))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => {
                let mut all = vec![issue.summary.clone(), adf_plain_text(&issue.description)];
                all.extend(issue.comments.iter().map(|c| adf_plain_text(&c.body)));
                all.join("\n")
            }
        };
        let one = |v: &str| -> bool {
            let v = resolve(v);
            match self.field.as_str() {
                "project" => eq(&issue.project, &v),
                "status" => eq(&issue.status, &v),
                "labels" => issue.labels.iter().any(|l| eq(l, &v)),
                "key" | "issuekey" | "id" => eq(&issue.key, &v) || issue.id.to_string() == v,
                "issuetype" | "type" => eq(&issue.issuetype, &v),
                "assignee" => issue.assignee.as_deref().is_some_and(|a| eq(a, &v)),
                "parent" => issue.parent.as_deref().is_some_and(|p| eq(p, &v)),
                _ => text_matches(&text(), &v),
            }
        };
        match self.op.as_str() {
            "=" | "~" | "in" => self.values.iter().any(|v| one(v)),
            _ => !self.values.iter().any(|v| one(v)),
        }
    }
}

/// Jira-like text search: `"a phrase"` must appear as is (case-insensitive); bare words must
/// all appear.
fn text_matches(haystack: &str, query: &str) -> bool {
    let hay = haystack.to_lowercase();
    let q = query.trim();
    if q.len() >= 2 && q.starts_with('"') && q.ends_with('"') {
        let phrase = q[1..q.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
        return hay.contains(&phrase.to_lowercase());
    }
    q.split_whitespace()
        .all(|w| hay.contains(&w.trim_matches('*').to_lowercase()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn jql_the_way_codemill_writes_it() {
        let q = parse_jql(
            r#"project = "PROJ" AND status = "To Do" AND labels = "codemill" ORDER BY created ASC"#,
        )
        .unwrap();
        assert_eq!(q.clauses.len(), 3);
        assert_eq!(q.order, Some(("created".into(), true)));
        let q = parse_jql(r#"project = "PROJ" AND description ~ "\"[codemill:x]\"""#).unwrap();
        assert_eq!(q.clauses[1].values, vec![r#""[codemill:x]""#.to_string()]);
        assert!(text_matches(
            "see [codemill:x] here",
            &q.clauses[1].values[0]
        ));
        assert!(!text_matches(
            "see [codemill:y] here",
            &q.clauses[1].values[0]
        ));
        assert!(parse_jql("project = A OR project = B").is_err());
        assert!(parse_jql("nosuchfield = 1").is_err());
        assert!(parse_jql("key in (PROJ-1, \"PROJ-2\") AND assignee = currentUser()").is_ok());
    }
}
