//! A PostgreSQL outage as a node sees it: the store is reached through a TCP relay the test
//! can cut (every open connection dropped, new ones refused) and mend.

use std::time::{Duration, Instant};

use codemill_store::Store;
use codemill_testkit::relay::{Relay, through};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::{Db, config, node, token};

async fn get_json(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = client.get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Poll `url` until its status is `want`, for at most `within`.
async fn until_status(client: &reqwest::Client, url: &str, want: u16, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = get_json(client, url, None).await;
        if status == want {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "{url} still answers {status} {body} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_shows_in_health_and_readiness_and_api_calls_fail_fast() {
    let db = Db::postgres().await;
    let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    drop(relay_listener);
    let (upstream, _) = through(db.postgres_url().unwrap(), relay_addr).unwrap();
    let relay = Relay::start(upstream).await.unwrap();
    let (_, url) = through(db.postgres_url().unwrap(), relay.addr).unwrap();
    let store = Store::connect_postgres(&url).await.unwrap();
    let bearer = token(&store, "ops").await;
    let node = node(&store, config()).await;
    let base = format!("http://{}", node.addr);
    let client = reqwest::Client::new();

    let (status, health) = get_json(&client, &format!("{base}/health"), None).await;
    assert_eq!(status, 200);
    assert_eq!(health["store_reachable"], json!(true), "{health}");
    let (status, _) = get_json(&client, &format!("{base}/ready"), None).await;
    assert_eq!(status, 200);
    let (status, _) = get_json(&client, &format!("{base}/api/tickets"), Some(&bearer)).await;
    assert_eq!(status, 200);

    relay.cut();
    let down = until_status(
        &client,
        &format!("{base}/ready"),
        503,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(down["ready"], json!(false), "{down}");
    let (status, health) = get_json(&client, &format!("{base}/health"), None).await;
    assert_eq!(status, 200, "liveness stays up");
    assert_eq!(health["status"], json!("degraded"), "{health}");
    assert_eq!(health["store_reachable"], json!(false), "{health}");
    // An API call fails fast with 503 (retry later), not a hang or a 500.
    let started = Instant::now();
    let (status, body) = get_json(&client, &format!("{base}/api/tickets"), Some(&bearer)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered after {:?}",
        started.elapsed()
    );

    relay.mend();
    until_status(
        &client,
        &format!("{base}/ready"),
        200,
        Duration::from_secs(15),
    )
    .await;
    let (status, health) = get_json(&client, &format!("{base}/health"), None).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
    let (status, body) = get_json(&client, &format!("{base}/api/tickets"), Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    store.close().await;
}
