//! Webhook bodies shaped like Linear's `Issue` and `Comment` deliveries, and the headers Linear
//! sends with them (`Linear-Signature` is the hex HMAC-SHA256 of the body).

use serde_json::{Value, json};

use super::FakeLinear;
use super::world::{World, epoch_ms, iso, slug};

impl FakeLinear {
    /// An `Issue` webhook body (`action`: `create`, `update` or `remove`) as Linear sends it.
    pub fn issue_webhook(&self, identifier: &str, action: &str, actor_id: &str) -> Value {
        let mut w = self.world();
        let actor = actor_json(&mut w, actor_id);
        let now = epoch_ms();
        let (data, url) = match w.find_issue(identifier) {
            Some(idx) => {
                let i = &w.issues[idx];
                let state = w.states.iter().find(|s| s.id == i.state_id);
                let labels: Vec<Value> = i
                    .label_ids
                    .iter()
                    .filter_map(|id| w.label_by_id(id))
                    .map(|l| json!({"id": l.id, "name": l.name, "color": "#bec2c8", "parentId": null}))
                    .collect();
                let data = json!({
                    "id": i.id,
                    "createdAt": iso(i.created_ms),
                    "updatedAt": iso(i.updated_ms),
                    "number": i.number,
                    "title": i.title,
                    "description": i.description,
                    "priority": 0,
                    "priorityLabel": "No priority",
                    "boardOrder": 0,
                    "sortOrder": -(i.number as f64),
                    "identifier": w.identifier(i),
                    "url": w.url(i),
                    "teamId": w.team.id,
                    "stateId": i.state_id,
                    "creatorId": i.creator_id,
                    "assigneeId": i.assignee_id,
                    "parentId": i.parent_id,
                    "labelIds": i.label_ids,
                    "subscriberIds": [i.creator_id],
                    "previousIdentifiers": [],
                    "state": state.map(|s| json!({"id": s.id, "name": s.name, "color": "#e2e2e2", "type": s.kind})),
                    "team": {"id": w.team.id, "key": w.team.key, "name": w.team.name},
                    "labels": labels,
                });
                (data, w.url(i))
            }
            None => (json!({"identifier": identifier}), String::new()),
        };
        let mut body = json!({
            "action": action,
            "actor": actor,
            "createdAt": iso(now),
            "data": data,
            "url": url,
            "type": "Issue",
            "organizationId": w.org_id,
            "webhookTimestamp": now,
            "webhookId": w.new_id(0x3eb),
        });
        if action == "update" {
            body["updatedFrom"] = json!({"updatedAt": iso(now.saturating_sub(60_000))});
        }
        body
    }

    /// A `Comment` `create` webhook body for a new comment on `identifier`, as Linear sends it
    /// (the comment itself is not added; use [`FakeLinear::add_comment`] for that).
    pub fn comment_webhook(&self, identifier: &str, body: &str, actor_id: &str) -> Value {
        let mut w = self.world();
        let actor = actor_json(&mut w, actor_id);
        let now = epoch_ms();
        let comment_id = w.new_id(0xc0e);
        let issue = w.find_issue(identifier).map(|idx| {
            let i = &w.issues[idx];
            json!({
                "id": i.id,
                "title": i.title,
                "teamId": w.team.id,
                "team": {"id": w.team.id, "key": w.team.key, "name": w.team.name},
                "identifier": w.identifier(i),
                "url": w.url(i),
            })
        });
        let issue = issue.unwrap_or_else(|| json!({"identifier": identifier}));
        let url = format!(
            "{}#comment-{}",
            issue.get("url").and_then(Value::as_str).unwrap_or_default(),
            &comment_id[comment_id.len() - 8..]
        );
        json!({
            "action": "create",
            "actor": actor,
            "createdAt": iso(now),
            "data": {
                "id": comment_id,
                "createdAt": iso(now),
                "updatedAt": iso(now),
                "body": body,
                "issueId": issue.get("id"),
                "userId": actor.get("id"),
                "reactionData": [],
                "user": {
                    "id": actor.get("id"),
                    "name": actor.get("name"),
                    "email": actor.get("email"),
                    "url": actor.get("url"),
                },
                "issue": issue,
            },
            "url": url,
            "type": "Comment",
            "organizationId": w.org_id,
            "webhookTimestamp": now,
            "webhookId": w.new_id(0x3eb),
        })
    }
}

fn actor_json(w: &mut World, actor_id: &str) -> Value {
    let u = w.user(actor_id);
    json!({
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "url": format!("https://linear.app/{}/profiles/{}", w.org, slug(&u.name)),
        "type": "user",
    })
}

/// The hex HMAC-SHA256 of `body` with `secret`: the `Linear-Signature` header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    crate::fakes::hmac_sha256_hex(secret.as_bytes(), body)
}

/// The headers Linear sends with a delivery of `body`: `Linear-Signature`, `Linear-Delivery`,
/// `Linear-Event` (the payload's `type`) and `Content-Type`.
pub fn delivery_headers(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let event = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    vec![
        ("linear-signature".into(), sign(secret, body)),
        (
            "linear-delivery".into(),
            format!("{:08x}-0000-4000-8000-{:012x}", 0xde1, epoch_ms()),
        ),
        ("linear-event".into(), event),
        (
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn signatures_are_hex_hmac() {
        let s = sign("secret", b"body");
        assert_eq!(s.len(), 64);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
