//! The dashboard in a real browser: Debian's headless Chromium, driven by playwright-core (both
//! installed by ./scripts/test), signs in, finds the ticket on the board, approves its proposal
//! from the job page and watches it ship, then retries a job that needed attention and watches
//! its agents' activity and the board change live (no reload), and merges the shipped ticket
//! through the merge queue from its page; a split ticket's sub-tasks and stack are approved and
//! landed from its page; a refined idea's spec is accepted with its page's button. The scripts
//! are in `tests/browser/`; screenshots land in `target/screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use codemill_testkit::{Reply, Rule, Script};

use super::harness::{Env, HELLO_GATE, Service, at_turn, engineer};

const PASSWORD: &str = "a long enough secret";

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/npm/node_modules")
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("CODEMILL_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {}: run ./scripts/test (it installs Debian's chromium), or set \
         CODEMILL_CHROMIUM",
        path.display()
    );
    path
}

/// Run `tests/browser/<script>` in headless Chromium against the service at `base` with
/// `args` (the screenshots directory last), after clearing the `shots` it takes; fails the test
/// with the script's output when it fails, checks each screenshot is a real picture, and
/// returns what the script printed as JSON.
fn browse(script: &str, base: &str, args: &[&str], shots: &[&str]) -> serde_json::Value {
    let chromium = chromium();
    assert!(
        tools().join("playwright-core/package.json").is_file(),
        "playwright-core not found in .tools/npm: run ./scripts/test (or \
         ./scripts/install-agent-clis.sh)"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for shot in shots {
        let _ = std::fs::remove_file(dir.join(shot));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let out = Command::new("node")
        .arg(&script)
        .arg(base)
        .args(args)
        .arg(&dir)
        .env("NODE_PATH", tools())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node (installed by ./scripts/test) runs the browser script");
    assert!(
        out.status.success(),
        "the browser session failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in shots {
        let png = std::fs::read(dir.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot}");
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_and_approves_a_proposal_in_the_browser() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.add_user("amy", "approver", PASSWORD);
    env.ok(&["run", "P-1"]);
    let commit = env.json(&["show", "P-1", "--json"])["job"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    // P-2's first job stops for attention (the model fails its research); its retry, from the
    // browser, meets a slow model so a person can watch it work.
    env.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Say hello again",
        "--body",
        "Add hello.txt.\n\nAcceptance: the file exists.",
    ]);
    let mut failing = engineer();
    failing.insert(
        0,
        Rule::new(
            "research fails",
            at_turn("research", 0),
            Reply::error(500, "the model is down"),
        ),
    );
    env.server.set_script(Script::new(failing));
    let _ = env.cmd().args(["run", "P-2"]).output().unwrap();
    assert_eq!(
        env.json(&["show", "P-2", "--json"])["job"]["state"],
        "needs_attention"
    );
    let slow = engineer()
        .into_iter()
        .map(|r| {
            if r.name == "readiness" {
                r
            } else {
                r.after(Duration::from_millis(1500))
            }
        })
        .collect();
    env.server.set_script(Script::new(slow));
    let server = Service::start(&env, &[], &[]);
    let said = browse(
        "dashboard.cjs",
        &server.base,
        &["amy", PASSWORD, "P-1", "P-2"],
        &["board.png", "job.png", "merged.png", "live.png"],
    );
    assert_eq!(
        said["approved"],
        commit.as_str(),
        "the page showed the proposal's commit"
    );
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
    // The retried job ran to its proposal while the page watched it.
    assert_eq!(
        env.json(&["show", "P-2", "--json"])["job"]["state"],
        "awaiting_approval"
    );
    assert!(
        said["live_activity"].as_u64().unwrap() >= 3,
        "activity lines that arrived live: {}",
        said["live_activity"]
    );
    // The page's merge landed P-1 on main.
    assert_eq!(env.remote_git(&["show", "main:hello.txt"]), "hello");
}

/// A split ticket in the browser: its sub-tasks and stack on its page, a sub-task's page that
/// points back to it, and the stack approved and landed from the parent's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_and_lands_a_stack_in_the_browser() {
    let env = Env::new(
        super::subtasks::rules(super::subtasks::CHAIN),
        super::subtasks::GATE,
        "",
    )
    .await;
    env.add_user("amy", "approver", PASSWORD);
    let ran = env.ok(&["run", "P-1"]);
    assert!(ran.contains("proposal ready"), "{ran}");
    let server = Service::start(&env, &[], &[]);
    let said = browse(
        "stack.cjs",
        &server.base,
        &["amy", PASSWORD, "P-1"],
        &["stack.png", "subtask.png", "stack-merged.png"],
    );
    assert_eq!(
        said["branches"],
        serde_json::json!(["codemill/P-1/1-part-a", "codemill/P-1/2-part-d"])
    );
    assert_eq!(
        env.remote_git(&["show", "main:a.txt"]).trim_end(),
        "a\nand d"
    );
}

/// A refined idea in the browser: its spec on its page, accepted with the page's button, and the
/// page following the job to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_accepts_a_refined_spec_in_the_browser() {
    use super::refine::{SPLITS, refiner};
    let env = Env::new(refiner(SPLITS, SPLITS), HELLO_GATE, "").await;
    env.add_user("amy", "approver", PASSWORD);
    env.ok(&[
        "idea",
        "add",
        "P",
        "--title",
        "Faster exports",
        "--body",
        "Exports take forever.",
    ]);
    let out = env.ok(&["run", "P-2"]);
    assert!(out.contains("codemill refine accept P-2"), "{out}");
    let server = Service::start(&env, &[], &[]);
    browse(
        "refine.cjs",
        &server.base,
        &["amy", PASSWORD, "P-2"],
        &["refined.png", "accepted.png"],
    );
    // Accepted from the page: the split became two tickets, and the decision names the person.
    let show = env.json(&["show", "P-2", "--json"]);
    let by = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "accepted")
        .map(|e| e["event"]["by"].clone());
    assert_eq!(by, Some(serde_json::json!("user:amy")));
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_asks_the_assistant_and_saves_its_draft_in_the_browser() {
    use codemill_testkit::{Reply, Rule};
    let answer = "Add a login route beside the greeting in `README.md`.\n\n```json\n{\"drafts\": [{\"title\": \"Add OIDC login\", \"body\": \"- [ ] a user signs in with OIDC\"}]}\n```";
    let rules = vec![Rule::new(
        "assistant",
        super::harness::at_turn("assistant", 0),
        Reply::text(answer),
    )];
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.add_user("amy", "approver", PASSWORD);
    // The web answers at once; the service's worker answers the question.
    let server = Service::start(&env, &[], &[]);
    let done = browse(
        "assistant.cjs",
        &server.base,
        &["amy", PASSWORD, "P"],
        &["assistant-answer.png", "assistant-saved.png"],
    );
    assert!(done["saved"].as_str().unwrap().contains("P-2"), "{done}");
    let saved = env.json(&["ticket", "show", "P-2", "--json"]);
    assert_eq!(saved["ticket"]["title"], "Add OIDC login");
    assert_eq!(
        saved["ticket"]["labels"],
        serde_json::json!(["codemill:drafted"])
    );
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let asked = env.json(&["assistant", "P", "--list", "--json"]);
    assert_eq!(asked[0]["turns"], 1, "{asked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_applies_and_rejects_learned_guidance_in_the_browser() {
    use codemill_testkit::{Reply, Rule};
    let proposals = "Both were rejected for missing error handling.\n```json\n{\"proposals\": [{\"kind\": \"checklist\", \"angle\": \"errors\", \"item\": \"Is every error handled?\", \"why\": \"two rejections\", \"cites\": [\"P-1\", \"P-2\"]}, {\"kind\": \"knowledge\", \"title\": \"Writes are checked\", \"body\": \"Every file write checks its result.\", \"why\": \"two rejections\", \"cites\": [\"P-1\", \"P-2\"]}]}\n```";
    let env = super::learn::two_rejections(Rule::new(
        "learn",
        super::harness::at_turn("learn", 0),
        Reply::text(proposals),
    ))
    .await;
    env.add_user("amy", "approver", PASSWORD);
    let learned = env.ok(&["learn", "P"]);
    assert!(learned.contains("2 new proposal(s)"), "{learned}");
    let server = Service::start(&env, &[], &[]);
    let done = browse(
        "learn.cjs",
        &server.base,
        &["amy", PASSWORD, "P"],
        &["learn-proposed.png", "learn-decided.png"],
    );
    assert!(
        done["applied"].as_str().unwrap().contains("knowledge #"),
        "{done}"
    );
    let entries = env.json(&["knowledge", "list", "P", "--json"]);
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["title"] == "Writes are checked")
        .unwrap_or_else(|| panic!("{entries}"));
    assert_eq!(entry["tag"], "human", "{entry}");
    assert_eq!(entry["author"], "user:amy", "{entry}");
    // The rejected checklist changed nothing in the repository.
    let branches = env.remote_git(&["branch", "--list", "codemill/guidance-*"]);
    assert!(branches.trim().is_empty(), "{branches}");
}
