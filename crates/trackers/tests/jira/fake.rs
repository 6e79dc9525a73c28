//! The fake Jira refuses what Jira refuses, so a client that sends it passes only if Jira would
//! accept the same request.

use codemill_testkit::fakes::jira::{FakeJira, FakeJiraOptions};
use serde_json::{Value, json};

use crate::BASIC;

#[tokio::test]
async fn the_fake_refuses_what_jira_refuses() {
    let fake = FakeJira::start(FakeJiraOptions::default()).await.unwrap();
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}/rest/api/3{p}", fake.url());

    let r = client.get(url("/issue/PROJ-1")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let r = client
        .post(url("/issue/PROJ-1/comment"))
        .header("authorization", BASIC)
        .body(r#"{"body": {"type": "doc", "version": 1, "content": []}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        415,
        "writes need Content-Type: application/json"
    );

    let post = |path: &str, body: Value| {
        client
            .post(url(path))
            .header("authorization", BASIC)
            .json(&body)
            .send()
    };
    let r = post(
        "/issue/PROJ-1/comment",
        json!({"body": {"type": "paragraph"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["errorMessages"].is_array());
    assert!(
        e["errors"]["comment"]
            .as_str()
            .unwrap()
            .contains("Atlassian Document")
    );

    let r = post(
        "/issue/PROJ-1/transitions",
        json!({"transition": {"id": "99"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["errorMessages"][0],
        "Transition id '99' is not valid for this issue."
    );

    let r = post(
        "/issue",
        json!({"fields": {"project": {"key": "PROJ"}, "issuetype": {"name": "Task"}}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["errors"]["summary"].is_string());

    let r = post(
        "/search/jql",
        json!({"jql": "project = PROJ OR status = Done"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    let r = post("/search/jql", json!({"jql": "project = PROJ"}))
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(
        page["issues"][0],
        json!({"id": "10001"}),
        "ids only without fields"
    );
    assert_eq!(page["isLast"], true);
    assert!(page.get("nextPageToken").is_none());

    assert!(fake.comments("PROJ-1").is_empty());
    assert_eq!(fake.status_of("PROJ-1").as_deref(), Some("To Do"));
}
