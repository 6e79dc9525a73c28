//! The merge queue on an outside forge: GitHub (the recording fake; required checks, the
//! pinned merge, a kill after the API call) and GitLab (pipelines, drafts, squash), and a
//! service that stops while it waits for checks.

use serde_json::Value;

use codemill_testkit::fakes::github::FakeGitHub;

use super::harness::{Env, Service, git};
use super::merge_queue::{GATE, main_files, outcome, rules};
use super::outside::{fake_github, github_config, github_vars};

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
    gh.on_merge(move |base, head, _method| Some(merge_in(&remote, base, head, true)));
    ship(&env, words, &github_vars(), |branch, head| {
        gh.push(branch, head)
    });
    (env, gh)
}

/// What a forge's merge does to the bare `remote`: `target` moves to a commit of the merged
/// tree (squashed: one parent; else two); the new tip.
fn merge_in(remote: &std::path::Path, target: &str, head: &str, squash: bool) -> String {
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
    merged
}

/// Tickets "Add <word>" in project shop, each run and approved with `vars`; `pushed` tells the
/// forge fake each branch's head (the forge's PR head is the pushed branch).
fn ship(env: &Env, words: &[&str], vars: &[(&str, &str)], pushed: impl Fn(&str, &str)) {
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
        let ran = env.ok_with(vars, &["run", &key]);
        assert!(ran.contains("proposal ready"), "{key}: {ran}");
        env.ok_with(vars, &["approve", &key]);
        let branch = format!("codemill/{key}");
        pushed(&branch, &env.remote_git(&["rev-parse", &branch]));
    }
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
    gl.on_merge(move |target, head, squash| Some(merge_in(&remote, target, head, squash)));
    ship(
        &env,
        words,
        &[("GITLAB_TOKEN", GITLAB_TOKEN)],
        |branch, head| gl.push(branch, head),
    );
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

/// Tickets in GitHub Issues, PRs on the local forge: the queue lands the PR and the issue is
/// done on GitHub too (closed, labelled), said once even when the merge is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_ticket_landed_by_the_local_queue_is_done_in_its_tracker() {
    use super::outside::github_hook;
    let gh = fake_github().await;
    let issue = gh.add_issue(
        "Add alpha",
        "Add alpha.\n\nAcceptance: the file exists.",
        &[],
        "alice",
    );
    let env = Env::new(rules(), GATE, "").await;
    env.write_config(&format!(
        "[projects.shop]\nrepo = \"{}\"\ntracker = \"github\"\n\n[projects.shop.roles]\ntrigger = [\"alice\"]\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    ));
    let svc = Service::start(&env, &["--poll-secs", "0"], &github_vars());
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
    super::harness::wait_state(&env, &key, "awaiting_approval");
    drop(svc);
    env.ok_with(&github_vars(), &["approve", &key]);
    assert!(gh.prs().is_empty(), "the local forge opens no GitHub PR");
    let out = env.ok_with(&github_vars(), &["merge", &key, "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcome(&report, &key)["state"], "merged", "{report}");
    assert_eq!(main_files(&env), [".codemill", "README.md", "alpha.txt"]);
    let now = gh.issue(issue).unwrap();
    assert_eq!(now["state"], "closed", "{now}");
    assert!(gh.labels(issue).contains(&"codemill:done".to_string()));
    let merged_notes = |gh: &FakeGitHub| {
        gh.comments(issue)
            .into_iter()
            .filter(|c| c["body"].as_str().unwrap_or("").contains("**Merged**"))
            .count()
    };
    assert_eq!(merged_notes(&gh), 1, "{:?}", gh.comments(issue));
    // Asked again: already merged, nothing said twice.
    env.ok_with(&github_vars(), &["merge", &key]);
    assert_eq!(merged_notes(&gh), 1);
}
