//! Fake Linear: its GraphQL API (`POST /graphql`) on 127.0.0.1 with one team's workflow states,
//! labels, issues, comments, relations and sub-issues, plus webhook bodies shaped like Linear's.
//!
//! It is not a full GraphQL engine, but it reads the request as one: the operation, its variable
//! definitions and the selection set. Variables are checked as a real server checks them
//! (declared, used, provided, typed, assignable to the argument), every selected field must exist
//! on its type, and the answer holds exactly the fields selected — so a client that reads a
//! field it did not ask for, or passes a malformed variable, fails here as it would at Linear.
//! One stricter rule: a paginated connection (top-level lists and an issue's `comments`) read
//! with `first` other than 1 must select `pageInfo { hasNextPage endCursor }`, and pages hold at
//! most [`FakeLinearOptions::page_size`] nodes, so pagination is exercised.
//!
//! Wire format: `Authorization: <key>` (no `Bearer`), `Content-Type: application/json`; answers
//! `{"data": ...}` or `{"errors": [{"message", "extensions": {"code"}}]}`; every answer carries
//! `X-RateLimit-Requests-Limit/-Remaining/-Reset` (reset in epoch milliseconds); an exhausted
//! budget answers HTTP 400 with `extensions.code = "RATELIMITED"`, as Linear documents.
//!
//! Faults: [`FakeLinear::inject`] queues a [`Fault`] by method and path (every operation is
//! `POST /graphql`); [`FakeLinear::inject_on`] targets an operation by its name or its root
//! field (`commentCreate`). `AfterApply` applies the operation and answers the status anyway.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value, json};

use super::{Fault, FaultKind, RecordedRequest, Recorder, error_status, fault_response, serve};
use graphql::{Arg, Field, Operation};

/// The request budget every answer reports (Linear's API-key limit per hour).
const REQUEST_LIMIT: u64 = 2500;
/// Linear's largest page.
const MAX_FIRST: i64 = 250;

/// How the fake workspace starts.
#[derive(Debug, Clone)]
pub struct FakeLinearOptions {
    /// The only `Authorization` value accepted.
    pub api_key: String,
    /// The team key (`ENG`): identifiers are `ENG-1`, `ENG-2`, ...
    pub team_key: String,
    pub team_name: String,
    /// The workspace's URL key (`https://linear.app/<org>/issue/...`).
    pub org: String,
    /// The most nodes a paginated connection returns per page.
    pub page_size: usize,
    /// Workflow states, `(name, type)`; type is `backlog`, `unstarted`, `started`,
    /// `completed`, `canceled` or `triage`.
    pub states: Vec<(String, String)>,
    /// Team labels that exist from the start.
    pub labels: Vec<String>,
    /// Workspace labels (no team) that exist from the start.
    pub workspace_labels: Vec<String>,
}

impl Default for FakeLinearOptions {
    fn default() -> Self {
        let states = [
            ("Backlog", "backlog"),
            ("Todo", "unstarted"),
            ("In Progress", "started"),
            ("In Review", "started"),
            ("Done", "completed"),
            ("Canceled", "canceled"),
        ];
        FakeLinearOptions {
            api_key: "lin_api_fake0000000000000000000000000000".into(),
            team_key: "ENG".into(),
            team_name: "Engineering".into(),
            org: "acme".into(),
            page_size: 50,
            states: states
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            labels: vec!["bug".into()],
            workspace_labels: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct TeamRec {
    id: String,
    key: String,
    name: String,
}

#[derive(Debug, Clone)]
struct StateRec {
    id: String,
    name: String,
    kind: String,
    position: usize,
}

#[derive(Debug, Clone)]
struct LabelRec {
    id: String,
    name: String,
    /// false: a workspace label (no team).
    team: bool,
}

#[derive(Debug, Clone)]
struct UserRec {
    id: String,
    name: String,
    email: String,
}

#[derive(Debug, Clone)]
struct CommentRec {
    id: String,
    body: String,
    user_id: String,
    created_ms: u64,
    updated_ms: u64,
}

#[derive(Debug, Clone)]
struct IssueRec {
    id: String,
    number: u64,
    title: String,
    description: Option<String>,
    state_id: String,
    label_ids: Vec<String>,
    assignee_id: Option<String>,
    creator_id: String,
    parent_id: Option<String>,
    comments: Vec<CommentRec>,
    created_ms: u64,
    updated_ms: u64,
}

#[derive(Debug, Clone)]
struct RelationRec {
    id: String,
    kind: String,
    issue_id: String,
    related_id: String,
}

#[derive(Debug)]
struct World {
    seq: u64,
    clock_ms: u64,
    org: String,
    org_id: String,
    page_size: usize,
    team: TeamRec,
    states: Vec<StateRec>,
    labels: Vec<LabelRec>,
    users: Vec<UserRec>,
    issues: Vec<IssueRec>,
    relations: Vec<RelationRec>,
    /// The user the API key belongs to: the author of everything created through the API.
    viewer_id: String,
}

#[derive(Debug, Default)]
struct Control {
    op_faults: Vec<(String, FaultKind)>,
    /// `(operation, message, code)`: answer the next matching request with this GraphQL error.
    op_errors: Vec<(String, String, String)>,
    ratelimit_next: u32,
    exhaust_next: Option<Duration>,
    /// Requests before this epoch-ms instant are refused with RATELIMITED.
    limited_until_ms: Option<u64>,
    spent: u64,
}

#[derive(Debug)]
struct Shared {
    api_key: String,
    world: Mutex<World>,
    control: Mutex<Control>,
    recorder: Recorder,
}

/// A running fake Linear. Stops when dropped.
#[derive(Debug)]
pub struct FakeLinear {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLinear {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2025-01-02T03:04:05.678Z` from epoch milliseconds.
fn iso(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn slug(title: &str) -> String {
    let words: Vec<String> = title
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let mut s = words.join("-");
    s.truncate(60);
    s.trim_end_matches('-').to_string()
}

impl World {
    fn new(opts: &FakeLinearOptions) -> World {
        let mut w = World {
            seq: 0,
            clock_ms: epoch_ms(),
            org: opts.org.clone(),
            org_id: String::new(),
            page_size: opts.page_size.max(1),
            team: TeamRec {
                id: String::new(),
                key: opts.team_key.clone(),
                name: opts.team_name.clone(),
            },
            states: Vec::new(),
            labels: Vec::new(),
            users: Vec::new(),
            issues: Vec::new(),
            relations: Vec::new(),
            viewer_id: String::new(),
        };
        w.org_id = w.new_id(0x0e6);
        w.team.id = w.new_id(0x7ea);
        for (i, (name, kind)) in opts.states.iter().enumerate() {
            let id = w.new_id(0x57a);
            w.states.push(StateRec {
                id,
                name: name.clone(),
                kind: kind.clone(),
                position: i,
            });
        }
        for name in &opts.labels {
            w.add_label(name, true);
        }
        for name in &opts.workspace_labels {
            w.add_label(name, false);
        }
        w.viewer_id = w.user("codemill").id;
        w
    }

    /// A UUID-shaped id, unique in this fake.
    fn new_id(&mut self, kind: u32) -> String {
        self.seq += 1;
        format!("{kind:08x}-0000-4000-8000-{:012x}", self.seq)
    }

    /// A strictly increasing clock, so creation order is visible in timestamps.
    fn tick(&mut self) -> u64 {
        self.clock_ms = self.clock_ms.max(epoch_ms()).saturating_add(1);
        self.clock_ms
    }

    fn add_label(&mut self, name: &str, team: bool) -> String {
        let id = self.new_id(0x1abe1);
        self.labels.push(LabelRec {
            id: id.clone(),
            name: name.to_string(),
            team,
        });
        id
    }

    /// The user with this id, name or e-mail; created (name and `<name>@example.com`) if new.
    fn user(&mut self, who: &str) -> UserRec {
        if let Some(u) = self
            .users
            .iter()
            .find(|u| u.id == who || u.name == who || u.email == who)
        {
            return u.clone();
        }
        let id = self.new_id(0x05e1);
        let (name, email) = if who.contains('@') {
            (
                who.split('@').next().unwrap_or(who).to_string(),
                who.to_string(),
            )
        } else {
            (who.to_string(), format!("{}@example.com", slug(who)))
        };
        let u = UserRec { id, name, email };
        self.users.push(u.clone());
        u
    }

    fn identifier(&self, issue: &IssueRec) -> String {
        format!("{}-{}", self.team.key, issue.number)
    }

    fn url(&self, issue: &IssueRec) -> String {
        format!(
            "https://linear.app/{}/issue/{}/{}",
            self.org,
            self.identifier(issue),
            slug(&issue.title)
        )
    }

    /// An issue by id or identifier (case-insensitive, as Linear reads them).
    fn find_issue(&self, id: &str) -> Option<usize> {
        self.issues
            .iter()
            .position(|i| i.id == id || self.identifier(i).eq_ignore_ascii_case(id))
    }

    fn state_by_name(&self, name: &str) -> Option<&StateRec> {
        self.states.iter().find(|s| s.name == name)
    }

    fn label_by_id(&self, id: &str) -> Option<&LabelRec> {
        self.labels.iter().find(|l| l.id == id)
    }

    fn create_issue(
        &mut self,
        title: &str,
        description: Option<String>,
        state_id: String,
        label_ids: Vec<String>,
        creator_id: String,
    ) -> usize {
        let id = self.new_id(0x155e);
        let now = self.tick();
        let number = self.issues.iter().map(|i| i.number).max().unwrap_or(0) + 1;
        self.issues.push(IssueRec {
            id,
            number,
            title: title.to_string(),
            description,
            state_id,
            label_ids,
            assignee_id: None,
            creator_id,
            parent_id: None,
            comments: Vec::new(),
            created_ms: now,
            updated_ms: now,
        });
        self.issues.len() - 1
    }

    fn snapshot(&self, idx: usize) -> Value {
        let i = &self.issues[idx];
        let state = self.states.iter().find(|s| s.id == i.state_id);
        let user = |id: &str| {
            self.users
                .iter()
                .find(|u| u.id == id)
                .map(|u| json!({"id": u.id, "name": u.name, "email": u.email}))
                .unwrap_or(Value::Null)
        };
        json!({
            "id": i.id,
            "identifier": self.identifier(i),
            "number": i.number,
            "title": i.title,
            "description": i.description,
            "url": self.url(i),
            "state": state.map(|s| s.name.clone()),
            "labels": self.label_names(i),
            "assignee": i.assignee_id.as_deref().map(user),
            "parent": i.parent_id.as_deref().and_then(|p| self.find_issue(p)).map(|p| self.identifier(&self.issues[p])),
            "comments": i.comments.iter().map(|c| json!({
                "id": c.id, "body": c.body, "user": user(&c.user_id), "createdAt": iso(c.created_ms),
            })).collect::<Vec<_>>(),
        })
    }

    fn label_names(&self, i: &IssueRec) -> Vec<String> {
        i.label_ids
            .iter()
            .filter_map(|id| self.label_by_id(id).map(|l| l.name.clone()))
            .collect()
    }
}

/// A GraphQL error as Linear shapes it.
#[derive(Debug, Clone)]
struct GqlError {
    message: String,
    code: &'static str,
    kind: &'static str,
}

impl GqlError {
    fn invalid(message: impl Into<String>) -> GqlError {
        GqlError {
            message: message.into(),
            code: "INVALID_INPUT",
            kind: "invalid input",
        }
    }
    fn not_found(what: &str) -> GqlError {
        GqlError {
            message: format!("Entity not found: {what}"),
            code: "INVALID_INPUT",
            kind: "invalid input",
        }
    }
    fn validation(message: impl Into<String>) -> GqlError {
        GqlError {
            message: message.into(),
            code: "GRAPHQL_VALIDATION_FAILED",
            kind: "graphql error",
        }
    }
    fn to_json(&self, path: Option<&str>) -> Value {
        let mut e = json!({
            "message": self.message,
            "extensions": {
                "code": self.code,
                "type": self.kind,
                "userError": true,
                "userPresentableMessage": self.message,
            }
        });
        if let Some(p) = path {
            e["path"] = json!([p]);
        }
        e
    }
}

type Res<T> = Result<T, GqlError>;

fn gql_response(status: StatusCode, errors: &[GqlError]) -> Response {
    let errors: Vec<Value> = errors.iter().map(|e| e.to_json(None)).collect();
    (status, axum::Json(json!({ "errors": errors }))).into_response()
}

impl FakeLinear {
    /// Start the fake on 127.0.0.1 on a free port.
    pub async fn start(opts: FakeLinearOptions) -> std::io::Result<FakeLinear> {
        let shared = Arc::new(Shared {
            api_key: opts.api_key.clone(),
            world: Mutex::new(World::new(&opts)),
            control: Mutex::new(Control::default()),
            recorder: Recorder::default(),
        });
        let router = Router::new()
            .route("/graphql", post(handle))
            .with_state(shared.clone());
        let (addr, handle) = serve(router).await?;
        Ok(FakeLinear {
            addr,
            shared,
            handle,
        })
    }

    /// The GraphQL endpoint (`http://127.0.0.1:<port>/graphql`), for `linear.api_url`.
    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn world(&self) -> MutexGuard<'_, World> {
        match self.shared.world.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        lock(&self.shared.control)
    }

    /// Add an issue in workflow state `state` (a name the team has; panics otherwise, as a
    /// test's mistake) with these labels (created as team labels if new). Returns `ENG-<n>`.
    pub fn add_issue(
        &self,
        title: &str,
        description: &str,
        state: &str,
        labels: &[&str],
    ) -> String {
        let mut w = self.world();
        let Some(state_id) = w.state_by_name(state).map(|s| s.id.clone()) else {
            let names: Vec<&str> = w.states.iter().map(|s| s.name.as_str()).collect();
            panic!("fake Linear: no workflow state {state:?}; the team has {names:?}");
        };
        let mut label_ids = Vec::new();
        for name in labels {
            let id = match w.labels.iter().find(|l| l.name == *name) {
                Some(l) => l.id.clone(),
                None => w.add_label(name, true),
            };
            label_ids.push(id);
        }
        let creator = w.user("reporter").id;
        let idx = w.create_issue(
            title,
            Some(description.to_string()),
            state_id,
            label_ids,
            creator,
        );
        let issue = &w.issues[idx];
        w.identifier(issue)
    }

    /// Add a sub-issue of `parent`; returns its identifier.
    pub fn add_child(&self, parent: &str, title: &str, state: &str) -> String {
        let child = self.add_issue(title, "", state, &[]);
        let mut w = self.world();
        let parent_id = self.issue_index(&w, parent).map(|p| w.issues[p].id.clone());
        if let Some(c) = w.find_issue(&child) {
            w.issues[c].parent_id = parent_id;
        }
        child
    }

    fn issue_index(&self, w: &World, identifier: &str) -> Option<usize> {
        let idx = w.find_issue(identifier);
        if idx.is_none() {
            panic!("fake Linear: no issue {identifier}");
        }
        idx
    }

    /// Add a comment by `user` (a name or e-mail; the user is created if new). Returns its id.
    pub fn add_comment(&self, identifier: &str, user: &str, body: &str) -> String {
        let mut w = self.world();
        let Some(idx) = self.issue_index(&w, identifier) else {
            return String::new();
        };
        let user_id = w.user(user).id;
        let id = w.new_id(0xc0e);
        let now = w.tick();
        w.issues[idx].comments.push(CommentRec {
            id: id.clone(),
            body: body.to_string(),
            user_id,
            created_ms: now,
            updated_ms: now,
        });
        id
    }

    /// Relate two issues (`blocks`, `duplicate`, `related`, `similar`), `from` → `to`.
    pub fn add_relation(&self, from: &str, to: &str, kind: &str) {
        let mut w = self.world();
        let (Some(a), Some(b)) = (self.issue_index(&w, from), self.issue_index(&w, to)) else {
            return;
        };
        let (issue_id, related_id) = (w.issues[a].id.clone(), w.issues[b].id.clone());
        let id = w.new_id(0x4e1);
        w.relations.push(RelationRec {
            id,
            kind: kind.to_string(),
            issue_id,
            related_id,
        });
    }

    /// Move an issue to workflow state `state` (as a person in Linear would).
    pub fn set_state(&self, identifier: &str, state: &str) {
        let mut w = self.world();
        let Some(state_id) = w.state_by_name(state).map(|s| s.id.clone()) else {
            panic!("fake Linear: no workflow state {state:?}");
        };
        if let Some(idx) = self.issue_index(&w, identifier) {
            let now = w.tick();
            w.issues[idx].state_id = state_id;
            w.issues[idx].updated_ms = now;
        }
    }

    /// Assign an issue to `user` (a name or e-mail; created if new).
    pub fn set_assignee(&self, identifier: &str, user: &str) {
        let mut w = self.world();
        let user_id = w.user(user).id;
        if let Some(idx) = self.issue_index(&w, identifier) {
            w.issues[idx].assignee_id = Some(user_id);
        }
    }

    /// The id of user `who` (a name, e-mail or id), created if new: for webhook actors and
    /// the roles of a project.
    pub fn user_id(&self, who: &str) -> String {
        self.world().user(who).id
    }

    /// The user the API key belongs to (author of codemill's comments and issues).
    pub fn viewer_id(&self) -> String {
        self.world().viewer_id.clone()
    }

    pub fn team_id(&self) -> String {
        self.world().team.id.clone()
    }

    pub fn state_id(&self, name: &str) -> Option<String> {
        self.world().state_by_name(name).map(|s| s.id.clone())
    }

    /// Every label, `(name, team label?)`.
    pub fn labels(&self) -> Vec<(String, bool)> {
        self.world()
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.team))
            .collect()
    }

    /// Every issue's identifier, in creation order.
    pub fn issues(&self) -> Vec<String> {
        let w = self.world();
        w.issues.iter().map(|i| w.identifier(i)).collect()
    }

    /// An issue as JSON: id, identifier, number, title, description, url, state (name),
    /// labels (names), assignee, parent, comments ({id, body, user, createdAt}).
    pub fn issue(&self, identifier: &str) -> Value {
        let w = self.world();
        match w.find_issue(identifier) {
            Some(idx) => w.snapshot(idx),
            None => Value::Null,
        }
    }

    /// An issue's comments ({id, body, user {id, name, email}, createdAt}), oldest first.
    pub fn comments(&self, identifier: &str) -> Vec<Value> {
        self.issue(identifier)
            .get("comments")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    pub fn state_of(&self, identifier: &str) -> String {
        self.issue(identifier)
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    pub fn labels_of(&self, identifier: &str) -> Vec<String> {
        let w = self.world();
        w.find_issue(identifier)
            .map(|idx| w.label_names(&w.issues[idx]))
            .unwrap_or_default()
    }

    /// An issue's relations in both directions, `(type, other identifier)`.
    pub fn relations_of(&self, identifier: &str) -> Vec<(String, String)> {
        let w = self.world();
        let Some(idx) = w.find_issue(identifier) else {
            return Vec::new();
        };
        let id = &w.issues[idx].id;
        let name = |other: &str| {
            w.find_issue(other)
                .map(|o| w.identifier(&w.issues[o]))
                .unwrap_or_default()
        };
        w.relations
            .iter()
            .filter_map(|r| {
                if &r.issue_id == id {
                    Some((r.kind.clone(), name(&r.related_id)))
                } else if &r.related_id == id {
                    Some((r.kind.clone(), name(&r.issue_id)))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.requests()
    }

    /// The `operationName` of every request received, in order.
    pub fn operations(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                r.body
                    .get("operationName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.recorder.clear();
    }

    /// Queue a fault for the next request matching its method and path (`POST /graphql`).
    pub fn inject(&self, fault: Fault) {
        self.shared.recorder.inject(fault);
    }

    /// Queue a fault for the next request whose operation name or root field is `operation`
    /// (`"CodemillCommentCreate"` or `"commentCreate"`).
    pub fn inject_on(&self, operation: &str, kind: FaultKind) {
        self.control().op_faults.push((operation.to_string(), kind));
    }

    /// Answer the next request whose operation name or root field is `operation` with a
    /// GraphQL error (HTTP 200, `data: null`), applying nothing.
    pub fn inject_error(&self, operation: &str, message: &str, code: &str) {
        self.control()
            .op_errors
            .push((operation.into(), message.into(), code.into()));
    }

    /// Refuse the next `n` requests with Linear's rate-limit answer (HTTP 400, `RATELIMITED`,
    /// `X-RateLimit-Requests-Remaining: 0`, reset one second ahead).
    pub fn ratelimit_next(&self, n: u32) {
        self.control().ratelimit_next += n;
    }

    /// The next answer reports the budget spent (`Remaining: 0`, reset after `reset_in`), and
    /// requests before the reset are refused with `RATELIMITED`.
    pub fn exhaust_budget(&self, reset_in: Duration) {
        self.control().exhaust_next = Some(reset_in);
    }

    /// An `Issue` webhook body (`action`: `create`, `update` or `remove`) as Linear sends it.
    pub fn issue_webhook(&self, identifier: &str, action: &str, actor_id: &str) -> Value {
        let mut w = self.world();
        let actor = actor_json(&mut w, actor_id);
        let now = epoch_ms();
        let (data, url) = match w.find_issue(identifier) {
            Some(idx) => {
                let i = &w.issues[idx];
                let state = w.states.iter().find(|s| s.id == i.state_id);
                let labels: Vec<Value> = i
                    .label_ids
                    .iter()
                    .filter_map(|id| w.label_by_id(id))
                    .map(|l| json!({"id": l.id, "name": l.name, "color": "#bec2c8", "parentId": null}))
                    .collect();
                let data = json!({
                    "id": i.id,
                    "createdAt": iso(i.created_ms),
                    "updatedAt": iso(i.updated_ms),
                    "number": i.number,
                    "title": i.title,
                    "description": i.description,
                    "priority": 0,
                    "priorityLabel": "No priority",
                    "boardOrder": 0,
                    "sortOrder": -(i.number as f64),
                    "identifier": w.identifier(i),
                    "url": w.url(i),
                    "teamId": w.team.id,
                    "stateId": i.state_id,
                    "creatorId": i.creator_id,
                    "assigneeId": i.assignee_id,
                    "parentId": i.parent_id,
                    "labelIds": i.label_ids,
                    "subscriberIds": [i.creator_id],
                    "previousIdentifiers": [],
                    "state": state.map(|s| json!({"id": s.id, "name": s.name, "color": "#e2e2e2", "type": s.kind})),
                    "team": {"id": w.team.id, "key": w.team.key, "name": w.team.name},
                    "labels": labels,
                });
                (data, w.url(i))
            }
            None => (json!({"identifier": identifier}), String::new()),
        };
        let mut body = json!({
            "action": action,
            "actor": actor,
            "createdAt": iso(now),
            "data": data,
            "url": url,
            "type": "Issue",
            "organizationId": w.org_id,
            "webhookTimestamp": now,
            "webhookId": w.new_id(0x3eb),
        });
        if action == "update" {
            body["updatedFrom"] = json!({"updatedAt": iso(now.saturating_sub(60_000))});
        }
        body
    }

    /// A `Comment` `create` webhook body for a new comment on `identifier`, as Linear sends it
    /// (the comment itself is not added; use [`FakeLinear::add_comment`] for that).
    pub fn comment_webhook(&self, identifier: &str, body: &str, actor_id: &str) -> Value {
        let mut w = self.world();
        let actor = actor_json(&mut w, actor_id);
        let now = epoch_ms();
        let comment_id = w.new_id(0xc0e);
        let issue = w.find_issue(identifier).map(|idx| {
            let i = &w.issues[idx];
            json!({
                "id": i.id,
                "title": i.title,
                "teamId": w.team.id,
                "team": {"id": w.team.id, "key": w.team.key, "name": w.team.name},
                "identifier": w.identifier(i),
                "url": w.url(i),
            })
        });
        let issue = issue.unwrap_or_else(|| json!({"identifier": identifier}));
        let url = format!(
            "{}#comment-{}",
            issue.get("url").and_then(Value::as_str).unwrap_or_default(),
            &comment_id[comment_id.len() - 8..]
        );
        json!({
            "action": "create",
            "actor": actor,
            "createdAt": iso(now),
            "data": {
                "id": comment_id,
                "createdAt": iso(now),
                "updatedAt": iso(now),
                "body": body,
                "issueId": issue.get("id"),
                "userId": actor.get("id"),
                "reactionData": [],
                "user": {
                    "id": actor.get("id"),
                    "name": actor.get("name"),
                    "email": actor.get("email"),
                    "url": actor.get("url"),
                },
                "issue": issue,
            },
            "url": url,
            "type": "Comment",
            "organizationId": w.org_id,
            "webhookTimestamp": now,
            "webhookId": w.new_id(0x3eb),
        })
    }
}

fn actor_json(w: &mut World, actor_id: &str) -> Value {
    let u = w.user(actor_id);
    json!({
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "url": format!("https://linear.app/{}/profiles/{}", w.org, slug(&u.name)),
        "type": "user",
    })
}

/// The hex HMAC-SHA256 of `body` with `secret`: the `Linear-Signature` header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    super::hmac_sha256_hex(secret.as_bytes(), body)
}

/// The headers Linear sends with a delivery of `body`: `Linear-Signature`, `Linear-Delivery`,
/// `Linear-Event` (the payload's `type`) and `Content-Type`.
pub fn delivery_headers(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let event = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    vec![
        ("linear-signature".into(), sign(secret, body)),
        (
            "linear-delivery".into(),
            format!("{:08x}-0000-4000-8000-{:012x}", 0xde1, epoch_ms()),
        ),
        ("linear-event".into(), event),
        (
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        ),
    ]
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn ratelimited(reset_ms: u64) -> Response {
    let err = json!({"errors": [{
        "message": format!("Rate limit exceeded. Only {REQUEST_LIMIT} requests are allowed per 1 hour."),
        "extensions": {
            "code": "RATELIMITED",
            "type": "ratelimited",
            "statusCode": 429,
            "userError": true,
            "userPresentableMessage": "Rate limit exceeded.",
        }
    }]});
    let mut r = (StatusCode::BAD_REQUEST, axum::Json(err)).into_response();
    put_budget(r.headers_mut(), 0, reset_ms);
    r
}

fn put_budget(h: &mut HeaderMap, remaining: u64, reset_ms: u64) {
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    put("x-ratelimit-requests-limit", REQUEST_LIMIT.to_string());
    put("x-ratelimit-requests-remaining", remaining.to_string());
    put("x-ratelimit-requests-reset", reset_ms.to_string());
    put("x-complexity", "10".to_string());
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut after_apply = None;
    if let Some(kind) = shared.recorder.record(&method, &uri, &headers, &body) {
        if let Some(r) = fault_response(&kind) {
            return r;
        }
        if let FaultKind::AfterApply(s) = kind {
            after_apply = Some(s);
        }
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(shared.api_key.as_str()) {
        let e = GqlError {
            message: "Authentication required, not authenticated".into(),
            code: "AUTHENTICATION_ERROR",
            kind: "authentication error",
        };
        return gql_response(StatusCode::UNAUTHORIZED, &[e]);
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        let e = GqlError::validation(
            "fake Linear: POST a JSON body with Content-Type: application/json",
        );
        return gql_response(StatusCode::BAD_REQUEST, &[e]);
    }
    let bad = |m: String| gql_response(StatusCode::BAD_REQUEST, &[GqlError::validation(m)]);
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return bad("Body is not valid JSON".into());
    };
    let Some(query) = request.get("query").and_then(Value::as_str) else {
        return bad("Must provide query string.".into());
    };
    let variables = match request.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return bad("Variables must be provided as an Object.".into()),
    };
    let op = match graphql::parse(query) {
        Ok(op) => op,
        Err(m) => {
            let e = GqlError {
                message: m,
                code: "GRAPHQL_PARSE_FAILED",
                kind: "graphql error",
            };
            return gql_response(StatusCode::BAD_REQUEST, &[e]);
        }
    };
    match request.get("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) if op.name.as_deref() == Some(name.as_str()) => {}
        Some(other) => return bad(format!("Unknown operation named {other}.")),
    }
    if let Err(m) = graphql::validate_variables(&op, &variables) {
        return bad(m);
    }
    let root = if op.mutation { "Mutation" } else { "Query" };
    if let Err(e) = check_selection(root, &op.selection, &op, true) {
        return gql_response(StatusCode::BAD_REQUEST, &[e]);
    }

    let now = epoch_ms();
    let exhausted = {
        let mut c = lock(&shared.control);
        let names: Vec<&str> = op
            .name
            .iter()
            .map(String::as_str)
            .chain(op.selection.iter().map(|f| f.name.as_str()))
            .collect();
        if let Some(i) = c
            .op_faults
            .iter()
            .position(|(target, _)| names.contains(&target.as_str()))
        {
            let (_, kind) = c.op_faults.remove(i);
            if let Some(r) = fault_response(&kind) {
                return r;
            }
            if let FaultKind::AfterApply(s) = kind {
                after_apply = Some(s);
            }
        }
        if let Some(i) = c
            .op_errors
            .iter()
            .position(|(target, _, _)| names.contains(&target.as_str()))
        {
            let (_, message, code) = c.op_errors.remove(i);
            let body = json!({"data": null, "errors": [{
                "message": message,
                "extensions": {"code": code, "userError": true, "userPresentableMessage": message},
            }]});
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
        if c.ratelimit_next > 0 {
            c.ratelimit_next -= 1;
            return ratelimited(now + 1000);
        }
        if let Some(until) = c.limited_until_ms {
            if now < until {
                return ratelimited(until);
            }
            c.limited_until_ms = None;
        }
        c.spent += 1;
        c.exhaust_next.take()
    };

    let (status, answer) = {
        let mut w = lock(&shared.world);
        execute(&mut w, &op, &variables)
    };
    if let Some(s) = after_apply {
        return error_status(s);
    }
    let mut response = (status, axum::Json(answer)).into_response();
    let (remaining, reset) = match exhausted {
        Some(d) => {
            let until = now + d.as_millis() as u64;
            lock(&shared.control).limited_until_ms = Some(until);
            (0, until)
        }
        None => {
            let spent = lock(&shared.control).spent;
            (REQUEST_LIMIT.saturating_sub(spent).max(1), now + 3_600_000)
        }
    };
    put_budget(response.headers_mut(), remaining, reset);
    response
}

// ── schema ──────────────────────────────────────────────────────────────

const CONNECTION_ARGS: &[(&str, &str)] = &[
    ("first", "Int"),
    ("after", "String"),
    ("last", "Int"),
    ("before", "String"),
    ("orderBy", "PaginationOrderBy"),
    ("includeArchived", "Boolean"),
];

fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "String" | "ID" | "Float" | "Int" | "Boolean" | "DateTime" | "JSONObject"
    )
}

/// A field's type and arguments: `(type, args, extra args besides the connection ones)`.
fn field_type(ty: &str, field: &str) -> Option<(String, Vec<(&'static str, &'static str)>)> {
    if let Some(node) = ty.strip_suffix("Connection") {
        return match field {
            "nodes" => Some((node.to_string(), vec![])),
            "edges" => Some((format!("{node}Edge"), vec![])),
            "pageInfo" => Some(("PageInfo".into(), vec![])),
            _ => None,
        };
    }
    if let Some(node) = ty.strip_suffix("Edge") {
        return match field {
            "node" => Some((node.to_string(), vec![])),
            "cursor" => Some(("String".into(), vec![])),
            _ => None,
        };
    }
    let conn = |node: &str, filter: &'static str| {
        let mut args = CONNECTION_ARGS.to_vec();
        if !filter.is_empty() {
            args.push(("filter", filter));
        }
        Some((format!("{node}Connection"), args))
    };
    let plain = |t: &str| Some((t.to_string(), vec![]));
    match (ty, field) {
        ("Query", "issues") => conn("Issue", "IssueFilter"),
        ("Query", "issue") | ("Query", "team") => Some((
            if field == "issue" { "Issue" } else { "Team" }.into(),
            vec![("id", "String!")],
        )),
        ("Query", "workflowStates") => conn("WorkflowState", "WorkflowStateFilter"),
        ("Query", "issueLabels") => conn("IssueLabel", "IssueLabelFilter"),
        ("Query", "teams") => conn("Team", "TeamFilter"),
        ("Query", "viewer") => plain("User"),
        ("Mutation", "commentCreate") => Some((
            "CommentPayload".into(),
            vec![("input", "CommentCreateInput!")],
        )),
        ("Mutation", "commentUpdate") => Some((
            "CommentPayload".into(),
            vec![("id", "String!"), ("input", "CommentUpdateInput!")],
        )),
        ("Mutation", "issueUpdate") => Some((
            "IssuePayload".into(),
            vec![("id", "String!"), ("input", "IssueUpdateInput!")],
        )),
        ("Mutation", "issueAddLabel") | ("Mutation", "issueRemoveLabel") => Some((
            "IssuePayload".into(),
            vec![("id", "String!"), ("labelId", "String!")],
        )),
        ("Mutation", "issueLabelCreate") => Some((
            "IssueLabelPayload".into(),
            vec![
                ("input", "IssueLabelCreateInput!"),
                ("replaceTeamLabels", "Boolean"),
            ],
        )),
        ("Mutation", "issueCreate") => {
            Some(("IssuePayload".into(), vec![("input", "IssueCreateInput!")]))
        }
        ("Mutation", "issueRelationCreate") => Some((
            "IssueRelationPayload".into(),
            vec![("input", "IssueRelationCreateInput!")],
        )),
        ("Issue", "id") => plain("ID"),
        ("Issue", "identifier" | "title" | "url" | "branchName" | "priorityLabel") => {
            plain("String")
        }
        ("Issue", "description") => plain("String"),
        ("Issue", "number" | "priority") => plain("Float"),
        ("Issue", "createdAt" | "updatedAt") => plain("DateTime"),
        ("Issue", "state") => plain("WorkflowState"),
        ("Issue", "team") => plain("Team"),
        ("Issue", "assignee" | "creator") => plain("User"),
        ("Issue", "parent") => plain("Issue"),
        ("Issue", "labels") => conn("IssueLabel", "IssueLabelFilter"),
        ("Issue", "comments") => conn("Comment", "CommentFilter"),
        ("Issue", "relations" | "inverseRelations") => conn("IssueRelation", ""),
        ("Issue", "children") => conn("Issue", "IssueFilter"),
        ("Comment", "id") => plain("ID"),
        ("Comment", "body" | "url") => plain("String"),
        ("Comment", "createdAt" | "updatedAt") => plain("DateTime"),
        ("Comment", "user") => plain("User"),
        ("Comment", "botActor") => plain("ActorBot"),
        ("Comment", "issue") => plain("Issue"),
        ("User", "id") => plain("ID"),
        ("User", "name" | "email" | "displayName" | "url") => plain("String"),
        ("ActorBot", "id" | "name" | "type") => plain("String"),
        ("WorkflowState", "id") => plain("ID"),
        ("WorkflowState", "name" | "type" | "color") => plain("String"),
        ("WorkflowState", "position") => plain("Float"),
        ("WorkflowState", "team") => plain("Team"),
        ("Team", "id") => plain("ID"),
        ("Team", "key" | "name") => plain("String"),
        ("Team", "labels") => conn("IssueLabel", "IssueLabelFilter"),
        ("Team", "states") => conn("WorkflowState", "WorkflowStateFilter"),
        ("IssueLabel", "id") => plain("ID"),
        ("IssueLabel", "name" | "color") => plain("String"),
        ("IssueLabel", "team") => plain("Team"),
        ("IssueRelation", "id") => plain("ID"),
        ("IssueRelation", "type") => plain("String"),
        ("IssueRelation", "issue" | "relatedIssue") => plain("Issue"),
        ("PageInfo", "hasNextPage" | "hasPreviousPage") => plain("Boolean"),
        ("PageInfo", "startCursor" | "endCursor") => plain("String"),
        (p, "success") if p.ends_with("Payload") => plain("Boolean"),
        (p, "lastSyncId") if p.ends_with("Payload") => plain("Float"),
        ("CommentPayload", "comment") => plain("Comment"),
        ("IssuePayload", "issue") => plain("Issue"),
        ("IssueLabelPayload", "issueLabel") => plain("IssueLabel"),
        ("IssueRelationPayload", "issueRelation") => plain("IssueRelation"),
        _ => None,
    }
}

/// Whether a connection field pages by the fake's page size.
fn paged(parent: &str, field: &str) -> bool {
    parent == "Query" || (parent == "Issue" && field == "comments")
}

/// Every field exists on its type, scalars have no selection and objects have one, arguments
/// exist, required ones are given, variables fit them, and paginated reads select `pageInfo`.
fn check_selection(ty: &str, fields: &[Field], op: &Operation, top: bool) -> Res<()> {
    for f in fields {
        let Some((fty, args)) = field_type(ty, &f.name) else {
            return Err(GqlError::validation(format!(
                "Cannot query field \"{}\" on type \"{ty}\".",
                f.name
            )));
        };
        if top && op.mutation != (ty == "Mutation") {
            return Err(GqlError::validation("fake Linear: wrong operation type"));
        }
        for (name, arg) in &f.args {
            let Some((_, expected)) = args.iter().find(|(n, _)| n == name) else {
                return Err(GqlError::validation(format!(
                    "Unknown argument \"{name}\" on field \"{ty}.{}\".",
                    f.name
                )));
            };
            if let Arg::Var(v) = arg
                && let Some(def) = op.vars.iter().find(|d| &d.name == v)
                && !graphql::assignable(&def.ty, expected)
            {
                return Err(GqlError::validation(format!(
                    "Variable \"${v}\" of type \"{}\" used in position expecting type \"{expected}\".",
                    def.ty
                )));
            }
        }
        for (name, expected) in &args {
            if expected.ends_with('!') && !f.args.iter().any(|(n, _)| n == name) {
                return Err(GqlError::validation(format!(
                    "Field \"{}\" argument \"{name}\" of type \"{expected}\" is required, but it was not provided.",
                    f.name
                )));
            }
        }
        if is_scalar(&fty) {
            if !f.selection.is_empty() {
                return Err(GqlError::validation(format!(
                    "Field \"{}\" must not have a selection since type \"{fty}\" has no subfields.",
                    f.name
                )));
            }
            continue;
        }
        if f.selection.is_empty() {
            return Err(GqlError::validation(format!(
                "Field \"{}\" of type \"{fty}\" must have a selection of subfields.",
                f.name
            )));
        }
        if fty.ends_with("Connection") && paged(ty, &f.name) {
            let single = f
                .args
                .iter()
                .any(|(n, a)| n == "first" && *a == Arg::Lit(json!(1)));
            let reads = f.has("nodes") || f.has("edges");
            let paginates = f
                .child("pageInfo")
                .is_some_and(|p| p.has("hasNextPage") && p.has("endCursor"));
            if reads && !single && !paginates {
                return Err(GqlError::validation(format!(
                    "fake Linear: \"{}\" is paginated (pages of at most the page size); select pageInfo {{ hasNextPage endCursor }} and follow it",
                    f.name
                )));
            }
        }
        check_selection(&fty, &f.selection, op, false)?;
    }
    Ok(())
}

// ── execution ───────────────────────────────────────────────────────────

/// An object to render against a selection.
#[derive(Debug, Clone)]
enum Obj {
    Issue(usize),
    Comment(usize, usize),
    User(String),
    Bot,
    State(usize),
    Team,
    Label(usize),
    Relation(usize),
    Payload(&'static str, Option<Box<Obj>>),
}

struct Ctx<'a> {
    w: &'a World,
    op: &'a Operation,
    vars: &'a Map<String, Value>,
}

impl Ctx<'_> {
    fn args(&self, f: &Field) -> Map<String, Value> {
        f.args
            .iter()
            .map(|(k, a)| (k.clone(), graphql::resolve(a, self.op, self.vars)))
            .collect()
    }

    fn render(&self, obj: &Obj, fields: &[Field]) -> Res<Value> {
        let mut out = Map::new();
        for f in fields {
            let v = self.field(obj, f)?;
            out.insert(f.key().to_string(), v);
        }
        Ok(Value::Object(out))
    }

    fn opt(&self, obj: Option<Obj>, f: &Field) -> Res<Value> {
        match obj {
            Some(o) => self.render(&o, &f.selection),
            None => Ok(Value::Null),
        }
    }

    fn field(&self, obj: &Obj, f: &Field) -> Res<Value> {
        let w = self.w;
        let name = f.name.as_str();
        let unknown = || {
            Err(GqlError::validation(format!(
                "Cannot query field \"{name}\" on {obj:?}."
            )))
        };
        match obj {
            Obj::Issue(i) => {
                let issue = &w.issues[*i];
                match name {
                    "id" => Ok(json!(issue.id)),
                    "identifier" => Ok(json!(w.identifier(issue))),
                    "number" => Ok(json!(issue.number)),
                    "title" => Ok(json!(issue.title)),
                    "description" => Ok(json!(issue.description)),
                    "url" => Ok(json!(w.url(issue))),
                    "branchName" => Ok(json!(format!(
                        "{}-{}",
                        w.identifier(issue).to_lowercase(),
                        slug(&issue.title)
                    ))),
                    "priority" => Ok(json!(0)),
                    "priorityLabel" => Ok(json!("No priority")),
                    "createdAt" => Ok(json!(iso(issue.created_ms))),
                    "updatedAt" => Ok(json!(iso(issue.updated_ms))),
                    "state" => self.opt(
                        w.states
                            .iter()
                            .position(|s| s.id == issue.state_id)
                            .map(Obj::State),
                        f,
                    ),
                    "team" => self.render(&Obj::Team, &f.selection),
                    "assignee" => self.opt(issue.assignee_id.clone().map(Obj::User), f),
                    "creator" => self.opt(Some(Obj::User(issue.creator_id.clone())), f),
                    "parent" => self.opt(
                        issue
                            .parent_id
                            .as_deref()
                            .and_then(|p| w.find_issue(p))
                            .map(Obj::Issue),
                        f,
                    ),
                    "labels" => {
                        let items = issue
                            .label_ids
                            .iter()
                            .filter_map(|id| w.labels.iter().position(|l| &l.id == id))
                            .map(Obj::Label)
                            .collect();
                        self.connection(items, f, false)
                    }
                    "comments" => {
                        let mut order: Vec<usize> = (0..issue.comments.len()).collect();
                        // Linear lists newest first unless asked otherwise.
                        order.reverse();
                        let items = order.into_iter().map(|c| Obj::Comment(*i, c)).collect();
                        self.connection(items, f, true)
                    }
                    "relations" | "inverseRelations" => {
                        let items = w
                            .relations
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| {
                                if name == "relations" {
                                    r.issue_id == issue.id
                                } else {
                                    r.related_id == issue.id
                                }
                            })
                            .map(|(n, _)| Obj::Relation(n))
                            .collect();
                        self.connection(items, f, false)
                    }
                    "children" => {
                        let items = w
                            .issues
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| c.parent_id.as_deref() == Some(issue.id.as_str()))
                            .map(|(n, _)| Obj::Issue(n))
                            .collect();
                        self.connection(items, f, false)
                    }
                    _ => unknown(),
                }
            }
            Obj::Comment(i, c) => {
                let comment = &w.issues[*i].comments[*c];
                match name {
                    "id" => Ok(json!(comment.id)),
                    "body" => Ok(json!(comment.body)),
                    "url" => Ok(json!(format!(
                        "{}#comment-{}",
                        w.url(&w.issues[*i]),
                        &comment.id[comment.id.len() - 8..]
                    ))),
                    "createdAt" => Ok(json!(iso(comment.created_ms))),
                    "updatedAt" => Ok(json!(iso(comment.updated_ms))),
                    "user" => self.opt(Some(Obj::User(comment.user_id.clone())), f),
                    "botActor" => {
                        let bot = (comment.user_id == w.viewer_id).then_some(Obj::Bot);
                        self.opt(bot, f)
                    }
                    "issue" => self.render(&Obj::Issue(*i), &f.selection),
                    _ => unknown(),
                }
            }
            Obj::User(id) => {
                let Some(u) = w.users.iter().find(|u| &u.id == id) else {
                    return Ok(Value::Null);
                };
                match name {
                    "id" => Ok(json!(u.id)),
                    "name" | "displayName" => Ok(json!(u.name)),
                    "email" => Ok(json!(u.email)),
                    "url" => Ok(json!(format!(
                        "https://linear.app/{}/profiles/{}",
                        w.org,
                        slug(&u.name)
                    ))),
                    _ => unknown(),
                }
            }
            Obj::Bot => match name {
                "id" => Ok(json!(w.viewer_id)),
                "name" => Ok(json!("codemill")),
                "type" => Ok(json!("apiKey")),
                _ => unknown(),
            },
            Obj::State(s) => {
                let st = &w.states[*s];
                match name {
                    "id" => Ok(json!(st.id)),
                    "name" => Ok(json!(st.name)),
                    "type" => Ok(json!(st.kind)),
                    "color" => Ok(json!("#e2e2e2")),
                    "position" => Ok(json!(st.position)),
                    "team" => self.render(&Obj::Team, &f.selection),
                    _ => unknown(),
                }
            }
            Obj::Team => match name {
                "id" => Ok(json!(w.team.id)),
                "key" => Ok(json!(w.team.key)),
                "name" => Ok(json!(w.team.name)),
                "labels" => {
                    let items = (0..w.labels.len())
                        .filter(|&l| w.labels[l].team)
                        .map(Obj::Label)
                        .collect();
                    self.connection(items, f, false)
                }
                "states" => {
                    let items = (0..w.states.len()).map(Obj::State).collect();
                    self.connection(items, f, false)
                }
                _ => unknown(),
            },
            Obj::Label(l) => {
                let label = &w.labels[*l];
                match name {
                    "id" => Ok(json!(label.id)),
                    "name" => Ok(json!(label.name)),
                    "color" => Ok(json!("#bec2c8")),
                    "team" => self.opt(label.team.then_some(Obj::Team), f),
                    _ => unknown(),
                }
            }
            Obj::Relation(r) => {
                let rel = &w.relations[*r];
                match name {
                    "id" => Ok(json!(rel.id)),
                    "type" => Ok(json!(rel.kind)),
                    "issue" => self.opt(w.find_issue(&rel.issue_id).map(Obj::Issue), f),
                    "relatedIssue" => self.opt(w.find_issue(&rel.related_id).map(Obj::Issue), f),
                    _ => unknown(),
                }
            }
            Obj::Payload(entity, inner) => match name {
                "success" => Ok(json!(true)),
                "lastSyncId" => Ok(json!(w.seq)),
                n if n == *entity => self.opt(inner.as_deref().cloned(), f),
                _ => unknown(),
            },
        }
    }

    fn cursor(&self, obj: &Obj) -> String {
        let w = self.w;
        match obj {
            Obj::Issue(i) => w.issues[*i].id.clone(),
            Obj::Comment(i, c) => w.issues[*i].comments[*c].id.clone(),
            Obj::State(s) => w.states[*s].id.clone(),
            Obj::Label(l) => w.labels[*l].id.clone(),
            Obj::Relation(r) => w.relations[*r].id.clone(),
            Obj::User(id) => id.clone(),
            Obj::Team => w.team.id.clone(),
            Obj::Bot | Obj::Payload(..) => String::new(),
        }
    }

    /// A page of `items` per the field's `first`/`after` (cursors are node ids).
    fn connection(&self, items: Vec<Obj>, f: &Field, paged: bool) -> Res<Value> {
        let args = self.args(f);
        if args.get("last").is_some_and(|v| !v.is_null())
            || args.get("before").is_some_and(|v| !v.is_null())
        {
            return Err(GqlError::invalid(
                "fake Linear: backward pagination is not supported",
            ));
        }
        let first = match args.get("first") {
            None | Some(Value::Null) => 50,
            Some(v) => v.as_i64().unwrap_or(50),
        };
        if !(0..=MAX_FIRST).contains(&first) {
            return Err(GqlError::invalid(format!(
                "first must be between 0 and {MAX_FIRST}"
            )));
        }
        let mut limit = first as usize;
        if paged {
            limit = limit.min(self.w.page_size);
        }
        let start = match args.get("after").and_then(Value::as_str) {
            None => 0,
            Some(after) => match items.iter().position(|o| self.cursor(o) == after) {
                Some(p) => p + 1,
                None => return Err(GqlError::invalid(format!("Invalid cursor: {after}"))),
            },
        };
        let end = (start + limit).min(items.len());
        let page = &items[start.min(items.len())..end];
        let mut out = Map::new();
        for sel in &f.selection {
            let v = match sel.name.as_str() {
                "nodes" => Value::Array(
                    page.iter()
                        .map(|o| self.render(o, &sel.selection))
                        .collect::<Res<_>>()?,
                ),
                "edges" => {
                    let mut edges = Vec::new();
                    for o in page {
                        let mut e = Map::new();
                        for ef in &sel.selection {
                            let v = match ef.name.as_str() {
                                "cursor" => json!(self.cursor(o)),
                                _ => self.render(o, &ef.selection)?,
                            };
                            e.insert(ef.key().to_string(), v);
                        }
                        edges.push(Value::Object(e));
                    }
                    Value::Array(edges)
                }
                "pageInfo" => {
                    let mut p = Map::new();
                    for pf in &sel.selection {
                        let v = match pf.name.as_str() {
                            "hasNextPage" => json!(end < items.len()),
                            "hasPreviousPage" => json!(start > 0),
                            "startCursor" => json!(page.first().map(|o| self.cursor(o))),
                            _ => json!(page.last().map(|o| self.cursor(o))),
                        };
                        p.insert(pf.key().to_string(), v);
                    }
                    Value::Object(p)
                }
                other => {
                    return Err(GqlError::validation(format!(
                        "Cannot query field \"{other}\" on a connection."
                    )));
                }
            };
            out.insert(sel.key().to_string(), v);
        }
        Ok(Value::Object(out))
    }
}

fn execute(w: &mut World, op: &Operation, vars: &Map<String, Value>) -> (StatusCode, Value) {
    let mut data = Map::new();
    let mut errors = Vec::new();
    for f in &op.selection {
        let args: Map<String, Value> = f
            .args
            .iter()
            .map(|(k, a)| (k.clone(), graphql::resolve(a, op, vars)))
            .collect();
        let result = if op.mutation {
            match mutate(w, &f.name, &args) {
                Ok(obj) => Ctx { w: &*w, op, vars }.render(&obj, &f.selection),
                Err(e) => Err(e),
            }
        } else {
            query(&*w, op, vars, f, &args)
        };
        match result {
            Ok(v) => {
                data.insert(f.key().to_string(), v);
            }
            Err(e) => {
                errors.push(e.to_json(Some(f.key())));
                data.insert(f.key().to_string(), Value::Null);
            }
        }
    }
    if errors.is_empty() {
        (StatusCode::OK, json!({ "data": data }))
    } else {
        // Root fields are non-null in Linear's schema: one failure nulls the whole answer.
        (StatusCode::OK, json!({ "data": null, "errors": errors }))
    }
}

fn query(
    w: &World,
    op: &Operation,
    vars: &Map<String, Value>,
    f: &Field,
    args: &Map<String, Value>,
) -> Res<Value> {
    let ctx = Ctx { w, op, vars };
    let filter = args.get("filter").filter(|v| !v.is_null());
    match f.name.as_str() {
        "issue" => {
            let id = args.get("id").and_then(Value::as_str).unwrap_or_default();
            let idx = w
                .find_issue(id)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            ctx.render(&Obj::Issue(idx), &f.selection)
        }
        "issues" => {
            let mut items = Vec::new();
            for (n, _) in w.issues.iter().enumerate() {
                if filter.map_or(Ok(true), |flt| issue_matches(w, n, flt))? {
                    items.push(Obj::Issue(n));
                }
            }
            ctx.connection(items, f, true)
        }
        "workflowStates" => {
            let mut items = Vec::new();
            for (n, s) in w.states.iter().enumerate() {
                if filter.map_or(Ok(true), |flt| state_matches(w, s, flt))? {
                    items.push(Obj::State(n));
                }
            }
            ctx.connection(items, f, true)
        }
        "issueLabels" => {
            let mut items = Vec::new();
            for (n, l) in w.labels.iter().enumerate() {
                if filter.map_or(Ok(true), |flt| label_matches(w, l, flt))? {
                    items.push(Obj::Label(n));
                }
            }
            ctx.connection(items, f, true)
        }
        "teams" => {
            let keep = filter.map_or(Ok(true), |flt| team_matches(w, flt))?;
            let items = if keep { vec![Obj::Team] } else { Vec::new() };
            ctx.connection(items, f, true)
        }
        "team" => {
            let id = args.get("id").and_then(Value::as_str).unwrap_or_default();
            if id == w.team.id || id.eq_ignore_ascii_case(&w.team.key) {
                ctx.render(&Obj::Team, &f.selection)
            } else {
                Err(GqlError::not_found("Team"))
            }
        }
        "viewer" => ctx.render(&Obj::User(w.viewer_id.clone()), &f.selection),
        other => Err(GqlError::validation(format!(
            "Cannot query field \"{other}\" on type \"Query\"."
        ))),
    }
}

// ── filters ─────────────────────────────────────────────────────────────

fn obj_of<'a>(v: &'a Value, ty: &str) -> Res<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| GqlError::invalid(format!("Expected type \"{ty}\" to be an object.")))
}

fn undefined(field: &str, ty: &str) -> GqlError {
    GqlError::validation(format!(
        "Field \"{field}\" is not defined by type \"{ty}\"."
    ))
}

fn str_cmp(value: Option<&str>, comp: &Value, ty: &str) -> Res<bool> {
    let mut ok = true;
    for (op, arg) in obj_of(comp, ty)? {
        let a = arg.as_str();
        let lower = |s: &str| s.to_lowercase();
        let list = || -> Vec<&str> {
            arg.as_array()
                .map(|l| l.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        ok &= match op.as_str() {
            "eq" => value == a,
            "neq" => value != a,
            "in" => value.is_some_and(|v| list().contains(&v)),
            "nin" => !value.is_some_and(|v| list().contains(&v)),
            "eqIgnoreCase" => value.map(lower) == a.map(lower),
            "neqIgnoreCase" => value.map(lower) != a.map(lower),
            "contains" => value.zip(a).is_some_and(|(v, a)| v.contains(a)),
            "containsIgnoreCase" => value
                .zip(a)
                .is_some_and(|(v, a)| lower(v).contains(&lower(a))),
            "notContains" => !value.zip(a).is_some_and(|(v, a)| v.contains(a)),
            "startsWith" => value.zip(a).is_some_and(|(v, a)| v.starts_with(a)),
            "endsWith" => value.zip(a).is_some_and(|(v, a)| v.ends_with(a)),
            "null" => value.is_none() == arg.as_bool().unwrap_or(false),
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

/// `and` / `or` of a filter, applied with `each`.
fn logic(v: &Value, ty: &str, any: bool, each: &dyn Fn(&Value) -> Res<bool>) -> Res<bool> {
    let list = v
        .as_array()
        .ok_or_else(|| GqlError::invalid(format!("Expected a list of \"{ty}\".")))?;
    let mut results = Vec::new();
    for f in list {
        results.push(each(f)?);
    }
    Ok(if any {
        results.iter().any(|r| *r)
    } else {
        results.iter().all(|r| *r)
    })
}

fn team_matches(w: &World, filter: &Value) -> Res<bool> {
    let ty = "TeamFilter";
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&w.team.id), v, "IDComparator")?,
            "key" => str_cmp(Some(&w.team.key), v, "StringComparator")?,
            "name" => str_cmp(Some(&w.team.name), v, "StringComparator")?,
            "and" => logic(v, ty, false, &|f| team_matches(w, f))?,
            "or" => logic(v, ty, true, &|f| team_matches(w, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

fn state_matches(w: &World, s: &StateRec, filter: &Value) -> Res<bool> {
    let ty = "WorkflowStateFilter";
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&s.id), v, "IDComparator")?,
            "name" => str_cmp(Some(&s.name), v, "StringComparator")?,
            "type" => str_cmp(Some(&s.kind), v, "StringComparator")?,
            "team" => team_matches(w, v)?,
            "and" => logic(v, ty, false, &|f| state_matches(w, s, f))?,
            "or" => logic(v, ty, true, &|f| state_matches(w, s, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

fn label_matches(w: &World, l: &LabelRec, filter: &Value) -> Res<bool> {
    let ty = "IssueLabelFilter";
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&l.id), v, "IDComparator")?,
            "name" => str_cmp(Some(&l.name), v, "StringComparator")?,
            "team" => {
                let nullable = obj_of(v, "NullableTeamFilter")?;
                match nullable.get("null") {
                    Some(n) if nullable.len() == 1 => l.team != n.as_bool().unwrap_or(false),
                    _ => l.team && team_matches(w, v)?,
                }
            }
            "and" => logic(v, ty, false, &|f| label_matches(w, l, f))?,
            "or" => logic(v, ty, true, &|f| label_matches(w, l, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

fn issue_matches(w: &World, idx: usize, filter: &Value) -> Res<bool> {
    let ty = "IssueFilter";
    let issue = &w.issues[idx];
    let labels: Vec<&LabelRec> = issue
        .label_ids
        .iter()
        .filter_map(|id| w.label_by_id(id))
        .collect();
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&issue.id), v, "IDComparator")?,
            "title" => str_cmp(Some(&issue.title), v, "StringComparator")?,
            "description" => str_cmp(issue.description.as_deref(), v, "NullableStringComparator")?,
            "number" => {
                let eq = obj_of(v, "NumberComparator")?
                    .get("eq")
                    .and_then(Value::as_f64);
                eq.is_none_or(|n| n as u64 == issue.number)
            }
            "team" => team_matches(w, v)?,
            "state" => match w.states.iter().find(|s| s.id == issue.state_id) {
                Some(s) => state_matches(w, s, v)?,
                None => false,
            },
            "labels" => {
                let ty = "IssueLabelCollectionFilter";
                let mut all = true;
                for (lk, lv) in obj_of(v, ty)? {
                    all &= match lk.as_str() {
                        // A field straight on a collection filter means "some".
                        "id" | "name" => {
                            let mut one = Map::new();
                            one.insert(lk.clone(), lv.clone());
                            let one = Value::Object(one);
                            let mut any = false;
                            for l in &labels {
                                any |= label_matches(w, l, &one)?;
                            }
                            any
                        }
                        "some" => {
                            let mut any = false;
                            for l in &labels {
                                any |= label_matches(w, l, lv)?;
                            }
                            any
                        }
                        "every" => {
                            let mut every = true;
                            for l in &labels {
                                every &= label_matches(w, l, lv)?;
                            }
                            every
                        }
                        "length" => {
                            let eq = obj_of(lv, "NumberComparator")?
                                .get("eq")
                                .and_then(Value::as_f64);
                            eq.is_none_or(|n| n as usize == labels.len())
                        }
                        other => return Err(undefined(other, ty)),
                    };
                }
                all
            }
            "assignee" => {
                let ty = "NullableUserFilter";
                let user = issue
                    .assignee_id
                    .as_deref()
                    .and_then(|a| w.users.iter().find(|u| u.id == a));
                let mut m = true;
                for (uk, uv) in obj_of(v, ty)? {
                    m &= match uk.as_str() {
                        "null" => user.is_none() == uv.as_bool().unwrap_or(false),
                        "id" => str_cmp(user.map(|u| u.id.as_str()), uv, "IDComparator")?,
                        "email" => str_cmp(user.map(|u| u.email.as_str()), uv, "StringComparator")?,
                        "name" => str_cmp(user.map(|u| u.name.as_str()), uv, "StringComparator")?,
                        other => return Err(undefined(other, ty)),
                    };
                }
                m
            }
            "and" => logic(v, ty, false, &|f| issue_matches(w, idx, f))?,
            "or" => logic(v, ty, true, &|f| issue_matches(w, idx, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

// ── mutations ───────────────────────────────────────────────────────────

/// An input object's fields, refusing unknown ones as GraphQL does.
fn input<'a>(
    args: &'a Map<String, Value>,
    ty: &str,
    allowed: &[&str],
) -> Res<&'a Map<String, Value>> {
    let v = args
        .get("input")
        .ok_or_else(|| GqlError::invalid("input is required"))?;
    let m = obj_of(v, ty)?;
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(undefined(k, ty));
    }
    Ok(m)
}

fn req_str<'a>(m: &'a Map<String, Value>, key: &str, ty: &str) -> Res<&'a str> {
    m.get(key).and_then(Value::as_str).ok_or_else(|| {
        GqlError::invalid(format!(
            "Field \"{ty}.{key}\" of required type \"String!\" was not provided."
        ))
    })
}

fn mutate(w: &mut World, name: &str, args: &Map<String, Value>) -> Res<Obj> {
    let arg_str = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match name {
        "commentCreate" => {
            let ty = "CommentCreateInput";
            let m = input(
                args,
                ty,
                &["issueId", "body", "parentId", "id", "createAsUser"],
            )?;
            let issue_id = req_str(m, "issueId", ty)?;
            let body = req_str(m, "body", ty)?.to_string();
            let idx = w
                .find_issue(issue_id)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let id = w.new_id(0xc0e);
            let now = w.tick();
            let user_id = w.viewer_id.clone();
            w.issues[idx].comments.push(CommentRec {
                id,
                body,
                user_id,
                created_ms: now,
                updated_ms: now,
            });
            let c = w.issues[idx].comments.len() - 1;
            Ok(Obj::Payload(
                "comment",
                Some(Box::new(Obj::Comment(idx, c))),
            ))
        }
        "commentUpdate" => {
            let ty = "CommentUpdateInput";
            let m = input(args, ty, &["body"])?;
            let body = req_str(m, "body", ty)?.to_string();
            let id = arg_str("id");
            let found = w.issues.iter().enumerate().find_map(|(i, issue)| {
                issue
                    .comments
                    .iter()
                    .position(|c| c.id == id)
                    .map(|c| (i, c))
            });
            let (i, c) = found.ok_or_else(|| GqlError::not_found("Comment"))?;
            let now = w.tick();
            let comment = &mut w.issues[i].comments[c];
            comment.body = body;
            comment.updated_ms = now;
            Ok(Obj::Payload("comment", Some(Box::new(Obj::Comment(i, c)))))
        }
        "issueUpdate" => {
            let ty = "IssueUpdateInput";
            let m = input(
                args,
                ty,
                &[
                    "stateId",
                    "labelIds",
                    "title",
                    "description",
                    "assigneeId",
                    "parentId",
                ],
            )?
            .clone();
            let idx = w
                .find_issue(&arg_str("id"))
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            if let Some(state) = m.get("stateId") {
                let state = state.as_str().unwrap_or_default();
                if !w.states.iter().any(|s| s.id == state) {
                    return Err(GqlError::not_found("WorkflowState"));
                }
                w.issues[idx].state_id = state.to_string();
            }
            if let Some(labels) = m.get("labelIds") {
                let ids: Vec<String> = labels
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(bad) = ids.iter().find(|id| w.label_by_id(id).is_none()) {
                    return Err(GqlError::invalid(format!(
                        "Entity not found: IssueLabel {bad}"
                    )));
                }
                w.issues[idx].label_ids = ids;
            }
            if let Some(t) = m.get("title").and_then(Value::as_str) {
                w.issues[idx].title = t.to_string();
            }
            if let Some(d) = m.get("description") {
                w.issues[idx].description = d.as_str().map(str::to_string);
            }
            if let Some(a) = m.get("assigneeId") {
                w.issues[idx].assignee_id = a.as_str().map(str::to_string);
            }
            let now = w.tick();
            w.issues[idx].updated_ms = now;
            Ok(Obj::Payload("issue", Some(Box::new(Obj::Issue(idx)))))
        }
        "issueAddLabel" | "issueRemoveLabel" => {
            let idx = w
                .find_issue(&arg_str("id"))
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let label = arg_str("labelId");
            if w.label_by_id(&label).is_none() {
                return Err(GqlError::not_found("IssueLabel"));
            }
            let ids = &mut w.issues[idx].label_ids;
            if name == "issueAddLabel" {
                if !ids.contains(&label) {
                    ids.push(label);
                }
            } else {
                ids.retain(|l| l != &label);
            }
            let now = w.tick();
            w.issues[idx].updated_ms = now;
            Ok(Obj::Payload("issue", Some(Box::new(Obj::Issue(idx)))))
        }
        "issueLabelCreate" => {
            let ty = "IssueLabelCreateInput";
            let m = input(
                args,
                ty,
                &["name", "teamId", "color", "description", "parentId", "id"],
            )?;
            let label_name = req_str(m, "name", ty)?.to_string();
            let team = match m.get("teamId") {
                None | Some(Value::Null) => false,
                Some(t) if t.as_str() == Some(w.team.id.as_str()) => true,
                Some(_) => return Err(GqlError::not_found("Team")),
            };
            let clash = w
                .labels
                .iter()
                .any(|l| l.name.eq_ignore_ascii_case(&label_name) && (l.team == team || !l.team));
            if clash {
                return Err(GqlError::invalid(format!(
                    "Duplicate label name: a label named \"{label_name}\" already exists"
                )));
            }
            w.add_label(&label_name, team);
            let l = w.labels.len() - 1;
            Ok(Obj::Payload("issueLabel", Some(Box::new(Obj::Label(l)))))
        }
        "issueCreate" => {
            let ty = "IssueCreateInput";
            let m = input(
                args,
                ty,
                &[
                    "teamId",
                    "title",
                    "description",
                    "stateId",
                    "labelIds",
                    "parentId",
                    "assigneeId",
                    "priority",
                ],
            )?
            .clone();
            if req_str(&m, "teamId", ty)? != w.team.id {
                return Err(GqlError::not_found("Team"));
            }
            let title = req_str(&m, "title", ty)?.to_string();
            let state_id = match m.get("stateId").and_then(Value::as_str) {
                Some(s) if w.states.iter().any(|st| st.id == s) => s.to_string(),
                Some(_) => return Err(GqlError::not_found("WorkflowState")),
                None => w
                    .states
                    .iter()
                    .find(|s| s.kind == "backlog")
                    .or_else(|| w.states.iter().find(|s| s.kind == "unstarted"))
                    .or(w.states.first())
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
            };
            let label_ids: Vec<String> = m
                .get("labelIds")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let description = m
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string);
            let viewer = w.viewer_id.clone();
            let idx = w.create_issue(&title, description, state_id, label_ids, viewer);
            if let Some(parent) = m.get("parentId").and_then(Value::as_str) {
                let pid = w.find_issue(parent).map(|p| w.issues[p].id.clone());
                w.issues[idx].parent_id = pid;
            }
            Ok(Obj::Payload("issue", Some(Box::new(Obj::Issue(idx)))))
        }
        "issueRelationCreate" => {
            let ty = "IssueRelationCreateInput";
            let m = input(args, ty, &["issueId", "relatedIssueId", "type", "id"])?;
            let kind = req_str(m, "type", ty)?.to_string();
            if !matches!(
                kind.as_str(),
                "blocks" | "duplicate" | "related" | "similar"
            ) {
                return Err(GqlError::invalid(format!(
                    "Value \"{kind}\" does not exist in \"IssueRelationType\" enum."
                )));
            }
            let a = w
                .find_issue(req_str(m, "issueId", ty)?)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let b = w
                .find_issue(req_str(m, "relatedIssueId", ty)?)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let (issue_id, related_id) = (w.issues[a].id.clone(), w.issues[b].id.clone());
            let id = w.new_id(0x4e1);
            w.relations.push(RelationRec {
                id,
                kind,
                issue_id,
                related_id,
            });
            let r = w.relations.len() - 1;
            Ok(Obj::Payload(
                "issueRelation",
                Some(Box::new(Obj::Relation(r))),
            ))
        }
        other => Err(GqlError::validation(format!(
            "Cannot query field \"{other}\" on type \"Mutation\"."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_are_civil() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn signatures_are_hex_hmac() {
        let s = sign("secret", b"body");
        assert_eq!(s.len(), 64);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

mod graphql {
    //! A small GraphQL reader for the fake Linear: one operation with variable definitions, fields
    //! with aliases, arguments and nested selections. Fragments and directives are refused, which
    //! codemill does not use. Validation follows the GraphQL rules a real server applies to
    //! variables (declared, used, provided, typed), so a malformed request fails here as it would at
    //! Linear.

    use std::collections::BTreeSet;

    use serde_json::{Map, Value};

    /// An argument value as written: a variable or a literal.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum Arg {
        Var(String),
        Lit(Value),
        List(Vec<Arg>),
        Obj(Vec<(String, Arg)>),
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Field {
        pub alias: Option<String>,
        pub name: String,
        pub args: Vec<(String, Arg)>,
        pub selection: Vec<Field>,
    }

    impl Field {
        /// The key the answer uses (the alias, else the name).
        pub fn key(&self) -> &str {
            self.alias.as_deref().unwrap_or(&self.name)
        }

        pub fn has(&self, name: &str) -> bool {
            self.selection.iter().any(|f| f.name == name)
        }

        pub fn child(&self, name: &str) -> Option<&Field> {
            self.selection.iter().find(|f| f.name == name)
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct VarDef {
        pub name: String,
        /// As written: `String!`, `[String!]`, `IssueFilter`.
        pub ty: String,
        pub default: Option<Value>,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Operation {
        pub mutation: bool,
        pub name: Option<String>,
        pub vars: Vec<VarDef>,
        pub selection: Vec<Field>,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Punct(char),
        Spread,
        Name(String),
        Int(i64),
        Float(f64),
        Str(String),
    }

    fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
        let chars: Vec<char> = src.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
                '#' => {
                    while i < chars.len() && chars[i] != '\n' {
                        i += 1;
                    }
                }
                '{' | '}' | '(' | ')' | ':' | '!' | '$' | '[' | ']' | '=' | '@' | '|' => {
                    toks.push(Tok::Punct(c));
                    i += 1;
                }
                '.' => {
                    if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
                        toks.push(Tok::Spread);
                        i += 3;
                    } else {
                        return Err("Syntax Error: Unexpected \".\".".into());
                    }
                }
                '"' => {
                    if chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                        return Err("fake Linear: block strings are not supported".into());
                    }
                    i += 1;
                    let mut s = String::new();
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err("Syntax Error: Unterminated string.".into());
                        };
                        i += 1;
                        match c {
                            '"' => break,
                            '\\' => {
                                let Some(&e) = chars.get(i) else {
                                    return Err("Syntax Error: Unterminated string.".into());
                                };
                                i += 1;
                                s.push(match e {
                                    'n' => '\n',
                                    't' => '\t',
                                    'r' => '\r',
                                    'b' => '\u{8}',
                                    'f' => '\u{c}',
                                    'u' => {
                                        let hex: String = chars.iter().skip(i).take(4).collect();
                                        i += 4;
                                        u32::from_str_radix(&hex, 16)
                                            .ok()
                                            .and_then(char::from_u32)
                                            .ok_or(
                                                "Syntax Error: Invalid Unicode escape sequence.",
                                            )?
                                    }
                                    other => other,
                                });
                            }
                            '\n' => return Err("Syntax Error: Unterminated string.".into()),
                            c => s.push(c),
                        }
                    }
                    toks.push(Tok::Str(s));
                }
                c if c == '-' || c.is_ascii_digit() => {
                    let start = i;
                    i += 1;
                    while i < chars.len()
                        && (chars[i].is_ascii_digit()
                            || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                    {
                        i += 1;
                    }
                    let text: String = chars[start..i].iter().collect();
                    if let Ok(n) = text.parse::<i64>() {
                        toks.push(Tok::Int(n));
                    } else if let Ok(f) = text.parse::<f64>() {
                        toks.push(Tok::Float(f));
                    } else {
                        return Err(format!("Syntax Error: Invalid number \"{text}\"."));
                    }
                }
                c if c == '_' || c.is_ascii_alphabetic() => {
                    let start = i;
                    while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                        i += 1;
                    }
                    toks.push(Tok::Name(chars[start..i].iter().collect()));
                }
                other => return Err(format!("Syntax Error: Unexpected character \"{other}\".")),
            }
        }
        Ok(toks)
    }

    struct Parser {
        toks: Vec<Tok>,
        pos: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.pos)
        }

        fn next(&mut self) -> Option<Tok> {
            let t = self.toks.get(self.pos).cloned();
            self.pos += 1;
            t
        }

        fn is(&self, c: char) -> bool {
            self.peek() == Some(&Tok::Punct(c))
        }

        fn expect(&mut self, c: char) -> Result<(), String> {
            match self.next() {
                Some(Tok::Punct(p)) if p == c => Ok(()),
                other => Err(format!("Syntax Error: Expected \"{c}\", found {other:?}.")),
            }
        }

        fn name(&mut self) -> Result<String, String> {
            match self.next() {
                Some(Tok::Name(n)) => Ok(n),
                other => Err(format!("Syntax Error: Expected Name, found {other:?}.")),
            }
        }

        fn document(&mut self) -> Result<Operation, String> {
            let op = match self.peek() {
                Some(Tok::Punct('{')) => Operation {
                    mutation: false,
                    name: None,
                    vars: Vec::new(),
                    selection: self.selection()?,
                },
                Some(Tok::Name(kw)) if kw == "query" || kw == "mutation" => {
                    let mutation = kw == "mutation";
                    self.pos += 1;
                    let name = match self.peek() {
                        Some(Tok::Name(_)) => Some(self.name()?),
                        _ => None,
                    };
                    let vars = if self.is('(') {
                        self.var_defs()?
                    } else {
                        Vec::new()
                    };
                    if self.is('@') {
                        return Err("fake Linear: directives are not supported".into());
                    }
                    Operation {
                        mutation,
                        name,
                        vars,
                        selection: self.selection()?,
                    }
                }
                Some(Tok::Name(kw)) if kw == "fragment" => {
                    return Err("fake Linear: fragments are not supported".into());
                }
                Some(Tok::Name(kw)) if kw == "subscription" => {
                    return Err("fake Linear: subscriptions are not supported".into());
                }
                other => return Err(format!("Syntax Error: Unexpected {other:?}.")),
            };
            if self.pos < self.toks.len() {
                return Err("fake Linear: send exactly one operation per request".into());
            }
            Ok(op)
        }

        fn var_defs(&mut self) -> Result<Vec<VarDef>, String> {
            self.expect('(')?;
            let mut vars = Vec::new();
            while !self.is(')') {
                self.expect('$')?;
                let name = self.name()?;
                self.expect(':')?;
                let ty = self.ty()?;
                let default = if self.is('=') {
                    self.pos += 1;
                    Some(lit_only(self.value()?)?)
                } else {
                    None
                };
                vars.push(VarDef { name, ty, default });
            }
            self.expect(')')?;
            Ok(vars)
        }

        fn ty(&mut self) -> Result<String, String> {
            let mut ty = if self.is('[') {
                self.pos += 1;
                let inner = self.ty()?;
                self.expect(']')?;
                format!("[{inner}]")
            } else {
                self.name()?
            };
            if self.is('!') {
                self.pos += 1;
                ty.push('!');
            }
            Ok(ty)
        }

        fn selection(&mut self) -> Result<Vec<Field>, String> {
            self.expect('{')?;
            let mut fields = Vec::new();
            while !self.is('}') {
                if self.peek() == Some(&Tok::Spread) {
                    return Err("fake Linear: fragments are not supported".into());
                }
                let first = self.name()?;
                let (alias, name) = if self.is(':') {
                    self.pos += 1;
                    (Some(first), self.name()?)
                } else {
                    (None, first)
                };
                let mut args = Vec::new();
                if self.is('(') {
                    self.pos += 1;
                    while !self.is(')') {
                        let arg = self.name()?;
                        self.expect(':')?;
                        args.push((arg, self.value()?));
                    }
                    self.expect(')')?;
                }
                if self.is('@') {
                    return Err("fake Linear: directives are not supported".into());
                }
                let selection = if self.is('{') {
                    self.selection()?
                } else {
                    Vec::new()
                };
                fields.push(Field {
                    alias,
                    name,
                    args,
                    selection,
                });
            }
            self.expect('}')?;
            if fields.is_empty() {
                return Err("Syntax Error: Expected Name, found \"}\".".into());
            }
            Ok(fields)
        }

        fn value(&mut self) -> Result<Arg, String> {
            match self.next() {
                Some(Tok::Punct('$')) => Ok(Arg::Var(self.name()?)),
                Some(Tok::Int(n)) => Ok(Arg::Lit(Value::from(n))),
                Some(Tok::Float(f)) => Ok(Arg::Lit(Value::from(f))),
                Some(Tok::Str(s)) => Ok(Arg::Lit(Value::String(s))),
                Some(Tok::Name(n)) => Ok(Arg::Lit(match n.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    // An enum value travels as its name.
                    _ => Value::String(n),
                })),
                Some(Tok::Punct('[')) => {
                    let mut items = Vec::new();
                    while !self.is(']') {
                        items.push(self.value()?);
                    }
                    self.expect(']')?;
                    Ok(Arg::List(items))
                }
                Some(Tok::Punct('{')) => {
                    let mut fields = Vec::new();
                    while !self.is('}') {
                        let k = self.name()?;
                        self.expect(':')?;
                        fields.push((k, self.value()?));
                    }
                    self.expect('}')?;
                    Ok(Arg::Obj(fields))
                }
                other => Err(format!("Syntax Error: Unexpected {other:?}.")),
            }
        }
    }

    fn lit_only(arg: Arg) -> Result<Value, String> {
        match arg {
            Arg::Lit(v) => Ok(v),
            Arg::Var(_) => Err("Syntax Error: a default value cannot use a variable.".into()),
            Arg::List(items) => Ok(Value::Array(
                items.into_iter().map(lit_only).collect::<Result<_, _>>()?,
            )),
            Arg::Obj(fields) => {
                let mut map = Map::new();
                for (k, v) in fields {
                    map.insert(k, lit_only(v)?);
                }
                Ok(Value::Object(map))
            }
        }
    }

    pub(crate) fn parse(query: &str) -> Result<Operation, String> {
        let toks = tokenize(query)?;
        Parser { toks, pos: 0 }.document()
    }

    fn vars_used(fields: &[Field], out: &mut BTreeSet<String>) {
        fn in_arg(arg: &Arg, out: &mut BTreeSet<String>) {
            match arg {
                Arg::Var(v) => {
                    out.insert(v.clone());
                }
                Arg::Lit(_) => {}
                Arg::List(items) => items.iter().for_each(|a| in_arg(a, out)),
                Arg::Obj(fields) => fields.iter().for_each(|(_, a)| in_arg(a, out)),
            }
        }
        for f in fields {
            f.args.iter().for_each(|(_, a)| in_arg(a, out));
            vars_used(&f.selection, out);
        }
    }

    /// Whether a JSON value fits GraphQL type `ty` (input objects only checked to be objects; the
    /// resolvers check their fields).
    fn fits(ty: &str, v: &Value) -> bool {
        if let Some(inner) = ty.strip_suffix('!') {
            return !v.is_null() && fits(inner, v);
        }
        if v.is_null() {
            return true;
        }
        if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return match v {
                Value::Array(items) => items.iter().all(|i| fits(inner, i)),
                // Input coercion accepts one item for a list.
                other => fits(inner, other),
            };
        }
        match ty {
            "String" | "ID" | "DateTime" | "TimelessDate" | "UUID" => v.is_string(),
            "Int" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "Float" => v.is_number(),
            "Boolean" => v.is_boolean(),
            "IssueRelationType" => v
                .as_str()
                .is_some_and(|s| matches!(s, "blocks" | "duplicate" | "related" | "similar")),
            _ => v.is_object(),
        }
    }

    /// The checks a GraphQL server makes on variables before running anything.
    pub(crate) fn validate_variables(
        op: &Operation,
        variables: &Map<String, Value>,
    ) -> Result<(), String> {
        let label = op.name.as_deref().unwrap_or("(anonymous)");
        let mut used = BTreeSet::new();
        vars_used(&op.selection, &mut used);
        for name in &used {
            if !op.vars.iter().any(|v| &v.name == name) {
                return Err(format!(
                    "Variable \"${name}\" is not defined by operation \"{label}\"."
                ));
            }
        }
        for def in &op.vars {
            if !used.contains(&def.name) {
                return Err(format!(
                    "Variable \"${}\" is never used in operation \"{label}\".",
                    def.name
                ));
            }
            let value = variables.get(&def.name);
            match value {
                None | Some(Value::Null) if def.ty.ends_with('!') && def.default.is_none() => {
                    return Err(format!(
                        "Variable \"${}\" of required type \"{}\" was not provided.",
                        def.name, def.ty
                    ));
                }
                Some(v) if !fits(&def.ty, v) => {
                    return Err(format!(
                        "Variable \"${}\" got invalid value {v}; expected type \"{}\".",
                        def.name, def.ty
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether a variable declared as `declared` may stand where `expected` is wanted.
    pub(crate) fn assignable(declared: &str, expected: &str) -> bool {
        declared == expected || declared.strip_suffix('!') == Some(expected)
    }

    /// An argument's value with variables substituted (a missing variable reads as its default or
    /// null).
    pub(crate) fn resolve(arg: &Arg, op: &Operation, variables: &Map<String, Value>) -> Value {
        match arg {
            Arg::Lit(v) => v.clone(),
            Arg::Var(name) => variables
                .get(name)
                .cloned()
                .or_else(|| {
                    op.vars
                        .iter()
                        .find(|d| &d.name == name)
                        .and_then(|d| d.default.clone())
                })
                .unwrap_or(Value::Null),
            Arg::List(items) => {
                Value::Array(items.iter().map(|a| resolve(a, op, variables)).collect())
            }
            Arg::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, a)| (k.clone(), resolve(a, op, variables)))
                    .collect(),
            ),
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used, clippy::expect_used)]
        use super::*;
        use serde_json::json;

        #[test]
        fn reads_an_operation_and_checks_its_variables() {
            let op = parse(
            "query Q($id: String!, $first: Int = 5) { issue(id: $id) { id a: title comments(first: $first) { nodes { id } } } }",
        )
        .unwrap();
            assert_eq!(op.name.as_deref(), Some("Q"));
            assert_eq!(op.vars.len(), 2);
            assert_eq!(op.selection[0].name, "issue");
            assert_eq!(op.selection[0].selection[1].key(), "a");
            let vars = json!({"id": "ENG-1"});
            assert!(validate_variables(&op, vars.as_object().unwrap()).is_ok());
            let vars = json!({});
            assert!(validate_variables(&op, vars.as_object().unwrap()).is_err());
            let vars = json!({"id": 7});
            assert!(validate_variables(&op, vars.as_object().unwrap()).is_err());
            assert!(parse("query { issue(id: \"x\") { ...F } }").is_err());
            let unused = parse("query Q($id: String!) { viewer { id } }").unwrap();
            assert!(validate_variables(&unused, json!({"id": "x"}).as_object().unwrap()).is_err());
        }
    }
}
