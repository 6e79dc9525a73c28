//! Tests of the fake GitLab, over plain HTTP/1.1 on a `TcpStream` (this crate has no HTTP
//! client), and of its pure helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::fakes::FaultKind;

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or("<absent>")
    }
}

async fn call(
    gl: &FakeGitLab,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let addr = gl.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// A call with the default token.
async fn api(gl: &FakeGitLab, method: &str, path: &str, body: Option<Value>) -> Reply {
    call(
        gl,
        method,
        path,
        &[("PRIVATE-TOKEN", "glpat-test-token")],
        body,
    )
    .await
}

async fn fake() -> FakeGitLab {
    FakeGitLab::start(FakeGitLabOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn auth_is_required_and_every_request_is_recorded() {
    let gl = fake().await;
    let r = call(&gl, "GET", "/api/v4/user", &[], None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body, json!({"message": "401 Unauthorized"}));
    let wrong = [("PRIVATE-TOKEN", "nope")];
    assert_eq!(
        call(&gl, "GET", "/api/v4/user", &wrong, None).await.status,
        401
    );
    let bearer = [("Authorization", "Bearer glpat-test-token")];
    let r = call(&gl, "GET", "/api/v4/user", &bearer, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["username"], "codemill-bot");
    assert_eq!(r.body["id"], 1);
    assert_eq!(r.header("ratelimit-limit"), "2000");
    assert_eq!(r.header("ratelimit-remaining"), "1997");
    let lines: Vec<String> = gl.requests().iter().map(|r| r.line()).collect();
    assert_eq!(lines, vec!["GET /api/v4/user"; 3]);
    gl.clear_requests();
    assert!(gl.requests().is_empty());
    let r = api(&gl, "GET", "/api/v4/nothing", None).await;
    assert_eq!(
        (r.status, r.body["message"].clone()),
        (404, json!("404 Not Found"))
    );
}

#[tokio::test]
async fn issues_are_filtered_sorted_and_paged() {
    let gl = FakeGitLab::start(FakeGitLabOptions {
        page_size: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    for n in 1..=3 {
        gl.add_issue(&format!("Bug {n}"), "crash on save", &["bug"], "alice");
    }
    gl.add_issue("Docs", "typo", &["docs"], "bob");

    let r = api(
        &gl,
        "GET",
        "/api/v4/projects/acme%2Fweb/issues?labels=bug",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let iids: Vec<u64> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["iid"].as_u64().unwrap())
        .collect();
    assert_eq!(iids, vec![3, 2], "newest first, two a page");
    assert_eq!(r.header("x-total"), "3");
    assert_eq!(r.header("x-total-pages"), "2");
    assert_eq!((r.header("x-page"), r.header("x-per-page")), ("1", "2"));
    assert_eq!(
        (r.header("x-next-page"), r.header("x-prev-page")),
        ("2", "")
    );
    let link = r.header("link");
    assert!(link.contains("page=2&per_page=2>; rel=\"next\""), "{link}");
    assert!(
        link.contains(
            "/api/v4/projects/acme%2Fweb/issues?labels=bug&page=1&per_page=2>; rel=\"first\""
        ),
        "{link}"
    );
    assert!(link.contains("rel=\"last\""), "{link}");

    let r = api(
        &gl,
        "GET",
        "/api/v4/projects/42/issues?labels=bug&page=2&sort=desc",
        None,
    )
    .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(
        (r.header("x-next-page"), r.header("x-prev-page")),
        ("", "1")
    );
    assert!(!r.header("link").contains("rel=\"next\""));

    let r = api(
        &gl,
        "GET",
        "/api/v4/projects/acme/web/issues?sort=asc&per_page=10",
        None,
    )
    .await;
    assert_eq!(r.body[0]["iid"], 1);
    // The fake's page size caps what a client asks for.
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert_eq!(r.header("x-per-page"), "2");
    let r = api(
        &gl,
        "GET",
        "/api/v4/projects/42/issues?search=TYPO&in=description",
        None,
    )
    .await;
    assert_eq!(r.body[0]["title"], "Docs");
    let r = api(
        &gl,
        "GET",
        "/api/v4/projects/42/issues?search=typo&in=title",
        None,
    )
    .await;
    assert_eq!(r.body, json!([]));

    let r = api(&gl, "GET", "/api/v4/projects/acme%2Fweb/issues/2", None).await;
    assert_eq!(
        r.body["web_url"],
        format!("{}/acme/web/-/issues/2", gl.url())
    );
    assert_eq!(r.body["references"]["full"], "acme/web#2");
    assert_eq!(r.body["author"]["username"], "alice");
    let r = api(&gl, "GET", "/api/v4/projects/42/issues/99", None).await;
    assert_eq!(
        (r.status, r.body["message"].clone()),
        (404, json!("404 Not found"))
    );
    let r = api(&gl, "GET", "/api/v4/projects/acme%2Fother/issues", None).await;
    assert_eq!(
        (r.status, r.body["message"].clone()),
        (404, json!("404 Project Not Found"))
    );
}

#[tokio::test]
async fn issues_are_written_noted_and_linked() {
    let gl = fake().await;
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/issues",
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (400, json!({"message": "title is missing"}))
    );
    let body = json!({"title": "Flaky", "description": "d", "labels": "bug, ci"});
    let r = api(&gl, "POST", "/api/v4/projects/42/issues", Some(body)).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["labels"], json!(["bug", "ci"]));
    assert_eq!(r.body["author"]["username"], "codemill-bot");
    let edit = json!({"add_labels": "triaged", "remove_labels": "ci", "state_event": "close"});
    let r = api(&gl, "PUT", "/api/v4/projects/42/issues/1", Some(edit)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["labels"], json!(["bug", "triaged"]));
    assert_eq!(r.body["state"], "closed");
    assert!(r.body["closed_at"].is_string());

    for text in ["first", "second"] {
        let r = api(
            &gl,
            "POST",
            "/api/v4/projects/42/issues/1/notes",
            Some(json!({"body": text})),
        )
        .await;
        assert_eq!(r.status, 201);
        assert_eq!(r.body["noteable_type"], "Issue");
        assert_eq!(r.body["type"], Value::Null);
    }
    let r = api(&gl, "GET", "/api/v4/projects/42/issues/1/notes", None).await;
    assert_eq!(r.body[0]["body"], "second", "newest first by default");
    let id = r.body[0]["id"].as_u64().unwrap();
    let r = api(
        &gl,
        "PUT",
        &format!("/api/v4/projects/42/issues/1/notes/{id}"),
        Some(json!({"body": "edited"})),
    )
    .await;
    assert_eq!((r.status, r.body["body"].clone()), (200, json!("edited")));
    let notes: Vec<Value> = gl
        .issue_notes(1)
        .iter()
        .map(|n| n["body"].clone())
        .collect();
    assert_eq!(notes, vec![json!("first"), json!("edited")]);
    assert_eq!(gl.issue(1)["user_notes_count"], 2);

    gl.add_issue("Other", "", &[], "bob");
    let link =
        json!({"target_project_id": "acme%2Fweb", "target_issue_iid": 2, "link_type": "blocks"});
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/issues/1/links",
        Some(link.clone()),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        (
            r.body["source_issue"]["iid"].clone(),
            r.body["target_issue"]["iid"].clone()
        ),
        (json!(1), json!(2))
    );
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/issues/1/links",
        Some(link),
    )
    .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (409, json!({"message": "Issue(s) already assigned"}))
    );
    let r = api(&gl, "GET", "/api/v4/projects/42/issues/2/links", None).await;
    assert_eq!(r.body[0]["iid"], 1);
    assert_eq!(r.body[0]["link_type"], "is_blocked_by");
    assert!(r.body[0]["issue_link_id"].is_u64());
    assert_eq!(
        (gl.linked_issues(1), gl.linked_issues(2)),
        (vec![2], vec![1])
    );
}

#[tokio::test]
async fn merge_requests_threads_and_merges() {
    let gl = fake().await;
    gl.add_issue("Crash", "", &[], "alice");
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/merge_requests",
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["message"],
        "source_branch is missing, target_branch is missing"
    );
    let mr = json!({
        "source_branch": "fix-1",
        "target_branch": "main",
        "title": "Draft: Fix crash",
        "description": "Closes #1",
    });
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/acme%2Fweb/merge_requests",
        Some(mr.clone()),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        (r.body["draft"].clone(), r.body["work_in_progress"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(r.body["sha"].as_str().unwrap().len(), 40);
    assert_eq!(
        r.body["web_url"],
        format!("{}/acme/web/-/merge_requests/1", gl.url())
    );
    let r = api(&gl, "POST", "/api/v4/projects/42/merge_requests", Some(mr)).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body["message"],
        json!(["Another open merge request already exists for this source branch: !1"])
    );
    let r = api(
        &gl,
        "PUT",
        "/api/v4/projects/42/merge_requests/1",
        Some(json!({"title": "Fix crash"})),
    )
    .await;
    assert_eq!(r.body["draft"], false);
    let r = api(
        &gl,
        "GET",
        "/api/v4/projects/42/merge_requests?state=opened&source_branch=fix-1",
        None,
    )
    .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);

    gl.push("fix-1", "abc123");
    assert_eq!(gl.mr(1)["sha"], "abc123");
    let (note, discussion) = gl.add_diff_note(1, "alice", "rename this", "src/lib.rs", 7);
    let (single, _) = gl.add_mr_note(1, "bob", "looks good");
    let path = format!("/api/v4/projects/42/merge_requests/1/discussions/{discussion}/notes");
    let r = api(&gl, "POST", &path, Some(json!({"body": "done"}))).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        (r.body["type"].clone(), r.body["author"]["username"].clone()),
        (json!("DiscussionNote"), json!("codemill-bot"))
    );
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/merge_requests/1/discussions/0000/notes",
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/merge_requests/1/discussions",
        Some(json!({"body": "general"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["individual_note"].clone()),
        (201, json!(false))
    );
    assert_eq!(r.body["notes"][0]["type"], "DiscussionNote");

    let threads = gl.discussions(1);
    assert_eq!(threads.len(), 3);
    assert_eq!(threads[0]["id"], discussion.as_str());
    assert_eq!(threads[0]["notes"][0]["id"], note);
    assert_eq!(threads[0]["notes"][0]["type"], "DiffNote");
    assert_eq!(threads[0]["notes"][0]["position"]["new_line"], 7);
    assert_eq!(threads[0]["notes"][0]["position"]["head_sha"], "abc123");
    assert_eq!(threads[0]["notes"][0]["resolvable"], true);
    assert_eq!(threads[0]["notes"][1]["body"], "done");
    assert_eq!(threads[1]["individual_note"], true);
    assert_eq!(threads[1]["notes"][0]["id"], single);
    let r = api(
        &gl,
        "GET",
        "/api/v4/projects/42/merge_requests/1/discussions?per_page=2",
        None,
    )
    .await;
    assert_eq!(
        (r.body.as_array().unwrap().len(), r.header("x-total")),
        (2, "3")
    );
    assert_eq!(gl.mr_notes(1).len(), 4);

    gl.merge(1, "alice");
    let mr = gl.mr_by_source("fix-1").unwrap();
    assert_eq!(mr["state"], "merged");
    assert_eq!(mr["merged_by"]["username"], "alice");
    assert!(mr["merge_commit_sha"].is_string() && mr["merged_at"].is_string());
    assert_eq!(gl.issue(1)["state"], "closed");
    assert!(gl.mr_by_source("nope").is_none());
}

#[tokio::test]
async fn faults_are_honoured() {
    let gl = fake().await;
    gl.inject(Fault {
        method: "GET".into(),
        path: "/api/v4/projects".into(),
        kind: FaultKind::RateLimit {
            retry_after_secs: 7,
        },
    });
    let r = api(&gl, "GET", "/api/v4/projects/42/issues", None).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (429, json!({"message": "Retry later"}))
    );
    assert_eq!(
        (r.header("retry-after"), r.header("ratelimit-remaining")),
        ("7", "0")
    );
    assert!(r.header("ratelimit-reset").parse::<i64>().unwrap() > 1_700_000_000);

    gl.inject(Fault {
        method: "POST".into(),
        path: "/api/v4/projects/42/issues".into(),
        kind: FaultKind::AfterApply(502),
    });
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/issues",
        Some(json!({"title": "a"})),
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(gl.issue(1)["title"], "a", "applied before the error");
    gl.inject(Fault {
        method: "POST".into(),
        path: "/api/v4/projects/42/issues".into(),
        kind: FaultKind::Before(503),
    });
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/issues",
        Some(json!({"title": "b"})),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(gl.issue(2).is_null(), "not applied");
    assert_eq!(gl.requests().len(), 3);
}

#[tokio::test]
async fn webhook_payloads_follow_the_state() {
    let gl = fake().await;
    let iid = gl.add_issue("Crash", "boom", &["bug"], "alice");
    gl.add_label(iid, "codemill");
    let hook: Value =
        serde_json::from_slice(&gl.issue_hook(iid, "update", &["codemill"], "bob")).unwrap();
    assert_eq!(
        (hook["object_kind"].clone(), hook["event_type"].clone()),
        (json!("issue"), json!("issue"))
    );
    assert_eq!(hook["user"]["username"], "bob");
    assert_eq!(hook["project"]["path_with_namespace"], "acme/web");
    assert_eq!(hook["object_attributes"]["action"], "update");
    assert_eq!(
        hook["object_attributes"]["url"],
        format!("{}/acme/web/-/issues/1", gl.url())
    );
    let titles = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["title"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        titles(&hook["changes"]["labels"]["previous"]),
        vec![json!("bug")]
    );
    assert_eq!(
        titles(&hook["changes"]["labels"]["current"]),
        vec![json!("bug"), json!("codemill")]
    );
    let plain: Value = serde_json::from_slice(&gl.issue_hook(iid, "open", &[], "bob")).unwrap();
    assert!(plain["changes"].get("labels").is_none());

    let api_mr = json!({"source_branch": "b", "target_branch": "main", "title": "T"});
    api(
        &gl,
        "POST",
        "/api/v4/projects/42/merge_requests",
        Some(api_mr),
    )
    .await;
    let (note, discussion) = gl.add_diff_note(1, "carol", "nit", "a.rs", 3);
    let hook: Value = serde_json::from_slice(&gl.note_hook_on_mr(1, note)).unwrap();
    assert_eq!(hook["user"]["username"], "carol");
    assert_eq!(
        hook["object_attributes"]["discussion_id"],
        discussion.as_str()
    );
    assert_eq!(hook["object_attributes"]["type"], "DiffNote");
    assert_eq!(hook["object_attributes"]["position"]["new_path"], "a.rs");
    assert_eq!(hook["merge_request"]["last_commit"]["id"], gl.mr(1)["sha"]);
    let r = api(
        &gl,
        "POST",
        "/api/v4/projects/42/issues/1/notes",
        Some(json!({"body": "hi"})),
    )
    .await;
    let hook: Value =
        serde_json::from_slice(&gl.note_hook_on_issue(1, r.body["id"].as_u64().unwrap())).unwrap();
    assert_eq!(
        (
            hook["issue"]["iid"].clone(),
            hook["object_attributes"]["noteable_type"].clone()
        ),
        (json!(1), json!("Issue"))
    );
    assert!(hook["object_attributes"].get("position").is_none());

    gl.merge(1, "dave");
    let hook: Value = serde_json::from_slice(&gl.merge_request_hook(1, "merge", "dave")).unwrap();
    assert_eq!(hook["object_attributes"]["state"], "merged");
    assert_eq!(hook["object_attributes"]["action"], "merge");
    assert!(hook["object_attributes"]["merge_commit_sha"].is_string());

    let hook: Value =
        serde_json::from_slice(&gl.pipeline_hook(1, 77, "failed", &["lint", "unit"])).unwrap();
    assert_eq!(hook["object_attributes"]["ref"], "b");
    assert_eq!(hook["object_attributes"]["source"], "merge_request_event");
    assert_eq!(hook["merge_request"]["iid"], 1);
    let builds: Vec<(Value, Value)> = hook["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].clone(), b["status"].clone()))
        .collect();
    assert_eq!(
        builds,
        vec![
            (json!("lint"), json!("failed")),
            (json!("unit"), json!("failed"))
        ]
    );
    let hook: Value = serde_json::from_slice(&gl.pipeline_hook(1, 78, "failed", &[])).unwrap();
    assert_eq!(
        (
            hook["builds"][0]["name"].clone(),
            hook["builds"][0]["status"].clone()
        ),
        (json!("test"), json!("failed"))
    );
}

#[test]
fn webhook_headers_carry_a_fresh_event_uuid() {
    let get = |h: &[(String, String)], k: &str| {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let a = webhook_headers("Note Hook", "s3cret", b"{}");
    let b = webhook_headers("Note Hook", "s3cret", b"{}");
    assert_eq!(get(&a, "X-Gitlab-Event"), "Note Hook");
    assert_eq!(get(&a, "X-Gitlab-Token"), "s3cret");
    assert_eq!(get(&a, "Idempotency-Key"), get(&a, "X-Gitlab-Event-UUID"));
    assert_ne!(
        get(&a, "X-Gitlab-Event-UUID"),
        get(&b, "X-Gitlab-Event-UUID")
    );
    assert_eq!(
        get(&a, "X-Gitlab-Webhook-UUID"),
        get(&b, "X-Gitlab-Webhook-UUID")
    );
    let uuid = get(&a, "X-Gitlab-Event-UUID");
    let parts: Vec<usize> = uuid.split('-').map(str::len).collect();
    assert_eq!(parts, vec![8, 4, 4, 4, 12]);
}

#[test]
fn drafts_and_closing_references_follow_gitlab() {
    for t in ["Draft: x", "[Draft] x", "(draft) x", "draft - x", "Draft"] {
        assert!(is_draft(t), "{t}");
    }
    for t in ["Drafting x", "x Draft:", "WIP: x"] {
        assert!(!is_draft(t), "{t}");
    }
    assert_eq!(
        closing_references(
            "Closes #3, #4 and acme/web#5. Fixes: #6; see #7",
            "acme/web"
        ),
        vec![3, 4, 5, 6]
    );
    assert_eq!(
        closing_references("closes #2\nrelates to #9", "acme/web"),
        vec![2]
    );
}
