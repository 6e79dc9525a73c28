//! A fake Jira site on 127.0.0.1 for tests, speaking Cloud's REST API v3 and Data Center's REST
//! API v2 over one store: issues with rich-text descriptions, comments, labels, a workflow of named
//! transitions, issue links and created issues, answered in the documented shapes and validated
//! the way Jira validates (auth, `Content-Type`, required fields, ADF on v3 and wiki strings on
//! v2, transition ids, with Jira's `{"errorMessages": [...], "errors": {...}}` errors).
//!
//! Endpoints (below `/rest/api/3` and `/rest/api/2`): `POST /search/jql` (v3, `nextPageToken`
//! pages) or `GET|POST /search` (v2, `startAt` pages with `total`), `GET|PUT /issue/{key}`,
//! `POST /issue`, `GET|POST /issue/{key}/comment`, `GET|PUT /issue/{key}/comment/{id}`,
//! `GET|POST /issue/{key}/transitions`, `POST /issueLink`, `GET /myself`. The store keeps rich
//! text as it was written (ADF, or a wiki string); v2 answers ADF as its text and v3 a string as
//! ADF, since each version speaks only its own kind.
//!
//! Search understands the JQL codemill writes: clauses joined by `AND` over `project`, `status`,
//! `labels`, `key`, `issuetype`, `assignee`, `parent` (`=`, `!=`, `in`, `not in`) and `summary`,
//! `description`, `comment`, `text` (`~`, `!~`: a quoted phrase is a substring, words must all
//! appear), and `ORDER BY created|key [ASC|DESC]`. Anything else is a 400, as unknown JQL is.
//!
//! Search and comment pages hold at most [`FakeJiraOptions::page_size`] items, so tests exercise
//! pagination. Every request goes through a [`Recorder`]: it is recorded and injected faults apply
//! (`AfterApply` applies the request, then answers the status).

mod adf;
mod comments;
mod data;
mod issues;
mod jql;
mod render;
mod transitions;
mod webhooks;

pub use adf::{adf_plain_text, adf_text, validate_adf};
pub use webhooks::hub_signature;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Fault, FaultKind, RecordedRequest, Recorder, error_status, fault_response, serve};
use render::render_user;

const API: &str = "/rest/api/3";
const API_V2: &str = "/rest/api/2";

/// The REST API version a request was made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// Cloud: rich text as ADF documents.
    V3,
    /// Data Center: rich text as wiki markup strings.
    V2,
}

impl Api {
    /// Whether `value` is rich text this version accepts (a description or comment body).
    fn check_text(self, value: &Value) -> Result<(), String> {
        match self {
            Api::V3 => validate_adf(value).map_err(|e| adf::adf_message(&e)),
            Api::V2 if value.is_string() => Ok(()),
            Api::V2 => Err("Operation value must be a string".into()),
        }
    }
}

/// A v3 answer with rich text written through v2 (a string in the store) as ADF, the way v3
/// always answers descriptions and comment bodies.
fn as_v3(value: Value) -> Value {
    match value {
        Value::Object(mut o) => {
            let is_comment = o.contains_key("updateAuthor");
            if is_comment && let Some(Value::String(text)) = o.get("body") {
                let doc = adf_text(text);
                o.insert("body".into(), doc);
            }
            if let Some(Value::Object(fields)) = o.get_mut("fields")
                && let Some(Value::String(text)) = fields.get("description")
            {
                let doc = adf_text(text);
                fields.insert("description".into(), doc);
            }
            Value::Object(o.into_iter().map(|(k, v)| (k, as_v3(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(as_v3).collect()),
        other => other,
    }
}

/// A v3 answer as v2 gives it: ADF documents as their text, links below `/rest/api/2`.
fn as_v2(value: Value) -> Value {
    match value {
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("doc") => {
            Value::String(adf_plain_text(&Value::Object(o)).trim_end().to_string())
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, as_v2(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(as_v2).collect()),
        Value::String(s) => Value::String(s.replace(API, API_V2)),
        other => other,
    }
}
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
}

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
        let (api, rest) = if let Some(rest) = uri.path().strip_prefix(API) {
            (Api::V3, rest)
        } else if let Some(rest) = uri.path().strip_prefix(API_V2) {
            (Api::V2, rest)
        } else {
            return jira_error(StatusCode::NOT_FOUND, &["No such endpoint."], Value::Null);
        };
        let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
        let m = method.as_str();
        // A GET search's query as the body a POST search would send.
        let search_query = |paging: &str| {
            let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
            let mut body = json!({"jql": get("jql")});
            if let Some(t) = get(paging) {
                // `startAt` is a number; `nextPageToken` an opaque string.
                body[paging] = match t.parse::<u64>() {
                    Ok(n) if paging == "startAt" => json!(n),
                    _ => json!(t),
                };
            }
            if let Some(m) = get("maxResults").and_then(|m| m.parse::<i64>().ok()) {
                body["maxResults"] = json!(m);
            }
            if let Some(f) = get("fields") {
                body["fields"] = json!(f.split(',').collect::<Vec<_>>());
            }
            body
        };
        let (status, value) = match (api, m, segments.as_slice()) {
            (Api::V3, "POST", ["search", "jql"]) => self.search(&json_body),
            (Api::V3, "GET", ["search", "jql"]) => self.search(&search_query("nextPageToken")),
            (Api::V2, "POST", ["search"]) => self.search_v2(&json_body),
            (Api::V2, "GET", ["search"]) => self.search_v2(&search_query("startAt")),
            (_, "GET", ["myself"]) => {
                let db = self.db();
                (
                    StatusCode::OK,
                    render_user(&db, &self.base(), &self.options.bot_account_id),
                )
            }
            (_, "POST", ["issue"]) => self.create_issue(api, &json_body),
            (_, "GET", ["issue", key]) => self.get_issue(key, &query),
            (_, "PUT", ["issue", key]) => self.edit_issue(api, key, &json_body),
            (_, "GET", ["issue", key, "comment"]) => self.list_comments(key, &query),
            (_, "POST", ["issue", key, "comment"]) => self.add_comment(api, key, &json_body),
            (_, "GET", ["issue", key, "comment", id]) => self.get_comment(key, id),
            (_, "PUT", ["issue", key, "comment", id]) => {
                self.edit_comment(api, key, id, &json_body)
            }
            (_, "GET", ["issue", key, "transitions"]) => self.transitions(key),
            (_, "POST", ["issue", key, "transitions"]) => self.do_transition(key, &json_body),
            (_, "POST", ["issueLink"]) => self.create_link(&json_body),
            (Api::V3, _, ["search", "jql"]) | (Api::V2, _, ["search"]) => jira_error(
                StatusCode::METHOD_NOT_ALLOWED,
                &["Method not allowed"],
                Value::Null,
            ),
            (
                _,
                _,
                ["myself"]
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
        };
        match api {
            Api::V3 => (status, as_v3(value)),
            Api::V2 => (status, as_v2(value)),
        }
    }
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
    fn each_version_answers_rich_text_in_its_own_kind() {
        let comment = json!({"updateAuthor": {}, "body": "*hi*", "self": "http://x/rest/api/3/issue/1/comment/2"});
        assert_eq!(as_v3(comment.clone())["body"], adf_text("*hi*"));
        let v2 = as_v2(as_v3(comment));
        assert_eq!(v2["body"], "*hi*");
        assert_eq!(v2["self"], "http://x/rest/api/2/issue/1/comment/2");
        let issue = json!({"fields": {"description": "h1. x", "status": {"description": ""}}});
        assert_eq!(
            as_v3(issue.clone())["fields"]["description"],
            adf_text("h1. x")
        );
        assert_eq!(as_v3(issue)["fields"]["status"]["description"], "");
    }

    #[test]
    fn v2_takes_wiki_strings_and_v3_adf() {
        assert!(Api::V2.check_text(&json!("h1. x")).is_ok());
        assert!(Api::V2.check_text(&adf_text("x")).is_err());
        assert!(Api::V3.check_text(&adf_text("x")).is_ok());
        assert!(Api::V3.check_text(&json!("x")).is_err());
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
