//! The refinement queue on outside trackers, through `codemill serve`: a GitHub issue labelled
//! `codemill:refine` gets its spec as a comment of its own, waits for its author, is refined
//! again after an answer, and splits into linked issues once when accepted; a Jira ticket with
//! auto-queue on is refined, moved to the build trigger and built from its spec; a Linear issue's
//! accepted spec moves it to the build trigger and its build starts.

use codemill_testkit::fakes::jira::{FakeJira, FakeJiraOptions, hub_signature};
use codemill_testkit::fakes::linear::{FakeLinear, FakeLinearOptions};

use super::harness::{Env, HELLO_GATE, Service, wait_state};
use super::outside::{fake_github, github_config, github_hook, github_vars, model_traffic};
use super::refine::{ASKS, CLEAR, SPLITS, refiner};

fn spec_comments(bodies: &[String]) -> Vec<&String> {
    bodies
        .iter()
        .filter(|b| b.contains("Refined spec (codemill)"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_idea_is_refined_asks_its_author_and_splits_into_issues_once() {
    let gh = fake_github().await;
    let issue = gh.add_issue("Faster exports", "Exports take forever.", &[], "alice");
    let env = Env::new(refiner(ASKS, SPLITS), HELLO_GATE, "").await;
    env.write_config(&format!(
        "[projects.shop]\nrepo = \"{}\"\ntracker = \"github\"\nforge = \"github\"\n\n[projects.shop.roles]\ntrigger = [\"alice\"]\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    ));
    let svc = Service::start(&env, &["--poll-secs", "0"], &github_vars());
    gh.add_label(issue, "codemill:refine");
    let answer = github_hook(
        &svc,
        "shop",
        "issues",
        &gh.issues_labeled(issue, "codemill:refine", "alice"),
    )
    .await;
    assert_eq!(answer["result"], "queued", "{answer}");
    let key = format!("shop-{issue}");
    wait_state(&env, &key, "needs_input");

    let texts = |n: u64| -> Vec<String> {
        gh.comments(n)
            .iter()
            .map(|c| c["body"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let all = texts(issue);
    let specs = spec_comments(&all);
    assert_eq!(specs.len(), 1, "{all:?}");
    assert!(
        specs[0].contains("- [ ] a 1 GB export starts within 1 s")
            && specs[0].contains("CSV or JSON?"),
        "{}",
        specs[0]
    );
    let labels = gh.labels(issue);
    assert!(
        labels.contains(&"codemill:refined".to_string())
            && labels.contains(&"codemill:needs-input".to_string()),
        "{labels:?}"
    );
    assert_eq!(
        gh.issue(issue).unwrap()["body"],
        "Exports take forever.",
        "the idea's own text is kept"
    );
    // Nobody answered: a delivery changes nothing. The author's answer refines it again.
    let stranger = github_hook(
        &svc,
        "shop",
        "issues",
        &gh.issues_labeled(issue, "codemill:refine", "alice"),
    )
    .await;
    assert_eq!(stranger["result"], "ignored", "{stranger}");
    let answer = github_hook(
        &svc,
        "shop",
        "issue_comment",
        &gh.issue_commented(issue, "alice", "CSV, please."),
    )
    .await;
    assert_eq!(answer["result"], "queued", "{answer}");
    wait_state(&env, &key, "awaiting_acceptance");
    let all = texts(issue);
    let specs = spec_comments(&all);
    assert_eq!(specs.len(), 1, "the spec is edited in place: {all:?}");
    assert!(
        specs[0].contains("Stream the export writer"),
        "{}",
        specs[0]
    );
    assert!(
        !gh.labels(issue)
            .contains(&"codemill:needs-input".to_string())
    );
    let count = || (1..=20).filter_map(|n| gh.issue(n)).count();
    assert_eq!(count(), 1, "nothing is split before a person accepts");

    env.ok_with(&github_vars(), &["refine", "accept", &key]);
    wait_state(&env, &key, "done");
    let (code, _, stderr) = env.run(&["refine", "accept", &key]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("not a refined spec awaiting acceptance"),
        "{stderr}"
    );
    assert_eq!(count(), 3, "two parts, made once");
    for (n, criterion) in [
        (issue + 1, "memory stays under 50 MB"),
        (issue + 2, "the first byte leaves within 1 s"),
    ] {
        let part = gh.issue(n).unwrap();
        let body = part["body"].as_str().unwrap();
        assert!(
            body.contains(&format!("Part of #{issue}")) && body.contains(criterion),
            "{body}"
        );
        assert!(
            gh.labels(n).contains(&"codemill".to_string()),
            "built on its own"
        );
    }
    assert!(svc.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jira_idea_with_auto_queue_is_refined_then_built_from_its_spec() {
    let gh = fake_github().await;
    let jira = FakeJira::start(FakeJiraOptions::default()).await.unwrap();
    jira.add_user("acc-alice", "Alice");
    jira.add_issue(
        "PROJ-1",
        "Greet people",
        codemill_testkit::fakes::jira::adf_text("We should say hello."),
        "To Do",
        &["codemill:refine"],
    );
    let env = Env::new(refiner(CLEAR, CLEAR), HELLO_GATE, "").await;
    env.write_config(&format!(
        "[projects.PROJ]\nrepo = \"{}\"\ntracker = \"jira\"\nforge = \"github\"\n\n[projects.PROJ.roles]\ntrigger = [\"acc-alice\"]\n\n[projects.PROJ.refinement]\nauto_queue = true\n\n[projects.PROJ.jira]\nbase_url = \"{}\"\nemail_env = \"JIRA_EMAIL\"\ntoken_env = \"JIRA_TOKEN\"\nproject_key = \"PROJ\"\ntrigger_status = \"To Do\"\n\n[projects.PROJ.jira.transitions]\nin_progress = \"In Progress\"\nawaiting_approval = \"In Review\"\n\n[projects.PROJ.jira.webhook]\nauth = \"hmac\"\nsecret_env = \"JIRA_HOOK_SECRET\"\n{}",
        env.remote.display(),
        jira.url(),
        github_config("PROJ", &gh.url())
    ));
    let mut vars = github_vars();
    vars.extend([
        ("JIRA_EMAIL", "codemill@example.com"),
        ("JIRA_TOKEN", "jira-api-token"),
        ("JIRA_HOOK_SECRET", "jira-secret"),
    ]);
    let svc = Service::start(&env, &["--poll-secs", "0"], &vars);
    let body = serde_json::to_vec(&jira.webhook_issue_updated("PROJ-1", "acc-alice")).unwrap();
    let headers = vec![(
        "x-hub-signature".to_string(),
        hub_signature(b"jira-secret", &body),
    )];
    let (status, answer) = svc.deliver("/webhooks/jira/PROJ", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "queued", "{answer}");

    // Refined, moved to the build trigger, and built: a proposal waits, from a second job.
    wait_state(&env, "PROJ-1", "awaiting_approval");
    let show = env.json(&["show", "PROJ-1", "--json"]);
    assert!(show["job"]["commit"].is_string(), "{show}");
    let labels = jira.labels_of("PROJ-1");
    assert!(
        labels.contains(&"codemill".to_string())
            && labels.contains(&"codemill:refined".to_string())
            && !labels.contains(&"codemill:refine".to_string()),
        "{labels:?}"
    );
    let comments = jira.comment_texts("PROJ-1");
    let specs = spec_comments(&comments);
    assert_eq!(specs.len(), 1, "{comments:?}");
    assert!(specs[0].contains("hello.txt exists"), "{}", specs[0]);
    // The build worked from the spec: its plan brief quotes the spec's criterion.
    let traffic = model_traffic(&env);
    let plan_briefs: Vec<&str> = traffic
        .lines()
        .filter(|l| l.contains("codemill stage: plan"))
        .collect();
    assert!(
        plan_briefs.iter().any(|b| b.contains("hello.txt exists")),
        "the build's brief carries the accepted spec"
    );
    assert!(svc.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_linear_spec_moves_the_issue_to_its_build() {
    let gh = fake_github().await;
    let linear = FakeLinear::start(FakeLinearOptions {
        api_key: "lin_api_test".into(),
        team_key: "ENG".into(),
        ..FakeLinearOptions::default()
    })
    .await
    .unwrap();
    let id = linear.add_issue(
        "Greet people",
        "We should say hello.",
        "Todo",
        &["codemill:refine"],
    );
    let env = Env::new(refiner(CLEAR, CLEAR), HELLO_GATE, "").await;
    let alice = linear.user_id("alice");
    env.write_config(&format!(
        "[projects.ENG]\nrepo = \"{}\"\ntracker = \"linear\"\nforge = \"github\"\n\n[projects.ENG.roles]\ntrigger = [\"{alice}\"]\n\n[projects.ENG.linear]\napi_url = \"{}\"\ntoken_env = \"LINEAR_KEY\"\nteam_key = \"ENG\"\ntrigger_state = \"Todo\"\n\n[projects.ENG.linear.states]\nin_progress = \"In Progress\"\nawaiting_approval = \"In Review\"\n\n[projects.ENG.linear.webhook]\nsecret_env = \"LINEAR_HOOK_SECRET\"\n{}",
        env.remote.display(),
        linear.url(),
        github_config("ENG", &gh.url())
    ));
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
    let (status, answer) = svc.deliver("/webhooks/linear/ENG", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "queued", "{answer}");
    wait_state(&env, &key, "awaiting_acceptance");
    let labels = linear.labels_of(&id);
    assert!(
        labels.contains(&"codemill:refined".to_string()),
        "{labels:?}"
    );
    assert_eq!(linear.state_of(&id), "In Review");
    let comments: Vec<String> = linear
        .comments(&id)
        .iter()
        .map(|c| c["body"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(spec_comments(&comments).len(), 1, "{comments:?}");

    env.ok_with(&vars, &["refine", "accept", &key]);
    wait_state(&env, &key, "awaiting_approval");
    let labels = linear.labels_of(&id);
    assert!(
        labels.contains(&"codemill".to_string())
            && !labels.contains(&"codemill:refine".to_string()),
        "{labels:?}"
    );
    let show = env.json(&["show", &key, "--json"]);
    assert!(show["job"]["commit"].is_string(), "built: {show}");
    assert!(svc.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idea_add_on_a_github_project_files_the_idea_there_and_queues_it() {
    let gh = fake_github().await;
    let env = Env::new(refiner(CLEAR, CLEAR), HELLO_GATE, "").await;
    env.write_config(&format!(
        "[projects.shop]\nrepo = \"{}\"\ntracker = \"github\"\nforge = \"github\"\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    ));
    let out = env.ok_with(
        &github_vars(),
        &[
            "idea",
            "add",
            "shop",
            "--title",
            "Greet people",
            "--body",
            "Say hello.",
        ],
    );
    assert!(
        out.contains("shop-1: idea added to the tracker as 1 and queued for refinement"),
        "{out}"
    );
    let issue = gh.issue(1).expect("the idea's issue");
    assert_eq!(issue["title"], "Greet people");
    assert!(issue["body"].as_str().unwrap().starts_with("Say hello."));
    assert_eq!(gh.labels(1), ["codemill:refine"]);
    assert!(gh.issue(2).is_none(), "one issue");
    // Refined here, from the issue's text, with the spec on GitHub.
    let out = env.ok_with(&github_vars(), &["run", "shop-1"]);
    assert!(out.contains("codemill refine accept shop-1"), "{out}");
    let comments: Vec<String> = gh
        .comments(1)
        .iter()
        .map(|c| c["body"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(spec_comments(&comments).len(), 1, "{comments:?}");
}
