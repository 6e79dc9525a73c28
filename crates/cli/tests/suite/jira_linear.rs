//! Jira and Linear end to end through `codemill serve`: a Linear issue acknowledged within ten
//! seconds and Done on merge, a Linear comment that names its issue only by id, a Jira ticket
//! from its trigger to a plan comment, a draft PR and Done on merge (on Cloud's REST v3 with ADF,
//! and on Data Center's REST v2 with wiki markup), and the poller reading every page of an
//! outside tracker. Helpers shared with GitHub live in `outside.rs`.

use std::time::{Duration, Instant};

use codemill_testkit::fakes::RecordedRequest;
use codemill_testkit::fakes::linear::{FakeLinear, FakeLinearOptions};
use serde_json::Value;

use super::harness::{Env, HELLO_GATE, Service, wait_state};
use super::outside::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linear_comment_naming_its_issue_only_by_id_queues_the_issue() {
    let gh = fake_github().await;
    let linear = FakeLinear::start(FakeLinearOptions {
        api_key: "lin_api_test".into(),
        team_key: "ENG".into(),
        ..FakeLinearOptions::default()
    })
    .await
    .unwrap();
    let id = linear.add_issue("Say hello", "Print hello.", "Todo", &["codemill"]);
    let env = Env::new(rules(), HELLO_GATE, "").await;
    let alice = linear.user_id("alice");
    let extra = format!(
        "[projects.ENG]\nrepo = \"{}\"\ntracker = \"linear\"\nforge = \"github\"\n\n[projects.ENG.roles]\ntrigger = [\"{alice}\"]\n\n[projects.ENG.linear]\napi_url = \"{}\"\ntoken_env = \"LINEAR_KEY\"\nteam_key = \"ENG\"\ntrigger_state = \"Todo\"\n\n[projects.ENG.linear.webhook]\nsecret_env = \"LINEAR_HOOK_SECRET\"\n{}",
        env.remote.display(),
        linear.url(),
        github_config("ENG", &gh.url())
    );
    env.write_config(&extra);
    let mut vars = github_vars();
    vars.extend([
        ("LINEAR_KEY", "lin_api_test"),
        ("LINEAR_HOOK_SECRET", "lin-secret"),
    ]);
    // Web only: the answer to the delivery is what is checked, no job needs to run.
    let svc = Service::start(&env, &["--role", "web", "--poll-secs", "0"], &vars);

    let mut comment = linear.comment_webhook(&id, "Please go ahead.", &alice);
    let data = comment["data"].clone();
    comment["data"] = serde_json::json!({
        "id": data["id"],
        "createdAt": data["createdAt"],
        "updatedAt": data["updatedAt"],
        "body": data["body"],
        "issueId": data["issueId"],
        "userId": data["userId"],
    });
    assert!(comment["data"]["issueId"].is_string(), "{comment}");
    let body = serde_json::to_vec(&comment).unwrap();
    let headers = codemill_testkit::fakes::linear::delivery_headers("lin-secret", &body);
    let (status, answer) = svc.deliver("/webhooks/linear/ENG", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "queued", "{answer}");
    assert_eq!(answer["ticket"], id.as_str(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linear_issue_is_acknowledged_within_ten_seconds_and_done_on_merge() {
    let gh = fake_github().await;
    let linear = FakeLinear::start(FakeLinearOptions {
        api_key: "lin_api_test".into(),
        team_key: "ENG".into(),
        page_size: 2,
        ..FakeLinearOptions::default()
    })
    .await
    .unwrap();
    let id = linear.add_issue("Say hello", &poisoned_body(), "Todo", &["codemill"]);
    let env = Env::new(rules(), HELLO_GATE, "").await;
    let alice = linear.user_id("alice");
    let extra = format!(
        "[projects.ENG]\nrepo = \"{}\"\ntracker = \"linear\"\nforge = \"github\"\n\n[projects.ENG.roles]\ntrigger = [\"{alice}\"]\nreview = [\"bob\"]\n\n[projects.ENG.linear]\napi_url = \"{}\"\ntoken_env = \"LINEAR_KEY\"\nteam_key = \"ENG\"\ntrigger_state = \"Todo\"\n\n[projects.ENG.linear.states]\nin_progress = \"In Progress\"\nin_review = \"In Review\"\ndone = \"Done\"\n\n[projects.ENG.linear.webhook]\nsecret_env = \"LINEAR_HOOK_SECRET\"\n{}",
        env.remote.display(),
        linear.url(),
        github_config("ENG", &gh.url())
    );
    env.write_config(&extra);
    let mut vars = github_vars();
    vars.extend([
        ("LINEAR_KEY", "lin_api_test"),
        ("LINEAR_HOOK_SECRET", "lin-secret"),
    ]);
    let svc = Service::start(&env, &["--poll-secs", "0"], &vars);
    let number: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
    let key = format!("ENG-{number}");

    let body = serde_json::to_vec(&linear.issue_webhook(&id, "update", &alice)).unwrap();
    let headers = codemill_testkit::fakes::linear::delivery_headers("lin-secret", &body);
    let sent = Instant::now();
    // Answered once stored; the issue is read from Linear after the answer.
    let (status, answer) = svc
        .deliver_now("/webhooks/linear/ENG", &headers, &body)
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "accepted", "{answer}");
    let delivery = answer["delivery"].as_str().unwrap();
    let answer = svc.processed("linear:ENG", delivery).await;
    assert_eq!(answer["result"], "queued", "{answer}");
    // The first visible activity: a comment on the issue within ten seconds of the trigger.
    loop {
        if !linear.comments(&id).is_empty() {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "no activity within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent.elapsed() < Duration::from_secs(10));
    // Posted before the webhook was answered, so no busy worker can delay it; it has been
    // edited since, and the request that created it says what it said.
    let created = linear
        .requests()
        .into_iter()
        .find(|r| r.body.to_string().contains("commentCreate"))
        .unwrap();
    assert!(
        created.body.to_string().contains("codemill queued"),
        "{}",
        created.body
    );
    wait_state(&env, &key, "awaiting_approval");
    assert_eq!(linear.state_of(&id), "In Progress");
    assert!(
        linear
            .labels_of(&id)
            .contains(&"codemill:awaiting-review".to_string())
    );
    assert_nothing_hidden_reached_the_model(&env);
    let ops = linear.operations();
    assert!(ops.iter().any(|o| o.contains("CommentCreate")), "{ops:?}");
    assert!(
        ops.iter().any(|o| o.contains("CommentUpdate")),
        "the progress comment is edited in place: {ops:?}"
    );
    assert_eq!(linear.comments(&id).len(), 1, "one progress comment");
    for r in linear.requests() {
        assert_eq!(
            r.header("authorization"),
            Some("lin_api_test"),
            "{}",
            r.line()
        );
    }

    env.ok_with(&vars, &["approve", &key]);
    wait_state(&env, &key, "in_review");
    assert_eq!(gh.prs().len(), 1);
    let pr = gh.prs()[0].clone();
    assert!(
        pr["body"].as_str().unwrap().contains("linear.app"),
        "ticket link: {}",
        pr["body"]
    );
    assert_eq!(linear.state_of(&id), "In Review");

    let n = pr["number"].as_u64().unwrap();
    assert!(gh.merge(n));
    let answer = github_hook(
        &svc,
        "ENG",
        "pull_request",
        &gh.pull_request_closed(n, true),
    )
    .await;
    assert_eq!(answer["result"], "recorded", "{answer}");
    wait_state(&env, &key, "done");
    assert_eq!(linear.state_of(&id), "Done");
    assert!(linear.labels_of(&id).contains(&"codemill:done".to_string()));
    let progress = linear.comments(&id)[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(progress.contains("Merged"), "{progress}");
    // Every operation codemill sent to Linear, in order.
    insta::assert_snapshot!(linear.operations().join("\n"));
}

/// The Jira flavour a flow runs against.
#[derive(Clone, Copy, PartialEq)]
enum JiraSite {
    /// REST v3, ADF, Basic e-mail + API token.
    Cloud,
    /// REST v2, wiki markup, Bearer personal access token.
    DataCenter,
}

/// What a Jira flow leaves behind for its test to look at.
struct JiraRun {
    jira: codemill_testkit::fakes::jira::FakeJira,
    env: Env,
    _svc: Service,
}

/// The comments' text, wiki escapes of brackets undone (so markers read alike on both APIs).
fn jira_comment_texts(jira: &codemill_testkit::fakes::jira::FakeJira) -> Vec<String> {
    jira.comment_texts("PROJ-1")
        .into_iter()
        .map(|c| c.replace("\\[", "[").replace("\\]", "]"))
        .collect()
}

/// A Jira ticket from its trigger to a plan comment, approval, a draft PR with a linked backlog
/// issue, and Done on merge; every request authenticated as `site` signs in.
async fn jira_flow(site: JiraSite) -> JiraRun {
    use codemill_testkit::fakes::jira::{
        FakeJira, FakeJiraAuth, FakeJiraOptions, adf_text, hub_signature,
    };
    let gh = fake_github().await;
    let mut options = FakeJiraOptions::default();
    let (description, acceptance, sign_in) = match site {
        JiraSite::Cloud => (
            Value::String(poisoned_body()),
            adf_text("hello.txt exists"),
            "email_env = \"JIRA_EMAIL\"\n",
        ),
        JiraSite::DataCenter => {
            options.auth = FakeJiraAuth::Bearer("jira-pat".into());
            (
                Value::String(format!(
                    "h3. Greeting\nCreate {{{{hello.txt}}}} with *one* line.\n{}",
                    poisoned_body()
                )),
                Value::String("hello.txt exists".into()),
                "auth = \"data_center\"\n",
            )
        }
    };
    let jira = FakeJira::start(options).await.unwrap();
    jira.add_user("acc-alice", "Alice");
    jira.add_user("acc-carol", "Carol");
    jira.add_issue("PROJ-1", "Say hello", Value::Null, "To Do", &["codemill"]);
    // Stored as given: ADF made from the text on Cloud, the wiki string itself on Data Center.
    jira.set_description(
        "PROJ-1",
        match (site, description) {
            (JiraSite::Cloud, Value::String(text)) => adf_text(&text),
            (_, other) => other,
        },
    );
    jira.set_field("PROJ-1", "customfield_10042", acceptance);
    jira.add_comment(
        "PROJ-1",
        "acc-carol",
        adf_text(&format!(
            "Lowercase, please.<!-- {HIDDEN} in a Jira comment -->"
        )),
    );
    // A reviewer raises a low finding that triage puts in the backlog: a linked Jira issue after approval.
    let env = Env::new(
        with_feedback(super::review::backlog_rules()),
        HELLO_GATE,
        "",
    )
    .await;
    let extra = format!(
        "[projects.PROJ]\nrepo = \"{}\"\ntracker = \"jira\"\nforge = \"github\"\n\n[projects.PROJ.roles]\ntrigger = [\"acc-alice\"]\n\n[projects.PROJ.jira]\nbase_url = \"{}\"\n{sign_in}token_env = \"JIRA_TOKEN\"\nproject_key = \"PROJ\"\ntrigger_status = \"To Do\"\nacceptance_criteria_field = \"customfield_10042\"\n\n[projects.PROJ.jira.transitions]\nin_progress = \"In Progress\"\nawaiting_approval = \"In Review\"\nin_review = \"In Review\"\ndone = \"Done\"\n\n[projects.PROJ.jira.webhook]\nauth = \"hmac\"\nsecret_env = \"JIRA_HOOK_SECRET\"\n{}",
        env.remote.display(),
        jira.url(),
        github_config("PROJ", &gh.url())
    );
    env.write_config(&extra);
    let mut vars = github_vars();
    vars.extend([
        ("JIRA_EMAIL", "codemill@example.com"),
        (
            "JIRA_TOKEN",
            match site {
                JiraSite::Cloud => "jira-api-token",
                JiraSite::DataCenter => "jira-pat",
            },
        ),
        ("JIRA_HOOK_SECRET", "jira-secret"),
    ]);
    let svc = Service::start(&env, &["--poll-secs", "0"], &vars);

    let body = serde_json::to_vec(&jira.webhook_issue_updated("PROJ-1", "acc-alice")).unwrap();
    let headers = vec![
        (
            "x-hub-signature".to_string(),
            hub_signature(b"jira-secret", &body),
        ),
        (
            "x-atlassian-webhook-identifier".to_string(),
            "jira-delivery-1".to_string(),
        ),
    ];
    let bad = vec![("x-hub-signature".to_string(), hub_signature(b"nope", &body))];
    let (status, _) = svc.deliver("/webhooks/jira/PROJ", &bad, &body).await;
    assert_eq!(status, 401, "a forged delivery is refused");
    let (status, answer) = svc.deliver("/webhooks/jira/PROJ", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "queued", "{answer}");
    let (_, again) = svc.deliver("/webhooks/jira/PROJ", &headers, &body).await;
    assert_eq!(
        again["result"], "duplicate",
        "a redelivery does nothing: {again}"
    );
    if site == JiraSite::Cloud {
        insta::with_settings!({filters => vec![
            (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[job-id]"),
            (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "[time]"),
        ]}, {
            insta::assert_snapshot!("inbox", env.ok(&["inbox"]));
        });
    }

    wait_state(&env, "PROJ-1", "awaiting_approval");
    assert_nothing_hidden_reached_the_model(&env);
    let traffic = model_traffic(&env);
    assert!(
        traffic.contains("hello.txt exists"),
        "acceptance criteria reach the agent"
    );
    assert!(
        traffic.contains("Lowercase, please."),
        "people's comments reach the agent"
    );
    assert_eq!(jira.status_of("PROJ-1").as_deref(), Some("In Review"));
    let comments = jira_comment_texts(&jira);
    let ours: Vec<&String> = comments
        .iter()
        .filter(|c| c.contains("[codemill:progress]"))
        .collect();
    assert_eq!(ours.len(), 1, "one progress comment: {comments:?}");
    assert!(
        ours[0].contains("Plan: add hello.txt."),
        "the plan is on the ticket: {}",
        ours[0]
    );
    assert!(ours[0].contains("Proposal ready"), "{}", ours[0]);
    assert!(
        jira.labels_of("PROJ-1")
            .contains(&"codemill:awaiting-review".to_string())
    );

    env.ok_with(&vars, &["approve", "PROJ-1"]);
    wait_state(&env, "PROJ-1", "in_review");
    let prs = gh.prs();
    assert_eq!(prs.len(), 1);
    let pr_body = prs[0]["body"].as_str().unwrap();
    assert!(
        pr_body.contains(&format!("[PROJ-1]({}/browse/PROJ-1)", jira.url())),
        "the ticket link: {pr_body}"
    );
    assert!(pr_body.contains("Cost: $"), "{pr_body}");
    assert!(
        pr_body.contains("Greeting lacks punctuation"),
        "the findings: {pr_body}"
    );
    assert_eq!(prs[0]["draft"], true);
    // The backlog finding became a Jira issue, linked to the ticket.
    assert_eq!(jira.issue_keys(), ["PROJ-1", "PROJ-2"]);
    assert!(
        jira.summary_of("PROJ-2")
            .unwrap()
            .contains("Greeting lacks punctuation")
    );
    let links = jira.links_of("PROJ-1");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].link_type, "Relates");
    assert!(
        [&links[0].inward, &links[0].outward].contains(&&"PROJ-2".to_string()),
        "{links:?}"
    );
    let progress = jira_comment_texts(&jira)
        .into_iter()
        .find(|c| c.contains("[codemill:progress]"))
        .unwrap();
    assert!(
        progress.contains("PROJ-2"),
        "the backlog ticket is named: {progress}"
    );

    let n = prs[0]["number"].as_u64().unwrap();
    assert!(gh.merge(n));
    github_hook(
        &svc,
        "PROJ",
        "pull_request",
        &gh.pull_request_closed(n, true),
    )
    .await;
    wait_state(&env, "PROJ-1", "done");
    assert_eq!(jira.status_of("PROJ-1").as_deref(), Some("Done"));
    let labels = jira.labels_of("PROJ-1");
    assert!(labels.contains(&"codemill:done".to_string()), "{labels:?}");

    // Every request codemill sent to Jira was authenticated as the site signs in.
    let expected_auth = jira.options().auth.header_value();
    for r in jira.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(expected_auth.as_str()),
            "{}",
            r.line()
        );
    }
    JiraRun {
        jira,
        env,
        _svc: svc,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jira_ticket_goes_to_a_plan_comment_a_draft_pr_and_done_on_merge() {
    let JiraRun { jira, .. } = jira_flow(JiraSite::Cloud).await;
    // Every request codemill sent to Jira: the same sequence each run.
    let writes: Vec<String> = jira
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.line(), summarize(&r.body)))
        .collect();
    insta::with_settings!({filters => vec![
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[job-id]"),
    ]}, {
        insta::assert_snapshot!(lines(&jira.requests()).join("\n"));
        insta::assert_snapshot!(writes.join("\n"));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jira_data_center_ticket_goes_the_same_way_over_rest_v2_and_wiki_markup() {
    let JiraRun { jira, env, .. } = jira_flow(JiraSite::DataCenter).await;
    let traffic = model_traffic(&env);
    assert!(
        traffic.contains("### Greeting")
            && traffic.contains("Create `hello.txt` with **one** line."),
        "the wiki description reaches the agent as Markdown"
    );
    let requests = jira.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.path.starts_with("/rest/api/2/"), "{}", r.line());
    }
    let lines = lines(&requests);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST /rest/api/2/search")),
        "the backlog issue is looked for with a v2 search: {lines:?}"
    );
    for r in requests.iter().filter(|r| r.method != "GET") {
        let Some(body) = r
            .body
            .get("body")
            .or_else(|| r.body.pointer("/fields/description"))
        else {
            continue;
        };
        let wiki = body
            .as_str()
            .unwrap_or_else(|| panic!("rich text is a wiki markup string: {}", r.line()));
        assert!(!wiki.contains("**"), "no Markdown bold: {wiki}");
        assert!(wiki.contains("\\[codemill:"), "the marker, escaped: {wiki}");
    }
    let sent: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.body.get("body").and_then(Value::as_str))
        .collect();
    assert!(
        sent.iter()
            .any(|b| b.contains("*Proposal ready for approval*") && b.contains("{{")),
        "bold and inline code in wiki markup: {sent:?}"
    );
    let progress = jira
        .comments("PROJ-1")
        .into_iter()
        .filter_map(|c| c["body"].as_str().map(str::to_string))
        .find(|b| b.contains("codemill:progress"))
        .unwrap();
    assert!(
        progress.contains("_codemill · \\[codemill:progress\\]_"),
        "{progress}"
    );
}

/// The fields of a Jira write that say what it did (transition id, labels, comment text).
fn summarize(body: &Value) -> String {
    if let Some(t) = body.get("transition") {
        return format!("transition={}", t["id"]);
    }
    if let Some(l) = body.pointer("/update/labels") {
        return format!("labels={l}");
    }
    if let Some(b) = body.get("body") {
        let text = codemill_testkit::fakes::jira::adf_plain_text(b);
        // The note's opening words, after the header line (job ids and costs differ per run).
        let note = text
            .lines()
            .skip(1)
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let words: Vec<&str> = note.split_whitespace().take(3).collect();
        return format!("comment: {}", words.join(" "));
    }
    if let Some(j) = body.get("jql") {
        return format!("jql={j}");
    }
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_queues_outside_tickets_in_the_trigger_state_every_page() {
    use codemill_testkit::fakes::jira::{FakeJira, FakeJiraOptions};
    let gh = fake_github().await;
    let jira = FakeJira::start(FakeJiraOptions::default()).await.unwrap();
    jira.add_issue(
        "PROJ-1",
        "Say hello",
        Value::String("Add hello.txt.".into()),
        "To Do",
        &["codemill"],
    );
    jira.add_issue(
        "PROJ-2",
        "Not labelled",
        Value::String("x".into()),
        "To Do",
        &[],
    );
    jira.add_issue(
        "PROJ-3",
        "Say hello again",
        Value::String("Add hello.txt.".into()),
        "To Do",
        &["codemill"],
    );
    jira.add_issue(
        "PROJ-4",
        "Say hello later",
        Value::String("Add hello.txt.".into()),
        "To Do",
        &["codemill"],
    );
    let env = Env::new(rules(), HELLO_GATE, "").await;
    // The poller cannot tell who labelled a ticket: it starts work only when anyone may.
    let extra = format!(
        "[projects.PROJ]\nrepo = \"{}\"\ntracker = \"jira\"\nforge = \"github\"\n\n[projects.PROJ.roles]\ntrigger = [\"*\"]\n\n[projects.PROJ.jira]\nbase_url = \"{}\"\nemail_env = \"JIRA_EMAIL\"\ntoken_env = \"JIRA_TOKEN\"\nproject_key = \"PROJ\"\ntrigger_status = \"To Do\"\n{}",
        env.remote.display(),
        jira.url(),
        github_config("PROJ", &gh.url())
    );
    env.write_config(&extra);
    let mut vars = github_vars();
    vars.extend([
        ("JIRA_EMAIL", "codemill@example.com"),
        ("JIRA_TOKEN", "jira-api-token"),
    ]);
    let _svc = Service::start(&env, &["--poll-secs", "1"], &vars);
    for key in ["PROJ-1", "PROJ-3", "PROJ-4"] {
        wait_state(&env, key, "awaiting_approval");
    }
    let (code, _, _) = env.run(&["show", "PROJ-2", "--json"]);
    assert_ne!(code, Some(0), "no job for a ticket without the label");
    let searches: Vec<RecordedRequest> = jira
        .requests()
        .into_iter()
        .filter(|r| r.line() == "POST /rest/api/3/search/jql")
        .collect();
    assert!(searches.len() >= 2, "two pages at least");
    assert_eq!(
        searches[0].body["jql"],
        "project = \"PROJ\" AND status = \"To Do\" AND labels = \"codemill\" ORDER BY created ASC"
    );
    assert!(searches[0].body.get("nextPageToken").is_none());
    assert!(
        searches[1].body["nextPageToken"].is_string(),
        "the second request asks for the next page: {}",
        searches[1].body
    );
}
