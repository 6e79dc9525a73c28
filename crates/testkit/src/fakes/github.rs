//! A fake GitHub REST API (`2022-11-28`) for tests: issues, issue comments, labels, pull requests
//! (sharing the issue number space), review comments and their replies, GitHub App installation
//! tokens, `Link` pagination, GitHub's validation errors, plus builders for signed webhook
//! deliveries shaped like GitHub's documented payloads.
//!
//! Every request goes through a [`Recorder`]: it is recorded, and an injected [`Fault`] is
//! honoured (`AfterApply` applies the request and answers the status anyway; `Before` and
//! `RateLimit` answer without applying). [`FakeGitHub::inject_response`] queues any canned answer
//! (such as GitHub's primary rate limit, a `403` with `x-ratelimit-remaining: 0`).
//!
//! Authentication is checked like GitHub does: `Authorization: Bearer <token>` (or `token
//! <token>`) must be the configured token or an unexpired installation token this fake issued,
//! else `401 Bad credentials`. `POST /app/installations/{id}/access_tokens` takes the App's RS256
//! JWT, verified against the configured public key (signature, `alg`, `iss`, `iat`, `exp` at most
//! ten minutes ahead).
//!
//! Differences from GitHub worth knowing: there is no git behind it (head SHAs are made up; move
//! them with [`FakeGitHub::push`]); everything the API writes is authored by one login
//! ([`FakeGitHub::set_viewer`], default `codemill-bot`); merging a PR into the default branch
//! closes the issues its body names with a closing keyword (`Closes #3`), as GitHub does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::Digest;

use super::{Fault, FaultKind, RecordedRequest, Recorder, fault_response, serve};

const DOCS: &str = "https://docs.github.com/rest";

/// How to start a [`FakeGitHub`].
#[derive(Debug, Clone)]
pub struct FakeGitHubOptions {
    /// The token accepted as `Bearer`; empty accepts none (App auth only).
    pub token: String,
    /// `(app_id, installation_id, public key PEM)`: enables App auth. The PEM may be
    /// `BEGIN PUBLIC KEY` (SPKI) or `BEGIN RSA PUBLIC KEY` (PKCS#1).
    pub app: Option<(u64, u64, String)>,
    /// The largest page served, whatever `per_page` asks (GitHub's own cap is 100); small values
    /// make tests page.
    pub page_size: usize,
    pub owner: String,
    pub repo: String,
}

impl Default for FakeGitHubOptions {
    fn default() -> Self {
        FakeGitHubOptions {
            token: "ghp_fake_token".into(),
            app: None,
            page_size: 100,
            owner: "o".into(),
            repo: "r".into(),
        }
    }
}

/// A running fake; the server stops when this is dropped.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    url: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

struct Shared {
    state: Mutex<FakeState>,
    recorder: Recorder,
}

/// A canned answer queued by [`FakeGitHub::inject_response`].
struct Canned {
    method: String,
    path: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

struct IssueRec {
    number: u64,
    id: u64,
    title: String,
    body: Option<String>,
    state: String,
    state_reason: Option<String>,
    labels: Vec<String>,
    assignees: Vec<String>,
    user: String,
    created_at: i64,
    updated_at: i64,
    closed_at: Option<i64>,
    pr: Option<PrRec>,
}

struct PrRec {
    head_ref: String,
    head_sha: String,
    base_ref: String,
    draft: bool,
    merged_at: Option<i64>,
    merged_by: Option<String>,
    merge_sha: Option<String>,
}

struct CommentRec {
    id: u64,
    issue: u64,
    user: String,
    body: String,
    created_at: i64,
    updated_at: i64,
}

struct ReviewCommentRec {
    id: u64,
    pr: u64,
    user: String,
    body: String,
    path: String,
    line: u32,
    commit_id: String,
    in_reply_to_id: Option<u64>,
    review_id: u64,
    created_at: i64,
}

struct FakeState {
    opts: FakeGitHubOptions,
    base: String,
    viewer: String,
    token_ttl_secs: i64,
    default_branch: String,
    auto_close: bool,
    next_number: u64,
    next_id: u64,
    issues: BTreeMap<u64, IssueRec>,
    comments: Vec<CommentRec>,
    review_comments: Vec<ReviewCommentRec>,
    /// Installation tokens issued, with their expiry (unix seconds).
    tokens: Vec<(String, i64)>,
    canned: Vec<Canned>,
}

/// An answer before it becomes a [`Response`].
struct Out {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

impl Out {
    fn json(status: u16, body: Value) -> Out {
        Out {
            status,
            body,
            headers: Vec::new(),
        }
    }
    fn empty(status: u16) -> Out {
        Out::json(status, Value::Null)
    }
}

fn err(status: u16, message: &str) -> Out {
    Out::json(
        status,
        json!({"message": message, "documentation_url": DOCS, "status": status.to_string()}),
    )
}

fn not_found() -> Out {
    err(404, "Not Found")
}

fn validation(errors: Value) -> Out {
    Out::json(
        422,
        json!({"message": "Validation Failed", "errors": errors, "documentation_url": DOCS, "status": "422"}),
    )
}

fn missing_field(resource: &str, field: &str) -> Out {
    validation(json!([{"resource": resource, "field": field, "code": "missing_field"}]))
}

impl FakeGitHub {
    /// Start the fake on 127.0.0.1 on a free port.
    pub async fn start(opts: FakeGitHubOptions) -> std::io::Result<FakeGitHub> {
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                opts,
                base: String::new(),
                viewer: "codemill-bot".into(),
                token_ttl_secs: 3600,
                default_branch: "main".into(),
                auto_close: true,
                next_number: 1,
                next_id: 1000,
                issues: BTreeMap::new(),
                comments: Vec::new(),
                review_comments: Vec::new(),
                tokens: Vec::new(),
                canned: Vec::new(),
            }),
            recorder: Recorder::default(),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (addr, handle) = serve(router).await?;
        let url = format!("http://{addr}");
        if let Ok(mut s) = shared.state.lock() {
            s.base = url.clone();
        }
        Ok(FakeGitHub {
            shared,
            url,
            handle,
        })
    }

    /// The API base URL (`api_url` of the settings), e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.shared)
    }

    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.requests()
    }

    pub fn clear_requests(&self) {
        self.shared.recorder.clear();
    }

    /// Queue a fault for the next request matching its method and path prefix.
    pub fn inject(&self, fault: Fault) {
        self.shared.recorder.inject(fault);
    }

    /// Answer the next request matching `method` and a path starting with `path` with this
    /// status, headers and JSON body, without applying it.
    pub fn inject_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: Value,
    ) {
        self.state().canned.push(Canned {
            method: method.to_string(),
            path: path.to_string(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        });
    }

    /// GitHub's primary rate limit on the next matching request: `403` with
    /// `x-ratelimit-remaining: 0` and `x-ratelimit-reset` `reset_in_secs` from now.
    pub fn inject_primary_rate_limit(&self, method: &str, path: &str, reset_in_secs: u64) {
        let reset = (now() + reset_in_secs as i64).to_string();
        self.inject_response(
            method,
            path,
            403,
            &[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-used", "5000"),
                ("x-ratelimit-reset", &reset),
                ("x-ratelimit-resource", "core"),
            ],
            json!({
                "message": "API rate limit exceeded for installation ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": "403"
            }),
        );
    }

    /// Lifetime of installation tokens issued from now on (GitHub: one hour).
    pub fn set_installation_token_ttl(&self, secs: i64) {
        self.state().token_ttl_secs = secs;
    }

    /// Revoke every installation token issued so far (the next request with one gets a 401).
    pub fn revoke_tokens(&self) {
        self.state().tokens.clear();
    }

    /// The login everything written through the API is authored by (default `codemill-bot`).
    pub fn set_viewer(&self, login: &str) {
        self.state().viewer = login.to_string();
    }

    /// The repository's default branch (default `main`): merges into it close linked issues.
    pub fn set_default_branch(&self, branch: &str) {
        self.state().default_branch = branch.to_string();
    }

    /// Whether a merge closes the issues named with a closing keyword in the PR body (default
    /// true, as on GitHub).
    pub fn set_auto_close_on_merge(&self, on: bool) {
        self.state().auto_close = on;
    }

    /// Create an issue as `author`; returns its number.
    pub fn add_issue(&self, title: &str, body: &str, labels: &[&str], author: &str) -> u64 {
        let mut s = self.state();
        s.create_issue(
            title,
            Some(body.to_string()),
            labels.iter().map(|l| l.to_string()).collect(),
            Vec::new(),
            author,
        )
    }

    /// A comment by `author` on issue or PR `number`; returns its id (0 if there is none).
    pub fn add_comment(&self, number: u64, author: &str, body: &str) -> u64 {
        let mut s = self.state();
        if !s.issues.contains_key(&number) {
            return 0;
        }
        s.add_comment(number, author, body)
    }

    pub fn add_label(&self, number: u64, label: &str) {
        if let Some(i) = self.state().issues.get_mut(&number)
            && !i.labels.iter().any(|l| l.eq_ignore_ascii_case(label))
        {
            i.labels.push(label.to_string());
        }
    }

    pub fn assign(&self, number: u64, login: &str) {
        if let Some(i) = self.state().issues.get_mut(&number)
            && !i.assignees.iter().any(|a| a.eq_ignore_ascii_case(login))
        {
            i.assignees.push(login.to_string());
        }
    }

    /// The issue (or PR-as-issue) JSON as `GET /repos/{o}/{r}/issues/{n}` answers it.
    pub fn issue(&self, number: u64) -> Option<Value> {
        let s = self.state();
        s.issues.get(&number).map(|i| s.issue_json(i))
    }

    /// The issue comments of issue or PR `number`, oldest first.
    pub fn comments(&self, number: u64) -> Vec<Value> {
        let s = self.state();
        s.comments
            .iter()
            .filter(|c| c.issue == number)
            .map(|c| s.comment_json(c))
            .collect()
    }

    pub fn labels(&self, number: u64) -> Vec<String> {
        self.state()
            .issues
            .get(&number)
            .map(|i| i.labels.clone())
            .unwrap_or_default()
    }

    /// Every PR, oldest first, as `GET /repos/{o}/{r}/pulls/{n}` answers it.
    pub fn prs(&self) -> Vec<Value> {
        let s = self.state();
        s.issues
            .values()
            .filter(|i| i.pr.is_some())
            .map(|i| s.pr_json(i, true))
            .collect()
    }

    pub fn pr(&self, number: u64) -> Option<Value> {
        let s = self.state();
        s.issues
            .get(&number)
            .filter(|i| i.pr.is_some())
            .map(|i| s.pr_json(i, true))
    }

    /// The open PR from branch `head`, else the newest PR from it.
    pub fn pr_by_head(&self, head: &str) -> Option<Value> {
        let s = self.state();
        let from_head: Vec<&IssueRec> = s
            .issues
            .values()
            .filter(|i| i.pr.as_ref().is_some_and(|p| p.head_ref == head))
            .collect();
        from_head
            .iter()
            .find(|i| i.state == "open")
            .or(from_head.last())
            .map(|i| s.pr_json(i, true))
    }

    /// A review comment by `author` on `path` line `line` of PR `pr`; returns its id (0 if the PR
    /// does not exist).
    pub fn add_review_comment(
        &self,
        pr: u64,
        author: &str,
        body: &str,
        path: &str,
        line: u32,
    ) -> u64 {
        let mut s = self.state();
        let Some(sha) = s
            .issues
            .get(&pr)
            .and_then(|i| i.pr.as_ref())
            .map(|p| p.head_sha.clone())
        else {
            return 0;
        };
        let id = s.id();
        let review_id = s.id();
        s.review_comments.push(ReviewCommentRec {
            id,
            pr,
            user: author.to_string(),
            body: body.to_string(),
            path: path.to_string(),
            line,
            commit_id: sha,
            in_reply_to_id: None,
            review_id,
            created_at: now(),
        });
        id
    }

    /// Every review comment of PR `pr`, oldest first.
    pub fn review_comments(&self, pr: u64) -> Vec<Value> {
        let s = self.state();
        s.review_comments
            .iter()
            .filter(|c| c.pr == pr)
            .map(|c| s.review_comment_json(c))
            .collect()
    }

    /// The review comments of PR `pr` that are replies (`in_reply_to_id` set), oldest first.
    pub fn review_comment_replies(&self, pr: u64) -> Vec<Value> {
        self.review_comments(pr)
            .into_iter()
            .filter(|c| c.get("in_reply_to_id").is_some())
            .collect()
    }

    /// A new commit on branch `head`: the open PRs from it get `sha` as their head.
    pub fn push(&self, head: &str, sha: &str) {
        for i in self.state().issues.values_mut() {
            if let Some(p) = i.pr.as_mut()
                && p.head_ref == head
                && i.state == "open"
            {
                p.head_sha = sha.to_string();
            }
        }
    }

    /// Mark a draft PR ready for review.
    pub fn ready(&self, pr: u64) {
        if let Some(p) = self.state().issues.get_mut(&pr).and_then(|i| i.pr.as_mut()) {
            p.draft = false;
        }
    }

    /// Merge an open PR as `octocat` (drafts too, as if marked ready first). False if it is not
    /// an open PR.
    pub fn merge(&self, pr: u64) -> bool {
        self.state().merge(pr, "octocat")
    }

    /// Close an open PR without merging. False if it is not an open PR.
    pub fn close(&self, pr: u64) -> bool {
        let mut s = self.state();
        let t = now();
        match s.issues.get_mut(&pr) {
            Some(i) if i.pr.is_some() && i.state == "open" => {
                i.state = "closed".into();
                i.closed_at = Some(t);
                i.updated_at = t;
                true
            }
            _ => false,
        }
    }

    // ---- webhook deliveries -------------------------------------------------------------------

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
    format!("sha256={}", super::hmac_sha256_hex(secret.as_bytes(), body))
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

// ---- the server ---------------------------------------------------------------------------------

fn lock(shared: &Shared) -> MutexGuard<'_, FakeState> {
    // A panicking test thread must not wedge every later request.
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = shared.recorder.record(&method, &uri, &headers, &body);
    if let Some(early) = fault.as_ref().and_then(fault_response) {
        return early;
    }
    let out = {
        let mut s = lock(&shared);
        s.answer(&method, &uri, &headers, &body)
    };
    if let Some(FaultKind::AfterApply(status)) = fault {
        return super::error_status(status);
    }
    respond(out)
}

fn respond(out: Out) -> Response {
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if out.body.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(out.body)).into_response()
    };
    let h = response.headers_mut();
    for (k, v) in out.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(k, v);
        }
    }
    h.insert(
        HeaderName::from_static("x-github-api-version-selected"),
        HeaderValue::from_static("2022-11-28"),
    );
    response
}

impl FakeState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn answer(&mut self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Out {
        let path = uri.path().to_string();
        if let Some(i) = self
            .canned
            .iter()
            .position(|c| c.method == method.as_str() && path.starts_with(&c.path))
        {
            let c = self.canned.remove(i);
            return Out {
                status: c.status,
                body: c.body,
                headers: c.headers,
            };
        }
        if let Some(v) = headers
            .get("x-github-api-version")
            .and_then(|v| v.to_str().ok())
            && v != "2022-11-28"
            && v != "2026-03-10"
        {
            return err(
                400,
                &format!("'{v}' is not a supported version for the 'X-GitHub-Api-Version' header."),
            );
        }
        let json: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return err(400, "Problems parsing JSON"),
            }
        };
        let query: BTreeMap<String, String> = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|q| q.0.into_iter().collect())
            .unwrap_or_default();
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .or_else(|| v.strip_prefix("token "))
            })
            .map(str::trim)
            .unwrap_or_default()
            .to_string();

        if let ["app", "installations", id, "access_tokens"] = seg.as_slice() {
            if *method != Method::POST {
                return not_found();
            }
            return self.access_token(id, &bearer);
        }
        let installation = self.valid_installation_token(&bearer);
        if !installation && (self.opts.token.is_empty() || bearer != self.opts.token) {
            return err(401, "Bad credentials");
        }
        if seg.as_slice() == ["user"] && *method == Method::GET {
            if installation {
                return err(403, "Resource not accessible by integration");
            }
            return Out::json(200, user_json(&self.viewer));
        }
        let ["repos", owner, repo, rest @ ..] = seg.as_slice() else {
            return not_found();
        };
        if !owner.eq_ignore_ascii_case(&self.opts.owner)
            || !repo.eq_ignore_ascii_case(&self.opts.repo)
        {
            return not_found();
        }
        let m = method.clone();
        let num = |s: &str| s.parse::<u64>().ok();
        match (m, rest) {
            (Method::GET, ["issues"]) => self.list_issues(&path, &query),
            (Method::POST, ["issues"]) => self.post_issue(&json),
            (Method::GET, ["issues", "comments", id]) => {
                match num(id).and_then(|id| self.comments.iter().find(|c| c.id == id)) {
                    Some(c) => Out::json(200, self.comment_json(c)),
                    None => not_found(),
                }
            }
            (Method::PATCH, ["issues", "comments", id]) => self.patch_comment(num(id), &json),
            (Method::DELETE, ["issues", "comments", id]) => {
                let before = self.comments.len();
                self.comments.retain(|c| Some(c.id) != num(id));
                if self.comments.len() == before {
                    not_found()
                } else {
                    Out::empty(204)
                }
            }
            (Method::GET, ["issues", n]) => match num(n).and_then(|n| self.issues.get(&n)) {
                Some(i) => Out::json(200, self.issue_json(i)),
                None => not_found(),
            },
            (Method::PATCH, ["issues", n]) => self.patch_issue(num(n), &json),
            (Method::GET, ["issues", n, "comments"]) => match num(n) {
                Some(n) if self.issues.contains_key(&n) => {
                    let items = self
                        .comments
                        .iter()
                        .filter(|c| c.issue == n)
                        .map(|c| self.comment_json(c))
                        .collect();
                    self.page(items, &path, &query)
                }
                _ => not_found(),
            },
            (Method::POST, ["issues", n, "comments"]) => match num(n) {
                Some(n) if self.issues.contains_key(&n) => {
                    let Some(text) = json.get("body").and_then(Value::as_str) else {
                        return missing_field("IssueComment", "body");
                    };
                    let viewer = self.viewer.clone();
                    let id = self.add_comment(n, &viewer, text);
                    match self.comments.iter().find(|c| c.id == id) {
                        Some(c) => Out::json(201, self.comment_json(c)),
                        None => not_found(),
                    }
                }
                _ => not_found(),
            },
            (Method::GET, ["issues", n, "labels"]) => {
                match num(n).and_then(|n| self.issues.get(&n)) {
                    Some(i) => {
                        let items = i.labels.iter().map(|l| label_json(l)).collect();
                        self.page(items, &path, &query)
                    }
                    None => not_found(),
                }
            }
            (Method::POST | Method::PUT, ["issues", n, "labels"]) => {
                let replace = *method == Method::PUT;
                self.put_labels(num(n), &json, replace)
            }
            (Method::DELETE, ["issues", n, "labels", name]) => {
                match num(n).and_then(|n| self.issues.get_mut(&n)) {
                    Some(i) => {
                        let before = i.labels.len();
                        i.labels.retain(|l| !l.eq_ignore_ascii_case(name));
                        if i.labels.len() == before {
                            err(404, "Label does not exist")
                        } else {
                            i.updated_at = now();
                            Out::json(
                                200,
                                Value::Array(i.labels.iter().map(|l| label_json(l)).collect()),
                            )
                        }
                    }
                    None => not_found(),
                }
            }
            (Method::GET, ["pulls"]) => self.list_pulls(&path, &query),
            (Method::POST, ["pulls"]) => self.post_pull(&json),
            (Method::GET, ["pulls", n]) => match num(n)
                .and_then(|n| self.issues.get(&n))
                .filter(|i| i.pr.is_some())
            {
                Some(i) => Out::json(200, self.pr_json(i, true)),
                None => not_found(),
            },
            (Method::PATCH, ["pulls", n]) => self.patch_pull(num(n), &json),
            (Method::PUT, ["pulls", n, "merge"]) => self.put_merge(num(n)),
            (Method::GET, ["pulls", n, "comments"]) => {
                match num(n).filter(|n| self.issues.get(n).is_some_and(|i| i.pr.is_some())) {
                    Some(n) => {
                        let items = self
                            .review_comments
                            .iter()
                            .filter(|c| c.pr == n)
                            .map(|c| self.review_comment_json(c))
                            .collect();
                        self.page(items, &path, &query)
                    }
                    None => not_found(),
                }
            }
            (Method::POST, ["pulls", n, "comments", id, "replies"]) => {
                self.post_reply(num(n), num(id), &json)
            }
            _ => not_found(),
        }
    }

    // ---- auth ----

    fn valid_installation_token(&self, bearer: &str) -> bool {
        let t = now();
        !bearer.is_empty()
            && self
                .tokens
                .iter()
                .any(|(token, expires)| token == bearer && *expires > t)
    }

    fn access_token(&mut self, id: &str, jwt: &str) -> Out {
        let Some((app_id, installation_id, public_pem)) = self.opts.app.clone() else {
            return err(401, "A JSON web token could not be decoded");
        };
        if let Err(message) = verify_app_jwt(jwt, app_id, &public_pem, now()) {
            return err(401, &message);
        }
        if id.parse::<u64>().ok() != Some(installation_id) {
            return not_found();
        }
        let n = self.id();
        let token = format!(
            "ghs_{}",
            &hex::encode(sha2::Sha256::digest(
                format!("{n}:{}", now_nanos()).as_bytes()
            ))[..36]
        );
        let expires = now() + self.token_ttl_secs;
        self.tokens.push((token.clone(), expires));
        Out::json(
            201,
            json!({
                "token": token,
                "expires_at": rfc3339(expires),
                "permissions": {"issues": "write", "pull_requests": "write", "contents": "write", "metadata": "read", "checks": "read"},
                "repository_selection": "selected"
            }),
        )
    }

    // ---- issues ----

    fn create_issue(
        &mut self,
        title: &str,
        body: Option<String>,
        labels: Vec<String>,
        assignees: Vec<String>,
        author: &str,
    ) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        let id = self.id();
        let t = now();
        self.issues.insert(
            number,
            IssueRec {
                number,
                id,
                title: title.to_string(),
                body,
                state: "open".into(),
                state_reason: None,
                labels,
                assignees,
                user: author.to_string(),
                created_at: t,
                updated_at: t,
                closed_at: None,
                pr: None,
            },
        );
        number
    }

    fn add_comment(&mut self, issue: u64, author: &str, body: &str) -> u64 {
        let id = self.id();
        let t = now();
        self.comments.push(CommentRec {
            id,
            issue,
            user: author.to_string(),
            body: body.to_string(),
            created_at: t,
            updated_at: t,
        });
        if let Some(i) = self.issues.get_mut(&issue) {
            i.updated_at = t;
        }
        id
    }

    fn list_issues(&self, path: &str, q: &BTreeMap<String, String>) -> Out {
        let state = q.get("state").map(String::as_str).unwrap_or("open");
        let labels: Vec<&str> = q
            .get("labels")
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut items: Vec<&IssueRec> = self
            .issues
            .values()
            .filter(|i| state == "all" || i.state == state)
            .filter(|i| {
                labels
                    .iter()
                    .all(|l| i.labels.iter().any(|x| x.eq_ignore_ascii_case(l)))
            })
            .filter(|i| match q.get("assignee").map(String::as_str) {
                None => true,
                Some("none") => i.assignees.is_empty(),
                Some("*") => !i.assignees.is_empty(),
                Some(who) => i.assignees.iter().any(|a| a.eq_ignore_ascii_case(who)),
            })
            .filter(|i| {
                q.get("creator")
                    .is_none_or(|c| i.user.eq_ignore_ascii_case(c))
            })
            .collect();
        // GitHub's default: newest first.
        items.sort_by_key(|i| std::cmp::Reverse(i.number));
        if q.get("direction").map(String::as_str) == Some("asc") {
            items.reverse();
        }
        let items = items.into_iter().map(|i| self.issue_json(i)).collect();
        self.page(items, path, q)
    }

    fn post_issue(&mut self, json: &Value) -> Out {
        let Some(title) = json
            .get("title")
            .and_then(|t| {
                t.as_str()
                    .map(str::to_string)
                    .or_else(|| t.as_u64().map(|n| n.to_string()))
            })
            .filter(|t| !t.trim().is_empty())
        else {
            return missing_field("Issue", "title");
        };
        let viewer = self.viewer.clone();
        let n = self.create_issue(
            &title,
            json.get("body").and_then(Value::as_str).map(str::to_string),
            strings(json.get("labels")),
            strings(json.get("assignees")),
            &viewer,
        );
        match self.issues.get(&n) {
            Some(i) => Out::json(201, self.issue_json(i)),
            None => not_found(),
        }
    }

    fn patch_issue(&mut self, n: Option<u64>, json: &Value) -> Out {
        let Some(i) = n.and_then(|n| self.issues.get_mut(&n)) else {
            return not_found();
        };
        let t = now();
        if let Some(title) = json.get("title").and_then(Value::as_str) {
            i.title = title.to_string();
        }
        if let Some(body) = json.get("body") {
            i.body = body.as_str().map(str::to_string);
        }
        if json.get("labels").is_some() {
            i.labels = strings(json.get("labels"));
        }
        if json.get("assignees").is_some() {
            i.assignees = strings(json.get("assignees"));
        }
        match json.get("state").and_then(Value::as_str) {
            Some("closed") if i.state != "closed" => {
                i.state = "closed".into();
                i.closed_at = Some(t);
                i.state_reason = Some(
                    json.get("state_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("completed")
                        .to_string(),
                );
            }
            Some("closed") => {
                if let Some(r) = json.get("state_reason").and_then(Value::as_str) {
                    i.state_reason = Some(r.to_string());
                }
            }
            Some("open") if i.state != "open" => {
                i.state = "open".into();
                i.closed_at = None;
                i.state_reason = Some("reopened".into());
            }
            Some("open") | None => {}
            Some(_) => {
                return validation(
                    json!([{"resource": "Issue", "field": "state", "code": "invalid"}]),
                );
            }
        }
        i.updated_at = t;
        let n = i.number;
        match self.issues.get(&n) {
            Some(i) => Out::json(200, self.issue_json(i)),
            None => not_found(),
        }
    }

    fn patch_comment(&mut self, id: Option<u64>, json: &Value) -> Out {
        let Some(body) = json.get("body").and_then(Value::as_str) else {
            return missing_field("IssueComment", "body");
        };
        let Some(c) = id.and_then(|id| self.comments.iter_mut().find(|c| c.id == id)) else {
            return not_found();
        };
        c.body = body.to_string();
        c.updated_at = now();
        let id = c.id;
        match self.comments.iter().find(|c| c.id == id) {
            Some(c) => Out::json(200, self.comment_json(c)),
            None => not_found(),
        }
    }

    fn put_labels(&mut self, n: Option<u64>, json: &Value, replace: bool) -> Out {
        // Both `{"labels": [...]}` and a bare array are documented.
        let names = if json.is_array() {
            strings(Some(json))
        } else {
            strings(json.get("labels"))
        };
        let Some(i) = n.and_then(|n| self.issues.get_mut(&n)) else {
            return not_found();
        };
        if replace {
            i.labels.clear();
        }
        for name in names {
            if !i.labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
                i.labels.push(name);
            }
        }
        i.updated_at = now();
        Out::json(
            200,
            Value::Array(i.labels.iter().map(|l| label_json(l)).collect()),
        )
    }

    // ---- pulls ----

    fn list_pulls(&self, path: &str, q: &BTreeMap<String, String>) -> Out {
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

    fn post_pull(&mut self, json: &Value) -> Out {
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

    fn patch_pull(&mut self, n: Option<u64>, json: &Value) -> Out {
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

    fn put_merge(&mut self, n: Option<u64>) -> Out {
        let Some(i) = n
            .and_then(|n| self.issues.get(&n))
            .filter(|i| i.pr.is_some())
        else {
            return not_found();
        };
        if i.state != "open" {
            return err(405, "Pull Request is not mergeable");
        }
        if i.pr.as_ref().is_some_and(|p| p.draft) {
            return err(405, "Pull Request is still a draft");
        }
        let number = i.number;
        let viewer = self.viewer.clone();
        self.merge(number, &viewer);
        let sha = self
            .issues
            .get(&number)
            .and_then(|i| i.pr.as_ref())
            .and_then(|p| p.merge_sha.clone());
        Out::json(
            200,
            json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
        )
    }

    fn merge(&mut self, n: u64, by: &str) -> bool {
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

    fn post_reply(&mut self, n: Option<u64>, id: Option<u64>, json: &Value) -> Out {
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

    fn head_sha(&self, pr: u64) -> String {
        self.issues
            .get(&pr)
            .and_then(|i| i.pr.as_ref())
            .map(|p| p.head_sha.clone())
            .unwrap_or_default()
    }

    // ---- pagination ----

    fn page(&self, items: Vec<Value>, path: &str, q: &BTreeMap<String, String>) -> Out {
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

    // ---- JSON shapes ----

    fn repo_url(&self) -> String {
        format!("{}/repos/{}/{}", self.base, self.opts.owner, self.opts.repo)
    }

    fn repository_json(&self) -> Value {
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

    fn installation_json(&self) -> Value {
        match &self.opts.app {
            Some((_, installation, _)) => {
                json!({"id": installation, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="})
            }
            None => Value::Null,
        }
    }

    fn issue_json(&self, i: &IssueRec) -> Value {
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
    fn pr_json(&self, i: &IssueRec, full: bool) -> Value {
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

    fn comment_json(&self, c: &CommentRec) -> Value {
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

    fn review_comment_json(&self, c: &ReviewCommentRec) -> Value {
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

fn user_json(login: &str) -> Value {
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

fn label_json(name: &str) -> Value {
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

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    x.as_str()
                        .or_else(|| x.get("name").and_then(Value::as_str))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn to_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Issue numbers a PR body closes: `close(s|d)`, `fix(es|ed)`, `resolve(s|d)` then `#N`.
fn closing_references(body: &str) -> Vec<u64> {
    const KEYWORDS: [&str; 9] = [
        "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
    ];
    let words: Vec<&str> = body.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| {
            let kw = w[0].trim_end_matches(':').to_ascii_lowercase();
            KEYWORDS.contains(&kw.as_str())
        })
        .filter_map(|w| {
            let rest = w[1].strip_prefix('#')?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn small_hash(s: &str) -> u64 {
    // FNV-1a: stable ids for logins and labels.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h % 100_000_000
}

fn fake_sha(seed: &str) -> String {
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..40].to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Unix seconds as `2011-04-14T16:00:49Z`.
fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Everything but ASCII alphanumerics and `-._~` (RFC 3986 unreserved) is escaped.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

// ---- the App JWT: RS256 verified against the App's public key -----------------------------------

/// Check an App JWT as GitHub does; the error is GitHub's message.
fn verify_app_jwt(jwt: &str, app_id: u64, public_pem: &str, now: i64) -> Result<(), String> {
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    let undecodable = || "A JSON web token could not be decoded".to_string();
    let expired = || {
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string()
    };
    let key = DecodingKey::from_rsa_pem(public_pem.as_bytes())
        .map_err(|_| "fake GitHub: unusable App public key".to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    // GitHub allows no grace on `exp`; `iss` may be a number, so it is checked below.
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<Value>(jwt, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidSignature => "A JSON web token could not be decoded (signature does not match the App's public key)".into(),
                ErrorKind::ExpiredSignature => expired(),
                ErrorKind::MissingRequiredClaim(_) => {
                    "'Issued at' and 'Expiration time' claims are required".into()
                }
                ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) => {
                    "fake GitHub: unusable App public key".into()
                }
                _ => undecodable(),
            });
        }
    };
    let iss = claims.get("iss").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse::<u64>().ok()))
    });
    if iss != Some(app_id) {
        return Err(format!(
            "'Issuer' claim ('iss') must be an Integer or a String representing the App ID {app_id}"
        ));
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return Err("'Issued at' and 'Expiration time' claims are required".into());
    };
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past".into(),
        );
    }
    if exp <= now {
        return Err(expired());
    }
    if exp > now + 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_302_796_849), "2011-04-14T16:00:49Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("a b/c:é"), "a%20b%2Fc%3A%C3%A9");
        assert_eq!(percent_decode("codemill%3Arunning"), "codemill:running");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%C3%A9"), "%zzé");
    }

    #[test]
    fn closing_keywords_are_found() {
        assert_eq!(
            closing_references("Closes #3. Also fixes: #12 and see #4"),
            vec![3, 12]
        );
    }
}
