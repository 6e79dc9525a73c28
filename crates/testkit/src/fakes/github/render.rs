//! Answers in GitHub's shapes: `Link`-paginated lists, repositories, issues, pull requests,
//! comments, review comments, users and labels.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::routes::Out;
use super::{
    CommentRec, FakeState, IssueRec, ReviewCommentRec, fake_sha, percent_encode, rfc3339,
    small_hash,
};

impl FakeState {
    pub(super) fn page(&self, items: Vec<Value>, path: &str, q: &BTreeMap<String, String>) -> Out {
        let per_page = q
            .get("per_page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 100)
            .min(self.opts.page_size.max(1));
        let page = q
            .get("page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let last = items.len().div_ceil(per_page).max(1);
        let chunk: Vec<Value> = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let mut out = Out::json(200, Value::Array(chunk));
        let link_to = |p: usize, rel: &str| {
            let mut params: Vec<(String, String)> = q
                .iter()
                .filter(|(k, _)| k.as_str() != "page")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            params.push(("page".into(), p.to_string()));
            let query: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect();
            format!("<{}{path}?{}>; rel=\"{rel}\"", self.base, query.join("&"))
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(link_to(page - 1, "prev"));
        }
        if page < last {
            links.push(link_to(page + 1, "next"));
            links.push(link_to(last, "last"));
        }
        if page > 1 {
            links.push(link_to(1, "first"));
        }
        if !links.is_empty() {
            out.headers.push(("link".into(), links.join(", ")));
        }
        out
    }

    pub(super) fn repo_url(&self) -> String {
        format!("{}/repos/{}/{}", self.base, self.opts.owner, self.opts.repo)
    }

    pub(super) fn repository_json(&self) -> Value {
        let (o, r) = (&self.opts.owner, &self.opts.repo);
        json!({
            "id": 1296269,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": r,
            "full_name": format!("{o}/{r}"),
            "private": false,
            "owner": user_json(o),
            "html_url": format!("https://github.com/{o}/{r}"),
            "url": self.repo_url(),
            "default_branch": self.default_branch,
        })
    }

    pub(super) fn installation_json(&self) -> Value {
        match &self.opts.app {
            Some((_, installation, _)) => {
                json!({"id": installation, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="})
            }
            None => Value::Null,
        }
    }

    pub(super) fn issue_json(&self, i: &IssueRec) -> Value {
        let (o, r) = (&self.opts.owner, &self.opts.repo);
        let n = i.number;
        let kind = if i.pr.is_some() { "pull" } else { "issues" };
        let mut v = json!({
            "url": format!("{}/issues/{n}", self.repo_url()),
            "repository_url": self.repo_url(),
            "labels_url": format!("{}/issues/{n}/labels{{/name}}", self.repo_url()),
            "comments_url": format!("{}/issues/{n}/comments", self.repo_url()),
            "events_url": format!("{}/issues/{n}/events", self.repo_url()),
            "html_url": format!("https://github.com/{o}/{r}/{kind}/{n}"),
            "id": i.id,
            "node_id": format!("I_{}", i.id),
            "number": n,
            "title": i.title,
            "user": user_json(&i.user),
            "labels": i.labels.iter().map(|l| label_json(l)).collect::<Vec<_>>(),
            "state": i.state,
            "state_reason": i.state_reason,
            "locked": false,
            "assignee": i.assignees.first().map(|a| user_json(a)),
            "assignees": i.assignees.iter().map(|a| user_json(a)).collect::<Vec<_>>(),
            "milestone": null,
            "comments": self.comments.iter().filter(|c| c.issue == n).count(),
            "created_at": rfc3339(i.created_at),
            "updated_at": rfc3339(i.updated_at),
            "closed_at": i.closed_at.map(rfc3339),
            "author_association": "OWNER",
            "body": i.body,
        });
        if let (Some(p), Some(obj)) = (&i.pr, v.as_object_mut()) {
            obj.insert(
                "pull_request".into(),
                json!({
                    "url": format!("{}/pulls/{n}", self.repo_url()),
                    "html_url": format!("https://github.com/{o}/{r}/pull/{n}"),
                    "diff_url": format!("https://github.com/{o}/{r}/pull/{n}.diff"),
                    "patch_url": format!("https://github.com/{o}/{r}/pull/{n}.patch"),
                    "merged_at": p.merged_at.map(rfc3339),
                }),
            );
            obj.insert("draft".into(), json!(p.draft));
        }
        v
    }

    /// A PR as `GET /pulls/{n}` (`full`) or `GET /pulls` answers it; the list has no `merged`,
    /// `mergeable` or counts, as on GitHub.
    pub(super) fn pr_json(&self, i: &IssueRec, full: bool) -> Value {
        let Some(p) = &i.pr else {
            return Value::Null;
        };
        let (o, r) = (&self.opts.owner, &self.opts.repo);
        let n = i.number;
        let repo = self.repository_json();
        let mut v = json!({
            "url": format!("{}/pulls/{n}", self.repo_url()),
            "id": i.id,
            "node_id": format!("PR_{}", i.id),
            "html_url": format!("https://github.com/{o}/{r}/pull/{n}"),
            "diff_url": format!("https://github.com/{o}/{r}/pull/{n}.diff"),
            "patch_url": format!("https://github.com/{o}/{r}/pull/{n}.patch"),
            "issue_url": format!("{}/issues/{n}", self.repo_url()),
            "commits_url": format!("{}/pulls/{n}/commits", self.repo_url()),
            "review_comments_url": format!("{}/pulls/{n}/comments", self.repo_url()),
            "comments_url": format!("{}/issues/{n}/comments", self.repo_url()),
            "number": n,
            "state": i.state,
            "locked": false,
            "title": i.title,
            "user": user_json(&i.user),
            "body": i.body,
            "labels": i.labels.iter().map(|l| label_json(l)).collect::<Vec<_>>(),
            "milestone": null,
            "created_at": rfc3339(i.created_at),
            "updated_at": rfc3339(i.updated_at),
            "closed_at": i.closed_at.map(rfc3339),
            "merged_at": p.merged_at.map(rfc3339),
            "merge_commit_sha": p.merge_sha,
            "assignee": i.assignees.first().map(|a| user_json(a)),
            "assignees": i.assignees.iter().map(|a| user_json(a)).collect::<Vec<_>>(),
            "requested_reviewers": [],
            "head": {"label": format!("{o}:{}", p.head_ref), "ref": p.head_ref, "sha": p.head_sha, "user": user_json(o), "repo": repo},
            "base": {"label": format!("{o}:{}", p.base_ref), "ref": p.base_ref, "sha": fake_sha(&format!("base:{}", p.base_ref)), "user": user_json(o), "repo": repo},
            "author_association": "OWNER",
            "draft": p.draft,
        });
        if full && let Some(obj) = v.as_object_mut() {
            let merged = p.merged_at.is_some();
            obj.insert("merged".into(), json!(merged));
            obj.insert(
                "mergeable".into(),
                if i.state == "open" {
                    json!(true)
                } else {
                    Value::Null
                },
            );
            obj.insert(
                "mergeable_state".into(),
                json!(if p.draft { "draft" } else { "clean" }),
            );
            obj.insert(
                "merged_by".into(),
                p.merged_by.as_deref().map(user_json).unwrap_or(Value::Null),
            );
            obj.insert(
                "comments".into(),
                json!(self.comments.iter().filter(|c| c.issue == n).count()),
            );
            obj.insert(
                "review_comments".into(),
                json!(self.review_comments.iter().filter(|c| c.pr == n).count()),
            );
            obj.insert("maintainer_can_modify".into(), json!(false));
            obj.insert("commits".into(), json!(1));
            obj.insert("additions".into(), json!(1));
            obj.insert("deletions".into(), json!(0));
            obj.insert("changed_files".into(), json!(1));
        }
        v
    }

    pub(super) fn comment_json(&self, c: &CommentRec) -> Value {
        let (o, r) = (&self.opts.owner, &self.opts.repo);
        let kind = match self.issues.get(&c.issue) {
            Some(i) if i.pr.is_some() => "pull",
            _ => "issues",
        };
        json!({
            "id": c.id,
            "node_id": format!("IC_{}", c.id),
            "url": format!("{}/issues/comments/{}", self.repo_url(), c.id),
            "html_url": format!("https://github.com/{o}/{r}/{kind}/{}#issuecomment-{}", c.issue, c.id),
            "issue_url": format!("{}/issues/{}", self.repo_url(), c.issue),
            "body": c.body,
            "user": user_json(&c.user),
            "created_at": rfc3339(c.created_at),
            "updated_at": rfc3339(c.updated_at),
            "author_association": "COLLABORATOR",
        })
    }

    pub(super) fn review_comment_json(&self, c: &ReviewCommentRec) -> Value {
        let (o, r) = (&self.opts.owner, &self.opts.repo);
        let mut v = json!({
            "url": format!("{}/pulls/comments/{}", self.repo_url(), c.id),
            "pull_request_review_id": c.review_id,
            "id": c.id,
            "node_id": format!("PRRC_{}", c.id),
            "diff_hunk": format!("@@ -1,1 +1,{} @@", c.line),
            "path": c.path,
            "position": 1,
            "original_position": 1,
            "commit_id": c.commit_id,
            "original_commit_id": c.commit_id,
            "user": user_json(&c.user),
            "body": c.body,
            "created_at": rfc3339(c.created_at),
            "updated_at": rfc3339(c.created_at),
            "html_url": format!("https://github.com/{o}/{r}/pull/{}#discussion_r{}", c.pr, c.id),
            "pull_request_url": format!("{}/pulls/{}", self.repo_url(), c.pr),
            "author_association": "COLLABORATOR",
            "start_line": null,
            "original_start_line": null,
            "start_side": null,
            "line": c.line,
            "original_line": c.line,
            "side": "RIGHT",
            "subject_type": "line",
        });
        if let (Some(parent), Some(obj)) = (c.in_reply_to_id, v.as_object_mut()) {
            obj.insert("in_reply_to_id".into(), json!(parent));
        }
        v
    }
}

pub(super) fn user_json(login: &str) -> Value {
    let id = small_hash(login);
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "html_url": format!("https://github.com/{login}"),
        "type": if login.ends_with("[bot]") { "Bot" } else { "User" },
        "site_admin": false,
    })
}

pub(super) fn label_json(name: &str) -> Value {
    let id = small_hash(name);
    json!({
        "id": id,
        "node_id": format!("LA_{id}"),
        "name": name,
        "color": "ededed",
        "default": false,
        "description": null,
    })
}
