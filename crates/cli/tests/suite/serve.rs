//! `codemill serve`: a signed webhook queues a ticket, the in-process workers take it to a
//! proposal, an approval through the token-authenticated API ships it.

use super::harness::{Env, HELLO_GATE, Service, engineer, wait_state};

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as a sender of local webhooks signs.
fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "sha256={}",
        codemill_testkit::fakes::hmac_sha256_hex(secret.as_bytes(), &signed)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_proposal_to_approval_through_the_service() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();
    assert!(token.starts_with("cm_"), "{token}");
    let server = Service::start(
        &env,
        &["--webhook-secret-env", "local=HOOK_SECRET"],
        &[("HOOK_SECRET", "s3cret")],
    );
    let (base, http) = (server.base.clone(), server.http.clone());

    let body = br#"{"event": "ticket.ready", "ticket": "P-1"}"#;
    let now = chrono::Utc::now().timestamp().to_string();
    let forged = http
        .post(format!("{base}/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "d-1")
        .header("x-codemill-timestamp", &now)
        .header("x-codemill-signature-256", sign("wrong", &now, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let accepted = http
        .post(format!("{base}/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "d-1")
        .header("x-codemill-timestamp", &now)
        .header("x-codemill-signature-256", sign("s3cret", &now, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);

    wait_state(&env, "P-1", "awaiting_approval");
    let unauthorised = http
        .post(format!("{base}/api/tickets/P-1/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    let approved = http
        .post(format!("{base}/api/tickets/P-1/approve"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        approved.status(),
        200,
        "{}",
        approved.text().await.unwrap_or_default()
    );
    wait_state(&env, "P-1", "done");
    assert_eq!(env.remote_git(&["show", "codemill/P-1:hello.txt"]), "hello");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("codemill_webhook_deliveries_total"),
        "{metrics}"
    );

    let status = server.stop();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_queues_labelled_tickets_that_no_webhook_announced() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Labelled",
        "--label",
        "codemill",
        "--body",
        "Add hello.txt.\n\nAcceptance: the file exists.",
    ]);
    let server = Service::start(&env, &["--poll-secs", "1"], &[]);
    wait_state(&env, "P-2", "awaiting_approval");
    // The unlabelled ticket was left alone.
    assert!(env.json(&["show", "P-1", "--json"])["job"].is_null());
    assert!(server.stop().success());
}
