//! The GitHub tracker and forge against the fake GitHub: every request asserted field by field,
//! pagination, idempotent writes after faults, rate limits, App authentication, and webhook
//! verification and parsing on payloads shaped like GitHub's documented examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use codemill_core::config::vendors::{GithubApp, GithubSettings};
use codemill_core::pipeline::{Feedback, FeedbackKind, TicketStatus};
use codemill_testkit::fakes::github::{FakeGitHub, FakeGitHubOptions, sign, webhook_headers};
use codemill_testkit::fakes::{Fault, FaultKind, RecordedRequest};
use codemill_trackers::github::{GitHub, parse_webhook, verify_webhook};
use codemill_trackers::webhook::{Hint, VerifyError};
use codemill_trackers::{Error, Forge, PrRequest, ReplyTo, RetryPolicy, Tracker};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_test_token_123";
const PRIVATE_KEY: &str = include_str!("fixtures/github/test-app-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/github/test-app-key.pub.pem");

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_wait: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

fn settings(api_url: &str) -> GithubSettings {
    GithubSettings {
        repo: "o/r".into(),
        api_url: api_url.into(),
        token_env: Some("GH_TOKEN".into()),
        app: None,
        trigger_label: "codemill".into(),
        trigger_assignee: None,
        bot_login: Some("codemill-bot".into()),
        draft: true,
        webhook: None,
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "GH_TOKEN" => Some(TOKEN.into()),
        "GH_APP_KEY" => Some(PRIVATE_KEY.into()),
        _ => None,
    }
}

async fn start(page_size: usize) -> (FakeGitHub, GitHub) {
    let fake = FakeGitHub::start(FakeGitHubOptions {
        token: TOKEN.into(),
        app: None,
        page_size,
        owner: "o".into(),
        repo: "r".into(),
    })
    .await
    .unwrap();
    let gh = GitHub::new(&settings(&fake.url()), &env, policy()).unwrap();
    (fake, gh)
}

/// Decoded query pairs, in order.
fn query(r: &RecordedRequest) -> Vec<(String, String)> {
    if r.query.is_empty() {
        return Vec::new();
    }
    r.query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// GitHub's documented headers and the credential on a request.
fn assert_github_headers(r: &RecordedRequest, bearer: &str) {
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {bearer}").as_str()),
        "{}",
        r.line()
    );
    assert_eq!(
        r.header("accept"),
        Some("application/vnd.github+json"),
        "{}",
        r.line()
    );
    assert_eq!(
        r.header("x-github-api-version"),
        Some("2022-11-28"),
        "{}",
        r.line()
    );
    assert!(
        r.header("user-agent")
            .unwrap_or_default()
            .starts_with("codemill/"),
        "{}",
        r.line()
    );
}

fn lines(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter().map(|r| r.line()).collect()
}

// ---- Tracker ----------------------------------------------------------------------------------

#[tokio::test]
async fn triggered_follows_link_pages_dedupes_and_skips_pull_requests() {
    let (fake, _) = start(2).await;
    let mut s = settings(&fake.url());
    s.trigger_assignee = Some("mill-runner".into());
    let gh = GitHub::new(&s, &env, policy()).unwrap();
    let a = fake.add_issue("a", "", &["codemill"], "alice");
    let b = fake.add_issue("b", "", &["codemill", "bug"], "alice");
    let _unrelated = fake.add_issue("c", "", &["bug"], "alice");
    let d = fake.add_issue("d", "", &[], "alice");
    fake.assign(d, "mill-runner");
    fake.assign(b, "mill-runner");
    let e = fake.add_issue("e", "", &["codemill"], "alice");
    let closed = fake.add_issue("f", "", &["codemill"], "alice");
    let pr = gh
        .open_pr(&PrRequest {
            head: "feature",
            base: "main",
            title: "t",
            body: "",
            draft: false,
        })
        .await
        .unwrap();
    fake.add_label(pr.number, "codemill");
    gh.transition(&closed.to_string(), TicketStatus::Done)
        .await
        .unwrap();
    fake.clear_requests();

    let keys = gh.triggered().await.unwrap();
    assert_eq!(
        keys,
        vec![a.to_string(), b.to_string(), d.to_string(), e.to_string()]
    );

    let reqs = fake.requests();
    // Labelled: a, b, e and the PR = 4 items over 2 pages; assigned: b, d = 1 page.
    assert_eq!(
        lines(&reqs),
        vec![
            "GET /repos/o/r/issues",
            "GET /repos/o/r/issues",
            "GET /repos/o/r/issues"
        ]
    );
    for r in &reqs {
        assert_github_headers(r, TOKEN);
        assert_eq!(r.body, Value::Null);
    }
    assert_eq!(
        query(&reqs[0]),
        q(&[
            ("state", "open"),
            ("labels", "codemill"),
            ("per_page", "100")
        ])
    );
    // The second page is the fake's Link rel="next", query kept and page added.
    assert_eq!(
        query(&reqs[1]),
        q(&[
            ("labels", "codemill"),
            ("per_page", "100"),
            ("state", "open"),
            ("page", "2")
        ])
    );
    assert_eq!(
        query(&reqs[2]),
        q(&[
            ("state", "open"),
            ("assignee", "mill-runner"),
            ("per_page", "100")
        ])
    );
}

#[tokio::test]
async fn issue_reads_fields_and_every_comment_page() {
    let (fake, gh) = start(2).await;
    let n = fake.add_issue(
        "Crash on empty input",
        "Steps:\n\n1. run `x`",
        &["codemill", "bug"],
        "alice",
    );
    fake.assign(n, "bob");
    let c1 = fake.add_comment(n, "alice", "first");
    fake.add_comment(n, "bob", "second");
    fake.add_comment(n, "codemill-bot", "status without marker");
    fake.add_comment(n, "carol", "quoting <!-- codemill:status -->");
    let c5 = fake.add_comment(n, "dave", "fifth");
    fake.clear_requests();

    let issue = gh.issue(&n.to_string()).await.unwrap();
    assert_eq!(issue.key, n.to_string());
    assert_eq!(issue.number, n);
    assert_eq!(issue.url, format!("https://github.com/o/r/issues/{n}"));
    assert_eq!(issue.title, "Crash on empty input");
    assert_eq!(issue.body, "Steps:\n\n1. run `x`");
    assert_eq!(issue.status, "open");
    assert_eq!(issue.labels, vec!["codemill", "bug"]);
    assert_eq!(issue.assignees, vec!["bob"]);
    assert_eq!(issue.acceptance_criteria, None);
    let comments: Vec<(&str, &str, bool)> = issue
        .comments
        .iter()
        .map(|c| (c.author.as_str(), c.body.as_str(), c.by_codemill))
        .collect();
    assert_eq!(
        comments,
        vec![
            ("alice", "first", false),
            ("bob", "second", false),
            ("codemill-bot", "status without marker", true),
            ("carol", "quoting <!-- codemill:status -->", true),
            ("dave", "fifth", false),
        ]
    );
    assert_eq!(issue.comments[0].id, c1.to_string());
    assert_eq!(issue.comments[4].id, c5.to_string());

    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET /repos/o/r/issues/{n}"),
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("GET /repos/o/r/issues/{n}/comments"),
        ]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(query(&reqs[0]), q(&[]));
    assert_eq!(query(&reqs[1]), q(&[("per_page", "100")]));
    assert_eq!(query(&reqs[2]), q(&[("per_page", "100"), ("page", "2")]));
    assert_eq!(query(&reqs[3]), q(&[("per_page", "100"), ("page", "3")]));

    let missing = gh.issue("999").await.unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing}");
    let not_a_number = gh.issue("PROJ-1").await.unwrap_err();
    assert!(matches!(not_a_number, Error::NotFound(_)), "{not_a_number}");
}

#[tokio::test]
async fn upsert_comment_creates_then_edits_in_place_then_leaves_identical_alone() {
    let (fake, gh) = start(2).await;
    let n = fake.add_issue("t", "b", &[], "alice");
    for i in 0..3 {
        fake.add_comment(n, "alice", &format!("human {i}"));
    }
    fake.clear_requests();
    let key = n.to_string();

    gh.upsert_comment(&key, "codemill:status", "**Working** on it")
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("POST /repos/o/r/issues/{n}/comments"),
        ]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(query(&reqs[0]), q(&[("per_page", "100")]));
    assert_eq!(
        reqs[2].body,
        json!({"body": "**Working** on it\n\n<!-- codemill:status -->"})
    );
    assert_eq!(reqs[2].header("content-type"), Some("application/json"));
    let created = fake.comments(n).last().cloned().unwrap();
    let id = created["id"].as_u64().unwrap();

    fake.clear_requests();
    gh.upsert_comment(&key, "codemill:status", "**Done**")
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("PATCH /repos/o/r/issues/comments/{id}"),
        ]
    );
    assert_github_headers(&reqs[2], TOKEN);
    assert_eq!(
        reqs[2].body,
        json!({"body": "**Done**\n\n<!-- codemill:status -->"})
    );
    let comments = fake.comments(n);
    assert_eq!(comments.len(), 4, "edited in place, not added");
    assert_eq!(comments[3]["id"].as_u64(), Some(id));
    assert_eq!(comments[3]["body"], "**Done**\n\n<!-- codemill:status -->");

    fake.clear_requests();
    gh.upsert_comment(&key, "codemill:status", "**Done**")
        .await
        .unwrap();
    assert!(
        fake.requests().iter().all(|r| r.method == "GET"),
        "identical body: no write"
    );

    // A different marker is a different comment.
    gh.upsert_comment(&key, "codemill:plan", "plan")
        .await
        .unwrap();
    assert_eq!(fake.comments(n).len(), 5);
}

#[tokio::test]
async fn upsert_comment_after_a_502_that_applied_posts_once() {
    let (fake, gh) = start(100).await;
    let n = fake.add_issue("t", "b", &[], "alice");
    fake.inject(Fault {
        method: "POST".into(),
        path: format!("/repos/o/r/issues/{n}/comments"),
        kind: FaultKind::AfterApply(502),
    });
    gh.upsert_comment(&n.to_string(), "codemill:status", "hi")
        .await
        .unwrap();
    assert_eq!(fake.comments(n).len(), 1);
    assert_eq!(
        lines(&fake.requests()),
        vec![
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("POST /repos/o/r/issues/{n}/comments"),
            format!("GET /repos/o/r/issues/{n}/comments"),
        ]
    );
}

#[tokio::test]
async fn set_labels_adds_missing_and_deletes_present_url_encoded() {
    let (fake, gh) = start(100).await;
    let n = fake.add_issue("t", "b", &["codemill", "codemill:running"], "alice");
    fake.clear_requests();
    let key = n.to_string();

    gh.set_labels(
        &key,
        &["codemill:review", "codemill"],
        &["codemill:running", "absent"],
    )
    .await
    .unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET /repos/o/r/issues/{n}"),
            format!("POST /repos/o/r/issues/{n}/labels"),
            format!("DELETE /repos/o/r/issues/{n}/labels/codemill%3Arunning"),
        ]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(reqs[1].body, json!({"labels": ["codemill:review"]}));
    assert_eq!(reqs[2].body, Value::Null);
    assert_eq!(fake.labels(n), vec!["codemill", "codemill:review"]);

    // Nothing to add, nothing present to remove: only the read.
    fake.clear_requests();
    gh.set_labels(&key, &["codemill"], &["codemill:running"])
        .await
        .unwrap();
    assert_eq!(
        lines(&fake.requests()),
        vec![format!("GET /repos/o/r/issues/{n}")]
    );

    // Removed by someone else between the read and the DELETE: the 404 is fine.
    fake.inject_response(
        "DELETE",
        &format!("/repos/o/r/issues/{n}/labels/"),
        404,
        &[],
        json!({"message": "Label does not exist"}),
    );
    gh.set_labels(&key, &[], &["codemill:review"])
        .await
        .unwrap();
}

#[tokio::test]
async fn transition_closes_on_done_only_and_only_once() {
    let (fake, gh) = start(100).await;
    let n = fake.add_issue("t", "b", &[], "alice");
    fake.clear_requests();
    let key = n.to_string();

    for status in TicketStatus::ALL {
        if status != TicketStatus::Done {
            gh.transition(&key, status).await.unwrap();
        }
    }
    assert!(fake.requests().is_empty(), "only Done maps to a request");

    gh.transition(&key, TicketStatus::Done).await.unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET /repos/o/r/issues/{n}"),
            format!("PATCH /repos/o/r/issues/{n}"),
        ]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(
        reqs[1].body,
        json!({"state": "closed", "state_reason": "completed"})
    );
    let issue = fake.issue(n).unwrap();
    assert_eq!(issue["state"], "closed");
    assert_eq!(issue["state_reason"], "completed");

    fake.clear_requests();
    gh.transition(&key, TicketStatus::Done).await.unwrap();
    assert_eq!(
        lines(&fake.requests()),
        vec![format!("GET /repos/o/r/issues/{n}")]
    );
}

#[tokio::test]
async fn create_linked_finds_by_marker_across_pages_or_creates_once() {
    let (fake, gh) = start(2).await;
    let parent = fake.add_issue("parent", "", &["codemill"], "alice");
    for i in 0..3 {
        fake.add_issue(
            &format!("old {i}"),
            &format!("x\n\n<!-- codemill:finding:old{i} -->"),
            &["codemill:backlog"],
            "codemill-bot",
        );
    }
    fake.clear_requests();
    let key = parent.to_string();

    let created = gh
        .create_linked(
            &key,
            "codemill:finding:abc",
            "Handle overflow",
            "Details **here**",
        )
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            "GET /repos/o/r/issues",
            "GET /repos/o/r/issues",
            "POST /repos/o/r/issues"
        ]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(
        query(&reqs[0]),
        q(&[
            ("state", "all"),
            ("labels", "codemill:backlog"),
            ("per_page", "100")
        ])
    );
    assert_eq!(
        reqs[2].body,
        json!({
            "title": "Handle overflow",
            "body": format!("Details **here**\n\nFound while working on #{parent}.\n\n<!-- codemill:finding:abc -->"),
            "labels": ["codemill:backlog"],
        })
    );
    let number: u64 = created.parse().unwrap();
    let issue = fake.issue(number).unwrap();
    assert_eq!(issue["title"], "Handle overflow");
    assert_eq!(issue["labels"][0]["name"], "codemill:backlog");

    // Again (even after the issue was closed): found, not created.
    gh.transition(&created, TicketStatus::Done).await.unwrap();
    fake.clear_requests();
    let again = gh
        .create_linked(
            &key,
            "codemill:finding:abc",
            "Handle overflow",
            "Details **here**",
        )
        .await
        .unwrap();
    assert_eq!(again, created);
    assert!(fake.requests().iter().all(|r| r.method == "GET"));

    // A 502 after the create was applied: the retried operation finds it.
    fake.inject(Fault {
        method: "POST".into(),
        path: "/repos/o/r/issues".into(),
        kind: FaultKind::AfterApply(502),
    });
    let third = gh
        .create_linked(&key, "codemill:finding:def", "Other", "more")
        .await
        .unwrap();
    let backlog: Vec<Value> = (1..=20)
        .filter_map(|n| fake.issue(n))
        .filter(|i| {
            i["body"]
                .as_str()
                .unwrap_or_default()
                .contains("<!-- codemill:finding:def -->")
        })
        .collect();
    assert_eq!(backlog.len(), 1, "exactly one issue for the marker");
    assert_eq!(backlog[0]["number"].as_u64().unwrap().to_string(), third);
}

// ---- Forge ------------------------------------------------------------------------------------

fn pr_request<'a>(head: &'a str) -> PrRequest<'a> {
    PrRequest {
        head,
        base: "main",
        title: "codemill: crash on empty input",
        body: "Closes #1\n\nWhat changed.",
        draft: true,
    }
}

#[tokio::test]
async fn open_pr_creates_a_draft_then_returns_the_open_one() {
    let (fake, gh) = start(100).await;
    fake.add_issue("issue", "", &[], "alice");

    let pr = gh.open_pr(&pr_request("codemill/r-1")).await.unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec!["GET /repos/o/r/pulls", "POST /repos/o/r/pulls"]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(
        query(&reqs[0]),
        q(&[("head", "o:codemill/r-1"), ("state", "open")])
    );
    assert_eq!(
        reqs[1].body,
        json!({
            "title": "codemill: crash on empty input",
            "head": "codemill/r-1",
            "base": "main",
            "body": "Closes #1\n\nWhat changed.",
            "draft": true,
        })
    );
    assert_eq!(pr.number, 2, "PRs share the issue number space");
    assert_eq!(pr.url, "https://github.com/o/r/pull/2");
    assert_eq!(pr.head, "codemill/r-1");
    assert_eq!(pr.state, "open");
    assert!(pr.draft);
    let stored = fake.pr_by_head("codemill/r-1").unwrap();
    assert_eq!(pr.head_sha, stored["head"]["sha"].as_str().unwrap());
    assert_eq!(stored["base"]["ref"], "main");

    fake.clear_requests();
    let again = gh.open_pr(&pr_request("codemill/r-1")).await.unwrap();
    assert_eq!(again, pr);
    assert_eq!(lines(&fake.requests()), vec!["GET /repos/o/r/pulls"]);
    assert_eq!(fake.prs().len(), 1);
}

#[tokio::test]
async fn open_pr_after_a_502_on_an_applied_create_ends_with_one_pr() {
    let (fake, gh) = start(100).await;
    fake.inject(Fault {
        method: "POST".into(),
        path: "/repos/o/r/pulls".into(),
        kind: FaultKind::AfterApply(502),
    });
    let pr = gh.open_pr(&pr_request("codemill/r-7")).await.unwrap();
    assert_eq!(fake.prs().len(), 1, "exactly one PR");
    assert_eq!(
        lines(&fake.requests()),
        vec![
            "GET /repos/o/r/pulls",
            "POST /repos/o/r/pulls",
            "GET /repos/o/r/pulls"
        ],
        "look up, create (502 after applying), look up again and find it"
    );
    assert_eq!(pr.number, fake.prs()[0]["number"].as_u64().unwrap());
    assert_eq!(pr.head, "codemill/r-7");

    // Running the whole effect again changes nothing.
    fake.clear_requests();
    assert_eq!(gh.open_pr(&pr_request("codemill/r-7")).await.unwrap(), pr);
    assert_eq!(lines(&fake.requests()), vec!["GET /repos/o/r/pulls"]);
    assert_eq!(fake.prs().len(), 1);
}

#[tokio::test]
async fn open_pr_on_422_already_exists_looks_up_again() {
    let (fake, gh) = start(100).await;
    let first = gh.open_pr(&pr_request("codemill/r-3")).await.unwrap();
    // A stale list (the race GitHub's 422 exists for): the look-up sees nothing.
    fake.inject_response("GET", "/repos/o/r/pulls", 200, &[], json!([]));
    fake.clear_requests();

    let second = gh.open_pr(&pr_request("codemill/r-3")).await.unwrap();
    assert_eq!(second, first);
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            "GET /repos/o/r/pulls",
            "POST /repos/o/r/pulls",
            "GET /repos/o/r/pulls"
        ]
    );
    assert_eq!(fake.prs().len(), 1);
}

#[tokio::test]
async fn fake_validates_pull_requests_like_github() {
    let (fake, gh) = start(100).await;
    gh.open_pr(&pr_request("b1")).await.unwrap();
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(format!("{}/repos/o/r/pulls", fake.url()))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let dup = post(json!({"title": "t", "head": "o:b1", "base": "main"}))
        .await
        .unwrap();
    assert_eq!(dup.status(), 422);
    assert_eq!(
        dup.json::<Value>().await.unwrap()["errors"][0],
        json!({"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for o:b1."})
    );
    let missing = post(json!({"head": "b2"})).await.unwrap();
    assert_eq!(missing.status(), 422);
    let body = missing.json::<Value>().await.unwrap();
    assert_eq!(body["message"], "Validation Failed");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["title", "base"]);
    let unauthenticated = client
        .get(format!("{}/repos/o/r/pulls", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        unauthenticated.json::<Value>().await.unwrap()["message"],
        "Bad credentials"
    );
}

#[tokio::test]
async fn pr_reads_open_merged_and_closed() {
    let (fake, gh) = start(100).await;
    let a = gh.open_pr(&pr_request("a")).await.unwrap();
    let b = gh.open_pr(&pr_request("b")).await.unwrap();
    fake.clear_requests();

    let read = gh.pr(a.number).await.unwrap();
    assert_eq!(read, a);
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![format!("GET /repos/o/r/pulls/{}", a.number)]
    );
    assert_github_headers(&reqs[0], TOKEN);

    fake.push("a", "1111111111111111111111111111111111111111");
    assert!(fake.merge(a.number));
    assert!(fake.close(b.number));
    let merged = gh.pr(a.number).await.unwrap();
    assert_eq!(merged.state, "merged");
    assert_eq!(merged.head_sha, "1111111111111111111111111111111111111111");
    assert!(!merged.draft);
    assert_eq!(gh.pr(b.number).await.unwrap().state, "closed");
    assert!(matches!(gh.pr(999).await.unwrap_err(), Error::NotFound(_)));
}

#[tokio::test]
async fn reply_to_a_review_comment_once_per_marker() {
    let (fake, gh) = start(2).await;
    let pr = gh.open_pr(&pr_request("codemill/r-5")).await.unwrap();
    fake.add_review_comment(pr.number, "reviewer", "nit", "src/a.rs", 3);
    let top = fake.add_review_comment(pr.number, "reviewer", "Handle None", "src/main.rs", 42);
    fake.add_review_comment(pr.number, "reviewer", "and here", "src/b.rs", 7);
    fake.clear_requests();

    let id = top.to_string();
    gh.reply(
        pr.number,
        ReplyTo::ReviewComment(&id),
        "codemill:reply:review-comment:1",
        "Fixed in abc123.",
    )
    .await
    .unwrap();
    let n = pr.number;
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET /repos/o/r/pulls/{n}/comments"),
            format!("GET /repos/o/r/pulls/{n}/comments"),
            format!("POST /repos/o/r/pulls/{n}/comments/{top}/replies"),
        ]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(query(&reqs[0]), q(&[("per_page", "100")]));
    assert_eq!(
        reqs[2].body,
        json!({"body": "Fixed in abc123.\n\n<!-- codemill:reply:review-comment:1 -->"})
    );
    let replies = fake.review_comment_replies(n);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["in_reply_to_id"].as_u64(), Some(top));
    assert_eq!(replies[0]["path"], "src/main.rs");
    assert_eq!(replies[0]["user"]["login"], "codemill-bot");

    fake.clear_requests();
    gh.reply(
        n,
        ReplyTo::ReviewComment(&id),
        "codemill:reply:review-comment:1",
        "Fixed in abc123.",
    )
    .await
    .unwrap();
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(fake.review_comment_replies(n).len(), 1);

    // Replies go to a thread's first comment: replying to a reply is refused, as documented.
    let reply_id = replies[0]["id"].as_u64().unwrap().to_string();
    let err = gh
        .reply(n, ReplyTo::ReviewComment(&reply_id), "codemill:x", "y")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { status: 422, .. }), "{err}");
}

#[tokio::test]
async fn reply_on_the_conversation_once_per_marker() {
    let (fake, gh) = start(100).await;
    let pr = gh.open_pr(&pr_request("codemill/r-6")).await.unwrap();
    let n = pr.number;
    fake.add_comment(n, "reviewer", "Please also update the docs");
    fake.clear_requests();

    gh.reply(n, ReplyTo::Conversation, "codemill:reply:c1", "Updated.")
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET /repos/o/r/issues/{n}/comments"),
            format!("POST /repos/o/r/issues/{n}/comments"),
        ]
    );
    reqs.iter().for_each(|r| assert_github_headers(r, TOKEN));
    assert_eq!(
        reqs[1].body,
        json!({"body": "Updated.\n\n<!-- codemill:reply:c1 -->"})
    );
    gh.reply(n, ReplyTo::Conversation, "codemill:reply:c1", "Updated.")
        .await
        .unwrap();
    assert_eq!(fake.comments(n).len(), 2);
}

// ---- rate limits --------------------------------------------------------------------------------

/// Acceptance criterion: after a 429 with `Retry-After: 3`, the next request of the client (any
/// clone) leaves no sooner than 3 s later.
#[tokio::test]
async fn rate_limit_429_retry_after_3s_holds_every_request_for_3s() {
    let (fake, gh) = start(100).await;
    let n = fake.add_issue("t", "b", &[], "alice");
    let other = fake.add_issue("u", "b", &[], "alice");
    fake.clear_requests();
    fake.inject(Fault {
        method: "GET".into(),
        path: format!("/repos/o/r/issues/{n}"),
        kind: FaultKind::RateLimit {
            retry_after_secs: 3,
        },
    });

    let clone = gh.clone();
    let first = tokio::spawn(async move { clone.issue(&n.to_string()).await });
    // A second caller sharing the client starts while the first is held back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = gh.issue(&other.to_string()).await.unwrap();
    assert_eq!(second.title, "u");
    assert_eq!(first.await.unwrap().unwrap().title, "t");

    let reqs = fake.requests();
    let limited = &reqs[0];
    assert_eq!(limited.line(), format!("GET /repos/o/r/issues/{n}"));
    for r in &reqs[1..] {
        let gap = r.at.duration_since(limited.at);
        assert!(
            gap >= Duration::from_secs(3),
            "{} arrived {gap:?} after the 429",
            r.line()
        );
    }
    assert_eq!(
        reqs.iter()
            .filter(|r| r.line() == format!("GET /repos/o/r/issues/{n}"))
            .count(),
        2,
        "the limited request was retried once"
    );
}

#[tokio::test]
async fn primary_rate_limit_403_with_remaining_0_waits_for_the_reset() {
    let (fake, gh) = start(100).await;
    let n = fake.add_issue("t", "b", &[], "alice");
    fake.clear_requests();
    fake.inject_primary_rate_limit("GET", &format!("/repos/o/r/issues/{n}"), 2);

    let issue = gh.issue(&n.to_string()).await.unwrap();
    assert_eq!(issue.title, "t");
    let reqs = fake.requests();
    assert_eq!(reqs[0].line(), reqs[1].line());
    // The reset is whole epoch seconds two seconds ahead: at least one full second is waited.
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");
}

#[tokio::test]
async fn bad_credentials_are_an_error_that_does_not_show_the_token() {
    let fake = FakeGitHub::start(FakeGitHubOptions {
        token: "ghp_the_right_one".into(),
        ..FakeGitHubOptions::default()
    })
    .await
    .unwrap();
    fake.add_issue("t", "b", &[], "alice");
    let gh = GitHub::new(&settings(&fake.url()), &env, policy()).unwrap();
    let err = gh.issue("1").await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("github") && text.contains("/repos/o/r/issues/1"),
        "{text}"
    );
    assert!(text.contains("Bad credentials"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!format!("{gh:?}").contains(TOKEN));
    assert!(!err.is_transient());
}

// ---- configuration -----------------------------------------------------------------------------

#[test]
fn new_refuses_unusable_settings_without_echoing_secrets() {
    let base = settings("http://127.0.0.1:1");
    let no_env = |_: &str| None;
    let err = GitHub::new(&base, &no_env, policy()).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("GH_TOKEN") && m.contains("github.token_env")),
        "{err}"
    );

    let mut neither = base.clone();
    neither.token_env = None;
    assert!(matches!(
        GitHub::new(&neither, &env, policy()),
        Err(Error::Config(_))
    ));

    let mut both = base.clone();
    both.app = Some(GithubApp {
        app_id: 1,
        installation_id: 2,
        private_key_env: "GH_APP_KEY".into(),
    });
    assert!(matches!(
        GitHub::new(&both, &env, policy()),
        Err(Error::Config(_))
    ));

    let mut bad_repo = base.clone();
    bad_repo.repo = "just-a-name".into();
    assert!(matches!(
        GitHub::new(&bad_repo, &env, policy()),
        Err(Error::Config(_))
    ));

    let mut bad_key = base.clone();
    bad_key.token_env = None;
    bad_key.app = both.app.clone();
    let garbage = |name: &str| {
        (name == "GH_APP_KEY").then(|| {
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n-----END RSA PRIVATE KEY-----"
                .to_string()
        })
    };
    let err = GitHub::new(&bad_key, &garbage, policy()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{text}");
    assert!(
        text.contains("GH_APP_KEY") && !text.contains("c2VjcmV0"),
        "{text}"
    );

    let gh = GitHub::new(&base, &env, policy()).unwrap();
    assert_eq!(Tracker::vendor(&gh), "github");
    assert_eq!(Forge::vendor(&gh), "github");
    let debug = format!("{gh:?}");
    assert!(debug.contains("o/r") && !debug.contains(TOKEN), "{debug}");
}

// ---- GitHub App authentication ---------------------------------------------------------------------

async fn start_app() -> (FakeGitHub, GitHub) {
    let fake = FakeGitHub::start(FakeGitHubOptions {
        token: String::new(),
        app: Some((4242, 99, PUBLIC_KEY.into())),
        page_size: 100,
        owner: "o".into(),
        repo: "r".into(),
    })
    .await
    .unwrap();
    let mut s = settings(&fake.url());
    s.token_env = None;
    s.app = Some(GithubApp {
        app_id: 4242,
        installation_id: 99,
        private_key_env: "GH_APP_KEY".into(),
    });
    let gh = GitHub::new(&s, &env, policy()).unwrap();
    (fake, gh)
}

#[tokio::test]
async fn app_auth_signs_a_jwt_the_fake_verifies_and_reuses_the_installation_token() {
    let (fake, gh) = start_app().await;
    let n = fake.add_issue("t", "b", &["codemill"], "alice");

    gh.issue(&n.to_string()).await.unwrap();
    gh.clone().triggered().await.unwrap();
    gh.upsert_comment(&n.to_string(), "codemill:status", "hi")
        .await
        .unwrap();

    let reqs = fake.requests();
    let token_reqs: Vec<&RecordedRequest> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/app/"))
        .collect();
    assert_eq!(
        token_reqs.len(),
        1,
        "one token for several calls (and clones)"
    );
    let t = token_reqs[0];
    assert_eq!(t.line(), "POST /app/installations/99/access_tokens");
    assert_eq!(t.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(t.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(reqs[0].line(), t.line(), "the token comes first");

    // The JWT's claims, verified with the public key.
    let jwt = t
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.set_issuer(&["4242"]);
    let data = jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let iat = data.claims["iat"].as_i64().unwrap();
    let exp = data.claims["exp"].as_i64().unwrap();
    assert!((now - 60 - iat).abs() <= 5, "iat {iat} vs now {now}");
    assert!((now + 540 - exp).abs() <= 5, "exp {exp} vs now {now}");
    assert_eq!(data.claims["iss"], "4242");

    // Every API request carries the installation token the fake issued.
    let issued = reqs
        .iter()
        .find(|r| !r.path.starts_with("/app/"))
        .and_then(|r| r.header("authorization"))
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    assert!(issued.starts_with("ghs_"), "{issued}");
    for r in reqs.iter().filter(|r| !r.path.starts_with("/app/")) {
        assert_github_headers(r, &issued);
    }
    assert_eq!(fake.comments(n)[0]["user"]["login"], "codemill-bot");
}

#[tokio::test]
async fn app_auth_refreshes_a_token_within_60s_of_expiry_and_after_a_revocation() {
    let (fake, gh) = start_app().await;
    let n = fake.add_issue("t", "b", &[], "alice").to_string();

    // Tokens that live 30 s are never worth caching (60 s margin): each request gets a new one.
    fake.set_installation_token_ttl(30);
    gh.pr(1).await.unwrap_err();
    gh.pr(1).await.unwrap_err();
    let count = |fake: &FakeGitHub| {
        fake.requests()
            .iter()
            .filter(|r| r.path.starts_with("/app/"))
            .count()
    };
    assert_eq!(count(&fake), 2);

    // A token GitHub revokes early: the 401 drops it and one fresh token is fetched.
    fake.set_installation_token_ttl(3600);
    gh.issue(&n).await.unwrap();
    assert_eq!(count(&fake), 3);
    fake.revoke_tokens();
    fake.clear_requests();
    gh.issue(&n).await.unwrap();
    assert_eq!(
        lines(&fake.requests()),
        vec![
            format!("GET /repos/o/r/issues/{n}"),
            "POST /app/installations/99/access_tokens".to_string(),
            format!("GET /repos/o/r/issues/{n}"),
            format!("GET /repos/o/r/issues/{n}/comments"),
        ]
    );
}

#[tokio::test]
async fn app_auth_with_the_wrong_app_id_is_refused_by_the_fake() {
    let (fake, _) = start_app().await;
    let mut s = settings(&fake.url());
    s.token_env = None;
    s.app = Some(GithubApp {
        app_id: 1,
        installation_id: 99,
        private_key_env: "GH_APP_KEY".into(),
    });
    let gh = GitHub::new(&s, &env, policy()).unwrap();
    let err = gh.issue("1").await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/app/installations/99/access_tokens")
    );
}

// ---- webhooks ---------------------------------------------------------------------------------

fn hook_settings() -> GithubSettings {
    let mut s = settings("https://api.github.com");
    s.trigger_assignee = Some("mill-runner".into());
    s
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/github/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn parse(event: &str, v: &Value) -> Hint {
    parse_webhook(event, &serde_json::to_vec(v).unwrap(), &hook_settings()).unwrap()
}

fn is_ignored(h: &Hint) -> bool {
    matches!(h, Hint::Ignored { .. })
}

#[test]
fn verify_webhook_good_bad_missing_and_malformed() {
    let body = br#"{"zen":"Design for failure."}"#;
    let secret = "It's a Secret to Everybody";
    let with = |value: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", HeaderValue::from_str(value).unwrap());
        h
    };
    assert_eq!(
        verify_webhook(secret, &with(&sign(secret, body)), body),
        Ok(())
    );
    // GitHub's documented test vector.
    assert_eq!(
        verify_webhook(
            secret,
            &with("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
            b"Hello, World!"
        ),
        Ok(())
    );
    assert_eq!(
        verify_webhook("other secret", &with(&sign(secret, body)), body),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verify_webhook(
            secret,
            &with(&sign(secret, body)),
            b"{\"zen\":\"tampered\"}"
        ),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        verify_webhook(secret, &HeaderMap::new(), body),
        Err(VerifyError::Missing(_))
    ));
    assert!(matches!(
        verify_webhook(secret, &with("sha1=abcdef"), body),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        verify_webhook(secret, &with("sha256=not-hex"), body),
        Err(VerifyError::Malformed(_))
    ));
    assert!(verify_webhook("", &with(&sign("", body)), body).is_err());
    // The fake's delivery headers carry the same signature.
    let headers = webhook_headers("ping", secret, body);
    let mut map = HeaderMap::new();
    for (k, v) in &headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    assert_eq!(verify_webhook(secret, &map, body), Ok(()));
    assert_eq!(map["x-github-event"], "ping");
}

#[test]
fn parse_issues_events() {
    let labeled = fixture("issues-labeled");
    assert_eq!(
        parse("issues", &labeled),
        Hint::Issue {
            key: "7".into(),
            actor: Some("octocat".into())
        }
    );
    let mut other_label = labeled.clone();
    other_label["label"]["name"] = json!("bug");
    assert!(is_ignored(&parse("issues", &other_label)));
    let mut on_a_pr = labeled.clone();
    on_a_pr["issue"]["pull_request"] = json!({"url": "https://api.github.com/repos/o/r/pulls/7"});
    assert!(is_ignored(&parse("issues", &on_a_pr)));

    let assigned = fixture("issues-assigned");
    assert_eq!(
        parse("issues", &assigned),
        Hint::Issue {
            key: "8".into(),
            actor: Some("octocat".into())
        }
    );
    let mut someone_else = assigned.clone();
    someone_else["assignee"]["login"] = json!("bob");
    assert!(is_ignored(&parse("issues", &someone_else)));

    let opened = fixture("issues-opened");
    assert_eq!(
        parse("issues", &opened),
        Hint::Issue {
            key: "9".into(),
            actor: Some("hubot".into())
        },
        "label names match case-insensitively"
    );
    let mut opened_plain = opened.clone();
    opened_plain["issue"]["labels"] = json!([]);
    assert!(is_ignored(&parse("issues", &opened_plain)));
    let mut closed = opened.clone();
    closed["action"] = json!("closed");
    assert!(is_ignored(&parse("issues", &closed)));
}

#[test]
fn parse_review_comment_created() {
    let v = fixture("pull_request_review_comment-created");
    assert_eq!(
        parse("pull_request_review_comment", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 12,
            feedback: Feedback {
                id: "review-comment:2748".into(),
                kind: FeedbackKind::ReviewComment,
                author: "reviewer".into(),
                body: "Please handle the empty case here.".into(),
                path: Some("src/main.rs".into()),
                line: Some(42),
                reply_to: Some("2748".into()),
            }
        }
    );
    // An outdated comment has no `line`; `original_line` stands in.
    let mut outdated = v.clone();
    outdated["comment"]["line"] = Value::Null;
    let Hint::Feedback { feedback, .. } = parse("pull_request_review_comment", &outdated) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.line, Some(40));
    // A reply in a thread is answered in the thread (its first comment).
    let mut in_thread = v.clone();
    in_thread["comment"]["in_reply_to_id"] = json!(2700);
    let Hint::Feedback { feedback, .. } = parse("pull_request_review_comment", &in_thread) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.reply_to.as_deref(), Some("2700"));
    assert_eq!(feedback.id, "review-comment:2748");

    let mut by_codemill = v.clone();
    by_codemill["comment"]["body"] = json!("Fixed.\n\n<!-- codemill:reply:review-comment:1 -->");
    assert!(is_ignored(&parse(
        "pull_request_review_comment",
        &by_codemill
    )));
    let mut by_bot = v.clone();
    by_bot["comment"]["user"]["login"] = json!("Codemill-Bot");
    assert!(is_ignored(&parse("pull_request_review_comment", &by_bot)));
    let mut edited = v.clone();
    edited["action"] = json!("edited");
    assert!(is_ignored(&parse("pull_request_review_comment", &edited)));
}

#[test]
fn parse_review_submitted() {
    let v = fixture("pull_request_review-submitted");
    assert_eq!(
        parse("pull_request_review", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 12,
            feedback: Feedback {
                id: "review:237895671".into(),
                kind: FeedbackKind::ChangesRequested,
                author: "reviewer".into(),
                body: "The error path is not tested.".into(),
                path: None,
                line: None,
                reply_to: None,
            }
        }
    );
    let mut upper_no_body = v.clone();
    upper_no_body["review"]["state"] = json!("CHANGES_REQUESTED");
    upper_no_body["review"]["body"] = Value::Null;
    let Hint::Feedback { feedback, .. } = parse("pull_request_review", &upper_no_body) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.body, "");
    let mut approved = v.clone();
    approved["review"]["state"] = json!("approved");
    assert!(is_ignored(&parse("pull_request_review", &approved)));
    let mut by_bot = v.clone();
    by_bot["review"]["user"]["login"] = json!("codemill-bot");
    assert!(is_ignored(&parse("pull_request_review", &by_bot)));
}

#[test]
fn parse_check_run_completed() {
    let v = fixture("check_run-completed");
    assert_eq!(
        parse("check_run", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 12,
            feedback: Feedback {
                id: "check-run:128620228".into(),
                kind: FeedbackKind::CheckFailed,
                author: "octoapp".into(),
                body: "test failed: 2 tests failed\n\nempty_input_is_rejected, quiet_flag_is_honoured\n\nassertion failed: left == right".into(),
                path: None,
                line: None,
                reply_to: None,
            }
        }
    );
    let mut sparse = v.clone();
    sparse["check_run"]["conclusion"] = json!("timed_out");
    sparse["check_run"]["output"] =
        json!({"title": null, "summary": "took too long", "text": null});
    sparse["check_run"]["app"] = Value::Null;
    let Hint::Feedback { feedback, .. } = parse("check_run", &sparse) else {
        panic!("not feedback");
    };
    assert_eq!(feedback.body, "test failed\n\ntook too long");
    assert_eq!(feedback.author, "checks");
    let mut success = v.clone();
    success["check_run"]["conclusion"] = json!("success");
    assert!(is_ignored(&parse("check_run", &success)));
    let mut no_pr = v.clone();
    no_pr["check_run"]["pull_requests"] = json!([]);
    assert!(is_ignored(&parse("check_run", &no_pr)));
    let mut created = v.clone();
    created["action"] = json!("created");
    assert!(is_ignored(&parse("check_run", &created)));
}

#[test]
fn parse_status_failure_names_the_branch_and_pr_0() {
    let v = fixture("status");
    assert_eq!(
        parse("status", &v),
        Hint::Feedback {
            head: "codemill/r-9".into(),
            pr: 0,
            feedback: Feedback {
                id: "status:6805126730".into(),
                kind: FeedbackKind::CheckFailed,
                author: "checks".into(),
                body: "ci/lint failed: Lint found 3 problems\n\nhttps://ci.example.com/builds/1234"
                    .into(),
                path: None,
                line: None,
                reply_to: None,
            }
        }
    );
    let mut error = v.clone();
    error["state"] = json!("error");
    assert!(!is_ignored(&parse("status", &error)));
    for state in ["success", "pending"] {
        let mut ok = v.clone();
        ok["state"] = json!(state);
        assert!(is_ignored(&parse("status", &ok)));
    }
    let mut no_branch = v.clone();
    no_branch["branches"] = json!([]);
    assert!(is_ignored(&parse("status", &no_branch)));
}

#[test]
fn parse_pull_request_closed() {
    let v = fixture("pull_request-closed");
    assert_eq!(
        parse("pull_request", &v),
        Hint::PrClosed {
            head: "codemill/r-9".into(),
            pr: 12,
            merged: true,
            actor: Some("maintainer".into())
        }
    );
    let mut unmerged = v.clone();
    unmerged["pull_request"]["merged"] = json!(false);
    unmerged["pull_request"]["merged_at"] = Value::Null;
    assert!(matches!(
        parse("pull_request", &unmerged),
        Hint::PrClosed { merged: false, .. }
    ));
    let mut opened = v.clone();
    opened["action"] = json!("opened");
    assert!(is_ignored(&parse("pull_request", &opened)));
}

#[test]
fn parse_ping_and_unknown_events_are_ignored_and_malformed_bodies_are_errors() {
    assert!(is_ignored(&parse("ping", &fixture("ping"))));
    assert!(is_ignored(&parse("star", &json!({"action": "created"}))));
    let s = hook_settings();
    assert!(parse_webhook("issues", b"{not json", &s).is_err());
    assert!(parse_webhook("issues", b"[1, 2]", &s).is_err());
    // The trigger label on an issue without a number is an error, not a silent ignore.
    let mut no_number = fixture("issues-labeled");
    no_number["issue"].as_object_mut().unwrap().remove("number");
    assert!(parse_webhook("issues", &serde_json::to_vec(&no_number).unwrap(), &s).is_err());
}

#[tokio::test]
async fn the_fakes_webhook_builders_parse_as_github_deliveries() {
    let (fake, gh) = start(100).await;
    let s = hook_settings();
    let n = fake.add_issue("t", "b", &["codemill"], "alice");
    let read = |event: &str, body: Vec<u8>| parse_webhook(event, &body, &s).unwrap();

    assert_eq!(
        read("issues", fake.issues_labeled(n, "codemill", "alice")),
        Hint::Issue {
            key: n.to_string(),
            actor: Some("alice".into())
        }
    );
    assert_eq!(
        read("issues", fake.issues_assigned(n, "mill-runner", "alice")),
        Hint::Issue {
            key: n.to_string(),
            actor: Some("alice".into())
        }
    );
    assert!(is_ignored(&read("ping", fake.ping())));

    let pr = gh.open_pr(&pr_request("codemill/r-1")).await.unwrap();
    let c = fake.add_review_comment(pr.number, "reviewer", "Rename this", "src/lib.rs", 9);
    assert_eq!(
        read(
            "pull_request_review_comment",
            fake.review_comment_created(pr.number, c)
        ),
        Hint::Feedback {
            head: "codemill/r-1".into(),
            pr: pr.number,
            feedback: Feedback {
                id: format!("review-comment:{c}"),
                kind: FeedbackKind::ReviewComment,
                author: "reviewer".into(),
                body: "Rename this".into(),
                path: Some("src/lib.rs".into()),
                line: Some(9),
                reply_to: Some(c.to_string()),
            }
        }
    );
    let Hint::Feedback {
        feedback, pr: p, ..
    } = read(
        "pull_request_review",
        fake.review_submitted(pr.number, "CHANGES_REQUESTED", None, "reviewer"),
    )
    else {
        panic!("not feedback");
    };
    assert_eq!(
        (feedback.kind, p, feedback.body.as_str()),
        (FeedbackKind::ChangesRequested, pr.number, "")
    );
    let Hint::Feedback { feedback, head, .. } = read(
        "check_run",
        fake.check_run_completed(pr.number, "failure", "test", "1 test failed"),
    ) else {
        panic!("not feedback");
    };
    assert_eq!(head, "codemill/r-1");
    assert_eq!(feedback.body, "test failed\n\n1 test failed");
    assert_eq!(feedback.author, "github-actions");
    assert!(is_ignored(&read(
        "check_run",
        fake.check_run_completed(pr.number, "success", "test", "ok")
    )));
    assert!(matches!(
        read(
            "status",
            fake.status_event("codemill/r-1", "failure", "ci/lint", "bad")
        ),
        Hint::Feedback { pr: 0, .. }
    ));

    // Merge, as a maintainer would: the PR body's "Closes #1" closes the issue, as on GitHub.
    assert!(fake.merge(pr.number));
    assert_eq!(
        read("pull_request", fake.pull_request_closed(pr.number, true)),
        Hint::PrClosed {
            head: "codemill/r-1".into(),
            pr: pr.number,
            merged: true,
            actor: Some("octocat".into())
        }
    );
    assert_eq!(fake.issue(n).unwrap()["state"], "closed");
    assert_eq!(gh.pr(pr.number).await.unwrap().state, "merged");
}

#[tokio::test]
async fn the_fake_checks_the_app_jwt_signature_and_claims() {
    let (fake, _) = start_app().await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let jwt = |iat: i64, exp: i64, iss: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &json!({"iat": iat, "exp": exp, "iss": iss}),
            &key,
        )
        .unwrap()
    };
    let exchange = |token: String| {
        let url = format!("{}/app/installations/99/access_tokens", fake.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = exchange(jwt(now - 60, now + 540, json!(4242))).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["token"].as_str().unwrap().starts_with("ghs_"));
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));

    let (status, body) = exchange(jwt(now - 60, now + 660, json!("4242"))).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("too far"),
        "{body}"
    );
    let (status, _) = exchange(jwt(now - 700, now - 100, json!("4242"))).await;
    assert_eq!(status, 401, "expired");

    // Another payload under the first token's signature.
    let good = jwt(now - 60, now + 540, json!("4242"));
    let forged_claims = jwt(now - 60, now + 540, json!("4243"));
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = forged_claims.split('.').nth(1).unwrap();
    let (status, body) = exchange(parts.join(".")).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );
}

#[test]
fn parse_pr_conversation_comments_only_when_they_mention_codemill() {
    let settings = settings("https://api.github.com");
    let comment = |body: &str, author: &str, on_pr: bool| {
        let mut issue = serde_json::json!({"number": 7, "title": "t", "state": "open"});
        if on_pr {
            issue["pull_request"] =
                serde_json::json!({"url": "https://api.github.com/repos/acme/shop/pulls/7"});
        }
        serde_json::to_vec(&serde_json::json!({
            "action": "created",
            "issue": issue,
            "comment": {"id": 55, "body": body, "user": {"login": author}},
            "sender": {"login": author}
        }))
        .unwrap()
    };
    let hint = parse_webhook(
        "issue_comment",
        &comment("@codemill-bot rename it", "bob", true),
        &settings,
    )
    .unwrap();
    match hint {
        Hint::Feedback { head, pr, feedback } => {
            assert_eq!(head, "", "the branch is looked up by PR number");
            assert_eq!(pr, 7);
            assert_eq!(feedback.id, "issue-comment:55");
            assert_eq!(feedback.kind, FeedbackKind::Comment);
            assert_eq!(feedback.author, "bob");
        }
        other => panic!("{other:?}"),
    }
    for (body, author, on_pr) in [
        ("LGTM", "bob", true),
        ("@codemill-bot on an issue", "bob", false),
        ("@codemill-bot note to self", "codemill-bot", true),
    ] {
        let hint =
            parse_webhook("issue_comment", &comment(body, author, on_pr), &settings).unwrap();
        assert!(matches!(hint, Hint::Ignored { .. }), "{body}: {hint:?}");
    }
}

#[tokio::test]
async fn git_token_is_the_configured_token_or_the_apps_installation_token() {
    use secrecy::ExposeSecret;
    let (_fake, gh) = start(10).await;
    assert_eq!(gh.git_token().await.unwrap().expose_secret(), TOKEN);

    let (fake, gh) = start_app().await;
    let n = fake.add_issue("t", "b", &[], "alice");
    let git = gh.git_token().await.unwrap();
    assert!(
        git.expose_secret().starts_with("ghs_"),
        "an installation token"
    );
    // The API calls use the same cached token: one exchange in all.
    gh.issue(&n.to_string()).await.unwrap();
    let exchanges = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app/"))
        .count();
    assert_eq!(exchanges, 1);
    let issue_call = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(&format!("/issues/{n}")))
        .unwrap();
    assert_eq!(
        issue_call.header("authorization"),
        Some(format!("Bearer {}", git.expose_secret()).as_str())
    );
}
