//! Sub-tasks on GitHub: an issue split into linked sub-task issues, made once, and one PR per
//! sub-task based on the one below, merged in order through webhooks.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_each_sub_task_gets_a_pr_based_on_the_one_below() {
    use crate::suite::outside::{fake_github, github_config, github_vars};
    let gh = fake_github().await;
    let rules = fixing(CHAIN, "Please also add a3.txt", "a3.txt", "three\n");
    let env = Env::new(rules, GATE, "").await;
    env.write_config(&format!(
        "[projects.shop]\nrepo = \"{}\"\nforge = \"github\"\n\n[projects.shop.roles]\nreview = [\"bob\"]\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    ));
    gh.set_branch("main", &env.remote_git(&["rev-parse", "main"]));
    env.ok(&[
        "ticket",
        "add",
        "shop",
        "--title",
        "Build two parts",
        "--body",
        "Two parts.\n\nAcceptance: both files exist.",
    ]);
    let vars = github_vars();
    let ran = env.ok_with(&vars, &["run", "shop-1"]);
    assert!(ran.contains("proposal ready"), "{ran}");
    env.ok_with(&vars, &["approve", "shop-1"]);
    let stack = env.json(&["show", "shop-1", "--json"])["job"]["stack"].clone();
    let prs = gh.prs();
    assert_eq!(prs.len(), 2, "{prs:?}");
    for (i, entry) in stack.as_array().unwrap().iter().enumerate() {
        let pr = gh
            .pr_by_head(entry["branch"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no PR for {entry}: {prs:?}"));
        let base = if i == 0 {
            "main"
        } else {
            stack[i - 1]["branch"].as_str().unwrap()
        };
        assert_eq!(pr["base"]["ref"], base, "{pr}");
        assert_eq!(pr["draft"], true, "{pr}");
        let body = pr["body"].as_str().unwrap();
        assert!(
            body.contains("← this PR") && body.contains("**Stack**"),
            "{body}"
        );
    }
    // The parent follows none of the stack's PRs: it is done once they are open.
    assert_eq!(
        env.json(&["show", "shop-1", "--json"])["job"]["state"],
        "done"
    );
    // The queue does not land a stack through GitHub's API (each PR would merge into the one
    // below it); it says how to land it instead.
    let out = env
        .cmd()
        .envs(vars.iter().copied())
        .args(["merge", "shop-1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("merge the stack bottom first there"),
        "{stderr}"
    );

    // Each sub-job follows its own PR: merged on GitHub bottom first, each sub-task's ticket is
    // done, and the parent's once the last one merged.
    for entry in stack.as_array().unwrap() {
        let key = entry["ticket"].as_str().unwrap();
        assert_eq!(
            env.json(&["show", key, "--json"])["job"]["state"],
            "in_review",
            "{key}"
        );
    }
    let svc = crate::suite::harness::Service::start(&env, &["--poll-secs", "0"], &vars);
    // A review comment on the bottom PR: a fix round of that sub-task, pushed to its stack
    // branch, answered in the thread.
    let bottom = &stack[0];
    let (a_key, a_branch) = (
        bottom["ticket"].as_str().unwrap(),
        bottom["branch"].as_str().unwrap(),
    );
    let a_pr = gh.pr_by_head(a_branch).unwrap()["number"].as_u64().unwrap();
    let tip0 = env.remote_branch(a_branch).unwrap();
    let comment = gh.add_review_comment(a_pr, "bob", "Please also add a3.txt", "a.txt", 1);
    let answer = crate::suite::outside::github_hook(
        &svc,
        "shop",
        "pull_request_review_comment",
        &gh.review_comment_created(a_pr, comment),
    )
    .await;
    assert_eq!(answer["result"], "recorded", "{answer}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env
        .event_kinds(a_key)
        .iter()
        .any(|k| k == "feedback_replied")
    {
        assert!(Instant::now() < deadline, "{:?}", env.event_kinds(a_key));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tip1 = env.remote_branch(a_branch).unwrap();
    assert_eq!(env.remote_git(&["rev-parse", &format!("{tip1}^")]), tip0);
    assert_eq!(
        env.remote_git(&["show", &format!("{a_branch}:a3.txt")]),
        "three"
    );
    assert_eq!(gh.review_comment_replies(a_pr).len(), 1);
    crate::suite::harness::wait_state(&env, a_key, "in_review");
    for (i, entry) in stack.as_array().unwrap().iter().enumerate() {
        let key = entry["ticket"].as_str().unwrap();
        let pr = gh.pr_by_head(entry["branch"].as_str().unwrap()).unwrap()["number"]
            .as_u64()
            .unwrap();
        assert!(gh.merge(pr));
        let answer = crate::suite::outside::github_hook(
            &svc,
            "shop",
            "pull_request",
            &gh.pull_request_closed(pr, true),
        )
        .await;
        assert_eq!(answer["result"], "recorded", "{answer}");
        crate::suite::harness::wait_state(&env, key, "done");
        let parent = env.json(&["ticket", "show", "shop-1", "--json"]);
        let done = parent["ticket"]["status"] == "done";
        assert_eq!(done, i == 1, "after {key} merged: {parent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_issue_splits_into_sub_task_issues_made_once() {
    use codemill_testkit::fakes::{Fault, FaultKind};

    use crate::suite::outside::{fake_github, github_config, github_hook, github_vars};
    let gh = fake_github().await;
    let issue = gh.add_issue(
        "Build two parts",
        "Two parts.\n\nAcceptance: both files exist.",
        &[],
        "alice",
    );
    let env = Env::new(rules(CHAIN), GATE, "").await;
    env.write_config(&format!(
        "[projects.shop]\nrepo = \"{}\"\ntracker = \"github\"\nforge = \"github\"\n\n[projects.shop.roles]\ntrigger = [\"alice\"]\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    ));
    gh.set_branch("main", &env.remote_git(&["rev-parse", "main"]));
    // The first sub-task issue is made but its answer is lost: the retry finds it by marker.
    gh.inject(Fault {
        method: "POST".into(),
        path: "/repos/acme/shop/issues".into(),
        kind: FaultKind::AfterApply(502),
    });
    let svc = crate::suite::harness::Service::start(&env, &["--poll-secs", "0"], &github_vars());
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
    wait_for(&env, &key, "awaiting_approval");

    // Two sub-task issues on GitHub, labelled as sub-tasks, each naming its parent, made once.
    let parent = env.json(&["show", &key, "--json"]);
    let children = parent["job"]["children"].as_array().unwrap().clone();
    assert_eq!(children.len(), 2, "{parent}");
    let mut numbers = Vec::new();
    for c in &children {
        let local = c["ticket"].as_str().unwrap();
        let number: u64 = local.trim_start_matches("shop-").parse().unwrap();
        numbers.push(number);
        let made = gh
            .issue(number)
            .unwrap_or_else(|| panic!("no issue {number}"));
        let body = made["body"].as_str().unwrap();
        assert!(body.contains(&format!("Sub-task of #{issue}")), "{body}");
        assert!(gh.labels(number).contains(&"codemill:subtask".to_string()));
        // Mirrored locally, and worked on through GitHub like any issue: one progress comment.
        let ticket = env.json(&["ticket", "show", local, "--json"]);
        assert_eq!(ticket["ticket"]["external"], number.to_string(), "{ticket}");
        let progress = gh
            .comments(number)
            .into_iter()
            .filter(|c| {
                c["body"]
                    .as_str()
                    .unwrap_or("")
                    .contains("codemill:progress")
            })
            .count();
        assert_eq!(progress, 1, "{number}");
    }
    let subtask_issues = (1..=20)
        .filter_map(|n| gh.issue(n))
        .filter(|i| {
            i["labels"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["name"] == "codemill:subtask"))
        })
        .count();
    assert_eq!(subtask_issues, 2, "one issue per sub-task, after a 502");
    // The parent's progress comment draws the graph.
    let drawn = gh.comments(issue).into_iter().any(|c| {
        c["body"]
            .as_str()
            .unwrap_or("")
            .contains("Plan: 2 sub-tasks")
    });
    assert!(drawn, "{:?}", gh.comments(issue));

    // Approved and merged on GitHub bottom first: each sub-task issue closes, then the parent's.
    env.ok_with(&github_vars(), &["approve", &key]);
    let stack = env.json(&["show", &key, "--json"])["job"]["stack"].clone();
    for entry in stack.as_array().unwrap() {
        let pr = gh.pr_by_head(entry["branch"].as_str().unwrap()).unwrap()["number"]
            .as_u64()
            .unwrap();
        assert!(gh.merge(pr));
        let answer = github_hook(
            &svc,
            "shop",
            "pull_request",
            &gh.pull_request_closed(pr, true),
        )
        .await;
        assert_eq!(answer["result"], "recorded", "{answer}");
        crate::suite::harness::wait_state(&env, entry["ticket"].as_str().unwrap(), "done");
    }
    for number in numbers {
        assert_eq!(gh.issue(number).unwrap()["state"], "closed", "{number}");
    }
    assert_eq!(gh.issue(issue).unwrap()["state"], "closed");
}
