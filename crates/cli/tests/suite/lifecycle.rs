//! The lifecycle commands a team needs besides running tickets: comments on local tickets,
//! listing and revoking API tokens, and removing a project.

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_is_removed_only_without_active_jobs_and_keeps_its_history() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["enqueue", "P-1"]);
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
                assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
            }
        }
    }
}
