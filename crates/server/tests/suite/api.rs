//! The JSON API: bearer tokens, the read views, the state changes through `Control`, and the
//! server's own behaviour (health, metrics, panics, timeouts, shutdown).

use std::time::Duration;

use chrono::Utc;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::TicketStatus;
use codemill_server::ServerConfig;
use codemill_store::{Limits, Outcome, Store};
use serde_json::{Value, json};

use codemill_testkit::journal::to_approval;

use crate::harness::{Call, Db, Server, config, ready, start, start_with, token};

async fn get(server: &Server, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = server.client.get(server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn post(server: &Server, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = server.client.post(server.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_needs_a_valid_bearer_token() {
    let server = start(Db::sqlite().await).await;
    let ticket = server.ticket("PROJ", "t").await;
    let good = token(server.store(), "ci").await;
    let revoked = token(server.store(), "old").await;
    let old_id = server.store().api_tokens().await.unwrap()[1].id;
    assert!(server.store().revoke_api_token(old_id).await.unwrap());

    let paths = [
        "/api/tickets".to_string(),
        format!("/api/tickets/{}", ticket.key),
        format!("/api/jobs/{}", JobId::new()),
        "/api/proposals".to_string(),
    ];
    for path in &paths {
        let r = get(&server, path, None).await;
        assert_eq!(r.status(), 401, "{path} without a token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "missing or invalid bearer token");
        for bad in ["cm_wrong", revoked.as_str(), &good[..good.len() - 1]] {
            assert_eq!(get(&server, path, Some(bad)).await.status(), 401, "{path}");
        }
        let basic = server
            .client
            .get(server.url(path))
            .header("authorization", format!("Basic {good}"))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401);
    }
    let r = server
        .client
        .post(server.url(&format!("/api/tickets/{}/approve", ticket.key)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(server.control.calls().is_empty());

    let r = get(&server, "/api/tickets", Some(&good)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tickets"][0]["key"], ticket.key.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_and_job_views() {
    let server = start(Db::sqlite().await).await;
    let t = token(server.store(), "ci").await;
    let ticket = server.ticket("PROJ", "Add a flag").await;
    server.ticket("OTHER", "elsewhere").await;
    server
        .store()
        .add_comment(&ticket.key, "alice", None, "please hurry")
        .await
        .unwrap();

    let v: Value = get(&server, "/api/tickets?project=PROJ", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["tickets"].as_array().unwrap().len(), 1);
    // By status, alone and with a project; a word that is not a status is named.
    server
        .store()
        .set_ticket_status(&ticket.key, TicketStatus::NeedsInput, "x")
        .await
        .unwrap();
    let keys = |v: Value| -> Vec<String> {
        v["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap().to_string())
            .collect()
    };
    for (query, want) in [
        ("status=needs_input", vec!["PROJ-1"]),
        ("status=todo", vec!["OTHER-1"]),
        ("status=todo,%20needs_input", vec!["OTHER-1", "PROJ-1"]),
        ("status=todo,needs_input&project=PROJ", vec!["PROJ-1"]),
        ("status=done", vec![]),
    ] {
        let r = get(&server, &format!("/api/tickets?{query}"), Some(&t)).await;
        assert_eq!(r.status(), 200, "{query}");
        assert_eq!(keys(r.json().await.unwrap()), want, "{query}");
    }
    for (query, says) in [
        (
            "status=todo,waiting",
            "status \"waiting\" is not a ticket status (one of todo, ",
        ),
        ("status=", "status is empty"),
    ] {
        let r = get(&server, &format!("/api/tickets?{query}"), Some(&t)).await;
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(says), "{query}: {error}");
    }

    let path = format!("/api/tickets/{}", ticket.key);
    let v: Value = get(&server, &path, Some(&t)).await.json().await.unwrap();
    assert_eq!(v["ticket"]["title"], "Add a flag");
    assert_eq!(v["comments"][0]["body"], "please hurry");
    assert_eq!(v["job"], Value::Null);

    let accepted: Value = server
        .deliver("d-1", &ready(&ticket.key.to_string()))
        .await
        .json()
        .await
        .unwrap();
    let job = accepted["job"].as_str().unwrap();
    let v: Value = get(&server, &path, Some(&t)).await.json().await.unwrap();
    assert_eq!(v["job"]["id"], job);
    // No worker has taken it yet: queued, as its queue row says.
    assert_eq!(v["job"]["status"], "queued");
    assert_eq!(v["job"]["stage"], "readiness");
    assert_eq!(v["job"]["queue"]["state"], "queued");
    assert_eq!(v["job"]["max_rounds"], 3);

    let v: Value = get(&server, &format!("/api/jobs/{job}"), Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["job"]["ticket"], ticket.key.to_string());
    assert_eq!(v["journal"].as_array().unwrap().len(), 1);
    assert_eq!(v["journal"][0]["event"]["type"], "created");
    // The short form the CLI prints names the same job.
    let short = job.replace('-', "");
    let short = &short[short.len() - 8..];
    let v: Value = get(&server, &format!("/api/jobs/{short}"), Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["job"]["id"], job);

    for (path, status) in [
        ("/api/tickets/PROJ-99".to_string(), 404),
        ("/api/tickets/not-a-key".to_string(), 400),
        (format!("/api/jobs/{}", JobId::new()), 404),
        ("/api/jobs/42".to_string(), 400),
        ("/api/nothing".to_string(), 404),
    ] {
        let r = get(&server, &path, Some(&t)).await;
        assert_eq!(r.status(), status, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
}

/// A foreground job (no queue row) awaiting approval, as `codemill run` leaves it.
async fn foreground_proposal(store: &Store, key: &TicketKey) -> JobId {
    let id = JobId::new();
    let events = to_approval(key);
    store.create_job(id, key, &events[0]).await.unwrap();
    for (seq, event) in events.iter().enumerate().skip(1) {
        store.append(id, seq as i64, event).await.unwrap();
    }
    store
        .set_ticket_status(key, TicketStatus::AwaitingApproval, "codemill")
        .await
        .unwrap();
    id
}

/// A queued job (from a webhook) that a worker drove to approval and released as waiting.
async fn queued_proposal(server: &Server, key: &TicketKey) -> JobId {
    let accepted: Value = server
        .deliver(&format!("for-{key}"), &ready(&key.to_string()))
        .await
        .json()
        .await
        .unwrap();
    let id: JobId = accepted["job"].as_str().unwrap().parse().unwrap();
    let store = server.store();
    let lease = store
        .claim("w1", Duration::from_secs(60), Limits::UNLIMITED, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.job, id);
    for (seq, event) in to_approval(key).iter().enumerate().skip(1) {
        store
            .append_fenced(&lease, seq as i64, event, Utc::now())
            .await
            .unwrap();
    }
    store
        .release(&lease, &Outcome::Waiting, Utc::now())
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_lists_jobs_awaiting_approval() {
    let server = start(Db::sqlite().await).await;
    let t = token(server.store(), "ci").await;
    let v: Value = get(&server, "/api/proposals", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["proposals"], json!([]));

    let fg = server.ticket("PROJ", "foreground").await;
    let queued = server.ticket("PROJ", "queued").await;
    let running = server.ticket("PROJ", "still running").await;
    let fg_job = foreground_proposal(server.store(), &fg.key).await;
    let queued_job = queued_proposal(&server, &queued.key).await;
    server
        .deliver("running", &ready(&running.key.to_string()))
        .await;

    let v: Value = get(&server, "/api/proposals", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    let mut got: Vec<(String, String, String)> = v["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["proposal"]["commit"], "c1");
            assert_eq!(p["cost_usd"], 1.5);
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("job"), s("ticket"), s("title"))
        })
        .collect();
    got.sort();
    let mut want = vec![
        (fg_job.to_string(), fg.key.to_string(), "foreground".into()),
        (
            queued_job.to_string(),
            queued.key.to_string(),
            "queued".into(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);

    let v: Value = get(&server, &format!("/api/tickets/{}", queued.key), Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["job"]["status"], "awaiting_approval");
    assert_eq!(v["job"]["queue"]["state"], "waiting");
    assert_eq!(v["job"]["commit"], "c1");
}

/// A follower reads every job's journal entries in one order, page by page from its cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_read_in_order_from_a_cursor() {
    let server = start(Db::sqlite().await).await;
    let t = token(server.store(), "ci").await;
    assert_eq!(get(&server, "/api/events", None).await.status(), 401);
    let v: Value = get(&server, "/api/events", Some(&t))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"events": [], "next": 0}));

    let fg = server.ticket("PROJ", "foreground").await;
    let queued = server.ticket("PROJ", "queued").await;
    let fg_job = foreground_proposal(server.store(), &fg.key).await;
    let queued_job = queued_proposal(&server, &queued.key).await;
    let total = 2 * to_approval(&fg.key).len();

    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let v: Value = get(
            &server,
            &format!("/api/events?after={cursor}&limit=3"),
            Some(&t),
        )
        .await
        .json()
        .await
        .unwrap();
        let page = v["events"].as_array().unwrap().clone();
        assert!(page.len() <= 3);
        if page.is_empty() {
            assert_eq!(v["next"], cursor, "an empty page keeps the cursor");
            break;
        }
        cursor = v["next"].as_i64().unwrap();
        assert_eq!(page.last().unwrap()["pos"], cursor);
        seen.extend(page);
    }
    assert_eq!(seen.len(), total);
    let (fg_id, queued_id) = (fg_job.to_string(), queued_job.to_string());
    assert_eq!(seen[0]["job"], fg_id.as_str());
    assert_eq!(seen[0]["event"]["type"], "created");
    // The foreground job was written whole before the queued one began.
    let jobs: Vec<&str> = seen.iter().map(|e| e["job"].as_str().unwrap()).collect();
    let half = total / 2;
    assert!(jobs[..half].iter().all(|j| *j == fg_id));
    assert!(jobs[half..].iter().all(|j| *j == queued_id));
    assert_eq!(seen[0]["ticket"], fg.key.to_string());
    assert!(
        seen.iter()
            .filter(|e| e["job"] == queued_id.as_str())
            .map(|e| e["seq"].as_i64().unwrap())
            .eq(0..to_approval(&queued.key).len() as i64),
        "each job's entries in journal order"
    );
    let bad = get(&server, "/api/events?after=-1", Some(&t)).await;
    assert_eq!(bad.status(), 400);

    // An entry this version cannot read (a newer codemill wrote it) is served in its place,
    // without its event and with why, and the cursor moves past it.
    server
        .db
        .raw(&format!(
            "INSERT INTO journal (job_id, seq, kind, event, created_at) \
             SELECT job_id, seq + 1, 'merge_train_joined', '{{\"type\":\"merge_train_joined\"}}', created_at \
             FROM journal WHERE job_id = '{queued_id}' ORDER BY seq DESC LIMIT 1; \
             INSERT INTO event_log (job_id, seq, prev_status, status) \
             SELECT job_id, MAX(seq), 'awaiting_approval', 'awaiting_approval' FROM journal WHERE job_id = '{queued_id}'"
        ))
        .await;
    let v: Value = get(&server, &format!("/api/events?after={cursor}"), Some(&t))
        .await
        .json()
        .await
        .unwrap();
    let [entry] = v["events"].as_array().unwrap().as_slice() else {
        panic!("{v}");
    };
    assert_eq!(entry["job"], queued_id.as_str());
    assert_eq!(entry["event"], Value::Null);
    let why = entry["unreadable"].as_str().unwrap();
    assert!(why.contains("merge_train_joined"), "{why}");
    assert_eq!(v["next"], entry["pos"]);
    assert!(seen.iter().all(|e| e.get("unreadable").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_go_through_control() {
    let server = start(Db::sqlite().await).await;
    let t = token(server.store(), "alice").await;
    let job = server.control.job.to_string();
    let by = "api-token:alice".to_string();

    for (action, body) in [
        ("approve", None),
        ("approve", Some(json!({ "commit": "abc1234" }))),
        ("reject", Some(json!({ "reason": "  not like this  " }))),
        ("cancel", None),
        ("retry", None),
    ] {
        let r = post(&server, &format!("/api/tickets/PROJ-1/{action}"), &t, body).await;
        assert_eq!(r.status(), 200, "{action}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["job"], job.as_str());
        assert_eq!(v["ticket"], "PROJ-1");
    }
    let ticket = "PROJ-1".to_string();
    assert_eq!(
        server.control.calls(),
        vec![
            Call::Approve {
                ticket: ticket.clone(),
                by: by.clone(),
                seen: None,
            },
            Call::Approve {
                ticket: ticket.clone(),
                by: by.clone(),
                seen: Some("abc1234".into()),
            },
            Call::Reject {
                ticket: ticket.clone(),
                reason: "not like this".into(),
                by: by.clone()
            },
            Call::Cancel {
                ticket: ticket.clone(),
                by
            },
            Call::Retry { ticket },
        ]
    );

    // A rejection needs a reason; none of these reach Control.
    let before = server.control.calls().len();
    for body in [None, Some(json!({})), Some(json!({ "reason": "   " }))] {
        let r = post(&server, "/api/tickets/PROJ-1/reject", &t, body.clone()).await;
        assert!(r.status().is_client_error(), "{body:?}: {}", r.status());
    }
    let r = post(&server, "/api/tickets/nope/approve", &t, None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(server.control.calls().len(), before);

    // Control's refusals keep their meaning and their message.
    for (ticket, status, message) in [
        ("NOPE-1", 404, "no ticket NOPE-1"),
        (
            "BUSY-1",
            409,
            "BUSY-1 is not awaiting approval (its job is running)",
        ),
        ("FAIL-1", 500, "the store went away"),
    ] {
        for action in ["approve", "cancel", "retry"] {
            let r = post(
                &server,
                &format!("/api/tickets/{ticket}/{action}"),
                &t,
                None,
            )
            .await;
            assert_eq!(r.status(), status, "{action} {ticket}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_become_500_and_slow_requests_408() {
    let server = start_with(
        Db::sqlite().await,
        ServerConfig {
            request_timeout: Duration::from_millis(300),
            ..config()
        },
    )
    .await;
    let t = token(server.store(), "ci").await;
    let r = post(&server, "/api/tickets/PANIC-1/approve", &t, None).await;
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "internal error");

    let started = std::time::Instant::now();
    let r = post(&server, "/api/tickets/SLOW-1/approve", &t, None).await;
    assert_eq!(r.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Neither took the server down.
    let r = get(&server, "/api/tickets", Some(&t)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer() {
    let server = start(Db::sqlite().await).await;
    let r = get(&server, "/health", None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({ "status": "ok", "store": "sqlite", "store_reachable": true })
    );
    let r = get(&server, "/ready", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "ready": true }));

    let ticket = server.ticket("PROJ", "t").await;
    server.deliver("d-1", &ready(&ticket.key.to_string())).await;
    server.deliver("d-1", &ready(&ticket.key.to_string())).await;
    get(&server, "/api/tickets", Some("cm_wrong")).await;

    let r = get(&server, "/metrics", None).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let value = |prefix: &str, labels: &[&str]| -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix) && labels.iter().all(|lb| l.contains(lb)))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    let deliveries = "codemill_webhook_deliveries_total{";
    assert_eq!(
        value(
            deliveries,
            &["provider=\"local\"", "result=\"job_created\""]
        )
        .as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        value(deliveries, &["provider=\"local\"", "result=\"duplicate\""]).as_deref(),
        Some("1")
    );
    let requests = "codemill_http_requests_total{";
    assert_eq!(
        value(
            requests,
            &[
                "route=\"/webhooks/{provider}\"",
                "status=\"202\"",
                "method=\"POST\""
            ]
        )
        .as_deref(),
        Some("2")
    );
    assert_eq!(
        value(requests, &["route=\"/api/tickets\"", "status=\"401\""]).as_deref(),
        Some("1")
    );
    assert_eq!(
        value("codemill_jobs{", &["state=\"queued\""]).as_deref(),
        Some("1")
    );
    assert_eq!(
        value("codemill_jobs{", &["state=\"done\""]).as_deref(),
        Some("0")
    );
    // Raw paths (ticket keys, ids) never become labels.
    assert!(!text.contains("PROJ-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_gracefully() {
    let server = start(Db::sqlite().await).await;
    let url = server.url("/health");
    let client = server.client.clone();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    server.stop().await.unwrap();
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).send().await.is_err());
}

/// Every failure of the API is `{"error": "..."}` with a status that says whose fault it is,
/// also those decided before a handler runs (query, path, method, body size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_failure_is_json_and_names_the_problem() {
    let server = start(Db::sqlite().await).await;
    let t = token(server.store(), "ci").await;
    let ticket = server.ticket("PROJ", "t").await;
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();
    for (path, status, says) in [
        ("/api/events?after=abc", 400, "after"),
        ("/api/events?limit=-5", 400, "limit"),
        ("/api/events?limit=0", 400, "limit must be 1 or more"),
        (
            "/api/tickets?status=todo&status=needs_attention",
            400,
            "duplicate field `status`",
        ),
        ("/api/tickets/%ff%fe", 400, "UTF-8"),
        ("/api/nothing-here", 404, "no such route"),
    ] {
        let r = get(&server, path, Some(&t)).await;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(error(&v).contains(says), "{path}: {v}");
    }
    // A method the route does not take: 405, the allowed ones named in `Allow`.
    let r = server
        .client
        .delete(server.url("/api/tickets"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"), "{:?}", r.headers());
    let v: Value = r.json().await.unwrap();
    assert_eq!(error(&v), "Method Not Allowed");
    // Not a commit id: the request is wrong (400), not the proposal (409).
    let r = post(
        &server,
        &format!("/api/tickets/{}/approve", ticket.key),
        &t,
        Some(json!({ "commit": "xyz" })),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(error(&v).contains("\"xyz\" is not a commit id"), "{v}");
    assert!(server.control.calls().is_empty(), "nothing was decided");
    // A body over the limit.
    let r = server
        .client
        .post(server.url(&format!("/api/tickets/{}/reject", ticket.key)))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert!(!error(&v).is_empty(), "{v}");
}
