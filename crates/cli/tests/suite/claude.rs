//! The REAL Claude Code CLI through a whole ticket: edits through its own tools, a failing gate,
//! a fix round that resumes the same session, approval, and the branch in the remote.
//!
//! The CLI comes from `./scripts/install-agent-clis.sh` (`.tools/npm`) or `CODEMILL_CLAUDE_BIN`;
//! when it is missing this test fails (never skips) and says how to install it.

use std::path::PathBuf;

use codemill_testkit::{Match, Reply, Rule, ToolCall};
use serde_json::json;

use super::harness::{Env, at_turn};

pub fn claude_bin() -> PathBuf {
    let path = std::env::var_os("CODEMILL_CLAUDE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/npm/node_modules/.bin/claude")
        });
    assert!(
        path.is_file(),
        "Claude Code CLI not found at {} — run ./scripts/test (or scripts/install-agent-clis.sh) to install the pinned version, or set CODEMILL_CLAUDE_BIN",
        path.display()
    );
    path
}

fn call(name: &str, input: serde_json::Value) -> Reply {
    Reply::Message {
        text: Some(format!("Using {name}.")),
        tool_calls: vec![ToolCall::new(name, input)],
        usage: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_a_ticket_with_a_resumed_fix_round() {
    let claude = claude_bin();
    let rules = vec![
        super::harness::ready(),
        Rule::new(
            "research",
            at_turn("research", 0),
            Reply::text("Notes: README.md only."),
        ),
        Rule::new(
            "plan",
            at_turn("plan", 0),
            Reply::text("Plan: write hello.txt containing hello."),
        ),
        // First attempt has a typo, so the gate fails.
        Rule::new(
            "implement: write",
            at_turn("implement", 0),
            call(
                "Write",
                json!({"file_path": "hello.txt", "content": "helo\n"}),
            ),
        ),
        Rule::new(
            "implement: done",
            at_turn("implement", 1),
            Reply::text("Wrote hello.txt."),
        ),
        Rule::new(
            "fix: read",
            Match {
                last_contains: Some("Failing gates".into()),
                ..at_turn("implement", 2)
            },
            call("Read", json!({"file_path": "hello.txt"})),
        ),
        Rule::new(
            "fix: edit",
            at_turn("implement", 3),
            call(
                "Edit",
                json!({"file_path": "hello.txt", "old_string": "helo", "new_string": "hello"}),
            ),
        ),
        Rule::new(
            "fix: done",
            at_turn("implement", 4),
            Reply::text("Fixed the typo."),
        ),
        Rule::new(
            "review",
            at_turn("review", 0),
            Reply::text("```json\n{\"findings\": []}\n```"),
        ),
    ];
    let gate =
        "[[gates]]\nname = \"greeting\"\ncommand = [\"grep\", \"-qx\", \"hello\", \"hello.txt\"]\n";
    let extra = format!(
        "[agents.claude-code]\ncommand = \"{}\"\nmax_api_retries = 0\napi_timeout_ms = 30000\n",
        claude.display()
    );
    let env = Env::new(rules, gate, &extra).await;
    let file = env.home.join("codemill.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("backend = \"builtin\"", "backend = \"claude-code\""),
    )
    .unwrap();

    let out = env.ok(&["run", "P-1"]);
    assert!(out.contains("proposal ready"), "{out}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["rounds"], 1);
    let gates: Vec<_> = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "gates_finished")
        .map(|e| e["event"]["gates"][0]["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(gates, [false, true]);

    // The fix round resumed the implement session: same session id, and the model saw the
    // whole earlier conversation (the implement brief and the first Write) in the fix request.
    let sessions: Vec<(String, String)> = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "agent_finished")
        .map(|e| {
            (
                e["event"]["stage"].as_str().unwrap().to_string(),
                e["event"]["run"]["session_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let implement = &sessions.iter().find(|(s, _)| s == "implement").unwrap().1;
    let fix = &sessions.iter().find(|(s, _)| s == "fix").unwrap().1;
    assert!(!implement.is_empty());
    assert_eq!(
        implement, fix,
        "fix round did not resume the implement session"
    );
    let fix_request = &env.server.requests_for_rule("fix: read")[0];
    let text = fix_request.text();
    assert!(
        text.contains("codemill stage: implement"),
        "history missing from the fix request"
    );
    assert!(
        text.contains("helo"),
        "the first Write is missing from the fix request"
    );
    assert!(
        text.contains("grep -qx hello hello.txt"),
        "gate output missing from the fix brief"
    );
    // Cost reported by Claude Code itself was recorded.
    assert!(show["job"]["cost_usd"].as_f64().unwrap() > 0.0);

    env.ok(&["approve", "P-1"]);
    assert_eq!(env.remote_git(&["show", "codemill/P-1:hello.txt"]), "hello");
    assert_eq!(
        env.remote_git(&["rev-list", "--count", "main..codemill/P-1"]),
        "1"
    );
    assert_eq!(env.json(&["show", "P-1", "--json"])["job"]["state"], "done");
}
