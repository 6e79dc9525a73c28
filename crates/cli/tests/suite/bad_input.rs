//! Bad input gives one clear message naming the problem; jobs that cannot pass end needs_attention.

use codemill_testkit::{Match, Reply, Rule};

use super::harness::{Env, HELLO_GATE, engineer};

fn needs_attention(env: &Env, expect: &str) {
    let (code, _, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("needs attention"), "{err}");
    assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "needs_attention");
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    assert_eq!(ticket["ticket"]["status"], "needs_attention");
    let last = ticket["comments"].as_array().unwrap().last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.contains("Needs attention") && last.contains(expect),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ticket_keys() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let (code, _, err) = env.run(&["run", "P-99"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "error: no ticket P-99 (see `codemill ticket list`)"
    );
    let (code, _, err) = env.run(&["show", "nonsense"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid ticket key \"nonsense\""), "{err}");
    let (code, _, err) = env.run(&["ticket", "add", "NOPE", "--title", "x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no project NOPE"), "{err}");
    assert!(env.server.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_that_is_not_git_is_refused() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let plain = env.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let (code, _, err) = env.run(&["project", "add", "Q", "--repo", plain.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot register Q"), "{err}");
    assert!(err.contains(plain.to_str().unwrap()), "{err}");
    let (code, _, err) = env.run(&["project", "add", "R", "--repo", "/no/such/dir"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/no/such/dir"), "{err}");
    // Nothing was registered.
    let list = env.ok(&["project", "list"]);
    assert!(!list.contains("Q ") && !list.contains("R "), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_file_key_and_expectation() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.write_config("[pipeline]\nmax_fix_round = 2\n");
    let (code, _, err) = env.run(&["status"]);
    assert_eq!(code, Some(1));
    let file = env.home.join("codemill.toml");
    assert!(err.contains(&format!("{}: line", file.display())), "{err}");
    assert!(err.contains("key `pipeline.max_fix_round`"), "{err}");
    assert!(
        err.contains("unknown field `max_fix_round`, expected one of"),
        "{err}"
    );

    env.write_config("[pipeline]\nmax_fix_rounds = \"three\"\n");
    let (code, _, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("key `pipeline.max_fix_rounds`"), "{err}");
    assert!(err.contains("expected a whole number, 0 or more"), "{err}");

    let out = assert_cmd::Command::cargo_bin("codemill")
        .unwrap()
        .args(["--home", "/nonexistent/home", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/home is not a codemill home"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_command_that_does_not_exist() {
    let policy =
        "[[gates]]\nname = \"lint\"\ncommand = [\"codemill-no-such-linter\", \"--check\"]\n";
    let env = Env::new(engineer(), policy, "[pipeline]\nmax_fix_rounds = 1\n").await;
    needs_attention(&env, "gates still failing after 1 fix round(s): lint");
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    let last = ticket["comments"].as_array().unwrap().last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.contains("command `codemill-no-such-linter` not found on PATH"),
        "{last}"
    );
    // Partial work is kept on the WIP ref.
    assert!(last.contains("refs/codemill/wip/P-1"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_agent_binary() {
    let env = Env::new(
        engineer(),
        HELLO_GATE,
        "[agents.claude-code]\ncommand = \"/nonexistent/bin/claude\"\n",
    )
    .await;
    let text = std::fs::read_to_string(env.home.join("codemill.toml")).unwrap();
    std::fs::write(
        env.home.join("codemill.toml"),
        text.replace("backend = \"builtin\"", "backend = \"claude-code\""),
    )
    .unwrap();
    needs_attention(&env, "/nonexistent/bin/claude");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_endpoint_answering_401() {
    let rules = vec![Rule::new(
        "deny",
        Match::default(),
        Reply::error(401, "invalid x-api-key"),
    )];
    let env = Env::new(rules, HELLO_GATE, "").await;
    needs_attention(&env, "model API error 401");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_endpoint_answering_500() {
    let rules = vec![Rule::new(
        "boom",
        Match::default(),
        Reply::error(500, "overloaded backend"),
    )];
    let env = Env::new(rules, HELLO_GATE, "").await;
    needs_attention(&env, "model API error 500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_that_never_answers_is_killed_at_the_idle_limit() {
    let rules = vec![Rule::new("hang", Match::default(), Reply::Hang)];
    let env = Env::new(rules, HELLO_GATE, "").await;
    let text = std::fs::read_to_string(env.home.join("codemill.toml")).unwrap();
    std::fs::write(
        env.home.join("codemill.toml"),
        text.replace("idle_secs = 10", "idle_secs = 2"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    needs_attention(&env, "without any output");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_api_key_variable_is_named_before_any_job() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let out = env
        .cmd()
        .env_remove(super::harness::KEY_VAR)
        .args(["run", "P-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable CODEMILL_TEST_MODEL_KEY is not set"),
        "{err}"
    );
    let show = env.json(&["show", "P-1", "--json"]);
    assert!(show["job"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_that_would_lose_a_decision_or_never_run_anything_are_refused() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    // A rejection is final and its reason is what people and `learn` read later.
    for reason in ["", "   \n"] {
        let (code, _, err) = env.run(&["reject", "P-1", "--reason", reason]);
        assert_eq!(code, Some(1), "{reason:?}: {err}");
        assert!(
            err.contains("--reason: the reason is empty: say why"),
            "{err}"
        );
    }
    let long = "x".repeat(4001);
    let (code, _, err) = env.run(&["reject", "P-1", "--reason", &long]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("the reason is 4001 bytes; at most 4000"),
        "{err}"
    );
    // Zero workers, limits or lease: accepted before, and then nothing ever ran.
    for args in [
        &["worker", "--once", "--concurrency", "0"][..],
        &["worker", "--once", "--global-limit", "0"],
        &["worker", "--once", "--project-limit", "0"],
        &["worker", "--once", "--lease-secs", "0"],
        &["worker", "--once", "--poll-ms", "0"],
        &["serve", "--workers", "0"],
        &["serve", "--lease-secs", "0"],
        &["inbox", "--limit", "0"],
    ] {
        let (code, _, err) = env.run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("invalid value '0' for '{}", args[args.len() - 2]))
                && err.contains("must be 1 or more"),
            "{args:?}: {err}"
        );
    }
    // A title that would break every table it is listed in, and an empty label.
    let (code, _, err) = env.run(&["ticket", "add", "P", "--title", "two\nlines"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--title must be one line"), "{err}");
    let (code, _, err) = env.run(&["ticket", "add", "P", "--title", "t", "--label", " "]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--label \"\": a label is one word"), "{err}");
    let (code, _, err) = env.run(&["ticket", "edit", "P-1", "--title", "a\rb"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--title must be one line"), "{err}");
    assert_eq!(
        env.json(&["ticket", "list", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Nothing was decided or queued.
    let show = env.json(&["show", "P-1", "--json"]);
    assert!(show["job"].is_null(), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_model_says_it_answers_only_the_demo() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    // A new home's provider: none set, so the built-in demo model.
    let file = env.home.join("codemill.toml");
    let config = std::fs::read_to_string(&file).unwrap();
    let projects = &config[config.find("\n[projects.").unwrap()..];
    std::fs::write(&file, projects).unwrap();
    let (code, _, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("only answers the sample tickets of `codemill demo`")
            && err.contains("[agent] provider"),
        "{err}"
    );
    assert!(!err.contains("no rule matched"), "{err}");
    assert!(
        env.server.requests().is_empty(),
        "the test's model was not asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_in_a_pipe_have_no_colour_codes_and_a_bad_filter_is_named() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let out = env
        .cmd()
        .env("CODEMILL_LOG", "debug")
        .args(["status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DEBUG"), "logged at debug: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "no terminal escapes in a pipe: {err:?}"
    );
    let out = env
        .cmd()
        .env("CODEMILL_LOG", "bogus[[[")
        .args(["status"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: CODEMILL_LOG=\"bogus[[[\" is not a log filter"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_copy_is_registered_with_what_merge_will_need() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    // The seed the test's bare remote was cloned from: a working copy with main checked out.
    let seed = env.dir.path().join("seed");
    let (code, out, err) = env.run(&["project", "add", "W", "--repo", seed.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Registered project W"), "{out}");
    assert!(
        err.contains("is a working copy with main checked out")
            && err.contains("receive.denyCurrentBranch updateInstead"),
        "{err}"
    );
    // A bare repository needs no such warning.
    let (code, _, err) = env.run(&[
        "project",
        "add",
        "B",
        "--repo",
        env.remote.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("working copy"), "{err}");
}
