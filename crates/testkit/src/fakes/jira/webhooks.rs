//! Webhook deliveries shaped like Jira's (`jira:issue_created`, `jira:issue_updated`,
//! `comment_created`, `comment_updated`) and the `X-Hub-Signature` Jira signs them with.

use serde_json::{Value, json};

use super::render::render_user;
use super::{EPOCH, FakeJira};

impl FakeJira {
    fn user(&self, account: &str) -> Value {
        let base = self.base.clone();
        self.with_db(|db| render_user(db, &base, account))
    }

    fn issue_webhook(&self, event: &str, type_name: &str, key: &str, actor: &str) -> Value {
        let issue = self.issue_json(key).unwrap_or_else(|| json!({"key": key}));
        let mut issue = issue;
        if let Some(fields) = issue.get_mut("fields").and_then(Value::as_object_mut) {
            // Webhooks no longer carry comments in issue events.
            fields.remove("comment");
        }
        json!({
            "timestamp": (EPOCH + 86_400) * 1000,
            "webhookEvent": event,
            "issue_event_type_name": type_name,
            "user": self.user(actor),
            "issue": issue,
            "changelog": {"id": "10100", "items": []},
        })
    }

    /// A `jira:issue_created` delivery for `key`, by `actor_account_id`.
    pub fn webhook_issue_created(&self, key: &str, actor_account_id: &str) -> Value {
        self.issue_webhook("jira:issue_created", "issue_created", key, actor_account_id)
    }

    /// A `jira:issue_updated` delivery for `key`, by `actor_account_id`.
    pub fn webhook_issue_updated(&self, key: &str, actor_account_id: &str) -> Value {
        self.issue_webhook("jira:issue_updated", "issue_generic", key, actor_account_id)
    }

    fn comment_webhook(&self, event: &str, key: &str, comment_id: &str) -> Value {
        let comment = self
            .comments(key)
            .into_iter()
            .find(|c| c["id"] == comment_id)
            .unwrap_or(Value::Null);
        let issue = self.issue_json(key).unwrap_or_else(|| json!({"key": key}));
        let f = &issue["fields"];
        json!({
            "timestamp": (EPOCH + 86_400) * 1000,
            "webhookEvent": event,
            "comment": comment,
            "issue": {
                "id": issue["id"],
                "self": issue["self"],
                "key": issue["key"],
                "fields": {
                    "summary": f["summary"],
                    "issuetype": f["issuetype"],
                    "project": f["project"],
                    "assignee": f["assignee"],
                    "status": f["status"],
                },
            },
        })
    }

    /// A `comment_created` delivery for comment `comment_id` of `key` (author from the comment).
    pub fn webhook_comment_created(&self, key: &str, comment_id: &str) -> Value {
        self.comment_webhook("comment_created", key, comment_id)
    }

    /// A `comment_updated` delivery for comment `comment_id` of `key`.
    pub fn webhook_comment_updated(&self, key: &str, comment_id: &str) -> Value {
        self.comment_webhook("comment_updated", key, comment_id)
    }
}

/// `X-Hub-Signature` for `body` signed with `secret` (`sha256=<hex>`), as Jira signs deliveries.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", crate::fakes::hmac_sha256_hex(secret, body))
}
