//! Webhooks end to end: signatures, limits, malformed requests, and deduplication under load.

use std::time::Duration;

use codemill_server::ServerConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    Db, LOCAL_SECRET, Server, config, now, ready, sign, sign_raw, start, start_with,
};

/// The same delivery posted 100 times at once: one inbox row, one job, every answer 202 and
/// naming that job.
pub async fn hundred_identical_deliveries_make_one_job(db: Db) {
    let server = start(db).await;
    let ticket = server.ticket("PROJ", "Add a flag").await;
    let body = ready(&ticket.key.to_string());
    let answers = futures_util::future::join_all(
        (0..100).map(|_| async { server.deliver("delivery-1", &body).await }),
    )
    .await;
    let mut created = 0;
    let mut jobs = Vec::new();
    for r in answers {
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        if v["duplicate"] == false {
            created += 1;
            assert_eq!(v["existing"], false);
        }
        jobs.push(v["job"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1, "exactly one delivery is the first");
    jobs.sort();
    jobs.dedup();
    assert_eq!(jobs.len(), 1, "every answer names the same job");
    assert_eq!(server.db.rows().await, (1, 1, 1));
    let queue = server.store().queue_entries(None).await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].job.to_string(), jobs[0]);
    assert_eq!(queue[0].ticket, ticket.key);
    assert_eq!(server.store().journal(queue[0].job).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_hundred_identical_deliveries_make_one_job() {
    hundred_identical_deliveries_make_one_job(Db::sqlite().await).await
}

/// The inbox keeps what de-duplication needs, not every body: once a delivery is processed, the
/// server's pruning pass clears its body, and its delivery id is still answered as a duplicate.
pub async fn processed_deliveries_lose_their_body_but_stay_duplicates(db: Db) {
    let server = start_with(
        db,
        ServerConfig {
            inbox_prune_every: Duration::from_millis(50),
            ..config()
        },
    )
    .await;
    let ticket = server.ticket("PROJ", "t").await;
    let body = ready(&ticket.key.to_string());
    let first: Value = server.deliver("d-1", &body).await.json().await.unwrap();
    let job: codemill_core::ids::JobId = first["job"].as_str().unwrap().parse().unwrap();
    let other = "{\"event\":\"ticket.commented\",\"ticket\":\"PROJ-1\"}";
    let ignored: Value = server.deliver("d-2", other).await.json().await.unwrap();
    assert_eq!(ignored["ignored"], true);

    // An event without a job was handled when it was answered.
    cleared(&server, "d-2").await;
    // The pass that cleared d-2 also saw d-1, recorded before it: kept while its job is active.
    assert_eq!(body_of(&server, "d-1").await, body.as_bytes());

    assert!(
        server
            .store()
            .cancel(job, chrono::Utc::now())
            .await
            .unwrap()
    );
    cleared(&server, "d-1").await;
    for (id, body) in [("d-1", body.as_str()), ("d-2", other)] {
        let again = server.deliver(id, body).await;
        assert_eq!(again.status(), 202);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["duplicate"], true, "{id}: {again}");
    }
    let again: Value = server.deliver("d-1", &body).await.json().await.unwrap();
    assert_eq!(
        again["job"], first["job"],
        "the duplicate names the first job"
    );
    assert_eq!(server.db.rows().await, (2, 1, 1));
}

async fn body_of(server: &Server, id: &str) -> Vec<u8> {
    let row = server.store().delivery("local", id).await.unwrap();
    row.unwrap_or_else(|| panic!("no delivery {id}")).body
}

/// Wait for the pruning pass to clear the body of delivery `id`.
async fn cleared(server: &Server, id: &str) {
    for _ in 0..200 {
        if body_of(server, id).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the body of {id} is still in the inbox after 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_processed_deliveries_lose_their_body_but_stay_duplicates() {
    processed_deliveries_lose_their_body_but_stay_duplicates(Db::sqlite().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_delivery_for_a_busy_ticket_joins_its_job() {
    let server = start(Db::sqlite().await).await;
    let ticket = server.ticket("PROJ", "t").await;
    let body = ready(&ticket.key.to_string());
    let first: Value = server.deliver("d-1", &body).await.json().await.unwrap();
    let second = server.deliver("d-2", &body).await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["job"], first["job"]);
    assert_eq!(second["existing"], true);
    assert_eq!(second["duplicate"], false);
    // Two deliveries recorded, still one job.
    assert_eq!(server.db.rows().await, (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_missing_and_sha1_signatures_write_nothing() {
    let server = start(Db::sqlite().await).await;
    let ticket = server.ticket("PROJ", "t").await;
    let body = ready(&ticket.key.to_string());
    let sha1 = format!("sha1={}", "0".repeat(40));
    let at = now();
    let forged = sign("not-the-secret", at, body.as_bytes());
    let other_body = sign(
        LOCAL_SECRET,
        at,
        b"{\"event\":\"ticket.ready\",\"ticket\":\"PROJ-2\"}",
    );
    let uppercase_prefix = sign(LOCAL_SECRET, at, body.as_bytes()).replace("sha256=", "SHA256=");
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("missing", None),
        ("forged", Some(&forged)),
        ("sha1", Some(&sha1)),
        ("signature of another body", Some(&other_body)),
        ("not hex", Some("sha256=zzzz")),
        ("empty", Some("")),
        ("wrong prefix", Some(&uppercase_prefix)),
    ];
    for (i, (what, signature)) in cases.into_iter().enumerate() {
        let mut req = server
            .client
            .post(server.url("/webhooks/local"))
            .header("content-type", "application/json")
            .header("x-codemill-delivery", format!("d-{i}"))
            .header("x-codemill-timestamp", at.to_string())
            .body(body.clone());
        if let Some(s) = signature {
            req = req.header("x-codemill-signature-256", s);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("ignature"),
            "{what}: {v}"
        );
    }
    assert_eq!(server.db.rows().await, (0, 0, 0));
}

/// A captured delivery sent again later under a new delivery id makes nothing: the signature
/// covers the timestamp, and the timestamp must be within five minutes of the server's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_and_retimed_deliveries_are_refused() {
    let server = start(Db::sqlite().await).await;
    let ticket = server.ticket("PROJ", "t").await;
    let body = ready(&ticket.key.to_string());
    let post = |delivery: String, timestamp: Option<String>, signature: String| {
        let mut req = server
            .client
            .post(server.url("/webhooks/local"))
            .header("content-type", "application/json")
            .header("x-codemill-delivery", delivery)
            .header("x-codemill-signature-256", signature)
            .body(body.clone());
        if let Some(t) = timestamp {
            req = req.header("x-codemill-timestamp", t);
        }
        req.send()
    };
    let at = now();
    let captured = at - 6 * 60;
    let signed = |t: i64| sign(LOCAL_SECRET, t, body.as_bytes());
    let cases: Vec<(&str, Option<String>, String, &str)> = vec![
        (
            "captured six minutes ago",
            Some(captured.to_string()),
            signed(captured),
            "older than",
        ),
        (
            "six minutes ahead",
            Some((at + 6 * 60).to_string()),
            signed(at + 6 * 60),
            "ahead of",
        ),
        (
            "captured, timestamp moved to now",
            Some(at.to_string()),
            signed(captured),
            "signature",
        ),
        (
            "fresh signature, timestamp moved back",
            Some((at - 1).to_string()),
            signed(at),
            "signature",
        ),
        ("no timestamp", None, signed(at), "X-Codemill-Timestamp"),
        (
            "not a number",
            Some("now".into()),
            sign_raw(LOCAL_SECRET, b"now.", body.as_bytes()),
            "X-Codemill-Timestamp",
        ),
        (
            "milliseconds",
            Some((at * 1000).to_string()),
            signed(at * 1000),
            "ahead of",
        ),
        (
            "the body alone signed",
            Some(at.to_string()),
            sign_raw(LOCAL_SECRET, b"", body.as_bytes()),
            "signature",
        ),
    ];
    for (i, (what, timestamp, signature, says)) in cases.into_iter().enumerate() {
        let r = post(format!("replay-{i}"), timestamp, signature)
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let v: Value = r.json().await.unwrap();
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(says), "{what}: {error}");
    }
    assert_eq!(server.db.rows().await, (0, 0, 0));

    // Fresh, or a little old within the window: accepted.
    let r = post("fresh".into(), Some(at.to_string()), signed(at))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    let r = post(
        "four-minutes-old".into(),
        Some((at - 4 * 60).to_string()),
        signed(at - 4 * 60),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let second: Value = r.json().await.unwrap();
    assert_eq!(
        (second["job"].clone(), second["existing"].clone()),
        (first["job"].clone(), true.into())
    );
    assert_eq!(server.db.rows().await, (2, 1, 1));
}

/// Send `head` (request line and headers) and then, from another task, `body` until the
/// server stops reading; return the status code of the answer.
async fn raw_status(server: &Server, head: String, body: Vec<Vec<u8>>) -> u16 {
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for chunk in body {
            // The server may close the connection mid-body: that is the point.
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read_answer = async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_answer)
        .await
        .expect("no answer within 20 s");
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    status.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ten_mib_body_is_refused_before_it_is_read() {
    let server = start(Db::sqlite().await).await;
    let at = now();
    let signature = sign(LOCAL_SECRET, at, b"whatever");
    let ten_mib = 10 * 1024 * 1024;

    // Only the head is ever sent: the answer must come from Content-Length alone.
    let head = format!(
        "POST /webhooks/local HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-codemill-delivery: big-1\r\nx-codemill-signature-256: {signature}\r\n\
         x-codemill-timestamp: {at}\r\n\
         content-length: {ten_mib}\r\n\r\n"
    );
    assert_eq!(raw_status(&server, head, Vec::new()).await, 413);

    // Chunked, no length announced: refused once the body passes the limit.
    let head = format!(
        "POST /webhooks/local HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-codemill-delivery: big-2\r\nx-codemill-signature-256: {signature}\r\n\
         x-codemill-timestamp: {at}\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    let chunk_len = 64 * 1024;
    let mut chunk = format!("{chunk_len:x}\r\n").into_bytes();
    chunk.extend(std::iter::repeat_n(b' ', chunk_len));
    chunk.extend_from_slice(b"\r\n");
    let mut chunks = vec![chunk; ten_mib / chunk_len];
    chunks.push(b"0\r\n\r\n".to_vec());
    assert_eq!(raw_status(&server, head, chunks).await, 413);

    // A body of exactly the limit is read (and then fails the signature, not the limit).
    let at_limit = vec![b' '; 1024 * 1024];
    let r = server
        .client
        .post(server.url("/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "big-3")
        .header("x-codemill-timestamp", at.to_string())
        .header("x-codemill-signature-256", &signature)
        .body(at_limit)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(server.db.rows().await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_make_no_job_and_no_panic() {
    let server = start(Db::sqlite().await).await;
    let ticket = server.ticket("PROJ", "t").await;
    let key = ticket.key.to_string();
    let at = now();
    let signed = |body: &str| sign(LOCAL_SECRET, at, body.as_bytes());
    let post = |delivery: Option<&str>, content_type: &str, body: &str| {
        let mut req = server
            .client
            .post(server.url("/webhooks/local"))
            .header("content-type", content_type)
            .header("x-codemill-timestamp", at.to_string())
            .header("x-codemill-signature-256", signed(body))
            .body(body.to_string());
        if let Some(d) = delivery {
            req = req.header("x-codemill-delivery", d);
        }
        req.send()
    };
    let cases: Vec<(&str, Option<&str>, &str, String, u16)> = vec![
        (
            "malformed JSON",
            Some("m-1"),
            "application/json",
            "{\"event\":".into(),
            400,
        ),
        (
            "not an object",
            Some("m-2"),
            "application/json",
            "[1,2]".into(),
            400,
        ),
        (
            "no event",
            Some("m-3"),
            "application/json",
            "{\"ticket\":\"PROJ-1\"}".into(),
            400,
        ),
        (
            "wrong content type",
            Some("m-4"),
            "text/plain",
            ready(&key),
            415,
        ),
        (
            "form content type",
            Some("m-5"),
            "application/x-www-form-urlencoded",
            ready(&key),
            415,
        ),
        ("no delivery id", None, "application/json", ready(&key), 400),
        (
            "no ticket",
            Some("m-6"),
            "application/json",
            "{\"event\":\"ticket.ready\"}".into(),
            400,
        ),
        (
            "invalid ticket key",
            Some("m-7"),
            "application/json",
            ready("not a key"),
            422,
        ),
        (
            "unknown ticket",
            Some("m-8"),
            "application/json",
            ready("PROJ-99"),
            422,
        ),
        (
            "unknown project",
            Some("m-9"),
            "application/json",
            ready("OTHER-1"),
            422,
        ),
    ];
    for (what, delivery, content_type, body, status) in cases {
        let r = post(delivery, content_type, &body).await.unwrap();
        assert_eq!(r.status(), status, "{what}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{what}: {v}");
    }
    assert_eq!(server.db.rows().await, (0, 0, 0));

    // An event this version does not know: acknowledged and recorded, no job.
    let unknown = "{\"event\":\"ticket.commented\",\"ticket\":\"PROJ-1\",\"extra\":[1]}";
    let r = post(Some("u-1"), "application/json", unknown)
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["ignored"].clone(), v["job"].clone()),
        (true.into(), Value::Null)
    );
    let again: Value = post(Some("u-1"), "application/json", unknown)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(server.db.rows().await, (1, 0, 0));

    // Providers without a secret have no endpoint; unknown ones neither.
    for provider in ["generic", "github", "..%2F"] {
        let body = ready(&key);
        let r = server
            .client
            .post(server.url(&format!("/webhooks/{provider}")))
            .header("content-type", "application/json")
            .header("x-codemill-delivery", "p-1")
            .header("x-codemill-timestamp", at.to_string())
            .header("x-codemill-signature-256", signed(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{provider}");
    }
    assert_eq!(server.db.rows().await, (1, 0, 0));

    // Still serving after all of that.
    let health = server
        .client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // The delivery the whole time stayed valid: a proper one now makes the job.
    let r = server.deliver("ok-1", &ready(&key)).await;
    assert_eq!(r.status(), 202);
    assert_eq!(server.db.rows().await, (2, 1, 1));
}
