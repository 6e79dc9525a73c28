//! A mixed pipeline: the repository's stage map puts research, plan and review on Claude Code
//! with one model, and implement on the built-in agent with another, in one job.

use codemill_testkit::{Match, Reply, Rule};

use super::harness::{Env, HELLO_GATE, at_turn, write_call};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_run_on_the_agents_and_models_the_repository_maps() {
    let claude = super::claude::claude_bin();
    let policy = format!(
        "{HELLO_GATE}\n[stages.default]\nbackend = \"claude-code\"\nmodel = \"planner-model\"\n\n[stages.implement]\nbackend = \"builtin\"\nmodel = \"cheap-model\"\n"
    );
    let rules = vec![
        super::harness::ready(),
        Rule::new("research", at_turn("research", 0), Reply::text("Notes.")),
        Rule::new(
            "plan",
            at_turn("plan", 0),
            Reply::text("Plan: add hello.txt."),
        ),
        Rule::new(
            "implement: write",
            Match {
                model: Some("cheap-model".into()),
                ..at_turn("implement", 0)
            },
            write_call("hello.txt", "hello\n"),
        ),
        Rule::new(
            "implement: done",
            at_turn("implement", 1),
            Reply::text("Done."),
        ),
        Rule::new(
            "review",
            at_turn("review", 0),
            Reply::text("```json\n{\"findings\": []}\n```"),
        ),
    ];
    let extra = format!(
        "[agents.claude-code]\ncommand = \"{}\"\nmax_api_retries = 0\n\n[prices.\"cheap-model\"]\ninput_per_mtok = 0.1\noutput_per_mtok = 0.4\n\n[prices.\"planner-model\"]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n",
        claude.display()
    );
    let env = Env::new(rules, &policy, &extra).await;
    env.ok(&["run", "P-1"]);
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "awaiting_approval", "{show:#}");
    let costs: Vec<(String, String, String)> = show["job"]["costs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["stage"].as_str().unwrap().to_string(),
                c["agent"].as_str().unwrap().to_string(),
                c["model"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (stage, agent, model) in &costs {
        let expect = match stage.as_str() {
            // Readiness runs before the repository is fetched: the codemill.toml default.
            "readiness" => ("builtin", "test-model"),
            "implement" => ("builtin", "cheap-model"),
            "triage" => ("policy", "-"),
            _ => ("claude-code", "planner-model"),
        };
        assert_eq!((agent.as_str(), model.as_str()), expect, "{stage}");
    }
    let stages: Vec<&str> = costs.iter().map(|(s, _, _)| s.as_str()).collect();
    for stage in [
        "readiness",
        "research",
        "plan",
        "implement",
        "review",
        "triage",
    ] {
        assert!(stages.contains(&stage), "{stage} missing from {stages:?}");
    }
    // What the model server saw agrees: Claude Code's requests name the planner model and carry
    // its own tools; the built-in agent's name the cheap model and carry codemill's tools.
    for r in env
        .server
        .requests()
        .iter()
        .filter(|r| r.matched_rule.is_some())
    {
        let model = r.body["model"].as_str().unwrap_or("");
        let tools = r.body["tools"].to_string();
        let first = r.view.first_user_text();
        if first.contains("codemill stage: readiness") {
            assert_eq!(model, "test-model");
        } else if first.contains("codemill stage: implement") {
            assert_eq!(model, "cheap-model");
            assert!(tools.contains("write_file"), "{tools}");
        } else {
            assert_eq!(model, "planner-model");
            assert!(tools.contains("\"Read\""), "{tools}");
            assert!(
                !tools.contains("\"Write\""),
                "read-only stage offered Write: {tools}"
            );
        }
    }
    // Every stage is priced from what the gateway metered, at its own model's price, whatever
    // the agent itself reported.
    for c in show["job"]["costs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["agent"] != "policy")
    {
        assert!(c["cost_usd"].as_f64().unwrap() > 0.0, "{c}");
    }
    env.ok(&["approve", "P-1"]);
    assert_eq!(env.remote_git(&["show", "codemill/P-1:hello.txt"]), "hello");
}
