//! Webhooks: signature and age verification, and Linear's payloads and the fake's deliveries
//! read as hints.

use codemill_testkit::fakes::linear::sign;
use codemill_trackers::Tracker;
use codemill_trackers::linear::{parse_webhook, verify_webhook};
use codemill_trackers::webhook::{Hint, VerifyError};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::{MARKER_LINE, setup};

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
