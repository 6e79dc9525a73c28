//! The fake's HTTP side: one handler that records the request and honours injected faults,
//! GitHub's error shapes, and the route table with its authentication check.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::render::{label_json, user_json};
use super::{DOCS, FakeState, Shared, lock, now, percent_decode};
use crate::fakes::{FaultKind, fault_response};

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
    pub(super) fn empty(status: u16) -> Out {
        Out::json(status, Value::Null)
    }
}

pub(super) fn err(status: u16, message: &str) -> Out {
    Out::json(
        status,
        json!({"message": message, "documentation_url": DOCS, "status": status.to_string()}),
    )
}

pub(super) fn not_found() -> Out {
    err(404, "Not Found")
}

pub(super) fn validation(errors: Value) -> Out {
    Out::json(
        422,
        json!({"message": "Validation Failed", "errors": errors, "documentation_url": DOCS, "status": "422"}),
    )
}

pub(super) fn missing_field(resource: &str, field: &str) -> Out {
    validation(json!([{"resource": resource, "field": field, "code": "missing_field"}]))
}

pub(super) async fn handle(
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
        return crate::fakes::error_status(status);
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
        if seg.as_slice() == ["graphql"] && *method == Method::POST {
            return self.graphql(&json);
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
            (Method::PUT, ["pulls", n, "merge"]) => self.put_merge(num(n), &json),
            (Method::GET, ["branches", name]) => self.get_branch(&percent_decode(name)),
            (Method::GET, ["commits", sha, "check-runs"]) => self.get_check_runs(sha),
            (Method::GET, ["commits", sha, "status"]) => self.get_combined_status(sha),
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
}
