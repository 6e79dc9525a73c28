//! Parsing codemill.toml and pipeline.toml: defaults, errors that name file, line and key,
//! checked overrides, the stage map's fallbacks, and gate detection.
#![allow(clippy::unwrap_used)]
use std::path::PathBuf;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, PathBuf::from("/h/codemill.toml"))
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.max_fix_rounds, 3);
    assert_eq!(c.agent.backend, Backend::Builtin);
    assert_eq!(c.provider().api, ProviderApi::Demo);
}

#[test]
fn unknown_key_names_file_key_and_expected() {
    let err = parse("[agent]\nbackend = \"builtin\"\nmodle = \"x\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/h/codemill.toml: line 3, key `agent.modle`"),
        "{msg}"
    );
    assert!(msg.contains("unknown field `modle`"), "{msg}");
    assert!(msg.contains("expected one of"), "{msg}");
}

#[test]
fn wrong_type_names_key_and_type() {
    let msg = parse("[pipeline]\nmax_fix_rounds = \"three\"\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("key `pipeline.max_fix_rounds`"), "{msg}");
    assert!(
        msg.contains("invalid type: string \"three\", expected a whole number, 0 or more"),
        "{msg}"
    );
}

#[test]
fn sandbox_and_budgets_have_defaults_and_checked_overrides() {
    let c = parse("").unwrap();
    assert_eq!(c.sandbox.mode, SandboxMode::Bwrap);
    assert!(c.budgets.is_empty());
    let c = parse(
        "[sandbox]\nmode = \"off\"\nexpose = [\"/opt/tools\"]\n[sandbox.env]\nRUSTUP_TOOLCHAIN = \"stable\"\n\
         [budgets]\njob_usd = 20.0\nday_usd = 100\n\
         [projects.WEB]\nrepo = \"/r\"\n[projects.WEB.budgets]\njob_usd = 5.0\n\
         [projects.WEB.sandbox]\nallow_hosts = [\"index.crates.io\"]\n",
    )
    .unwrap();
    assert_eq!(c.sandbox.mode, SandboxMode::Off);
    assert_eq!(c.budgets_for("WEB").job_usd, Some(5.0));
    assert_eq!(c.budgets_for("WEB").day_usd, Some(100.0));
    assert_eq!(c.budgets_for("OTHER").job_usd, Some(20.0));
    assert!(c.projects["WEB"].sandbox.allows("index.crates.io"));
    let msg = parse("[budgets]\njob_usd = -1.0\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("key `budgets.job_usd`"), "{msg}");
    let msg = parse("[sandbox]\nmode = \"none\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("sandbox.mode") && msg.contains("bwrap"),
        "{msg}"
    );
    let msg = parse("[sandbox]\nexpose = [\"tools\"]\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("absolute"), "{msg}");
    let msg =
        parse("[projects.WEB]\nrepo = \"/r\"\n[projects.WEB.sandbox]\nallow_hosts = [\"a b\"]\n")
            .unwrap_err()
            .to_string();
    assert!(msg.contains("projects.WEB.sandbox.allow_hosts"), "{msg}");
}

#[test]
fn a_tables_own_error_names_that_table() {
    // A missing field and a second table of one name point at the table's header line.
    let msg = parse("[budgets]\njob_usd = 1.0\n\n[providers.anthropic]\napi_key_env = \"K\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("line 4, table `[providers.anthropic]`: missing field `api`"),
        "{msg}"
    );
    let msg = parse("[providers.x]\n").unwrap_err().to_string();
    assert!(
        msg.contains("line 1, table `[providers.x]`: missing field `api`"),
        "{msg}"
    );
    let msg = parse("[agent]\nmax_turns = 5\n[budgets]\n[agent]\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 4, table `[agent]`"), "{msg}");
}

#[test]
fn unknown_top_level_table() {
    let msg = parse("[agentz]\nx = 1\n").unwrap_err().to_string();
    assert!(
        msg.contains("table `[agentz]`: unknown table `agentz`"),
        "{msg}"
    );
}

#[test]
fn provider_must_exist_and_key_is_an_env_name() {
    let msg = parse("[agent]\nprovider = \"nope\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("key `agent.provider`") && msg.contains("nope"),
        "{msg}"
    );
    let msg = parse("[providers.a]\napi = \"anthropic\"\napi_key_env = \"sk-ant-123\"\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("providers.a.api_key_env"), "{msg}");
    let c = parse("[providers.a]\napi = \"openai-chat\"\nbase_url = \"http://127.0.0.1:1/\"\napi_key_env = \"K\"\n[agent]\nprovider = \"a\"\n").unwrap();
    assert_eq!(c.provider().base_url, "http://127.0.0.1:1");
}

#[test]
fn policy_gates_are_argument_lists() {
    let p = RepoPolicy::parse(
        "[[gates]]\nname = \"t\"\ncommand = [\"cargo\", \"test\"]\ntimeout_secs = 5\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.gates[0].command, vec!["cargo", "test"]);
    let msg = RepoPolicy::parse(
        "[[gates]]\nname = \"t\"\ncommand = \"cargo test\"\n",
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("gates.command") || msg.contains("command"),
        "{msg}"
    );
    assert!(msg.contains("expected a sequence"), "{msg}");
    assert!(RepoPolicy::parse("[[gates]]\nname = \"t\"\ncommand = []\n", "p.toml").is_err());
    assert!(
        RepoPolicy::parse(
            "[[gates]]\nname = \"t\"\ncommand = [\"x\"]\nworkdir = \"../up\"\n",
            "p.toml"
        )
        .is_err()
    );
}

#[test]
fn stage_map_resolves_with_fallbacks() {
    use crate::pipeline::AgentStage;
    let c = parse(
        "[agent]\nprovider = \"a\"\nmodel = \"m0\"\n[providers.a]\napi = \"anthropic\"\n[providers.o]\napi = \"openai-responses\"\n",
    )
    .unwrap();
    let policy = RepoPolicy::parse(
        "[stages.default]\nbackend = \"claude-code\"\nmodel = \"big\"\n[stages.implement]\nbackend = \"codex\"\nprovider = \"o\"\nmodel = \"gpt-5.5\"\n",
        "p.toml",
    )
    .unwrap();
    let plan = c
        .agent_for(Some(&policy), "p.toml", AgentStage::Plan)
        .unwrap();
    assert_eq!(
        (
            plan.backend,
            plan.provider.name.as_str(),
            plan.model.as_str()
        ),
        (Backend::ClaudeCode, "a", "big")
    );
    let fix = c
        .agent_for(Some(&policy), "p.toml", AgentStage::Fix)
        .unwrap();
    assert_eq!(
        (fix.backend, fix.provider.name.as_str(), fix.model.as_str()),
        (Backend::Codex, "o", "gpt-5.5")
    );
    let none = c.agent_for(None, "p.toml", AgentStage::Review).unwrap();
    assert_eq!(
        (none.backend, none.model.as_str()),
        (Backend::Builtin, "m0")
    );
}

#[test]
fn stage_map_errors_name_the_key() {
    use crate::pipeline::AgentStage;
    let c = parse("[providers.a]\napi = \"anthropic\"\n").unwrap();
    let p = RepoPolicy::parse("[stages.review]\nprovider = \"nope\"\n", "p.toml").unwrap();
    let msg = c
        .agent_for(Some(&p), "p.toml", AgentStage::Review)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("p.toml: key `stages.review.provider`"),
        "{msg}"
    );
    let p = RepoPolicy::parse(
        "[stages.review]\nbackend = \"codex\"\nprovider = \"a\"\n",
        "p.toml",
    )
    .unwrap();
    let msg = c
        .agent_for(Some(&p), "p.toml", AgentStage::Review)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("backend codex cannot use provider \"a\""),
        "{msg}"
    );
    let msg = RepoPolicy::parse("[stages.fix]\nmodel = \"x\"\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("table `[stages.fix]`: unknown table `fix`"),
        "{msg}"
    );
    let msg = parse("[agent]\nbackend = \"codex\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("backend codex cannot use provider \"demo\""),
        "{msg}"
    );
}

#[test]
fn detection_by_marker_files() {
    assert_eq!(
        detect_gates(&["Cargo.toml"])[1].command,
        vec!["cargo", "test", "--quiet"]
    );
    assert_eq!(
        detect_gates(&["package.json", "pnpm-lock.yaml"])[0].command[0],
        "pnpm"
    );
    assert_eq!(detect_gates(&["go.mod"]).len(), 2);
    assert_eq!(detect_gates(&["pyproject.toml"])[0].command[2], "pytest");
    assert_eq!(detect_gates(&["Makefile"])[0].command, vec!["make", "test"]);
    assert!(detect_gates(&["README.md"]).is_empty());
}

/// Each refused file and what the person reading the error is told: the real line, the
/// table or key, and plain words.
#[test]
fn config_errors_name_the_real_place_in_plain_words() {
    let cases = [
        "[agents.cursor]\nmodel = \"x\"\n",
        "[pipeline]\nmax_fix_rounds = 2\n\n[agents.codex]\ncommand = \"codex\"\n\n[agents.cursor]\nmodel = \"x\"\n",
        "[pipeline]\nmax_fix_rounds = 2\n\n[telemetry]\nendpoint = \"x\"\n",
        "[projects.web]\nrepo = \"/tmp/x\"\nbogus = 1\n[projects.web.roles]\ntrigger = [\"*\"]\n",
        "[pipeline]\nmax_fix_rounds = -1\n",
        "[pipeline]\nmax_fix_rounds = 0\n",
        "[pipeline]\ngate_timeout_secs = 0\n",
        "[agent]\nmax_turns = 40\nmodel = \"\"\n",
        "[prices.x]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n\n[prices.y]\ninput_per_mtok = -3.0\noutput_per_mtok = 1.0\n",
        "[prices.x]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\ncache_read_per_mtok = \"cheap\"\n",
    ];
    let report: Vec<String> = cases
        .iter()
        .map(|text| {
            let err = parse(text).map(|_| ()).unwrap_err();
            format!("{text}=> {err}\n")
        })
        .collect();
    insta::assert_snapshot!(report.join("\n"));
}

#[test]
fn the_sub_task_limit_defaults_to_eight_and_is_checked() {
    let c = parse("").unwrap();
    assert_eq!(c.max_subtasks, 8);
    let c = parse("[pipeline]\nmax_subtasks = 12\n").unwrap();
    assert_eq!(c.max_subtasks, 12);
    let msg = parse("[pipeline]\nmax_subtasks = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("pipeline.max_subtasks") && msg.contains("expected 1 to 32"),
        "{msg}"
    );
    let policy = RepoPolicy::parse("max_subtasks = 3\n", "pipeline.toml").unwrap();
    assert_eq!(policy.max_subtasks(8), 3);
    assert_eq!(RepoPolicy::default().max_subtasks(8), 8);
    let msg = RepoPolicy::parse("max_subtasks = 99\n", "pipeline.toml")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("max_subtasks") && msg.contains("found 99"),
        "{msg}"
    );
}

#[test]
fn a_projects_merge_queue_batches_one_by_default_and_is_checked() {
    let project = "[projects.P]\nrepo = \"/tmp/r.git\"\n";
    let c = parse(project).unwrap();
    assert_eq!(c.projects["P"].merge_queue, MergeQueueSettings::default());
    assert_eq!(c.projects["P"].merge_queue.batch, 1);
    let c = parse(&format!(
        "{project}[projects.P.merge_queue]\nbatch = 4\nmethod = \"squash\"\n"
    ))
    .unwrap();
    assert_eq!(c.projects["P"].merge_queue.batch, 4);
    assert_eq!(c.projects["P"].merge_queue.method, MergeMethod::Squash);
    let msg = parse(&format!("{project}[projects.P.merge_queue]\nbatch = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("projects.P.merge_queue.batch") && msg.contains("expected 1 to 16"),
        "{msg}"
    );
    let msg = parse(&format!("{project}[projects.P.merge_queue]\nbach = 2\n"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bach"), "{msg}");
}

#[test]
fn a_projects_assistant_budget_defaults_to_one_dollar_and_is_checked() {
    let project = "[projects.P]\nrepo = \"/tmp/r.git\"\n";
    assert_eq!(
        parse(project).unwrap().projects["P"].assistant.budget_usd,
        1.0
    );
    let c = parse(&format!(
        "{project}[projects.P.assistant]\nbudget_usd = 0.25\n"
    ))
    .unwrap();
    assert_eq!(c.projects["P"].assistant.budget_usd, 0.25);
    let msg = parse(&format!(
        "{project}[projects.P.assistant]\nbudget_usd = -1.0\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("projects.P.assistant.budget_usd") && msg.contains("positive amount"),
        "{msg}"
    );
}

/// A GitLab project: tracker and forge from one `[projects.P.gitlab]` table with its defaults;
/// a project that is neither a path nor an id, or a token written in the file, is refused by key.
#[test]
fn a_gitlab_project_is_read_with_its_defaults_and_checked() {
    let text = "[projects.web]\nrepo = \"https://gitlab.example.com/acme/web.git\"\ntracker = \"gitlab\"\nforge = \"gitlab\"\n\n[projects.web.gitlab]\nbase_url = \"https://gitlab.example.com\"\nproject = \"acme/web\"\ntoken_env = \"GITLAB_TOKEN\"\nbot_username = \"codemill-bot\"\n\n[projects.web.gitlab.webhook]\nsecret_env = \"GITLAB_WEBHOOK_SECRET\"\n";
    let config = parse(text).unwrap();
    let web = &config.projects["web"];
    let TrackerSettings::Gitlab(g) = &web.tracker else {
        panic!("{:?}", web.tracker)
    };
    assert_eq!(g.project, "acme/web");
    assert_eq!(g.trigger_label, "codemill");
    assert!(g.draft);
    assert_eq!(
        g.webhook.as_ref().map(|w| w.secret_env.as_str()),
        Some("GITLAB_WEBHOOK_SECRET")
    );
    assert_eq!(web.forge.name(), "gitlab");
    assert_eq!(
        web.forge.pull_head_ref(12).as_deref(),
        Some("refs/merge-requests/12/head")
    );
    let defaulted =
        parse(&text.replace("base_url = \"https://gitlab.example.com\"\n", "")).unwrap();
    let TrackerSettings::Gitlab(g) = &defaulted.projects["web"].tracker else {
        panic!()
    };
    assert_eq!(g.base_url, "https://gitlab.com");

    let err = parse(&text.replace("project = \"acme/web\"", "project = \"web\"")).unwrap_err();
    assert!(err.to_string().contains("gitlab.project"), "{err}");
    let err = parse(&text.replace(
        "token_env = \"GITLAB_TOKEN\"",
        "token_env = \"glpat-abc-123\"",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("gitlab.token_env"), "{err}");
    let without = &text[..text.find("[projects.web.gitlab]").unwrap()];
    let err = parse(without).unwrap_err();
    assert!(err.to_string().contains("[projects.web.gitlab]"), "{err}");
}
