//! The test's hands on the fake site: add issues, sub-tasks, links, users and comments, change
//! them as a person in Jira would, and read them back as Jira holds them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::adf::adf_text;
use super::render::{Fields, render_comment, render_issue};
use super::{FComment, FIssue, FakeJira, FakeLink, adf_plain_text};

impl FakeJira {
    /// Add an issue. `description` is ADF, `null`, or a string (one paragraph per line).
    pub fn add_issue(
        &self,
        key: &str,
        summary: &str,
        description: Value,
        status: &str,
        labels: &[&str],
    ) {
        let description = match description {
            Value::String(s) => adf_text(&s),
            other => other,
        };
        self.with_db(|db| {
            let now = db.tick();
            db.next_issue_id += 1;
            let issue = FIssue {
                id: db.next_issue_id,
                key: key.to_string(),
                project: key.rsplit_once('-').map_or(key, |(p, _)| p).to_string(),
                summary: summary.to_string(),
                description,
                status: status.to_string(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                assignee: None,
                issuetype: "Task".into(),
                parent: None,
                custom: BTreeMap::new(),
                comments: Vec::new(),
                created: now,
                updated: now,
            };
            match db.find(key) {
                Some(i) => db.issues[i] = issue,
                None => db.issues.push(issue),
            }
        });
    }

    /// Add a subtask of `parent`.
    pub fn add_subtask(&self, parent: &str, key: &str, summary: &str, status: &str) {
        self.add_issue(key, summary, Value::Null, status, &[]);
        self.edit(key, |i| {
            i.parent = Some(parent.to_string());
            i.issuetype = "Subtask".into();
        });
    }

    /// Link two issues as `POST /issueLink` would (`inward` gets the type's outward wording).
    pub fn add_link(&self, link_type: &str, inward: &str, outward: &str) {
        self.with_db(|db| {
            db.next_link_id += 1;
            let id = db.next_link_id.to_string();
            db.links.push(FakeLink {
                id,
                link_type: link_type.to_string(),
                inward: inward.to_string(),
                outward: outward.to_string(),
            });
        });
    }

    /// Name an account (its `displayName` in answers; unknown accounts show their id).
    pub fn add_user(&self, account_id: &str, display_name: &str) {
        self.with_db(|db| {
            db.users
                .insert(account_id.to_string(), display_name.to_string());
        });
    }

    /// Add a comment by `author_account_id`; returns its id. A string body becomes ADF.
    pub fn add_comment(&self, key: &str, author_account_id: &str, body: Value) -> String {
        let body = match body {
            Value::String(s) => adf_text(&s),
            other => other,
        };
        self.with_db(|db| {
            let now = db.tick();
            db.next_comment_id += 1;
            let id = db.next_comment_id;
            if let Some(i) = db.find(key) {
                db.issues[i].comments.push(FComment {
                    id,
                    author: author_account_id.to_string(),
                    update_author: author_account_id.to_string(),
                    body,
                    created: now,
                    updated: now,
                });
            }
            id.to_string()
        })
    }

    fn edit(&self, key: &str, f: impl FnOnce(&mut FIssue)) {
        self.with_db(|db| {
            if let Some(i) = db.find(key) {
                f(&mut db.issues[i]);
            }
        });
    }

    /// Set the description as stored: ADF, or a wiki markup string as Data Center keeps it.
    pub fn set_description(&self, key: &str, description: Value) {
        self.edit(key, |i| i.description = description);
    }

    pub fn set_status(&self, key: &str, status: &str) {
        self.edit(key, |i| i.status = status.to_string());
    }

    pub fn set_assignee(&self, key: &str, account_id: Option<&str>) {
        self.edit(key, |i| i.assignee = account_id.map(str::to_string));
    }

    /// Set a custom field (`customfield_10042`) to any JSON: ADF, a string, an option.
    pub fn set_field(&self, key: &str, field: &str, value: Value) {
        self.edit(key, |i| {
            i.custom.insert(field.to_string(), value);
        });
    }

    /// The issue as `GET /issue/{key}` answers it (every field, comments included).
    pub fn issue_json(&self, key: &str) -> Option<Value> {
        let base = self.base.clone();
        self.with_db(|db| {
            let i = db.find(key)?;
            Some(render_issue(
                db,
                &base,
                &db.issues[i],
                &Fields::All,
                &self.shared.options.workflow,
            ))
        })
    }

    /// Keys of every issue, in creation order.
    pub fn issue_keys(&self) -> Vec<String> {
        self.with_db(|db| db.issues.iter().map(|i| i.key.clone()).collect())
    }

    /// The comments of `key` as the API answers them, oldest first.
    pub fn comments(&self, key: &str) -> Vec<Value> {
        let base = self.base.clone();
        self.with_db(|db| match db.find(key) {
            Some(i) => {
                let issue = &db.issues[i];
                issue
                    .comments
                    .iter()
                    .map(|c| render_comment(db, &base, issue, c))
                    .collect()
            }
            None => Vec::new(),
        })
    }

    /// The comments' text (ADF flattened), oldest first.
    pub fn comment_texts(&self, key: &str) -> Vec<String> {
        self.comments(key)
            .iter()
            .map(|c| adf_plain_text(&c["body"]))
            .collect()
    }

    pub fn description_of(&self, key: &str) -> Option<Value> {
        self.with_db(|db| db.find(key).map(|i| db.issues[i].description.clone()))
    }

    pub fn summary_of(&self, key: &str) -> Option<String> {
        self.with_db(|db| db.find(key).map(|i| db.issues[i].summary.clone()))
    }

    pub fn status_of(&self, key: &str) -> Option<String> {
        self.with_db(|db| db.find(key).map(|i| db.issues[i].status.clone()))
    }

    pub fn labels_of(&self, key: &str) -> Vec<String> {
        self.with_db(|db| {
            db.find(key)
                .map(|i| db.issues[i].labels.clone())
                .unwrap_or_default()
        })
    }

    /// Links with `key` on either side.
    pub fn links_of(&self, key: &str) -> Vec<FakeLink> {
        self.with_db(|db| {
            db.links
                .iter()
                .filter(|l| l.inward == key || l.outward == key)
                .cloned()
                .collect()
        })
    }
}
