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

mod data;
mod execute;
mod filters;
mod graphql;
mod mutations;
mod schema;
mod webhooks;
mod world;

pub use webhooks::{delivery_headers, sign};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::{Fault, FaultKind, RecordedRequest, Recorder, error_status, fault_response, serve};
use execute::execute;
use schema::check_selection;
use world::{World, epoch_ms};

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
