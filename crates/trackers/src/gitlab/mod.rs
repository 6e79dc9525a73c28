//! GitLab (gitlab.com or self-managed, REST API v4) as tracker (a project's issues) and forge
//! (its merge requests), authenticated by an access token in `PRIVATE-TOKEN`; plus webhook
//! verification and reading ([`verify_webhook`], [`parse_webhook`]).
//!
//! Every write looks before it acts: notes and replies are found by their hidden marker, merge
//! requests by their source branch, backlog issues by the marker in their description, so an
//! operation retried after a 5xx that had in fact been applied creates nothing twice. Lists
//! follow `X-Next-Page` (offset pagination).

mod hooks;
mod merge;

use std::sync::Arc;

use codemill_core::config::vendors::GitlabSettings;
use codemill_core::pipeline::TicketStatus;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::http::{Answer, Auth, HttpClient, Req, RetryPolicy, retry_op};
use crate::json::{body_has, id_string, not_found, str_at};
use crate::{
    Env, Error, Forge, Issue, IssueComment, PrRequest, PullRequest, ReplyTo, Result, Tracker,
    has_codemill_marker, html_marker, secret_from,
};

pub use hooks::{parse_webhook, verify_webhook};
pub use merge::PIPELINE_CHECK;

pub(crate) const VENDOR: &str = "gitlab";
/// The label of issues codemill creates from review findings.
const BACKLOG_LABEL: &str = "codemill:backlog";
/// GitLab's largest page.
const PER_PAGE: &str = "100";
/// Guards against an `X-Next-Page` that never ends.
const MAX_PAGES: usize = 1000;

/// The GitLab client: cheap to clone; clones share the HTTP client and its rate-limit hold.
#[derive(Clone)]
pub struct GitLab {
    http: HttpClient,
    token: SecretString,
    /// The project as it goes in a path: the numeric id, or the path percent-encoded.
    project: String,
    settings: Arc<GitlabSettings>,
}

impl std::fmt::Debug for GitLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLab")
            .field("api", &self.http.base())
            .field("project", &self.settings.project)
            .finish_non_exhaustive()
    }
}

impl GitLab {
    pub fn new(settings: &GitlabSettings, env: Env<'_>, policy: RetryPolicy) -> Result<GitLab> {
        let token = secret_from(env, VENDOR, "gitlab.token_env", &settings.token_env)?;
        let base = format!("{}/api/v4", settings.base_url.trim_end_matches('/'));
        let http = HttpClient::new(VENDOR, &base, policy)?;
        Ok(GitLab {
            http,
            token,
            project: project_segment(&settings.project),
            settings: Arc::new(settings.clone()),
        })
    }

    /// The token git pushes and fetches with (GitLab takes it as the password of any user).
    pub fn git_token(&self) -> SecretString {
        self.token.clone()
    }

    fn path(&self, rest: &str) -> String {
        format!("/projects/{}{rest}", self.project)
    }

    async fn send(&self, req: Req) -> Result<Answer> {
        self.http
            .send(&req, &Auth::Header("private-token", self.token.clone()))
            .await
    }

    /// Every item of a list endpoint, page by page as `X-Next-Page` says.
    async fn get_all(&self, first: Req) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let base = first.query("per_page", PER_PAGE);
        let mut page = String::from("1");
        for _ in 0..MAX_PAGES {
            let mut req = base.clone().query("page", page.clone());
            req.idempotent = true;
            let path = req.path.clone();
            let answer = self.send(req).await?;
            let next = answer
                .headers
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            match answer.body {
                Value::Array(list) => items.extend(list),
                _ => {
                    return Err(Error::Protocol {
                        vendor: VENDOR,
                        message: format!("GET {path}: expected a JSON array"),
                    });
                }
            }
            match next {
                Some(n) if n.bytes().all(|b| b.is_ascii_digit()) && n != page => page = n,
                _ => return Ok(items),
            }
        }
        Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    async fn issue_json(&self, iid: u64) -> Result<Value> {
        let answer = self
            .send(Req::get(self.path(&format!("/issues/{iid}"))))
            .await
            .map_err(|e| {
                not_found(e, || {
                    format!(
                        "gitlab: issue #{iid} not found in {}",
                        self.settings.project
                    )
                })
            })?;
        Ok(answer.body)
    }

    /// An issue's or merge request's notes, oldest first, without system notes.
    async fn notes(&self, kind: &str, iid: u64) -> Result<Vec<Value>> {
        let notes = self
            .get_all(
                Req::get(self.path(&format!("/{kind}/{iid}/notes")))
                    .query("sort", "asc")
                    .query("order_by", "created_at"),
            )
            .await?;
        Ok(notes
            .into_iter()
            .filter(|n| !n.get("system").and_then(Value::as_bool).unwrap_or(false))
            .collect())
    }

    async fn open_mr_by_source(&self, branch: &str) -> Result<Option<PullRequest>> {
        let path = self.path("/merge_requests");
        let list = self
            .get_all(
                Req::get(&path)
                    .query("state", "opened")
                    .query("source_branch", branch),
            )
            .await?;
        list.iter()
            .find(|mr| str_at(mr, &["source_branch"]) == Some(branch))
            .map(|mr| to_pull_request(mr, &path))
            .transpose()
    }

    async fn open_mr_once(&self, pr: &PrRequest<'_>) -> Result<PullRequest> {
        if let Some(found) = self.open_mr_by_source(pr.head).await? {
            return Ok(found);
        }
        let path = self.path("/merge_requests");
        // GitLab marks a merge request as a draft by its title.
        let title = if pr.draft && !is_draft_title(pr.title) {
            format!("Draft: {}", pr.title)
        } else {
            pr.title.to_string()
        };
        let body = json!({
            "source_branch": pr.head,
            "target_branch": pr.base,
            "title": title,
            "description": pr.body,
            "remove_source_branch": false,
        });
        match self.send(Req::post(&path, body)).await {
            Ok(answer) => to_pull_request(&answer.body, &path),
            // Opened between look-up and create (by an earlier attempt of ours).
            Err(Error::Status { status: 409, .. }) => self
                .open_mr_by_source(pr.head)
                .await?
                .ok_or_else(|| Error::Protocol {
                    vendor: VENDOR,
                    message: format!(
                        "POST {path}: GitLab says a merge request from {} exists, but none is open",
                        pr.head
                    ),
                }),
            Err(e) => Err(e),
        }
    }

    async fn reply_once(&self, iid: u64, to: &ReplyTo<'_>, hidden: &str, body: &str) -> Result<()> {
        let existing = self.notes("merge_requests", iid).await?;
        if existing.iter().any(|n| body_has(n, hidden)) {
            return Ok(());
        }
        match to {
            ReplyTo::ReviewComment(discussion) => {
                let discussion = discussion.trim();
                if discussion.is_empty() || !discussion.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(Error::NotFound(format!(
                        "gitlab: discussion id {discussion:?} on !{iid} is not an id"
                    )));
                }
                let path = self.path(&format!(
                    "/merge_requests/{iid}/discussions/{discussion}/notes"
                ));
                self.send(Req::post(path, json!({ "body": body }))).await?;
            }
            ReplyTo::Conversation => {
                let path = self.path(&format!("/merge_requests/{iid}/notes"));
                self.send(Req::post(path, json!({ "body": body }))).await?;
            }
        }
        Ok(())
    }

    async fn upsert_once(&self, iid: u64, hidden: &str, body: &str) -> Result<()> {
        let notes = self.notes("issues", iid).await?;
        if let Some(existing) = notes.iter().find(|n| body_has(n, hidden)) {
            if str_at(existing, &["body"]) == Some(body) {
                return Ok(());
            }
            let Some(id) = existing.get("id").and_then(Value::as_u64) else {
                return Err(Error::Protocol {
                    vendor: VENDOR,
                    message: format!("issue #{iid}: a note without a numeric `id`"),
                });
            };
            self.send(Req::put(
                self.path(&format!("/issues/{iid}/notes/{id}")),
                json!({ "body": body }),
            ))
            .await?;
            return Ok(());
        }
        self.send(Req::post(
            self.path(&format!("/issues/{iid}/notes")),
            json!({ "body": body }),
        ))
        .await?;
        Ok(())
    }

    async fn create_linked_once(
        &self,
        iid: u64,
        hidden: &str,
        title: &str,
        body: &str,
        label: &str,
    ) -> Result<String> {
        let created = self.create_once(hidden, title, body, label).await?;
        // The link, once: GitLab answers 409 for a link that exists.
        let links = self
            .get_all(Req::get(self.path(&format!("/issues/{iid}/links"))))
            .await?;
        if !links
            .iter()
            .any(|l| l.get("iid").and_then(Value::as_u64) == Some(created))
        {
            let project_id = self.project_id().await?;
            let req = Req::post(
                self.path(&format!("/issues/{iid}/links")),
                json!({
                    "target_project_id": project_id,
                    "target_issue_iid": created,
                    "link_type": "relates_to",
                }),
            );
            match self.send(req).await {
                Ok(_) | Err(Error::Status { status: 409, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(created.to_string())
    }

    /// The issue labelled `label` whose description carries `hidden`, made now if there is none.
    async fn create_once(&self, hidden: &str, title: &str, body: &str, label: &str) -> Result<u64> {
        let backlog = self
            .get_all(
                Req::get(self.path("/issues"))
                    .query("state", "all")
                    .query("labels", label),
            )
            .await?;
        let found = backlog
            .iter()
            .find(|i| str_at(i, &["description"]).is_some_and(|d| d.contains(hidden)))
            .and_then(|i| i.get("iid").and_then(Value::as_u64));
        let created = match found {
            Some(n) => n,
            None => {
                let path = self.path("/issues");
                let answer = self
                    .send(Req::post(
                        &path,
                        json!({ "title": title, "description": body, "labels": label }),
                    ))
                    .await?;
                answer
                    .body
                    .get("iid")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| Error::Protocol {
                        vendor: VENDOR,
                        message: format!("POST {path}: the answer has no `iid`"),
                    })?
            }
        };
        Ok(created)
    }

    /// The project's numeric id (what an issue link names its target by).
    async fn project_id(&self) -> Result<u64> {
        if let Ok(id) = self.settings.project.trim().parse::<u64>() {
            return Ok(id);
        }
        let answer = self.send(Req::get(self.path(""))).await?;
        answer
            .body
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Protocol {
                vendor: VENDOR,
                message: format!("GET {}: the project has no `id`", self.path("")),
            })
    }
}

impl Tracker for GitLab {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn triggered(&self) -> Result<Vec<String>> {
        // GitLab's `labels` filter is an AND: builds and ideas to refine are two lists.
        let mut items = Vec::new();
        for label in [&self.settings.trigger_label, &self.settings.refine_label] {
            items.extend(
                self.get_all(
                    Req::get(self.path("/issues"))
                        .query("state", "opened")
                        .query("labels", label.clone())
                        .query("order_by", "created_at")
                        .query("sort", "asc"),
                )
                .await?,
            );
        }
        let mut iids: Vec<u64> = items
            .iter()
            .filter_map(|i| i.get("iid").and_then(Value::as_u64))
            .collect();
        iids.sort_unstable();
        iids.dedup();
        Ok(iids.into_iter().map(|n| n.to_string()).collect())
    }

    async fn issue(&self, key: &str) -> Result<Issue> {
        let iid = issue_iid(key)?;
        let raw = self.issue_json(iid).await?;
        let path = self.path(&format!("/issues/{iid}"));
        let bot = self.settings.bot_username.as_deref();
        let comments = self
            .notes("issues", iid)
            .await?
            .iter()
            .map(|n| {
                let author = str_at(n, &["author", "username"])
                    .unwrap_or_default()
                    .to_string();
                let body = str_at(n, &["body"]).unwrap_or_default().to_string();
                let by_bot = bot.is_some_and(|b| b.eq_ignore_ascii_case(&author));
                IssueComment {
                    id: n.get("id").map(id_string).unwrap_or_default(),
                    by_codemill: by_bot || has_codemill_marker(&body),
                    author,
                    body,
                }
            })
            .collect();
        let (Some(title), Some(state)) = (str_at(&raw, &["title"]), str_at(&raw, &["state"]))
        else {
            return Err(Error::Protocol {
                vendor: VENDOR,
                message: format!("GET {path}: the issue has no `title` or `state`"),
            });
        };
        let strings = |field: &str| -> Vec<String> {
            raw.get(field)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(label_name).collect())
                .unwrap_or_default()
        };
        // Linked issues, one line each, as the other trackers give them.
        let links = self
            .get_all(Req::get(self.path(&format!("/issues/{iid}/links"))))
            .await?
            .iter()
            .map(|l| {
                format!(
                    "{} #{}: {} ({})",
                    str_at(l, &["link_type"])
                        .unwrap_or("relates_to")
                        .replace('_', " "),
                    l.get("iid").map(id_string).unwrap_or_default(),
                    str_at(l, &["title"]).unwrap_or_default(),
                    str_at(l, &["state"]).unwrap_or_default()
                )
            })
            .collect();
        let assignees = raw
            .get("assignees")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|u| str_at(u, &["username"]).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Issue {
            key: iid.to_string(),
            number: iid,
            url: str_at(&raw, &["web_url"]).unwrap_or_default().to_string(),
            title: title.to_string(),
            body: str_at(&raw, &["description"])
                .unwrap_or_default()
                .to_string(),
            acceptance_criteria: None,
            status: state.to_string(),
            labels: strings("labels"),
            assignees,
            comments,
            links,
            subtasks: Vec::new(),
        })
    }

    async fn upsert_comment(&self, key: &str, marker: &str, markdown: &str) -> Result<()> {
        let iid = issue_iid(key)?;
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\n{hidden}");
        retry_op(self.http.policy(), || self.upsert_once(iid, &hidden, &body)).await
    }

    async fn set_labels(&self, key: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        let iid = issue_iid(key)?;
        let raw = self.issue_json(iid).await?;
        let present: Vec<String> = raw
            .get("labels")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(label_name).collect())
            .unwrap_or_default();
        let has = |name: &str| present.iter().any(|p| p == name);
        let adding: Vec<&str> = add.iter().copied().filter(|l| !has(l)).collect();
        let removing: Vec<&str> = remove.iter().copied().filter(|l| has(l)).collect();
        if adding.is_empty() && removing.is_empty() {
            return Ok(());
        }
        // `add_labels`/`remove_labels` are set operations: safe to repeat.
        self.send(Req::put(
            self.path(&format!("/issues/{iid}")),
            json!({ "add_labels": adding.join(","), "remove_labels": removing.join(",") }),
        ))
        .await?;
        Ok(())
    }

    async fn transition(&self, key: &str, status: TicketStatus) -> Result<()> {
        // GitLab issues are opened or closed; the other statuses are shown by labels.
        if status != TicketStatus::Done {
            return Ok(());
        }
        let iid = issue_iid(key)?;
        let raw = self.issue_json(iid).await?;
        if str_at(&raw, &["state"]) == Some("closed") {
            return Ok(());
        }
        self.send(Req::put(
            self.path(&format!("/issues/{iid}")),
            json!({ "state_event": "close" }),
        ))
        .await?;
        Ok(())
    }

    async fn create_linked(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        let iid = issue_iid(key)?;
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\nFound while working on #{iid}.\n\n{hidden}");
        retry_op(self.http.policy(), || {
            self.create_linked_once(iid, &hidden, title, &body, BACKLOG_LABEL)
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
            self.create_once(&hidden, title, &body, label)
        })
        .await
        .map(|iid| iid.to_string())
    }

    async fn create_subtask(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        let iid = issue_iid(key)?;
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\nSub-task of #{iid}.\n\n{hidden}");
        retry_op(self.http.policy(), || {
            self.create_linked_once(iid, &hidden, title, &body, crate::SUBTASK_LABEL)
        })
        .await
    }
}

impl Forge for GitLab {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn open_pr(&self, pr: &PrRequest<'_>) -> Result<PullRequest> {
        retry_op(self.http.policy(), || self.open_mr_once(pr)).await
    }

    async fn pr(&self, number: u64) -> Result<PullRequest> {
        let path = self.path(&format!("/merge_requests/{number}"));
        let answer = self.send(Req::get(&path)).await.map_err(|e| {
            not_found(e, || {
                format!(
                    "gitlab: merge request !{number} not found in {}",
                    self.settings.project
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
        let hidden = html_marker(marker);
        let body = format!("{markdown}\n\n{hidden}");
        retry_op(self.http.policy(), || {
            self.reply_once(number, &to, &hidden, &body)
        })
        .await
    }
}

/// Everything but ASCII alphanumerics and `-._~` (RFC 3986 unreserved) is escaped.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `acme/web` → `acme%2Fweb` (GitLab's "URL-encoded path"); a numeric id as it is.
fn project_segment(project: &str) -> String {
    let project = project.trim();
    if project.bytes().all(|b| b.is_ascii_digit()) {
        return project.to_string();
    }
    utf8_percent_encode(project, SEGMENT).to_string()
}

/// GitLab's rule for a draft merge request's title.
fn is_draft_title(title: &str) -> bool {
    let t = title.trim_start().to_ascii_lowercase();
    ["draft:", "[draft]", "(draft)"]
        .iter()
        .any(|p| t.starts_with(p))
}

fn issue_iid(key: &str) -> Result<u64> {
    key.trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| Error::NotFound(format!("gitlab: {key:?} is not an issue number")))
}

/// A label as issues list them (`"bug"`) or as some endpoints do (`{"title": "bug"}`).
fn label_name(v: &Value) -> Option<String> {
    v.as_str()
        .or_else(|| str_at(v, &["title"]))
        .or_else(|| str_at(v, &["name"]))
        .map(str::to_string)
}

fn to_pull_request(v: &Value, path: &str) -> Result<PullRequest> {
    let iid = v.get("iid").and_then(Value::as_u64);
    let source = str_at(v, &["source_branch"]);
    let (Some(iid), Some(source)) = (iid, source) else {
        return Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("{path}: a merge request without `iid` or `source_branch`"),
        });
    };
    let state = match str_at(v, &["state"]).unwrap_or("opened") {
        "merged" => "merged",
        "closed" => "closed",
        _ => "open",
    };
    Ok(PullRequest {
        number: iid,
        url: str_at(v, &["web_url"]).unwrap_or_default().to_string(),
        head: source.to_string(),
        head_sha: str_at(v, &["sha"]).unwrap_or_default().to_string(),
        state: state.to_string(),
        draft: v
            .get("draft")
            .or_else(|| v.get("work_in_progress"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_project_path_is_one_encoded_segment() {
        assert_eq!(project_segment("acme/web"), "acme%2Fweb");
        assert_eq!(
            project_segment("group/sub/web-app"),
            "group%2Fsub%2Fweb-app"
        );
        assert_eq!(project_segment("42"), "42");
    }

    #[test]
    fn drafts_are_told_by_their_title_as_gitlab_does() {
        assert!(is_draft_title("Draft: add hello"));
        assert!(is_draft_title("[Draft] add hello"));
        assert!(is_draft_title("(draft) add hello"));
        assert!(!is_draft_title("Add draft support"));
    }

    #[test]
    fn merge_request_states_map_to_the_forge_seam() {
        let mr = |state: &str| json!({"iid": 3, "source_branch": "codemill/web-1", "sha": "abc", "state": state, "draft": true, "web_url": "u"});
        let pr = to_pull_request(&mr("opened"), "p").unwrap();
        assert_eq!((pr.number, pr.state.as_str(), pr.draft), (3, "open", true));
        assert_eq!(to_pull_request(&mr("merged"), "p").unwrap().state, "merged");
        assert_eq!(to_pull_request(&mr("locked"), "p").unwrap().state, "open");
        assert!(to_pull_request(&json!({"iid": 1}), "p").is_err());
    }
}
