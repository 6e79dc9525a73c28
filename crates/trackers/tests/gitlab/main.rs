//! The GitLab tracker and forge against the fake GitLab: requests asserted, notes and lists read
//! across pages, writes that stay single after a lost answer (502 after the write), rate limits
//! with GitLab's headers, and replies in a merge request's discussions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use codemill_core::config::vendors::GitlabSettings;
use codemill_core::pipeline::TicketStatus;
use codemill_testkit::fakes::gitlab::{FakeGitLab, FakeGitLabOptions};
use codemill_testkit::fakes::{Fault, FaultKind};
use codemill_trackers::gitlab::GitLab;
use codemill_trackers::{Forge, PrRequest, ReplyTo, RetryPolicy, Tracker};

const TOKEN: &str = "glpat-test-token";
const PROJECT: &str = "/api/v4/projects/acme%2Fweb";

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

async fn start(page_size: usize) -> (FakeGitLab, GitLab) {
    let fake = FakeGitLab::start(FakeGitLabOptions {
        token: TOKEN.into(),
        page_size,
        ..FakeGitLabOptions::default()
    })
    .await
    .unwrap();
    let settings = GitlabSettings {
        base_url: fake.url(),
        project: "acme/web".into(),
        token_env: "GITLAB_TOKEN".into(),
        trigger_label: "codemill".into(),
        refine_label: "codemill:refine".into(),
        bot_username: Some("codemill-bot".into()),
        draft: true,
        webhook: None,
    };
    let env = |name: &str| (name == "GITLAB_TOKEN").then(|| TOKEN.to_string());
    let client = GitLab::new(&settings, &env, policy()).unwrap();
    (fake, client)
}

fn post_fault(path: &str, kind: FaultKind) -> Fault {
    Fault {
        method: "POST".into(),
        path: format!("{PROJECT}{path}"),
        kind,
    }
}

#[tokio::test]
async fn an_issue_is_read_with_its_notes_across_pages_and_only_labelled_open_ones_trigger() {
    let (fake, gl) = start(2).await;
    let iid = fake.add_issue("Say hello", "Add hello.txt", &["codemill", "bug"], "alice");
    fake.add_issue("Unlabelled", "", &[], "alice");
    let other = fake.add_issue("Also labelled", "", &["codemill"], "bob");
    for i in 0..3 {
        gl.upsert_comment(
            &iid.to_string(),
            &format!("codemill:m{i}"),
            &format!("note {i}"),
        )
        .await
        .unwrap();
    }
    let issue = gl.issue(&iid.to_string()).await.unwrap();
    assert_eq!(issue.title, "Say hello");
    assert_eq!(issue.body, "Add hello.txt");
    assert_eq!(issue.status, "opened");
    assert_eq!(issue.labels, ["codemill", "bug"]);
    assert_eq!(issue.comments.len(), 3, "notes from every page");
    assert!(issue.comments.iter().all(|c| c.by_codemill));
    assert!(issue.url.ends_with(&format!("/acme/web/-/issues/{iid}")));
    assert_eq!(
        gl.triggered().await.unwrap(),
        [iid.to_string(), other.to_string()]
    );
    for r in fake.requests() {
        assert_eq!(r.header("private-token"), Some(TOKEN), "{}", r.line());
        assert!(r.path.starts_with(PROJECT), "{}", r.line());
    }
}

#[tokio::test]
async fn notes_labels_and_closing_are_idempotent_after_a_lost_answer() {
    let (fake, gl) = start(20).await;
    let iid = fake.add_issue("Say hello", "", &["codemill"], "alice");
    let key = iid.to_string();
    fake.inject(post_fault(
        &format!("/issues/{iid}/notes"),
        FaultKind::AfterApply(502),
    ));
    gl.upsert_comment(&key, "codemill:progress", "Working")
        .await
        .unwrap();
    gl.upsert_comment(&key, "codemill:progress", "Proposal ready")
        .await
        .unwrap();
    let notes = fake.issue_notes(iid);
    assert_eq!(
        notes.len(),
        1,
        "one note after a 502 on its creation: {notes:#?}"
    );
    assert!(
        notes[0]["body"]
            .as_str()
            .unwrap()
            .starts_with("Proposal ready")
    );

    gl.set_labels(&key, &["codemill:running"], &["codemill:needs-input"])
        .await
        .unwrap();
    gl.set_labels(&key, &["codemill:done"], &["codemill:running"])
        .await
        .unwrap();
    assert_eq!(
        fake.issue(iid)["labels"],
        serde_json::json!(["codemill", "codemill:done"])
    );
    let put = fake
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT" && r.path == format!("{PROJECT}/issues/{iid}"))
        .unwrap();
    assert_eq!(put.body["add_labels"], "codemill:done");
    assert_eq!(put.body["remove_labels"], "codemill:running");

    gl.transition(&key, TicketStatus::InProgress).await.unwrap();
    assert_eq!(fake.issue(iid)["state"], "opened", "only Done closes");
    gl.transition(&key, TicketStatus::Done).await.unwrap();
    gl.transition(&key, TicketStatus::Done).await.unwrap();
    assert_eq!(fake.issue(iid)["state"], "closed");

    // A backlog ticket: created once, linked once, even when created twice and answered 502.
    fake.inject(post_fault("/issues", FaultKind::AfterApply(502)));
    let first = gl
        .create_linked(&key, "codemill:backlog:f1", "Follow-up", "Do the rest")
        .await
        .unwrap();
    let second = gl
        .create_linked(&key, "codemill:backlog:f1", "Follow-up", "Do the rest")
        .await
        .unwrap();
    assert_eq!(first, second);
    let created: u64 = first.parse().unwrap();
    assert_eq!(fake.linked_issues(iid), [created]);
    let issue = gl.issue(&key).await.unwrap();
    assert_eq!(
        issue.links,
        [format!("relates to #{created}: Follow-up (opened)")]
    );
    assert_eq!(
        fake.issue(created)["labels"],
        serde_json::json!(["codemill:backlog"])
    );
}

#[tokio::test]
async fn a_merge_request_is_opened_once_as_a_draft_and_replies_go_into_their_threads() {
    let (fake, gl) = start(20).await;
    let request = PrRequest {
        head: "codemill/web-1",
        base: "main",
        title: "web-1: Say hello",
        body: "Summary",
        draft: true,
    };
    fake.inject(post_fault("/merge_requests", FaultKind::AfterApply(502)));
    let pr = gl.open_pr(&request).await.unwrap();
    let again = gl.open_pr(&request).await.unwrap();
    assert_eq!(pr, again);
    assert!(pr.draft);
    assert_eq!(pr.state, "open");
    assert_eq!(pr.head, "codemill/web-1");
    let mr = fake.mr(pr.number);
    assert_eq!(mr["title"], "Draft: web-1: Say hello");
    assert_eq!(mr["description"], "Summary");

    let (_, discussion) = fake.add_diff_note(pr.number, "bob", "rename this", "src/a.rs", 3);
    for _ in 0..2 {
        gl.reply(
            pr.number,
            ReplyTo::ReviewComment(&discussion),
            "codemill:reply:1",
            "Done",
        )
        .await
        .unwrap();
        gl.reply(
            pr.number,
            ReplyTo::Conversation,
            "codemill:reply:2",
            "Round 2",
        )
        .await
        .unwrap();
    }
    let thread = fake
        .discussions(pr.number)
        .into_iter()
        .find(|d| d["id"] == discussion.as_str())
        .unwrap();
    assert_eq!(thread["notes"].as_array().unwrap().len(), 2, "{thread:#}");
    assert_eq!(
        fake.mr_notes(pr.number).len(),
        3,
        "the line note and two replies"
    );
    let err = gl
        .reply(
            pr.number,
            ReplyTo::ReviewComment("../x"),
            "codemill:reply:3",
            "x",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("discussion id"), "{err}");

    fake.merge(pr.number, "bob");
    assert_eq!(gl.pr(pr.number).await.unwrap().state, "merged");
    assert!(matches!(
        gl.pr(999).await,
        Err(codemill_trackers::Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_rate_limit_holds_the_client_back_and_then_it_goes_on() {
    let (fake, gl) = start(20).await;
    let iid = fake.add_issue("Say hello", "", &["codemill"], "alice");
    fake.inject(Fault {
        method: "GET".into(),
        path: format!("{PROJECT}/issues"),
        kind: FaultKind::RateLimit {
            retry_after_secs: 1,
        },
    });
    let started = std::time::Instant::now();
    assert_eq!(gl.triggered().await.unwrap(), [iid.to_string()]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for Retry-After"
    );
    let tries = fake
        .requests()
        .iter()
        .filter(|r| r.path == format!("{PROJECT}/issues"))
        .count();
    // The limited try, its retry, then the list of ideas to refine.
    assert_eq!(tries, 3);
}

#[tokio::test]
async fn create_issue_makes_one_labelled_issue_after_an_applied_502() {
    let (fake, gl) = start(20).await;
    fake.inject(post_fault("/issues", FaultKind::AfterApply(502)));
    let first = gl
        .create_issue(
            "codemill:draft:1",
            "Add SSO",
            "Log in with OIDC.",
            "codemill:refine",
        )
        .await
        .unwrap();
    let again = gl
        .create_issue(
            "codemill:draft:1",
            "Add SSO",
            "Log in with OIDC.",
            "codemill:refine",
        )
        .await
        .unwrap();
    assert_eq!(first, again);
    let iid: u64 = first.parse().unwrap();
    assert_eq!(
        fake.issue(iid)["labels"],
        serde_json::json!(["codemill:refine"])
    );
    assert!(fake.linked_issues(iid).is_empty(), "standalone");
}
