//! The fake's HTTP side: one handler that records the request, honours injected faults and adds
//! the `RateLimit-*` headers; authentication, the project lookup, request parameters, GitLab's
//! pagination headers and the route table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakeState, Noteable, Shared, lock, now_ms, percent_decode, percent_encode};
use crate::fakes::{FaultKind, error_status};

const RATE_LIMIT: u64 = 2000;

/// An answer before it becomes a [`Response`].
pub(super) struct Out {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) headers: Vec<(String, String)>,
}

impl Out {
    pub(super) fn json(status: u16, body: Value) -> Out {
        Out {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

pub(super) fn err(status: u16, message: &str) -> Out {
    Out::json(status, json!({ "message": message }))
}

/// An unknown issue, MR, note or discussion.
pub(super) fn not_found() -> Out {
    err(404, "404 Not found")
}

/// `{"message": "<field> is missing"}`, GitLab's answer to a missing required parameter.
pub(super) fn missing(fields: &[&str]) -> Out {
    let list: Vec<String> = fields.iter().map(|f| format!("{f} is missing")).collect();
    err(400, &list.join(", "))
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = shared.recorder.record(&method, &uri, &headers, &body);
    let served = shared.served.fetch_add(1, Ordering::Relaxed) + 1;
    let remaining = RATE_LIMIT.saturating_sub(served).max(1);
    let mut response = match fault {
        Some(FaultKind::RateLimit { retry_after_secs }) => {
            let reset = now_ms() / 1000 + retry_after_secs as i64;
            let mut r = respond(err(429, "Retry later"));
            set(&mut r, "retry-after", &retry_after_secs.to_string());
            set(&mut r, "ratelimit-reset", &reset.to_string());
            set(&mut r, "ratelimit-limit", &RATE_LIMIT.to_string());
            set(&mut r, "ratelimit-remaining", "0");
            return r;
        }
        Some(FaultKind::Before(status)) => error_status(status),
        Some(FaultKind::AfterApply(status)) => {
            lock(&shared).answer(&method, &uri, &headers, &body);
            error_status(status)
        }
        None => {
            let out = lock(&shared).answer(&method, &uri, &headers, &body);
            respond(out)
        }
    };
    set(&mut response, "ratelimit-limit", &RATE_LIMIT.to_string());
    set(&mut response, "ratelimit-remaining", &remaining.to_string());
    response
}

fn set(response: &mut Response, name: &str, value: &str) {
    if let (Ok(k), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        response.headers_mut().insert(k, v);
    }
}

fn respond(out: Out) -> Response {
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(out.body)).into_response();
    for (k, v) in out.headers {
        set(&mut response, &k, &v);
    }
    response
}

/// A request's parameters: GitLab takes them from the JSON body or the query string alike.
pub(super) struct Params<'a> {
    pub(super) body: &'a Value,
    pub(super) query: &'a BTreeMap<String, String>,
    /// The raw request path, for `Link` headers.
    pub(super) path: &'a str,
}

impl Params<'_> {
    pub(super) fn str(&self, key: &str) -> Option<String> {
        match self.body.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => self.query.get(key).cloned(),
        }
    }

    /// A label-style list: a comma-separated string or a JSON array.
    pub(super) fn list(&self, key: &str) -> Option<Vec<String>> {
        if let Some(Value::Array(a)) = self.body.get(key) {
            return Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::trim).map(str::to_string))
                    .filter(|s| !s.is_empty())
                    .collect(),
            );
        }
        self.str(key).map(|s| split_list(&s))
    }
}

pub(super) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl FakeState {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let private = header("private-token").map(str::trim);
        let bearer = header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let token = self.opts.token.as_str();
        !token.is_empty() && (private == Some(token) || bearer == Some(token))
    }

    /// What follows the project in `rest` (the path after `/projects/`), when `rest` names
    /// this project by id, by encoded path (`acme%2Fweb`) or by bare path (`acme/web`).
    fn strip_project<'a>(&self, rest: &'a str) -> Option<&'a str> {
        let (first, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let first = percent_decode(first);
        if first == self.opts.project_id.to_string()
            || first.eq_ignore_ascii_case(&self.opts.project)
        {
            return Some(tail);
        }
        let n = self.opts.project.len();
        let head = rest.get(..n)?;
        let tail = &rest[n..];
        (head.eq_ignore_ascii_case(&self.opts.project)
            && (tail.is_empty() || tail.starts_with('/')))
        .then_some(tail)
    }

    /// Whether `id` (from a body, e.g. `target_project_id`) names this project.
    pub(super) fn is_project(&self, id: &str) -> bool {
        id == self.opts.project_id.to_string()
            || percent_decode(id).eq_ignore_ascii_case(&self.opts.project)
    }

    pub(super) fn answer(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Out {
        let path = uri.path();
        let Some(api) = path
            .strip_prefix("/api/v4")
            .filter(|r| r.is_empty() || r.starts_with('/'))
        else {
            return err(404, "404 Not Found");
        };
        if !self.authorized(headers) {
            return err(401, "401 Unauthorized");
        }
        let json: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return err(400, "400 Bad request - JSON parse error"),
            }
        };
        let query: BTreeMap<String, String> = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|q| q.0.into_iter().collect())
            .unwrap_or_default();
        let p = Params {
            body: &json,
            query: &query,
            path,
        };
        if api.trim_end_matches('/') == "/user" && *method == Method::GET {
            return Out::json(200, self.current_user_json());
        }
        let Some(rest) = api.strip_prefix("/projects/") else {
            return err(404, "404 Not Found");
        };
        let Some(rest) = self.strip_project(rest) else {
            return err(404, "404 Project Not Found");
        };
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let num = |s: &str| s.parse::<u64>().ok();
        // Notes and discussions work alike on issues and merge requests.
        if let [
            kind @ ("issues" | "merge_requests"),
            n,
            sub @ ("notes" | "discussions"),
            more @ ..,
        ] = seg.as_slice()
        {
            let Some(on) = num(n).map(|n| {
                if *kind == "issues" {
                    Noteable::Issue(n)
                } else {
                    Noteable::Mr(n)
                }
            }) else {
                return not_found();
            };
            if !self.exists(on) {
                return not_found();
            }
            return self.notes_route(method, on, sub, more, &p);
        }
        match (method.clone(), seg.as_slice()) {
            (Method::GET, []) => Out::json(200, self.project_json()),
            (Method::GET, ["issues"]) => self.list_issues(&p),
            (Method::POST, ["issues"]) => self.post_issue(&p),
            (Method::GET, ["issues", n]) => match num(n).and_then(|n| self.issues.get(&n)) {
                Some(i) => Out::json(200, self.issue_json(i)),
                None => not_found(),
            },
            (Method::PUT, ["issues", n]) => self.put_issue(num(n), &p),
            (Method::GET, ["issues", n, "links"]) => self.list_links(num(n), &p),
            (Method::POST, ["issues", n, "links"]) => self.post_link(num(n), &p),
            (Method::GET, ["merge_requests"]) => self.list_mrs(&p),
            (Method::POST, ["merge_requests"]) => self.post_mr(&p),
            (Method::GET, ["merge_requests", n]) => match num(n).and_then(|n| self.mrs.get(&n)) {
                Some(m) => Out::json(200, self.mr_json(m)),
                None => not_found(),
            },
            (Method::PUT, ["merge_requests", n]) => self.put_mr(num(n), &p),
            (Method::PUT, ["merge_requests", n, "merge"]) => self.put_merge(num(n), &p),
            (Method::GET, ["repository", "branches", name]) => self.get_branch(name),
            (Method::GET, ["pipelines"]) => self.list_pipelines(&p),
            _ => err(404, "404 Not Found"),
        }
    }

    /// One page of `items` with GitLab's `X-*` headers and a `Link` header.
    pub(super) fn page(&self, items: Vec<Value>, p: &Params) -> Out {
        let int = |k: &str| p.query.get(k).and_then(|v| v.parse::<usize>().ok());
        // The configured page size caps what a client asks for, so tests page through small lists.
        let per_page = int("per_page")
            .unwrap_or(self.opts.page_size)
            .clamp(1, 100)
            .min(self.opts.page_size.max(1));
        let page = int("page").unwrap_or(1).max(1);
        let total = items.len();
        let last = total.div_ceil(per_page).max(1);
        let chunk: Vec<Value> = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let link_to = |n: usize, rel: &str| {
            let mut query: Vec<String> = p
                .query
                .iter()
                .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "per_page")
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect();
            query.push(format!("page={n}"));
            query.push(format!("per_page={per_page}"));
            format!(
                "<{}{}?{}>; rel=\"{rel}\"",
                self.base,
                p.path,
                query.join("&")
            )
        };
        let next = (page < last).then_some(page + 1);
        let prev = (page > 1).then(|| (page - 1).min(last));
        let mut links = Vec::new();
        if let Some(n) = prev {
            links.push(link_to(n, "prev"));
        }
        if let Some(n) = next {
            links.push(link_to(n, "next"));
        }
        links.push(link_to(1, "first"));
        links.push(link_to(last, "last"));
        let opt = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
        let mut out = Out::json(200, Value::Array(chunk));
        out.headers = vec![
            ("x-page".into(), page.to_string()),
            ("x-per-page".into(), per_page.to_string()),
            ("x-total".into(), total.to_string()),
            ("x-total-pages".into(), last.to_string()),
            ("x-next-page".into(), opt(next)),
            ("x-prev-page".into(), opt(prev)),
            ("link".into(), links.join(", ")),
        ];
        out
    }
}

/// `order_by` (`created_at`, default, or `updated_at`) and `sort` (`desc`, default, or `asc`)
/// over records with (created, updated, tie-breaker) keys.
pub(super) fn sort_by_params<T>(items: &mut [T], p: &Params, key: impl Fn(&T) -> (i64, i64, u64)) {
    let updated = p.str("order_by").as_deref() == Some("updated_at");
    items.sort_by_key(|t| {
        let (created, upd, tie) = key(t);
        (if updated { upd } else { created }, tie)
    });
    if p.str("sort").as_deref() != Some("asc") {
        items.reverse();
    }
}
