//! Secrets stay out of the logs: bearer tokens, webhook signatures and secrets are masked even
//! though request and response headers are logged.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::harness::{Db, LOCAL_SECRET, now, ready, sign, start, token};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `text` holds something shaped like one of our API tokens.
fn has_token(text: &str) -> bool {
    text.match_indices("cm_").any(|(i, _)| {
        let rest = &text.as_bytes()[i + 3..];
        rest.len() >= 64 && rest[..64].iter().all(u8::is_ascii_hexdigit)
    })
}

// The subscriber is the process-wide one (a thread-local one misses events when other tests
// touch the same callsites first), so it also captures the tests running beside this one: no
// token of theirs may show up either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_signatures_are_not_logged() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = start(Db::sqlite().await).await;
    let good = token(server.store(), "ci").await;
    let ticket = server.ticket("PROJ", "t").await;
    for t in [good.as_str(), "cm_not_a_real_token_0123456789"] {
        server
            .client
            .get(server.url("/api/tickets"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
    }
    let body = ready(&ticket.key.to_string());
    let at = now();
    let signature = sign(LOCAL_SECRET, at, body.as_bytes());
    let r = server
        .client
        .post(server.url("/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "log-1")
        .header("x-codemill-timestamp", at.to_string())
        .header("x-codemill-signature-256", &signature)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let forged = sign("forged-secret", at, body.as_bytes());
    let r = server
        .client
        .post(server.url("/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "log-2")
        .header("x-codemill-timestamp", at.to_string())
        .header("x-codemill-signature-256", &forged)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    drop(server);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // Headers are logged, so the absence below means masking, not silence.
    assert!(logs.contains("x-codemill-delivery"), "{logs}");
    assert!(logs.contains("Sensitive"), "{logs}");
    assert!(!has_token(&logs), "an API token appears in the logs");
    for secret in [
        good.as_str(),
        "cm_not_a_real_token_0123456789",
        &signature["sha256=".len()..],
        &forged["sha256=".len()..],
        LOCAL_SECRET,
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}
