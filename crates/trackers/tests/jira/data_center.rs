//! The Jira client signed in to a Data Center site: REST v2 paths, wiki markup bodies read as
//! Markdown and written from it, `startAt` search pages, comments upserted by their marker,
//! transitions and linked backlog issues.

use codemill_core::config::vendors::JiraAuth;
use codemill_core::pipeline::TicketStatus;
use codemill_testkit::fakes::jira::{FakeJira, FakeJiraAuth, FakeJiraOptions};
use codemill_trackers::Tracker;
use codemill_trackers::jira::Jira;
use serde_json::{Value, json};

use crate::{env, lines, policy, settings};

async fn setup_dc() -> (FakeJira, Jira) {
    let fake = FakeJira::start(FakeJiraOptions {
        auth: FakeJiraAuth::Bearer("dc-token".into()),
        ..FakeJiraOptions::default()
    })
    .await
    .unwrap();
    let mut s = settings(&fake.url());
    s.auth = JiraAuth::DataCenter;
    s.email_env = None;
    s.token_env = "JIRA_DC_TOKEN".into();
    let jira = Jira::new(&s, &env, policy()).unwrap();
    (fake, jira)
}

#[tokio::test]
async fn triggered_follows_start_at_pages_of_the_v2_search() {
    let (fake, jira) = setup_dc().await;
    for n in 1..=5 {
        fake.add_issue(
            &format!("PROJ-{n}"),
            "ready",
            Value::Null,
            "To Do",
            &["codemill"],
        );
    }
    let keys = jira.triggered().await.unwrap();
    assert_eq!(keys, ["PROJ-1", "PROJ-2", "PROJ-3", "PROJ-4", "PROJ-5"]);
    let reqs = fake.requests();
    // Three pages of the build search, then one of ideas to refine.
    assert_eq!(lines(&reqs), ["POST /rest/api/2/search"; 4]);
    let starts: Vec<&Value> = reqs.iter().map(|r| &r.body["startAt"]).collect();
    assert_eq!(starts, [&json!(0), &json!(2), &json!(4), &json!(0)]);
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some("Bearer dc-token"))
    );
}

#[tokio::test]
async fn issues_and_comments_are_read_from_wiki_markup() {
    let (fake, jira) = setup_dc().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    fake.set_description(
        "PROJ-1",
        json!("h2. Goal\nMake *it* {{fast}}, see [docs|https://x.test]."),
    );
    fake.add_comment("PROJ-1", "acc-carol", json!("Lowercase, please."));
    let issue = jira.issue("PROJ-1").await.unwrap();
    assert_eq!(
        issue.body,
        "## Goal\nMake **it** `fast`, see [docs](https://x.test)."
    );
    assert_eq!(issue.comments.len(), 1);
    assert_eq!(issue.comments[0].body, "Lowercase, please.");
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.path.starts_with("/rest/api/2/"))
    );
}

#[tokio::test]
async fn comments_are_wiki_strings_upserted_by_their_marker() {
    let (fake, jira) = setup_dc().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    let marker = "codemill:j1:plan";
    jira.upsert_comment("PROJ-1", marker, "**Plan**\n\n1. read\n2. write")
        .await
        .unwrap();
    let posted = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(posted.line(), "POST /rest/api/2/issue/PROJ-1/comment");
    assert_eq!(
        posted.body,
        json!({"body": "*Plan*\n\n# read\n# write\n\n_codemill · \\[codemill:j1:plan\\]_"})
    );
    // Changed: edited in place; unchanged: nothing written.
    jira.upsert_comment("PROJ-1", marker, "**Plan**\n\n1. read")
        .await
        .unwrap();
    fake.clear_requests();
    jira.upsert_comment("PROJ-1", marker, "**Plan**\n\n1. read")
        .await
        .unwrap();
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
    let comments = fake.comments("PROJ-1");
    assert_eq!(comments.len(), 1);
    assert_eq!(
        comments[0]["body"],
        "*Plan*\n\n# read\n\n_codemill · \\[codemill:j1:plan\\]_"
    );
}

#[tokio::test]
async fn transitions_and_backlog_issues_go_through_v2() {
    let (fake, jira) = setup_dc().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    jira.transition("PROJ-1", TicketStatus::Done).await.unwrap();
    assert_eq!(fake.status_of("PROJ-1").as_deref(), Some("Done"));
    let key = jira
        .create_linked("PROJ-1", "codemill:j1:b1", "Later", "Do it *later*.")
        .await
        .unwrap();
    assert_eq!(key, "PROJ-2");
    assert_eq!(
        fake.description_of("PROJ-2"),
        Some(json!("Do it _later_.\n\n_codemill · \\[codemill:j1:b1\\]_"))
    );
    assert_eq!(fake.links_of("PROJ-1").len(), 1);
    // Found again through the link, not created twice.
    let again = jira
        .create_linked("PROJ-1", "codemill:j1:b1", "Later", "Do it *later*.")
        .await
        .unwrap();
    assert_eq!(again, "PROJ-2");
    assert_eq!(fake.issue_keys(), ["PROJ-1", "PROJ-2"]);
    let reqs = fake.requests();
    assert!(
        reqs.iter().all(|r| r.path.starts_with("/rest/api/2/")),
        "{:?}",
        lines(&reqs)
    );
}
