//! The demo model: a scripted model server's rules that play a careful engineer for the three
//! sample tickets. Answers depend on what the request contains (the ticket, the stage, the diff
//! the reviewer read), never on call order.

use codemill_testkit::{Match, Reply, Rule, Script, ToolCall};
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
            format!("{key} review: read diff"),
            when("review", key, 0),
            calls(
                vec![("read_file", json!({"path": ".codemill-run/diff.patch"}))],
                "Reading the diff.",
            ),
        ),
        Rule::new(
            format!("{key} implement: register module"),
            Match {
                first_user_contains: Some("codemill stage: implement".into()),
                contains: Some(format!("<ticket key=\"{key}\">")),
                turn: Some(2),
                ..Match::default()
            },
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

    // DEMO-1: straight through; the reviewer leaves one low-severity note.
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
        "DEMO-1 review: findings",
        when("review", "DEMO-1", 1),
        findings(json!([{
            "severity": "low", "file": "src/slug.rs", "line": 4,
            "title": "Non-ASCII letters are dropped",
            "detail": "slugify(\"Café\") gives \"caf\"; fine for this ticket's ASCII scope.",
            "suggestion": "Transliterate later if non-ASCII titles matter.", "must_fix": false
        }])),
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
            vec![("edit_file", json!({"path": "src/count.rs", "old_text": sample::COUNT_BUGGY, "new_text": sample::COUNT_FIXED}))],
            "The test shows tabs and newlines are not separators; switching to split_whitespace.",
        ),
    ));
    rules.push(Rule::new(
        "DEMO-2 fix: done",
        when("implement", "DEMO-2", 5),
        Reply::text("word_count now splits on any whitespace; the failing test passes."),
    ));
    rules.push(Rule::new(
        "DEMO-2 review: clean",
        when("review", "DEMO-2", 1),
        findings(json!([])),
    ));

    // DEMO-3: tests pass, but the reviewer finds byte slicing that panics on multi-byte text.
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
        "DEMO-3 review: byte slicing",
        Match {
            contains: Some("s[..max_chars]".into()),
            ..when("review", "DEMO-3", 1)
        },
        findings(json!([{
            "severity": "high", "file": "src/truncate.rs", "line": 8,
            "title": "Byte slicing panics on multi-byte characters",
            "detail": "`s[..max_chars]` slices bytes: truncate(\"héllo\", 2) panics because byte 2 is inside 'é', and `s.len()` counts bytes, not characters.",
            "suggestion": "Use `s.chars().take(max_chars).collect()` and add a test with non-ASCII text.",
            "must_fix": true
        }, {
            "severity": "info", "file": "src/truncate.rs", "line": 3,
            "title": "Doc comment could mention characters vs bytes",
            "detail": "Say that the limit counts Unicode scalar values.", "must_fix": false
        }])),
    ));
    rules.push(Rule::new(
        "DEMO-3 review: clean",
        Match {
            contains: Some("chars().take(max_chars)".into()),
            ..when("review", "DEMO-3", 1)
        },
        findings(json!([])),
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
    Script::new(rules)
}
