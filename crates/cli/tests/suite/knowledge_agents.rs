//! The knowledge tools in every real agent: research runs on each CLI (and the built-in agent)
//! in its sandbox; the request the agent sends lists the knowledge tools, and a scripted call of
//! `search_knowledge` comes back to the model with the project's entry. Each CLI reaches the
//! knowledge through `codemill mcp --gateway` inside the sandbox, under the step's pass.

use codemill_testkit::{Reply, Rule, ToolCall};
use serde_json::{Value, json};

use super::harness::{Env, HELLO_GATE, at_turn, engineer};

/// How one agent is configured and what it calls the search tool.
struct Kit {
    backend: &'static str,
    api: &'static str,
    model: &'static str,
    /// The CLI's binary name in `.tools` (none for the built-in agent).
    bin: Option<&'static str>,
    tool: &'static str,
    /// Codex defers MCP tools: the model finds them with its `tool_search` first.
    search_first: bool,
}

/// The entry the agent should find.
const TITLE: &str = "Releasing";
const BODY: &str = "Cut releases with scripts/release.sh; never push version tags by hand.";

fn tool_names(body: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let mut visit = |tools: &Value| {
        for t in tools.as_array().into_iter().flatten() {
            for name in [&t["name"], &t["function"]["name"]] {
                if let Some(n) = name.as_str() {
                    names.push(n.to_string());
                }
            }
            for d in t["functionDeclarations"].as_array().into_iter().flatten() {
                if let Some(n) = d["name"].as_str() {
                    names.push(n.to_string());
                }
            }
        }
    };
    visit(&body["tools"]);
    // Codex: the MCP tools a tool search found, in their namespace.
    for item in body["input"].as_array().into_iter().flatten() {
        if item["type"] == "tool_search_output" {
            for ns in item["tools"].as_array().into_iter().flatten() {
                for t in ns["tools"].as_array().into_iter().flatten() {
                    if let (Some(space), Some(n)) = (ns["name"].as_str(), t["name"].as_str()) {
                        names.push(format!("{space}__{n}"));
                    }
                }
            }
        }
    }
    names
}

/// The model's call of the search tool; Codex's MCP tools live in a namespace
/// (`mcp__codemill` + `search_knowledge`).
fn search_call(kit: &Kit) -> ToolCall {
    let args = json!({"query": "release tags"});
    match kit.tool.rsplit_once("__") {
        Some((space, name)) if kit.search_first => ToolCall::new(name, args).in_namespace(space),
        _ => ToolCall::new(kit.tool, args),
    }
}

/// The raw log of the research step, for failure messages.
fn research_log(env: &Env) -> String {
    let mut out = String::new();
    let mut stack = vec![env.home.join("logs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("research"))
            {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    path.display(),
                    &text[text.len().saturating_sub(4000)..]
                ));
            }
        }
    }
    out
}

async fn knowledge_reaches(kit: Kit) {
    let first = usize::from(kit.search_first);
    let mut rules = Vec::new();
    if kit.search_first {
        rules.push(Rule::new(
            "research: find tools",
            at_turn("research", 0),
            Reply::Message {
                text: None,
                tool_calls: vec![ToolCall::new(
                    "tool_search",
                    json!({"query": "project knowledge search", "limit": 8}),
                )],
                usage: None,
            },
        ));
    }
    rules.extend([
        Rule::new(
            "research: search",
            at_turn("research", first),
            Reply::Message {
                text: Some("Looking up how releases work.".into()),
                tool_calls: vec![search_call(&kit)],
                usage: None,
            },
        ),
        Rule::new(
            "research: notes",
            at_turn("research", first + 1),
            Reply::text("Notes: releases go through scripts/release.sh."),
        ),
    ]);
    rules.extend(engineer());
    let policy = format!(
        "{HELLO_GATE}\n[stages.research]\nbackend = \"{b}\"\nprovider = \"kit\"\nmodel = \"{m}\"\n",
        b = kit.backend,
        m = kit.model
    );
    let env = Env::new(rules, &policy, "").await;
    let command = match kit.bin {
        Some(bin) => format!(
            "[agents.{}]\ncommand = \"{}\"\n\n",
            kit.backend,
            super::clis::bin(bin).display()
        ),
        None => String::new(),
    };
    env.write_config(&format!(
        "{command}[providers.kit]\napi = \"{api}\"\nbase_url = \"{url}\"\napi_key_env = \"{key}\"\n",
        api = kit.api,
        url = env.server.base_url(),
        key = super::harness::KEY_VAR,
    ));
    let file = env.home.join("codemill.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("idle_secs = 10", "idle_secs = 120")
            .replace("wall_clock_secs = 60", "wall_clock_secs = 600"),
    )
    .unwrap();
    env.ok(&[
        "knowledge",
        "add",
        "P",
        "--title",
        TITLE,
        "--body",
        BODY,
        "--tag",
        "human",
    ]);

    let (code, out, err) = env.run(&["run", "P-1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");

    let asked = env.server.requests_for_rule("research: search");
    assert!(!asked.is_empty(), "research never reached the model: {err}");
    let names = tool_names(&asked[0].body);
    assert!(
        names.iter().any(|n| n == kit.tool),
        "{} did not offer {} to the model; it offered {names:?}\n{}",
        kit.backend,
        kit.tool,
        research_log(&env)
    );
    for other in ["read_knowledge", "record_knowledge", "ticket_context"] {
        assert!(
            names.iter().any(|n| n.ends_with(other)),
            "{other} missing from {names:?}"
        );
    }
    let answered = env.server.requests_for_rule("research: notes");
    assert!(
        !answered.is_empty(),
        "the model never saw the tool's result"
    );
    // Some CLIs pass the result on as a JSON string inside their own JSON.
    let seen = answered[0].text().replace("\\\"", "\"");
    assert!(
        seen.contains(BODY) && seen.contains("\"tag\": \"human\""),
        "the search result did not reach the model:\n{}\n{}",
        &seen[seen.len().saturating_sub(3000)..],
        research_log(&env)
    );
    // The job went on to its proposal as usual.
    let show = env.json(&["show", "P-1", "--json"]);
    assert_eq!(show["job"]["state"], "awaiting_approval", "{show:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_searches_the_knowledge() {
    knowledge_reaches(Kit {
        backend: "claude-code",
        api: "anthropic",
        model: "claude-sonnet-4-5",
        bin: Some("claude"),
        tool: "mcp__codemill__search_knowledge",
        search_first: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_searches_the_knowledge() {
    knowledge_reaches(Kit {
        backend: "codex",
        api: "openai-responses",
        model: "gpt-5.5",
        bin: Some("codex"),
        tool: "mcp__codemill__search_knowledge",
        search_first: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_cli_searches_the_knowledge() {
    knowledge_reaches(Kit {
        backend: "gemini",
        api: "gemini",
        model: "gemini-2.5-pro",
        bin: Some("gemini"),
        tool: "mcp_codemill_search_knowledge",
        search_first: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_searches_the_knowledge() {
    knowledge_reaches(Kit {
        backend: "opencode",
        api: "anthropic",
        model: "claude-sonnet-4-5",
        bin: Some("opencode"),
        tool: "codemill_search_knowledge",
        search_first: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_agent_searches_the_knowledge() {
    knowledge_reaches(Kit {
        backend: "builtin",
        api: "anthropic",
        model: "claude-sonnet-4-5",
        bin: None,
        tool: "search_knowledge",
        search_first: false,
    })
    .await;
}
