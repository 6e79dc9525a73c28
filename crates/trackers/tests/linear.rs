//! The Linear tracker against the fake Linear GraphQL server: every operation's request checked
//! field by field, pagination, idempotent writes under injected faults, rate limits, and webhook
//! verification and parsing on payloads shaped like Linear's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use codemill_core::config::vendors::{LinearSettings, StatusMap};
use codemill_core::pipeline::TicketStatus;
use codemill_testkit::fakes::linear::{FakeLinear, FakeLinearOptions, sign};
use codemill_testkit::fakes::{Fault, FaultKind, RecordedRequest};
use codemill_trackers::linear::{Linear, parse_webhook, verify_webhook};
use codemill_trackers::webhook::{Hint, VerifyError};
use codemill_trackers::{Error, RetryPolicy, Tracker};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const KEY: &str = "lin_api_test_key_0123456789";
const MARKER_LINE: &str = "\n\n---\n_codemill · [codemill:status]_";

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_wait: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

fn settings(url: &str) -> LinearSettings {
    LinearSettings {
        api_url: url.to_string(),
        token_env: "LINEAR_API_KEY".into(),
        team_key: "ENG".into(),
        trigger_state: "Todo".into(),
        trigger_label: "codemill".into(),
        states: StatusMap {
            in_progress: Some("In Progress".into()),
            in_review: Some("In Review".into()),
            done: Some("Done".into()),
            rejected: Some("Shipped to the moon".into()),
            ..StatusMap::default()
        },
        webhook: None,
    }
}

fn env(name: &str) -> Option<String> {
    (name == "LINEAR_API_KEY").then(|| KEY.to_string())
}

async fn setup_with(page_size: usize, policy: RetryPolicy) -> (FakeLinear, Linear) {
    let fake = FakeLinear::start(FakeLinearOptions {
        api_key: KEY.into(),
        page_size,
        labels: vec!["bug".into(), "old".into()],
        workspace_labels: vec!["codemill".into()],
        ..FakeLinearOptions::default()
    })
    .await
    .unwrap();
    let linear = Linear::new(&settings(&fake.url()), &env, policy).unwrap();
    (fake, linear)
}

async fn setup() -> (FakeLinear, Linear) {
    setup_with(2, policy()).await
}

fn op(r: &RecordedRequest) -> &str {
    r.body["operationName"].as_str().unwrap_or_default()
}

fn query(r: &RecordedRequest) -> &str {
    r.body["query"].as_str().unwrap_or_default()
}

fn vars(r: &RecordedRequest) -> &Value {
    &r.body["variables"]
}

/// Every request: POST /graphql, the API key as is, JSON, a named operation whose name is in
/// the query text, and no value spliced into the text.
fn assert_wire(requests: &[RecordedRequest]) {
    for r in requests {
        assert_eq!(r.line(), "POST /graphql");
        assert_eq!(r.header("authorization"), Some(KEY), "no Bearer prefix");
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json")
        );
        let name = op(r);
        assert!(name.starts_with("Codemill"), "{name}");
        let q = query(r);
        assert!(
            q.starts_with(&format!("query {name}(")) || q.starts_with(&format!("mutation {name}(")),
            "{q}"
        );
        assert!(!q.contains('"'), "values travel as variables: {q}");
    }
}

fn selects(r: &RecordedRequest, fields: &[&str]) {
    let q = query(r);
    for f in fields {
        assert!(q.contains(f), "{} does not select {f}: {q}", op(r));
    }
}

#[tokio::test]
async fn new_needs_the_key_and_debug_hides_it() {
    let s = settings("https://api.linear.app/graphql");
    let none = |_: &str| None;
    let err = Linear::new(&s, &none, policy()).unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    assert!(err.to_string().contains("LINEAR_API_KEY"), "{err}");
    let linear = Linear::new(&s, &env, policy()).unwrap();
    assert_eq!(linear.vendor(), "linear");
    let debug = format!("{linear:?}");
    assert!(!debug.contains(KEY), "{debug}");
    let mut bad = s.clone();
    bad.api_url = "api.linear.app/graphql".into();
    assert!(matches!(
        Linear::new(&bad, &env, policy()),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn triggered_follows_every_page_of_the_team_state_and_label() {
    let (fake, linear) = setup().await;
    let mut expected = Vec::new();
    for n in 0..5 {
        expected.push(fake.add_issue(&format!("ready {n}"), "", "Todo", &["codemill"]));
    }
    fake.add_issue("no label", "", "Todo", &["bug"]);
    fake.add_issue("wrong state", "", "Backlog", &["codemill"]);
    fake.add_issue("ready too", "", "Todo", &["bug", "codemill"]);
    expected.push("ENG-8".into());

    let keys = linear.triggered().await.unwrap();
    assert_eq!(keys, expected);

    let requests = fake.requests();
    assert_wire(&requests);
    assert_eq!(requests.len(), 3, "6 issues in pages of 2");
    let filter = json!({
        "team": {"key": {"eq": "ENG"}},
        "state": {"name": {"eq": "Todo"}},
        "labels": {"name": {"eq": "codemill"}},
    });
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(op(r), "CodemillTriggered");
        selects(
            r,
            &[
                "issues(filter: $filter, first: $first, after: $after)",
                "identifier",
                "pageInfo { hasNextPage endCursor }",
            ],
        );
        assert_eq!(vars(r)["filter"], filter);
        assert_eq!(vars(r)["first"], json!(50));
        // The cursor is the id of the last issue of the page before.
        let after = match i {
            0 => Value::Null,
            _ => fake.issue(&keys[2 * i - 1])["id"].clone(),
        };
        assert_eq!(vars(r)["after"], after);
    }
}

#[tokio::test]
async fn issue_reads_every_field_and_every_comment_page() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue(
        "Add a health endpoint",
        "Expose `/healthz`.\n\n- returns 200",
        "Todo",
        &["codemill", "bug"],
    );
    let blocker = fake.add_issue("Set up the router", "", "Done", &[]);
    let related = fake.add_issue("Metrics", "", "Backlog", &[]);
    fake.add_relation(&blocker, &key, "blocks");
    fake.add_relation(&key, &related, "related");
    let child = fake.add_child(&key, "Write the handler", "In Progress");
    fake.set_assignee(&key, "ada@example.com");
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(fake.add_comment(&key, "Grace Hopper", &format!("note {n}")));
    }
    ids.push(fake.add_comment(&key, "codemill", &format!("status{MARKER_LINE}")));

    let issue = linear.issue(&key).await.unwrap();
    assert_eq!(issue.key, "ENG-1");
    assert_eq!(issue.number, 1);
    assert_eq!(
        issue.url,
        "https://linear.app/acme/issue/ENG-1/add-a-health-endpoint"
    );
    assert_eq!(issue.title, "Add a health endpoint");
    assert_eq!(issue.body, "Expose `/healthz`.\n\n- returns 200");
    assert_eq!(issue.status, "Todo");
    assert_eq!(issue.labels, vec!["codemill", "bug"]);
    assert_eq!(issue.assignees, vec!["ada@example.com"]);
    assert_eq!(issue.acceptance_criteria, None);
    assert_eq!(
        issue.links,
        vec![
            format!("related {related}: Metrics"),
            format!("blocked by {blocker}: Set up the router"),
        ]
    );
    assert_eq!(
        issue.subtasks,
        vec![format!("{child}: Write the handler (In Progress)")]
    );
    let got: Vec<&str> = issue.comments.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(got, ids, "every comment, oldest first");
    assert_eq!(issue.comments[0].body, "note 0");
    assert_eq!(issue.comments[0].author, fake.user_id("Grace Hopper"));
    assert!(!issue.comments[0].by_codemill);
    assert!(issue.comments[4].by_codemill);

    let requests = fake.requests();
    assert_wire(&requests);
    let ops: Vec<&str> = requests.iter().map(op).collect();
    assert_eq!(
        ops,
        vec!["CodemillIssue", "CodemillComments", "CodemillComments"]
    );
    assert_eq!(vars(&requests[0]), &json!({"id": "ENG-1", "first": 50}));
    selects(
        &requests[0],
        &[
            "issue(id: $id)",
            "identifier",
            "number",
            "url",
            "title",
            "description",
            "state { name }",
            "labels(first: 100) { nodes { id name } }",
            "assignee { id email }",
            "comments(first: $first)",
            "user { id email name }",
            "relations(first: 100) { nodes { type relatedIssue { identifier title } } }",
            "inverseRelations(first: 100) { nodes { type issue { identifier title } } }",
            "children(first: 100) { nodes { identifier title state { name } } }",
        ],
    );
    // Comments come newest first: page 1 holds the two newest; the cursor is the last node's id.
    assert_eq!(vars(&requests[1])["after"], json!(ids[3]));
    assert_eq!(vars(&requests[2])["after"], json!(ids[1]));
    assert_eq!(vars(&requests[1])["id"], json!("ENG-1"));
}

#[tokio::test]
async fn an_unknown_issue_is_not_found() {
    let (fake, linear) = setup().await;
    let err = linear.issue("ENG-404").await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(err.to_string().contains("CodemillIssue"), "{err}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_graphql_error_names_the_operation_and_the_message() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue("t", "", "Todo", &[]);
    fake.inject_error(
        "CodemillIssue",
        "Argument Validation Error",
        "INVALID_INPUT",
    );
    let err = linear.issue(&key).await.unwrap_err();
    match &err {
        Error::Protocol { vendor, message } => {
            assert_eq!(*vendor, "linear");
            assert!(message.contains("CodemillIssue"), "{message}");
            assert!(message.contains("Argument Validation Error"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains(KEY));
}

#[tokio::test]
async fn a_wrong_key_is_refused_without_showing_it() {
    let fake = FakeLinear::start(FakeLinearOptions::default())
        .await
        .unwrap();
    let linear = Linear::new(&settings(&fake.url()), &env, policy()).unwrap();
    let err = linear.triggered().await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("CodemillTriggered") && text.contains("AUTHENTICATION_ERROR"),
        "{text}"
    );
    assert!(!text.contains(KEY));
}

#[tokio::test]
async fn upsert_comment_creates_then_edits_in_place_then_rests() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue("t", "", "Todo", &["codemill"]);
    for n in 0..3 {
        fake.add_comment(&key, "Grace Hopper", &format!("human {n}"));
    }

    linear
        .upsert_comment(&key, "codemill:status", "Planning.")
        .await
        .unwrap();
    let requests = fake.requests();
    assert_wire(&requests);
    let ops: Vec<&str> = requests.iter().map(op).collect();
    assert_eq!(
        ops,
        vec![
            "CodemillComments",
            "CodemillComments",
            "CodemillCommentCreate"
        ]
    );
    selects(
        &requests[0],
        &[
            "issue(id: $id)",
            "id",
            "comments(first: $first, after: $after)",
            "body",
        ],
    );
    let issue_id = fake.issue(&key)["id"].clone();
    let create = &requests[2];
    selects(create, &["commentCreate(input: $input)", "success"]);
    assert_eq!(
        vars(create),
        &json!({"input": {"issueId": issue_id, "body": format!("Planning.{MARKER_LINE}")}})
    );
    let comments = fake.comments(&key);
    assert_eq!(comments.len(), 4);
    let ours = comments[3].clone();
    assert_eq!(ours["user"]["id"], json!(fake.viewer_id()));

    // Two humans comment after it, so codemill's comment is on the last page now.
    fake.add_comment(&key, "Grace Hopper", "human 3");
    fake.add_comment(&key, "Grace Hopper", "human 4");
    fake.clear_requests();
    linear
        .upsert_comment(&key, "codemill:status", "Implementing.")
        .await
        .unwrap();
    let requests = fake.requests();
    let ops: Vec<&str> = requests.iter().map(op).collect();
    assert_eq!(ops.last(), Some(&"CodemillCommentUpdate"));
    assert_eq!(ops.iter().filter(|o| **o == "CodemillComments").count(), 3);
    let update = requests.last().unwrap();
    selects(
        update,
        &["commentUpdate(id: $id, input: $input)", "success"],
    );
    assert_eq!(
        vars(update),
        &json!({"id": ours["id"], "input": {"body": format!("Implementing.{MARKER_LINE}")}})
    );
    let comments = fake.comments(&key);
    assert_eq!(comments.len(), 6, "edited in place, not added");
    assert_eq!(comments[3]["id"], ours["id"]);
    assert_eq!(
        comments[3]["body"],
        json!(format!("Implementing.{MARKER_LINE}"))
    );

    fake.clear_requests();
    linear
        .upsert_comment(&key, "codemill:status", "Implementing.")
        .await
        .unwrap();
    assert!(
        fake.operations().iter().all(|o| o == "CodemillComments"),
        "identical text: no mutation"
    );
}

#[tokio::test]
async fn a_5xx_after_comment_create_is_retried_into_exactly_one_comment() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue("t", "", "Todo", &[]);
    fake.inject_on("commentCreate", FaultKind::AfterApply(500));
    linear
        .upsert_comment(&key, "codemill:status", "Planning.")
        .await
        .unwrap();
    let comments = fake.comments(&key);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(
        fake.operations(),
        vec![
            "CodemillComments",
            "CodemillCommentCreate",
            "CodemillComments"
        ]
    );
}

#[tokio::test]
async fn a_create_refused_before_it_applies_is_made_on_the_retry() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue("t", "", "Todo", &[]);
    fake.inject_on("CodemillCommentCreate", FaultKind::Before(503));
    linear
        .upsert_comment(&key, "codemill:status", "Planning.")
        .await
        .unwrap();
    assert_eq!(fake.comments(&key).len(), 1);
}

#[tokio::test]
async fn set_labels_adds_creates_and_removes_one_label_at_a_time() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue("t", "", "Todo", &["bug", "old"]);
    let issue_id = fake.issue(&key)["id"].clone();

    linear
        .set_labels(&key, &["codemill", "bug", "fresh"], &["old", "absent"])
        .await
        .unwrap();
    let mut labels = fake.labels_of(&key);
    labels.sort();
    assert_eq!(labels, vec!["bug", "codemill", "fresh"]);
    assert!(
        fake.labels().contains(&("fresh".to_string(), true)),
        "created as a team label"
    );
    assert!(
        fake.labels().contains(&("codemill".to_string(), false)),
        "the workspace label reused"
    );

    let requests = fake.requests();
    assert_wire(&requests);
    let ops: Vec<&str> = requests.iter().map(op).collect();
    assert_eq!(
        ops,
        vec![
            "CodemillIssueLabels",
            "CodemillLabels",
            "CodemillTeam",
            "CodemillLabelCreate",
            "CodemillAddLabel",
            "CodemillAddLabel",
            "CodemillRemoveLabel",
        ]
    );
    assert_eq!(vars(&requests[0]), &json!({"id": key}));
    selects(
        &requests[0],
        &["issue(id: $id)", "labels(first: 250) { nodes { id name } }"],
    );
    assert_eq!(
        vars(&requests[1])["filter"],
        json!({"or": [{"name": {"eqIgnoreCase": "codemill"}}, {"name": {"eqIgnoreCase": "fresh"}}]})
    );
    selects(
        &requests[1],
        &[
            "issueLabels(filter: $filter, first: $first, after: $after)",
            "team { key }",
        ],
    );
    assert_eq!(
        vars(&requests[2]),
        &json!({"filter": {"key": {"eq": "ENG"}}})
    );
    assert_eq!(
        vars(&requests[3]),
        &json!({"input": {"name": "fresh", "teamId": fake.team_id()}})
    );
    for r in &requests[4..6] {
        assert_eq!(vars(r)["id"], issue_id);
        assert!(vars(r)["labelId"].is_string());
        selects(r, &["issueAddLabel(id: $id, labelId: $labelId)", "success"]);
    }
    assert_eq!(vars(&requests[6])["id"], issue_id);
    selects(
        &requests[6],
        &["issueRemoveLabel(id: $id, labelId: $labelId)"],
    );

    // Present labels added and absent ones removed: a look, no mutation.
    fake.clear_requests();
    linear
        .set_labels(&key, &["bug", "CODEMILL"], &["absent"])
        .await
        .unwrap();
    assert_eq!(fake.operations(), vec!["CodemillIssueLabels"]);
    fake.clear_requests();
    linear.set_labels(&key, &[], &[]).await.unwrap();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn transition_moves_to_the_mapped_state_once() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue("t", "", "Todo", &[]);
    let issue_id = fake.issue(&key)["id"].clone();

    linear
        .transition(&key, TicketStatus::InProgress)
        .await
        .unwrap();
    assert_eq!(fake.state_of(&key), "In Progress");
    let requests = fake.requests();
    assert_wire(&requests);
    let ops: Vec<&str> = requests.iter().map(op).collect();
    assert_eq!(
        ops,
        vec![
            "CodemillIssueState",
            "CodemillWorkflowStates",
            "CodemillWorkflowStates",
            "CodemillWorkflowStates",
            "CodemillIssueUpdate"
        ],
        "six states in pages of two"
    );
    assert_eq!(vars(&requests[0]), &json!({"id": key}));
    selects(&requests[0], &["issue(id: $id) { id state { id name } }"]);
    assert_eq!(
        vars(&requests[1]),
        &json!({"filter": {"team": {"key": {"eq": "ENG"}}}, "first": 50, "after": null})
    );
    selects(
        &requests[1],
        &[
            "workflowStates(filter: $filter, first: $first, after: $after)",
            "nodes { id name type }",
        ],
    );
    let update = requests.last().unwrap();
    selects(update, &["issueUpdate(id: $id, input: $input)", "success"]);
    assert_eq!(
        vars(update),
        &json!({"id": issue_id, "input": {"stateId": fake.state_id("In Progress").unwrap()}})
    );

    // Already there: one look. Unmapped: nothing at all.
    fake.clear_requests();
    linear
        .transition(&key, TicketStatus::InProgress)
        .await
        .unwrap();
    assert_eq!(fake.operations(), vec!["CodemillIssueState"]);
    fake.clear_requests();
    linear
        .transition(&key, TicketStatus::NeedsInput)
        .await
        .unwrap();
    assert!(fake.requests().is_empty());

    // A mapped name the team lacks: not found, listing the states it has.
    let err = linear
        .transition(&key, TicketStatus::Rejected)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::NotFound(_)), "{text}");
    assert!(
        text.contains("Shipped to the moon")
            && text.contains("Backlog, Todo, In Progress, In Review, Done, Canceled"),
        "{text}"
    );
    assert_eq!(fake.state_of(&key), "In Progress");

    linear.transition(&key, TicketStatus::Done).await.unwrap();
    assert_eq!(fake.state_of(&key), "Done");
}

#[tokio::test]
async fn create_linked_creates_relates_and_finds_it_again() {
    let (fake, linear) = setup().await;
    let parent = fake.add_issue("Parent", "", "In Review", &[]);
    let parent_id = fake.issue(&parent)["id"].clone();
    let marker = "codemill:backlog:ENG-1:ab12";

    let created = linear
        .create_linked(&parent, marker, "Log the request id", "Found in review.")
        .await
        .unwrap();
    assert_eq!(created, "ENG-2");
    let issue = fake.issue(&created);
    assert_eq!(issue["title"], json!("Log the request id"));
    assert_eq!(
        issue["description"],
        json!(format!("Found in review.\n\n---\n_codemill · [{marker}]_"))
    );
    assert_eq!(
        fake.relations_of(&created),
        vec![("related".to_string(), parent.clone())]
    );

    let requests = fake.requests();
    assert_wire(&requests);
    let ops: Vec<&str> = requests.iter().map(op).collect();
    assert_eq!(
        ops,
        vec![
            "CodemillIssueRef",
            "CodemillFindByMarker",
            "CodemillTeam",
            "CodemillIssueCreate",
            "CodemillRelationCreate"
        ]
    );
    assert_eq!(vars(&requests[0]), &json!({"id": parent}));
    assert_eq!(
        vars(&requests[1])["filter"],
        json!({"team": {"key": {"eq": "ENG"}}, "description": {"contains": marker}})
    );
    selects(
        &requests[1],
        &[
            "issues(filter: $filter, first: $first, after: $after)",
            "description",
            "relatedIssue { id }",
            "pageInfo { hasNextPage endCursor }",
        ],
    );
    let create = &requests[3];
    selects(
        create,
        &["issueCreate(input: $input)", "success", "identifier"],
    );
    assert_eq!(
        vars(create),
        &json!({"input": {
            "teamId": fake.team_id(),
            "title": "Log the request id",
            "description": issue["description"],
        }})
    );
    let relate = &requests[4];
    selects(relate, &["issueRelationCreate(input: $input)", "success"]);
    assert_eq!(
        vars(relate),
        &json!({"input": {"issueId": issue["id"], "relatedIssueId": parent_id, "type": "related"}})
    );

    fake.clear_requests();
    let again = linear
        .create_linked(&parent, marker, "Log the request id", "Found in review.")
        .await
        .unwrap();
    assert_eq!(again, created);
    assert_eq!(
        fake.operations(),
        vec!["CodemillIssueRef", "CodemillFindByMarker"]
    );
    assert_eq!(fake.issues().len(), 2);
}

#[tokio::test]
async fn a_5xx_after_issue_create_is_retried_into_exactly_one_related_issue() {
    let (fake, linear) = setup().await;
    let parent = fake.add_issue("Parent", "", "In Review", &[]);
    fake.inject_on("issueCreate", FaultKind::AfterApply(500));
    let created = linear
        .create_linked(&parent, "codemill:backlog:x", "Follow-up", "Body")
        .await
        .unwrap();
    assert_eq!(fake.issues(), vec![parent.clone(), created.clone()]);
    assert_eq!(
        fake.relations_of(&created),
        vec![("related".to_string(), parent)]
    );
    let ops = fake.operations();
    assert_eq!(
        ops.iter().filter(|o| *o == "CodemillIssueCreate").count(),
        1
    );
    assert_eq!(
        ops.iter()
            .filter(|o| *o == "CodemillRelationCreate")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_5xx_after_the_relation_is_retried_without_a_second_relation() {
    let (fake, linear) = setup().await;
    let parent = fake.add_issue("Parent", "", "In Review", &[]);
    fake.inject_on("issueRelationCreate", FaultKind::AfterApply(502));
    let created = linear
        .create_linked(&parent, "codemill:backlog:y", "Follow-up", "Body")
        .await
        .unwrap();
    assert_eq!(fake.relations_of(&created).len(), 1);
    assert_eq!(fake.issues().len(), 2);
}

#[tokio::test]
async fn linear_ratelimited_400_is_waited_out_then_retried() {
    let mut p = policy();
    p.base_delay = Duration::from_millis(200);
    p.max_delay = Duration::from_millis(400);
    let (fake, linear) = setup_with(50, p).await;
    fake.add_issue("ready", "", "Todo", &["codemill"]);
    fake.ratelimit_next(1);
    let keys = linear.triggered().await.unwrap();
    assert_eq!(keys, vec!["ENG-1"]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "refused once, then answered");
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(190), "{gap:?}");
    assert_eq!(requests[0].body, requests[1].body);
}

#[tokio::test]
async fn linear_ratelimited_that_never_lifts_is_a_transient_error() {
    let mut p = policy();
    p.attempts = 2;
    let (fake, linear) = setup_with(50, p).await;
    let key = fake.add_issue("t", "", "Todo", &[]);
    fake.ratelimit_next(5);
    let err = linear
        .upsert_comment(&key, "codemill:status", "x")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("RATELIMITED"), "{err}");
    assert!(fake.comments(&key).is_empty());
}

#[tokio::test]
async fn http_429_retry_after_holds_the_next_request() {
    let (fake, linear) = setup_with(50, policy()).await;
    fake.add_issue("ready", "", "Todo", &["codemill"]);
    fake.inject(Fault {
        method: "POST".into(),
        path: "/graphql".into(),
        kind: FaultKind::RateLimit {
            retry_after_secs: 1,
        },
    });
    assert_eq!(linear.triggered().await.unwrap(), vec!["ENG-1"]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
}

#[tokio::test]
async fn a_spent_budget_holds_the_next_request_until_the_reset() {
    let (fake, linear) = setup_with(50, policy()).await;
    let key = fake.add_issue("ready", "", "Todo", &["codemill"]);
    fake.exhaust_budget(Duration::from_millis(800));
    linear.triggered().await.unwrap();
    linear.issue(&key).await.unwrap();
    let requests = fake.requests();
    assert_eq!(
        requests.len(),
        2,
        "the client waited for the reset instead of being refused"
    );
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(600), "{gap:?}");
}

// ── webhooks ────────────────────────────────────────────────────────────

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/linear/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn timestamp_of(body: &[u8]) -> chrono::DateTime<chrono::Utc> {
    let v: Value = serde_json::from_slice(body).unwrap();
    chrono::DateTime::from_timestamp_millis(v["webhookTimestamp"].as_i64().unwrap()).unwrap()
}

fn signed(secret: &str, body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "linear-signature",
        HeaderValue::from_str(&sign(secret, body)).unwrap(),
    );
    h.insert("linear-event", HeaderValue::from_static("Issue"));
    h
}

#[test]
fn webhook_verification_checks_signature_and_age() {
    let secret = "lin_wh_secret";
    let body = fixture("issue_update.json");
    let sent = timestamp_of(&body);
    let headers = signed(secret, &body);

    assert_eq!(verify_webhook(secret, &headers, &body, sent), Ok(()));
    let later = sent + chrono::Duration::seconds(59);
    assert_eq!(verify_webhook(secret, &headers, &body, later), Ok(()));

    assert_eq!(
        verify_webhook("another secret", &headers, &body, sent),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'7').unwrap();
    tampered[at] = b'8';
    assert_eq!(
        verify_webhook(secret, &headers, &tampered, sent),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        verify_webhook(secret, &HeaderMap::new(), &body, sent),
        Err(VerifyError::Missing(_))
    ));
    let mut bad = HeaderMap::new();
    bad.insert("linear-signature", HeaderValue::from_static("not-hex"));
    assert!(matches!(
        verify_webhook(secret, &bad, &body, sent),
        Err(VerifyError::Malformed(_))
    ));
    let stale = sent + chrono::Duration::seconds(61);
    assert_eq!(
        verify_webhook(secret, &headers, &body, stale),
        Err(VerifyError::Expired)
    );
    let early = sent - chrono::Duration::seconds(61);
    assert_eq!(
        verify_webhook(secret, &headers, &body, early),
        Err(VerifyError::Expired)
    );

    // A signed body without the timestamp is refused too.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v.as_object_mut().unwrap().remove("webhookTimestamp");
    let no_ts = serde_json::to_vec(&v).unwrap();
    assert!(matches!(
        verify_webhook(secret, &signed(secret, &no_ts), &no_ts, sent),
        Err(VerifyError::Missing(_))
    ));
}

#[test]
fn webhook_payloads_read_as_hints() {
    let ada = Some("2e7a5c1d-4b6f-4e1a-9c3d-7f8e9a0b1c2d".to_string());
    assert_eq!(
        parse_webhook(&fixture("issue_update.json")),
        Ok(Hint::Issue {
            key: "ENG-7".into(),
            actor: ada.clone()
        })
    );
    assert_eq!(
        parse_webhook(&fixture("issue_create.json")),
        Ok(Hint::Issue {
            key: "ENG-12".into(),
            actor: ada
        })
    );
    assert_eq!(
        parse_webhook(&fixture("comment_create.json")),
        Ok(Hint::Issue {
            key: "ENG-7".into(),
            actor: Some("8f9e0d1c-2b3a-4c5d-8e6f-7a8b9c0d1e2f".into())
        })
    );
    for ignored in [
        "comment_create_codemill.json",
        "issue_remove.json",
        "project_update.json",
    ] {
        match parse_webhook(&fixture(ignored)) {
            Ok(Hint::Ignored { reason }) => assert!(!reason.is_empty()),
            other => panic!("{ignored}: {other:?}"),
        }
    }
    assert!(parse_webhook(&fixture("issue_update_without_identifier.json")).is_err());
    assert!(parse_webhook(b"not json").is_err());
    assert!(parse_webhook(br#"{"action": "create", "data": {}}"#).is_err());
    assert!(
        parse_webhook(
            br#"{"type": "Issue", "action": "update", "data": {"identifier": "ENG-7; rm"}}"#
        )
        .is_err()
    );
}

/// Linear's documented Comment payload names the issue only by `data.issueId` (the comment's
/// `issue` is nullable and usually absent): the hint carries that id, which `issue()` reads.
#[test]
fn a_comment_names_its_issue_by_id_when_it_carries_no_issue() {
    let grace = Some("8f9e0d1c-2b3a-4c5d-8e6f-7a8b9c0d1e2f".to_string());
    let by_id = Hint::Issue {
        key: "9b2f6a0e-1c3d-4e5f-8a7b-6c5d4e3f2a1b".into(),
        actor: grace,
    };
    let documented = fixture("comment_create_documented.json");
    assert_eq!(parse_webhook(&documented), Ok(by_id.clone()));
    let mut v: Value = serde_json::from_slice(&documented).unwrap();
    v["data"]["issue"] = Value::Null;
    assert_eq!(
        parse_webhook(&serde_json::to_vec(&v).unwrap()),
        Ok(by_id),
        "issue: null"
    );

    // An issue without its identifier still names the issue by its id.
    v["data"]["issue"] = json!({"id": "9b2f6a0e-1c3d-4e5f-8a7b-6c5d4e3f2a1b"});
    v["data"].as_object_mut().unwrap().remove("issueId");
    assert_eq!(
        parse_webhook(&serde_json::to_vec(&v).unwrap()),
        Ok(Hint::Issue {
            key: "9b2f6a0e-1c3d-4e5f-8a7b-6c5d4e3f2a1b".into(),
            actor: Some("8f9e0d1c-2b3a-4c5d-8e6f-7a8b9c0d1e2f".into())
        }),
        "issue: {{id}}"
    );
    v["data"]["issue"] = Value::Null;

    // Still checked: an id that is not one is refused, codemill's own comment ignored.
    v["data"]["issueId"] = json!("9b2f6a0e; drop");
    assert!(parse_webhook(&serde_json::to_vec(&v).unwrap()).is_err());
    v["data"]["issueId"] = json!("9b2f6a0e-1c3d-4e5f-8a7b-6c5d4e3f2a1b");
    v["data"]["body"] = json!(format!("done{MARKER_LINE}"));
    assert!(matches!(
        parse_webhook(&serde_json::to_vec(&v).unwrap()),
        Ok(Hint::Ignored { .. })
    ));
}

/// The id from a Comment hint reads the same issue as its identifier.
#[tokio::test]
async fn an_issue_is_read_by_its_id_as_by_its_identifier() {
    let (fake, linear) = setup().await;
    let key = fake.add_issue("Add a health endpoint", "d", "Todo", &["codemill"]);
    let id = fake.issue(&key)["id"].as_str().unwrap().to_string();
    let mut v: Value = serde_json::from_slice(&fixture("comment_create_documented.json")).unwrap();
    v["data"]["issueId"] = json!(id);
    let Ok(Hint::Issue { key: hinted, .. }) = parse_webhook(&serde_json::to_vec(&v).unwrap())
    else {
        panic!("not an issue hint");
    };
    assert_eq!(hinted, id);
    let by_id = linear.issue(&hinted).await.unwrap();
    let by_identifier = linear.issue(&key).await.unwrap();
    assert_eq!(by_id.key, key);
    assert_eq!(by_id, by_identifier);
}

#[tokio::test]
async fn the_fakes_webhook_bodies_verify_and_parse() {
    let (fake, _linear) = setup().await;
    let key = fake.add_issue("t", "d", "Todo", &["codemill"]);
    let ada = fake.user_id("ada@example.com");

    let body = serde_json::to_vec(&fake.issue_webhook(&key, "update", &ada)).unwrap();
    verify_webhook("s", &signed("s", &body), &body, chrono::Utc::now()).unwrap();
    assert_eq!(
        parse_webhook(&body),
        Ok(Hint::Issue {
            key: key.clone(),
            actor: Some(ada.clone())
        })
    );

    let body = serde_json::to_vec(&fake.comment_webhook(&key, "please go", &ada)).unwrap();
    verify_webhook("s", &signed("s", &body), &body, chrono::Utc::now()).unwrap();
    assert_eq!(
        parse_webhook(&body),
        Ok(Hint::Issue {
            key: key.clone(),
            actor: Some(ada.clone())
        })
    );
    let body = serde_json::to_vec(&fake.comment_webhook(
        &key,
        &format!("done{MARKER_LINE}"),
        &fake.viewer_id(),
    ))
    .unwrap();
    assert!(matches!(parse_webhook(&body), Ok(Hint::Ignored { .. })));
}

#[tokio::test]
async fn the_fake_refuses_what_linear_would() {
    let (fake, _linear) = setup().await;
    fake.add_issue("t", "", "Todo", &[]);
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(fake.url())
            .header("authorization", KEY)
            .json(&body)
            .send()
    };
    let code = |v: &Value| {
        v["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    // An unknown field, an undeclared variable, a wrongly typed one, a missing pageInfo.
    for (query, variables) in [
        (
            "query A($id: String!) { issue(id: $id) { id colour } }",
            json!({"id": "ENG-1"}),
        ),
        ("query A { issue(id: $id) { id } }", json!({"id": "ENG-1"})),
        (
            "query A($id: String!) { issue(id: $id) { id } }",
            json!({"id": 1}),
        ),
        (
            "query A($id: ID!) { issue(id: $id) { id } }",
            json!({"id": "ENG-1"}),
        ),
        ("query A { issues(first: 50) { nodes { id } } }", json!({})),
        (
            "query A($id: String!) { issue(id: $id) { state } }",
            json!({"id": "ENG-1"}),
        ),
    ] {
        let r = post(json!({"query": query, "variables": variables, "operationName": "A"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), "GRAPHQL_VALIDATION_FAILED", "{query}: {v}");
    }

    // Only what is selected comes back.
    let r = post(json!({"query": "query A($id: String!) { issue(id: $id) { identifier t: title } }", "variables": {"id": "eng-1"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-ratelimit-requests-limit"].to_str().unwrap(),
        "2500"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"data": {"issue": {"identifier": "ENG-1", "t": "t"}}})
    );

    // Bearer is OAuth's form, not an API key's.
    let r = client
        .post(fake.url())
        .header("authorization", format!("Bearer {KEY}"))
        .json(&json!({"query": "query { viewer { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "AUTHENTICATION_ERROR");

    // Not JSON.
    let r = client
        .post(fake.url())
        .header("authorization", KEY)
        .header("content-type", "text/plain")
        .body("query { viewer { id } }")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
