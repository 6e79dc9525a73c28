//! Webhook deliveries shaped like GitHub's documented payloads (`issues`, `pull_request`,
//! `pull_request_review`, review comments, `check_run`, `status`, `ping`) and the headers and
//! `X-Hub-Signature-256` GitHub sends with them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use sha2::Digest;

use super::render::{label_json, user_json};
use super::{FakeGitHub, fake_sha, now, now_nanos, rfc3339, to_bytes};

impl FakeGitHub {
    /// `issues` / `labeled`: `sender` put `label` on issue `number` (the state is not changed;
    /// see [`FakeGitHub::add_label`]).
    pub fn issues_labeled(&self, number: u64, label: &str, sender: &str) -> Vec<u8> {
        let s = self.state();
        let issue = s.issues.get(&number).map(|i| s.issue_json(i));
        to_bytes(json!({
            "action": "labeled",
            "issue": issue,
            "label": label_json(label),
            "repository": s.repository_json(),
            "sender": user_json(sender),
            "installation": s.installation_json(),
        }))
    }

    /// `issue_comment` / `created`: `author` commented `body` on issue `number` (the comment is
    /// added to the fake too).
    pub fn issue_commented(&self, number: u64, author: &str, body: &str) -> Vec<u8> {
        let id = self.add_comment(number, author, body);
        let s = self.state();
        let issue = s.issues.get(&number).map(|i| s.issue_json(i));
        let comment = s
            .comments
            .iter()
            .find(|c| c.id == id)
            .map(|c| s.comment_json(c));
        to_bytes(json!({
            "action": "created",
            "issue": issue,
            "comment": comment,
            "repository": s.repository_json(),
            "sender": user_json(author),
            "installation": s.installation_json(),
        }))
    }

    /// `issues` / `assigned`: `sender` assigned `assignee` to issue `number`.
    pub fn issues_assigned(&self, number: u64, assignee: &str, sender: &str) -> Vec<u8> {
        let s = self.state();
        let issue = s.issues.get(&number).map(|i| s.issue_json(i));
        to_bytes(json!({
            "action": "assigned",
            "issue": issue,
            "assignee": user_json(assignee),
            "repository": s.repository_json(),
            "sender": user_json(sender),
            "installation": s.installation_json(),
        }))
    }

    /// `pull_request_review_comment` / `created` for a review comment this fake holds (see
    /// [`FakeGitHub::add_review_comment`]); the sender is the comment's author.
    pub fn review_comment_created(&self, pr: u64, comment_id: u64) -> Vec<u8> {
        let s = self.state();
        let comment = s
            .review_comments
            .iter()
            .find(|c| c.id == comment_id && c.pr == pr);
        let sender = comment.map(|c| c.user.as_str()).unwrap_or("octocat");
        to_bytes(json!({
            "action": "created",
            "comment": comment.map(|c| s.review_comment_json(c)),
            "pull_request": s.issues.get(&pr).filter(|i| i.pr.is_some()).map(|i| s.pr_json(i, true)),
            "repository": s.repository_json(),
            "sender": user_json(sender),
            "installation": s.installation_json(),
        }))
    }

    /// `pull_request_review` / `submitted` by `user` with `state` (`changes_requested`,
    /// `approved`, `commented`) and an optional body.
    pub fn review_submitted(
        &self,
        pr: u64,
        state: &str,
        body: Option<&str>,
        user: &str,
    ) -> Vec<u8> {
        let mut s = self.state();
        let id = s.id();
        let pr_json = s
            .issues
            .get(&pr)
            .filter(|i| i.pr.is_some())
            .map(|i| s.pr_json(i, true));
        let sha = s.head_sha(pr);
        let (o, r) = (s.opts.owner.clone(), s.opts.repo.clone());
        to_bytes(json!({
            "action": "submitted",
            "review": {
                "id": id,
                "node_id": format!("PRR_{id}"),
                "user": user_json(user),
                "body": body,
                "commit_id": sha,
                "submitted_at": rfc3339(now()),
                "state": state.to_ascii_lowercase(),
                "html_url": format!("https://github.com/{o}/{r}/pull/{pr}#pullrequestreview-{id}"),
                "pull_request_url": format!("{}/repos/{o}/{r}/pulls/{pr}", s.base),
                "author_association": "COLLABORATOR",
                "_links": {
                    "html": {"href": format!("https://github.com/{o}/{r}/pull/{pr}#pullrequestreview-{id}")},
                    "pull_request": {"href": format!("{}/repos/{o}/{r}/pulls/{pr}", s.base)}
                }
            },
            "pull_request": pr_json,
            "repository": s.repository_json(),
            "sender": user_json(user),
            "installation": s.installation_json(),
        }))
    }

    /// `check_run` / `completed` with `conclusion` (`failure`, `timed_out`, `success`, ...) on
    /// PR `pr`'s head commit, by GitHub Actions.
    pub fn check_run_completed(
        &self,
        pr: u64,
        conclusion: &str,
        name: &str,
        summary: &str,
    ) -> Vec<u8> {
        let mut s = self.state();
        let id = s.id();
        let suite = s.id();
        let sha = s.head_sha(pr);
        let (o, r) = (s.opts.owner.clone(), s.opts.repo.clone());
        let base = s.base.clone();
        let (head_ref, base_ref) = s
            .issues
            .get(&pr)
            .and_then(|i| i.pr.as_ref())
            .map(|p| (p.head_ref.clone(), p.base_ref.clone()))
            .unwrap_or_default();
        let repo_ref = json!({"id": 1, "url": format!("{base}/repos/{o}/{r}"), "name": r});
        let t = rfc3339(now());
        to_bytes(json!({
            "action": "completed",
            "check_run": {
                "id": id,
                "node_id": format!("CR_{id}"),
                "head_sha": sha,
                "external_id": "",
                "url": format!("{base}/repos/{o}/{r}/check-runs/{id}"),
                "html_url": format!("https://github.com/{o}/{r}/runs/{id}"),
                "details_url": format!("https://github.com/{o}/{r}/runs/{id}"),
                "status": "completed",
                "conclusion": conclusion,
                "started_at": t,
                "completed_at": t,
                "name": name,
                "output": {
                    "title": null,
                    "summary": summary,
                    "text": null,
                    "annotations_count": 0,
                    "annotations_url": format!("{base}/repos/{o}/{r}/check-runs/{id}/annotations")
                },
                "check_suite": {"id": suite, "head_branch": head_ref, "head_sha": sha, "status": "completed", "conclusion": conclusion},
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions", "owner": user_json("github")},
                "pull_requests": [{
                    "url": format!("{base}/repos/{o}/{r}/pulls/{pr}"),
                    "id": pr + 500_000,
                    "number": pr,
                    "head": {"ref": head_ref, "sha": sha, "repo": repo_ref},
                    "base": {"ref": base_ref, "sha": fake_sha(&format!("base:{base_ref}")), "repo": repo_ref}
                }]
            },
            "repository": s.repository_json(),
            "sender": user_json("github-actions[bot]"),
            "installation": s.installation_json(),
        }))
    }

    /// A commit `status` event on branch `head` (`failure`, `error`, `success`, `pending`).
    pub fn status_event(
        &self,
        head: &str,
        state: &str,
        context: &str,
        description: &str,
    ) -> Vec<u8> {
        let mut s = self.state();
        let id = s.id();
        let sha = s
            .issues
            .values()
            .filter_map(|i| i.pr.as_ref())
            .rfind(|p| p.head_ref == head)
            .map(|p| p.head_sha.clone())
            .unwrap_or_else(|| fake_sha(head));
        let (o, r) = (s.opts.owner.clone(), s.opts.repo.clone());
        let base = s.base.clone();
        let t = rfc3339(now());
        to_bytes(json!({
            "id": id,
            "sha": sha,
            "name": format!("{o}/{r}"),
            "target_url": format!("https://ci.example.com/builds/{id}"),
            "context": context,
            "description": description,
            "state": state,
            "commit": {"sha": sha, "url": format!("{base}/repos/{o}/{r}/commits/{sha}")},
            "branches": [{"name": head, "commit": {"sha": sha, "url": format!("{base}/repos/{o}/{r}/commits/{sha}")}, "protected": false}],
            "created_at": t,
            "updated_at": t,
            "repository": s.repository_json(),
            "sender": user_json("ci-bot"),
            "installation": s.installation_json(),
        }))
    }

    /// `pull_request` / `closed` for PR `pr`, merged or not (the state is not changed; see
    /// [`FakeGitHub::merge`] and [`FakeGitHub::close`]). The sender is whoever merged it, else
    /// `octocat`.
    pub fn pull_request_closed(&self, pr: u64, merged: bool) -> Vec<u8> {
        let s = self.state();
        let rec = s.issues.get(&pr).filter(|i| i.pr.is_some());
        let mut pr_json = rec.map(|i| s.pr_json(i, true)).unwrap_or(Value::Null);
        let t = rfc3339(now());
        if let Some(obj) = pr_json.as_object_mut() {
            obj.insert("state".into(), json!("closed"));
            obj.insert("merged".into(), json!(merged));
            obj.entry("closed_at").and_modify(|v| {
                if v.is_null() {
                    *v = json!(t)
                }
            });
            if merged {
                obj.entry("merged_at").and_modify(|v| {
                    if v.is_null() {
                        *v = json!(t)
                    }
                });
            } else {
                obj.insert("merged_at".into(), Value::Null);
            }
        }
        let sender = rec
            .and_then(|i| i.pr.as_ref())
            .and_then(|p| p.merged_by.clone())
            .unwrap_or_else(|| "octocat".into());
        to_bytes(json!({
            "action": "closed",
            "number": pr,
            "pull_request": pr_json,
            "repository": s.repository_json(),
            "sender": user_json(&sender),
            "installation": s.installation_json(),
        }))
    }

    /// `ping`, sent when a webhook is created.
    pub fn ping(&self) -> Vec<u8> {
        let s = self.state();
        to_bytes(json!({
            "zen": "Keep it logically awesome.",
            "hook_id": 4242,
            "hook": {"type": "Repository", "id": 4242, "active": true, "events": ["*"], "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://codemill.example.com/webhooks/github"}},
            "repository": s.repository_json(),
            "sender": user_json("octocat"),
        }))
    }
}

/// `sha256=<hex>`: the `X-Hub-Signature-256` value GitHub sends for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        crate::fakes::hmac_sha256_hex(secret.as_bytes(), body)
    )
}

/// The headers GitHub sends with a delivery: `Content-Type`, `User-Agent`, `X-GitHub-Event`,
/// a fresh `X-GitHub-Delivery` GUID and `X-Hub-Signature-256`.
pub fn webhook_headers(event: &str, secret: &str, body: &[u8]) -> Vec<(String, String)> {
    static DELIVERIES: AtomicU64 = AtomicU64::new(1);
    let n = DELIVERIES.fetch_add(1, Ordering::Relaxed);
    let h = hex::encode(sha2::Sha256::digest(
        format!("{n}:{}", now_nanos()).as_bytes(),
    ));
    let guid = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    vec![
        ("content-type".into(), "application/json".into()),
        ("user-agent".into(), "GitHub-Hookshot/fake".into()),
        ("x-github-event".into(), event.into()),
        ("x-github-delivery".into(), guid),
        ("x-hub-signature-256".into(), sign(secret, body)),
    ]
}
