//! The Jira Cloud client against the fake Jira site: every `Tracker` method with its requests
//! checked field by field, pagination, idempotent writes under injected faults, rate limits,
//! Data Center auth, configuration errors, and webhook verification and parsing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use codemill_core::config::vendors::{JiraAuth, JiraSettings, StatusMap, WebhookAuthKind};
use codemill_core::pipeline::TicketStatus;
use codemill_testkit::fakes::jira::{
    FakeJira, FakeJiraAuth, FakeJiraOptions, adf_text, hub_signature,
};
use codemill_testkit::fakes::{Fault, FaultKind, RecordedRequest};
use codemill_trackers::jira::{
    Jira, adf_to_markdown, markdown_to_adf, parse_webhook, verify_webhook,
};
use codemill_trackers::webhook::{Hint, VerifyError};
use codemill_trackers::{Error, RetryPolicy, Tracker};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const EMAIL: &str = "codemill@example.com";
const TOKEN: &str = "jira-api-token";
const BASIC: &str = "Basic Y29kZW1pbGxAZXhhbXBsZS5jb206amlyYS1hcGktdG9rZW4=";
const ACCEPTANCE: &str = "customfield_10042";

fn env(name: &str) -> Option<String> {
    match name {
        "JIRA_EMAIL" => Some(EMAIL.into()),
        "JIRA_TOKEN" => Some(TOKEN.into()),
        "JIRA_DC_TOKEN" => Some("dc-token".into()),
        _ => None,
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_wait: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

fn settings(base: &str) -> JiraSettings {
    JiraSettings {
        base_url: base.to_string(),
        auth: JiraAuth::Cloud,
        email_env: Some("JIRA_EMAIL".into()),
        token_env: "JIRA_TOKEN".into(),
        project_key: "PROJ".into(),
        trigger_status: "To Do".into(),
        trigger_label: "codemill".into(),
        jql: None,
        acceptance_criteria_field: Some(ACCEPTANCE.into()),
        backlog_issue_type: "Task".into(),
        link_type: "Relates".into(),
        transitions: StatusMap {
            in_progress: Some("In Progress".into()),
            in_review: Some("in review".into()),
            done: Some("Done".into()),
            rejected: Some("Blocked".into()),
            ..StatusMap::default()
        },
        webhook: None,
    }
}

async fn setup() -> (FakeJira, Jira) {
    let fake = FakeJira::start(FakeJiraOptions::default()).await.unwrap();
    let jira = Jira::new(&settings(&fake.url()), &env, policy()).unwrap();
    (fake, jira)
}

fn query(req: &RecordedRequest) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", req.query))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Method, path, the Cloud credentials, and for writes the JSON content type.
fn assert_request(req: &RecordedRequest, method: &str, path: &str) {
    assert_eq!(req.method, method, "{}", req.line());
    assert_eq!(req.path, path, "{}", req.line());
    assert_eq!(req.header("authorization"), Some(BASIC), "{}", req.line());
    if method == "POST" || method == "PUT" {
        assert_eq!(
            req.header("content-type"),
            Some("application/json"),
            "{}",
            req.line()
        );
    }
}

fn lines(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter().map(|r| r.line()).collect()
}

fn comment_query(start: &str) -> Vec<(String, String)> {
    q(&[
        ("startAt", start),
        ("maxResults", "50"),
        ("orderBy", "created"),
    ])
}

#[tokio::test]
async fn triggered_follows_next_page_tokens() {
    let (fake, jira) = setup().await;
    for n in 1..=5 {
        fake.add_issue(
            &format!("PROJ-{n}"),
            "ready",
            Value::Null,
            "To Do",
            &["codemill"],
        );
    }
    fake.add_issue("PROJ-6", "busy", Value::Null, "In Progress", &["codemill"]);
    fake.add_issue("PROJ-7", "unlabelled", Value::Null, "To Do", &[]);
    fake.add_issue("OTHER-1", "elsewhere", Value::Null, "To Do", &["codemill"]);

    let keys = jira.triggered().await.unwrap();
    assert_eq!(keys, ["PROJ-1", "PROJ-2", "PROJ-3", "PROJ-4", "PROJ-5"]);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{:?}", lines(&reqs));
    let jql = settings("x").trigger_jql();
    assert_eq!(
        jql,
        r#"project = "PROJ" AND status = "To Do" AND labels = "codemill" ORDER BY created ASC"#
    );
    let mut tokens = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        assert_request(req, "POST", "/rest/api/3/search/jql");
        assert_eq!(req.query, "");
        let body = req.body.as_object().unwrap();
        assert_eq!(body["jql"], json!(jql));
        assert_eq!(body["fields"], json!(["summary"]));
        assert_eq!(body["maxResults"], json!(50));
        if i == 0 {
            assert_eq!(body.len(), 3, "{body:?}");
        } else {
            assert_eq!(body.len(), 4, "{body:?}");
            tokens.push(body["nextPageToken"].as_str().unwrap().to_string());
        }
    }
    assert_ne!(tokens[0], tokens[1]);
}

#[tokio::test]
async fn issue_reads_fields_comments_links_and_subtasks() {
    let (fake, jira) = setup().await;
    let description = markdown_to_adf("## Goal\n\nExport as **CSV**.\n\n- one\n- two");
    fake.add_issue(
        "PROJ-7",
        "Export button",
        description,
        "To Do",
        &["codemill", "ui"],
    );
    fake.set_field(
        "PROJ-7",
        ACCEPTANCE,
        markdown_to_adf("- a file downloads\n- it has a header row"),
    );
    fake.set_assignee("PROJ-7", Some("5b10-assignee"));
    fake.add_issue("PROJ-9", "Design the export", Value::Null, "Done", &[]);
    fake.add_link("Relates", "PROJ-9", "PROJ-7");
    fake.add_issue("PROJ-10", "Broken CSV", Value::Null, "To Do", &[]);
    fake.add_link("Blocks", "PROJ-7", "PROJ-10");
    fake.add_subtask("PROJ-7", "PROJ-11", "Write tests", "Done");
    fake.add_user("5b10-human", "Mia Krystof");
    let c1 = fake.add_comment("PROJ-7", "5b10-human", json!("What format?"));
    fake.add_comment(
        "PROJ-7",
        "712020:codemill-bot",
        markdown_to_adf("**Plan**\n\n*codemill · [codemill:j1:plan]*"),
    );
    fake.add_comment(
        "PROJ-7",
        "5b10-human",
        markdown_to_adf("CSV, with `;` separators"),
    );

    let issue = jira.issue("PROJ-7").await.unwrap();
    assert_eq!(issue.key, "PROJ-7");
    assert_eq!(issue.number, 7);
    assert_eq!(issue.url, format!("{}/browse/PROJ-7", fake.url()));
    assert_eq!(issue.title, "Export button");
    assert_eq!(issue.body, "## Goal\n\nExport as **CSV**.\n\n- one\n- two");
    assert_eq!(
        issue.acceptance_criteria.as_deref(),
        Some("- a file downloads\n- it has a header row")
    );
    assert_eq!(issue.status, "To Do");
    assert_eq!(issue.labels, ["codemill", "ui"]);
    assert_eq!(issue.assignees, ["5b10-assignee"]);
    assert_eq!(
        issue.links,
        [
            "relates to PROJ-9: Design the export",
            "blocks PROJ-10: Broken CSV"
        ]
    );
    assert_eq!(issue.subtasks, ["PROJ-11: Write tests (Done)"]);
    assert_eq!(issue.comments.len(), 3);
    assert_eq!(issue.comments[0].id, c1);
    assert_eq!(issue.comments[0].author, "5b10-human");
    assert_eq!(issue.comments[0].body, "What format?");
    assert!(!issue.comments[0].by_codemill);
    assert_eq!(issue.comments[1].author, "712020:codemill-bot");
    assert!(issue.comments[1].by_codemill);
    assert_eq!(issue.comments[2].body, "CSV, with `;` separators");
    assert!(!issue.comments[2].by_codemill);

    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        [
            "GET /rest/api/3/issue/PROJ-7",
            "GET /rest/api/3/issue/PROJ-7/comment",
            "GET /rest/api/3/issue/PROJ-7/comment",
        ]
    );
    assert_request(&reqs[0], "GET", "/rest/api/3/issue/PROJ-7");
    assert_eq!(
        query(&reqs[0]),
        q(&[(
            "fields",
            "summary,description,status,labels,assignee,issuelinks,subtasks,customfield_10042"
        )])
    );
    assert_eq!(reqs[0].body, Value::Null);
    assert_request(&reqs[1], "GET", "/rest/api/3/issue/PROJ-7/comment");
    assert_eq!(query(&reqs[1]), comment_query("0"));
    assert_eq!(query(&reqs[2]), comment_query("2"));
}

#[tokio::test]
async fn acceptance_criteria_may_be_a_plain_string_and_missing_issues_are_not_found() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-2", "t", json!("plain description"), "To Do", &[]);
    fake.set_field("PROJ-2", ACCEPTANCE, json!("  it works  "));
    let issue = jira.issue("PROJ-2").await.unwrap();
    assert_eq!(issue.acceptance_criteria.as_deref(), Some("it works"));
    assert_eq!(issue.body, "plain description");
    assert!(issue.comments.is_empty());
    assert!(issue.assignees.is_empty());

    let err = jira.issue("PROJ-404").await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("PROJ-404"), "{err}");
    let err = jira.issue("PROJ-1/comment").await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn upsert_comment_creates_then_edits_in_place() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    // Other people's comments fill the first page, so the look-up pages.
    fake.add_comment("PROJ-1", "5b10-human", json!("first"));
    fake.add_comment("PROJ-1", "5b10-human", json!("second"));
    fake.add_comment("PROJ-1", "5b10-human", json!("third"));
    let marker = "codemill:j1:plan";

    jira.upsert_comment("PROJ-1", marker, "**Plan**\n\n1. read\n2. write")
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        [
            "GET /rest/api/3/issue/PROJ-1/comment",
            "GET /rest/api/3/issue/PROJ-1/comment",
            "POST /rest/api/3/issue/PROJ-1/comment",
        ]
    );
    assert_eq!(query(&reqs[0]), comment_query("0"));
    assert_eq!(query(&reqs[1]), comment_query("2"));
    assert_request(&reqs[2], "POST", "/rest/api/3/issue/PROJ-1/comment");
    let mut expected = markdown_to_adf("**Plan**\n\n1. read\n2. write");
    expected["content"].as_array_mut().unwrap().push(json!({
        "type": "paragraph",
        "content": [{"type": "text", "text": "codemill · [codemill:j1:plan]", "marks": [{"type": "em"}]}]
    }));
    assert_eq!(reqs[2].body, json!({"body": expected}));
    let comments = fake.comments("PROJ-1");
    assert_eq!(comments.len(), 4);
    assert_eq!(comments[3]["body"], expected);
    assert_eq!(comments[3]["author"]["accountId"], "712020:codemill-bot");
    let id = comments[3]["id"].as_str().unwrap().to_string();

    fake.clear_requests();
    jira.upsert_comment("PROJ-1", marker, "**Plan**\n\n1. read\n2. write\n3. test")
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{:?}", lines(&reqs));
    let put = &reqs[2];
    assert_request(
        put,
        "PUT",
        &format!("/rest/api/3/issue/PROJ-1/comment/{id}"),
    );
    assert_eq!(put.query, "");
    assert_eq!(
        put.body["body"],
        fake.comments("PROJ-1")[3]["body"],
        "the stored body is the one sent"
    );
    assert_eq!(fake.comments("PROJ-1").len(), 4);
    assert!(fake.comment_texts("PROJ-1")[3].contains("test"));

    // Unchanged: looked up, nothing written.
    fake.clear_requests();
    jira.upsert_comment("PROJ-1", marker, "**Plan**\n\n1. read\n2. write\n3. test")
        .await
        .unwrap();
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(fake.comments("PROJ-1").len(), 4);
}

#[tokio::test]
async fn upsert_comment_after_an_applied_500_leaves_one_comment() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    fake.inject(Fault {
        method: "POST".into(),
        path: "/rest/api/3/issue/PROJ-1/comment".into(),
        kind: FaultKind::AfterApply(500),
    });
    jira.upsert_comment("PROJ-1", "codemill:j1:started", "Started.")
        .await
        .unwrap();
    assert_eq!(fake.comments("PROJ-1").len(), 1);
    assert_eq!(
        lines(&fake.requests()),
        [
            "GET /rest/api/3/issue/PROJ-1/comment",
            "POST /rest/api/3/issue/PROJ-1/comment",
            "GET /rest/api/3/issue/PROJ-1/comment",
        ]
    );
}

#[tokio::test]
async fn set_labels_sends_one_update() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &["codemill", "ui"]);
    jira.set_labels("PROJ-1", &["codemill:needs-input"], &["codemill", "absent"])
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_request(&reqs[0], "PUT", "/rest/api/3/issue/PROJ-1");
    assert_eq!(
        reqs[0].body,
        json!({"update": {"labels": [
            {"add": "codemill:needs-input"}, {"remove": "codemill"}, {"remove": "absent"}
        ]}})
    );
    assert_eq!(fake.labels_of("PROJ-1"), ["ui", "codemill:needs-input"]);

    // Adding again changes nothing.
    jira.set_labels("PROJ-1", &["codemill:needs-input"], &[])
        .await
        .unwrap();
    assert_eq!(fake.labels_of("PROJ-1"), ["ui", "codemill:needs-input"]);

    fake.clear_requests();
    jira.set_labels("PROJ-1", &[], &[]).await.unwrap();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn transition_moves_through_the_workflow_once() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);

    jira.transition("PROJ-1", TicketStatus::InProgress)
        .await
        .unwrap();
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        [
            "GET /rest/api/3/issue/PROJ-1",
            "GET /rest/api/3/issue/PROJ-1/transitions",
            "POST /rest/api/3/issue/PROJ-1/transitions",
        ]
    );
    assert_request(&reqs[0], "GET", "/rest/api/3/issue/PROJ-1");
    assert_eq!(query(&reqs[0]), q(&[("fields", "status")]));
    assert_request(&reqs[1], "GET", "/rest/api/3/issue/PROJ-1/transitions");
    assert_request(&reqs[2], "POST", "/rest/api/3/issue/PROJ-1/transitions");
    // "Start progress" leads to "In Progress": chosen by its target.
    assert_eq!(reqs[2].body, json!({"transition": {"id": "21"}}));
    assert_eq!(fake.status_of("PROJ-1").as_deref(), Some("In Progress"));

    // Already there: one read, nothing else.
    fake.clear_requests();
    jira.transition("PROJ-1", TicketStatus::InProgress)
        .await
        .unwrap();
    assert_eq!(lines(&fake.requests()), ["GET /rest/api/3/issue/PROJ-1"]);

    // Mapped case-insensitively ("in review").
    jira.transition("PROJ-1", TicketStatus::InReview)
        .await
        .unwrap();
    assert_eq!(fake.status_of("PROJ-1").as_deref(), Some("In Review"));

    // Unmapped: no request at all.
    fake.clear_requests();
    jira.transition("PROJ-1", TicketStatus::NeedsInput)
        .await
        .unwrap();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn transition_without_a_path_names_the_state_and_the_choices() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    let err = jira
        .transition("PROJ-1", TicketStatus::Rejected)
        .await
        .unwrap_err();
    let Error::NotFound(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("\"Blocked\""), "{message}");
    assert!(message.contains("Start progress"), "{message}");
    assert!(message.contains("In Review"), "{message}");
    assert!(message.contains("PROJ-1"), "{message}");
    assert_eq!(fake.status_of("PROJ-1").as_deref(), Some("To Do"));
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
}

fn backlog_jql(marker: &str) -> String {
    format!(r#"project = "PROJ" AND description ~ "\"[{marker}]\"" ORDER BY created ASC"#)
}

#[tokio::test]
async fn create_linked_creates_links_and_then_finds_it() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "Parent", Value::Null, "In Progress", &[]);
    let marker = "backlog:j1:abc123";

    let key = jira
        .create_linked(
            "PROJ-1",
            marker,
            "Handle the empty file",
            "Found in review: `parse` panics on `\"\"`.",
        )
        .await
        .unwrap();
    assert_eq!(key, "PROJ-2");
    let reqs = fake.requests();
    assert_eq!(
        lines(&reqs),
        [
            "GET /rest/api/3/issue/PROJ-1",
            "POST /rest/api/3/search/jql",
            "POST /rest/api/3/issue",
            "POST /rest/api/3/issueLink",
        ]
    );
    assert_eq!(query(&reqs[0]), q(&[("fields", "issuelinks")]));
    assert_request(&reqs[1], "POST", "/rest/api/3/search/jql");
    assert_eq!(
        reqs[1].body,
        json!({"jql": backlog_jql(marker), "fields": ["description"], "maxResults": 50})
    );
    assert_request(&reqs[2], "POST", "/rest/api/3/issue");
    let mut description = markdown_to_adf("Found in review: `parse` panics on `\"\"`.");
    description["content"].as_array_mut().unwrap().push(json!({
        "type": "paragraph",
        "content": [{"type": "text", "text": "codemill · [backlog:j1:abc123]", "marks": [{"type": "em"}]}]
    }));
    assert_eq!(
        reqs[2].body,
        json!({"fields": {
            "project": {"key": "PROJ"},
            "summary": "Handle the empty file",
            "issuetype": {"name": "Task"},
            "description": description,
        }})
    );
    assert_request(&reqs[3], "POST", "/rest/api/3/issueLink");
    assert_eq!(
        reqs[3].body,
        json!({"type": {"name": "Relates"}, "inwardIssue": {"key": "PROJ-2"}, "outwardIssue": {"key": "PROJ-1"}})
    );
    assert_eq!(
        fake.summary_of("PROJ-2").as_deref(),
        Some("Handle the empty file")
    );
    assert_eq!(fake.links_of("PROJ-1").len(), 1);
    let parent = jira.issue("PROJ-1").await.unwrap();
    assert_eq!(parent.links, ["relates to PROJ-2: Handle the empty file"]);

    // Again: found through the parent's links, nothing written.
    fake.clear_requests();
    let again = jira
        .create_linked("PROJ-1", marker, "Handle the empty file", "whatever")
        .await
        .unwrap();
    assert_eq!(again, "PROJ-2");
    assert_eq!(
        lines(&fake.requests()),
        [
            "GET /rest/api/3/issue/PROJ-1",
            "GET /rest/api/3/issue/PROJ-2"
        ]
    );
    assert_eq!(query(&fake.requests()[1]), q(&[("fields", "description")]));
    assert_eq!(fake.issue_keys(), ["PROJ-1", "PROJ-2"]);
}

#[tokio::test]
async fn create_linked_after_an_applied_500_on_create_makes_one_issue() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "Parent", Value::Null, "In Progress", &[]);
    fake.inject(Fault {
        method: "POST".into(),
        path: "/rest/api/3/issue".into(),
        kind: FaultKind::AfterApply(500),
    });
    let key = jira
        .create_linked("PROJ-1", "backlog:j1:f1", "Follow-up", "Details")
        .await
        .unwrap();
    assert_eq!(key, "PROJ-2");
    assert_eq!(fake.issue_keys(), ["PROJ-1", "PROJ-2"]);
    assert_eq!(fake.links_of("PROJ-1").len(), 1);
    // The retry found the issue by its marker and only linked it.
    assert_eq!(
        lines(&fake.requests()),
        [
            "GET /rest/api/3/issue/PROJ-1",
            "POST /rest/api/3/search/jql",
            "POST /rest/api/3/issue",
            "GET /rest/api/3/issue/PROJ-1",
            "POST /rest/api/3/search/jql",
            "POST /rest/api/3/issueLink",
        ]
    );
}

#[tokio::test]
async fn create_linked_after_an_applied_500_on_the_link_links_once() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "Parent", Value::Null, "In Progress", &[]);
    fake.inject(Fault {
        method: "POST".into(),
        path: "/rest/api/3/issueLink".into(),
        kind: FaultKind::AfterApply(502),
    });
    let key = jira
        .create_linked("PROJ-1", "backlog:j1:f2", "Follow-up", "Details")
        .await
        .unwrap();
    assert_eq!(key, "PROJ-2");
    assert_eq!(fake.issue_keys(), ["PROJ-1", "PROJ-2"]);
    assert_eq!(fake.links_of("PROJ-2").len(), 1);
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        3,
        "{:?}",
        lines(&fake.requests())
    );
}

#[tokio::test]
async fn create_linked_skips_links_it_cannot_read() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "Parent", Value::Null, "In Progress", &[]);
    // A link to an issue in a project codemill may not see: GET answers 404.
    fake.add_link("Relates", "SECRET-1", "PROJ-1");
    let key = jira
        .create_linked("PROJ-1", "backlog:j1:f3", "Follow-up", "Details")
        .await
        .unwrap();
    assert_eq!(key, "PROJ-2");
    assert!(lines(&fake.requests()).contains(&"GET /rest/api/3/issue/SECRET-1".to_string()));
}

#[tokio::test]
async fn rate_limit_holds_the_next_request() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    fake.inject(Fault {
        method: "GET".into(),
        path: "/rest/api/3/issue/PROJ-1".into(),
        kind: FaultKind::RateLimit {
            retry_after_secs: 1,
        },
    });
    let issue = jira.issue("PROJ-1").await.unwrap();
    assert_eq!(issue.title, "t");
    let reqs = fake.requests();
    assert_eq!(reqs[0].line(), "GET /rest/api/3/issue/PROJ-1");
    assert_eq!(reqs[1].line(), "GET /rest/api/3/issue/PROJ-1");
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
}

#[tokio::test]
async fn data_center_sends_a_bearer_token() {
    let fake = FakeJira::start(FakeJiraOptions {
        auth: FakeJiraAuth::Bearer("dc-token".into()),
        ..FakeJiraOptions::default()
    })
    .await
    .unwrap();
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    let mut s = settings(&fake.url());
    s.auth = JiraAuth::DataCenter;
    s.email_env = None;
    s.token_env = "JIRA_DC_TOKEN".into();
    let jira = Jira::new(&s, &env, policy()).unwrap();
    jira.issue("PROJ-1").await.unwrap();
    for req in fake.requests() {
        assert_eq!(req.header("authorization"), Some("Bearer dc-token"));
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_401_that_names_the_request_not_the_token() {
    let fake = FakeJira::start(FakeJiraOptions::default()).await.unwrap();
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    let wrong = |name: &str| match name {
        "JIRA_EMAIL" => Some(EMAIL.to_string()),
        "JIRA_TOKEN" => Some("wrong-secret-token".to_string()),
        _ => None,
    };
    let jira = Jira::new(&settings(&fake.url()), &wrong, policy()).unwrap();
    let err = jira.issue("PROJ-1").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err:?}");
    assert!(
        text.contains("jira GET /rest/api/3/issue/PROJ-1: HTTP 401"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-token"), "{text}");
    assert!(!format!("{jira:?}").contains("wrong-secret-token"));
    assert!(!format!("{jira:?}").contains(EMAIL));
}

#[test]
fn missing_credentials_name_the_variable() {
    let none = |_: &str| -> Option<String> { None };
    let err = Jira::new(&settings("https://x.atlassian.net"), &none, policy()).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("JIRA_TOKEN"), "{err}");
    assert!(err.to_string().contains("jira.token_env"), "{err}");

    let token_only = |name: &str| (name == "JIRA_TOKEN").then(|| TOKEN.to_string());
    let err = Jira::new(&settings("https://x.atlassian.net"), &token_only, policy()).unwrap_err();
    assert!(err.to_string().contains("JIRA_EMAIL"), "{err}");

    let mut s = settings("https://x.atlassian.net");
    s.email_env = None;
    let err = Jira::new(&s, &env, policy()).unwrap_err();
    assert!(err.to_string().contains("jira.email_env"), "{err}");

    let err = Jira::new(&settings("x.atlassian.net"), &env, policy()).unwrap_err();
    assert!(err.to_string().contains("base_url"), "{err}");
    assert_eq!(
        Jira::new(&settings("https://x.atlassian.net"), &env, policy())
            .unwrap()
            .vendor(),
        "jira"
    );
}

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

// ───────────────────────────── webhooks ─────────────────────────────

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/jira/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn verify_hmac_signatures() {
    let body = fixture("issue_updated.json");
    let now = chrono::Utc::now();
    let kind = WebhookAuthKind::Hmac;
    let good = headers(&[("x-hub-signature", &hub_signature(b"whsec", &body))]);
    assert_eq!(verify_webhook(kind, "whsec", &good, &body, now), Ok(()));
    assert_eq!(
        verify_webhook(kind, "other", &good, &body, now),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        verify_webhook(kind, "whsec", &good, &tampered, now),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verify_webhook(kind, "whsec", &HeaderMap::new(), &body, now),
        Err(VerifyError::Missing("X-Hub-Signature"))
    );
    let junk = headers(&[("x-hub-signature", "sha256=zz")]);
    assert_eq!(
        verify_webhook(kind, "whsec", &junk, &body, now),
        Err(VerifyError::Malformed("signature"))
    );
}

#[test]
fn verify_shared_tokens() {
    let now = chrono::Utc::now();
    let kind = WebhookAuthKind::Token;
    let body = b"{}";
    for good in [
        headers(&[("authorization", "Bearer tok-123")]),
        headers(&[("x-codemill-token", "tok-123")]),
    ] {
        assert_eq!(verify_webhook(kind, "tok-123", &good, body, now), Ok(()));
    }
    assert_eq!(
        verify_webhook(
            kind,
            "tok-123",
            &headers(&[("authorization", "Bearer tok-124")]),
            body,
            now
        ),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verify_webhook(
            kind,
            "tok-123",
            &headers(&[("x-codemill-token", "tok-12")]),
            body,
            now
        ),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        verify_webhook(kind, "tok-123", &HeaderMap::new(), body, now),
        Err(VerifyError::Missing(_))
    ));
}

fn jwt(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn verify_jwts() {
    let now = chrono::Utc::now();
    let ts = now.timestamp();
    let kind = WebhookAuthKind::Jwt;
    let body = fixture("comment_created.json");
    let good = jwt(
        "jwt-secret",
        json!({"iss": "jira", "iat": ts, "exp": ts + 180}),
    );
    for scheme in ["JWT", "Bearer"] {
        let h = headers(&[("authorization", &format!("{scheme} {good}"))]);
        assert_eq!(
            verify_webhook(kind, "jwt-secret", &h, &body, now),
            Ok(()),
            "{scheme}"
        );
    }
    let h = headers(&[("authorization", &format!("JWT {good}"))]);
    assert_eq!(
        verify_webhook(kind, "another-secret", &h, &body, now),
        Err(VerifyError::Mismatch)
    );
    let expired = jwt("jwt-secret", json!({"iat": ts - 3600, "exp": ts - 600}));
    let h = headers(&[("authorization", &format!("JWT {expired}"))]);
    assert_eq!(
        verify_webhook(kind, "jwt-secret", &h, &body, now),
        Err(VerifyError::Expired)
    );
    // `exp` is judged against the `now` given, not the wall clock.
    assert_eq!(
        verify_webhook(
            kind,
            "jwt-secret",
            &h,
            &body,
            now - chrono::Duration::hours(1)
        ),
        Ok(())
    );
    let no_exp = jwt("jwt-secret", json!({"iat": ts}));
    let h = headers(&[("authorization", &format!("JWT {no_exp}"))]);
    assert!(matches!(
        verify_webhook(kind, "jwt-secret", &h, &body, now),
        Err(VerifyError::Malformed(_))
    ));
    assert_eq!(
        verify_webhook(kind, "jwt-secret", &HeaderMap::new(), &body, now),
        Err(VerifyError::Missing("Authorization"))
    );
    let h = headers(&[("authorization", "JWT not.a.jwt")]);
    assert!(matches!(
        verify_webhook(kind, "jwt-secret", &h, &body, now),
        Err(VerifyError::Malformed(_))
    ));
}

fn issue_hint(key: &str, actor: &str) -> Hint {
    Hint::Issue {
        key: key.into(),
        actor: Some(actor.into()),
    }
}

#[test]
fn parse_documented_payloads() {
    let parse = |name: &str| parse_webhook(&fixture(name)).unwrap();
    assert_eq!(
        parse("issue_updated.json"),
        issue_hint("PROJ-3", "5b10a2844c20165700ede21g")
    );
    assert_eq!(
        parse("issue_created.json"),
        issue_hint("PROJ-11", "557058:c82541a6-006f-47f8-bc50-2aef4d908566")
    );
    assert_eq!(
        parse("comment_created.json"),
        issue_hint("PROJ-3", "5b10a2844c20165700ede21g")
    );
    assert_eq!(
        parse("comment_created_wiki.json"),
        issue_hint("PROJ-42", "557058:93f71831-7090-4c70-ab8e-c9a5c9aa2d8e")
    );
    // An edit is acted on as its editor.
    assert_eq!(
        parse("comment_updated_by_other.json"),
        issue_hint("PROJ-3", "5b1a2b3c4d5e6f7a8b9c0d1e")
    );
    for own in [
        "comment_created_codemill_wiki.json",
        "comment_updated_codemill.json",
    ] {
        assert!(matches!(parse(own), Hint::Ignored { .. }), "{own}");
    }
    for other in ["sprint_started.json", "issue_deleted.json"] {
        let Hint::Ignored { reason } = parse(other) else {
            panic!("{other}")
        };
        assert!(reason.contains("not one codemill acts on"), "{reason}");
    }
    assert!(parse_webhook(b"{not json").is_err());
    assert!(parse_webhook(b"[1, 2]").is_err());
    assert!(parse_webhook(br#"{"webhookEvent": "jira:issue_updated", "issue": {}}"#).is_err());
    assert!(matches!(
        parse_webhook(b"{}").unwrap(),
        Hint::Ignored { .. }
    ));
}

#[tokio::test]
async fn the_fakes_webhooks_parse() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-5", "t", adf_text("body"), "To Do", &["codemill"]);
    let update = fake.webhook_issue_updated("PROJ-5", "5b10-human");
    assert_eq!(update["issue"]["fields"]["labels"], json!(["codemill"]));
    assert_eq!(
        parse_webhook(update.to_string().as_bytes()).unwrap(),
        issue_hint("PROJ-5", "5b10-human")
    );
    let created = fake.webhook_issue_created("PROJ-5", "5b10-human");
    assert_eq!(created["webhookEvent"], "jira:issue_created");

    let human = fake.add_comment("PROJ-5", "5b10-human", json!("go ahead"));
    let delivery = fake.webhook_comment_created("PROJ-5", &human);
    assert_eq!(
        parse_webhook(delivery.to_string().as_bytes()).unwrap(),
        issue_hint("PROJ-5", "5b10-human")
    );

    jira.upsert_comment("PROJ-5", "codemill:j9:plan", "The plan.")
        .await
        .unwrap();
    let own = fake.comments("PROJ-5")[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let delivery = fake.webhook_comment_updated("PROJ-5", &own);
    assert!(matches!(
        parse_webhook(delivery.to_string().as_bytes()).unwrap(),
        Hint::Ignored { .. }
    ));
}

#[test]
fn adf_and_markdown_meet_in_the_middle() {
    let md =
        "# Title\n\nText with [a link](https://example.com) and ~~old~~ words.\n\n> note\n\n---";
    assert_eq!(adf_to_markdown(&markdown_to_adf(md)), md);
}
