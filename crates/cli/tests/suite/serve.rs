//! `codemill serve`: a signed webhook queues a ticket, the in-process workers take it to a
//! proposal, an approval through the token-authenticated API ships it.

use codemill_testkit::fakes::chat::{FakeChat, FakeChatOptions};

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
    // People are told through a webhook that is down when the proposal comes: the job goes on,
    // and the message arrives once, later.
    let chat = FakeChat::start(FakeChatOptions::default()).await.unwrap();
    chat.fail_next(1);
    env.write_config(&format!(
        "\n[[projects.P.notify]]\nchannel = \"webhook\"\nurl = \"{}\"\nsecret_env = \"NOTIFY_SECRET\"\non = [\"proposal\", \"shipped\"]\n",
        chat.hook_url()
    ));
    let server = Service::start(
        &env,
        &["--webhook-secret-env", "local=HOOK_SECRET"],
        &[("HOOK_SECRET", "s3cret"), ("NOTIFY_SECRET", "n0tify")],
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
    // The delivery is listed with the job it started.
    let inbox = env.ok(&["inbox"]);
    assert!(
        inbox.contains("local") && inbox.contains("d-1  handled when received: job "),
        "{inbox}"
    );
    // What the agents did is there for a live page: the implementer's tool calls, by stage.
    let ticket: serde_json::Value = http
        .get(format!("{base}/api/tickets/P-1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = ticket["job"]["id"].as_str().unwrap().to_string();
    let activity: serde_json::Value = http
        .get(format!("{base}/api/jobs/{job}/activity?limit=1000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = activity["activity"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|a| a["stage"] == "implement" && a["event"]["type"] == "tool_call"),
        "{activity}"
    );
    assert_eq!(activity["next"], rows.last().unwrap()["id"]);
    let unauthorised = http
        .post(format!("{base}/api/tickets/P-1/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    // An approval names the commit the approver saw: another one is refused, not shipped.
    let stale = http
        .post(format!("{base}/api/tickets/P-1/approve"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"commit": "0000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    let said = stale.text().await.unwrap();
    assert!(
        said.contains("the proposal changed since 0000000"),
        "{said}"
    );
    let commit = env.json(&["show", "P-1", "--json"])["job"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    let approved = http
        .post(format!("{base}/api/tickets/P-1/approve"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"commit": &commit[..12]}))
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
    // Proposal (after one failed attempt) and shipped, each once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut events = loop {
        let delivered: Vec<String> = chat
            .delivered("/hook")
            .iter()
            .map(|r| r.body["event"].as_str().unwrap_or_default().to_string())
            .collect();
        if delivered.len() >= 2 || std::time::Instant::now() > deadline {
            break delivered;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // The proposal's retry may come after the shipped message: each is on its own.
    events.sort();
    assert_eq!(events, ["proposal", "shipped"]);
    assert_eq!(
        chat.requests().len(),
        3,
        "one failed attempt, then each once"
    );
    let sent = env.json(&["notifications", "--json"]);
    assert_eq!(sent.as_array().unwrap().len(), 2, "{sent}");
    assert!(
        sent.as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "sent"),
        "{sent}"
    );
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

/// P-2: a ticket labelled for codemill that no webhook announced.
fn add_labelled(env: &Env) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_queues_labelled_tickets_that_no_webhook_announced() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    add_labelled(&env);
    let server = Service::start(&env, &["--poll-secs", "1"], &[]);
    wait_state(&env, "P-2", "awaiting_approval");
    // The unlabelled ticket was left alone.
    assert!(env.json(&["show", "P-1", "--json"])["job"].is_null());
    assert!(server.stop().success());
}

/// A labelled ticket whose job's journal no longer replays is skipped, with why, and the
/// tickets after it are still queued: one broken job does not stop the poller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_skips_a_ticket_it_cannot_read_and_queues_the_rest() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    add_labelled(&env);
    // P-1, polled first, is labelled and its job's journal has an entry that does not apply.
    let store = codemill_store::Store::open(&env.home.join("codemill.db"))
        .await
        .unwrap();
    assert!(
        store
            .set_label(&"P-1".parse().unwrap(), "codemill", true)
            .await
            .unwrap()
    );
    let broken = super::harness::break_a_job(&env, "P-1").await;
    let log = env.dir.path().join("serve.log");
    let server = Service::start_logged(&env, &["--poll-secs", "1"], &[], Some(&log));
    wait_state(&env, "P-2", "awaiting_approval");
    assert!(server.stop().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(&format!(
            "poller: skipped P-1: job {broken}: event `created`"
        )),
        "{log}"
    );
}

/// `application/x-www-form-urlencoded`, as a browser posts a form (values here need no escaping
/// beyond spaces).
fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_approved_from_its_page_and_ships() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.add_user("amy", "approver", "a long enough secret");
    env.ok(&["run", "P-1"]);
    let server = Service::start(&env, &[], &[]);
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |path: &str, cookie: Option<&str>, body: String| {
        let mut r = http
            .post(format!("{base}{path}"))
            .header("origin", base.as_str())
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let signed = post(
        "/login",
        None,
        form(&[("username", "amy"), ("password", "a long enough secret")]),
    )
    .await
    .unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http
        .get(format!("{base}/tickets/P-1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let at = page
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {page}"))
            + marker.len();
        page[at..at + page[at..].find('"').unwrap()].to_string()
    };
    let (csrf, commit) = (value("csrf"), value("commit"));
    assert_eq!(
        commit,
        env.json(&["show", "P-1", "--json"])["job"]["commit"]
            .as_str()
            .unwrap()
    );
    let approved = post(
        "/tickets/P-1/approve",
        Some(&cookie),
        form(&[("csrf", &csrf), ("commit", &commit)]),
    )
    .await
    .unwrap();
    assert_eq!(approved.status(), 303);
    wait_state(&env, "P-1", "done");
    assert_eq!(
        env.remote_branch("codemill/P-1").as_deref(),
        Some(commit.as_str())
    );
    let show = env.json(&["show", "P-1", "--json"]);
    let by = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "approved")
        .map(|e| e["event"]["by"].clone());
    assert_eq!(by, Some(serde_json::json!("user:amy")));
}

/// `serve --log-format json` through a whole job (webhook, agents, gates, approval, push) with
/// debug logs: every stderr line is one JSON object; the job's lines carry its id, ticket,
/// stage and trace id; no secret of the service (model key, webhook secret, API token) is in
/// any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_of_a_whole_job_carry_the_job_and_no_secret() {
    const HOOK: &str = "planted-webhook-secret-5f1c";
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();
    let log = env.dir.path().join("serve.log");
    let server = Service::start_logged(
        &env,
        &["--webhook-secret-env", "local=HOOK_SECRET"],
        &[
            ("HOOK_SECRET", HOOK),
            ("CODEMILL_LOG", "debug"),
            ("CODEMILL_LOG_FORMAT", "json"),
        ],
        Some(&log),
    );
    let (base, http) = (server.base.clone(), server.http.clone());
    let body = br#"{"event": "ticket.ready", "ticket": "P-1"}"#;
    let now = chrono::Utc::now().timestamp().to_string();
    let accepted = http
        .post(format!("{base}/webhooks/local"))
        .header("content-type", "application/json")
        .header("x-codemill-delivery", "d-1")
        .header("x-codemill-timestamp", &now)
        .header("x-codemill-signature-256", sign(HOOK, &now, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    wait_state(&env, "P-1", "awaiting_approval");
    let approved = http
        .post(format!("{base}/api/tickets/P-1/approve"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200);
    wait_state(&env, "P-1", "done");
    let job = env.json(&["show", "P-1", "--json"])["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(server.stop().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 20, "{text}");
    for line in &lines {
        assert!(
            line["time"].is_string() && line["level"].is_string() && line["message"].is_string(),
            "{line}"
        );
    }
    let steps: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "step started")
        .collect();
    assert!(!steps.is_empty(), "{text}");
    for step in &steps {
        assert_eq!(step["job"], job.as_str(), "{step}");
        assert_eq!(step["ticket"], "P-1", "{step}");
        assert_eq!(step["trace_id"], job.replace('-', "").as_str(), "{step}");
        assert!(step["stage"].is_string(), "{step}");
    }
    let stages: std::collections::BTreeSet<&str> =
        steps.iter().filter_map(|s| s["stage"].as_str()).collect();
    assert!(
        stages.contains("implement") && stages.contains("push"),
        "{stages:?}"
    );
    // What the workers say reaches the same stream as JSON.
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("worker: ")),
        "{text}"
    );
    for secret in [HOOK, token.as_str(), "test-key-123"] {
        assert!(!text.contains(secret), "a secret is in the logs");
    }
}
