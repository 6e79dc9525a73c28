//! The merge queue on the local forge: approved PRs land in order with the target's gates run on
//! each candidate; a red or conflicting entry is taken out with the reason and the others still
//! land; a red batch is bisected; `kill -9` mid-merge resumes without merging twice.

use codemill_testkit::{Match, Reply, Rule, ToolCall};
use serde_json::{Value, json};

use codemill_testkit::fakes::github::FakeGitHub;

use super::harness::{Env, Service, at_turn, engineer, git, write_call};
use super::outside::{fake_github, github_config, github_vars};

/// The gate: a file asking for no alpha fails once alpha.txt is there — two changes that each
/// pass alone and break together.
const GATE: &str = "[[gates]]\nname = \"together\"\ncommand = [\"sh\", \"-c\", \"if [ -e alpha.txt ] && grep -qs needs-no-alpha *.txt; then echo gamma cannot live with alpha >&2; exit 1; fi\"]\n";

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
fn rules() -> Vec<Rule> {
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

fn outcome<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["ticket"] == key)
        .unwrap_or_else(|| panic!("{key} not in {report}"))
}

fn main_files(env: &Env) -> Vec<String> {
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

/// A project whose PRs are on GitHub (the recording fake) with `main` protected by the `ci`
/// check; the fake's API merges are made for real in the bare remote, so both stay in step.
async fn on_github(words: &[&str]) -> (Env, FakeGitHub) {
    let gh = fake_github().await;
    let env = Env::new(rules(), GATE, "").await;
    let extra = format!(
        "[projects.shop]\nrepo = \"{}\"\nforge = \"github\"\n\n[projects.shop.merge_queue]\nmethod = \"squash\"\nchecks_timeout_secs = 30\nchecks_poll_secs = 1\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    );
    env.write_config(&extra);
    gh.set_branch("main", &env.remote_git(&["rev-parse", "main"]));
    gh.require_checks("main", &["ci"]);
    let remote = env.remote.clone();
    gh.on_merge(move |base, head, _method| {
        let dir = remote.parent().unwrap().to_path_buf();
        let g = |args: &[&str]| {
            let mut full = vec!["--git-dir", remote.to_str().unwrap()];
            full.extend_from_slice(args);
            git(&dir, &full)
        };
        let tree = g(&["merge-tree", "--write-tree", base, head]);
        let merged = g(&["commit-tree", &tree, "-p", base, "-m", "Squashed"]);
        g(&["update-ref", &format!("refs/heads/{base}"), &merged]);
        Some(merged)
    });
    for word in words {
        env.ok(&[
            "ticket",
            "add",
            "shop",
            "--title",
            &format!("Add {word}"),
            "--body",
            &format!("Add {word}.\n\nAcceptance: the file exists."),
        ]);
    }
    for n in 1..=words.len() {
        let key = format!("shop-{n}");
        let ran = env.ok_with(&github_vars(), &["run", &key]);
        assert!(ran.contains("proposal ready"), "{key}: {ran}");
        env.ok_with(&github_vars(), &["approve", &key]);
        // GitHub's PR head is the pushed branch.
        let branch = format!("codemill/{key}");
        gh.push(&branch, &env.remote_git(&["rev-parse", &branch]));
    }
    (env, gh)
}

fn merge_on_github(env: &Env, keys: &[&str]) -> (Option<i32>, Value, String) {
    let mut cmd = env.cmd();
    cmd.envs(github_vars())
        .arg("merge")
        .args(keys)
        .arg("--json");
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    (out.status.code(), report, stderr)
}

/// On GitHub the queue merges through the API with the tested head pinned and the project's
/// method, waits for the required check, and takes out a PR whose head moved after it was
/// tested (nothing merged, the reason on the PR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_the_tested_head_merges_once_required_checks_pass() {
    let (env, gh) = on_github(&["alpha", "beta", "delta"]).await;
    let head = |n: u32| env.remote_git(&["rev-parse", &format!("codemill/shop-{n}")]);
    let pr_of = |n: u32| -> u64 {
        gh.pr_by_head(&format!("codemill/shop-{n}")).unwrap()["number"]
            .as_u64()
            .unwrap()
    };
    gh.set_check(&head(1), "ci", "completed", Some("success"));
    // beta's check is still running when its turn comes; it passes a moment later.
    gh.set_check(&head(2), "ci", "in_progress", None);
    // delta's head moves on GitHub after it was approved: the tested commit is not its head.
    gh.push(
        "codemill/shop-3",
        "0123456789abcdef0123456789abcdef01234567",
    );
    let beta = head(2);
    let (code, report, stderr) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(2500));
            gh.set_check(&beta, "ci", "completed", Some("success"));
        });
        merge_on_github(&env, &["shop-1", "shop-2", "shop-3"])
    });
    assert_eq!(code, Some(1), "delta was taken out: {stderr}");
    assert_eq!(outcome(&report, "shop-1")["state"], "merged", "{report}");
    assert_eq!(outcome(&report, "shop-2")["state"], "merged", "{report}");
    let delta = outcome(&report, "shop-3");
    assert_eq!(delta["state"], "ejected");
    assert!(
        delta["reason"].as_str().unwrap().contains(&format!(
            "the head of pull request #{} moved to 0123456789ab",
            pr_of(3)
        )),
        "{delta}"
    );
    assert!(
        stderr.contains("waiting for the required checks ci"),
        "{stderr}"
    );
    // Each merge named the tested head and the project's method.
    let merges: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
        .collect();
    assert_eq!(merges.len(), 2, "delta was never asked to merge");
    // codemill opened drafts; queued to merge, each was marked ready first (GraphQL).
    let readied = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/graphql")
        .filter(|r| {
            r.body["query"]
                .as_str()
                .unwrap_or_default()
                .contains("markPullRequestReadyForReview")
        })
        .count();
    assert_eq!(readied, 2, "the two merged drafts were marked ready");
    for (r, n) in merges.iter().zip([1, 2]) {
        let body = &r.body;
        assert_eq!(body["sha"], head(n).as_str());
        assert_eq!(body["merge_method"], "squash");
        assert_eq!(gh.merge_method(pr_of(n)).as_deref(), Some("squash"));
    }
    // main is where GitHub put it, with both changes and not delta's.
    assert_eq!(
        gh.branch("main").unwrap(),
        env.remote_git(&["rev-parse", "main"])
    );
    assert_eq!(
        main_files(&env),
        [".codemill", "README.md", "alpha.txt", "beta.txt"]
    );
    // The reason is on delta's PR.
    assert!(
        gh.comments(pr_of(3)).iter().any(|c| c["body"]
            .as_str()
            .unwrap()
            .contains("Taken out of the merge queue")),
        "{:?}",
        gh.comments(pr_of(3))
    );
}

/// `kill -9` right after GitHub merged (nothing settled yet): the next `codemill merge` finds the
/// PR merged and settles it without asking GitHub to merge again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_merge_killed_after_the_api_call_is_not_asked_twice() {
    let (env, gh) = on_github(&["alpha"]).await;
    let head = env.remote_git(&["rev-parse", "codemill/shop-1"]);
    gh.set_check(&head, "ci", "completed", Some("success"));
    let crashed = env
        .cmd()
        .envs(github_vars())
        .env("CODEMILL_CRASH_IN_MERGE", "pushed")
        .args(["merge", "shop-1"])
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), None, "killed by a signal");
    let (code, report, stderr) = merge_on_github(&env, &["shop-1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(outcome(&report, "shop-1")["state"], "merged");
    let merges = gh
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
        .count();
    assert_eq!(merges, 1, "merged once");
    assert_eq!(
        env.remote_git(&["rev-list", "--count", "main"]),
        "2",
        "one squashed commit on main"
    );
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

/// A service asked to stop while its merge queue waits for a required check stops at once
/// instead of waiting the checks out: nothing is merged or taken out, the entry stays queued,
/// and the next run lands it once the check passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_service_while_checks_run_leaves_the_entry_queued() {
    let (env, gh) = on_github(&["alpha"]).await;
    // Long enough that a service waiting it out would take the entry out before it stopped.
    let config = std::fs::read_to_string(env.home.join("codemill.toml"))
        .unwrap()
        .replace("checks_timeout_secs = 30", "checks_timeout_secs = 600");
    std::fs::write(env.home.join("codemill.toml"), config).unwrap();
    let head = env.remote_git(&["rev-parse", "codemill/shop-1"]);
    gh.set_check(&head, "ci", "in_progress", None);
    let pr = gh.pr_by_head("codemill/shop-1").unwrap()["number"]
        .as_u64()
        .unwrap();
    let token = env.ok(&["token", "create", "ci"]).trim().to_string();

    let svc = Service::start(&env, &[], &github_vars());
    let queued: Value = svc
        .http
        .post(format!("{}/api/tickets/shop-1/merge", svc.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued["action"], "queued", "{queued}");
    let polled = format!("/commits/{head}/check-runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !gh.requests().iter().any(|r| r.path.ends_with(&polled)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never asked for the checks"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(svc.stop().success());
    let merges = |gh: &FakeGitHub| {
        gh.requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
            .count()
    };
    assert_eq!(merges(&gh), 0);
    assert!(
        !gh.comments(pr).iter().any(|c| c["body"]
            .as_str()
            .unwrap_or_default()
            .contains("Taken out of the merge queue")),
        "the entry was not taken out: {:?}",
        gh.comments(pr)
    );

    // The check passes; the next run lands the entry that waited.
    gh.set_check(&head, "ci", "completed", Some("success"));
    let svc = Service::start(&env, &[], &github_vars());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while env.json(&["show", "shop-1", "--json"])["pr"]["state"] != "merged" {
        assert!(
            std::time::Instant::now() < deadline,
            "not landed: {}",
            env.json(&["show", "shop-1", "--json"])["pr"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(merges(&gh), 1, "merged once");
    assert!(svc.stop().success());
}

const GITLAB_TOKEN: &str = "glpat-merge-queue";

/// `words` as approved merge requests on the fake GitLab (pipelines must succeed; its merges
/// move the test's repository the way GitLab would, squashed or not).
async fn on_gitlab(words: &[&str]) -> (Env, codemill_testkit::fakes::gitlab::FakeGitLab) {
    use codemill_testkit::fakes::gitlab::{FakeGitLab, FakeGitLabOptions};
    let gl = FakeGitLab::start(FakeGitLabOptions {
        token: GITLAB_TOKEN.into(),
        ..FakeGitLabOptions::default()
    })
    .await
    .unwrap();
    let env = Env::new(rules(), GATE, "").await;
    let extra = format!(
        "[projects.shop]\nrepo = \"{}\"\nforge = \"gitlab\"\n\n[projects.shop.merge_queue]\nmethod = \"squash\"\nchecks_timeout_secs = 30\nchecks_poll_secs = 1\n\n[projects.shop.gitlab]\nbase_url = \"{}\"\nproject = \"acme/web\"\ntoken_env = \"GITLAB_TOKEN\"\n",
        env.remote.display(),
        gl.url()
    );
    env.write_config(&extra);
    gl.set_branch("main", &env.remote_git(&["rev-parse", "main"]));
    gl.require_pipeline(true);
    let remote = env.remote.clone();
    gl.on_merge(move |target, head, squash| {
        let dir = remote.parent().unwrap().to_path_buf();
        let g = |args: &[&str]| {
            let mut full = vec!["--git-dir", remote.to_str().unwrap()];
            full.extend_from_slice(args);
            git(&dir, &full)
        };
        let tree = g(&["merge-tree", "--write-tree", target, head]);
        let merged = if squash {
            g(&["commit-tree", &tree, "-p", target, "-m", "Squashed"])
        } else {
            g(&[
                "commit-tree",
                &tree,
                "-p",
                target,
                "-p",
                head,
                "-m",
                "Merged",
            ])
        };
        g(&["update-ref", &format!("refs/heads/{target}"), &merged]);
        Some(merged)
    });
    for word in words {
        env.ok(&[
            "ticket",
            "add",
            "shop",
            "--title",
            &format!("Add {word}"),
            "--body",
            &format!("Add {word}.\n\nAcceptance: the file exists."),
        ]);
    }
    for n in 1..=words.len() {
        let key = format!("shop-{n}");
        let ran = env.ok_with(&[("GITLAB_TOKEN", GITLAB_TOKEN)], &["run", &key]);
        assert!(ran.contains("proposal ready"), "{key}: {ran}");
        env.ok_with(&[("GITLAB_TOKEN", GITLAB_TOKEN)], &["approve", &key]);
        let branch = format!("codemill/{key}");
        gl.push(&branch, &env.remote_git(&["rev-parse", &branch]));
    }
    (env, gl)
}

/// On GitLab the queue marks each draft ready, waits for the head's pipeline, merges through
/// the API with the tested head pinned and squashed as configured, and takes out a merge
/// request whose head moved after it was tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_the_tested_head_merges_once_its_pipeline_passed() {
    let (env, gl) = on_gitlab(&["alpha", "beta", "delta"]).await;
    let head = |n: u32| env.remote_git(&["rev-parse", &format!("codemill/shop-{n}")]);
    let iid = |n: u32| -> u64 {
        gl.mr_by_source(&format!("codemill/shop-{n}")).unwrap()["iid"]
            .as_u64()
            .unwrap()
    };
    assert!(
        gl.mr(iid(1))["title"]
            .as_str()
            .unwrap()
            .starts_with("Draft: "),
        "opened as a draft"
    );
    gl.set_pipeline(&head(1), "success");
    // beta's pipeline still runs when its turn comes; it passes a moment later.
    gl.set_pipeline(&head(2), "running");
    gl.push(
        "codemill/shop-3",
        "0123456789abcdef0123456789abcdef01234567",
    );
    let beta = head(2);
    let (code, report, stderr) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(2500));
            gl.set_pipeline(&beta, "success");
        });
        let mut cmd = env.cmd();
        cmd.env("GITLAB_TOKEN", GITLAB_TOKEN)
            .args(["merge", "shop-1", "shop-2", "shop-3", "--json"]);
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let report: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
        (out.status.code(), report, stderr)
    });
    assert_eq!(code, Some(1), "delta was taken out: {stderr}");
    assert_eq!(outcome(&report, "shop-1")["state"], "merged", "{report}");
    assert_eq!(outcome(&report, "shop-2")["state"], "merged", "{report}");
    assert_eq!(outcome(&report, "shop-3")["state"], "ejected", "{report}");
    assert!(
        stderr.contains("waiting for the required checks pipeline"),
        "{stderr}"
    );
    let merges: Vec<_> = gl
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
        .collect();
    assert_eq!(merges.len(), 2, "delta was never asked to merge");
    for (r, n) in merges.iter().zip([1, 2]) {
        assert_eq!(r.body["sha"], head(n).as_str());
        assert_eq!(r.body["squash"], true);
        assert_eq!(gl.squashed(iid(n)), Some(true));
        assert_eq!(gl.mr(iid(n))["state"], "merged");
        assert!(
            !gl.mr(iid(n))["title"]
                .as_str()
                .unwrap()
                .starts_with("Draft"),
            "marked ready before the merge"
        );
    }
    assert_eq!(gl.mr(iid(3))["state"], "opened");
    assert_eq!(
        gl.branch("main").unwrap(),
        env.remote_git(&["rev-parse", "main"])
    );
    assert_eq!(
        main_files(&env),
        [".codemill", "README.md", "alpha.txt", "beta.txt"]
    );
}
