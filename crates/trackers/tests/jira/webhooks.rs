//! Webhooks: HMAC signatures, shared tokens and JWTs verified, and Jira's documented payloads
//! and the fake's deliveries read as hints.

use codemill_core::config::vendors::WebhookAuthKind;
use codemill_testkit::fakes::jira::{adf_text, hub_signature};
use codemill_trackers::Tracker;
use codemill_trackers::jira::{parse_webhook, verify_webhook};
use codemill_trackers::webhook::{Hint, VerifyError};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::setup;

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
