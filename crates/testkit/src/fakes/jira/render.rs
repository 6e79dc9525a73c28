//! The fake's records as Jira's JSON: issues (only the fields asked for), comments, users,
//! statuses and issue types, with Jira's timestamps and `self` links.

use chrono::DateTime;
use serde_json::{Map, Value, json};

use super::{API, Db, FComment, FIssue, FakeTransition, ISSUE_TYPES, LINK_TYPES};

/// `2024-01-01T00:01:00.000+0000`, Jira's timestamp format.
pub(super) fn timestamp(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

pub(super) fn render_user(db: &Db, base: &str, account: &str) -> Value {
    json!({
        "self": format!("{base}{API}/user?accountId={account}"),
        "accountId": account,
        "displayName": db.display_name(account),
        "active": true,
        "timeZone": "Etc/UTC",
        "accountType": "atlassian",
        "avatarUrls": {"48x48": format!("{base}/avatar/{account}/48")},
    })
}

pub(super) fn status_json(base: &str, db_workflow: &[FakeTransition], name: &str) -> Value {
    let id = status_id(db_workflow, name);
    let (cat_id, cat_key, colour, cat_name) = match name.to_ascii_lowercase().as_str() {
        "to do" | "open" | "backlog" => (2, "new", "blue-gray", "To Do"),
        "done" | "closed" | "resolved" => (3, "done", "green", "Done"),
        _ => (4, "indeterminate", "yellow", "In Progress"),
    };
    json!({
        "self": format!("{base}{API}/status/{id}"),
        "description": "",
        "iconUrl": format!("{base}/images/icons/statuses/generic.png"),
        "name": name,
        "id": id,
        "statusCategory": {
            "self": format!("{base}{API}/statuscategory/{cat_id}"),
            "id": cat_id,
            "key": cat_key,
            "colorName": colour,
            "name": cat_name,
        },
    })
}

/// Status ids follow the workflow's order; statuses outside it get ids after those.
fn status_id(workflow: &[FakeTransition], name: &str) -> String {
    let pos = workflow
        .iter()
        .position(|t| t.to.eq_ignore_ascii_case(name))
        .unwrap_or(workflow.len() + name.len());
    (10000 + pos).to_string()
}

pub(super) fn issuetype_json(base: &str, name: &str) -> Value {
    let (id, name, subtask) = ISSUE_TYPES
        .iter()
        .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(("10001", "Task", false));
    json!({
        "self": format!("{base}{API}/issuetype/{id}"),
        "id": id,
        "description": "",
        "iconUrl": format!("{base}/images/icons/issuetypes/{}.png", name.to_ascii_lowercase()),
        "name": name,
        "subtask": subtask,
        "hierarchyLevel": if subtask { -1 } else { 0 },
    })
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fields {
    /// Every field (and the comments).
    All,
    /// Only these (lowercased ids as asked).
    Only(Vec<String>),
    /// Just the issue's id (the enhanced search's default).
    IdOnly,
}

impl Fields {
    pub(super) fn from_list(list: &[String]) -> Fields {
        if list.iter().any(|f| f == "*all" || f == "*navigable") {
            Fields::All
        } else {
            Fields::Only(
                list.iter()
                    .filter(|f| !f.starts_with('-'))
                    .cloned()
                    .collect(),
            )
        }
    }
    pub(super) fn wants(&self, field: &str) -> bool {
        match self {
            Fields::All => true,
            Fields::Only(list) => list.iter().any(|f| f.eq_ignore_ascii_case(field)),
            Fields::IdOnly => false,
        }
    }
}

pub(super) fn brief_issue(db: &Db, base: &str, workflow: &[FakeTransition], key: &str) -> Value {
    match db.find(key) {
        Some(i) => {
            let issue = &db.issues[i];
            json!({
                "id": issue.id.to_string(),
                "key": issue.key,
                "self": format!("{base}{API}/issue/{}", issue.id),
                "fields": {
                    "summary": issue.summary,
                    "status": status_json(base, workflow, &issue.status),
                    "priority": {"self": format!("{base}{API}/priority/3"), "name": "Medium", "id": "3"},
                    "issuetype": issuetype_json(base, &issue.issuetype),
                },
            })
        }
        None => json!({"key": key}),
    }
}

pub(super) fn render_comment(db: &Db, base: &str, issue: &FIssue, c: &FComment) -> Value {
    json!({
        "self": format!("{base}{API}/issue/{}/comment/{}", issue.id, c.id),
        "id": c.id.to_string(),
        "author": render_user(db, base, &c.author),
        "body": c.body,
        "updateAuthor": render_user(db, base, &c.update_author),
        "created": timestamp(c.created),
        "updated": timestamp(c.updated),
        "jsdPublic": true,
    })
}

pub(super) fn render_issue(
    db: &Db,
    base: &str,
    issue: &FIssue,
    fields: &Fields,
    workflow: &[FakeTransition],
) -> Value {
    if *fields == Fields::IdOnly {
        return json!({"id": issue.id.to_string()});
    }
    let mut f = Map::new();
    let mut put = |name: &str, value: Value| {
        if fields.wants(name) {
            f.insert(name.to_string(), value);
        }
    };
    put("summary", json!(issue.summary));
    put("description", issue.description.clone());
    put("status", status_json(base, workflow, &issue.status));
    put("labels", json!(issue.labels));
    put(
        "assignee",
        issue
            .assignee
            .as_deref()
            .map_or(Value::Null, |a| render_user(db, base, a)),
    );
    put("issuetype", issuetype_json(base, &issue.issuetype));
    put(
        "project",
        json!({
            "self": format!("{base}{API}/project/{}", issue.project),
            "id": "10000",
            "key": issue.project,
            "name": format!("{} project", issue.project),
            "projectTypeKey": "software",
        }),
    );
    put("created", json!(timestamp(issue.created)));
    put("updated", json!(timestamp(issue.updated)));
    let links: Vec<Value> = db
        .links
        .iter()
        .filter_map(|l| {
            let (side, other) = if l.outward.eq_ignore_ascii_case(&issue.key) {
                ("inwardIssue", &l.inward)
            } else if l.inward.eq_ignore_ascii_case(&issue.key) {
                ("outwardIssue", &l.outward)
            } else {
                return None;
            };
            let (type_id, name, inward, outward) = LINK_TYPES
                .iter()
                .find(|(_, n, _, _)| n.eq_ignore_ascii_case(&l.link_type))
                .copied()
                .unwrap_or(("10003", "Relates", "relates to", "relates to"));
            Some(json!({
                "id": l.id,
                "self": format!("{base}{API}/issueLink/{}", l.id),
                "type": {
                    "id": type_id,
                    "name": name,
                    "inward": inward,
                    "outward": outward,
                    "self": format!("{base}{API}/issueLinkType/{type_id}"),
                },
                side: brief_issue(db, base, workflow, other),
            }))
        })
        .collect();
    put("issuelinks", json!(links));
    let subtasks: Vec<Value> = db
        .issues
        .iter()
        .filter(|i| {
            i.parent
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(&issue.key))
        })
        .map(|i| brief_issue(db, base, workflow, &i.key))
        .collect();
    put("subtasks", json!(subtasks));
    if let Some(parent) = &issue.parent {
        put("parent", brief_issue(db, base, workflow, parent));
    }
    for (name, value) in &issue.custom {
        put(name, value.clone());
    }
    if fields.wants("comment") {
        let comments: Vec<Value> = issue
            .comments
            .iter()
            .map(|c| render_comment(db, base, issue, c))
            .collect();
        f.insert(
            "comment".into(),
            json!({
                "comments": comments,
                "self": format!("{base}{API}/issue/{}/comment", issue.id),
                "maxResults": comments.len(),
                "total": comments.len(),
                "startAt": 0,
            }),
        );
    }
    json!({
        "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
        "id": issue.id.to_string(),
        "self": format!("{base}{API}/issue/{}", issue.id),
        "key": issue.key,
        "fields": f,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::fakes::jira::EPOCH;
    #[test]
    fn timestamps_are_jira_formatted() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(timestamp(EPOCH), "2024-01-01T00:00:00.000+0000");
        assert_eq!(
            timestamp(EPOCH + 86_400 * 60 + 61),
            "2024-03-01T00:01:01.000+0000"
        );
    }
}
