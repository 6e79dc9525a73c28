//! Answers in GitLab's shapes: users, the project, issues, merge requests, notes and
//! discussions.

use serde_json::{Value, json};

use super::{FakeState, IssueRec, MrRec, NoteRec, Noteable, fake_sha, is_draft, iso, small_hash};

impl FakeState {
    /// The bot is user 1, as `GET /user` says; everyone else gets a stable made-up id.
    pub(super) fn user_id(&self, username: &str) -> u64 {
        if username == self.opts.bot_username {
            1
        } else {
            small_hash(username) + 2
        }
    }

    fn display_name(&self, username: &str) -> String {
        if username == self.opts.bot_username {
            "codemill".into()
        } else {
            username.to_string()
        }
    }

    pub(super) fn user_json(&self, username: &str) -> Value {
        json!({
            "id": self.user_id(username),
            "username": username,
            "name": self.display_name(username),
            "state": "active",
            "avatar_url": null,
            "web_url": format!("{}/{username}", self.base),
        })
    }

    /// A user as webhook payloads carry it.
    pub(super) fn hook_user_json(&self, username: &str) -> Value {
        json!({
            "id": self.user_id(username),
            "name": self.display_name(username),
            "username": username,
            "avatar_url": null,
            "email": "[REDACTED]",
        })
    }

    pub(super) fn current_user_json(&self) -> Value {
        let mut v = self.user_json(&self.opts.bot_username);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("bot".into(), json!(false));
        }
        v
    }

    pub(super) fn project_web_url(&self) -> String {
        format!("{}/{}", self.base, self.opts.project)
    }

    fn project_name(&self) -> &str {
        self.opts.project.rsplit('/').next().unwrap_or_default()
    }

    fn namespace(&self) -> &str {
        self.opts
            .project
            .rsplit_once('/')
            .map(|(ns, _)| ns)
            .unwrap_or_default()
    }

    /// `GET /projects/:id`.
    pub(super) fn project_json(&self) -> Value {
        json!({
            "id": self.opts.project_id,
            "name": self.project_name(),
            "path": self.project_name(),
            "path_with_namespace": self.opts.project,
            "namespace": {
                "name": self.namespace(),
                "path": self.namespace(),
                "full_path": self.namespace(),
                "kind": "group",
            },
            "default_branch": "main",
            "only_allow_merge_if_pipeline_succeeds": self.pipeline_must_succeed,
            "web_url": self.project_web_url(),
            "http_url_to_repo": format!("{}.git", self.project_web_url()),
        })
    }

    /// The project as webhook payloads carry it.
    pub(super) fn hook_project_json(&self) -> Value {
        let web = self.project_web_url();
        let host = self.base.trim_start_matches("http://");
        json!({
            "id": self.opts.project_id,
            "name": self.project_name(),
            "description": "",
            "web_url": web,
            "avatar_url": null,
            "git_ssh_url": format!("git@{host}:{}.git", self.opts.project),
            "git_http_url": format!("{web}.git"),
            "namespace": self.namespace(),
            "visibility_level": 0,
            "path_with_namespace": self.opts.project,
            "default_branch": "main",
        })
    }

    pub(super) fn label_json(&self, title: &str) -> Value {
        json!({
            "id": small_hash(title),
            "title": title,
            "color": "#6699cc",
            "project_id": self.opts.project_id,
            "description": null,
            "type": "ProjectLabel",
            "group_id": null,
        })
    }

    pub(super) fn issue_web_url(&self, iid: u64) -> String {
        format!("{}/-/issues/{iid}", self.project_web_url())
    }

    pub(super) fn mr_web_url(&self, iid: u64) -> String {
        format!("{}/-/merge_requests/{iid}", self.project_web_url())
    }

    fn references(&self, sigil: char, iid: u64) -> Value {
        json!({
            "short": format!("{sigil}{iid}"),
            "relative": format!("{sigil}{iid}"),
            "full": format!("{}{sigil}{iid}", self.opts.project),
        })
    }

    fn user_notes_count(&self, on: Noteable) -> usize {
        self.notes.iter().filter(|n| n.on == on).count()
    }

    pub(super) fn issue_json(&self, i: &IssueRec) -> Value {
        let assignees: Vec<Value> = i.assignees.iter().map(|a| self.user_json(a)).collect();
        json!({
            "id": 1000 + i.iid,
            "iid": i.iid,
            "project_id": self.opts.project_id,
            "title": i.title,
            "description": i.description,
            "state": i.state,
            "labels": i.labels,
            "assignee": assignees.first(),
            "assignees": assignees,
            "author": self.user_json(&i.author),
            "type": "ISSUE",
            "issue_type": "issue",
            "confidential": false,
            "milestone": null,
            "web_url": self.issue_web_url(i.iid),
            "created_at": iso(i.created_at),
            "updated_at": iso(i.updated_at),
            "closed_at": i.closed_at.map(iso),
            "user_notes_count": self.user_notes_count(Noteable::Issue(i.iid)),
            "references": self.references('#', i.iid),
        })
    }

    /// The commit an MR's target branch is at (made up: there is no git).
    pub(super) fn base_sha(&self, m: &MrRec) -> String {
        fake_sha(&format!("base:{}", m.target_branch))
    }

    pub(super) fn mr_json(&self, m: &MrRec) -> Value {
        let draft = is_draft(&m.title);
        let open = m.state == "opened";
        let base = self.base_sha(m);
        let detailed = match (open, draft) {
            (false, _) => "not_open",
            (true, true) => "draft_status",
            (true, false) => "mergeable",
        };
        let closed_by = (m.state == "closed").then(|| self.user_json(&self.opts.bot_username));
        json!({
            "id": 100_000 + m.iid,
            "iid": m.iid,
            "project_id": self.opts.project_id,
            "title": m.title,
            "description": m.description,
            "state": m.state,
            "draft": draft,
            "work_in_progress": draft,
            "labels": m.labels,
            "source_branch": m.source_branch,
            "target_branch": m.target_branch,
            "source_project_id": self.opts.project_id,
            "target_project_id": self.opts.project_id,
            "sha": m.sha,
            "merge_commit_sha": m.merge_commit_sha,
            "squash_commit_sha": null,
            "diff_refs": {"base_sha": base, "head_sha": m.sha, "start_sha": base},
            "merge_status": if open { "can_be_merged" } else { "unchecked" },
            "detailed_merge_status": detailed,
            "has_conflicts": false,
            "web_url": self.mr_web_url(m.iid),
            "author": self.user_json(&m.author),
            "assignees": [],
            "reviewers": [],
            "created_at": iso(m.created_at),
            "updated_at": iso(m.updated_at),
            "merged_at": m.merged_at.map(iso),
            "merged_by": m.merged_by.as_deref().map(|u| self.user_json(u)),
            "merge_user": m.merged_by.as_deref().map(|u| self.user_json(u)),
            "closed_at": m.closed_at.map(iso),
            "closed_by": closed_by,
            "user_notes_count": self.user_notes_count(Noteable::Mr(m.iid)),
            "references": self.references('!', m.iid),
        })
    }

    pub(super) fn note_json(&self, n: &NoteRec) -> Value {
        let (noteable_type, iid, noteable_id) = match n.on {
            Noteable::Issue(iid) => ("Issue", iid, 1000 + iid),
            Noteable::Mr(iid) => ("MergeRequest", iid, 100_000 + iid),
        };
        let discussion = self.discussions.iter().find(|d| d.id == n.discussion);
        let resolvable =
            matches!(n.on, Noteable::Mr(_)) && discussion.is_some_and(|d| !d.individual);
        let mut v = json!({
            "id": n.id,
            "type": n.kind,
            "body": n.body,
            "attachment": null,
            "author": self.user_json(&n.author),
            "created_at": iso(n.created_at),
            "updated_at": iso(n.updated_at),
            "system": false,
            "noteable_id": noteable_id,
            "noteable_type": noteable_type,
            "noteable_iid": iid,
            "project_id": self.opts.project_id,
            "resolvable": resolvable,
            "confidential": false,
            "internal": false,
        });
        if let Some(obj) = v.as_object_mut() {
            if resolvable {
                let resolved = discussion.is_some_and(|d| d.resolved);
                obj.insert("resolved".into(), json!(resolved));
                obj.insert("resolved_by".into(), Value::Null);
            }
            if let Some(pos) = &n.position {
                obj.insert("position".into(), pos.clone());
            }
        }
        v
    }

    /// A discussion with its notes, oldest first; `Null` if there is no such discussion.
    pub(super) fn discussion_json(&self, id: &str) -> Value {
        let Some(d) = self.discussions.iter().find(|d| d.id == id) else {
            return Value::Null;
        };
        let notes: Vec<Value> = self
            .notes
            .iter()
            .filter(|n| n.discussion == d.id)
            .map(|n| self.note_json(n))
            .collect();
        json!({"id": d.id, "individual_note": d.individual, "notes": notes})
    }
}
