//! Each agent CLI through a whole ticket: the repository's stage map puts implement (and its fix
//! round) and review on the CLI; the CLI's own tools write, edit and run a command; the gate
//! fails once; the fix round resumes the implement session; the read-only reviewer's write
//! attempt changes nothing; the branch lands after approval. The other stages use the built-in
//! agent. A missing CLI fails the test (never skips) and names ./scripts/test.

use std::path::PathBuf;

use codemill_testkit::{Match, Reply, Rule, ToolCall};
use serde_json::{Value, json};

use super::harness::{Env, at_turn, ready};

/// How to drive one CLI through the scripted model server.
struct Kit {
    backend: &'static str,
    api: &'static str,
    model: &'static str,
    bin: &'static str,
    write: fn(&str, &str) -> ToolCall,
    edit: fn(&str, &str, &str) -> ToolCall,
    shell: fn(&str) -> ToolCall,
}

pub fn bin(name: &str) -> PathBuf {
    let var = format!("CODEMILL_{}_BIN", name.to_uppercase());
    let path = std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/npm/node_modules/.bin")
                .join(name)
        });
    assert!(
        path.is_file(),
        "{name} CLI not found at {} — run ./scripts/test (or scripts/install-agent-clis.sh) to install the pinned version, or set {var}",
        path.display()
    );
    path
}

fn say(call: ToolCall) -> Reply {
    Reply::Message {
        text: Some("Working.".into()),
        tool_calls: vec![call],
        usage: None,
    }
}

fn json_answer(v: Value) -> Reply {
    Reply::text(format!("```json\n{v}\n```"))
}

async fn ticket_through(kit: Kit) {
    let program = bin(kit.bin);
    let rules = vec![
        ready(),
        Rule::new("research", at_turn("research", 0), Reply::text("notes")),
        Rule::new("plan", at_turn("plan", 0), Reply::text("plan: hello.txt")),
        Rule::new(
            "triage",
            at_turn("triage", 0),
            json_answer(json!({"decisions": []})),
        ),
        // implement: a typo the gate catches
        Rule::new(
            "implement: write",
            at_turn("implement", 0),
            say((kit.write)("hello.txt", "helo\n")),
        ),
        Rule::new(
            "implement: done",
            at_turn("implement", 1),
            Reply::text("Wrote hello.txt."),
        ),
        // fix round, in the resumed session: edit the file, run a command
        Rule::new(
            "fix: edit",
            Match {
                last_contains: Some("Failing gates".into()),
                ..at_turn("implement", 2)
            },
            say((kit.edit)("hello.txt", "helo", "hello")),
        ),
        Rule::new(
            "fix: shell",
            at_turn("implement", 3),
            say((kit.shell)("cp hello.txt greeting.txt")),
        ),
        Rule::new(
            "fix: done",
            at_turn("implement", 4),
            Reply::text("Fixed the typo."),
        ),
        // every review angle first tries to write, then reports nothing
        Rule::new(
            "review: write attempt",
            at_turn("review", 0),
            say((kit.write)("evil.txt", "pwned\n")),
        ),
        Rule::new(
            "review: answer",
            at_turn("review", 1),
            json_answer(json!({"findings": []})),
        ),
    ];
    let policy = format!(
        "[[gates]]\nname = \"greeting\"\ncommand = [\"grep\", \"-qx\", \"hello\", \"hello.txt\"]\n\n[stages.implement]\nbackend = \"{b}\"\nprovider = \"cli\"\nmodel = \"{m}\"\n\n[stages.review]\nbackend = \"{b}\"\nprovider = \"cli\"\nmodel = \"{m}\"\n",
        b = kit.backend,
        m = kit.model
    );
    let env = Env::new(rules, &policy, "").await;
    let extra = format!(
        "[agents.{b}]\ncommand = \"{p}\"\n\n[providers.cli]\napi = \"{api}\"\nbase_url = \"{url}\"\napi_key_env = \"{key}\"\n\n[prices.\"{m}\"]\ninput_per_mtok = 1.25\noutput_per_mtok = 10.0\n",
        b = kit.backend,
        p = program.display(),
        api = kit.api,
        url = env.server.base_url(),
        key = super::harness::KEY_VAR,
        m = kit.model
    );
    env.write_config(&extra);
    // The CLIs start slowly (opencode is silent for several seconds on a busy machine).
    let file = env.home.join("codemill.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("idle_secs = 10", "idle_secs = 120")
            .replace("wall_clock_secs = 60", "wall_clock_secs = 600"),
    )
    .unwrap();

    let (code, out, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["rounds"], 1, "{show:#}");
    let runs: Vec<&Value> = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "agent_finished")
        .map(|e| &e["event"])
        .collect();
    let session = |stage: &str| {
        runs.iter()
            .find(|e| e["stage"] == stage)
            .and_then(|e| e["run"]["session_id"].as_str())
            .unwrap_or("")
            .to_string()
    };
    assert!(!session("implement").is_empty());
    assert_eq!(
        session("implement"),
        session("fix"),
        "the fix round did not resume the session"
    );
    for e in &runs {
        if matches!(e["stage"].as_str(), Some("implement" | "fix" | "review")) {
            assert_eq!(e["run"]["agent"], kit.backend, "{e}");
            // Tokens priced from the price table.
            assert!(e["run"]["cost_usd"].as_f64().unwrap() > 0.0, "{e}");
        }
    }
    // The fix request carried the earlier conversation.
    let fix = &env.server.requests_for_rule("fix: edit")[0];
    assert!(fix.text().contains("codemill stage: implement") && fix.text().contains("helo"));
    assert!(!env.home.join("worktrees/P/P-1/evil.txt").exists());

    env.ok(&["approve", "P-1"]);
    assert_eq!(env.remote_git(&["show", "codemill/P-1:hello.txt"]), "hello");
    assert_eq!(
        env.remote_git(&["show", "codemill/P-1:greeting.txt"]),
        "hello"
    );
    let files = env.remote_git(&["ls-tree", "-r", "--name-only", "codemill/P-1"]);
    assert!(!files.contains("evil.txt"), "{files}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_cli_through_a_ticket() {
    ticket_through(Kit {
        backend: "gemini",
        api: "gemini",
        model: "gemini-2.5-pro",
        bin: "gemini",
        write: |p, c| ToolCall::new("write_file", json!({"file_path": p, "content": c})),
        edit: |p, o, n| {
            ToolCall::new(
                "replace",
                json!({"file_path": p, "old_string": o, "new_string": n, "instruction": "fix the typo"}),
            )
        },
        shell: |c| ToolCall::new("run_shell_command", json!({"command": c, "description": "copy"})),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_through_a_ticket() {
    ticket_through(Kit {
        backend: "codex",
        api: "openai-responses",
        model: "gpt-5.5",
        bin: "codex",
        write: |p, c| {
            let body: String = c.lines().map(|l| format!("+{l}\n")).collect();
            ToolCall::new(
                "apply_patch",
                json!(format!(
                    "*** Begin Patch\n*** Add File: {p}\n{body}*** End Patch\n"
                )),
            )
        },
        edit: |p, o, n| {
            ToolCall::new(
                "apply_patch",
                json!(format!(
                    "*** Begin Patch\n*** Update File: {p}\n@@\n-{o}\n+{n}\n*** End Patch\n"
                )),
            )
        },
        shell: |c| ToolCall::new("exec_command", json!({"cmd": c})),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_through_a_ticket() {
    ticket_through(Kit {
        backend: "opencode",
        api: "anthropic",
        model: "claude-sonnet-4-5",
        bin: "opencode",
        write: |p, c| ToolCall::new("write", json!({"filePath": p, "content": c})),
        edit: |p, o, n| {
            ToolCall::new(
                "edit",
                json!({"filePath": p, "oldString": o, "newString": n}),
            )
        },
        shell: |c| ToolCall::new("bash", json!({"command": c, "description": "copy"})),
    })
    .await;
}
