//! The issue endpoints: list (filtered and paginated; pull requests are issues too, as on
//! GitHub), create, edit, comments and labels.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::label_json;
use super::routes::{Out, missing_field, not_found, validation};
use super::{CommentRec, FakeState, IssueRec, now, strings};

impl FakeState {
    pub(super) fn create_issue(
        &mut self,
        title: &str,
        body: Option<String>,
        labels: Vec<String>,
        assignees: Vec<String>,
        author: &str,
    ) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        let id = self.id();
        let t = now();
        self.issues.insert(
            number,
            IssueRec {
                number,
                id,
                title: title.to_string(),
                body,
                state: "open".into(),
                state_reason: None,
                labels,
                assignees,
                user: author.to_string(),
                created_at: t,
                updated_at: t,
                closed_at: None,
                pr: None,
            },
        );
        number
    }

    pub(super) fn add_comment(&mut self, issue: u64, author: &str, body: &str) -> u64 {
        let id = self.id();
        let t = now();
        self.comments.push(CommentRec {
            id,
            issue,
            user: author.to_string(),
            body: body.to_string(),
            created_at: t,
            updated_at: t,
        });
        if let Some(i) = self.issues.get_mut(&issue) {
            i.updated_at = t;
        }
        id
    }

    pub(super) fn list_issues(&self, path: &str, q: &BTreeMap<String, String>) -> Out {
        let state = q.get("state").map(String::as_str).unwrap_or("open");
        let labels: Vec<&str> = q
            .get("labels")
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut items: Vec<&IssueRec> = self
            .issues
            .values()
            .filter(|i| state == "all" || i.state == state)
            .filter(|i| {
                labels
                    .iter()
                    .all(|l| i.labels.iter().any(|x| x.eq_ignore_ascii_case(l)))
            })
            .filter(|i| match q.get("assignee").map(String::as_str) {
                None => true,
                Some("none") => i.assignees.is_empty(),
                Some("*") => !i.assignees.is_empty(),
                Some(who) => i.assignees.iter().any(|a| a.eq_ignore_ascii_case(who)),
            })
            .filter(|i| {
                q.get("creator")
                    .is_none_or(|c| i.user.eq_ignore_ascii_case(c))
            })
            .collect();
        // GitHub's default: newest first.
        items.sort_by_key(|i| std::cmp::Reverse(i.number));
        if q.get("direction").map(String::as_str) == Some("asc") {
            items.reverse();
        }
        let items = items.into_iter().map(|i| self.issue_json(i)).collect();
        self.page(items, path, q)
    }

    pub(super) fn post_issue(&mut self, json: &Value) -> Out {
        let Some(title) = json
            .get("title")
            .and_then(|t| {
                t.as_str()
                    .map(str::to_string)
                    .or_else(|| t.as_u64().map(|n| n.to_string()))
            })
            .filter(|t| !t.trim().is_empty())
        else {
            return missing_field("Issue", "title");
        };
        let viewer = self.viewer.clone();
        let n = self.create_issue(
            &title,
            json.get("body").and_then(Value::as_str).map(str::to_string),
            strings(json.get("labels")),
            strings(json.get("assignees")),
            &viewer,
        );
        match self.issues.get(&n) {
            Some(i) => Out::json(201, self.issue_json(i)),
            None => not_found(),
        }
    }

    pub(super) fn patch_issue(&mut self, n: Option<u64>, json: &Value) -> Out {
        let Some(i) = n.and_then(|n| self.issues.get_mut(&n)) else {
            return not_found();
        };
        let t = now();
        if let Some(title) = json.get("title").and_then(Value::as_str) {
            i.title = title.to_string();
        }
        if let Some(body) = json.get("body") {
            i.body = body.as_str().map(str::to_string);
        }
        if json.get("labels").is_some() {
            i.labels = strings(json.get("labels"));
        }
        if json.get("assignees").is_some() {
            i.assignees = strings(json.get("assignees"));
        }
        match json.get("state").and_then(Value::as_str) {
            Some("closed") if i.state != "closed" => {
                i.state = "closed".into();
                i.closed_at = Some(t);
                i.state_reason = Some(
                    json.get("state_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("completed")
                        .to_string(),
                );
            }
            Some("closed") => {
                if let Some(r) = json.get("state_reason").and_then(Value::as_str) {
                    i.state_reason = Some(r.to_string());
                }
            }
            Some("open") if i.state != "open" => {
                i.state = "open".into();
                i.closed_at = None;
                i.state_reason = Some("reopened".into());
            }
            Some("open") | None => {}
            Some(_) => {
                return validation(
                    json!([{"resource": "Issue", "field": "state", "code": "invalid"}]),
                );
            }
        }
        i.updated_at = t;
        let n = i.number;
        match self.issues.get(&n) {
            Some(i) => Out::json(200, self.issue_json(i)),
            None => not_found(),
        }
    }

    pub(super) fn patch_comment(&mut self, id: Option<u64>, json: &Value) -> Out {
        let Some(body) = json.get("body").and_then(Value::as_str) else {
            return missing_field("IssueComment", "body");
        };
        let Some(c) = id.and_then(|id| self.comments.iter_mut().find(|c| c.id == id)) else {
            return not_found();
        };
        c.body = body.to_string();
        c.updated_at = now();
        let id = c.id;
        match self.comments.iter().find(|c| c.id == id) {
            Some(c) => Out::json(200, self.comment_json(c)),
            None => not_found(),
        }
    }

    pub(super) fn put_labels(&mut self, n: Option<u64>, json: &Value, replace: bool) -> Out {
        // Both `{"labels": [...]}` and a bare array are documented.
        let names = if json.is_array() {
            strings(Some(json))
        } else {
            strings(json.get("labels"))
        };
        let Some(i) = n.and_then(|n| self.issues.get_mut(&n)) else {
            return not_found();
        };
        if replace {
            i.labels.clear();
        }
        for name in names {
            if !i.labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
                i.labels.push(name);
            }
        }
        i.updated_at = now();
        Out::json(
            200,
            Value::Array(i.labels.iter().map(|l| label_json(l)).collect()),
        )
    }
}
