//! Per-project webhooks of outside trackers: each vendor's signature is checked before the body
//! is read, a verified delivery is stored and answered at once and becomes one event for the
//! control afterwards (retried while the tracker is down), a redelivery does nothing.

use codemill_core::config::{GithubSettings, WebhookAuthKind};
use std::time::Duration;

use codemill_server::{OutsideEvent, OutsideHook, ServerConfig};
use codemill_store::InboxState;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::harness::{Call, Db, Server, node, start_with};

const SECRET: &str = "outside-secret";

fn github_settings() -> GithubSettings {
    toml::from_str(
        "repo = \"acme/shop\"\ntoken_env = \"T\"\ntrigger_label = \"codemill\"\nbot_login = \"codemill-bot\"",
    )
    .unwrap()
}

fn hook(vendor: &str, project: &str, auth: WebhookAuthKind) -> OutsideHook {
    OutsideHook {
        vendor: vendor.into(),
        project: project.into(),
        auth,
        secret: SecretString::from(SECRET),
        github: (vendor == "github").then(github_settings),
        gitlab: None,
    }
}

async fn server() -> Server {
    start_with(
        Db::sqlite().await,
        ServerConfig {
            outside_hooks: vec![
                hook("github", "shop", WebhookAuthKind::Hmac),
                hook("jira", "PROJ", WebhookAuthKind::Hmac),
                hook("jira", "FAIL", WebhookAuthKind::Token),
                hook("jira", "FLAKY", WebhookAuthKind::Token),
                hook("jira", "SLOW", WebhookAuthKind::Token),
                hook("jira", "FAST", WebhookAuthKind::Token),
                hook("linear", "ENG", WebhookAuthKind::Hmac),
            ],
            inbox_poll: Duration::from_millis(50),
            inbox_retry: Duration::from_millis(50),
            inbox_max_attempts: 3,
            ..ServerConfig::default()
        },
    )
    .await
}

fn labeled(number: u64, sender: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "labeled",
        "issue": {"number": number, "title": "t", "labels": [{"name": "codemill"}], "state": "open", "user": {"login": sender}},
        "label": {"name": "codemill"},
        "repository": {"full_name": "acme/shop"},
        "sender": {"login": sender}
    }))
    .unwrap()
}

/// The control's calls once there are at least `n` (waits up to 20 s).
async fn calls_when(s: &Server, n: usize) -> Vec<Call> {
    for _ in 0..1000 {
        let calls = s.control.calls();
        if calls.len() >= n {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the control got {:?}, not {n} calls", s.control.calls());
}

async fn post(s: &Server, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    post_as(s, path, Some("application/json"), headers, body).await
}

async fn post_as(
    s: &Server,
    path: &str,
    content_type: Option<&str>,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    let mut req = s.client.post(s.url(path)).body(body.to_vec());
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn github_headers(body: &[u8], delivery: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", "issues".into()),
        ("x-github-delivery", delivery.into()),
        (
            "x-hub-signature-256",
            format!(
                "sha256={}",
                codemill_testkit::fakes::hmac_sha256_hex(secret.as_bytes(), body)
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_delivery_is_verified_read_once_and_handed_to_the_control() {
    let s = server().await;
    let body = labeled(42, "alice");
    let (status, _) = post(
        &s,
        "/webhooks/github/nope",
        &github_headers(&body, "d1", SECRET),
        &body,
    )
    .await;
    assert_eq!(status, 404, "no hook for that project");
    let (status, _) = post(
        &s,
        "/webhooks/github/shop",
        &github_headers(&body, "d1", "wrong"),
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &s,
        "/webhooks/github/shop",
        &[("x-github-event", "issues".into())],
        &body,
    )
    .await;
    assert_eq!(status, 401, "no signature");
    assert!(s.control.calls().is_empty(), "nothing reached the control");

    let (status, answer) = post(
        &s,
        "/webhooks/github/shop",
        &github_headers(&body, "d1", SECRET),
        &body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer, json!({"result": "accepted", "delivery": "d1"}));
    let row = s
        .delivery_when("github:shop", "d1", |r| r.state == InboxState::Done)
        .await;
    assert_eq!(row.outcome, Some(json!({"result": "queued"})));
    assert_eq!(row.attempts, 1);
    let kept: Vec<(&str, &str)> = row
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        kept,
        [("x-github-event", "issues")],
        "the signature is not stored"
    );
    let (status, answer) = post(
        &s,
        "/webhooks/github/shop",
        &github_headers(&body, "d1", SECRET),
        &body,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        answer["result"], "duplicate",
        "a redelivery does nothing: {answer}"
    );
    assert_eq!(
        s.control.calls(),
        vec![Call::Outside(OutsideEvent::Trigger {
            project: "shop".into(),
            key: "42".into(),
            actor: Some("alice".into()),
        })]
    );

    // A label that is not the trigger: read, answered, nothing asked of the control.
    let other = serde_json::to_vec(&json!({
        "action": "labeled",
        "issue": {"number": 43, "title": "t", "labels": [], "state": "open", "user": {"login": "a"}},
        "label": {"name": "codemill:running"},
        "sender": {"login": "codemill-bot"}
    }))
    .unwrap();
    let (status, answer) = post(
        &s,
        "/webhooks/github/shop",
        &github_headers(&other, "d2", SECRET),
        &other,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(answer["result"], "ignored", "{answer}");
    assert_eq!(s.control.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_and_linear_deliveries_use_their_own_signatures() {
    let s = server().await;
    let body = serde_json::to_vec(&json!({
        "timestamp": 1_700_000_000_000u64,
        "webhookEvent": "jira:issue_updated",
        "user": {"accountId": "acc-alice"},
        "issue": {"id": "10001", "key": "PROJ-7", "fields": {"summary": "t"}}
    }))
    .unwrap();
    let sig = format!(
        "sha256={}",
        codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &body)
    );
    let (status, _) = post(
        &s,
        "/webhooks/jira/PROJ",
        &[("x-hub-signature", "sha256=00".into())],
        &body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, answer) = post(
        &s,
        "/webhooks/jira/PROJ",
        &[("x-hub-signature", sig)],
        &body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "accepted", "{answer}");
    // Without X-Atlassian-Webhook-Identifier, the body names the delivery.
    let id = answer["delivery"].as_str().unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    s.delivery_when("jira:PROJ", id, |r| r.state == InboxState::Done)
        .await;
    assert_eq!(
        s.control.calls().last(),
        Some(&Call::Outside(OutsideEvent::Trigger {
            project: "PROJ".into(),
            key: "PROJ-7".into(),
            actor: Some("acc-alice".into()),
        }))
    );
    let (_, again) = post(
        &s,
        "/webhooks/jira/PROJ",
        &[(
            "x-hub-signature",
            format!(
                "sha256={}",
                codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &body)
            ),
        )],
        &body,
    )
    .await;
    assert_eq!(again["result"], "duplicate", "the same body again: {again}");

    let now = chrono::Utc::now().timestamp_millis();
    let linear = serde_json::to_vec(&json!({
        "action": "update", "type": "Issue", "createdAt": "2026-11-21T00:00:00.000Z",
        "organizationId": "org", "webhookId": "wh", "webhookTimestamp": now,
        "url": "https://linear.app/acme/issue/ENG-3/t",
        "actor": {"id": "user-alice", "name": "Alice", "type": "user"},
        "data": {"id": "9f0c", "identifier": "ENG-3", "number": 3, "title": "t"}
    }))
    .unwrap();
    let sig = codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &linear);
    let (status, _) = post(
        &s,
        "/webhooks/linear/ENG",
        &[("linear-signature", "00".repeat(32))],
        &linear,
    )
    .await;
    assert_eq!(status, 401);
    let (status, answer) = post(
        &s,
        "/webhooks/linear/ENG",
        &[
            ("linear-signature", sig),
            ("linear-delivery", "ld-1".into()),
        ],
        &linear,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    s.delivery_when("linear:ENG", "ld-1", |r| r.state == InboxState::Done)
        .await;
    assert_eq!(
        s.control.calls().last(),
        Some(&Call::Outside(OutsideEvent::Trigger {
            project: "ENG".into(),
            key: "ENG-3".into(),
            actor: Some("user-alice".into()),
        }))
    );
}

/// `payload=<the JSON, percent-encoded>`: what GitHub sends when a hook's content type is set to
/// `application/x-www-form-urlencoded`.
fn form_encoded(json: &[u8]) -> Vec<u8> {
    let mut out = b"payload=".to_vec();
    for &b in json {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

fn linear_issue_update(key: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "update", "type": "Issue", "createdAt": "2026-11-21T00:00:00.000Z",
        "organizationId": "org", "webhookId": "wh",
        "webhookTimestamp": chrono::Utc::now().timestamp_millis(),
        "url": format!("https://linear.app/acme/issue/{key}/t"),
        "actor": {"id": "user-alice", "name": "Alice", "type": "user"},
        "data": {"id": "9f0c", "identifier": key, "number": 3, "title": "t"}
    }))
    .unwrap()
}

/// Signed deliveries in another content type than JSON are refused with 415 and how to fix the
/// hook, and a GitHub delivery without its delivery id (which de-duplication needs) with 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_deliveries_must_be_json_and_github_ones_must_carry_a_delivery_id() {
    let s = server().await;
    let json_body = labeled(42, "alice");
    let form = form_encoded(&json_body);
    let (status, answer) = post_as(
        &s,
        "/webhooks/github/shop",
        Some("application/x-www-form-urlencoded"),
        &github_headers(&form, "f1", SECRET),
        &form,
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("set the webhook's content type to application/json"),
        "{error}"
    );

    let jira = serde_json::to_vec(&json!({
        "timestamp": 1_700_000_000_000u64,
        "webhookEvent": "jira:issue_updated",
        "user": {"accountId": "acc-alice"},
        "issue": {"id": "10001", "key": "PROJ-7", "fields": {"summary": "t"}}
    }))
    .unwrap();
    let jira_signature = format!(
        "sha256={}",
        codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &jira)
    );
    let linear = linear_issue_update("ENG-3");
    let linear_signature = codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &linear);
    type Case<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, String)>, &'a [u8]);
    let cases: Vec<Case> = vec![
        (
            "/webhooks/github/shop",
            None,
            github_headers(&json_body, "f2", SECRET),
            &json_body,
        ),
        (
            "/webhooks/github/shop",
            Some("text/plain"),
            github_headers(&json_body, "f3", SECRET),
            &json_body,
        ),
        (
            "/webhooks/jira/PROJ",
            Some("text/plain"),
            vec![("x-hub-signature", jira_signature.clone())],
            &jira,
        ),
        (
            "/webhooks/jira/PROJ",
            Some("application/jsonp"),
            vec![("x-hub-signature", jira_signature.clone())],
            &jira,
        ),
        (
            "/webhooks/linear/ENG",
            Some("text/plain"),
            vec![
                ("linear-signature", linear_signature.clone()),
                ("linear-delivery", "lf-1".into()),
            ],
            &linear,
        ),
    ];
    for (path, content_type, headers, body) in cases {
        let (status, answer) = post_as(&s, path, content_type, &headers, body).await;
        assert_eq!(status, 415, "{path} {content_type:?}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{answer}"
        );
    }

    // No X-GitHub-Delivery: nothing to de-duplicate redeliveries on.
    let mut headers = github_headers(&json_body, "unused", SECRET);
    headers.retain(|(name, _)| *name != "x-github-delivery");
    let (status, answer) = post(&s, "/webhooks/github/shop", &headers, &json_body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Delivery"),
        "{answer}"
    );
    assert!(s.control.calls().is_empty(), "nothing reached the control");
    assert_eq!(s.db.count("inbox").await, 0);

    // The same deliveries as JSON, with their ids, are taken.
    let (status, answer) = post(
        &s,
        "/webhooks/github/shop",
        &github_headers(&json_body, "f4", SECRET),
        &json_body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post(
        &s,
        "/webhooks/jira/PROJ",
        &[("x-hub-signature", jira_signature)],
        &jira,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post(
        &s,
        "/webhooks/linear/ENG",
        &[
            ("linear-signature", linear_signature),
            ("linear-delivery", "lf-2".into()),
        ],
        &linear,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    calls_when(&s, 3).await;
}

/// Linear's Comment payload as Linear documents it names the issue only by `data.issueId`: it is
/// taken (202) and handed on by that id, which the tracker reads like an identifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linear_comment_in_its_documented_shape_is_taken() {
    let s = server().await;
    let issue_id = "9b2f6a0e-1c3d-4e5f-8a7b-6c5d4e3f2a1b";
    for (n, issue) in [None, Some(Value::Null)].into_iter().enumerate() {
        let now = chrono::Utc::now();
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut comment = json!({
            "action": "create", "type": "Comment", "createdAt": at,
            "organizationId": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            "webhookId": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
            "webhookTimestamp": now.timestamp_millis(),
            "url": "https://linear.app/acme/issue/ENG-7/t#comment-4a5b6c7d",
            "actor": {"id": "user-alice", "name": "Alice", "type": "user"},
            "data": {
                "id": "4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d",
                "createdAt": at, "updatedAt": at,
                "body": "Please also log the request id.",
                "issueId": issue_id,
                "userId": "user-alice"
            }
        });
        if let Some(issue) = issue {
            comment["data"]["issue"] = issue;
        }
        let body = serde_json::to_vec(&comment).unwrap();
        let (status, answer) = post(
            &s,
            "/webhooks/linear/ENG",
            &[
                (
                    "linear-signature",
                    codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &body),
                ),
                ("linear-delivery", format!("lc-{n}")),
                ("linear-event", "Comment".into()),
            ],
            &body,
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        s.delivery_when("linear:ENG", &format!("lc-{n}"), |r| {
            r.state == InboxState::Done
        })
        .await;
        assert_eq!(
            s.control.calls().last(),
            Some(&Call::Outside(OutsideEvent::Trigger {
                project: "ENG".into(),
                key: issue_id.into(),
                actor: Some("user-alice".into()),
            }))
        );
    }
    assert_eq!(s.control.calls().len(), 2);
}

fn jira_trigger(key: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "timestamp": 1_700_000_000_000u64,
        "webhookEvent": "jira:issue_updated",
        "user": {"accountId": "acc-alice"},
        "issue": {"id": "10001", "key": key, "fields": {"summary": "t"}}
    }))
    .unwrap()
}

async fn post_jira(s: &Server, project: &str, delivery: &str, body: &[u8]) -> Value {
    let (status, answer) = post(
        s,
        &format!("/webhooks/jira/{project}"),
        &[
            ("authorization", format!("Bearer {SECRET}")),
            ("x-atlassian-webhook-identifier", delivery.into()),
        ],
        body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    answer
}

/// A tracker that does not answer never holds up the answer to the vendor: the delivery is
/// stored and answered while the control is still waiting for the tracker, and finished after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_tracker_does_not_hold_up_the_answer() {
    let s = server().await;
    let answer = post_jira(&s, "SLOW", "slow-1", &jira_trigger("SLOW-1")).await;
    assert_eq!(answer["result"], "accepted", "{answer}");
    // The control has the event and is stuck on the tracker; the vendor already has its 202.
    calls_when(&s, 1).await;
    let row = s
        .store()
        .delivery("jira:SLOW", "slow-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.state, row.outcome), (InboxState::Pending, None));
    // Other projects' deliveries are not stuck behind it.
    post_jira(&s, "FAST", "fast-1", &jira_trigger("FAST-1")).await;
    s.delivery_when("jira:FAST", "fast-1", |r| r.state == InboxState::Done)
        .await;
    s.control.tracker.add_permits(1);
    let row = s
        .delivery_when("jira:SLOW", "slow-1", |r| r.state == InboxState::Done)
        .await;
    assert_eq!(row.outcome, Some(json!({"result": "queued"})));
}

/// The tracker is down: the delivery waits in the inbox and is tried again with backoff until
/// it goes through; one that never does is given up after the last attempt, with the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_the_tracker_cannot_take_is_retried_then_given_up() {
    let s = server().await;
    s.control
        .flaky
        .store(2, std::sync::atomic::Ordering::SeqCst);
    post_jira(&s, "FLAKY", "flaky-1", &jira_trigger("FLAKY-1")).await;
    let row = s
        .delivery_when("jira:FLAKY", "flaky-1", |r| r.state != InboxState::Pending)
        .await;
    assert_eq!(
        (row.state, row.attempts, row.outcome),
        (InboxState::Done, 3, Some(json!({"result": "queued"}))),
        "two failures, then through"
    );

    post_jira(&s, "FAIL", "fail-1", &jira_trigger("FAIL-1")).await;
    let row = s
        .delivery_when("jira:FAIL", "fail-1", |r| r.state != InboxState::Pending)
        .await;
    assert_eq!(row.state, InboxState::Failed);
    assert_eq!(row.attempts, 3, "inbox_max_attempts");
    assert_eq!(
        row.outcome,
        Some(json!({"result": "error", "error": "jira: could not connect"}))
    );
    let tries = s
        .control
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Outside(OutsideEvent::Trigger { project, .. }) if project == "FAIL"))
        .count();
    assert_eq!(tries, 3);
    // Given up stays given up, and a redelivery of it is still a duplicate.
    let again = post_jira(&s, "FAIL", "fail-1", &jira_trigger("FAIL-1")).await;
    assert_eq!(again["result"], "duplicate");
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "codemill_inbox_processed_total{provider=\"jira\",result=\"retry\"} 4",
        "codemill_inbox_processed_total{provider=\"jira\",result=\"failed\"} 1",
        "codemill_inbox_processed_total{provider=\"jira\",result=\"job_created\"} 1",
        "codemill_webhook_deliveries_total{provider=\"jira\",result=\"accepted\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// A delivery accepted by a node that does not process (or that stopped before it could) is
/// processed by another node sharing the store: nothing is lost between accept and processing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_processes_what_one_node_accepted() {
    let s = start_with(
        Db::sqlite().await,
        ServerConfig {
            outside_hooks: vec![hook("jira", "PROJ", WebhookAuthKind::Token)],
            inbox_poll: Duration::ZERO,
            ..ServerConfig::default()
        },
    )
    .await;
    post_jira(&s, "PROJ", "n-1", &jira_trigger("PROJ-9")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = s
        .store()
        .delivery("jira:PROJ", "n-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.state, row.attempts), (InboxState::Pending, 0));
    assert!(s.control.calls().is_empty());

    let other = node(
        s.store(),
        ServerConfig {
            outside_hooks: vec![hook("jira", "PROJ", WebhookAuthKind::Token)],
            inbox_poll: Duration::from_millis(50),
            ..ServerConfig::default()
        },
    )
    .await;
    s.delivery_when("jira:PROJ", "n-1", |r| r.state == InboxState::Done)
        .await;
    assert_eq!(
        other.control.calls(),
        vec![Call::Outside(OutsideEvent::Trigger {
            project: "PROJ".into(),
            key: "PROJ-9".into(),
            actor: Some("acc-alice".into()),
        })]
    );
    assert!(
        s.control.calls().is_empty(),
        "the accepting node processed nothing"
    );
    other.stop().await;
}
