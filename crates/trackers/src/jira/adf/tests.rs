//! Both directions of the ADF ↔ Markdown conversion, and fuzzing that writing never panics and
//! always yields a valid document.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use serde_json::{Value, json};

fn para(content: Value) -> Value {
    json!({"type": "paragraph", "content": content})
}

fn doc(content: Value) -> Value {
    json!({"type": "doc", "version": 1, "content": content})
}

#[test]
fn adf_paragraphs_headings_and_marks() {
    let d = doc(json!([
        {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Goal"}]},
        para(json!([
            {"type": "text", "text": "Make "},
            {"type": "text", "text": "it", "marks": [{"type": "strong"}]},
            {"type": "text", "text": " fast ", "marks": [{"type": "em"}]},
            {"type": "text", "text": "now", "marks": [{"type": "strike"}]},
            {"type": "text", "text": " with "},
            {"type": "text", "text": "cargo", "marks": [{"type": "code"}]},
            {"type": "text", "text": " and "},
            {"type": "text", "text": "docs", "marks": [{"type": "link", "attrs": {"href": "https://x.test/d"}}]},
            {"type": "hardBreak"},
            {"type": "text", "text": "second line"}
        ]))
    ]));
    assert_eq!(
        adf_to_markdown(&d),
        "## Goal\n\nMake **it** *fast* ~~now~~ with `cargo` and [docs](https://x.test/d)\nsecond line"
    );
}

#[test]
fn adf_lists_nest_and_number() {
    let item = |text: &str, extra: Option<Value>| {
        let mut content = vec![para(json!([{"type": "text", "text": text}]))];
        content.extend(extra);
        json!({"type": "listItem", "content": content})
    };
    let nested = json!({"type": "orderedList", "attrs": {"order": 3}, "content": [item("three", None), item("four", None)]});
    let d = doc(json!([
        {"type": "bulletList", "content": [item("one", Some(nested)), item("two", None)]}
    ]));
    assert_eq!(adf_to_markdown(&d), "- one\n  3. three\n  4. four\n- two");
}

#[test]
fn adf_code_quote_rule_panel_media_table_and_inline_nodes() {
    let d = doc(json!([
        {"type": "codeBlock", "attrs": {"language": "rust"}, "content": [{"type": "text", "text": "fn main() {}\n"}]},
        {"type": "blockquote", "content": [para(json!([{"type": "text", "text": "quoted"}]))]},
        {"type": "rule"},
        {"type": "panel", "attrs": {"panelType": "info"}, "content": [para(json!([{"type": "text", "text": "note"}]))]},
        {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "abc", "type": "file", "collection": "c"}}]},
        {"type": "table", "content": [
            {"type": "tableRow", "content": [
                {"type": "tableHeader", "content": [para(json!([{"type": "text", "text": "a"}]))]},
                {"type": "tableHeader", "content": [para(json!([{"type": "text", "text": "b|c"}]))]}
            ]},
            {"type": "tableRow", "content": [
                {"type": "tableCell", "content": [para(json!([{"type": "text", "text": "1"}]))]},
                {"type": "tableCell", "content": [para(json!([{"type": "text", "text": "2"}]))]}
            ]}
        ]},
        para(json!([
            {"type": "mention", "attrs": {"id": "5b10", "text": "@Ada Lovelace"}},
            {"type": "text", "text": " "},
            {"type": "emoji", "attrs": {"shortName": ":smile:", "text": "😄"}},
            {"type": "text", "text": " "},
            {"type": "emoji", "attrs": {"shortName": ":party:"}}
        ])),
        {"type": "someFutureNode", "content": [{"type": "text", "text": "kept"}]}
    ]));
    let md = adf_to_markdown(&d);
    assert_eq!(
        md,
        "```rust\nfn main() {}\n```\n\n> quoted\n\n---\n\n> note\n\n[attachment]\n\n| a | b\\|c |\n| --- | --- |\n| 1 | 2 |\n\n@Ada Lovelace 😄 :party:\n\nkept"
    );
}

#[test]
fn adf_strings_null_and_garbage_do_not_panic() {
    assert_eq!(adf_to_markdown(&Value::Null), "");
    assert_eq!(adf_to_markdown(&json!("plain *wiki*")), "plain *wiki*");
    assert_eq!(adf_to_markdown(&json!({"type": "doc"})), "");
    assert_eq!(
        adf_to_markdown(&json!({"type": "doc", "content": [1, "x", null, {"content": 3}]})),
        ""
    );
    // Nesting far deeper than MAX_DEPTH comes out as text.
    let mut node = para(json!([{"type": "text", "text": "deep"}]));
    for _ in 0..100 {
        node = json!({"type": "blockquote", "content": [node]});
    }
    assert!(adf_to_markdown(&doc(json!([node]))).contains("deep"));
}

#[test]
fn plain_text_joins_split_text_nodes() {
    let d = doc(json!([para(json!([
        {"type": "text", "text": "codemill · [codemill:"},
        {"type": "text", "text": "j1:plan]", "marks": [{"type": "em"}]}
    ]))]));
    assert!(plain_text(&d).contains("[codemill:j1:plan]"));
}

#[test]
fn markdown_blocks() {
    let md = "# Title\n\nSome **bold** and *it* and `code`.\nNext line.\n\n- a\n- b\n  1. x\n  2. y\n\n```rust\nlet x = 1;\n```\n\n> quote\n\n---\n3. three";
    let adf = markdown_to_adf(md);
    assert_eq!(
        adf,
        doc(json!([
            {"type": "heading", "attrs": {"level": 1}, "content": [{"type": "text", "text": "Title"}]},
            para(json!([
                {"type": "text", "text": "Some "},
                {"type": "text", "text": "bold", "marks": [{"type": "strong"}]},
                {"type": "text", "text": " and "},
                {"type": "text", "text": "it", "marks": [{"type": "em"}]},
                {"type": "text", "text": " and "},
                {"type": "text", "text": "code", "marks": [{"type": "code"}]},
                {"type": "text", "text": "."},
                {"type": "hardBreak"},
                {"type": "text", "text": "Next line."}
            ])),
            {"type": "bulletList", "content": [
                {"type": "listItem", "content": [para(json!([{"type": "text", "text": "a"}]))]},
                {"type": "listItem", "content": [
                    para(json!([{"type": "text", "text": "b"}])),
                    {"type": "orderedList", "attrs": {"order": 1}, "content": [
                        {"type": "listItem", "content": [para(json!([{"type": "text", "text": "x"}]))]},
                        {"type": "listItem", "content": [para(json!([{"type": "text", "text": "y"}]))]}
                    ]}
                ]}
            ]},
            {"type": "codeBlock", "attrs": {"language": "rust"}, "content": [{"type": "text", "text": "let x = 1;"}]},
            {"type": "blockquote", "content": [para(json!([{"type": "text", "text": "quote"}]))]},
            {"type": "rule"},
            {"type": "orderedList", "attrs": {"order": 3}, "content": [
                {"type": "listItem", "content": [para(json!([{"type": "text", "text": "three"}]))]}
            ]}
        ]))
    );
}

#[test]
fn markdown_links_urls_and_snake_case() {
    let adf = markdown_to_adf(
        "See [the docs](https://x.test/a_b) or https://x.test/y. Keep snake_case_name and 2 * 3 * 4.<!-- hidden -->",
    );
    assert_eq!(
        adf["content"][0]["content"],
        json!([
            {"type": "text", "text": "See "},
            {"type": "text", "text": "the docs", "marks": [{"type": "link", "attrs": {"href": "https://x.test/a_b"}}]},
            {"type": "text", "text": " or "},
            {"type": "text", "text": "https://x.test/y", "marks": [{"type": "link", "attrs": {"href": "https://x.test/y"}}]},
            {"type": "text", "text": ". Keep snake_case_name and 2 * 3 * 4."}
        ])
    );
}

#[test]
fn markdown_code_inside_bold_keeps_only_code() {
    let adf = markdown_to_adf("**run `cargo test` now**");
    assert_eq!(
        adf["content"][0]["content"],
        json!([
            {"type": "text", "text": "run ", "marks": [{"type": "strong"}]},
            {"type": "text", "text": "cargo test", "marks": [{"type": "code"}]},
            {"type": "text", "text": " now", "marks": [{"type": "strong"}]}
        ])
    );
}

#[test]
fn markdown_table_and_headings_in_containers() {
    let adf = markdown_to_adf(
        "| a | b |\n|---|:-:|\n| 1 | 2 |\n\n> # quoted heading\n> > inner\n\n- # item heading",
    );
    let content = adf["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "table");
    assert_eq!(
        content[0]["content"][1]["content"][1]["content"][0]["content"][0]["text"],
        "2"
    );
    assert_eq!(content[1]["type"], "blockquote");
    assert_eq!(
        content[1]["content"][0],
        para(json!([{"type": "text", "text": "quoted heading", "marks": [{"type": "strong"}]}]))
    );
    assert_eq!(
        content[1]["content"][1],
        para(json!([{"type": "text", "text": "inner"}]))
    );
    assert_eq!(content[2]["content"][0]["content"][0]["type"], "paragraph");
}

#[test]
fn markdown_round_trips_through_adf() {
    let md = "## Plan\n\n1. Read `src/lib.rs`\n2. Add **tests**\n   - unit\n   - integration\n\n```sh\ncargo test\n```\n\n> Careful with *edge* cases.";
    assert_eq!(adf_to_markdown(&markdown_to_adf(md)), md);
}

/// Every node has a type, text nodes are non-empty, containers hold what ADF allows.
fn assert_valid(node: &Value, parent: &str) {
    let kind = node_type(node);
    assert!(!kind.is_empty(), "node without type under {parent}: {node}");
    if kind == "text" {
        assert!(
            !str_field(node, "text").is_empty(),
            "empty text node under {parent}"
        );
    }
    let kids = children(node);
    match kind {
        "listItem" => assert!(
            matches!(node_type(&kids[0]), "paragraph" | "codeBlock"),
            "{node}"
        ),
        "blockquote" => assert!(kids.iter().all(|k| matches!(
            node_type(k),
            "paragraph" | "bulletList" | "orderedList" | "codeBlock"
        ))),
        "bulletList" | "orderedList" => {
            assert!(!kids.is_empty() && kids.iter().all(|k| node_type(k) == "listItem"))
        }
        _ => {}
    }
    for k in kids {
        assert_valid(k, kind);
    }
}

/// Random Markdown-ish text (a fixed-seed xorshift, so failures reproduce).
#[test]
fn markdown_fuzz_never_panics_and_stays_valid() {
    let pieces = [
        "*",
        "**",
        "_",
        "__",
        "~~",
        "`",
        "```",
        "~~~",
        "[",
        "]",
        "(",
        ")",
        "<",
        ">",
        "<!--",
        "-->",
        "#",
        "- ",
        "1. ",
        "2) ",
        "> ",
        "|",
        "---",
        "\\",
        "\n",
        "\n\n",
        "  ",
        "\t",
        "http://a.b/c",
        "https://x.test/(y)",
        "word",
        "é",
        "😄",
        "\u{3000}",
        ":",
        "!",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let len = (next() % 40) as usize;
        let input: String = (0..len)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect();
        let adf = markdown_to_adf(&input);
        assert_valid(&adf, "root");
        let _ = adf_to_markdown(&adf);
    }
}

#[test]
fn markdown_never_panics_and_stays_valid() {
    let inputs = [
        "",
        "   \n\n",
        "*",
        "**",
        "***x***",
        "_a_b_",
        "`",
        "``code``",
        "[",
        "[a](",
        "[](https://x.test)",
        "![alt](https://x.test/i.png)",
        "<!-- unterminated",
        "<https://x.test>",
        "~~~\nunclosed fence",
        "```\n```",
        "- ",
        "-\n  - nested under empty",
        "1.\n2)",
        "> ",
        ">>>>>> deep",
        "#",
        "####### seven",
        "| a |\n|---|",
        "|---|",
        "\\",
        "a\\\nb",
        "\t- tabbed\n\t\t- more",
        "1234567890. not a list",
        "http://",
        "(https://x.test/a(b))",
        "ünïcödé **bøld** 😄 _ï_",
    ];
    for input in inputs {
        let adf = markdown_to_adf(input);
        assert_eq!(adf["type"], "doc", "{input:?}");
        assert_eq!(adf["version"], 1);
        assert_valid(&adf, "root");
    }
    let deep_quote = ">".repeat(5000) + " x";
    assert_valid(&markdown_to_adf(&deep_quote), "root");
    let deep_list: String = (0..400)
        .map(|i| format!("{}- x\n", "  ".repeat(i)))
        .collect();
    assert_valid(&markdown_to_adf(&deep_list), "root");
    let stars = "*a ".repeat(20000);
    assert_valid(&markdown_to_adf(&stars), "root");
    let brackets = "[".repeat(20000);
    assert_valid(&markdown_to_adf(&brackets), "root");
    let emphasis = "**_~~".repeat(2000) + "x";
    assert_valid(&markdown_to_adf(&emphasis), "root");
}
