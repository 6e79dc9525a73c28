//! The feedback flywheel on GitHub: people add the same kind of error handling to three of
//! codemill's PRs before merging them (a fourth merges unchanged); `codemill learn` shows the
//! agent those changes and keeps its proposals; applying the checklist item opens a PR adding
//! `.codemill/review/errors.md`; rejecting the other proposal changes nothing; the metrics count
//! the fixture; `serve` learns once a week.

use std::path::Path;

use codemill_testkit::{Match, Reply, Rule};
use serde_json::Value;

use super::harness::{Env, HELLO_GATE, Service, at_turn, engineer, git, wait_state};
use super::outside::{fake_github, github_config, github_hook, github_vars};

const PROPOSALS: &str = "All three PRs got an error check added by people.\n```json\n{\"proposals\": [{\"kind\": \"checklist\", \"angle\": \"errors\", \"item\": \"Does every call that can fail have its error checked?\", \"why\": \"people added the same error check to three PRs\", \"cites\": [\"shop-1\", \"shop-3\", \"shop-5\"]}, {\"kind\": \"knowledge\", \"title\": \"Errors are checked at the call\", \"body\": \"Every fallible call is followed by a check.\", \"why\": \"same three PRs\", \"cites\": [\"shop-1\", \"shop-3\"]}, {\"kind\": \"policy\", \"change\": \"[[gates]]\\nname = \\\"errcheck\\\"\\ncommand = [\\\"grep\\\", \\\"-q\\\", \\\"err\\\", \\\"hello.txt\\\"]\", \"why\": \"check it every time\", \"cites\": [\"shop-1\", \"shop-5\"]}, {\"kind\": \"policy\", \"change\": \"[[gates]]\\nname = 3\", \"why\": \"broken\", \"cites\": [\"shop-1\", \"shop-3\"]}]}\n```";

/// A person's follow-up commit on a PR branch: `line` (an error check) added to hello.txt.
fn human_commit(dir: &Path, remote: &Path, branch: &str, name: &str, line: &str) -> String {
    let work = dir.join(name);
    git(
        dir,
        &[
            "clone",
            "-q",
            "-b",
            branch,
            remote.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    let file = work.join("hello.txt");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(line);
    std::fs::write(&file, text).unwrap();
    git(
        &work,
        &[
            "-c",
            "user.name=Pat",
            "-c",
            "user.email=pat@example.com",
            "commit",
            "-qam",
            "Check the error",
        ],
    );
    git(&work, &["push", "-q", "origin", branch]);
    git(&work, &["rev-parse", "HEAD"]).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_people_repeat_become_a_checklist_item_applied_through_a_pr() {
    let gh = fake_github().await;
    let mut rules = vec![Rule::new(
        "learn",
        Match {
            contains: Some("if err != nil".into()),
            ..at_turn("learn", 0)
        },
        Reply::text(PROPOSALS),
    )];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.write_config(&format!(
        "[projects.shop]\nrepo = \"{}\"\ntracker = \"github\"\nforge = \"github\"\n\n[projects.shop.roles]\ntrigger = [\"alice\"]\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    ));
    gh.set_branch("main", &env.remote_git(&["rev-parse", "main"]));
    // Nothing to learn from yet: no model is asked.
    let early = env.ok_with(&github_vars(), &["learn", "shop"]);
    assert!(early.contains("0 of 0 outcomes"), "{early}");
    assert!(env.server.requests().is_empty());

    let svc = Service::start(&env, &["--poll-secs", "0"], &github_vars());
    for n in 1..=4u64 {
        let issue = gh.add_issue(
            "Say hello",
            "Add hello.txt.\n\nAcceptance: it exists.",
            &[],
            "alice",
        );
        // Issues and PRs share GitHub's numbers: each PR takes the number after its issue.
        assert_eq!(issue, 2 * n - 1);
        gh.add_label(issue, "codemill");
        let answer = github_hook(
            &svc,
            "shop",
            "issues",
            &gh.issues_labeled(issue, "codemill", "alice"),
        )
        .await;
        assert_eq!(answer["result"], "queued", "{answer}");
        let key = format!("shop-{issue}");
        wait_state(&env, &key, "awaiting_approval");
        env.ok_with(&github_vars(), &["approve", &key]);
        wait_state(&env, &key, "in_review");
        let branch = format!("codemill/{key}");
        let pr = gh.pr_by_head(&branch).unwrap()["number"].as_u64().unwrap();
        // People add an error check to the first three before merging; the fourth is merged as is.
        if n <= 3 {
            let sha = human_commit(
                env.dir.path(),
                &env.remote,
                &branch,
                &format!("person-{n}"),
                "if err != nil { return err }\n",
            );
            gh.push(&branch, &sha);
        }
        // GitHub keeps each PR's head as `refs/pull/N/head`, following the branch until the PR
        // closes.
        let pull = format!("refs/pull/{pr}/head");
        env.remote_git(&["update-ref", &pull, &format!("refs/heads/{branch}")]);
        assert!(gh.merge(pr));
        match n {
            // The branch is deleted on merge ("automatically delete head branches").
            2 => {
                env.remote_git(&["update-ref", "-d", &format!("refs/heads/{branch}")]);
            }
            // Someone goes on working on the branch after the merge: not part of what merged.
            3 => {
                human_commit(
                    env.dir.path(),
                    &env.remote,
                    &branch,
                    "late",
                    "// after the merge\n",
                );
            }
            _ => {}
        }
        let answer = github_hook(
            &svc,
            "shop",
            "pull_request",
            &gh.pull_request_closed(pr, true),
        )
        .await;
        assert_eq!(answer["result"], "recorded", "{answer}");
        wait_state(&env, &key, "done");
    }
    assert!(svc.stop().success());

    // Learning: the agent sees the three changes, and one checklist item is proposed.
    let learned: Value =
        serde_json::from_str(&env.ok_with(&github_vars(), &["learn", "shop", "--json"])).unwrap();
    assert_eq!(learned["outcomes"], 4, "{learned}");
    assert_eq!(learned["changed"], 3, "{learned}");
    let proposals = learned["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), 3, "{learned}");
    // A policy change that would not read as a policy is not offered.
    let dropped = learned["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{learned}");
    let policy = proposals
        .iter()
        .find(|p| {
            p["summary"]
                .as_str()
                .unwrap()
                .starts_with("pipeline policy")
        })
        .unwrap();
    assert!(
        policy["diff"]
            .as_str()
            .unwrap()
            .contains("+name = \"errcheck\""),
        "{policy}"
    );
    let brief = env
        .server
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .find(|b| b.contains("codemill stage: learn"))
        .unwrap();
    assert_eq!(
        brief.matches("if err != nil { return err }").count(),
        3,
        "each change is shown once, a deleted branch's too"
    );
    assert!(
        !brief.contains("after the merge"),
        "what was merged is the PR's head, not where its branch went later"
    );
    for key in ["shop-1", "shop-3", "shop-5"] {
        assert!(
            brief.contains(&format!("ticket=\\\"{key}\\\"")),
            "{key} in the brief"
        );
    }
    assert!(
        !brief.contains("ticket=\\\"shop-7\\\""),
        "an unchanged merge teaches nothing"
    );
    let checklist = proposals
        .iter()
        .find(|p| {
            p["summary"]
                .as_str()
                .unwrap()
                .starts_with("errors checklist")
        })
        .unwrap();
    let knowledge = proposals
        .iter()
        .find(|p| p["summary"].as_str().unwrap().starts_with("knowledge"))
        .unwrap();
    assert!(
        checklist["diff"]
            .as_str()
            .unwrap()
            .contains("+- Does every call that can fail have its error checked?"),
        "{checklist}"
    );
    let listed = env.ok(&["learn", "shop", "--list"]);
    assert!(listed.contains("from: shop-1, shop-3, shop-5"), "{listed}");
    assert!(
        listed.contains("+++ b/.codemill/review/errors.md"),
        "{listed}"
    );
    // Learning again proposes nothing new.
    let again: Value =
        serde_json::from_str(&env.ok_with(&github_vars(), &["learn", "shop", "--json"])).unwrap();
    assert_eq!(again["proposals"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["repeated"], 3, "{again}");
    assert_eq!(again["dropped"].as_array().unwrap().len(), 1, "{again}");

    // Rejecting the knowledge proposal changes nothing.
    let kid = knowledge["id"].as_i64().unwrap().to_string();
    env.ok(&["learn", "shop", "--reject", &kid]);
    assert!(
        env.json(&["knowledge", "list", "shop", "--json"])
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    let (code, _, stderr) = env.run(&["learn", "shop", "--apply", &kid]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("error: learn: ") && stderr.contains("is rejected"),
        "{stderr}"
    );
    let (code, _, stderr) = env.run(&["learn", "shop", "--reject", "99"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("error: learn: no proposal 99"), "{stderr}");

    // Applying the checklist item opens a PR adding the checklist.
    let cid = checklist["id"].as_i64().unwrap();
    let applied = env.ok_with(
        &github_vars(),
        &["learn", "shop", "--apply", &cid.to_string()],
    );
    assert!(
        applied.contains(&format!("proposal {cid} applied")),
        "{applied}"
    );
    let branch = format!("codemill/guidance-{cid}");
    let file = env.remote_git(&["show", &format!("{branch}:.codemill/review/errors.md")]);
    assert_eq!(
        file,
        "# errors\n\n- Does every call that can fail have its error checked?"
    );
    let pr = gh.pr_by_head(&branch).expect("a PR for the checklist");
    assert_eq!(pr["base"]["ref"], "main");
    assert!(
        pr["body"]
            .as_str()
            .unwrap()
            .contains("shop-1, shop-3, shop-5"),
        "{pr}"
    );
    let main_tree = env.remote_git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(
        !main_tree.contains(".codemill/review/errors.md"),
        "main changes only through the PR"
    );

    // The metrics: four merged, one of them unchanged; three human lines over four PRs.
    let weeks = env.json(&["learn", "shop", "--metrics", "--json"]);
    let week = &weeks.as_array().unwrap()[0];
    assert_eq!(week["merged"], 4, "{weeks}");
    assert_eq!(week["merged_unchanged"], 1, "{weeks}");
    assert_eq!(week["unchanged_share"], 0.25, "{weeks}");
    assert_eq!(week["human_lines_per_merged"], 0.75, "{weeks}");
    assert_eq!(week["rejected"], 0, "{weeks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_learns_once_a_week_from_rejections() {
    let answer = "```json\n{\"proposals\": [{\"kind\": \"checklist\", \"angle\": \"errors\", \"item\": \"Is every error handled?\", \"why\": \"two rejections\", \"cites\": [\"P-1\", \"P-2\"]}]}\n```";
    let env = two_rejections(Rule::new(
        "learn",
        Match {
            contains: Some("The write's error is not handled".into()),
            ..at_turn("learn", 0)
        },
        Reply::text(answer),
    ))
    .await;
    // The service learns at once (this week's run has not happened), and only once.
    let svc = Service::start(&env, &["--poll-secs", "0"], &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let listed = env.json(&["learn", "P", "--list", "--json"]);
        if listed.as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
            assert_eq!(listed[0]["state"], "proposed");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "serve never learned");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(svc.stop().success());
    let learns = |env: &Env| {
        env.server
            .requests()
            .iter()
            .filter(|r| r.body.to_string().contains("codemill stage: learn"))
            .count()
    };
    assert_eq!(learns(&env), 1);
    let svc = Service::start(&env, &["--poll-secs", "0"], &[]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(svc.stop().success());
    assert_eq!(learns(&env), 1, "one learning run per week");
    let weeks = env.json(&["learn", "P", "--metrics", "--json"]);
    assert_eq!(weeks[0]["rejected"], 2, "{weeks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_with_too_little_to_learn_is_looked_at_again() {
    let answer = "```json\n{\"proposals\": [{\"kind\": \"knowledge\", \"title\": \"Errors\", \"body\": \"Handle the write's error.\", \"why\": \"two rejections\", \"cites\": [\"P-1\", \"P-2\"]}]}\n```";
    let mut rules = vec![Rule::new(
        "learn",
        Match {
            contains: Some("The write's error is not handled".into()),
            ..at_turn("learn", 0)
        },
        Reply::text(answer),
    )];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Say hi",
        "--body",
        "Add hello.txt.",
    ]);
    let reject = |key: &str| {
        env.ok(&["run", key]);
        env.ok(&[
            "reject",
            key,
            "--reason",
            "The write's error is not handled",
        ]);
    };
    let serve_once = |name: &str| {
        let log = env.home.join(name);
        let svc = Service::start_logged(&env, &["--poll-secs", "0"], &[], Some(&log));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("learning: P ")) {
            assert!(std::time::Instant::now() < deadline, "serve never looked");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert!(svc.stop().success());
        std::fs::read_to_string(&log).unwrap()
    };
    // One rejection: too little, and the week is not used up.
    reject("P-1");
    let log = serve_once("serve-1.log");
    assert!(log.contains("not yet"), "{log}");
    // A second one later the same week: the next look learns from both.
    reject("P-2");
    let log = serve_once("serve-2.log");
    assert!(log.contains("1 new proposal(s)"), "{log}");
    let learns = env
        .server
        .requests()
        .iter()
        .filter(|r| r.body.to_string().contains("codemill stage: learn"))
        .count();
    assert_eq!(learns, 1);
}

/// Two proposals on the local tracker (P-1 and P-2) rejected for the same reason, with `learn`
/// answering the learning run: the outcomes learning starts from.
pub(super) async fn two_rejections(learn: Rule) -> Env {
    let mut rules = vec![learn];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Say hi",
        "--body",
        "Add hello.txt.",
    ]);
    for key in ["P-1", "P-2"] {
        env.ok(&["run", key]);
        env.ok(&[
            "reject",
            key,
            "--reason",
            "The write's error is not handled",
        ]);
    }
    env
}
