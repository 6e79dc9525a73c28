//! A fake Jira Cloud site (REST API v3) on 127.0.0.1 for tests: issues with ADF descriptions,
//! comments, labels, a workflow of named transitions, issue links and created issues, answered in
//! the documented shapes and validated the way Jira validates (auth, `Content-Type`, required
//! fields, ADF, transition ids, with Jira's `{"errorMessages": [...], "errors": {...}}` errors).
//!
//! Endpoints (all below `/rest/api/3`): `POST /search/jql`, `GET|PUT /issue/{key}`,
//! `POST /issue`, `GET|POST /issue/{key}/comment`, `GET|PUT /issue/{key}/comment/{id}`,
//! `GET|POST /issue/{key}/transitions`, `POST /issueLink`, `GET /myself`.
//!
//! Search understands the JQL codemill writes: clauses joined by `AND` over `project`, `status`,
//! `labels`, `key`, `issuetype`, `assignee`, `parent` (`=`, `!=`, `in`, `not in`) and `summary`,
//! `description`, `comment`, `text` (`~`, `!~`: a quoted phrase is a substring, words must all
//! appear), and `ORDER BY created|key [ASC|DESC]`. Anything else is a 400, as unknown JQL is.
//!
//! Search and comment pages hold at most [`FakeJiraOptions::page_size`] items, so tests exercise
//! pagination. Every request goes through a [`Recorder`]: it is recorded and injected faults apply
//! (`AfterApply` applies the request, then answers the status).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::DateTime;
use serde_json::{Map, Value, json};

use super::{Fault, FaultKind, RecordedRequest, Recorder, error_status, fault_response, serve};

const API: &str = "/rest/api/3";
/// Issues' `created` times count up from 2024-01-01T00:00:00Z, one minute per change.
const EPOCH: i64 = 1_704_067_200;

/// How clients must sign in.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeJiraAuth {
    /// Jira Cloud: `Authorization: Basic base64(email:token)`.
    Basic { email: String, token: String },
    /// Data Center personal access token: `Authorization: Bearer <token>`.
    Bearer(String),
}

impl FakeJiraAuth {
    /// The exact `Authorization` header value the fake accepts.
    pub fn header_value(&self) -> String {
        match self {
            FakeJiraAuth::Basic { email, token } => {
                format!("Basic {}", STANDARD.encode(format!("{email}:{token}")))
            }
            FakeJiraAuth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

/// A workflow transition, available from every status but its target (a global transition).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeTransition {
    pub id: String,
    pub name: String,
    /// The status it leads to.
    pub to: String,
}

impl FakeTransition {
    pub fn new(id: &str, name: &str, to: &str) -> FakeTransition {
        FakeTransition {
            id: id.into(),
            name: name.into(),
            to: to.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakeJiraOptions {
    pub auth: FakeJiraAuth,
    /// Most issues per search page and comments per comment page.
    pub page_size: usize,
    /// The project issues created through the API may go to (besides projects of added issues).
    pub project_key: String,
    pub workflow: Vec<FakeTransition>,
    /// The account the credentials belong to: author of comments made through the API.
    pub bot_account_id: String,
    pub bot_display_name: String,
}

impl Default for FakeJiraOptions {
    /// Basic auth `codemill@example.com` / `jira-api-token`, pages of 2, project `PROJ`, and a
    /// workflow To Do → In Progress → In Review → Done whose transition names differ from the
    /// statuses ("Start progress" leads to "In Progress").
    fn default() -> Self {
        FakeJiraOptions {
            auth: FakeJiraAuth::Basic {
                email: "codemill@example.com".into(),
                token: "jira-api-token".into(),
            },
            page_size: 2,
            project_key: "PROJ".into(),
            workflow: vec![
                FakeTransition::new("11", "Back to do", "To Do"),
                FakeTransition::new("21", "Start progress", "In Progress"),
                FakeTransition::new("31", "Request review", "In Review"),
                FakeTransition::new("41", "Done", "Done"),
            ],
            bot_account_id: "712020:codemill-bot".into(),
            bot_display_name: "codemill".into(),
        }
    }
}

/// One issue link as stored: `inward` and `outward` as the create request named them.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeLink {
    pub id: String,
    pub link_type: String,
    pub inward: String,
    pub outward: String,
}

/// (id, name, inward description, outward description): Jira Cloud's default link types.
const LINK_TYPES: &[(&str, &str, &str, &str)] = &[
    ("10000", "Blocks", "is blocked by", "blocks"),
    ("10001", "Cloners", "is cloned by", "clones"),
    ("10002", "Duplicate", "is duplicated by", "duplicates"),
    ("10003", "Relates", "relates to", "relates to"),
];

const ISSUE_TYPES: &[(&str, &str, bool)] = &[
    ("10001", "Task", false),
    ("10002", "Bug", false),
    ("10003", "Story", false),
    ("10004", "Epic", false),
    ("10005", "Subtask", true),
];

#[derive(Debug, Clone)]
struct FIssue {
    id: u64,
    key: String,
    project: String,
    summary: String,
    description: Value,
    status: String,
    labels: Vec<String>,
    assignee: Option<String>,
    issuetype: String,
    parent: Option<String>,
    custom: BTreeMap<String, Value>,
    comments: Vec<FComment>,
    created: i64,
    updated: i64,
}

#[derive(Debug, Clone)]
struct FComment {
    id: u64,
    author: String,
    update_author: String,
    body: Value,
    created: i64,
    updated: i64,
}

#[derive(Debug, Default)]
struct Db {
    issues: Vec<FIssue>,
    links: Vec<FakeLink>,
    users: BTreeMap<String, String>,
    next_issue_id: u64,
    next_comment_id: u64,
    next_link_id: u64,
    /// nextPageToken → (JQL, offset of the next page).
    tokens: BTreeMap<String, (String, usize)>,
    next_token: u64,
    clock: i64,
}

impl Db {
    fn tick(&mut self) -> i64 {
        self.clock += 60;
        EPOCH + self.clock
    }
    fn find(&self, key_or_id: &str) -> Option<usize> {
        self.issues
            .iter()
            .position(|i| i.key.eq_ignore_ascii_case(key_or_id) || i.id.to_string() == key_or_id)
    }
    fn display_name(&self, account: &str) -> String {
        self.users
            .get(account)
            .cloned()
            .unwrap_or_else(|| account.to_string())
    }
}

struct Shared {
    db: Mutex<Db>,
    recorder: Recorder,
    options: FakeJiraOptions,
    base: OnceLock<String>,
}

/// A running fake Jira site; stops when dropped.
pub struct FakeJira {
    base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeJira {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answer = (StatusCode, Value);

fn jira_error(status: StatusCode, messages: &[&str], errors: Value) -> Answer {
    (
        status,
        json!({"errorMessages": messages, "errors": if errors.is_null() { json!({}) } else { errors }}),
    )
}

fn bad_request(message: &str) -> Answer {
    jira_error(StatusCode::BAD_REQUEST, &[message], Value::Null)
}

fn field_error(field: &str, message: &str) -> Answer {
    jira_error(StatusCode::BAD_REQUEST, &[], json!({ field: message }))
}

fn issue_not_found() -> Answer {
    jira_error(
        StatusCode::NOT_FOUND,
        &["Issue does not exist or you do not have permission to see it."],
        Value::Null,
    )
}

impl FakeJira {
    /// Start the fake on a free port of 127.0.0.1.
    pub async fn start(options: FakeJiraOptions) -> std::io::Result<FakeJira> {
        let mut db = Db {
            next_issue_id: 10000,
            next_comment_id: 10000,
            next_link_id: 10000,
            ..Db::default()
        };
        db.users.insert(
            options.bot_account_id.clone(),
            options.bot_display_name.clone(),
        );
        let shared = Arc::new(Shared {
            db: Mutex::new(db),
            recorder: Recorder::default(),
            options,
            base: OnceLock::new(),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (addr, task) = serve(router).await?;
        let base = format!("http://{addr}");
        let _ = shared.base.set(base.clone());
        Ok(FakeJira { base, shared, task })
    }

    /// The site's base URL (`http://127.0.0.1:<port>`), what `jira.base_url` is set to.
    pub fn url(&self) -> String {
        self.base.clone()
    }

    pub fn options(&self) -> &FakeJiraOptions {
        &self.shared.options
    }

    fn with_db<T>(&self, f: impl FnOnce(&mut Db) -> T) -> T {
        let mut db = match self.shared.db.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut db)
    }

    /// Add an issue. `description` is ADF, `null`, or a string (one paragraph per line).
    pub fn add_issue(
        &self,
        key: &str,
        summary: &str,
        description: Value,
        status: &str,
        labels: &[&str],
    ) {
        let description = match description {
            Value::String(s) => adf_text(&s),
            other => other,
        };
        self.with_db(|db| {
            let now = db.tick();
            db.next_issue_id += 1;
            let issue = FIssue {
                id: db.next_issue_id,
                key: key.to_string(),
                project: key.rsplit_once('-').map_or(key, |(p, _)| p).to_string(),
                summary: summary.to_string(),
                description,
                status: status.to_string(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                assignee: None,
                issuetype: "Task".into(),
                parent: None,
                custom: BTreeMap::new(),
                comments: Vec::new(),
                created: now,
                updated: now,
            };
            match db.find(key) {
                Some(i) => db.issues[i] = issue,
                None => db.issues.push(issue),
            }
        });
    }

    /// Add a subtask of `parent`.
    pub fn add_subtask(&self, parent: &str, key: &str, summary: &str, status: &str) {
        self.add_issue(key, summary, Value::Null, status, &[]);
        self.edit(key, |i| {
            i.parent = Some(parent.to_string());
            i.issuetype = "Subtask".into();
        });
    }

    /// Link two issues as `POST /issueLink` would (`inward` gets the type's outward wording).
    pub fn add_link(&self, link_type: &str, inward: &str, outward: &str) {
        self.with_db(|db| {
            db.next_link_id += 1;
            let id = db.next_link_id.to_string();
            db.links.push(FakeLink {
                id,
                link_type: link_type.to_string(),
                inward: inward.to_string(),
                outward: outward.to_string(),
            });
        });
    }

    /// Name an account (its `displayName` in answers; unknown accounts show their id).
    pub fn add_user(&self, account_id: &str, display_name: &str) {
        self.with_db(|db| {
            db.users
                .insert(account_id.to_string(), display_name.to_string());
        });
    }

    /// Add a comment by `author_account_id`; returns its id. A string body becomes ADF.
    pub fn add_comment(&self, key: &str, author_account_id: &str, body: Value) -> String {
        let body = match body {
            Value::String(s) => adf_text(&s),
            other => other,
        };
        self.with_db(|db| {
            let now = db.tick();
            db.next_comment_id += 1;
            let id = db.next_comment_id;
            if let Some(i) = db.find(key) {
                db.issues[i].comments.push(FComment {
                    id,
                    author: author_account_id.to_string(),
                    update_author: author_account_id.to_string(),
                    body,
                    created: now,
                    updated: now,
                });
            }
            id.to_string()
        })
    }

    fn edit(&self, key: &str, f: impl FnOnce(&mut FIssue)) {
        self.with_db(|db| {
            if let Some(i) = db.find(key) {
                f(&mut db.issues[i]);
            }
        });
    }

    pub fn set_status(&self, key: &str, status: &str) {
        self.edit(key, |i| i.status = status.to_string());
    }

    pub fn set_assignee(&self, key: &str, account_id: Option<&str>) {
        self.edit(key, |i| i.assignee = account_id.map(str::to_string));
    }

    /// Set a custom field (`customfield_10042`) to any JSON: ADF, a string, an option.
    pub fn set_field(&self, key: &str, field: &str, value: Value) {
        self.edit(key, |i| {
            i.custom.insert(field.to_string(), value);
        });
    }

    /// The issue as `GET /issue/{key}` answers it (every field, comments included).
    pub fn issue_json(&self, key: &str) -> Option<Value> {
        let base = self.base.clone();
        self.with_db(|db| {
            let i = db.find(key)?;
            Some(render_issue(
                db,
                &base,
                &db.issues[i],
                &Fields::All,
                &self.shared.options.workflow,
            ))
        })
    }

    /// Keys of every issue, in creation order.
    pub fn issue_keys(&self) -> Vec<String> {
        self.with_db(|db| db.issues.iter().map(|i| i.key.clone()).collect())
    }

    /// The comments of `key` as the API answers them, oldest first.
    pub fn comments(&self, key: &str) -> Vec<Value> {
        let base = self.base.clone();
        self.with_db(|db| match db.find(key) {
            Some(i) => {
                let issue = &db.issues[i];
                issue
                    .comments
                    .iter()
                    .map(|c| render_comment(db, &base, issue, c))
                    .collect()
            }
            None => Vec::new(),
        })
    }

    /// The comments' text (ADF flattened), oldest first.
    pub fn comment_texts(&self, key: &str) -> Vec<String> {
        self.comments(key)
            .iter()
            .map(|c| adf_plain_text(&c["body"]))
            .collect()
    }

    pub fn description_of(&self, key: &str) -> Option<Value> {
        self.with_db(|db| db.find(key).map(|i| db.issues[i].description.clone()))
    }

    pub fn summary_of(&self, key: &str) -> Option<String> {
        self.with_db(|db| db.find(key).map(|i| db.issues[i].summary.clone()))
    }

    pub fn status_of(&self, key: &str) -> Option<String> {
        self.with_db(|db| db.find(key).map(|i| db.issues[i].status.clone()))
    }

    pub fn labels_of(&self, key: &str) -> Vec<String> {
        self.with_db(|db| {
            db.find(key)
                .map(|i| db.issues[i].labels.clone())
                .unwrap_or_default()
        })
    }

    /// Links with `key` on either side.
    pub fn links_of(&self, key: &str) -> Vec<FakeLink> {
        self.with_db(|db| {
            db.links
                .iter()
                .filter(|l| l.inward == key || l.outward == key)
                .cloned()
                .collect()
        })
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.requests()
    }

    pub fn clear_requests(&self) {
        self.shared.recorder.clear();
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.recorder.inject(fault);
    }

    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    fn user(&self, account: &str) -> Value {
        let base = self.base.clone();
        self.with_db(|db| render_user(db, &base, account))
    }

    fn issue_webhook(&self, event: &str, type_name: &str, key: &str, actor: &str) -> Value {
        let issue = self.issue_json(key).unwrap_or_else(|| json!({"key": key}));
        let mut issue = issue;
        if let Some(fields) = issue.get_mut("fields").and_then(Value::as_object_mut) {
            // Webhooks no longer carry comments in issue events.
            fields.remove("comment");
        }
        json!({
            "timestamp": (EPOCH + 86_400) * 1000,
            "webhookEvent": event,
            "issue_event_type_name": type_name,
            "user": self.user(actor),
            "issue": issue,
            "changelog": {"id": "10100", "items": []},
        })
    }

    /// A `jira:issue_created` delivery for `key`, by `actor_account_id`.
    pub fn webhook_issue_created(&self, key: &str, actor_account_id: &str) -> Value {
        self.issue_webhook("jira:issue_created", "issue_created", key, actor_account_id)
    }

    /// A `jira:issue_updated` delivery for `key`, by `actor_account_id`.
    pub fn webhook_issue_updated(&self, key: &str, actor_account_id: &str) -> Value {
        self.issue_webhook("jira:issue_updated", "issue_generic", key, actor_account_id)
    }

    fn comment_webhook(&self, event: &str, key: &str, comment_id: &str) -> Value {
        let comment = self
            .comments(key)
            .into_iter()
            .find(|c| c["id"] == comment_id)
            .unwrap_or(Value::Null);
        let issue = self.issue_json(key).unwrap_or_else(|| json!({"key": key}));
        let f = &issue["fields"];
        json!({
            "timestamp": (EPOCH + 86_400) * 1000,
            "webhookEvent": event,
            "comment": comment,
            "issue": {
                "id": issue["id"],
                "self": issue["self"],
                "key": issue["key"],
                "fields": {
                    "summary": f["summary"],
                    "issuetype": f["issuetype"],
                    "project": f["project"],
                    "assignee": f["assignee"],
                    "status": f["status"],
                },
            },
        })
    }

    /// A `comment_created` delivery for comment `comment_id` of `key` (author from the comment).
    pub fn webhook_comment_created(&self, key: &str, comment_id: &str) -> Value {
        self.comment_webhook("comment_created", key, comment_id)
    }

    /// A `comment_updated` delivery for comment `comment_id` of `key`.
    pub fn webhook_comment_updated(&self, key: &str, comment_id: &str) -> Value {
        self.comment_webhook("comment_updated", key, comment_id)
    }
}

/// `X-Hub-Signature` for `body` signed with `secret` (`sha256=<hex>`), as Jira signs deliveries.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", super::hmac_sha256_hex(secret, body))
}

/// Plain text as an ADF document: one paragraph per non-empty line.
pub fn adf_text(text: &str) -> Value {
    let content: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json!({"type": "paragraph", "content": [{"type": "text", "text": l}]}))
        .collect();
    json!({"type": "doc", "version": 1, "content": content})
}

/// Every text in an ADF value, blocks on their own lines.
pub fn adf_plain_text(doc: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => out.push_str(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => {
                let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "text" => {
                        if let Some(t) = o.get("text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    "hardBreak" => out.push('\n'),
                    "mention" | "emoji" => {
                        if let Some(t) = v.pointer("/attrs/text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    _ => {}
                }
                if let Some(c) = o.get("content") {
                    walk(c, out);
                }
                if matches!(kind, "paragraph" | "heading" | "codeBlock") {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(doc, &mut out);
    out
}

/// `2024-01-01T00:01:00.000+0000`, Jira's timestamp format.
fn timestamp(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

fn render_user(db: &Db, base: &str, account: &str) -> Value {
    json!({
        "self": format!("{base}{API}/user?accountId={account}"),
        "accountId": account,
        "displayName": db.display_name(account),
        "active": true,
        "timeZone": "Etc/UTC",
        "accountType": "atlassian",
        "avatarUrls": {"48x48": format!("{base}/avatar/{account}/48")},
    })
}

fn status_json(base: &str, db_workflow: &[FakeTransition], name: &str) -> Value {
    let id = status_id(db_workflow, name);
    let (cat_id, cat_key, colour, cat_name) = match name.to_ascii_lowercase().as_str() {
        "to do" | "open" | "backlog" => (2, "new", "blue-gray", "To Do"),
        "done" | "closed" | "resolved" => (3, "done", "green", "Done"),
        _ => (4, "indeterminate", "yellow", "In Progress"),
    };
    json!({
        "self": format!("{base}{API}/status/{id}"),
        "description": "",
        "iconUrl": format!("{base}/images/icons/statuses/generic.png"),
        "name": name,
        "id": id,
        "statusCategory": {
            "self": format!("{base}{API}/statuscategory/{cat_id}"),
            "id": cat_id,
            "key": cat_key,
            "colorName": colour,
            "name": cat_name,
        },
    })
}

/// Status ids follow the workflow's order; statuses outside it get ids after those.
fn status_id(workflow: &[FakeTransition], name: &str) -> String {
    let pos = workflow
        .iter()
        .position(|t| t.to.eq_ignore_ascii_case(name))
        .unwrap_or(workflow.len() + name.len());
    (10000 + pos).to_string()
}

fn issuetype_json(base: &str, name: &str) -> Value {
    let (id, name, subtask) = ISSUE_TYPES
        .iter()
        .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(("10001", "Task", false));
    json!({
        "self": format!("{base}{API}/issuetype/{id}"),
        "id": id,
        "description": "",
        "iconUrl": format!("{base}/images/icons/issuetypes/{}.png", name.to_ascii_lowercase()),
        "name": name,
        "subtask": subtask,
        "hierarchyLevel": if subtask { -1 } else { 0 },
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Fields {
    /// Every field (and the comments).
    All,
    /// Only these (lowercased ids as asked).
    Only(Vec<String>),
    /// Just the issue's id (the enhanced search's default).
    IdOnly,
}

impl Fields {
    fn from_list(list: &[String]) -> Fields {
        if list.iter().any(|f| f == "*all" || f == "*navigable") {
            Fields::All
        } else {
            Fields::Only(
                list.iter()
                    .filter(|f| !f.starts_with('-'))
                    .cloned()
                    .collect(),
            )
        }
    }
    fn wants(&self, field: &str) -> bool {
        match self {
            Fields::All => true,
            Fields::Only(list) => list.iter().any(|f| f.eq_ignore_ascii_case(field)),
            Fields::IdOnly => false,
        }
    }
}

fn brief_issue(db: &Db, base: &str, workflow: &[FakeTransition], key: &str) -> Value {
    match db.find(key) {
        Some(i) => {
            let issue = &db.issues[i];
            json!({
                "id": issue.id.to_string(),
                "key": issue.key,
                "self": format!("{base}{API}/issue/{}", issue.id),
                "fields": {
                    "summary": issue.summary,
                    "status": status_json(base, workflow, &issue.status),
                    "priority": {"self": format!("{base}{API}/priority/3"), "name": "Medium", "id": "3"},
                    "issuetype": issuetype_json(base, &issue.issuetype),
                },
            })
        }
        None => json!({"key": key}),
    }
}

fn render_comment(db: &Db, base: &str, issue: &FIssue, c: &FComment) -> Value {
    json!({
        "self": format!("{base}{API}/issue/{}/comment/{}", issue.id, c.id),
        "id": c.id.to_string(),
        "author": render_user(db, base, &c.author),
        "body": c.body,
        "updateAuthor": render_user(db, base, &c.update_author),
        "created": timestamp(c.created),
        "updated": timestamp(c.updated),
        "jsdPublic": true,
    })
}

fn render_issue(
    db: &Db,
    base: &str,
    issue: &FIssue,
    fields: &Fields,
    workflow: &[FakeTransition],
) -> Value {
    if *fields == Fields::IdOnly {
        return json!({"id": issue.id.to_string()});
    }
    let mut f = Map::new();
    let mut put = |name: &str, value: Value| {
        if fields.wants(name) {
            f.insert(name.to_string(), value);
        }
    };
    put("summary", json!(issue.summary));
    put("description", issue.description.clone());
    put("status", status_json(base, workflow, &issue.status));
    put("labels", json!(issue.labels));
    put(
        "assignee",
        issue
            .assignee
            .as_deref()
            .map_or(Value::Null, |a| render_user(db, base, a)),
    );
    put("issuetype", issuetype_json(base, &issue.issuetype));
    put(
        "project",
        json!({
            "self": format!("{base}{API}/project/{}", issue.project),
            "id": "10000",
            "key": issue.project,
            "name": format!("{} project", issue.project),
            "projectTypeKey": "software",
        }),
    );
    put("created", json!(timestamp(issue.created)));
    put("updated", json!(timestamp(issue.updated)));
    let links: Vec<Value> = db
        .links
        .iter()
        .filter_map(|l| {
            let (side, other) = if l.outward.eq_ignore_ascii_case(&issue.key) {
                ("inwardIssue", &l.inward)
            } else if l.inward.eq_ignore_ascii_case(&issue.key) {
                ("outwardIssue", &l.outward)
            } else {
                return None;
            };
            let (type_id, name, inward, outward) = LINK_TYPES
                .iter()
                .find(|(_, n, _, _)| n.eq_ignore_ascii_case(&l.link_type))
                .copied()
                .unwrap_or(("10003", "Relates", "relates to", "relates to"));
            Some(json!({
                "id": l.id,
                "self": format!("{base}{API}/issueLink/{}", l.id),
                "type": {
                    "id": type_id,
                    "name": name,
                    "inward": inward,
                    "outward": outward,
                    "self": format!("{base}{API}/issueLinkType/{type_id}"),
                },
                side: brief_issue(db, base, workflow, other),
            }))
        })
        .collect();
    put("issuelinks", json!(links));
    let subtasks: Vec<Value> = db
        .issues
        .iter()
        .filter(|i| {
            i.parent
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(&issue.key))
        })
        .map(|i| brief_issue(db, base, workflow, &i.key))
        .collect();
    put("subtasks", json!(subtasks));
    if let Some(parent) = &issue.parent {
        put("parent", brief_issue(db, base, workflow, parent));
    }
    for (name, value) in &issue.custom {
        put(name, value.clone());
    }
    if fields.wants("comment") {
        let comments: Vec<Value> = issue
            .comments
            .iter()
            .map(|c| render_comment(db, base, issue, c))
            .collect();
        f.insert(
            "comment".into(),
            json!({
                "comments": comments,
                "self": format!("{base}{API}/issue/{}/comment", issue.id),
                "maxResults": comments.len(),
                "total": comments.len(),
                "startAt": 0,
            }),
        );
    }
    json!({
        "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
        "id": issue.id.to_string(),
        "self": format!("{base}{API}/issue/{}", issue.id),
        "key": issue.key,
        "fields": f,
    })
}

// ───────────────────────────── request handling ─────────────────────────────

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = shared.recorder.record(&method, &uri, &headers, &body);
    if let Some(resp) = fault.as_ref().and_then(fault_response) {
        return resp;
    }
    let (status, value) = shared.answer(&method, &uri, &headers, &body);
    if let Some(FaultKind::AfterApply(code)) = fault {
        return error_status(code);
    }
    if value.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(value)).into_response()
    }
}

/// The query string's `key=value` pairs, form-decoded (`+` is a space).
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

impl Shared {
    fn base(&self) -> String {
        self.base.get().cloned().unwrap_or_default()
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        match self.db.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Answer {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given != self.options.auth.header_value() {
            return jira_error(
                StatusCode::UNAUTHORIZED,
                &["You are not authenticated. Authentication required to perform this operation."],
                Value::Null,
            );
        }
        let writes = *method == Method::POST || *method == Method::PUT;
        let mut json_body = Value::Null;
        if writes {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !content_type
                .to_ascii_lowercase()
                .starts_with("application/json")
            {
                return jira_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &["Unsupported Media Type: send Content-Type: application/json"],
                    Value::Null,
                );
            }
            json_body = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return bad_request(&format!("Unexpected character in the request body: {e}"));
                }
            };
        }
        let query = query_pairs(uri);
        let Some(rest) = uri.path().strip_prefix(API) else {
            return jira_error(StatusCode::NOT_FOUND, &["No such endpoint."], Value::Null);
        };
        let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
        let m = method.as_str();
        match (m, segments.as_slice()) {
            ("POST", ["search", "jql"]) => self.search(&json_body),
            ("GET", ["search", "jql"]) => {
                let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
                let mut body = json!({"jql": get("jql")});
                if let Some(t) = get("nextPageToken") {
                    body["nextPageToken"] = json!(t);
                }
                if let Some(m) = get("maxResults").and_then(|m| m.parse::<i64>().ok()) {
                    body["maxResults"] = json!(m);
                }
                if let Some(f) = get("fields") {
                    body["fields"] = json!(f.split(',').collect::<Vec<_>>());
                }
                self.search(&body)
            }
            ("GET", ["myself"]) => {
                let db = self.db();
                (
                    StatusCode::OK,
                    render_user(&db, &self.base(), &self.options.bot_account_id),
                )
            }
            ("POST", ["issue"]) => self.create_issue(&json_body),
            ("GET", ["issue", key]) => self.get_issue(key, &query),
            ("PUT", ["issue", key]) => self.edit_issue(key, &json_body),
            ("GET", ["issue", key, "comment"]) => self.list_comments(key, &query),
            ("POST", ["issue", key, "comment"]) => self.add_comment(key, &json_body),
            ("GET", ["issue", key, "comment", id]) => self.get_comment(key, id),
            ("PUT", ["issue", key, "comment", id]) => self.edit_comment(key, id, &json_body),
            ("GET", ["issue", key, "transitions"]) => self.transitions(key),
            ("POST", ["issue", key, "transitions"]) => self.do_transition(key, &json_body),
            ("POST", ["issueLink"]) => self.create_link(&json_body),
            (
                _,
                ["search", "jql"]
                | ["myself"]
                | ["issue"]
                | ["issue", _]
                | ["issue", _, "comment"]
                | ["issue", _, "comment", _]
                | ["issue", _, "transitions"]
                | ["issueLink"],
            ) => jira_error(
                StatusCode::METHOD_NOT_ALLOWED,
                &["Method not allowed"],
                Value::Null,
            ),
            _ => jira_error(StatusCode::NOT_FOUND, &["No such endpoint."], Value::Null),
        }
    }

    fn search(&self, body: &Value) -> Answer {
        let Some(jql) = body
            .get("jql")
            .and_then(Value::as_str)
            .filter(|j| !j.trim().is_empty())
        else {
            return bad_request(
                "Unbounded JQL queries are not allowed here. Please add a search restriction to your query.",
            );
        };
        let query = match parse_jql(jql) {
            Ok(q) => q,
            Err(e) => return bad_request(&format!("Error in the JQL Query: {e}")),
        };
        let max = match body.get("maxResults") {
            None | Some(Value::Null) => 50,
            Some(v) => match v.as_u64() {
                Some(n) => n as usize,
                None => return bad_request("maxResults must be a non-negative integer."),
            },
        };
        let page = max.clamp(1, self.options.page_size.max(1));
        let fields = match body.get("fields") {
            None | Some(Value::Null) => Fields::IdOnly,
            Some(Value::Array(list)) => Fields::from_list(
                &list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
            Some(_) => return bad_request("fields must be a list of field names."),
        };
        let mut db = self.db();
        let offset = match body.get("nextPageToken").and_then(Value::as_str) {
            None => 0,
            Some(token) => match db.tokens.get(token) {
                Some((q, offset)) if q == jql => *offset,
                _ => {
                    return bad_request("The provided next page token is invalid or expired.");
                }
            },
        };
        let mut hits: Vec<&FIssue> = db
            .issues
            .iter()
            .filter(|i| query.matches(i, &self.options.bot_account_id))
            .collect();
        if let Some((field, asc)) = &query.order {
            if field == "key" {
                hits.sort_by_key(|i| {
                    (
                        i.project.clone(),
                        i.key
                            .rsplit('-')
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or(0),
                    )
                });
            }
            if !asc {
                hits.reverse();
            }
        }
        let base = self.base();
        let issues: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(page)
            .map(|i| render_issue(&db, &base, i, &fields, &self.options.workflow))
            .collect();
        let more = offset + page < hits.len();
        if more {
            db.next_token += 1;
            let token = format!("CAEaAggB-{}", db.next_token);
            db.tokens
                .insert(token.clone(), (jql.to_string(), offset + page));
            (
                StatusCode::OK,
                json!({"issues": issues, "nextPageToken": token, "isLast": false}),
            )
        } else {
            (StatusCode::OK, json!({"issues": issues, "isLast": true}))
        }
    }

    fn get_issue(&self, key: &str, query: &[(String, String)]) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let fields = match query.iter().find(|(k, _)| k == "fields") {
            Some((_, list)) => Fields::from_list(
                &list
                    .split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect::<Vec<_>>(),
            ),
            None => Fields::All,
        };
        (
            StatusCode::OK,
            render_issue(
                &db,
                &self.base(),
                &db.issues[i],
                &fields,
                &self.options.workflow,
            ),
        )
    }

    fn edit_issue(&self, key: &str, body: &Value) -> Answer {
        let Some(obj) = body.as_object() else {
            return bad_request("The request body must be a JSON object.");
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let mut issue = db.issues[i].clone();
        if let Some(fields) = obj.get("fields") {
            let Some(fields) = fields.as_object() else {
                return field_error("fields", "fields must be an object.");
            };
            for (name, value) in fields {
                match name.as_str() {
                    "summary" => match value.as_str().filter(|s| !s.trim().is_empty()) {
                        Some(s) => issue.summary = s.to_string(),
                        None => {
                            return field_error(
                                "summary",
                                "You must specify a summary of the issue.",
                            );
                        }
                    },
                    "description" => {
                        if !value.is_null()
                            && let Err(e) = validate_adf(value)
                        {
                            return field_error("description", &adf_message(&e));
                        }
                        issue.description = value.clone();
                    }
                    "labels" => match labels_of(value) {
                        Ok(l) => issue.labels = l,
                        Err(e) => return e,
                    },
                    "assignee" => {
                        issue.assignee = value
                            .get("accountId")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    }
                    n if n.starts_with("customfield_") => {
                        issue.custom.insert(n.to_string(), value.clone());
                    }
                    n => return field_error(n, &unknown_field(n)),
                }
            }
        }
        if let Some(update) = obj.get("update") {
            let Some(update) = update.as_object() else {
                return field_error("update", "update must be an object.");
            };
            for (name, ops) in update {
                if name != "labels" {
                    return field_error(name, &unknown_field(name));
                }
                let Some(ops) = ops.as_array() else {
                    return field_error("labels", "Operations must be a list.");
                };
                for op in ops {
                    let Some((verb, value)) = op.as_object().and_then(|o| o.iter().next()) else {
                        return field_error("labels", "Each operation must be an object.");
                    };
                    match verb.as_str() {
                        "add" | "remove" => {
                            let Some(label) = value.as_str() else {
                                return field_error("labels", "A label must be a string.");
                            };
                            if let Err(e) = check_label(label) {
                                return e;
                            }
                            issue.labels.retain(|l| l != label);
                            if verb == "add" {
                                issue.labels.push(label.to_string());
                            }
                        }
                        "set" => match labels_of(value) {
                            Ok(l) => issue.labels = l,
                            Err(e) => return e,
                        },
                        other => {
                            return field_error(
                                "labels",
                                &format!("Operation '{other}' is not supported for labels."),
                            );
                        }
                    }
                }
            }
        }
        issue.updated = db.tick();
        db.issues[i] = issue;
        (StatusCode::NO_CONTENT, Value::Null)
    }

    fn create_issue(&self, body: &Value) -> Answer {
        let Some(fields) = body.get("fields").and_then(Value::as_object) else {
            return bad_request("The request must have a fields object.");
        };
        let mut errors = Map::new();
        let project = fields
            .get("project")
            .and_then(|p| p.get("key").or_else(|| p.get("id")))
            .and_then(Value::as_str)
            .map(str::to_string);
        let known_project = |db: &Db, p: &str| {
            p.eq_ignore_ascii_case(&self.options.project_key)
                || db.issues.iter().any(|i| i.project.eq_ignore_ascii_case(p))
        };
        let summary = fields
            .get("summary")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty());
        if summary.is_none() {
            errors.insert(
                "summary".into(),
                json!("You must specify a summary of the issue."),
            );
        } else if summary.is_some_and(|s| s.chars().count() > 255) {
            errors.insert(
                "summary".into(),
                json!("Summary must be less than 255 characters."),
            );
        }
        let issuetype = fields
            .get("issuetype")
            .and_then(|t| t.get("name").or_else(|| t.get("id")))
            .and_then(Value::as_str)
            .and_then(|t| {
                ISSUE_TYPES
                    .iter()
                    .find(|(id, name, _)| name.eq_ignore_ascii_case(t) || *id == t)
            })
            .map(|(_, name, _)| name.to_string());
        if issuetype.is_none() {
            errors.insert("issuetype".into(), json!("Specify a valid issue type"));
        }
        let description = fields.get("description").cloned().unwrap_or(Value::Null);
        if !description.is_null()
            && let Err(e) = validate_adf(&description)
        {
            errors.insert("description".into(), json!(adf_message(&e)));
        }
        if too_long(&description) {
            errors.insert("description".into(), json!(TOO_LONG));
        }
        let labels = match fields.get("labels") {
            None => Vec::new(),
            Some(v) => match labels_of(v) {
                Ok(l) => l,
                Err(e) => return e,
            },
        };
        let mut db = self.db();
        match &project {
            Some(p) if known_project(&db, p) => {}
            _ => {
                errors.insert("project".into(), json!("Specify a valid project ID or key"));
            }
        }
        if !errors.is_empty() {
            return jira_error(StatusCode::BAD_REQUEST, &[], Value::Object(errors));
        }
        let project = project.unwrap_or_default().to_ascii_uppercase();
        let number = db
            .issues
            .iter()
            .filter(|i| i.project == project)
            .filter_map(|i| i.key.rsplit('-').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let now = db.tick();
        db.next_issue_id += 1;
        let id = db.next_issue_id;
        let key = format!("{project}-{number}");
        let custom = fields
            .iter()
            .filter(|(k, _)| k.starts_with("customfield_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parent = fields
            .get("parent")
            .and_then(|p| p.get("key"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let first_status = self
            .options
            .workflow
            .first()
            .map_or("To Do".to_string(), |t| t.to.clone());
        db.issues.push(FIssue {
            id,
            key: key.clone(),
            project,
            summary: summary.unwrap_or_default().to_string(),
            description,
            status: first_status,
            labels,
            assignee: None,
            issuetype: issuetype.unwrap_or_default(),
            parent,
            custom,
            comments: Vec::new(),
            created: now,
            updated: now,
        });
        (
            StatusCode::CREATED,
            json!({"id": id.to_string(), "key": key, "self": format!("{}{API}/issue/{id}", self.base())}),
        )
    }

    fn list_comments(&self, key: &str, query: &[(String, String)]) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let num = |name: &str, default: usize| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let start = num("startAt", 0);
        let max = num("maxResults", 5000).clamp(1, self.options.page_size.max(1));
        let issue = &db.issues[i];
        let base = self.base();
        let comments: Vec<Value> = issue
            .comments
            .iter()
            .skip(start)
            .take(max)
            .map(|c| render_comment(&db, &base, issue, c))
            .collect();
        (
            StatusCode::OK,
            json!({"startAt": start, "maxResults": max, "total": issue.comments.len(), "comments": comments}),
        )
    }

    fn comment_body(body: &Value) -> Result<Value, Answer> {
        let Some(doc) = body.get("body") else {
            return Err(field_error("comment", "Comment body can not be empty!"));
        };
        if let Err(e) = validate_adf(doc) {
            return Err(field_error("comment", &adf_message(&e)));
        }
        if adf_plain_text(doc).trim().is_empty() {
            return Err(field_error("comment", "Comment body can not be empty!"));
        }
        if too_long(doc) {
            return Err(field_error("comment", TOO_LONG));
        }
        Ok(doc.clone())
    }

    fn add_comment(&self, key: &str, body: &Value) -> Answer {
        let doc = match Self::comment_body(body) {
            Ok(d) => d,
            Err(e) => return e,
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let now = db.tick();
        db.next_comment_id += 1;
        let comment = FComment {
            id: db.next_comment_id,
            author: self.options.bot_account_id.clone(),
            update_author: self.options.bot_account_id.clone(),
            body: doc,
            created: now,
            updated: now,
        };
        db.issues[i].comments.push(comment.clone());
        db.issues[i].updated = now;
        let rendered = render_comment(&db, &self.base(), &db.issues[i], &comment);
        (StatusCode::CREATED, rendered)
    }

    fn get_comment(&self, key: &str, id: &str) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let issue = &db.issues[i];
        match issue.comments.iter().find(|c| c.id.to_string() == id) {
            Some(c) => (StatusCode::OK, render_comment(&db, &self.base(), issue, c)),
            None => comment_not_found(id),
        }
    }

    fn edit_comment(&self, key: &str, id: &str, body: &Value) -> Answer {
        let doc = match Self::comment_body(body) {
            Ok(d) => d,
            Err(e) => return e,
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let now = db.tick();
        let Some(c) = db.issues[i]
            .comments
            .iter_mut()
            .find(|c| c.id.to_string() == id)
        else {
            return comment_not_found(id);
        };
        c.body = doc;
        c.updated = now;
        c.update_author = self.options.bot_account_id.clone();
        let comment = c.clone();
        let rendered = render_comment(&db, &self.base(), &db.issues[i], &comment);
        (StatusCode::OK, rendered)
    }

    fn available(&self, status: &str) -> Vec<&FakeTransition> {
        self.options
            .workflow
            .iter()
            .filter(|t| !t.to.eq_ignore_ascii_case(status))
            .collect()
    }

    fn transitions(&self, key: &str) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let base = self.base();
        let list: Vec<Value> = self
            .available(&db.issues[i].status)
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "name": t.name,
                    "to": status_json(&base, &self.options.workflow, &t.to),
                    "hasScreen": false,
                    "isGlobal": true,
                    "isInitial": false,
                    "isAvailable": true,
                    "isConditional": false,
                    "isLooped": false,
                })
            })
            .collect();
        (
            StatusCode::OK,
            json!({"expand": "transitions", "transitions": list}),
        )
    }

    fn do_transition(&self, key: &str, body: &Value) -> Answer {
        let id = match body.pointer("/transition/id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return bad_request("Missing 'transition' identifier"),
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let Some(to) = self
            .available(&db.issues[i].status)
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.to.clone())
        else {
            return bad_request(&format!(
                "Transition id '{id}' is not valid for this issue."
            ));
        };
        let now = db.tick();
        db.issues[i].status = to;
        db.issues[i].updated = now;
        (StatusCode::NO_CONTENT, Value::Null)
    }

    fn create_link(&self, body: &Value) -> Answer {
        let type_name = body
            .pointer("/type/name")
            .or_else(|| body.pointer("/type/id"))
            .and_then(Value::as_str);
        let Some(link_type) = type_name.and_then(|t| {
            LINK_TYPES
                .iter()
                .find(|(id, name, _, _)| name.eq_ignore_ascii_case(t) || *id == t)
        }) else {
            return jira_error(
                StatusCode::NOT_FOUND,
                &[&format!(
                    "No issue link type with name '{}' found.",
                    type_name.unwrap_or("")
                )],
                Value::Null,
            );
        };
        let side = |name: &str| {
            body.get(name)
                .and_then(|i| i.get("key").or_else(|| i.get("id")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(inward), Some(outward)) = (side("inwardIssue"), side("outwardIssue")) else {
            return bad_request("Both inwardIssue and outwardIssue are required.");
        };
        let mut db = self.db();
        let (Some(a), Some(b)) = (db.find(&inward), db.find(&outward)) else {
            return jira_error(
                StatusCode::NOT_FOUND,
                &["Issue Does Not Exist"],
                Value::Null,
            );
        };
        let (inward, outward) = (db.issues[a].key.clone(), db.issues[b].key.clone());
        let exists = db.links.iter().any(|l| {
            l.link_type.eq_ignore_ascii_case(link_type.1)
                && l.inward == inward
                && l.outward == outward
        });
        if !exists {
            db.next_link_id += 1;
            let id = db.next_link_id.to_string();
            db.links.push(FakeLink {
                id,
                link_type: link_type.1.to_string(),
                inward,
                outward,
            });
        }
        (StatusCode::CREATED, Value::Null)
    }
}

fn comment_not_found(id: &str) -> Answer {
    jira_error(
        StatusCode::NOT_FOUND,
        &[&format!("Can not find a comment for the id: {id}.")],
        Value::Null,
    )
}

fn unknown_field(name: &str) -> String {
    format!("Field '{name}' cannot be set. It is not on the appropriate screen, or unknown.")
}

fn check_label(label: &str) -> Result<(), Answer> {
    if label.is_empty() || label.contains(char::is_whitespace) {
        return Err(field_error(
            "labels",
            &format!("The label '{label}' contains spaces which is invalid."),
        ));
    }
    if label.chars().count() > 255 {
        return Err(field_error(
            "labels",
            "A label must be at most 255 characters.",
        ));
    }
    Ok(())
}

fn labels_of(value: &Value) -> Result<Vec<String>, Answer> {
    let Some(list) = value.as_array() else {
        return Err(field_error("labels", "labels must be a list of strings."));
    };
    let mut out: Vec<String> = Vec::new();
    for l in list {
        let Some(l) = l.as_str() else {
            return Err(field_error("labels", "labels must be a list of strings."));
        };
        check_label(l)?;
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    Ok(out)
}

const TOO_LONG: &str =
    "The entered text is too long. It exceeds the allowed limit of 32,767 characters.";

/// Jira's limit on rich text, counted over the document's JSON.
fn too_long(doc: &Value) -> bool {
    serde_json::to_string(doc).map_or(true, |s| s.chars().count() > 32_767)
}

fn adf_message(detail: &str) -> String {
    format!(
        "Operation value must be an Atlassian Document (see the Atlassian Document Format): {detail}"
    )
}

// ───────────────────────────── ADF validation ─────────────────────────────

const BLOCKS: &[&str] = &[
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "taskList",
    "decisionList",
    "codeBlock",
    "blockquote",
    "panel",
    "rule",
    "table",
    "mediaSingle",
    "mediaGroup",
    "expand",
    "nestedExpand",
    "blockCard",
    "embedCard",
    "layoutSection",
    "extension",
    "bodiedExtension",
];
const INLINES: &[&str] = &[
    "text",
    "hardBreak",
    "mention",
    "emoji",
    "inlineCard",
    "date",
    "status",
    "placeholder",
    "mediaInline",
    "inlineExtension",
];
const MARKS: &[&str] = &[
    "code",
    "em",
    "link",
    "strike",
    "strong",
    "subsup",
    "textColor",
    "underline",
    "backgroundColor",
    "border",
    "annotation",
];

/// Check a document the way Jira's ADF validator does for what codemill writes.
pub fn validate_adf(doc: &Value) -> Result<(), String> {
    let Some(obj) = doc.as_object() else {
        return Err("the document is not an object".into());
    };
    if obj.get("type").and_then(Value::as_str) != Some("doc") {
        return Err("the root node's type must be \"doc\"".into());
    }
    if obj.get("version").and_then(Value::as_u64) != Some(1) {
        return Err("the root node's version must be 1".into());
    }
    let Some(content) = obj.get("content").and_then(Value::as_array) else {
        return Err("the root node must have a content array".into());
    };
    for node in content {
        validate_node(node, "doc", 0)?;
    }
    Ok(())
}

fn validate_node(node: &Value, parent: &str, depth: usize) -> Result<(), String> {
    if depth > 100 {
        return Err("the document is nested too deeply".into());
    }
    let Some(obj) = node.as_object() else {
        return Err(format!("a child of {parent} is not an object"));
    };
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err(format!("a child of {parent} has no type"));
    };
    let content: &[Value] = match obj.get("content") {
        None => &[],
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("{kind}: content must be an array")),
    };
    let kinds: Vec<&str> = content
        .iter()
        .map(|c| c.get("type").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let all = |allowed: &[&str]| kinds.iter().all(|k| allowed.contains(k));
    let ok = match kind {
        "text" => {
            let text = obj.get("text").and_then(Value::as_str).unwrap_or("");
            if text.is_empty() {
                return Err(format!("empty text node in {parent}"));
            }
            validate_marks(obj.get("marks"))?;
            true
        }
        "paragraph" | "heading" => {
            if kind == "heading" {
                let level = node.pointer("/attrs/level").and_then(Value::as_u64);
                if !level.is_some_and(|l| (1..=6).contains(&l)) {
                    return Err("heading: attrs.level must be 1 to 6".into());
                }
            }
            all(INLINES)
        }
        "codeBlock" => {
            for c in content {
                if c.get("marks")
                    .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()))
                {
                    return Err("codeBlock: text may not have marks".into());
                }
            }
            all(&["text"])
        }
        "bulletList" | "orderedList" => !kinds.is_empty() && all(&["listItem"]),
        "listItem" => {
            !kinds.is_empty()
                && matches!(kinds[0], "paragraph" | "codeBlock" | "mediaSingle")
                && all(&[
                    "paragraph",
                    "bulletList",
                    "orderedList",
                    "codeBlock",
                    "mediaSingle",
                    "taskList",
                ])
        }
        "blockquote" => {
            !kinds.is_empty()
                && all(&[
                    "paragraph",
                    "bulletList",
                    "orderedList",
                    "codeBlock",
                    "mediaGroup",
                    "mediaSingle",
                ])
        }
        "rule" | "hardBreak" | "mention" | "emoji" | "date" | "status" | "inlineCard"
        | "placeholder" | "media" | "mediaInline" => content.is_empty(),
        "table" => !kinds.is_empty() && all(&["tableRow"]),
        "tableRow" => !kinds.is_empty() && all(&["tableHeader", "tableCell"]),
        "tableHeader" | "tableCell" | "panel" | "expand" | "nestedExpand" | "layoutColumn"
        | "bodiedExtension" => all(BLOCKS),
        _ if BLOCKS.contains(&kind) || INLINES.contains(&kind) => true,
        "taskItem" | "decisionItem" | "layoutSection" => true,
        other => return Err(format!("unknown node type {other:?} in {parent}")),
    };
    if !ok {
        return Err(format!("{kind} may not contain [{}]", kinds.join(", ")));
    }
    if matches!(parent, "doc") && !BLOCKS.contains(&kind) {
        return Err(format!("{kind} is not a block node (in doc)"));
    }
    for c in content {
        validate_node(c, kind, depth + 1)?;
    }
    Ok(())
}

fn validate_marks(marks: Option<&Value>) -> Result<(), String> {
    let Some(marks) = marks else { return Ok(()) };
    let Some(marks) = marks.as_array() else {
        return Err("marks must be an array".into());
    };
    let mut seen: Vec<&str> = Vec::new();
    for m in marks {
        let Some(kind) = m.get("type").and_then(Value::as_str) else {
            return Err("a mark has no type".into());
        };
        if !MARKS.contains(&kind) {
            return Err(format!("unknown mark {kind:?}"));
        }
        if seen.contains(&kind) {
            return Err(format!("mark {kind:?} twice on one text node"));
        }
        if kind == "link"
            && m.pointer("/attrs/href")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Err("link mark without attrs.href".into());
        }
        seen.push(kind);
    }
    if seen.contains(&"code")
        && seen
            .iter()
            .any(|k| !matches!(*k, "code" | "link" | "annotation"))
    {
        return Err("the code mark may only be combined with link".into());
    }
    Ok(())
}

// ───────────────────────────── JQL ─────────────────────────────

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(String),
    Open,
    Close,
    Comma,
}

fn tokenize(jql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = jql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("an unterminated string".into()),
                        Some('\\') => {
                            let Some(n) = chars.get(i + 1) else {
                                return Err("a string ends in a backslash".into());
                            };
                            s.push(*n);
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '=' | '~' => {
                out.push(Tok::Op(c.to_string()));
                i += 1;
            }
            '!' => match chars.get(i + 1) {
                Some('=') => {
                    out.push(Tok::Op("!=".into()));
                    i += 2;
                }
                Some('~') => {
                    out.push(Tok::Op("!~".into()));
                    i += 2;
                }
                _ => return Err("a lone '!'".into()),
            },
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
                {
                    i += 1;
                }
                let mut word: String = chars[start..i].iter().collect();
                // A function call such as currentUser().
                if chars.get(i) == Some(&'(') && chars.get(i + 1) == Some(&')') {
                    word.push_str("()");
                    i += 2;
                }
                out.push(Tok::Word(word));
            }
            other => return Err(format!("the character '{other}' is not supported")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Clause {
    field: String,
    op: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Query {
    clauses: Vec<Clause>,
    /// (field, ascending)
    order: Option<(String, bool)>,
}

fn parse_jql(jql: &str) -> Result<Query, String> {
    let toks = tokenize(jql)?;
    let mut i = 0;
    let mut clauses = Vec::new();
    let mut order = None;
    let word =
        |t: Option<&Tok>, w: &str| matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
    let value = |t: Option<&Tok>| match t {
        Some(Tok::Word(w)) | Some(Tok::Str(w)) => Some(w.clone()),
        _ => None,
    };
    while i < toks.len() {
        if word(toks.get(i), "order") && word(toks.get(i + 1), "by") {
            let Some(Tok::Word(field)) = toks.get(i + 2) else {
                return Err("ORDER BY needs a field".into());
            };
            let field = field.to_ascii_lowercase();
            if !matches!(field.as_str(), "created" | "key" | "updated" | "rank") {
                return Err(format!("ordering by '{field}' is not supported"));
            }
            let asc = !word(toks.get(i + 3), "desc");
            order = Some((field, asc));
            break;
        }
        let Some(Tok::Word(field)) = toks.get(i) else {
            return Err(format!("expected a field name at token {}", i + 1));
        };
        let field = field.to_ascii_lowercase();
        i += 1;
        let op = match toks.get(i) {
            Some(Tok::Op(op)) => {
                i += 1;
                op.clone()
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => {
                i += 1;
                "in".to_string()
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") && word(toks.get(i + 1), "in") => {
                i += 2;
                "not in".to_string()
            }
            _ => return Err(format!("expected an operator after '{field}'")),
        };
        let values = if op.ends_with("in") {
            if toks.get(i) != Some(&Tok::Open) {
                return Err("expected '(' after IN".into());
            }
            i += 1;
            let mut vals = Vec::new();
            loop {
                let Some(v) = value(toks.get(i)) else {
                    return Err("expected a value in the list".into());
                };
                vals.push(v);
                i += 1;
                match toks.get(i) {
                    Some(Tok::Comma) => i += 1,
                    Some(Tok::Close) => {
                        i += 1;
                        break;
                    }
                    _ => return Err("expected ',' or ')' in the list".into()),
                }
            }
            vals
        } else {
            let Some(v) = value(toks.get(i)) else {
                return Err(format!("expected a value after '{field} {op}'"));
            };
            i += 1;
            vec![v]
        };
        let text_field = matches!(
            field.as_str(),
            "summary" | "description" | "comment" | "text"
        );
        let known = matches!(
            field.as_str(),
            "project"
                | "status"
                | "labels"
                | "key"
                | "issuekey"
                | "id"
                | "issuetype"
                | "type"
                | "assignee"
                | "parent"
        );
        if text_field != (op == "~" || op == "!~") || !(text_field || known) {
            if !(text_field || known) {
                return Err(format!(
                    "Field '{field}' does not exist or you do not have permission to view it."
                ));
            }
            return Err(format!(
                "the operator '{op}' is not supported by the field '{field}'"
            ));
        }
        clauses.push(Clause { field, op, values });
        if i < toks.len() {
            if word(toks.get(i), "and") {
                i += 1;
            } else if word(toks.get(i), "order") {
                continue;
            } else {
                return Err("only AND joins clauses in the fake Jira".into());
            }
        }
    }
    Ok(Query { clauses, order })
}

impl Query {
    fn matches(&self, issue: &FIssue, bot: &str) -> bool {
        self.clauses.iter().all(|c| c.matches(issue, bot))
    }
}

impl Clause {
    fn matches(&self, issue: &FIssue, bot: &str) -> bool {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let resolve = |v: &str| {
            if v.eq_ignore_ascii_case("currentUser()") {
                bot.to_string()
            } else {
                v.to_string()
            }
        };
        let text = || match self.field.as_str() {
            "summary" => issue.summary.clone(),
            "description" => adf_plain_text(&issue.description),
            "comment" => issue
                .comments
                .iter()
                .map(|c| adf_plain_text(&c.body))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => {
                let mut all = vec![issue.summary.clone(), adf_plain_text(&issue.description)];
                all.extend(issue.comments.iter().map(|c| adf_plain_text(&c.body)));
                all.join("\n")
            }
        };
        let one = |v: &str| -> bool {
            let v = resolve(v);
            match self.field.as_str() {
                "project" => eq(&issue.project, &v),
                "status" => eq(&issue.status, &v),
                "labels" => issue.labels.iter().any(|l| eq(l, &v)),
                "key" | "issuekey" | "id" => eq(&issue.key, &v) || issue.id.to_string() == v,
                "issuetype" | "type" => eq(&issue.issuetype, &v),
                "assignee" => issue.assignee.as_deref().is_some_and(|a| eq(a, &v)),
                "parent" => issue.parent.as_deref().is_some_and(|p| eq(p, &v)),
                _ => text_matches(&text(), &v),
            }
        };
        match self.op.as_str() {
            "=" | "~" | "in" => self.values.iter().any(|v| one(v)),
            _ => !self.values.iter().any(|v| one(v)),
        }
    }
}

/// Jira-like text search: `"a phrase"` must appear as is (case-insensitive); bare words must
/// all appear.
fn text_matches(haystack: &str, query: &str) -> bool {
    let hay = haystack.to_lowercase();
    let q = query.trim();
    if q.len() >= 2 && q.starts_with('"') && q.ends_with('"') {
        let phrase = q[1..q.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
        return hay.contains(&phrase.to_lowercase());
    }
    q.split_whitespace()
        .all(|w| hay.contains(&w.trim_matches('*').to_lowercase()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn basic_auth_is_base64_of_email_and_token() {
        let auth = FakeJiraAuth::Basic {
            email: "a@b.c".into(),
            token: "tok".into(),
        };
        assert_eq!(auth.header_value(), "Basic YUBiLmM6dG9r");
    }

    #[test]
    fn timestamps_are_jira_formatted() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(timestamp(EPOCH), "2024-01-01T00:00:00.000+0000");
        assert_eq!(
            timestamp(EPOCH + 86_400 * 60 + 61),
            "2024-03-01T00:01:01.000+0000"
        );
    }

    #[test]
    fn jql_the_way_codemill_writes_it() {
        let q = parse_jql(
            r#"project = "PROJ" AND status = "To Do" AND labels = "codemill" ORDER BY created ASC"#,
        )
        .unwrap();
        assert_eq!(q.clauses.len(), 3);
        assert_eq!(q.order, Some(("created".into(), true)));
        let q = parse_jql(r#"project = "PROJ" AND description ~ "\"[codemill:x]\"""#).unwrap();
        assert_eq!(q.clauses[1].values, vec![r#""[codemill:x]""#.to_string()]);
        assert!(text_matches(
            "see [codemill:x] here",
            &q.clauses[1].values[0]
        ));
        assert!(!text_matches(
            "see [codemill:y] here",
            &q.clauses[1].values[0]
        ));
        assert!(parse_jql("project = A OR project = B").is_err());
        assert!(parse_jql("nosuchfield = 1").is_err());
        assert!(parse_jql("key in (PROJ-1, \"PROJ-2\") AND assignee = currentUser()").is_ok());
    }

    #[test]
    fn adf_validation_catches_what_jira_refuses() {
        assert!(validate_adf(&adf_text("hi")).is_ok());
        assert!(validate_adf(&json!({"type": "paragraph"})).is_err());
        assert!(
            validate_adf(
                &json!({"type": "doc", "version": 1, "content": [{"type": "text", "text": "x"}]})
            )
            .is_err()
        );
        assert!(validate_adf(&json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]})).is_err());
        assert!(validate_adf(&json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x", "marks": [{"type": "code"}, {"type": "strong"}]}]}]})).is_err());
    }

    #[test]
    fn query_pairs_are_form_decoded() {
        let uri: Uri = "/x?a=a%2Cb+c&b=100%&&c=%zz&d".parse().unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            query_pairs(&uri),
            pairs(&[("a", "a,b c"), ("b", "100%"), ("c", "%zz"), ("d", "")])
        );
        assert!(query_pairs(&"/x".parse().unwrap()).is_empty());
    }
}
