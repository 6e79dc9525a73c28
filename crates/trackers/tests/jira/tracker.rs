//! The Jira tracker: triggered issues across search pages, issues with fields, comments, links
//! and sub-tasks, comments upserted by marker, labels, transitions through the workflow, and
//! linked backlog issues, each written once even when a write fails after it was applied.

use codemill_core::pipeline::TicketStatus;
use codemill_testkit::fakes::{Fault, FaultKind};
use codemill_trackers::jira::{adf_to_markdown, markdown_to_adf};
use codemill_trackers::{Error, Tracker};
use serde_json::{Value, json};

use crate::{ACCEPTANCE, assert_request, comment_query, lines, q, query, settings, setup};

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

    let mut reqs = fake.requests();
    // Three pages of the build search, then one of ideas to refine.
    assert_eq!(reqs.len(), 4, "{:?}", lines(&reqs));
    let refine = reqs.pop().unwrap();
    assert_eq!(
        refine.body["jql"],
        json!(
            r#"project = "PROJ" AND status = "To Do" AND labels = "codemill:refine" ORDER BY created ASC"#
        )
    );
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

#[test]
fn adf_and_markdown_meet_in_the_middle() {
    let md =
        "# Title\n\nText with [a link](https://example.com) and ~~old~~ words.\n\n> note\n\n---";
    assert_eq!(adf_to_markdown(&markdown_to_adf(md)), md);
}

#[tokio::test]
async fn create_issue_after_an_applied_500_makes_one_labelled_issue() {
    let (fake, jira) = setup().await;
    fake.inject(Fault {
        method: "POST".into(),
        path: "/rest/api/3/issue".into(),
        kind: FaultKind::AfterApply(500),
    });
    let key = jira
        .create_issue(
            "codemill:draft:1",
            "Add SSO",
            "Log in with OIDC.",
            "codemill:refine",
        )
        .await
        .unwrap();
    assert_eq!(key, "PROJ-1");
    assert_eq!(fake.issue_keys(), ["PROJ-1"]);
    assert_eq!(fake.labels_of("PROJ-1"), ["codemill:refine"]);
    assert!(fake.links_of("PROJ-1").is_empty(), "standalone");
}
