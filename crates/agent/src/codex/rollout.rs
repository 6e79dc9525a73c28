//! Codex's session rollout file, read after a run for what the JSON stream leaves out.
//!
//! Codex reports NO stream event for a tool call its sandbox or approval policy refused (a
//! patch in read-only mode, a command that hit a read-only file system, a tool not available
//! in exec mode). Its rollout (`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*-<thread>.jsonl`,
//! appended to on resume) still records the call, its output, and an `item_completed` record
//! for every call it did report; a call with output but no such record was refused. Reading
//! it makes refusals explicit. The format is Codex-internal (measured on 0.169.0), so this is
//! best effort: lines that do not fit are skipped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::text::one_line;

/// A tool call the stream never showed, with the output the model got instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnreportedCall {
    pub name: String,
    /// The command, the patch's file headers, or the arguments, on one line.
    pub summary: String,
    /// The first line of what Codex answered the model.
    pub output: String,
}

impl UnreportedCall {
    pub(crate) fn describe(&self) -> String {
        format!(
            "Codex refused a tool call without reporting it (sandbox or approval policy): {} {} -> {}",
            self.name, self.summary, self.output
        )
    }
}

/// The rollout file of `thread_id`, if Codex wrote one.
pub(crate) fn find(codex_home: &Path, thread_id: &str) -> Option<PathBuf> {
    let suffix = format!("-{thread_id}.jsonl");
    let mut dirs = vec![codex_home.join("sessions")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
            {
                return Some(path);
            }
        }
    }
    None
}

/// The calls in `text` (rollout lines) that have an output but were never reported.
pub(crate) fn unreported_calls(text: &str) -> Vec<UnreportedCall> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut reported: HashSet<String> = HashSet::new();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let payload = &value["payload"];
        let kind = payload["type"].as_str().unwrap_or_default();
        let call_id = payload["call_id"].as_str().unwrap_or_default().to_string();
        match (value["type"].as_str(), kind) {
            (Some("response_item"), "function_call" | "custom_tool_call") => {
                let name = payload["name"].as_str().unwrap_or_default().to_string();
                let input = if kind == "custom_tool_call" {
                    &payload["input"]
                } else {
                    &payload["arguments"]
                };
                calls.push((call_id, name.clone(), call_summary(&name, input)));
            }
            (Some("response_item"), k) if k.ends_with("_call_output") => {
                outputs.push((call_id, output_text(&payload["output"])));
            }
            (Some("event_msg"), "item_completed" | "item_started") => {
                if let Some(id) = payload["item"]["id"].as_str() {
                    reported.insert(id.to_string());
                }
            }
            _ => {}
        }
    }
    calls
        .into_iter()
        .filter(|(id, _, _)| !reported.contains(id))
        .filter_map(|(id, name, summary)| {
            let (_, output) = outputs.iter().find(|(out_id, _)| *out_id == id)?;
            Some(UnreportedCall {
                name,
                summary,
                output: one_line(command_output(output).trim(), 200),
            })
        })
        .collect()
}

/// The command of an `exec_command`, the file headers of an `apply_patch`, else the arguments.
fn call_summary(name: &str, input: &Value) -> String {
    let text = match input {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let summary = if name == "apply_patch" {
        text.lines()
            .filter_map(|l| l.strip_prefix("*** "))
            .filter(|l| !l.starts_with("Begin Patch") && !l.starts_with("End Patch"))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        // Function arguments are JSON in a string: `{"cmd": "..."}`.
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|args| args["cmd"].as_str().map(str::to_string))
            .unwrap_or(text)
    };
    one_line(&summary, 200)
}

/// Outputs are strings, or lists of content items with `text`.
fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// For exec_command outputs, the part after Codex's header (`Chunk ID`, `Wall time`, ...).
fn command_output(output: &str) -> &str {
    output
        .split_once("\nOutput:\n")
        .map_or(output, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/codex")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn read_only_rollout_shows_the_refused_writes() {
        let calls = unreported_calls(&fixture("read_only.rollout.jsonl"));
        let shown: Vec<String> = calls.iter().map(UnreportedCall::describe).collect();
        insta::assert_debug_snapshot!(shown);
        assert_eq!(calls.len(), 3, "{calls:#?}");
        assert_eq!(calls[0].name, "apply_patch");
        assert_eq!(calls[0].summary, "Add File: evil.txt");
        assert!(calls[0].output.contains("blocked by read-only sandbox"));
        assert_eq!(calls[1].name, "exec_command");
        assert!(calls[1].output.contains("Read-only file system"));
    }

    #[test]
    fn write_rollout_has_nothing_unreported() {
        assert!(unreported_calls(&fixture("write.rollout.jsonl")).is_empty());
    }

    #[test]
    fn odd_lines_are_skipped() {
        let text = "not json\n{\"type\":\"response_item\",\"payload\":5}\n";
        assert!(unreported_calls(text).is_empty());
        assert_eq!(command_output("Chunk ID: 1\nOutput:\nhi\n"), "hi\n");
        assert_eq!(command_output("plain"), "plain");
    }
}
