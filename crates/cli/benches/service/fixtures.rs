//! What every run starts from: a small bare repository whose only gate is `true`, and the
//! scripted model's instant answers with the codemill.toml that points an agent at it.

use std::path::{Path, PathBuf};

use codemill_testkit::{Match, Reply, Rule, Script, ToolCall};
use serde_json::json;

use crate::KEY_VAR;
/// Run git with hooks off; panics with its output on failure.
pub(crate) fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small bare "remote" (README, one source file, a policy whose only gate is `true`).
pub(crate) fn make_remote(root: &Path) -> PathBuf {
    let seed = root.join("seed");
    std::fs::create_dir_all(seed.join(".codemill")).unwrap();
    std::fs::create_dir_all(seed.join("src")).unwrap();
    std::fs::write(seed.join("README.md"), "# bench repository\n").unwrap();
    std::fs::write(seed.join("src/lib.txt"), "some source\n").unwrap();
    std::fs::write(
        seed.join(".codemill/pipeline.toml"),
        "[[gates]]\nname = \"noop\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(root, &["clone", "-q", "--bare", "seed", "remote.git"]);
    root.join("remote.git")
}

/// Every stage answers at once; implement writes one file (or, with `hang_implement`, never
/// answers its first call).
pub(crate) fn script(hang_implement: bool) -> Script {
    let when = |stage: &str, turn: usize| Match {
        first_user_contains: Some(format!("codemill stage: {stage}")),
        turn: Some(turn),
        ..Match::default()
    };
    let implement = if hang_implement {
        Rule::new("implement: hang", when("implement", 0), Reply::Hang)
    } else {
        Rule::new(
            "implement: write",
            when("implement", 0),
            Reply::Message {
                text: Some("Writing the file.".into()),
                tool_calls: vec![ToolCall::new(
                    "write_file",
                    json!({"path": "bench-change.txt", "content": "changed by the bench\n"}),
                )],
                usage: None,
            },
        )
    };
    Script::new(vec![
        Rule::new(
            "readiness",
            when("readiness", 0),
            Reply::text("```json\n{\"ready\": true, \"questions\": []}\n```"),
        ),
        Rule::new(
            "research",
            when("research", 0),
            Reply::text("Notes: README only."),
        ),
        Rule::new(
            "plan",
            when("plan", 0),
            Reply::text("Plan: write bench-change.txt."),
        ),
        implement,
        Rule::new(
            "implement: done",
            when("implement", 1),
            Reply::text("Wrote bench-change.txt."),
        ),
        Rule::new(
            "fix",
            Match {
                last_contains: Some("codemill stage: fix".into()),
                ..Match::default()
            },
            Reply::text("Tried to fix it."),
        ),
        Rule::new(
            "review",
            when("review", 0),
            Reply::text("```json\n{\"findings\": []}\n```"),
        ),
        Rule::new(
            "triage",
            when("triage", 0),
            Reply::text("```json\n{\"decisions\": []}\n```"),
        ),
    ])
}

pub(crate) fn scripted_agent(base_url: &str, idle_secs: u64, wall_secs: u64) -> String {
    format!(
        "[agent]\nbackend = \"builtin\"\nprovider = \"scripted\"\nmodel = \"bench-model\"\n\
         max_turns = 10\nwall_clock_secs = {wall_secs}\nidle_secs = {idle_secs}\n\n\
         [agents.builtin]\nmax_api_retries = 0\n\n\
         [providers.scripted]\napi = \"anthropic\"\nbase_url = \"{base_url}\"\napi_key_env = \"{KEY_VAR}\"\n\n\
         [prices.\"bench-model\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n"
    )
}

/// The embedded demo provider: for homes whose agents never run (role web).
pub(crate) const DEMO_AGENT: &str =
    "[agent]\nbackend = \"builtin\"\nprovider = \"demo\"\nmodel = \"bench\"\n";
