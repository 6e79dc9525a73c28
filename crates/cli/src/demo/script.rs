//! The demo model: a scripted model server's rules that play a careful engineer for the three
//! sample tickets. Answers depend on what the request contains (the ticket, the stage, the review
//! angle, the diff the reviewer read), never on call order.

use codemill_scripted_model::{Match, Reply, Rule, Script, ToolCall};
use serde_json::json;

use super::sample;

/// The model name the demo configures; priced in the demo's codemill.toml for illustration.
pub const MODEL: &str = "codemill-demo";

fn when(stage: &str, key: &str, turn: usize) -> Match {
    Match {
        first_user_contains: Some(format!("codemill stage: {stage}")),
        contains: Some(format!("<ticket key=\"{key}\">")),
        turn: Some(turn),
        ..Match::default()
    }
}

/// A review angle's answer for one ticket, after it read the diff.
fn angle(name: &str, key: &str) -> Match {
    Match {
        first_user_contains: Some(format!("codemill stage: review\nreview angle: {name}\n")),
        contains: Some(format!("<ticket key=\"{key}\">")),
        turn: Some(1),
        ..Match::default()
    }
}

fn stage(name: &str) -> Match {
    Match {
        first_user_contains: Some(format!("codemill stage: {name}")),
        ..Match::default()
    }
}

fn calls(calls: Vec<(&str, serde_json::Value)>, text: &str) -> Reply {
    Reply::Message {
        text: Some(text.to_string()),
        tool_calls: calls
            .into_iter()
            .map(|(n, i)| ToolCall::new(n, i))
            .collect(),
        usage: None,
    }
}

fn findings(list: serde_json::Value) -> Reply {
    Reply::text(format!(
        "Review done.\n```json\n{}\n```",
        json!({ "findings": list })
    ))
}

/// Research, plan and the opening of implement, the same shape for every ticket.
fn common(key: &str, module: &str, research: &str, plan: &str) -> Vec<Rule> {
    vec![
        Rule::new(
            format!("{key} research: look"),
            when("research", key, 0),
            calls(
                vec![
                    ("list_dir", json!({"path": "src"})),
                    ("read_file", json!({"path": "src/lib.rs"})),
                ],
                "Looking at the crate layout.",
            ),
        ),
        Rule::new(
            format!("{key} research: notes"),
            when("research", key, 1),
            Reply::text(research),
        ),
        Rule::new(
            format!("{key} plan: read notes"),
            when("plan", key, 0),
            calls(
                vec![("read_file", json!({"path": ".codemill-run/research.md"}))],
                "Reading the research notes.",
            ),
        ),
        Rule::new(
            format!("{key} plan: plan"),
            when("plan", key, 1),
            Reply::text(plan),
        ),
        Rule::new(
            format!("{key} implement: read"),
            when("implement", key, 0),
            calls(
                vec![
                    ("read_file", json!({"path": ".codemill-run/plan.md"})),
                    ("read_file", json!({"path": "src/lib.rs"})),
                ],
                "Reading the plan and the crate root.",
            ),
        ),
        Rule::new(
            format!("{key} implement: register module"),
            when("implement", key, 2),
            calls(
                vec![(
                    "edit_file",
                    json!({"path": "src/lib.rs", "old_text": "pub mod case;", "new_text": format!("pub mod case;\npub mod {module};")}),
                )],
                "Registering the module.",
            ),
        ),
    ]
}

/// The whole demo script.
pub fn script() -> Script {
    // `codemill doctor`'s reachability probe.
    let mut rules = vec![Rule::new(
        "doctor probe",
        Match {
            contains: Some("Reply with the single word: ok".into()),
            ..Match::default()
        },
        Reply::text("ok"),
    )];

    // DEMO-1: straight through. Two reviewers leave notes: one goes to the backlog (the triage
    // agent's call), one is ignored (policy: low confidence).
    rules.extend(common(
        "DEMO-1",
        "slug",
        "## Research\n- `src/lib.rs`: crate root, declares modules.\n- `src/case.rs`: one helper per module with unit tests beside it.\n- Tests: `cargo test`.\n- Risk: none; new module only.",
        "## Plan\n1. Add `src/slug.rs` with `slugify` and unit tests.\n2. Declare `pub mod slug;` in `src/lib.rs`.",
    ));
    rules.push(Rule::new(
        "DEMO-1 implement: write",
        when("implement", "DEMO-1", 1),
        calls(
            vec![(
                "write_file",
                json!({"path": "src/slug.rs", "content": sample::SLUG_RS}),
            )],
            "Writing the slug module.",
        ),
    ));
    rules.push(Rule::new(
        "DEMO-1 implement: check",
        when("implement", "DEMO-1", 3),
        calls(
            vec![("run_command", json!({"argv": ["ls", "src"]}))],
            "Checking the files.",
        ),
    ));
    rules.push(Rule::new(
        "DEMO-1 implement: done",
        when("implement", "DEMO-1", 4),
        Reply::text("Added `textkit::slug::slugify` with unit tests and declared the module."),
    ));
    rules.push(Rule::new(
        "DEMO-1 review: correctness",
        angle("correctness", "DEMO-1"),
        findings(json!([{
            "severity": "low", "file": "src/slug.rs", "line": 4,
            "title": "Non-ASCII letters are dropped",
            "detail": "slugify(\"Café\") gives \"caf\"; fine for this ticket's ASCII scope, worth a follow-up.",
            "suggestion": "Transliterate before filtering if non-ASCII titles matter.", "confidence": 0.8
        }])),
    ));
    rules.push(Rule::new(
        "DEMO-1 review: tests",
        angle("tests", "DEMO-1"),
        findings(json!([{
            "severity": "info", "file": "src/slug.rs", "line": 16,
            "title": "Test name could say what it checks",
            "detail": "`slugifies` could be `joins_words_with_dashes`.", "confidence": 0.2
        }])),
    ));
    rules.push(Rule::new(
        "DEMO-1 triage",
        Match {
            contains: Some("<ticket key=\"DEMO-1\">".into()),
            ..stage("triage")
        },
        Reply::text(
            "```json\n{\"decisions\": [{\"id\": 1, \"bucket\": \"backlog\", \"reason\": \"Real, but outside this ticket's ASCII scope: a follow-up ticket.\"}]}\n```",
        ),
    ));

    // DEMO-2: the first version splits on spaces only; the test gate fails; the fix round repairs it.
    rules.extend(common(
        "DEMO-2",
        "count",
        "## Research\n- `src/lib.rs` declares modules; helpers live one per module with tests.\n- Tests: `cargo test`.",
        "## Plan\n1. Add `src/count.rs` with `word_count` and a unit test covering tabs and newlines.\n2. Declare `pub mod count;`.",
    ));
    rules.push(Rule::new(
        "DEMO-2 implement: write",
        when("implement", "DEMO-2", 1),
        calls(
            vec![(
                "write_file",
                json!({"path": "src/count.rs", "content": sample::count_rs()}),
            )],
            "Writing the counter.",
        ),
    ));
    rules.push(Rule::new(
        "DEMO-2 implement: done",
        when("implement", "DEMO-2", 3),
        Reply::text("Added `textkit::count::word_count` with a unit test."),
    ));
    rules.push(Rule::new(
        "DEMO-2 fix: repair",
        when("implement", "DEMO-2", 4),
        calls(
            vec![(
                "edit_file",
                json!({"path": "src/count.rs", "old_text": sample::COUNT_BUGGY, "new_text": sample::COUNT_FIXED}),
            )],
            "The test shows tabs and newlines are not separators; switching to split_whitespace.",
        ),
    ));
    rules.push(Rule::new(
        "DEMO-2 fix: done",
        when("implement", "DEMO-2", 5),
        Reply::text("word_count now splits on any whitespace; the failing test passes."),
    ));

    // DEMO-3: tests pass, but two reviewers find byte slicing that panics on multi-byte text; the
    // findings merge, policy puts the high one in fix_now, the fix round repairs it.
    rules.extend(common(
        "DEMO-3",
        "truncate",
        "## Research\n- `src/lib.rs` declares modules; one helper per module with tests.\n- Note: Rust strings are UTF-8; character and byte counts differ.",
        "## Plan\n1. Add `src/truncate.rs` with `truncate` and unit tests.\n2. Declare `pub mod truncate;`.",
    ));
    rules.push(Rule::new(
        "DEMO-3 implement: write",
        when("implement", "DEMO-3", 1),
        calls(
            vec![(
                "write_file",
                json!({"path": "src/truncate.rs", "content": sample::TRUNCATE_BUGGY}),
            )],
            "Writing truncate.",
        ),
    ));
    rules.push(Rule::new(
        "DEMO-3 implement: done",
        when("implement", "DEMO-3", 3),
        Reply::text("Added `textkit::truncate::truncate` with unit tests."),
    ));
    rules.push(Rule::new(
        "DEMO-3 review: security",
        Match {
            contains: Some("s[..max_chars]".into()),
            ..angle("security", "DEMO-3")
        },
        findings(json!([{
            "severity": "high", "file": "src/truncate.rs", "line": 8,
            "title": "Byte slicing panics on multi-byte characters",
            "detail": "`s[..max_chars]` slices bytes: truncate(\"héllo\", 2) panics inside 'é'; any caller passing user text can crash the process.",
            "suggestion": "Use `s.chars().take(max_chars).collect()` and add a test with non-ASCII text.",
            "confidence": 0.95
        }])),
    ));
    rules.push(Rule::new(
        "DEMO-3 review: correctness",
        Match {
            contains: Some("s[..max_chars]".into()),
            ..angle("correctness", "DEMO-3")
        },
        findings(json!([{
            "severity": "medium", "file": "src/truncate.rs", "line": 7,
            "title": "Byte slicing panics on multi-byte text",
            "detail": "`s.len()` counts bytes, not characters, so the limit is wrong for non-ASCII text.",
            "confidence": 0.9
        }])),
    ));
    rules.push(Rule::new(
        "DEMO-3 fix: rewrite",
        when("implement", "DEMO-3", 4),
        calls(
            vec![(
                "write_file",
                json!({"path": "src/truncate.rs", "content": sample::TRUNCATE_FIXED}),
            )],
            "Counting characters instead of bytes, with a non-ASCII test.",
        ),
    ));
    rules.push(Rule::new(
        "DEMO-3 fix: done",
        when("implement", "DEMO-3", 5),
        Reply::text("truncate now counts characters; added a test with 'é'."),
    ));

    // Every ticket is clear enough to build, and every other review angle finds nothing.
    rules.push(Rule::new(
        "readiness: ready",
        stage("readiness"),
        Reply::text("```json\n{\"ready\": true, \"questions\": []}\n```"),
    ));
    rules.push(Rule::new(
        "review: read diff",
        Match {
            turn: Some(0),
            ..stage("review")
        },
        calls(
            vec![("read_file", json!({"path": ".codemill-run/diff.patch"}))],
            "Reading the diff.",
        ),
    ));
    rules.push(Rule::new(
        "review: nothing found",
        Match {
            turn: Some(1),
            ..stage("review")
        },
        findings(json!([])),
    ));
    // Anything else is someone's own ticket on the default provider: say so, and what to do.
    rules.push(Rule::new(
        "not a demo ticket",
        Match::default(),
        Reply::Error {
            status: 400,
            message: DEMO_ONLY.into(),
            retry_after: None,
        },
    ));
    Script::new(rules)
}

/// The demo model's answer to a request it has no script for.
pub const DEMO_ONLY: &str = "the built-in demo model (provider `demo`, the default of a new \
    home) only answers the sample tickets of `codemill demo`; to run your own tickets, add a \
    provider to codemill.toml — `[providers.NAME]` with `api`, `base_url` and `api_key_env` — and \
    set `[agent] provider = \"NAME\"` (README: Configuration)";
