//! The GitHub tracker: triggered issues across pages, issues with every comment page, comments
//! upserted by marker, labels, transitions and linked backlog issues, each written once.

use codemill_core::pipeline::TicketStatus;
use codemill_testkit::fakes::{Fault, FaultKind};
use codemill_trackers::github::GitHub;
use codemill_trackers::{Error, Forge, PrRequest, Tracker};
use serde_json::{Value, json};

use crate::{TOKEN, assert_github_headers, env, lines, policy, q, query, settings, start};

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
    let idea = fake.add_issue("g", "", &["codemill:refine"], "alice");
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
        vec![
            a.to_string(),
            b.to_string(),
            d.to_string(),
            e.to_string(),
            idea.to_string()
        ]
    );

    let reqs = fake.requests();
    // Labelled: a, b, e and the PR = 4 items over 2 pages; to refine: g = 1 page; assigned:
    // b, d = 1 page.
    assert_eq!(
        lines(&reqs),
        vec![
            "GET /repos/o/r/issues",
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
            ("labels", "codemill:refine"),
            ("per_page", "100")
        ])
    );
    assert_eq!(
        query(&reqs[3]),
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

#[tokio::test]
async fn create_issue_makes_one_labelled_issue_after_an_applied_502() {
    let (fake, gh) = start(2).await;
    fake.inject(Fault {
        method: "POST".into(),
        path: "/repos/o/r/issues".into(),
        kind: FaultKind::AfterApply(502),
    });
    let first = gh
        .create_issue(
            "codemill:draft:1",
            "Add SSO",
            "Log in with OIDC.",
            "codemill:refine",
        )
        .await
        .unwrap();
    let again = gh
        .create_issue(
            "codemill:draft:1",
            "Add SSO",
            "Log in with OIDC.",
            "codemill:refine",
        )
        .await
        .unwrap();
    assert_eq!(first, again);
    let n: u64 = first.parse().unwrap();
    assert!(fake.issue(n + 1).is_none(), "one issue");
    assert_eq!(fake.labels(n), ["codemill:refine"]);
    let body = fake.issue(n).unwrap()["body"].as_str().unwrap().to_string();
    assert!(body.starts_with("Log in with OIDC.") && body.contains("<!-- codemill:draft:1 -->"));
}
