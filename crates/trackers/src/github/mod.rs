//! GitHub as tracker (the issues of one repository) and forge (its pull requests), over the REST
//! API (`2022-11-28`), authenticated by a token or as a GitHub App installation; plus webhook
//! verification and reading ([`verify_webhook`], [`parse_webhook`]).
//!
//! Every write looks before it acts: comments and replies are found by their hidden marker, PRs
//! by their head branch, backlog issues by the marker in their body, so an operation retried
//! after a 5xx that had in fact been applied creates nothing twice.

mod auth;
mod hooks;
mod merge;

use std::sync::Arc;

use codemill_core::config::vendors::GithubSettings;
use codemill_core::pipeline::TicketStatus;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Value, json};

use crate::http::{Answer, HttpClient, Req, RetryPolicy, retry_op};
use crate::json::{body_has, id_string, not_found, str_at};
use crate::{
    Env, Error, Forge, Issue, IssueComment, PrRequest, PullRequest, ReplyTo, Result, Tracker,
    has_codemill_marker, html_marker, secret_from,
};

pub use crate::landing::{BranchTip, CheckState, MergeAnswer};
pub use hooks::{parse_webhook, verify_webhook};

use auth::{AppAuth, Credentials};

pub(crate) const VENDOR: &str = "github";
/// GitHub's documented media type; sent on every request.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.github+json";
/// The REST API version codemill is written against.
pub(crate) const API_VERSION: &str = "2022-11-28";
/// The label of issues codemill creates from review findings.
const BACKLOG_LABEL: &str = "codemill:backlog";
/// GitHub's largest page.
const PER_PAGE: &str = "100";
/// Guards against a `Link` header that never ends.
const MAX_PAGES: usize = 1000;

/// The GitHub client: cheap to clone; clones share the HTTP client, its rate-limit hold and the
/// cached App installation token.
#[derive(Clone)]
pub struct GitHub {
    http: HttpClient,
    credentials: Credentials,
    owner: String,
    repo: String,
    settings: Arc<GithubSettings>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.http.base())
            .field("repo", &format_args!("{}/{}", self.owner, self.repo))
            .field("auth", &self.credentials)
            .finish()
    }
}

impl GitHub {
    /// Token auth (Bearer from `settings.token_env`) or App auth (`settings.app`: an RS256 JWT
    /// exchanged for an installation token, cached until 60 s before it expires).
    pub fn new(settings: &GithubSettings, env: Env<'_>, policy: RetryPolicy) -> Result<GitHub> {
        let (owner, repo) = split_repo(&settings.repo)?;
        let credentials = match (&settings.token_env, &settings.app) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "github: set either github.token_env or github.app, not both".into(),
                ));
            }
            (Some(name), None) => {
                Credentials::Token(secret_from(env, VENDOR, "github.token_env", name)?)
            }
            (None, Some(app)) => Credentials::App(Arc::new(AppAuth::new(app, env)?)),
            (None, None) => {
                return Err(Error::Config(
                    "github: no credentials: set github.token_env or github.app".into(),
                ));
            }
        };
        let http = HttpClient::new(VENDOR, &settings.api_url, policy)?;
        Ok(GitHub {
            http,
            credentials,
            owner,
            repo,
            settings: Arc::new(settings.clone()),
        })
    }

    /// The token git pushes and fetches with: the configured token, or the App's current
    /// installation token (valid for at least another minute).
    pub async fn git_token(&self) -> Result<secrecy::SecretString> {
        match &self.credentials {
            Credentials::Token(token) => Ok(token.clone()),
            Credentials::App(app) => app.token(&self.http).await,
        }
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.repo)
    }

    /// Send one request with GitHub's headers and the current credentials. An installation
    /// token GitHub refuses (revoked before its time) is replaced once.
    async fn send(&self, req: Req) -> Result<Answer> {
        let req = req
            .header("accept", MEDIA_TYPE)
            .header("x-github-api-version", API_VERSION);
        let auth = self.credentials.auth(&self.http).await?;
        let result = self.http.send(&req, &auth).await;
        if let (Err(Error::Status { status: 401, .. }), Credentials::App(app)) =
            (&result, &self.credentials)
        {
            app.invalidate().await;
            let auth = self.credentials.auth(&self.http).await?;
            return self.http.send(&req, &auth).await;
        }
        result
    }

    /// Every item of a list endpoint, following `Link: rel="next"`.
    async fn get_all(&self, first: Req) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut req = first;
        for _ in 0..MAX_PAGES {
            let path = req.path.clone();
            let answer = self.send(req).await?;
            let next = answer.next_link();
            match answer.body {
                Value::Array(page) => items.extend(page),
                _ => {
                    return Err(Error::Protocol {
                        vendor: VENDOR,
                        message: format!("GET {path}: expected a JSON array"),
                    });
                }
            }
            let Some(next) = next else {
                return Ok(items);
            };
            // The token goes wherever the link points: only ever to the configured API.
            if !next.starts_with(&format!("{}/", self.http.base())) {
                return Err(Error::Protocol {
                    vendor: VENDOR,
                    message: format!("GET {path}: the next page link leaves the API host"),
                });
            }
            req = Req::get(next);
        }
        Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    async fn issue_json(&self, number: u64) -> Result<Value> {
        let path = self.repo_path(&format!("/issues/{number}"));
        let answer = self.send(Req::get(&path)).await.map_err(|e| {
            not_found(e, || {
                format!(
                    "github: issue #{number} not found in {}/{}",
                    self.owner, self.repo
                )
            })
        })?;
        Ok(answer.body)
    }

    async fn issue_comments(&self, number: u64) -> Result<Vec<Value>> {
        self.get_all(
            Req::get(self.repo_path(&format!("/issues/{number}/comments")))
                .query("per_page", PER_PAGE),
        )
        .await
    }

    async fn open_pr_by_head(&self, head: &str) -> Result<Option<PullRequest>> {
        let answer = self
            .send(
                Req::get(self.repo_path("/pulls"))
                    .query("head", format!("{}:{head}", self.owner))
                    .query("state", "open"),
            )
            .await?;
        let path = self.repo_path("/pulls");
        match answer.body.as_array() {
            Some(list) => list
                .iter()
                .find(|pr| str_at(pr, &["head", "ref"]) == Some(head))
                .map(|pr| to_pull_request(pr, &path))
                .transpose(),
            None => Err(Error::Protocol {
                vendor: VENDOR,
                message: format!("GET {path}: expected a JSON array"),
            }),
        }
    }

    async fn open_pr_once(&self, pr: &PrRequest<'_>) -> Result<PullRequest> {
        if let Some(found) = self.open_pr_by_head(pr.head).await? {
            return Ok(found);
        }
        let path = self.repo_path("/pulls");
        let body = json!({
            "title": pr.title,
            "head": pr.head,
            "base": pr.base,
            "body": pr.body,
            "draft": pr.draft,
        });
        match self.send(Req::post(&path, body)).await {
            Ok(answer) => to_pull_request(&answer.body, &path),
            // Someone (or an earlier attempt of ours) opened it between look-up and create.
            Err(Error::Status { status: 422, body, .. })
                if body.contains("A pull request already exists") =>
            {
                self.open_pr_by_head(pr.head).await?.ok_or_else(|| Error::Protocol {
                    vendor: VENDOR,
                    message: format!(
                        "POST {path}: GitHub says a pull request from {} already exists, but none is open",
                        pr.head
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn reply_once(
        &self,
        number: u64,
        to: &ReplyTo<'_>,
        marker: &str,
        body: &str,
    ) -> Result<()> {
        let hidden = html_marker(marker);
        match to {
            ReplyTo::ReviewComment(id) => {
                let id = id.trim();
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::NotFound(format!(
                        "github: review comment id {id:?} on PR #{number} is not a number"
                    )));
                }
                let existing = self
                    .get_all(
                        Req::get(self.repo_path(&format!("/pulls/{number}/comments")))
                            .query("per_page", PER_PAGE),
                    )
                    .await?;
                if existing.iter().any(|c| body_has(c, &hidden)) {
                    return Ok(());
                }
                let path = self.repo_path(&format!("/pulls/{number}/comments/{id}/replies"));
                self.send(Req::post(path, json!({ "body": body }))).await?;
            }
            ReplyTo::Conversation => {
                let existing = self.issue_comments(number).await?;
                if existing.iter().any(|c| body_has(c, &hidden)) {
                    return Ok(());
                }
                let path = self.repo_path(&format!("/issues/{number}/comments"));
                self.send(Req::post(path, json!({ "body": body }))).await?;
            }
        }
        Ok(())
    }

    async fn upsert_once(&self, number: u64, hidden: &str, body: &str) -> Result<()> {
        let comments = self.issue_comments(number).await?;
        if let Some(existing) = comments.iter().find(|c| body_has(c, hidden)) {
            if str_at(existing, &["body"]) == Some(body) {
                return Ok(());
            }
            let Some(id) = existing.get("id").and_then(Value::as_u64) else {
                return Err(Error::Protocol {
                    vendor: VENDOR,
                    message: format!("issue #{number}: a comment without a numeric `id`"),
                });
            };
            // Replacing a comment's body is safe to repeat.
            let req = Req::patch(
                self.repo_path(&format!("/issues/comments/{id}")),
                json!({ "body": body }),
            )
            .idempotent();
            self.send(req).await?;
            return Ok(());
        }
        self.send(Req::post(
            self.repo_path(&format!("/issues/{number}/comments")),
            json!({ "body": body }),
        ))
        .await?;
        Ok(())
    }

    async fn create_linked_once(
        &self,
        key: &str,
        hidden: &str,
        title: &str,
        body: &str,
        label: &str,
    ) -> Result<String> {
        let backlog = self
            .get_all(
                Req::get(self.repo_path("/issues"))
                    .query("state", "all")
                    .query("labels", label)
                    .query("per_page", PER_PAGE),
            )
            .await?;
        if let Some(found) = backlog
            .iter()
            .filter(|i| i.get("pull_request").is_none())
            .find(|i| body_has(i, hidden))
            .and_then(|i| i.get("number").and_then(Value::as_u64))
        {
            return Ok(found.to_string());
        }
        let path = self.repo_path("/issues");
        let answer = self
            .send(Req::post(
                &path,
                json!({ "title": title, "body": body, "labels": [label] }),
            ))
            .await?;
        answer
            .body
            .get("number")
            .and_then(Value::as_u64)
            .map(|n| n.to_string())
            .ok_or_else(|| Error::Protocol {
                vendor: VENDOR,
                message: format!("POST {path} (for {key}): the answer has no `number`"),
            })
    }
}

impl Tracker for GitHub {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn triggered(&self) -> Result<Vec<String>> {
        let list = |filter: &str, value: &str| {
            Req::get(self.repo_path("/issues"))
                .query("state", "open")
                .query(filter, value)
                .query("per_page", PER_PAGE)
        };
        let mut items = self
            .get_all(list("labels", &self.settings.trigger_label))
            .await?;
        // Ideas to refine are found the same way: GitHub's `labels` filter is an AND.
        items.extend(
            self.get_all(list("labels", &self.settings.refine_label))
                .await?,
        );
        if let Some(login) = &self.settings.trigger_assignee {
            items.extend(self.get_all(list("assignee", login)).await?);
        }
        let mut numbers: Vec<u64> = items
            .iter()
            .filter(|i| i.get("pull_request").is_none())
            .filter_map(|i| i.get("number").and_then(Value::as_u64))
            .collect();
        // Oldest first, each once (an issue can be both labelled and assigned).
        numbers.sort_unstable();
        numbers.dedup();
        Ok(numbers.into_iter().map(|n| n.to_string()).collect())
    }

    async fn issue(&self, key: &str) -> Result<Issue> {
        let number = issue_number(key)?;
        let raw = self.issue_json(number).await?;
        if raw.get("pull_request").is_some() {
            return Err(Error::NotFound(format!(
                "github: #{number} in {}/{} is a pull request, not an issue",
                self.owner, self.repo
            )));
        }
        let path = self.repo_path(&format!("/issues/{number}"));
        let bot = self.settings.bot_login.as_deref();
        let comments = self
            .issue_comments(number)
            .await?
            .iter()
            .map(|c| {
                let author = str_at(c, &["user", "login"])
                    .unwrap_or_default()
                    .to_string();
                let body = str_at(c, &["body"]).unwrap_or_default().to_string();
                let by_bot = bot.is_some_and(|b| b.eq_ignore_ascii_case(&author));
                IssueComment {
                    id: c.get("id").map(id_string).unwrap_or_default(),
                    by_codemill: by_bot || has_codemill_marker(&body),
                    author,
                    body,
                }
            })
            .collect();
        let names = |field: &str, inner: &str| -> Vec<String> {
            raw.get(field)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.get(inner).and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (Some(title), Some(state)) = (str_at(&raw, &["title"]), str_at(&raw, &["state"]))
        else {
            return Err(Error::Protocol {
                vendor: VENDOR,
                message: format!("GET {path}: the issue has no `title` or `state`"),
            });
        };
        Ok(Issue {
            key: number.to_string(),
            number,
            url: str_at(&raw, &["html_url"]).unwrap_or_default().to_string(),
            title: title.to_string(),
            body: str_at(&raw, &["body"]).unwrap_or_default().to_string(),
            acceptance_criteria: None,
            status: state.to_string(),
            labels: names("labels", "name"),
            assignees: names("assignees", "login"),
            comments,
            links: Vec::new(),
            subtasks: Vec::new(),
        })
    }

    async fn upsert_comment(&self, key: &str, marker: &str, markdown: &str) -> Result<()> {
        let number = issue_number(key)?;
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\n{hidden}");
        retry_op(self.http.policy(), || {
            self.upsert_once(number, &hidden, &body)
        })
        .await
    }

    async fn set_labels(&self, key: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        let number = issue_number(key)?;
        let raw = self.issue_json(number).await?;
        let present: Vec<String> = raw
            .get("labels")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.get("name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // GitHub label names match case-insensitively.
        let has = |name: &str| present.iter().any(|p| p.eq_ignore_ascii_case(name));
        let mut missing: Vec<&str> = add.iter().copied().filter(|l| !has(l)).collect();
        missing.dedup();
        if !missing.is_empty() {
            // Adding labels is a set union: safe to repeat after a 5xx.
            let req = Req::post(
                self.repo_path(&format!("/issues/{number}/labels")),
                json!({ "labels": missing }),
            )
            .idempotent();
            self.send(req).await?;
        }
        for name in remove.iter().copied().filter(|l| has(l)) {
            let path = self.repo_path(&format!("/issues/{number}/labels/{}", encode_segment(name)));
            match self.send(Req::new(Method::DELETE, path)).await {
                Ok(_) | Err(Error::Status { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn transition(&self, key: &str, status: TicketStatus) -> Result<()> {
        // GitHub issues are only open or closed; the other statuses are shown by labels.
        if status != TicketStatus::Done {
            return Ok(());
        }
        let number = issue_number(key)?;
        let raw = self.issue_json(number).await?;
        if str_at(&raw, &["state"]) == Some("closed") {
            return Ok(());
        }
        let req = Req::patch(
            self.repo_path(&format!("/issues/{number}")),
            json!({ "state": "closed", "state_reason": "completed" }),
        )
        .idempotent();
        self.send(req).await?;
        Ok(())
    }

    async fn create_linked(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\nFound while working on #{key}.\n\n{hidden}");
        let parent = format!("#{key}");
        retry_op(self.http.policy(), || {
            self.create_linked_once(&parent, &hidden, title, &body, BACKLOG_LABEL)
        })
        .await
    }

    async fn create_issue(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
        label: &str,
    ) -> Result<String> {
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\n{hidden}");
        retry_op(self.http.policy(), || {
            self.create_linked_once("a new issue", &hidden, title, &body, label)
        })
        .await
    }

    async fn create_subtask(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\nSub-task of #{key}.\n\n{hidden}");
        let parent = format!("#{key}");
        retry_op(self.http.policy(), || {
            self.create_linked_once(&parent, &hidden, title, &body, crate::SUBTASK_LABEL)
        })
        .await
    }
}

impl Forge for GitHub {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn open_pr(&self, pr: &PrRequest<'_>) -> Result<PullRequest> {
        retry_op(self.http.policy(), || self.open_pr_once(pr)).await
    }

    async fn pr(&self, number: u64) -> Result<PullRequest> {
        let path = self.repo_path(&format!("/pulls/{number}"));
        let answer = self.send(Req::get(&path)).await.map_err(|e| {
            not_found(e, || {
                format!(
                    "github: pull request #{number} not found in {}/{}",
                    self.owner, self.repo
                )
            })
        })?;
        to_pull_request(&answer.body, &path)
    }

    async fn reply(
        &self,
        number: u64,
        to: ReplyTo<'_>,
        marker: &str,
        markdown: &str,
    ) -> Result<()> {
        let body = format!("{markdown}\n\n{}", html_marker(marker));
        retry_op(self.http.policy(), || {
            self.reply_once(number, &to, marker, &body)
        })
        .await
    }
}

fn split_repo(repo: &str) -> Result<(String, String)> {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.trim().split_once('/') {
        Some((owner, name)) if ok(owner) && ok(name) => Ok((owner.to_string(), name.to_string())),
        _ => Err(Error::Config(format!(
            "github: github.repo must be `owner/name`, got {repo:?}"
        ))),
    }
}

fn issue_number(key: &str) -> Result<u64> {
    key.trim()
        .trim_start_matches('#')
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::NotFound(format!("github: issue key {key:?} is not an issue number")))
}

fn to_pull_request(v: &Value, path: &str) -> Result<PullRequest> {
    let number = v.get("number").and_then(Value::as_u64);
    let head = str_at(v, &["head", "ref"]);
    let (Some(number), Some(head)) = (number, head) else {
        return Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("{path}: a pull request without `number` or `head.ref`"),
        });
    };
    // The list endpoint has no `merged`; `merged_at` says the same.
    let merged = v.get("merged").and_then(Value::as_bool).unwrap_or(false)
        || v.get("merged_at").is_some_and(|m| !m.is_null());
    Ok(PullRequest {
        number,
        url: str_at(v, &["html_url"]).unwrap_or_default().to_string(),
        head: head.to_string(),
        head_sha: str_at(v, &["head", "sha"]).unwrap_or_default().to_string(),
        state: if merged {
            "merged".to_string()
        } else {
            str_at(v, &["state"]).unwrap_or("open").to_string()
        },
        draft: v.get("draft").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// Everything but ASCII alphanumerics and `-._~` (RFC 3986 unreserved) is escaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode one path segment (a label name such as `codemill:running`).
fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("codemill:running"), "codemill%3Arunning");
        assert_eq!(encode_segment("needs input/é"), "needs%20input%2F%C3%A9");
        assert_eq!(encode_segment("a-b.c_d~e"), "a-b.c_d~e");
    }

    #[test]
    fn repo_must_be_owner_slash_name() {
        assert!(split_repo("o/r").is_ok());
        assert!(split_repo("o").is_err());
        assert!(split_repo("o/r/x").is_err());
        assert!(split_repo("../r").is_err());
    }

    #[test]
    fn merged_at_means_merged() {
        let pr = json!({"number": 3, "head": {"ref": "b", "sha": "s"}, "state": "closed", "merged_at": "2024-01-01T00:00:00Z", "draft": false, "html_url": "u"});
        assert_eq!(
            to_pull_request(&pr, "p").map(|p| p.state).ok().as_deref(),
            Some("merged")
        );
    }
}
