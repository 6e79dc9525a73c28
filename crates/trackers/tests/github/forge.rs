//! The GitHub forge: draft PRs opened once whatever fails in between, the fake's PR validation,
//! reading a PR's state, and replies on review threads and the conversation once per marker.

use codemill_testkit::fakes::{Fault, FaultKind};
use codemill_trackers::{Error, Forge, ReplyTo};
use serde_json::{Value, json};

use crate::{TOKEN, assert_github_headers, lines, pr_request, q, query, start};

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
