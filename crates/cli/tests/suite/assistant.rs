//! The product-owner assistant from the terminal: an answer grounded in the backlog that
//! drafts a ticket, saved exactly once to the local tracker and to GitHub; a conversation read
//! from stdin; an agent that tries to write is refused (read-only sandbox); a conversation stops
//! at its own budget and then asks no model at all; citations that are not there are named.

use codemill_testkit::{Match, Reply, Rule, ToolCall};
use serde_json::{Value, json};

use super::harness::{Env, HELLO_GATE, at_turn, write_call};
use super::outside::{fake_github, github_config, github_vars};

const DRAFTING: &str = "SSO needs a login route next to P-1's greeting (see `README.md`).\n\n```json\n{\"drafts\": [{\"title\": \"Add OIDC login\", \"body\": \"Users sign in with OIDC.\\n\\n- [ ] a user signs in with OIDC\"}]}\n```";

/// Turn 0 reads the backlog file; turn 1 answers with a draft.
fn drafter() -> Vec<Rule> {
    vec![
        Rule::new(
            "assistant: read the backlog",
            at_turn("assistant", 0),
            Reply::Message {
                text: Some("Reading the backlog.".into()),
                tool_calls: vec![ToolCall::new(
                    "read_file",
                    json!({"path": ".codemill-run/backlog.md"}),
                )],
                usage: None,
            },
        ),
        Rule::new(
            "assistant: answer",
            at_turn("assistant", 1),
            Reply::text(DRAFTING),
        ),
    ]
}

fn assistant_requests(env: &Env) -> Vec<String> {
    env.server
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .filter(|b| b.contains("codemill stage: assistant"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drafted_ticket_is_saved_once_to_the_local_tracker() {
    let env = Env::new(drafter(), HELLO_GATE, "").await;
    let turn = env.json(&[
        "assistant",
        "P",
        "--ask",
        "What would it take to add SSO? Draft a ticket.",
        "--json",
    ]);
    assert!(turn["error"].is_null(), "{turn}");
    assert_eq!(turn["drafts"][0]["title"], "Add OIDC login", "{turn}");
    // What it cites (README.md, P-1) is there: no note.
    assert!(
        !turn["answer"]
            .as_str()
            .unwrap()
            .contains("codemill checked"),
        "{turn}"
    );
    assert!(turn["cost_usd"].as_f64().unwrap() > 0.0, "{turn}");
    // Grounded: the backlog file the agent read holds the project's ticket, quoted as data.
    let seen = assistant_requests(&env);
    assert!(
        seen.last().unwrap().contains("P-1 — Say hello"),
        "the backlog reached the agent: {seen:?}"
    );
    let id = turn["id"].as_i64().unwrap();
    let save = format!("{id}.1");
    let first = env.ok(&["assistant", "P", "--save", &save]);
    assert!(first.contains("is ticket P-2"), "{first}");
    let again = env.ok(&["assistant", "P", "--save", &save]);
    assert!(again.contains("is ticket P-2"), "{again}");
    let tickets = env.json(&["ticket", "list", "--json"]);
    assert_eq!(
        tickets.as_array().unwrap().len(),
        2,
        "saved once: {tickets}"
    );
    let saved = env.json(&["ticket", "show", "P-2", "--json"]);
    assert_eq!(saved["ticket"]["title"], "Add OIDC login");
    assert!(
        saved["ticket"]["body"]
            .as_str()
            .unwrap()
            .contains("- [ ] a user signs in with OIDC"),
        "{saved}"
    );
    assert_eq!(saved["ticket"]["labels"], json!(["codemill:drafted"]));
    let (code, _, stderr) = env.run(&["assistant", "P", "--save", &format!("{id}.7")]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("has no draft 7 (it has 1)"), "{stderr}");
    // The conversation is listed with its spend.
    let listed = env.ok(&["assistant", "P", "--list"]);
    assert!(
        listed.contains("1 question(s)") && listed.contains("What would it take"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_on_stdin_goes_on_and_saves_to_github_once() {
    let gh = fake_github().await;
    let mut rules = vec![Rule::new(
        "assistant: the follow-up knows the first answer",
        Match {
            contains: Some("And the tests?".into()),
            ..at_turn("assistant", 0)
        },
        Reply::text("Add a test next to the login route; the draft above covers it."),
    )];
    rules.extend(drafter());
    let env = Env::new(rules, HELLO_GATE, "").await;
    env.write_config(&format!(
        "[projects.shop]\nrepo = \"{}\"\ntracker = \"github\"\nforge = \"github\"\n{}",
        env.remote.display(),
        github_config("shop", &gh.url())
    ));
    let out = env
        .cmd()
        .envs(github_vars())
        .args(["assistant", "shop"])
        .write_stdin("Draft a ticket for SSO.\n/save 1\n/save 1\nAnd the tests?\n")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1. Add OIDC login"), "{stdout}");
    assert_eq!(
        stdout.matches("draft 1 saved as ticket 1").count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("Add a test next to the login route"),
        "{stdout}"
    );
    // One issue on GitHub, with the draft's text and the drafted label.
    let issue = gh.issue(1).expect("the saved draft");
    assert_eq!(issue["title"], "Add OIDC login");
    assert!(
        issue["body"]
            .as_str()
            .unwrap()
            .contains("a user signs in with OIDC")
    );
    assert_eq!(gh.labels(1), ["codemill:drafted"]);
    assert!(gh.issue(2).is_none(), "saved once");
    // The follow-up carried the conversation so far.
    let seen = assistant_requests(&env);
    let follow_up = seen.iter().find(|b| b.contains("And the tests?")).unwrap();
    assert!(follow_up.contains("Draft a ticket for SSO."), "{follow_up}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistant_cannot_write_and_stops_at_its_budget() {
    let rules = vec![
        Rule::new(
            "assistant: try to write",
            at_turn("assistant", 0),
            write_call("owned.txt", "owned\n"),
        ),
        Rule::new(
            "assistant: answer",
            at_turn("assistant", 1),
            Reply::text("Could not write."),
        ),
    ];
    let env = Env::new(rules, HELLO_GATE, "").await;
    let turn = env.json(&["assistant", "P", "--ask", "Write owned.txt.", "--json"]);
    assert!(turn["error"].is_null(), "{turn}");
    let seen = assistant_requests(&env);
    assert!(
        seen.last()
            .unwrap()
            .contains("tool `write_file` is not available in read-only mode"),
        "the write was refused: {seen:?}"
    );
    assert!(
        super::harness::git(&env.remote, &["ls-tree", "-r", "main"])
            .find("owned.txt")
            .is_none()
    );

    // A budget smaller than one model call: the first call is metered, the next refused.
    env.write_config("[projects.P.assistant]\nbudget_usd = 0.000001\n");
    let before = env.server.requests().len();
    let (code, stdout, stderr) =
        env.run(&["assistant", "P", "--ask", "Write owned.txt.", "--json"]);
    assert_eq!(code, Some(4), "{stderr}");
    let turn: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        turn["error"]
            .as_str()
            .unwrap()
            .contains("stopped at this conversation's budget"),
        "{turn}"
    );
    assert_eq!(
        env.server.requests().len(),
        before + 1,
        "one call, then refused"
    );
    // Asked again in the spent conversation: refused before any model is asked.
    let conversation = turn["conversation"].as_str().unwrap();
    let (code, _, stderr) = env.run(&[
        "assistant",
        "P",
        "--ask",
        "Anything else?",
        "--conversation",
        conversation,
    ]);
    assert_eq!(code, Some(4));
    assert!(stderr.contains("start a new one"), "{stderr}");
    assert_eq!(env.server.requests().len(), before + 1);
}

/// An answer citing files, lines and tickets that are not there gets a note naming each, and
/// what it cites correctly is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citations_that_are_not_there_are_named_under_the_answer() {
    let answer = "Billing lives in `src/billing.rs:40` and `README.md:9999`; see `README.md`, \
        `../secrets.txt`, P-1 and P-42.";
    let rules = vec![Rule::new(
        "assistant: answer",
        at_turn("assistant", 0),
        Reply::text(answer),
    )];
    let env = Env::new(rules, HELLO_GATE, "").await;
    let turn = env.json(&["assistant", "P", "--ask", "Where is billing?", "--json"]);
    assert!(turn["error"].is_null(), "{turn}");
    let text = turn["answer"].as_str().unwrap();
    assert!(text.starts_with(answer), "the answer is kept: {text}");
    let note = text
        .lines()
        .last()
        .filter(|l| l.starts_with("> codemill checked"))
        .unwrap_or_else(|| panic!("no note: {text}"));
    for missing in [
        "`src/billing.rs:40` (no such file on the default branch)",
        "`README.md:9999` (the file has ",
        "`../secrets.txt` (outside the repository)",
        "P-42 (no such ticket in the backlog)",
    ] {
        assert!(note.contains(missing), "{missing} in {note}");
    }
    assert!(
        !note.contains("`README.md` (") && !note.contains("P-1 "),
        "{note}"
    );
    // The terminal shows it too.
    let shown = env.ok(&["assistant", "P", "--ask", "Where is billing?"]);
    assert!(
        shown.contains("P-42 (no such ticket in the backlog)"),
        "{shown}"
    );
}
