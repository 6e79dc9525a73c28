//! Per-project webhooks of outside trackers: each vendor's signature is checked before the body
//! is read, a verified delivery becomes one event for the control, a redelivery does nothing.

use codemill_core::config::{GithubSettings, WebhookAuthKind};
use codemill_server::{OutsideEvent, OutsideHook, ServerConfig};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::harness::{Call, Db, Server, start_with};

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
                hook("linear", "ENG", WebhookAuthKind::Hmac),
            ],
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
    assert_eq!(answer["result"], "queued");
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
    assert_eq!(
        s.control.calls().last(),
        Some(&Call::Outside(OutsideEvent::Trigger {
            project: "PROJ".into(),
            key: "PROJ-7".into(),
            actor: Some("acc-alice".into()),
        }))
    );

    // The tracker cannot be reached: 503, so Jira delivers again later.
    let (status, answer) = post(
        &s,
        "/webhooks/jira/FAIL",
        &[("authorization", format!("Bearer {SECRET}"))],
        &body,
    )
    .await;
    assert_eq!(status, 503, "{answer}");

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
    assert_eq!(s.control.calls().len(), 3);
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
