//! HTTP load: signed `ticket.ready` deliveries and `GET /health` requests prepared up front,
//! sent with bounded concurrency, with latencies and statuses counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crate::SECRET;
use crate::settings::{ms, pct};
/// One prepared request: a GET, or a signed webhook delivery (id, body, timestamp header,
/// signature header).
pub(crate) struct Req {
    url: String,
    hook: Option<(String, Vec<u8>, String, String)>,
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, the local webhook signature.
fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "sha256={}",
        codemill_testkit::fakes::hmac_sha256_hex(SECRET.as_bytes(), &signed)
    )
}

/// One signed `ticket.ready` delivery per key, each with its own delivery id. Signed up front,
/// so signing is not measured; a load is sent at once, well within the 5 minutes the service
/// accepts a timestamp for.
pub(crate) fn webhooks(base: &str, keys: &[String], tag: &str) -> Vec<Req> {
    let timestamp = Utc::now().timestamp().to_string();
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let body =
                serde_json::to_vec(&json!({"event": "ticket.ready", "ticket": key})).unwrap();
            let signature = sign(&timestamp, &body);
            Req {
                url: format!("{base}/webhooks/local"),
                hook: Some((
                    format!("bench-{tag}-{i}"),
                    body,
                    timestamp.clone(),
                    signature,
                )),
            }
        })
        .collect()
}

pub(crate) fn health(base: &str, n: usize) -> Vec<Req> {
    (0..n)
        .map(|_| Req {
            url: format!("{base}/health"),
            hook: None,
        })
        .collect()
}

pub(crate) struct Load {
    pub(crate) wall: Duration,
    pub(crate) lat_ms: Vec<f64>,
    outcomes: BTreeMap<String, usize>,
}

impl Load {
    pub(crate) fn rps(&self) -> f64 {
        self.lat_ms.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub(crate) fn count(&self, outcome: &str) -> usize {
        self.outcomes.get(outcome).copied().unwrap_or(0)
    }

    pub(crate) fn outcomes(&self) -> String {
        let parts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{v} × {k}"))
            .collect();
        parts.join(", ")
    }

    pub(crate) fn line(&self, what: &str) -> String {
        format!(
            "{what:<26} {:>6} req in {:>7.2} s = {:>8.1} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            self.lat_ms.len(),
            self.wall.as_secs_f64(),
            self.rps(),
            pct(&self.lat_ms, 50.0),
            pct(&self.lat_ms, 99.0),
            pct(&self.lat_ms, 100.0),
        )
    }
}

pub(crate) fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap()
}

async fn send(client: &reqwest::Client, r: &Req) -> String {
    let request = match &r.hook {
        Some((delivery, body, timestamp, signature)) => client
            .post(&r.url)
            .header("content-type", "application/json")
            .header("x-codemill-delivery", delivery)
            .header("x-codemill-timestamp", timestamp)
            .header("x-codemill-signature-256", signature)
            .body(body.clone()),
        None => client.get(&r.url),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return "transport error: timeout".into(),
        Err(e) if e.is_connect() => return "transport error: connect".into(),
        Err(_) => return "transport error: other".into(),
    };
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    if r.hook.is_none() {
        return format!("HTTP {status}");
    }
    if status != 202 {
        let text = String::from_utf8_lossy(&body);
        return format!(
            "HTTP {status}: {}",
            text.chars().take(120).collect::<String>()
        );
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let flag = |k: &str| v[k].as_bool() == Some(true);
    if flag("duplicate") {
        "202 duplicate".into()
    } else if flag("existing") {
        "202 existing job".into()
    } else if flag("ignored") {
        "202 ignored".into()
    } else if v["job"].is_string() {
        "202 job created".into()
    } else {
        format!("202 unexpected body {v}")
    }
}

/// Send every request once, at most `concurrency` in flight; requests not started within
/// `limit` are counted, not sent.
pub(crate) async fn load(
    client: &reqwest::Client,
    reqs: Vec<Req>,
    concurrency: usize,
    limit: Duration,
) -> Load {
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, reqs.len().max(1)) {
        let (client, reqs, next) = (client.clone(), reqs.clone(), next.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = reqs.get(i) else { break };
                if started.elapsed() > limit {
                    *outcomes.entry("not sent (time limit)".into()).or_default() += 1;
                    continue;
                }
                let t = Instant::now();
                let outcome = send(&client, r).await;
                lat.push(ms(t.elapsed()));
                *outcomes.entry(outcome).or_default() += 1;
            }
            (lat, outcomes)
        });
    }
    let mut all = Load {
        wall: Duration::ZERO,
        lat_ms: Vec::new(),
        outcomes: BTreeMap::new(),
    };
    while let Some(r) = tasks.join_next().await {
        let (lat, outcomes) = r.unwrap();
        all.lat_ms.extend(lat);
        for (k, v) in outcomes {
            *all.outcomes.entry(k).or_default() += v;
        }
    }
    all.wall = started.elapsed();
    all
}
