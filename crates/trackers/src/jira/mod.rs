//! Jira as a [`Tracker`]: trigger search, issue reads with rich text turned into Markdown, a sticky
//! comment per marker, labels, workflow transitions and linked backlog issues. Jira Cloud speaks
//! REST API v3 with ADF documents; Data Center speaks REST API v2 with wiki markup strings.
//! Every write looks first (comments and backlog issues by their `[<marker>]` text, transitions by
//! the current status), so an operation retried after an ambiguous failure does nothing twice.

mod adf;
mod fields;
mod webhook;
mod wiki;

use std::sync::{Arc, Mutex};

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use codemill_core::config::vendors::{JiraAuth, JiraSettings};
use codemill_core::pipeline::TicketStatus;

use crate::http::{Answer, Auth, HttpClient, Req, RetryPolicy, retry_op};
use crate::{Env, Error, Issue, IssueComment, Result, Tracker, has_codemill_marker, secret_from};

use fields::*;

pub use adf::{adf_to_markdown, markdown_to_adf, plain_text};
pub use webhook::{parse_webhook, verify_webhook};
pub use wiki::{markdown_to_wiki, wiki_to_markdown};

const VENDOR: &str = "jira";
/// Page size asked for; Jira may answer with fewer.
const PAGE: u64 = 50;
/// Pages followed before giving up on a paginated answer that never ends.
const MAX_PAGES: usize = 1000;

/// Which REST API a site is spoken to in, and so how its text fields are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// Jira Cloud: REST v3, rich text as ADF documents, search by `nextPageToken`.
    Cloud,
    /// Jira Data Center / Server: REST v2, rich text as wiki markup strings, search by `startAt`.
    DataCenter,
}

impl Dialect {
    fn api(self) -> &'static str {
        match self {
            Dialect::Cloud => "/rest/api/3",
            Dialect::DataCenter => "/rest/api/2",
        }
    }

    /// A text field (description, comment body) as Markdown.
    fn to_markdown(self, value: &Value) -> String {
        match (self, value) {
            (Dialect::DataCenter, Value::String(wiki)) => wiki_to_markdown(wiki),
            _ => adf_to_markdown(value),
        }
    }

    /// A text field's words, where markers are looked for.
    fn plain(self, value: &Value) -> String {
        match (self, value) {
            (Dialect::DataCenter, Value::String(wiki)) => wiki_to_markdown(wiki),
            _ => plain_text(value),
        }
    }

    /// `markdown` with the marker line, as this API takes a text field.
    fn note(self, markdown: &str, marker: &str) -> Value {
        match self {
            Dialect::Cloud => with_marker(markdown, marker),
            Dialect::DataCenter => wiki_with_marker(markdown, marker),
        }
    }

    /// Whether two text fields say the same (Jira may normalise what it stores, e.g. add
    /// `localId`s to ADF, so the rendered text is compared too).
    fn same(self, a: &Value, b: &Value) -> bool {
        a == b || self.to_markdown(a) == self.to_markdown(b)
    }
}

/// A Jira site, signed in. Cheap to clone (one shared HTTP client and rate-limit state).
#[derive(Clone)]
pub struct Jira {
    http: HttpClient,
    auth: Auth,
    dialect: Dialect,
    settings: Arc<JiraSettings>,
}

impl std::fmt::Debug for Jira {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jira")
            .field("base_url", &self.http.base())
            .field("project_key", &self.settings.project_key)
            .field("auth", &self.auth)
            .field("dialect", &self.dialect)
            .finish()
    }
}

impl Jira {
    /// Credentials read by NAME through `env`: Cloud = Basic(e-mail from `settings.email_env`,
    /// token from `settings.token_env`); Data Center = Bearer(`settings.token_env`).
    pub fn new(settings: &JiraSettings, env: Env<'_>, policy: RetryPolicy) -> Result<Jira> {
        let base = settings.base_url.trim();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::Config(format!(
                "jira: jira.base_url must be an http(s) URL, got {base:?}"
            )));
        }
        let token = secret_from(env, VENDOR, "jira.token_env", &settings.token_env)?;
        let auth = match settings.auth {
            JiraAuth::Cloud => {
                let Some(email_env) = settings.email_env.as_deref() else {
                    return Err(Error::Config(
                        "jira: jira.email_env must name the variable holding the account e-mail (Cloud sign-in is e-mail + API token)".into(),
                    ));
                };
                let email = secret_from(env, VENDOR, "jira.email_env", email_env)?;
                Auth::Basic {
                    user: email.expose_secret().to_string(),
                    password: token,
                }
            }
            JiraAuth::DataCenter => Auth::Bearer(token),
        };
        let dialect = match settings.auth {
            JiraAuth::Cloud => Dialect::Cloud,
            JiraAuth::DataCenter => Dialect::DataCenter,
        };
        Ok(Jira {
            http: HttpClient::new(VENDOR, base, policy)?,
            auth,
            dialect,
            settings: Arc::new(settings.clone()),
        })
    }

    async fn send(&self, req: Req) -> Result<Answer> {
        self.http.send(&req, &self.auth).await
    }

    /// `GET /issue/{key}?fields=...`; a missing issue is [`Error::NotFound`].
    async fn get_issue(&self, key: &str, fields: &str) -> Result<Value> {
        let api = self.dialect.api();
        let key = check_key(key)?;
        let req = Req::get(format!("{api}/issue/{key}")).query("fields", fields);
        match self.send(req).await {
            Err(Error::Status { status: 404, .. }) => Err(Error::NotFound(format!(
                "jira: issue {key} does not exist or codemill may not see it (GET {api}/issue/{key}: HTTP 404)"
            ))),
            other => Ok(other?.body),
        }
    }

    /// Every comment of `key`, oldest first, following `startAt`/`total`.
    async fn all_comments(&self, key: &str) -> Result<Vec<Value>> {
        let key = check_key(key)?;
        let path = format!("{}/issue/{key}/comment", self.dialect.api());
        let what = format!("GET {path}");
        self.offset_pages("comments", &what, |start| {
            Req::get(path.clone())
                .query("startAt", start.to_string())
                .query("maxResults", PAGE.to_string())
                .query("orderBy", "created")
        })
        .await
    }

    /// Every item of the `field` arrays of a list paged by `startAt`, `maxResults` and `total`.
    async fn offset_pages(
        &self,
        field: &str,
        what: &str,
        request: impl Fn(u64) -> Req,
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut start = 0u64;
        for _ in 0..MAX_PAGES {
            let page = self.send(request(start)).await?.body;
            let batch = array_at(&page, field, what)?;
            let total = page.get("total").and_then(Value::as_u64);
            start += batch.len() as u64;
            items.extend(batch.iter().cloned());
            let done = batch.is_empty() || total.is_none_or(|t| start >= t);
            if done {
                return Ok(items);
            }
        }
        Err(protocol(format!(
            "{what}: more than {MAX_PAGES} pages of {field}"
        )))
    }

    /// Where JQL searches go: v3's enhanced search, or v2's `startAt`-paged one.
    fn search_path(&self) -> String {
        match self.dialect {
            Dialect::Cloud => format!("{}/search/jql", self.dialect.api()),
            Dialect::DataCenter => format!("{}/search", self.dialect.api()),
        }
    }

    /// One JQL search, every page: the issues with `fields`.
    async fn search(&self, jql: &str, fields: &[&str]) -> Result<Vec<Value>> {
        let path = self.search_path();
        if self.dialect == Dialect::DataCenter {
            let what = format!("POST {path}");
            // A search changes nothing: safe to repeat after a 5xx.
            return self
                .offset_pages("issues", &what, |start| {
                    let body =
                        json!({"jql": jql, "fields": fields, "startAt": start, "maxResults": PAGE});
                    Req::post(path.clone(), body).idempotent()
                })
                .await;
        }
        let mut issues = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut body = json!({"jql": jql, "fields": fields, "maxResults": PAGE});
            if let Some(t) = &token {
                body["nextPageToken"] = json!(t);
            }
            // A search changes nothing: safe to repeat after a 5xx.
            let page = self
                .send(Req::post(path.clone(), body).idempotent())
                .await?
                .body;
            issues.extend(
                array_at(&page, "issues", &format!("POST {path}"))?
                    .iter()
                    .cloned(),
            );
            let next = str_at(&page, "/nextPageToken").filter(|t| !t.is_empty());
            let last = page.get("isLast").and_then(Value::as_bool) == Some(true);
            match next {
                Some(next) if !last => {
                    if token.as_deref() == Some(next) {
                        return Err(protocol(format!(
                            "POST {path}: the same nextPageToken twice"
                        )));
                    }
                    token = Some(next.to_string());
                }
                _ => return Ok(issues),
            }
        }
        Err(protocol(format!(
            "POST {path}: more than {MAX_PAGES} pages"
        )))
    }

    /// The comment of `key` carrying `marker`: (id, body).
    async fn find_comment(&self, key: &str, marker: &str) -> Result<Option<(String, Value)>> {
        let needle = marker_text(marker);
        let comments = self.all_comments(key).await?;
        Ok(comments.into_iter().find_map(|c| {
            let body = c.get("body")?;
            if !self.dialect.plain(body).contains(&needle) {
                return None;
            }
            let id = match c.get("id")? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((id, body.clone()))
        }))
    }

    async fn upsert_comment_once(&self, key: &str, marker: &str, body: &Value) -> Result<()> {
        let api = self.dialect.api();
        let key = check_key(key)?;
        match self.find_comment(key, marker).await? {
            Some((_, existing)) if self.dialect.same(&existing, body) => Ok(()),
            Some((id, _)) => {
                if !id.chars().all(|c| c.is_ascii_digit()) {
                    return Err(protocol(format!(
                        "comment id {id:?} on {key} is not numeric"
                    )));
                }
                let req = Req::put(
                    format!("{api}/issue/{key}/comment/{id}"),
                    json!({"body": body}),
                );
                self.send(req).await.map(drop)
            }
            None => {
                let req = Req::post(format!("{api}/issue/{key}/comment"), json!({"body": body}));
                self.send(req).await.map(drop)
            }
        }
    }

    async fn transition_once(&self, key: &str, want: &str) -> Result<()> {
        let api = self.dialect.api();
        let key = check_key(key)?;
        let issue = self.get_issue(key, "status").await?;
        if str_at(&issue, "/fields/status/name").is_some_and(|s| same_name(s, want)) {
            return Ok(());
        }
        let path = format!("{api}/issue/{key}/transitions");
        let answer = self.send(Req::get(path.clone())).await?.body;
        let transitions = array_at(&answer, "transitions", &format!("GET {path}"))?;
        let by = |pointer: &str| {
            transitions
                .iter()
                .find(|t| str_at(t, pointer).is_some_and(|n| same_name(n, want)))
        };
        // The target state's name first: a transition called "Done" may lead elsewhere.
        let Some(chosen) = by("/to/name").or_else(|| by("/name")) else {
            let available: Vec<String> = transitions
                .iter()
                .map(|t| {
                    format!(
                        "{:?} → {:?}",
                        str_at(t, "/name").unwrap_or("?"),
                        str_at(t, "/to/name").unwrap_or("?")
                    )
                })
                .collect();
            return Err(Error::NotFound(format!(
                "jira: issue {key} has no transition to {want:?}; available: {}",
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            )));
        };
        let id = match chosen.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(protocol(format!("GET {path}: a transition without an id"))),
        };
        self.send(Req::post(path, json!({"transition": {"id": id}})))
            .await
            .map(drop)
    }

    /// `create_linked` once: look (links, then search), else create and link. `created` keeps
    /// a key created by an earlier attempt whose link failed, so it is linked, not created again.
    /// The issue whose description carries `marker` (remembered from an earlier try, or found
    /// by text search), created now with `labels` if there is none.
    async fn find_or_create(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
        labels: &[&str],
        created: &Mutex<Option<String>>,
    ) -> Result<String> {
        let api = self.dialect.api();
        let needle = marker_text(marker);
        let earlier = created.lock().ok().and_then(|c| c.clone());
        let found = match earlier {
            Some(k) => Some(k),
            None => {
                // Text search is fuzzy: a hit counts only if its description holds the marker.
                let jql = format!(
                    "project = {} AND description ~ {} ORDER BY created ASC",
                    jql_string(&self.settings.project_key),
                    jql_string(&format!(
                        "\"{}\"",
                        needle.replace('\\', "\\\\").replace('"', "\\\"")
                    ))
                );
                let hits = self.search(&jql, &["description"]).await?;
                hits.iter()
                    .find(|i| {
                        let d = i.pointer("/fields/description").unwrap_or(&Value::Null);
                        self.dialect.plain(d).contains(&needle)
                    })
                    .and_then(|i| str_at(i, "/key"))
                    .map(str::to_string)
            }
        };
        let new_key = match found {
            Some(k) => k,
            None => {
                let mut body = json!({"fields": {
                    "project": {"key": self.settings.project_key},
                    "summary": summary_line(title),
                    "issuetype": {"name": self.settings.backlog_issue_type},
                    "description": self.dialect.note(markdown, marker),
                }});
                if !labels.is_empty() {
                    body["fields"]["labels"] = json!(labels);
                }
                let answer = self.send(Req::post(format!("{api}/issue"), body)).await?;
                let k = str_at(&answer.body, "/key")
                    .ok_or_else(|| protocol(format!("POST {api}/issue: no key in the answer")))?
                    .to_string();
                if let Ok(mut c) = created.lock() {
                    *c = Some(k.clone());
                }
                k
            }
        };
        Ok(new_key)
    }

    async fn create_linked_once(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
        created: &Mutex<Option<String>>,
    ) -> Result<String> {
        let api = self.dialect.api();
        let key = check_key(key)?;
        let needle = marker_text(marker);
        let parent = self.get_issue(key, "issuelinks").await?;
        let linked = linked_keys(parent.get("fields").unwrap_or(&Value::Null));
        for other in &linked {
            // A linked issue codemill may not see cannot be the one it created.
            let issue = match self.get_issue(other, "description").await {
                Err(Error::NotFound(_)) => continue,
                other => other?,
            };
            let description = issue.pointer("/fields/description").unwrap_or(&Value::Null);
            if self.dialect.plain(description).contains(&needle) {
                return Ok(other.clone());
            }
        }
        let new_key = self
            .find_or_create(marker, title, markdown, &[], created)
            .await?;
        if !linked.contains(&new_key) {
            let link = json!({
                "type": {"name": self.settings.link_type},
                "inwardIssue": {"key": new_key},
                "outwardIssue": {"key": key},
            });
            self.send(Req::post(format!("{api}/issueLink"), link))
                .await?;
        }
        Ok(new_key)
    }
}

impl Tracker for Jira {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn triggered(&self) -> Result<Vec<String>> {
        let mut issues = self
            .search(&self.settings.trigger_jql(), &["summary"])
            .await?;
        issues.extend(
            self.search(&self.settings.refine_jql(), &["summary"])
                .await?,
        );
        let mut keys: Vec<String> = Vec::new();
        for issue in &issues {
            let key = str_at(issue, "/key").ok_or_else(|| {
                protocol(format!(
                    "POST {}: an issue without a key",
                    self.search_path()
                ))
            })?;
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    }

    async fn issue(&self, key: &str) -> Result<Issue> {
        let key = check_key(key)?;
        let mut fields =
            String::from("summary,description,status,labels,assignee,issuelinks,subtasks");
        let acceptance = self.settings.acceptance_criteria_field.as_deref();
        if let Some(f) = acceptance {
            fields.push(',');
            fields.push_str(f);
        }
        let raw = self.get_issue(key, &fields).await?;
        let f = raw.get("fields").unwrap_or(&Value::Null);
        let key = str_at(&raw, "/key").unwrap_or(key).to_string();
        let number = key
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| protocol(format!("issue key {key:?} has no number")))?;
        let comments = self
            .all_comments(&key)
            .await?
            .iter()
            .map(|c| {
                let body = c.get("body").unwrap_or(&Value::Null);
                let id = match c.get("id") {
                    Some(Value::Number(n)) => n.to_string(),
                    Some(v) => v.as_str().unwrap_or_default().to_string(),
                    None => String::new(),
                };
                // Cloud names people by account id, Data Center by user name.
                let author = str_at(c, "/author/accountId")
                    .or_else(|| str_at(c, "/author/name"))
                    .or_else(|| str_at(c, "/author/displayName"))
                    .unwrap_or_default()
                    .to_string();
                IssueComment {
                    id,
                    author,
                    body: self.dialect.to_markdown(body),
                    by_codemill: has_codemill_marker(&self.dialect.plain(body)),
                }
            })
            .collect();
        let subtasks = f
            .get("subtasks")
            .and_then(Value::as_array)
            .map(|subs| {
                subs.iter()
                    .filter_map(|s| {
                        let k = str_at(s, "/key")?;
                        let title = str_at(s, "/fields/summary").unwrap_or_default();
                        Some(match str_at(s, "/fields/status/name") {
                            Some(status) => format!("{k}: {title} ({status})"),
                            None => format!("{k}: {title}"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Issue {
            url: format!("{}/browse/{key}", self.http.base()),
            number,
            title: str_at(f, "/summary").unwrap_or_default().to_string(),
            body: self
                .dialect
                .to_markdown(f.get("description").unwrap_or(&Value::Null)),
            acceptance_criteria: acceptance.and_then(|a| f.get(a)).and_then(|v| {
                match (self.dialect, v) {
                    (Dialect::DataCenter, Value::String(wiki)) => {
                        field_text(&json!(wiki_to_markdown(wiki)))
                    }
                    _ => field_text(v),
                }
            }),
            status: str_at(f, "/status/name").unwrap_or_default().to_string(),
            labels: f
                .get("labels")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            assignees: str_at(f, "/assignee/accountId")
                .or_else(|| str_at(f, "/assignee/name"))
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
            comments,
            links: f
                .get("issuelinks")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(link_line).collect())
                .unwrap_or_default(),
            subtasks,
            key,
        })
    }

    async fn upsert_comment(&self, key: &str, marker: &str, markdown: &str) -> Result<()> {
        let body = self.dialect.note(markdown, marker);
        retry_op(self.http.policy(), || {
            self.upsert_comment_once(key, marker, &body)
        })
        .await
    }

    async fn set_labels(&self, key: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        let api = self.dialect.api();
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let key = check_key(key)?;
        let ops: Vec<Value> = add
            .iter()
            .map(|l| json!({"add": l}))
            .chain(remove.iter().map(|l| json!({"remove": l})))
            .collect();
        let req = Req::put(
            format!("{api}/issue/{key}"),
            json!({"update": {"labels": ops}}),
        );
        self.send(req).await.map(drop)
    }

    async fn transition(&self, key: &str, status: TicketStatus) -> Result<()> {
        // Back to the to-do state is back to the trigger status (a refined idea going to its
        // build); the other statuses move only where mapped.
        let want = match status {
            TicketStatus::Todo => Some(self.settings.trigger_status.as_str()),
            s => self.settings.transitions.get(s),
        };
        let Some(want) = want else {
            return Ok(());
        };
        retry_op(self.http.policy(), || self.transition_once(key, want)).await
    }

    async fn create_issue(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
        label: &str,
    ) -> Result<String> {
        let created = Mutex::new(None);
        let labels = [label];
        retry_op(self.http.policy(), || {
            self.find_or_create(marker, title, markdown, &labels, &created)
        })
        .await
    }

    async fn create_linked(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        let created = Mutex::new(None);
        retry_op(self.http.policy(), || {
            self.create_linked_once(key, marker, title, markdown, &created)
        })
        .await
    }
}
