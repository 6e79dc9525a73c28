//! `codemill serve`: a signed webhook queues a ticket, the in-process workers take it to a
//! proposal, an approval through the token-authenticated API ships it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};

use super::harness::{Env, HELLO_GATE, KEY_VAR, engineer};

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_proposal_to_approval_through_the_service() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();
    assert!(token.starts_with("cm_"), "{token}");
    let mut server = Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .arg("--home")
        .arg(&env.home)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-secret-env",
            "local=HOOK_SECRET",
            "--workers",
            "1",
        ])
        .env(KEY_VAR, "test-key-123")
        .env("HOOK_SECRET", "s3cret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let http = reqwest::Client::new();

    let body = br#"{"event": "ticket.ready", "ticket": "P-1"}"#;
    let forged = http
        .post(format!("{base}/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "d-1")
        .header("x-codemill-signature-256", sign("wrong", body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let accepted = http
        .post(format!("{base}/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "d-1")
        .header("x-codemill-signature-256", sign("s3cret", body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);

    let wait_for = |want: &'static str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let state = env.json(&["show", "P-1", "--json"])["job"]["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if state == want {
                return;
            }
            assert!(Instant::now() < deadline, "stuck in {state}, want {want}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("awaiting_approval");
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
    wait_for("done");
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

    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.wait().unwrap();
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
    let mut server = Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .arg("--home")
        .arg(&env.home)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--poll-secs",
            "1",
        ])
        .env(KEY_VAR, "test-key-123")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state = env.json(&["show", "P-2", "--json"])["job"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if state == "awaiting_approval" {
            break;
        }
        assert!(Instant::now() < deadline, "P-2 stuck in {state:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The unlabelled ticket was left alone.
    assert!(env.json(&["show", "P-1", "--json"])["job"].is_null());
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(server.wait().unwrap().success());
}
