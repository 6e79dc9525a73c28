//! The merge queue on the local forge: approved PRs land in order with the target's gates run on
//! each candidate; a red or conflicting entry is taken out with the reason and the others still
//! land; a red batch is bisected; `kill -9` mid-merge resumes without merging twice; the API
//! queues and the service lands. Outside forges are in `merge_queue_forges`.

use codemill_testkit::{Match, Reply, Rule, ToolCall};
use serde_json::{Value, json};

use super::harness::{Env, Service, at_turn, engineer, write_call};

/// The gate: a file asking for no alpha fails once alpha.txt is there — two changes that each
/// pass alone and break together.
pub(super) const GATE: &str = "[[gates]]\nname = \"together\"\ncommand = [\"sh\", \"-c\", \"if [ -e alpha.txt ] && grep -qs needs-no-alpha *.txt; then echo gamma cannot live with alpha >&2; exit 1; fi\"]\n";

/// Tickets by title word, and the file each writes (`gamma` asks for no alpha).
const FILES: [(&str, &str, &str); 5] = [
    ("alpha", "alpha.txt", "alpha\n"),
    ("beta", "beta.txt", "beta\n"),
    ("gamma", "gamma.txt", "needs-no-alpha\n"),
    ("delta", "delta.txt", "delta\n"),
    ("clash", "alpha.txt", "another alpha\n"),
];

/// The engineer's script, implementing each ticket by the word in its title; a fix round after
/// the merge queue took a branch out makes alpha.txt what main holds and keeps its own change.
pub(super) fn rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = vec![
        Rule::new(
            "merge fix: write",
            Match {
                last_contains: Some("merge queue could not land".into()),
                ..Match::default()
            },
            Reply::Message {
                text: Some("Keeping main's alpha.".into()),
                tool_calls: vec![
                    ToolCall::new(
                        "write_file",
                        json!({"path": "alpha.txt", "content": "alpha\n"}),
                    ),
                    ToolCall::new(
                        "write_file",
                        json!({"path": "clash.txt", "content": "another alpha\n"}),
                    ),
                ],
                usage: None,
            },
        ),
        Rule::new(
            "merge fix: done",
            Match {
                contains: Some("merge queue could not land".into()),
                ..Match::default()
            },
            Reply::text("alpha.txt now matches main; the clash lives in clash.txt."),
        ),
    ];
    for (word, file, content) in FILES {
        rules.push(Rule::new(
            format!("implement {word}: write"),
            Match {
                contains: Some(format!("Add {word}")),
                ..at_turn("implement", 0)
            },
            write_call(file, content),
        ));
    }
    rules.extend(
        engineer()
            .into_iter()
            .filter(|r| !r.name.starts_with("implement: write")),
    );
    rules
}

/// A home whose ticket P-1 is "Add <first>", with the other words as P-2, P-3… each run and
/// approved (so each has a PR record on the local forge).
async fn approved(words: &[&str], extra_config: &str) -> Env {
    let env = Env::new(rules(), GATE, "").await;
    // Project settings only once the project exists.
    env.write_config(extra_config);
    // Env made P-1 ("Say hello"); retitle it as the first word's ticket.
    env.ok(&[
        "ticket",
        "edit",
        "P-1",
        "--title",
        &format!("Add {}", words[0]),
        "--body",
        &format!("Add {}.\n\nAcceptance: the file exists.", words[0]),
    ]);
    for word in &words[1..] {
        env.ok(&[
            "ticket",
            "add",
            "P",
            "--title",
            &format!("Add {word}"),
            "--body",
            &format!("Add {word}.\n\nAcceptance: the file exists."),
        ]);
    }
    for n in 1..=words.len() {
        let key = format!("P-{n}");
        let ran = env.ok(&["run", &key]);
        assert!(ran.contains("proposal ready"), "{key}: {ran}");
        env.ok(&["approve", &key]);
    }
    env
}

fn merge(env: &Env, keys: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["merge"];
    args.extend(keys);
    args.push("--json");
    let (code, stdout, stderr) = env.run(&args);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    (code, report, stderr)
}

pub(super) fn outcome<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["ticket"] == key)
        .unwrap_or_else(|| panic!("{key} not in {report}"))
}

pub(super) fn main_files(env: &Env) -> Vec<String> {
    let mut files: Vec<String> = env
        .remote_git(&["ls-tree", "--name-only", "main"])
        .lines()
        .map(str::to_owned)
        .collect();
    files.sort();
    files
}

fn comments(env: &Env, key: &str) -> Vec<String> {
    env.json(&["ticket", "show", key, "--json"])["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_prs_land_in_order_and_a_red_candidate_is_taken_out() {
    let env = approved(&["alpha", "gamma", "beta"], "").await;
    let before = env.remote_git(&["rev-parse", "main"]);
    let (code, report, stderr) = merge(&env, &["P-1", "P-2", "P-3"]);
    assert_eq!(code, Some(1), "an entry was taken out: {stderr}");
    assert_eq!(
        report["gate_runs"], 3,
        "one gate run per candidate: {report}"
    );
    assert_eq!(outcome(&report, "P-1")["state"], "merged");
    assert_eq!(outcome(&report, "P-3")["state"], "merged");
    let gamma = outcome(&report, "P-2");
    assert_eq!(gamma["state"], "ejected");
    let reason = gamma["reason"].as_str().unwrap();
    assert!(
        reason.contains("gate `together` failed on the candidate")
            && reason.contains("gamma cannot live with alpha"),
        "{reason}"
    );
    // main moved to exactly the tested candidates, P-1 before P-3, without gamma.
    assert_eq!(
        main_files(&env),
        [".codemill", "README.md", "alpha.txt", "beta.txt"]
    );
    let main = env.remote_git(&["rev-parse", "main"]);
    assert_eq!(outcome(&report, "P-3")["merged_as"], main.as_str());
    let p1_at = outcome(&report, "P-1")["merged_as"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.remote_git(&["merge-base", "--is-ancestor", &before, &p1_at]),
        ""
    );
    assert_eq!(
        env.remote_git(&["merge-base", "--is-ancestor", &p1_at, &main]),
        ""
    );
    // Each ticket says what happened; the ejected one keeps its open PR and is not done.
    assert!(
        comments(&env, "P-1")
            .iter()
            .any(|c| c.starts_with("**Merged**"))
    );
    assert!(
        comments(&env, "P-2")
            .iter()
            .any(|c| c.starts_with("**Taken out of the merge queue**")
                && c.contains("gamma cannot live with alpha")),
        "{:?}",
        comments(&env, "P-2")
    );
    assert_eq!(
        env.json(&["ticket", "show", "P-2", "--json"])["ticket"]["status"],
        "in_review"
    );
    assert_eq!(env.json(&["show", "P-2", "--json"])["pr"]["state"], "open");
    assert_eq!(
        env.json(&["show", "P-3", "--json"])["pr"]["state"],
        "merged"
    );
    assert_eq!(
        env.json(&["ticket", "show", "P-3", "--json"])["ticket"]["status"],
        "done"
    );
    // The progress says the same.
    assert!(
        stderr.contains("P-2: taken out of the merge queue: gate `together` failed"),
        "{stderr}"
    );
    // Asked again: the merged ones are merged, the red one is in its fix round.
    let (code, stdout, stderr) = env.run(&["merge", "P-1", "P-3"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("P-1") && stdout.contains("merged"),
        "{stdout}"
    );
    let (code, _, stderr) = env.run(&["merge", "P-2"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("a fix round runs on its branch"),
        "{stderr}"
    );
    assert_eq!(
        env.remote_git(&["rev-parse", "main"]),
        main,
        "nothing landed twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_with_an_entry_that_landed_takes_the_later_one_out() {
    let env = approved(&["alpha", "clash"], "").await;
    let (code, report, _) = merge(&env, &["P-1", "P-2"]);
    assert_eq!(code, Some(1));
    assert_eq!(outcome(&report, "P-1")["state"], "merged");
    let clash = outcome(&report, "P-2");
    assert_eq!(clash["state"], "ejected");
    assert!(
        clash["reason"]
            .as_str()
            .unwrap()
            .starts_with("codemill/P-2 conflicts with main in alpha.txt"),
        "{clash}"
    );
    assert_eq!(report["gate_runs"], 1, "a conflict needs no gate run");
    assert_eq!(env.remote_git(&["show", "main:alpha.txt"]), "alpha");
    // The conflict starts a fix round on P-2's branch, told what main holds there.
    let ejected = comments(&env, "P-2");
    assert!(
        ejected
            .iter()
            .any(|c| c.starts_with("**Taken out of the merge queue**")
                && c.contains("A fix round runs on the branch now")),
        "{ejected:?}"
    );
    let show = env.json(&["show", "P-2", "--json"]);
    assert_eq!(show["job"]["stage"], "feedback_prepare", "{show}");
    let (code, _, stderr) = env.run(&["merge", "P-2"]);
    assert_eq!(code, Some(1), "not queued during its round");
    assert!(
        stderr.contains("a fix round runs on its branch"),
        "{stderr}"
    );
    env.ok(&["run", "P-2"]);
    let show = env.json(&["show", "P-2", "--json"]);
    assert_eq!(show["job"]["stage"], "done", "{show}");
    let head = env.remote_git(&["rev-parse", "codemill/P-2"]);
    assert_eq!(
        show["pr"]["commit"],
        head.as_str(),
        "the PR follows the fix"
    );
    assert_eq!(env.remote_git(&["show", "codemill/P-2:alpha.txt"]), "alpha");
    // Queued again, it lands.
    let (code, report, stderr) = merge(&env, &["P-2"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(outcome(&report, "P-2")["state"], "merged");
    assert_eq!(
        main_files(&env),
        [".codemill", "README.md", "alpha.txt", "clash.txt"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_batch_is_bisected_to_the_entry_that_broke_it() {
    let env = approved(
        &["alpha", "beta", "gamma", "delta"],
        "[projects.P.merge_queue]\nbatch = 4\n",
    )
    .await;
    let (code, report, stderr) = merge(&env, &["P-1", "P-2", "P-3", "P-4"]);
    assert_eq!(code, Some(1), "{stderr}");
    // The batch of 4 (red), then 2 (green) and 3 (red) find gamma; alpha and beta land
    // together, delta alone after it.
    assert_eq!(report["gate_runs"], 4, "{report}");
    assert_eq!(report["settled"], 4, "{report}");
    assert_eq!(outcome(&report, "P-3")["state"], "ejected");
    for key in ["P-1", "P-2", "P-4"] {
        assert_eq!(outcome(&report, key)["state"], "merged", "{key}: {report}");
    }
    assert_eq!(
        outcome(&report, "P-1")["merged_as"],
        outcome(&report, "P-2")["merged_as"],
        "landed as one candidate"
    );
    assert_eq!(
        main_files(&env),
        [
            ".codemill",
            "README.md",
            "alpha.txt",
            "beta.txt",
            "delta.txt"
        ]
    );
    assert!(stderr.contains("bisected a batch of 4 to P-3"), "{stderr}");
}

/// `kill -9` after the candidate's gates passed (nothing pushed yet) and after the push (nothing
/// settled yet): the next `codemill merge` finishes with each entry merged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_merge_resumes_without_merging_twice() {
    let env = approved(&["alpha", "beta"], "").await;
    let before = env.remote_git(&["rev-parse", "main"]);
    let crashed = env
        .cmd()
        .env("CODEMILL_CRASH_IN_MERGE", "tested")
        .args(["merge", "P-1", "P-2"])
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), None, "killed by a signal");
    assert_eq!(
        env.remote_git(&["rev-parse", "main"]),
        before,
        "nothing lands before the push"
    );
    let crashed = env
        .cmd()
        .env("CODEMILL_CRASH_IN_MERGE", "pushed")
        .args(["merge", "P-1", "P-2"])
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), None, "killed by a signal");
    let landed = env.remote_git(&["rev-parse", "main"]);
    assert_ne!(landed, before, "P-1's candidate was pushed");
    assert_eq!(
        env.json(&["show", "P-1", "--json"])["pr"]["state"],
        "open",
        "not settled before the kill"
    );
    let (code, report, stderr) = merge(&env, &["P-1", "P-2"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(outcome(&report, "P-1")["state"], "merged");
    assert_eq!(outcome(&report, "P-2")["state"], "merged");
    assert_eq!(
        report["gate_runs"], 1,
        "only P-2's candidate is tested: {report}"
    );
    assert_eq!(
        env.remote_git(&[
            "rev-list",
            "--first-parent",
            "--count",
            &format!("{landed}..main")
        ]),
        "1",
        "P-1 was not merged again: {}",
        env.remote_git(&["log", "--oneline", "main"])
    );
    assert_eq!(
        main_files(&env),
        [".codemill", "README.md", "alpha.txt", "beta.txt"]
    );
    let merged_notes = comments(&env, "P-1")
        .iter()
        .filter(|c| c.starts_with("**Merged**"))
        .count();
    assert_eq!(merged_notes, 1);
}

/// Through the API (`POST /api/tickets/{key}/merge`) entries are only queued; the service's
/// worker lands them between jobs, in order, each tested on the candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_queues_merges_and_the_service_lands_them() {
    let env = approved(&["alpha", "beta"], "").await;
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();
    let server = Service::start(&env, &[], &[]);
    let (base, http) = (server.base.clone(), server.http.clone());
    let post = |key: &str, token: Option<&str>| {
        let mut req = http.post(format!("{base}/api/tickets/{key}/merge"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(post("P-1", None).await.unwrap().status(), 401);
    let first = post("P-1", Some(&token)).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["action"], "queued", "{first}");
    assert_eq!(first["target"], "main");
    let second: Value = post("P-2", Some(&token))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        second["action"] == "queued" || second["action"] == "already_merged",
        "{second}"
    );
    let unknown = post("P-9", Some(&token)).await.unwrap();
    assert_eq!(unknown.status(), 404);
    // The worker lands both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while env.json(&["show", "P-2", "--json"])["pr"]["state"] != "merged" {
        assert!(
            std::time::Instant::now() < deadline,
            "not landed: {}",
            env.json(&["show", "P-2", "--json"])["pr"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        env.json(&["show", "P-1", "--json"])["pr"]["state"],
        "merged"
    );
    assert_eq!(
        main_files(&env),
        [".codemill", "README.md", "alpha.txt", "beta.txt"]
    );
    // Asked again, it says so.
    let again: Value = post("P-1", Some(&token))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["action"], "already_merged", "{again}");
}
