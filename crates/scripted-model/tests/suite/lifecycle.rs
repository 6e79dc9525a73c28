//! Error replies, Hang and EndlessStream versus shutdown, non-model paths, stopping on drop.

use std::time::{Duration, Instant};

use codemill_scripted_model::{Match, NO_ANSWER, Reply};
use futures_util::StreamExt;
use serde_json::json;

use super::{client, post, rule, start};

fn request(stream: bool) -> serde_json::Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn error_replies_carry_status_body_and_retry_after() {
    let server = start(vec![
        rule(
            "limited",
            Match {
                model: Some("m".into()),
                ..Match::default()
            },
            Reply::Error {
                status: 429,
                message: "slow down".into(),
                retry_after: Some(7),
            },
        )
        .times(1),
        rule(
            "overloaded",
            Match::default(),
            Reply::error(529, "overloaded"),
        ),
    ])
    .await;
    let (status, headers, body) = post(&server, "/v1/messages", &request(true)).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );

    let (status, headers, body) = post(&server, "/v1/messages", &request(false)).await;
    assert_eq!(status, 529);
    assert!(headers.get("retry-after").is_none());
    assert!(body.contains("overloaded_error"));

    let (status, _, body) = post(&server, "/v1/responses", &request(true)).await;
    assert_eq!(status, 529);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["message"], "overloaded");
    let statuses: Vec<_> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 529, 529]);
}

#[tokio::test]
async fn hang_does_not_block_shutdown() {
    let server = start(vec![rule("stuck", Match::default(), Reply::Hang)]).await;
    let url = format!("{}/v1/messages", server.base_url());
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .json(&request(true))
            .send()
            .await
            .map(|response| response.status().as_u16())
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.requests().is_empty() {
        assert!(Instant::now() < deadline, "request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.requests()[0].status, NO_ANSWER);
    assert!(!pending.is_finished());

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), server.shutdown())
        .await
        .expect("shutdown blocked by a hanging request");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The held request is released (answered 503 or cut), not left hanging.
    let outcome = tokio::time::timeout(Duration::from_secs(3), pending)
        .await
        .expect("client still hanging")
        .unwrap();
    if let Ok(status) = outcome {
        assert_eq!(status, 503);
    }
}

#[tokio::test]
async fn endless_stream_pings_until_shutdown() {
    let server = start(vec![rule(
        "endless",
        Match::default(),
        Reply::EndlessStream,
    )])
    .await;
    let response = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .json(&request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.matches("event: ping").count() < 3 {
        assert!(Instant::now() < deadline, "no pings: {seen}");
        let chunk = body.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.starts_with("event: message_start"));
    assert!(!seen.contains("message_stop"));

    tokio::time::timeout(Duration::from_secs(3), server.shutdown())
        .await
        .expect("shutdown blocked by an endless stream");
    // The stream ends (cleanly or cut) once the server is gone.
    let rest = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(rest.is_ok(), "stream did not end after shutdown");
}

#[tokio::test]
async fn preconnect_unknown_paths_and_recording() {
    let server = start(Vec::new()).await;
    let base = server.base_url();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert!(!base.ends_with('/'));

    let head = client().head(format!("{base}/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let get = client().get(&base).send().await.unwrap();
    assert_eq!(get.status(), 200);

    let missing = client()
        .post(format!("{base}/v1/embeddings"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/embeddings")
    );

    let recorded = server.requests();
    let summary: Vec<_> = recorded
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status, r.api))
        .collect();
    assert_eq!(
        summary,
        [
            ("HEAD", "/", 200, None),
            ("GET", "/", 200, None),
            ("POST", "/v1/embeddings", 404, None),
        ]
    );
    assert_eq!(recorded[2].body, json!("not json"));
    assert!(server.unmatched().is_empty());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let server = start(vec![rule("any", Match::default(), Reply::text("x"))]).await;
    let base = server.base_url();
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // A fresh client, so no pooled connection outlives the listener.
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        if fresh.get(&base).send().await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server still answering after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
