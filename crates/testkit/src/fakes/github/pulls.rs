//! The pull request endpoints: list by head and state, create (GitHub's validation errors
//! included), edit, merge (closing the issues the body names), and replies to review comments.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::routes::{Out, err, missing_field, not_found, validation};
use super::{FakeState, IssueRec, PrRec, ReviewCommentRec, closing_references, fake_sha, now};

impl FakeState {
    pub(super) fn list_pulls(&self, path: &str, q: &BTreeMap<String, String>) -> Out {
        let state = q.get("state").map(String::as_str).unwrap_or("open");
        let head = q.get("head").map(|h| match h.split_once(':') {
            Some((owner, branch)) => (Some(owner.to_string()), branch.to_string()),
            None => (None, h.clone()),
        });
        let mut items: Vec<&IssueRec> = self
            .issues
            .values()
            .filter(|i| i.pr.is_some())
            .filter(|i| state == "all" || i.state == state)
            .filter(|i| match (&head, &i.pr) {
                (Some((owner, branch)), Some(p)) => {
                    owner
                        .as_deref()
                        .is_none_or(|o| o.eq_ignore_ascii_case(&self.opts.owner))
                        && p.head_ref == *branch
                }
                _ => true,
            })
            .filter(|i| match (q.get("base"), &i.pr) {
                (Some(b), Some(p)) => p.base_ref == *b,
                _ => true,
            })
            .collect();
        items.sort_by_key(|i| std::cmp::Reverse(i.number));
        if q.get("direction").map(String::as_str) == Some("asc") {
            items.reverse();
        }
        let items = items.into_iter().map(|i| self.pr_json(i, false)).collect();
        self.page(items, path, q)
    }

    pub(super) fn post_pull(&mut self, json: &Value) -> Out {
        let text = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let mut missing = Vec::new();
        for field in ["title", "head", "base"] {
            if text(field).is_none() {
                missing.push(
                    json!({"resource": "PullRequest", "field": field, "code": "missing_field"}),
                );
            }
        }
        let (Some(title), Some(head), Some(base)) = (text("title"), text("head"), text("base"))
        else {
            return validation(Value::Array(missing));
        };
        let head = match head.split_once(':') {
            Some((_, branch)) => branch.to_string(),
            None => head,
        };
        if head == base {
            return validation(
                json!([{"resource": "PullRequest", "code": "custom", "message": format!("No commits between {base} and {head}")}]),
            );
        }
        if self
            .issues
            .values()
            .any(|i| i.state == "open" && i.pr.as_ref().is_some_and(|p| p.head_ref == head))
        {
            let message = format!(
                "A pull request already exists for {}:{head}.",
                self.opts.owner
            );
            return validation(
                json!([{"resource": "PullRequest", "code": "custom", "message": message}]),
            );
        }
        let viewer = self.viewer.clone();
        let n = self.create_issue(
            &title,
            json.get("body").and_then(Value::as_str).map(str::to_string),
            Vec::new(),
            Vec::new(),
            &viewer,
        );
        let sha = fake_sha(&format!("{head}:{n}"));
        if let Some(i) = self.issues.get_mut(&n) {
            i.pr = Some(PrRec {
                head_ref: head,
                head_sha: sha,
                base_ref: base,
                draft: json.get("draft").and_then(Value::as_bool).unwrap_or(false),
                merged_at: None,
                merged_by: None,
                merge_sha: None,
                merge_method: None,
            });
        }
        match self.issues.get(&n) {
            Some(i) => {
                let mut out = Out::json(201, self.pr_json(i, true));
                out.headers.push((
                    "location".into(),
                    format!(
                        "{}/repos/{}/{}/pulls/{n}",
                        self.base, self.opts.owner, self.opts.repo
                    ),
                ));
                out
            }
            None => not_found(),
        }
    }

    pub(super) fn patch_pull(&mut self, n: Option<u64>, json: &Value) -> Out {
        let Some(i) = n
            .and_then(|n| self.issues.get_mut(&n))
            .filter(|i| i.pr.is_some())
        else {
            return not_found();
        };
        if let Some(title) = json.get("title").and_then(Value::as_str) {
            i.title = title.to_string();
        }
        if let Some(body) = json.get("body") {
            i.body = body.as_str().map(str::to_string);
        }
        if let (Some(base), Some(p)) = (json.get("base").and_then(Value::as_str), i.pr.as_mut()) {
            p.base_ref = base.to_string();
        }
        let merged = i.pr.as_ref().is_some_and(|p| p.merged_at.is_some());
        match json.get("state").and_then(Value::as_str) {
            Some("closed") if i.state == "open" => {
                i.state = "closed".into();
                i.closed_at = Some(now());
            }
            Some("open") if i.state == "closed" && !merged => {
                i.state = "open".into();
                i.closed_at = None;
            }
            _ => {}
        }
        i.updated_at = now();
        let n = i.number;
        match self.issues.get(&n) {
            Some(i) => Out::json(200, self.pr_json(i, true)),
            None => not_found(),
        }
    }

    /// `PUT /pulls/{n}/merge`: GitHub's answers for a closed PR or a draft (405), a head that
    /// moved past the `sha` given (409), an unknown `merge_method` (422) and a required check
    /// that has not passed (405).
    pub(super) fn put_merge(&mut self, n: Option<u64>, json: &Value) -> Out {
        let Some(i) = n
            .and_then(|n| self.issues.get(&n))
            .filter(|i| i.pr.is_some())
        else {
            return not_found();
        };
        let Some(p) = i.pr.as_ref() else {
            return not_found();
        };
        if i.state != "open" {
            return err(405, "Pull Request is not mergeable");
        }
        if p.draft {
            return err(405, "Pull Request is still a draft");
        }
        if let Some(sha) = json.get("sha").and_then(Value::as_str)
            && sha != p.head_sha
        {
            return err(
                409,
                "Head branch was modified. Review and try the merge again.",
            );
        }
        let method = json
            .get("merge_method")
            .and_then(Value::as_str)
            .unwrap_or("merge")
            .to_string();
        if !["merge", "squash", "rebase"].contains(&method.as_str()) {
            return validation(
                json!([{"resource": "PullRequest", "field": "merge_method", "code": "invalid"}]),
            );
        }
        if let Some(unmet) = self.unmet_check(&p.base_ref, &p.head_sha) {
            return err(405, &unmet);
        }
        let (number, base, head) = (i.number, p.base_ref.clone(), p.head_sha.clone());
        let real = self
            .on_merge
            .as_ref()
            .and_then(|hook| hook(&base, &head, &method));
        let viewer = self.viewer.clone();
        self.merge(number, &viewer);
        let p = self.issues.get_mut(&number).and_then(|i| i.pr.as_mut());
        let sha = p.and_then(|p| {
            p.merge_method = Some(method);
            if real.is_some() {
                p.merge_sha = real;
            }
            p.merge_sha.clone()
        });
        if let Some(sha) = &sha {
            self.branches.insert(base, sha.clone());
        }
        Out::json(
            200,
            json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
        )
    }

    pub(super) fn merge(&mut self, n: u64, by: &str) -> bool {
        let t = now();
        let Some(i) = self.issues.get_mut(&n).filter(|i| i.state == "open") else {
            return false;
        };
        let body = i.body.clone().unwrap_or_default();
        let Some(p) = i.pr.as_mut() else {
            return false;
        };
        p.draft = false;
        p.merged_at = Some(t);
        p.merged_by = Some(by.to_string());
        p.merge_sha = Some(fake_sha(&format!("merge:{n}:{}", p.head_sha)));
        let into_default = p.base_ref == self.default_branch;
        i.state = "closed".into();
        i.closed_at = Some(t);
        i.updated_at = t;
        if into_default && self.auto_close {
            for target in closing_references(&body) {
                if let Some(issue) = self.issues.get_mut(&target)
                    && issue.pr.is_none()
                    && issue.state == "open"
                {
                    issue.state = "closed".into();
                    issue.state_reason = Some("completed".into());
                    issue.closed_at = Some(t);
                    issue.updated_at = t;
                }
            }
        }
        true
    }

    pub(super) fn post_reply(&mut self, n: Option<u64>, id: Option<u64>, json: &Value) -> Out {
        let Some(n) = n.filter(|n| self.issues.get(n).is_some_and(|i| i.pr.is_some())) else {
            return not_found();
        };
        let Some(parent) = id.and_then(|id| {
            self.review_comments
                .iter()
                .find(|c| c.id == id && c.pr == n)
        }) else {
            return not_found();
        };
        // Documented: replies to replies are not supported.
        if parent.in_reply_to_id.is_some() {
            return validation(
                json!([{"resource": "PullRequestReviewComment", "field": "in_reply_to", "code": "invalid", "message": "replies to replies are not supported; reply to the thread's first comment"}]),
            );
        }
        let Some(body) = json.get("body").and_then(Value::as_str) else {
            return missing_field("PullRequestReviewComment", "body");
        };
        let (path, line, commit_id, parent_id) = (
            parent.path.clone(),
            parent.line,
            parent.commit_id.clone(),
            parent.id,
        );
        let new_id = self.id();
        let review_id = self.id();
        let viewer = self.viewer.clone();
        self.review_comments.push(ReviewCommentRec {
            id: new_id,
            pr: n,
            user: viewer,
            body: body.to_string(),
            path,
            line,
            commit_id,
            in_reply_to_id: Some(parent_id),
            review_id,
            created_at: now(),
        });
        match self.review_comments.iter().find(|c| c.id == new_id) {
            Some(c) => Out::json(201, self.review_comment_json(c)),
            None => not_found(),
        }
    }

    pub(super) fn head_sha(&self, pr: u64) -> String {
        self.issues
            .get(&pr)
            .and_then(|i| i.pr.as_ref())
            .map(|p| p.head_sha.clone())
            .unwrap_or_default()
    }
}
