//! The lifecycle commands a team needs besides running tickets: comments on local tickets,
//! listing and revoking API tokens, removing a project, and merging a local pull request.

use super::harness::{Env, HELLO_GATE, engineer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_is_added_to_a_local_ticket() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let out = env.ok(&[
        "ticket",
        "comment",
        "P-1",
        "--body",
        "Use British spelling.",
        "--author",
        "alice",
    ]);
    assert_eq!(out.trim(), "Commented on P-1 as alice");
    let show = env.json(&["ticket", "show", "P-1", "--json"]);
    let last = show["comments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["author"], "alice");
    assert_eq!(last["body"], "Use British spelling.");
    let (code, _, err) = env.run(&["ticket", "comment", "P-9", "--body", "x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no ticket P-9"), "{err}");
    let (code, _, err) = env.run(&["ticket", "comment", "P-1", "--body", "  "]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the comment is empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_and_revoked_by_name_or_id() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let (code, plain, _) = env.run(&["token", "create", "ci"]);
    assert_eq!(code, Some(0));
    env.ok(&["token", "create", "bot"]);
    let list = env.ok(&["token", "list"]);
    assert!(list.contains("ci") && list.contains("bot"), "{list}");
    assert!(
        !list.contains(plain.trim()),
        "the token itself is never shown again"
    );
    let out = env.ok(&["token", "revoke", "ci"]);
    assert!(out.starts_with("Revoked API token 1 (ci)"), "{out}");
    let tokens = env.json(&["token", "list", "--json"]);
    assert!(!tokens[0]["revoked_at"].is_null(), "{tokens}");
    assert!(tokens[1]["revoked_at"].is_null(), "{tokens}");
    let out = env.ok(&["token", "revoke", "1"]);
    assert!(out.contains("was already revoked"), "{out}");
    let (code, _, err) = env.run(&["token", "revoke", "nobody"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no active token named \"nobody\""), "{err}");
    // `revoke` takes a name or an id: a name that is a number would mean two tokens.
    let (code, _, err) = env.run(&["token", "create", "2"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("a token's name cannot be a number"), "{err}");
    let (code, _, err) = env.run(&["token", "create", "two\nlines"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("1–64 characters on one line"), "{err}");
    assert_eq!(
        env.json(&["token", "list", "--json"])
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_removed_only_without_active_jobs_and_keeps_its_history() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["enqueue", "P-1"]);
    // Queued, with no worker yet: said so, not "running".
    let status = env.ok(&["status"]);
    assert!(status.contains("P-1        queued "), "{status}");
    assert_eq!(
        env.json(&["status", "--json"])["tickets"][0]["job"]["state"],
        "queued"
    );
    let show = env.ok(&["show", "P-1"]);
    assert!(show.contains("state queued  stage readiness"), "{show}");
    assert!(show.contains("waits for a worker"), "{show}");
    let (code, _, err) = env.run(&["project", "remove", "P"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("project P has active jobs: P-1 (queued)"),
        "{err}"
    );
    env.ok(&["cancel", "P-1"]);
    let out = env.ok(&["project", "remove", "P"]);
    assert!(out.starts_with("Removed project P"), "{out}");
    let config = std::fs::read_to_string(env.home.join("codemill.toml")).unwrap();
    assert!(!config.contains("[projects.P]"), "{config}");
    assert!(!env.home.join("clones").join("P.git").exists());
    let list = env.ok(&["project", "list"]);
    assert!(list.contains("No projects"), "{list}");
    // The ticket and its job history stay.
    let tickets = env.ok(&["ticket", "list"]);
    assert!(tickets.contains("P-1"), "{tickets}");
    let (code, _, err) = env.run(&["project", "remove", "P"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no project P"), "{err}");
    // Its tickets start no job: a worker could only fail it.
    for command in ["enqueue", "retry"] {
        let (code, _, err) = env.run(&[command, "P-1"]);
        assert_eq!(code, Some(1), "{command}: {err}");
        assert!(
            err.contains("ticket P-1 belongs to project P, which is not registered"),
            "{command}: {err}"
        );
    }
    assert_eq!(
        env.json(&["status", "--json"])["tickets"][0]["job"]["state"],
        "cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_says_which_models_have_no_price() {
    let policy = format!("{HELLO_GATE}\n[stages.research]\nmodel = \"unpriced-model\"\n");
    let env = Env::new(engineer(), &policy, "").await;
    let (code, _, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(0), "{err}");
    let show = env.ok(&["show", "P-1"]);
    assert!(
        show.contains(
            "note: no price for model `unpriced-model` in [prices] of codemill.toml: those tokens count as $0"
        ),
        "{show}"
    );
    assert!(!show.contains("model `test-model`"), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_when_asked() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let remote = env.remote.to_str().unwrap().to_string();
    for (format, json) in [("text", false), ("json", true)] {
        let out = env
            .cmd()
            .env("CODEMILL_LOG", "debug")
            .args([
                "--log-format",
                format,
                "project",
                "add",
                format,
                "--repo",
                &remote,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "no log lines");
        for line in lines {
            let parsed = serde_json::from_str::<serde_json::Value>(line);
            assert_eq!(parsed.is_ok(), json, "{format}: {line}");
            if let Ok(v) = parsed {
                assert!(
                    v["level"].is_string() && v["time"].is_string() && v["message"].is_string(),
                    "{v}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_pull_request_is_merged_and_its_ticket_is_done() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    // Nothing to merge before a proposal was approved.
    let (code, _, stderr) = env.run(&["merge", "P-1"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no job yet"), "{stderr}");
    env.ok(&["run", "P-1"]);
    let (code, _, stderr) = env.run(&["merge", "P-1"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no pull request yet"), "{stderr}");
    env.ok(&["approve", "P-1"]);
    // Shipped, PR open: a new job would force its branch over the approved work.
    let (code, _, err) = env.run(&["retry", "P-1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("P-1: shipped as PR #1 (codemill/P-1), which is still open"),
        "{err}"
    );
    // main moved on meanwhile (someone else merged): a merge commit joins both.
    let work = env.dir.path().join("other");
    super::harness::git(
        env.dir.path(),
        &["clone", "-q", env.remote.to_str().unwrap(), "other"],
    );
    std::fs::write(work.join("other.txt"), "other\n").unwrap();
    super::harness::git(&work, &["add", "-A"]);
    super::harness::git(
        &work,
        &[
            "-c",
            "user.name=o",
            "-c",
            "user.email=o@example.com",
            "commit",
            "-q",
            "-m",
            "other",
        ],
    );
    super::harness::git(&work, &["push", "-q", "origin", "main"]);

    let said = env.ok(&["merge", "P-1"]);
    assert!(said.starts_with("P-1: merged into main (now "), "{said}");
    let main = env.remote_git(&["rev-parse", "main"]);
    let proposal = env.json(&["show", "P-1", "--json"])["job"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.remote_git(&["rev-list", "--parents", "-n", "1", "main"])
            .split_whitespace()
            .count(),
        3,
        "a merge commit"
    );
    assert_eq!(
        env.remote_git(&["merge-base", "--is-ancestor", &proposal, &main]),
        ""
    );
    assert_eq!(env.remote_git(&["show", "main:hello.txt"]), "hello");
    assert_eq!(env.remote_git(&["show", "main:other.txt"]), "other");
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    assert_eq!(ticket["ticket"]["status"], "done");
    assert!(
        ticket["comments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["body"].as_str().unwrap().starts_with("**Merged**")),
        "{ticket}"
    );
    assert_eq!(
        env.json(&["show", "P-1", "--json"])["pr"]["state"],
        "merged"
    );
    // Again: nothing changes.
    assert_eq!(
        env.ok(&["merge", "P-1"]).trim(),
        "P-1: already merged into main"
    );
    assert_eq!(env.remote_git(&["rev-parse", "main"]), main);
    // The merge is recorded for learning, once (the second merge changed nothing).
    let weeks = env.json(&["learn", "P", "--metrics", "--json"]);
    assert_eq!(weeks[0]["merged"], 1, "{weeks}");
    assert_eq!(weeks[0]["merged_unchanged"], 1, "{weeks}");
    // Merged work is not redone, and the merged PR is not reopened.
    let (code, _, err) = env.run(&["retry", "P-1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("was merged, so it is done"), "{err}");
    assert_eq!(
        env.json(&["ticket", "show", "P-1", "--json"])["ticket"]["status"],
        "done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_pull_request_is_not_merged() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    env.ok(&["approve", "P-1"]);
    let work = env.dir.path().join("other");
    super::harness::git(
        env.dir.path(),
        &["clone", "-q", env.remote.to_str().unwrap(), "other"],
    );
    std::fs::write(work.join("hello.txt"), "bonjour\n").unwrap();
    super::harness::git(&work, &["add", "-A"]);
    super::harness::git(
        &work,
        &[
            "-c",
            "user.name=o",
            "-c",
            "user.email=o@example.com",
            "commit",
            "-q",
            "-m",
            "other",
        ],
    );
    super::harness::git(&work, &["push", "-q", "origin", "main"]);
    let before = env.remote_git(&["rev-parse", "main"]);
    let (code, _, stderr) = env.run(&["merge", "P-1"]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("codemill/P-1 conflicts with main in hello.txt"),
        "{stderr}"
    );
    assert_eq!(env.remote_git(&["rev-parse", "main"]), before);
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    assert_ne!(ticket["ticket"]["status"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_users_are_added_with_a_hashed_password_listed_and_removed() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let add = |name: &str, role: &str, password: &str| {
        env.cmd()
            .args(["user", "add", name, "--role", role, "--password-stdin"])
            .write_stdin(format!("{password}\n"))
            .output()
            .unwrap()
    };
    let out = add("ada", "admin", "a long enough secret");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Added user ada (admin)"
    );
    // Refusals name the problem.
    let refused = |out: std::process::Output, says: &str| {
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(stderr.contains(says), "{stderr}");
    };
    refused(
        add("bob", "approver", "short"),
        "shorter than 10 characters",
    );
    refused(add("bob", "approver", ""), "the password is empty");
    refused(
        add("ada", "viewer", "another long secret"),
        "already exists",
    );
    refused(
        add("bad name", "viewer", "another long secret"),
        "user name",
    );
    refused(add("bob", "owner", "another long secret"), "owner");
    // The password is never an argument.
    let (code, _, stderr) = env.run(&["user", "add", "bob", "--role", "viewer"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    assert!(add("bob", "approver", "bob's long secret").status.success());

    let list = env.json(&["user", "list", "--json"]);
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("ada", "admin"), ("bob", "approver")]);
    assert!(!list.to_string().contains("argon2"), "{list}");
    // Stored as an argon2id hash, never the password.
    let mut db = std::fs::read(env.home.join("codemill.db")).unwrap();
    db.extend(std::fs::read(env.home.join("codemill.db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&db);
    assert!(text.contains("$argon2id$"));
    assert!(!text.contains("a long enough secret"));
    let shown = env.ok(&["user", "list"]);
    assert!(
        shown.contains("ada") && shown.contains("approver"),
        "{shown}"
    );

    assert_eq!(
        env.ok(&["user", "remove", "bob"]).trim(),
        "Removed user bob"
    );
    let (code, _, stderr) = env.run(&["user", "remove", "bob"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no user named \"bob\""), "{stderr}");
}
