//! The fake workspace's data: one team with its workflow states and labels, users, issues with
//! their comments, and relations; ids, clock and URLs formed the way Linear forms them.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};

use super::FakeLinearOptions;

#[derive(Debug, Clone)]
pub(super) struct TeamRec {
    pub(super) id: String,
    pub(super) key: String,
    pub(super) name: String,
}

#[derive(Debug, Clone)]
pub(super) struct StateRec {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) position: usize,
}

#[derive(Debug, Clone)]
pub(super) struct LabelRec {
    pub(super) id: String,
    pub(super) name: String,
    /// false: a workspace label (no team).
    pub(super) team: bool,
}

#[derive(Debug, Clone)]
pub(super) struct UserRec {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) email: String,
}

#[derive(Debug, Clone)]
pub(super) struct CommentRec {
    pub(super) id: String,
    pub(super) body: String,
    pub(super) user_id: String,
    pub(super) created_ms: u64,
    pub(super) updated_ms: u64,
}

#[derive(Debug, Clone)]
pub(super) struct IssueRec {
    pub(super) id: String,
    pub(super) number: u64,
    pub(super) title: String,
    pub(super) description: Option<String>,
    pub(super) state_id: String,
    pub(super) label_ids: Vec<String>,
    pub(super) assignee_id: Option<String>,
    pub(super) creator_id: String,
    pub(super) parent_id: Option<String>,
    pub(super) comments: Vec<CommentRec>,
    pub(super) created_ms: u64,
    pub(super) updated_ms: u64,
}

#[derive(Debug, Clone)]
pub(super) struct RelationRec {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) issue_id: String,
    pub(super) related_id: String,
}

#[derive(Debug)]
pub(super) struct World {
    pub(super) seq: u64,
    pub(super) clock_ms: u64,
    pub(super) org: String,
    pub(super) org_id: String,
    pub(super) page_size: usize,
    pub(super) team: TeamRec,
    pub(super) states: Vec<StateRec>,
    pub(super) labels: Vec<LabelRec>,
    pub(super) users: Vec<UserRec>,
    pub(super) issues: Vec<IssueRec>,
    pub(super) relations: Vec<RelationRec>,
    /// The user the API key belongs to: the author of everything created through the API.
    pub(super) viewer_id: String,
}

pub(super) fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2025-01-02T03:04:05.678Z` from epoch milliseconds.
pub(super) fn iso(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn slug(title: &str) -> String {
    let words: Vec<String> = title
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let mut s = words.join("-");
    s.truncate(60);
    s.trim_end_matches('-').to_string()
}

impl World {
    pub(super) fn new(opts: &FakeLinearOptions) -> World {
        let mut w = World {
            seq: 0,
            clock_ms: epoch_ms(),
            org: opts.org.clone(),
            org_id: String::new(),
            page_size: opts.page_size.max(1),
            team: TeamRec {
                id: String::new(),
                key: opts.team_key.clone(),
                name: opts.team_name.clone(),
            },
            states: Vec::new(),
            labels: Vec::new(),
            users: Vec::new(),
            issues: Vec::new(),
            relations: Vec::new(),
            viewer_id: String::new(),
        };
        w.org_id = w.new_id(0x0e6);
        w.team.id = w.new_id(0x7ea);
        for (i, (name, kind)) in opts.states.iter().enumerate() {
            let id = w.new_id(0x57a);
            w.states.push(StateRec {
                id,
                name: name.clone(),
                kind: kind.clone(),
                position: i,
            });
        }
        for name in &opts.labels {
            w.add_label(name, true);
        }
        for name in &opts.workspace_labels {
            w.add_label(name, false);
        }
        w.viewer_id = w.user("codemill").id;
        w
    }

    /// A UUID-shaped id, unique in this fake.
    pub(super) fn new_id(&mut self, kind: u32) -> String {
        self.seq += 1;
        format!("{kind:08x}-0000-4000-8000-{:012x}", self.seq)
    }

    /// A strictly increasing clock, so creation order is visible in timestamps.
    pub(super) fn tick(&mut self) -> u64 {
        self.clock_ms = self.clock_ms.max(epoch_ms()).saturating_add(1);
        self.clock_ms
    }

    pub(super) fn add_label(&mut self, name: &str, team: bool) -> String {
        let id = self.new_id(0x1abe1);
        self.labels.push(LabelRec {
            id: id.clone(),
            name: name.to_string(),
            team,
        });
        id
    }

    /// The user with this id, name or e-mail; created (name and `<name>@example.com`) if new.
    pub(super) fn user(&mut self, who: &str) -> UserRec {
        if let Some(u) = self
            .users
            .iter()
            .find(|u| u.id == who || u.name == who || u.email == who)
        {
            return u.clone();
        }
        let id = self.new_id(0x05e1);
        let (name, email) = if who.contains('@') {
            (
                who.split('@').next().unwrap_or(who).to_string(),
                who.to_string(),
            )
        } else {
            (who.to_string(), format!("{}@example.com", slug(who)))
        };
        let u = UserRec { id, name, email };
        self.users.push(u.clone());
        u
    }

    pub(super) fn identifier(&self, issue: &IssueRec) -> String {
        format!("{}-{}", self.team.key, issue.number)
    }

    pub(super) fn url(&self, issue: &IssueRec) -> String {
        format!(
            "https://linear.app/{}/issue/{}/{}",
            self.org,
            self.identifier(issue),
            slug(&issue.title)
        )
    }

    /// An issue by id or identifier (case-insensitive, as Linear reads them).
    pub(super) fn find_issue(&self, id: &str) -> Option<usize> {
        self.issues
            .iter()
            .position(|i| i.id == id || self.identifier(i).eq_ignore_ascii_case(id))
    }

    pub(super) fn state_by_name(&self, name: &str) -> Option<&StateRec> {
        self.states.iter().find(|s| s.name == name)
    }

    pub(super) fn label_by_id(&self, id: &str) -> Option<&LabelRec> {
        self.labels.iter().find(|l| l.id == id)
    }

    pub(super) fn create_issue(
        &mut self,
        title: &str,
        description: Option<String>,
        state_id: String,
        label_ids: Vec<String>,
        creator_id: String,
    ) -> usize {
        let id = self.new_id(0x155e);
        let now = self.tick();
        let number = self.issues.iter().map(|i| i.number).max().unwrap_or(0) + 1;
        self.issues.push(IssueRec {
            id,
            number,
            title: title.to_string(),
            description,
            state_id,
            label_ids,
            assignee_id: None,
            creator_id,
            parent_id: None,
            comments: Vec::new(),
            created_ms: now,
            updated_ms: now,
        });
        self.issues.len() - 1
    }

    pub(super) fn snapshot(&self, idx: usize) -> Value {
        let i = &self.issues[idx];
        let state = self.states.iter().find(|s| s.id == i.state_id);
        let user = |id: &str| {
            self.users
                .iter()
                .find(|u| u.id == id)
                .map(|u| json!({"id": u.id, "name": u.name, "email": u.email}))
                .unwrap_or(Value::Null)
        };
        json!({
            "id": i.id,
            "identifier": self.identifier(i),
            "number": i.number,
            "title": i.title,
            "description": i.description,
            "url": self.url(i),
            "state": state.map(|s| s.name.clone()),
            "labels": self.label_names(i),
            "assignee": i.assignee_id.as_deref().map(user),
            "parent": i.parent_id.as_deref().and_then(|p| self.find_issue(p)).map(|p| self.identifier(&self.issues[p])),
            "comments": i.comments.iter().map(|c| json!({
                "id": c.id, "body": c.body, "user": user(&c.user_id), "createdAt": iso(c.created_ms),
            })).collect::<Vec<_>>(),
        })
    }

    pub(super) fn label_names(&self, i: &IssueRec) -> Vec<String> {
        i.label_ids
            .iter()
            .filter_map(|id| self.label_by_id(id).map(|l| l.name.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn iso_dates_are_civil() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
