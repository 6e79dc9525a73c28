//! The demo's sample repository: a tiny Rust crate whose tests run offline, and its tickets.

/// Files of the sample repository's first commit.
pub const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        "[package]\nname = \"textkit\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    ),
    (".gitignore", "/target\nCargo.lock\n"),
    (
        "README.md",
        "# textkit\n\nSmall text helpers. The sample repository of `codemill demo`.\n\nRun the tests with `cargo test`.\n",
    ),
    (
        ".codemill/pipeline.toml",
        "# codemill policy of this repository: the gates every change must pass.\n[[gates]]\nname = \"test\"\ncommand = [\"cargo\", \"test\", \"--quiet\", \"--offline\"]\ntimeout_secs = 300\n",
    ),
    (
        "src/lib.rs",
        "//! textkit: small text helpers.\n\npub mod case;\n\n/// Reverse the characters of a string.\npub fn reverse(s: &str) -> String {\n    s.chars().rev().collect()\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn reverses_text() {\n        assert_eq!(reverse(\"abc\"), \"cba\");\n    }\n}\n",
    ),
    (
        "src/case.rs",
        "//! Case conversion.\n\n/// Upper-case a string.\npub fn shout(s: &str) -> String {\n    s.to_uppercase()\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn shouts() {\n        assert_eq!(super::shout(\"hi\"), \"HI\");\n    }\n}\n",
    ),
];

/// A demo ticket: what a product owner would write.
pub struct DemoTicket {
    pub title: &'static str,
    pub body: &'static str,
    /// What the demo expects to happen, shown in the summary.
    pub story: &'static str,
}

pub const TICKETS: [DemoTicket; 3] = [
    DemoTicket {
        title: "Add a slugify helper",
        body: "Add `textkit::slug::slugify(&str) -> String`: lower-case, keep ASCII letters and digits, join the words with '-'.\n\nAcceptance criteria:\n- slugify(\"Hello, World!\") == \"hello-world\"\n- covered by a unit test",
        story: "passes every gate and the review first time",
    },
    DemoTicket {
        title: "Add a word counter",
        body: "Add `textkit::count::word_count(&str) -> usize` counting whitespace-separated words.\n\nAcceptance criteria:\n- word_count(\"a  b\\tc\\n\") == 3\n- covered by a unit test",
        story: "fails the test gate, fixed in the same agent session",
    },
    DemoTicket {
        title: "Add a truncate helper",
        body: "Add `textkit::truncate::truncate(&str, max_chars: usize) -> String` returning at most `max_chars` characters.\n\nAcceptance criteria:\n- truncate(\"hello\", 2) == \"he\"\n- text shorter than the limit comes back unchanged",
        story: "gets a must-fix review finding, fixed in the same agent session",
    },
];

pub const SLUG_RS: &str = "//! URL slugs.\n\n/// Lower-case `s`, keep ASCII letters and digits, and join the words with '-'.\npub fn slugify(s: &str) -> String {\n    s.split(|c: char| !c.is_ascii_alphanumeric())\n        .filter(|w| !w.is_empty())\n        .map(|w| w.to_ascii_lowercase())\n        .collect::<Vec<_>>()\n        .join(\"-\")\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn slugifies() {\n        assert_eq!(slugify(\"Hello, World!\"), \"hello-world\");\n        assert_eq!(slugify(\"  Rust 2024  \"), \"rust-2024\");\n    }\n}\n";

pub const COUNT_BUGGY: &str = "s.split(' ').filter(|w| !w.is_empty()).count()";
pub const COUNT_FIXED: &str = "s.split_whitespace().count()";

pub fn count_rs() -> String {
    format!(
        "//! Counting.\n\n/// The number of whitespace-separated words in `s`.\npub fn word_count(s: &str) -> usize {{\n    {COUNT_BUGGY}\n}}\n\n#[cfg(test)]\nmod tests {{\n    use super::*;\n\n    #[test]\n    fn counts_words() {{\n        assert_eq!(word_count(\"a  b\\tc\\n\"), 3);\n        assert_eq!(word_count(\"\"), 0);\n    }}\n}}\n"
    )
}

pub const TRUNCATE_BUGGY: &str = "//! Truncation.\n\n/// At most `max_chars` characters of `s`.\npub fn truncate(s: &str, max_chars: usize) -> String {\n    if s.len() <= max_chars {\n        return s.to_string();\n    }\n    s[..max_chars].to_string()\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn truncates() {\n        assert_eq!(truncate(\"hello\", 2), \"he\");\n        assert_eq!(truncate(\"hi\", 5), \"hi\");\n    }\n}\n";

pub const TRUNCATE_FIXED: &str = "//! Truncation.\n\n/// At most `max_chars` characters of `s`.\npub fn truncate(s: &str, max_chars: usize) -> String {\n    s.chars().take(max_chars).collect()\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn truncates() {\n        assert_eq!(truncate(\"hello\", 2), \"he\");\n        assert_eq!(truncate(\"hi\", 5), \"hi\");\n    }\n\n    #[test]\n    fn counts_characters_not_bytes() {\n        assert_eq!(truncate(\"h\\u{e9}llo\", 2), \"h\\u{e9}\");\n    }\n}\n";
