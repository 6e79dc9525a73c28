//! The test's hands on the fake workspace: add issues, sub-issues, comments and relations, move
//! and assign issues as a person in Linear would, and read everything back.

use serde_json::Value;

use super::FakeLinear;
use super::world::{CommentRec, RelationRec, World};

impl FakeLinear {
    /// test's mistake) with these labels (created as team labels if new). Returns `ENG-<n>`.
    pub fn add_issue(
        &self,
        title: &str,
        description: &str,
        state: &str,
        labels: &[&str],
    ) -> String {
        let mut w = self.world();
        let Some(state_id) = w.state_by_name(state).map(|s| s.id.clone()) else {
            let names: Vec<&str> = w.states.iter().map(|s| s.name.as_str()).collect();
            panic!("fake Linear: no workflow state {state:?}; the team has {names:?}");
        };
        let mut label_ids = Vec::new();
        for name in labels {
            let id = match w.labels.iter().find(|l| l.name == *name) {
                Some(l) => l.id.clone(),
                None => w.add_label(name, true),
            };
            label_ids.push(id);
        }
        let creator = w.user("reporter").id;
        let idx = w.create_issue(
            title,
            Some(description.to_string()),
            state_id,
            label_ids,
            creator,
        );
        let issue = &w.issues[idx];
        w.identifier(issue)
    }

    /// Add a sub-issue of `parent`; returns its identifier.
    pub fn add_child(&self, parent: &str, title: &str, state: &str) -> String {
        let child = self.add_issue(title, "", state, &[]);
        let mut w = self.world();
        let parent_id = self.issue_index(&w, parent).map(|p| w.issues[p].id.clone());
        if let Some(c) = w.find_issue(&child) {
            w.issues[c].parent_id = parent_id;
        }
        child
    }

    fn issue_index(&self, w: &World, identifier: &str) -> Option<usize> {
        let idx = w.find_issue(identifier);
        if idx.is_none() {
            panic!("fake Linear: no issue {identifier}");
        }
        idx
    }

    /// Add a comment by `user` (a name or e-mail; the user is created if new). Returns its id.
    pub fn add_comment(&self, identifier: &str, user: &str, body: &str) -> String {
        let mut w = self.world();
        let Some(idx) = self.issue_index(&w, identifier) else {
            return String::new();
        };
        let user_id = w.user(user).id;
        let id = w.new_id(0xc0e);
        let now = w.tick();
        w.issues[idx].comments.push(CommentRec {
            id: id.clone(),
            body: body.to_string(),
            user_id,
            created_ms: now,
            updated_ms: now,
        });
        id
    }

    /// Relate two issues (`blocks`, `duplicate`, `related`, `similar`), `from` → `to`.
    pub fn add_relation(&self, from: &str, to: &str, kind: &str) {
        let mut w = self.world();
        let (Some(a), Some(b)) = (self.issue_index(&w, from), self.issue_index(&w, to)) else {
            return;
        };
        let (issue_id, related_id) = (w.issues[a].id.clone(), w.issues[b].id.clone());
        let id = w.new_id(0x4e1);
        w.relations.push(RelationRec {
            id,
            kind: kind.to_string(),
            issue_id,
            related_id,
        });
    }

    /// Move an issue to workflow state `state` (as a person in Linear would).
    pub fn set_state(&self, identifier: &str, state: &str) {
        let mut w = self.world();
        let Some(state_id) = w.state_by_name(state).map(|s| s.id.clone()) else {
            panic!("fake Linear: no workflow state {state:?}");
        };
        if let Some(idx) = self.issue_index(&w, identifier) {
            let now = w.tick();
            w.issues[idx].state_id = state_id;
            w.issues[idx].updated_ms = now;
        }
    }

    /// Assign an issue to `user` (a name or e-mail; created if new).
    pub fn set_assignee(&self, identifier: &str, user: &str) {
        let mut w = self.world();
        let user_id = w.user(user).id;
        if let Some(idx) = self.issue_index(&w, identifier) {
            w.issues[idx].assignee_id = Some(user_id);
        }
    }

    /// The id of user `who` (a name, e-mail or id), created if new: for webhook actors and
    /// the roles of a project.
    pub fn user_id(&self, who: &str) -> String {
        self.world().user(who).id
    }

    /// The user the API key belongs to (author of codemill's comments and issues).
    pub fn viewer_id(&self) -> String {
        self.world().viewer_id.clone()
    }

    pub fn team_id(&self) -> String {
        self.world().team.id.clone()
    }

    pub fn state_id(&self, name: &str) -> Option<String> {
        self.world().state_by_name(name).map(|s| s.id.clone())
    }

    /// Every label, `(name, team label?)`.
    pub fn labels(&self) -> Vec<(String, bool)> {
        self.world()
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.team))
            .collect()
    }

    /// Every issue's identifier, in creation order.
    pub fn issues(&self) -> Vec<String> {
        let w = self.world();
        w.issues.iter().map(|i| w.identifier(i)).collect()
    }

    /// An issue as JSON: id, identifier, number, title, description, url, state (name),
    /// labels (names), assignee, parent, comments ({id, body, user, createdAt}).
    pub fn issue(&self, identifier: &str) -> Value {
        let w = self.world();
        match w.find_issue(identifier) {
            Some(idx) => w.snapshot(idx),
            None => Value::Null,
        }
    }

    /// An issue's comments ({id, body, user {id, name, email}, createdAt}), oldest first.
    pub fn comments(&self, identifier: &str) -> Vec<Value> {
        self.issue(identifier)
            .get("comments")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    pub fn state_of(&self, identifier: &str) -> String {
        self.issue(identifier)
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    pub fn labels_of(&self, identifier: &str) -> Vec<String> {
        let w = self.world();
        w.find_issue(identifier)
            .map(|idx| w.label_names(&w.issues[idx]))
            .unwrap_or_default()
    }

    /// An issue's relations in both directions, `(type, other identifier)`.
    pub fn relations_of(&self, identifier: &str) -> Vec<(String, String)> {
        let w = self.world();
        let Some(idx) = w.find_issue(identifier) else {
            return Vec::new();
        };
        let id = &w.issues[idx].id;
        let name = |other: &str| {
            w.find_issue(other)
                .map(|o| w.identifier(&w.issues[o]))
                .unwrap_or_default()
        };
        w.relations
            .iter()
            .filter_map(|r| {
                if &r.issue_id == id {
                    Some((r.kind.clone(), name(&r.related_id)))
                } else if &r.related_id == id {
                    Some((r.kind.clone(), name(&r.issue_id)))
                } else {
                    None
                }
            })
            .collect()
    }
}
