//! The Linear tracker: triggered issues across every page, issues with every comment page,
//! comments upserted by marker, labels, transitions and linked backlog issues, each written once
//! even when a write fails after it was applied.

use codemill_core::pipeline::TicketStatus;
use codemill_testkit::fakes::FaultKind;
use codemill_trackers::{Error, Tracker};
use serde_json::{Value, json};

use crate::{KEY, MARKER_LINE, assert_wire, op, selects, setup, vars};

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
        "labels": {"name": {"in": ["codemill", "codemill:refine"]}},
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
async fn create_issue_after_a_5xx_makes_one_labelled_issue() {
    let (fake, linear) = setup().await;
    fake.inject_on("issueCreate", FaultKind::AfterApply(500));
    let created = linear
        .create_issue(
            "codemill:draft:1",
            "Add SSO",
            "Log in with OIDC.",
            "codemill:refine",
        )
        .await
        .unwrap();
    assert_eq!(fake.issues(), vec![created.clone()]);
    assert_eq!(fake.labels_of(&created), ["codemill:refine"]);
    assert!(fake.relations_of(&created).is_empty(), "standalone");
    let ops = fake.operations();
    assert_eq!(
        ops.iter().filter(|o| *o == "CodemillIssueCreate").count(),
        1
    );
}
