//! One ticket through the whole pipeline via the CLI: run, proposal, approval, push, PR record.

use super::harness::{Env, HELLO_GATE, engineer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_runs_to_proposal_then_ships_on_approval() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;

    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("P-1: proposal ready"), "{out}");
    assert!(
        env.remote_branch("codemill/P-1").is_none(),
        "pushed before approval"
    );

    let status = env.json(&["status", "--json"]);
    let job = &status["tickets"][0]["job"];
    assert_eq!(job["state"], "awaiting_approval");
    assert!(job["tokens"].as_u64().unwrap() > 0);
    assert!(job["cost_usd"].as_f64().unwrap() > 0.0);

    let out = env.ok(&["approve", "P-1"]);
    assert!(out.contains("P-1: shipped"), "{out}");
    let show = env.json(&["show", "P-1", "--json"]);
    let commit = show["job"]["commit"].as_str().unwrap().to_string();
    assert_eq!(
        env.remote_branch("codemill/P-1").as_deref(),
        Some(commit.as_str())
    );
    assert_eq!(env.remote_git(&["show", "codemill/P-1:hello.txt"]), "hello");
    // Exactly one commit on top of main, and codemill's run directory never committed.
    assert_eq!(
        env.remote_git(&["rev-list", "--count", "main..codemill/P-1"]),
        "1"
    );
    assert!(
        !env.remote_git(&["ls-tree", "-r", "--name-only", "codemill/P-1"])
            .contains(".codemill-run")
    );
    assert_eq!(show["pr"]["commit"], commit.as_str());
    assert_eq!(show["pr"]["base"], "main");
    assert_eq!(show["job"]["state"], "done");
    // The worktree is gone (default retention), the branch stays.
    assert!(!env.home.join("worktrees/P/P-1").exists());

    insta::assert_snapshot!(env.event_kinds("P-1").join("\n"));

    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    assert_eq!(ticket["ticket"]["status"], "in_review");
    let comments: Vec<&str> = ticket["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(comments.len(), 4, "{comments:#?}");
    assert!(comments[1].starts_with("**Plan**") && comments[1].contains("Plan: add hello.txt."));
    assert!(comments[2].contains("Proposal ready for approval"));
    assert!(comments[3].contains("**Shipped**"));
    let changes: Vec<String> = ticket["status_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}->{}",
                c["from"].as_str().unwrap(),
                c["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            "todo->in_progress",
            "in_progress->awaiting_approval",
            "awaiting_approval->in_review"
        ]
    );

    // The model saw the API key from the environment variable, and the ticket as quoted data.
    let reqs = env.server.requests();
    assert!(
        reqs.iter()
            .all(|r| r.header("x-api-key") == Some("test-key-123"))
    );
    assert!(reqs[0].text().contains("<ticket key=\"P-1\">"));
    // A second approval is refused and changes nothing.
    let (code, _, err) = env.run(&["approve", "P-1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not awaiting approval"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_keeps_the_work_on_a_wip_ref_and_pushes_nothing() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    let out = env.ok(&["reject", "P-1", "--reason", "not needed"]);
    assert!(out.contains("rejected"), "{out}");
    assert!(env.remote_branch("codemill/P-1").is_none());
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "rejected");
    let wip = show["job"]["wip"][0].as_str().unwrap();
    assert_eq!(wip, "refs/codemill/wip/P-1");
    let clone = env.home.join("clones/P.git");
    let files = super::harness::git(&clone, &["ls-tree", "-r", "--name-only", wip]);
    assert!(files.contains("hello.txt"), "{files}");
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    assert_eq!(ticket["ticket"]["status"], "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_gate_is_fixed_in_the_resumed_session() {
    use codemill_testkit::{Match, Reply, Rule};
    // The first version writes the wrong file; the gate output goes to the fix round.
    let rules = vec![
        super::harness::ready(),
        Rule::new(
            "research",
            super::harness::at_turn("research", 0),
            Reply::text("notes"),
        ),
        Rule::new(
            "plan",
            super::harness::at_turn("plan", 0),
            Reply::text("plan"),
        ),
        Rule::new(
            "implement: wrong",
            super::harness::at_turn("implement", 0),
            super::harness::write_call("helo.txt", "hello\n"),
        ),
        Rule::new(
            "implement: done",
            super::harness::at_turn("implement", 1),
            Reply::text("done"),
        ),
        Rule::new(
            "fix: right",
            Match {
                last_contains: Some("Failing gates".into()),
                ..super::harness::at_turn("implement", 2)
            },
            super::harness::write_call("hello.txt", "hello\n"),
        ),
        Rule::new(
            "fix: done",
            super::harness::at_turn("implement", 3),
            Reply::text("fixed"),
        ),
        Rule::new(
            "review",
            super::harness::at_turn("review", 0),
            Reply::text("{\"findings\": []}"),
        ),
    ];
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "awaiting_approval");
    assert_eq!(show["job"]["rounds"], 1);
    // The gate that caused the fix round is shown as fixed: in show, its JSON and the ticket.
    assert_eq!(
        show["job"]["fixed"][0],
        serde_json::json!({"round": 0, "gate": {"name": "hello", "command": "test -f hello.txt", "outcome": "exit 1"}}),
        "{}",
        show["job"]
    );
    assert_eq!(show["job"]["gate_rounds"][0]["gates"][0]["passed"], false);
    assert_eq!(show["job"]["gate_rounds"][1]["gates"][0]["passed"], true);
    let text = env.ok(&["show", "P-1"]);
    assert!(
        text.contains(
            "Gates fixed by the fix rounds:\n  hello (test -f hello.txt) failed in round 0: exit 1"
        ),
        "{text}"
    );
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    let proposal = ticket["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .find(|b| b.contains("Gates fixed by the fix rounds"))
        .unwrap_or_else(|| panic!("no comment names the fixed gate: {ticket}"));
    assert!(
        proposal.contains("`hello` (test -f hello.txt) failed in round 0: exit 1"),
        "{proposal}"
    );
    let fix = &env.server.requests_for_rule("fix: right")[0];
    // Same session: the fix request carries the implement conversation and the gate's command.
    assert!(fix.text().contains("codemill stage: implement"));
    assert!(fix.text().contains("test -f hello.txt"), "{}", fix.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_help_output() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&[
        "ticket",
        "add",
        "P",
        "--title",
        "Second ticket",
        "--label",
        "codemill",
        "--label",
        "backend",
    ]);
    env.ok(&["run", "P-1"]);
    let status = env.ok(&["status"]);
    insta::with_settings!({filters => vec![
        (r"\d+ +\$\d+\.\d{4}", "[TOKENS] [COST]"),
        (r"today \(\d{4}-\d{2}-\d{2} UTC\): \$\d+\.\d{4}", "today ([DAY] UTC): [COST]"),
    ]}, {
        insta::assert_snapshot!("status", status);
    });
    // A job whose journal no longer replays is listed as such, with why; the rest as before.
    let broken = super::harness::break_a_job(&env, "P-2").await;
    let after = env.ok(&["status"]);
    assert_eq!(
        after.lines().nth(1),
        status.lines().nth(1),
        "P-1 is unchanged"
    );
    let row = after.lines().find(|l| l.starts_with("P-2")).unwrap();
    assert!(row.contains("unreadable"), "{after}");
    let listed = env.json(&["status", "--json"]);
    let job = &listed["tickets"][1]["job"];
    assert_eq!(job["id"], broken.to_string(), "{listed}");
    assert_eq!(job["state"], "unreadable", "{listed}");
    assert!(
        job["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{listed}"
    );
    assert_eq!(listed["tickets"][0]["job"]["state"], "awaiting_approval");
    insta::assert_snapshot!("help", env.ok(&["--help"]));
    let list = env.json(&["ticket", "list", "--json"]);
    assert_eq!(
        list[1]["labels"],
        serde_json::json!(["codemill", "backend"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_comes_from_the_base_commit_not_the_agent() {
    use codemill_testkit::{Reply, Rule};
    // The implementer rewrites the gate to `true` instead of doing the work.
    let rules = vec![
        super::harness::ready(),
        Rule::new(
            "research",
            super::harness::at_turn("research", 0),
            Reply::text("notes"),
        ),
        Rule::new(
            "plan",
            super::harness::at_turn("plan", 0),
            Reply::text("plan"),
        ),
        Rule::new(
            "implement: cheat",
            super::harness::at_turn("implement", 0),
            super::harness::write_call(
                ".codemill/pipeline.toml",
                "[[gates]]\nname = \"hello\"\ncommand = [\"true\"]\n",
            ),
        ),
        Rule::new(
            "implement: done",
            super::harness::at_turn("implement", 1),
            Reply::text("done"),
        ),
    ];
    let env = Env::new(rules, HELLO_GATE, "[pipeline]\nmax_fix_rounds = 1\n").await;
    let (code, _, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "{err}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["gates"][0]["command"], "test -f hello.txt");
    assert_eq!(show["job"]["gates"][0]["passed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implement_step_that_changes_nothing_stops_before_gates_and_review() {
    use codemill_testkit::{Reply, Rule};
    let rules = vec![
        super::harness::ready(),
        Rule::new(
            "research",
            super::harness::at_turn("research", 0),
            Reply::text("notes"),
        ),
        Rule::new(
            "plan",
            super::harness::at_turn("plan", 0),
            Reply::text("plan"),
        ),
        Rule::new(
            "implement: nothing",
            super::harness::at_turn("implement", 0),
            Reply::text("Nothing needed changing."),
        ),
        Rule::new(
            "review",
            super::harness::at_turn("review", 0),
            Reply::text("{\"findings\": []}"),
        ),
    ];
    let env = Env::new(rules, HELLO_GATE, "").await;
    let (code, _, _) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "a job that needs attention exits 3");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "needs_attention");
    assert_eq!(
        show["job"]["reason"],
        "the implement step changed no file in the repository (the agent said: Nothing needed changing.)"
    );
    let kinds = env.event_kinds("P-1");
    assert!(
        !kinds.iter().any(|k| k.starts_with("start gates")),
        "{kinds:?}"
    );
    assert_eq!(
        env.server.hits("review"),
        0,
        "no review session was paid for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_times_out_stops_the_job_without_a_fix_round() {
    let policy = "[[gates]]\nname = \"slow\"\ncommand = [\"sleep\", \"30\"]\ntimeout_secs = 1\n";
    let env = Env::new(engineer(), policy, "").await;
    let (code, _, stderr) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("gates: slow TIMED OUT"), "{stderr}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "needs_attention");
    let reason = show["job"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "gate `slow` timed out after 1 s — a timeout does not count as a code failure"
        ),
        "{reason}"
    );
    assert_eq!(show["job"]["rounds"], 0);
    assert_eq!(env.server.hits("fix"), 0, "no paid fix round");
    let ticket = env.json(&["ticket", "show", "P-1", "--json"]);
    let note = ticket["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .find(|b| b.starts_with("**Needs attention**"))
        .unwrap()
        .to_string();
    assert!(note.contains("`sleep 30` (timed out after 1 s)"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_repository_policy_stops_the_job_before_any_model_call() {
    let policy = "[[gates]]\nname = \"hello\"\ncomand = [\"true\"]\n";
    let env = Env::new(engineer(), policy, "").await;
    let (code, _, stderr) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(3), "{stderr}");
    let show = env.json(&["show", "P-1", "--json"]);
    let reason = show["job"]["reason"].as_str().unwrap();
    assert!(reason.contains(".codemill/pipeline.toml"), "{reason}");
    assert!(reason.contains("comand"), "{reason}");
    assert!(reason.contains("on main at "), "{reason}");
    assert!(reason.contains("no model was called"), "{reason}");
    assert!(env.server.requests().is_empty(), "a model was called");
}
