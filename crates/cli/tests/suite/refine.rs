//! The refinement queue on the local tracker: an idea becomes a spec on its ticket; open
//! questions wait for the author and an edit refines it again; an accepted spec with a proposed
//! split becomes linked tickets once, however often it is accepted; with auto-queue on, a small
//! clear spec goes straight to its build and is built.

use codemill_testkit::{Match, Reply, Rule};
use serde_json::Value;

use super::harness::{Env, HELLO_GATE, at_turn, engineer};

pub(super) const ASKS: &str = "```json\n{\"problem\": \"Exports are slow\", \"behaviour\": \"Stream exports\", \"criteria\": [\"a 1 GB export starts within 1 s\"], \"questions\": [\"CSV or JSON?\"], \"areas\": [\"src/export.rs\"], \"size\": \"M\", \"size_reason\": \"one module\"}\n```";
pub(super) const SPLITS: &str = "```json\n{\"problem\": \"Exports are slow\", \"behaviour\": \"Stream CSV exports\", \"criteria\": [\"a 1 GB CSV export starts within 1 s\"], \"out_of_scope\": [\"JSON\"], \"size\": \"L\", \"size_reason\": \"two modules and a format\", \"split\": [{\"title\": \"Stream the export writer\", \"goal\": \"Write rows as they come\", \"criteria\": [\"memory stays under 50 MB\"]}, {\"title\": \"Stream the HTTP response\", \"goal\": \"Send chunks\", \"criteria\": [\"the first byte leaves within 1 s\"]}]}\n```";
pub(super) const CLEAR: &str = "```json\n{\"problem\": \"No greeting\", \"behaviour\": \"Add hello.txt\", \"criteria\": [\"hello.txt exists\"], \"size\": \"S\", \"size_reason\": \"one file\"}\n```";

pub(super) fn refiner(first: &str, after_edit: &str) -> Vec<Rule> {
    let mut rules = vec![
        Rule::new(
            "refine: after the edit",
            Match {
                contains: Some("CSV, please".into()),
                ..at_turn("refine", 0)
            },
            Reply::text(after_edit),
        ),
        Rule::new("refine", at_turn("refine", 0), Reply::text(first)),
    ];
    rules.extend(engineer());
    rules
}

fn ticket(env: &Env, key: &str) -> Value {
    env.json(&["ticket", "show", key, "--json"])
}

fn labels(t: &Value) -> Vec<String> {
    t["ticket"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idea_is_refined_asks_its_author_and_splits_once_when_accepted() {
    let env = Env::new(refiner(ASKS, SPLITS), HELLO_GATE, "").await;
    let added = env.ok(&[
        "idea",
        "add",
        "P",
        "--title",
        "Faster exports",
        "--body",
        "Exports take forever.",
    ]);
    assert!(
        added.contains("P-2: idea added and queued for refinement"),
        "{added}"
    );
    let (code, _, stderr) = env.run(&["run", "P-2"]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("CSV or JSON?"), "{stderr}");
    let t = ticket(&env, "P-2");
    assert_eq!(t["ticket"]["status"], "needs_input", "{t}");
    let l = labels(&t);
    assert!(
        l.contains(&"codemill:refined".to_string())
            && l.contains(&"codemill:needs-input".to_string()),
        "{l:?}"
    );
    let spec = t["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_string())
        .find(|b| b.contains("## Refined spec (codemill)"))
        .unwrap_or_else(|| panic!("no spec section: {t}"));
    assert!(
        spec.contains("- [ ] a 1 GB export starts within 1 s"),
        "{spec}"
    );
    assert!(spec.contains("CSV or JSON?"), "{spec}");
    assert_eq!(
        t["ticket"]["body"], "Exports take forever.",
        "the idea's own text is kept"
    );
    // Unedited, running it again changes nothing; after the author's edit it is refined again.
    let (code, _, _) = env.run(&["run", "P-2"]);
    assert_eq!(code, Some(4));
    env.ok(&[
        "ticket",
        "edit",
        "P-2",
        "--body",
        "Exports take forever. CSV, please.",
    ]);
    let out = env.ok(&["run", "P-2"]);
    assert!(out.contains("codemill refine accept P-2"), "{out}");
    let t = ticket(&env, "P-2");
    assert_eq!(t["ticket"]["status"], "awaiting_approval", "{t}");
    assert!(!labels(&t).contains(&"codemill:needs-input".to_string()));
    // Nothing is split before a person accepts.
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let accepted = env.ok(&["refine", "accept", "P-2"]);
    assert!(accepted.contains("split into P-3, P-4"), "{accepted}");
    let (code, _, stderr) = env.run(&["refine", "accept", "P-2"]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("not a refined spec awaiting acceptance"),
        "{stderr}"
    );
    let all = env.json(&["ticket", "list", "--json"]);
    assert_eq!(
        all.as_array().unwrap().len(),
        4,
        "two parts, made once: {all}"
    );
    for (key, criterion) in [
        ("P-3", "memory stays under 50 MB"),
        ("P-4", "the first byte leaves within 1 s"),
    ] {
        let part = ticket(&env, key);
        assert!(labels(&part).contains(&"codemill".to_string()), "{part}");
        let body = part["ticket"]["body"].as_str().unwrap();
        assert!(
            body.contains("Part of P-2") && body.contains(criterion),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_queue_a_small_clear_idea_is_refined_then_built() {
    let env = Env::new(refiner(CLEAR, CLEAR), HELLO_GATE, "").await;
    env.write_config("[projects.P.refinement]\nauto_queue = true\n");
    env.ok(&[
        "idea",
        "add",
        "P",
        "--title",
        "Greet people",
        "--body",
        "We should say hello.",
    ]);
    let out = env.ok(&["run", "P-2"]);
    assert!(out.contains("proposal ready"), "{out}");
    let t = ticket(&env, "P-2");
    let l = labels(&t);
    assert!(
        l.contains(&"codemill".to_string())
            && l.contains(&"codemill:refined".to_string())
            && !l.contains(&"codemill:refine".to_string()),
        "{l:?}"
    );
    assert!(
        env.remote_branch("codemill/P-2").is_none(),
        "nothing pushed before approval"
    );
    let show = env.json(&["show", "P-2", "--json"]);
    assert_eq!(show["job"]["state"], "awaiting_approval", "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_accepts_a_refined_spec_and_a_worker_carries_it_out() {
    let env = Env::new(refiner(SPLITS, SPLITS), HELLO_GATE, "").await;
    env.ok(&[
        "idea",
        "add",
        "P",
        "--title",
        "Faster exports",
        "--body",
        "Slow.",
    ]);
    env.ok(&["run", "P-2"]);
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();
    let server = super::harness::Service::start(&env, &[], &[]);
    let post = |key: &str| {
        server
            .http
            .post(format!("{}/api/tickets/{key}/accept", server.base))
            .bearer_auth(&token)
            .send()
    };
    // A ticket with no spec waiting is refused with why.
    let refused = post("P-1").await.unwrap();
    assert_eq!(refused.status(), 404);
    let why = refused.text().await.unwrap();
    assert!(why.contains("P-1 has no job yet"), "{why}");
    let accepted = post("P-2").await.unwrap();
    assert_eq!(accepted.status(), 200);
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(body["action"], "accepted", "{body}");
    super::harness::wait_state(&env, "P-2", "done");
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_refines_labelled_ideas_and_then_builds_them() {
    // A ticket labelled for refinement by hand (no `idea add`): the service's poller refines it;
    // with auto-queue it then moves to the build trigger, and the poller queues its build.
    let env = Env::new(refiner(CLEAR, CLEAR), HELLO_GATE, "").await;
    env.write_config("[projects.P.refinement]\nauto_queue = true\n");
    env.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Greet people",
        "--label",
        "codemill:refine",
        "--body",
        "We should say hello.",
    ]);
    let server = super::harness::Service::start(&env, &["--poll-secs", "1"], &[]);
    super::harness::wait_state(&env, "P-2", "awaiting_approval");
    let show = env.json(&["show", "P-2", "--json"]);
    assert!(show["job"]["commit"].is_string(), "{show}");
    let jobs = env.event_kinds("P-2");
    assert!(jobs.contains(&"proposed".to_string()), "{jobs:?}");
    // The unlabelled ticket was left alone.
    assert!(env.json(&["show", "P-1", "--json"])["job"].is_null());
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_while_the_spec_awaits_acceptance_refines_it_again() {
    let env = Env::new(refiner(CLEAR, SPLITS), HELLO_GATE, "").await;
    env.ok(&[
        "idea",
        "add",
        "P",
        "--title",
        "Faster exports",
        "--body",
        "Exports take forever.",
    ]);
    let server = super::harness::Service::start(&env, &["--poll-secs", "1"], &[]);
    super::harness::wait_state(&env, "P-2", "awaiting_acceptance");
    let first = env.json(&["show", "P-2", "--json"])["job"]["id"].clone();
    env.ok(&[
        "ticket",
        "edit",
        "P-2",
        "--body",
        "Exports take forever. CSV, please.",
    ]);
    // The poller ends the waiting job and a new one drafts the spec from the edited text.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let show = env.json(&["show", "P-2", "--json"]);
        if show["job"]["id"] != first && show["job"]["state"] == "awaiting_acceptance" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{show}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let t = ticket(&env, "P-2");
    let specs: Vec<String> = t["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_string())
        .filter(|b| b.contains("## Refined spec (codemill)"))
        .collect();
    assert!(
        specs.last().unwrap().contains("Stream the export writer"),
        "{specs:?}"
    );
    // Nothing was split or built by the first job.
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(server.stop().success());
}
