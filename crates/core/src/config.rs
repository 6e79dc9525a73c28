//! Configuration files: `codemill.toml` (service) and `.codemill/pipeline.toml` (repository policy).
//!
//! Parsing is pure: callers pass the text and the path to name in errors. Every table rejects
//! unknown keys, and errors name the file, the key and what was expected.

use std::fmt;

pub mod guard;
pub mod notify;
pub mod vendors;

mod agents;
mod merge;
mod policy;
mod service;
mod stages;
mod telemetry;
mod web;

#[cfg(test)]
mod tests;

pub use guard::{Budgets, ProjectSandbox, SandboxConfig, SandboxMode};
pub use notify::{NotifyChannel, NotifyOn, NotifyTarget, SmtpTls};

pub use vendors::{
    ForgeSettings, GithubApp, GithubSettings, GitlabSettings, JiraAuth, JiraSettings,
    LinearSettings, Roles, StatusMap, TrackerSettings, WebhookAuthKind, WebhookSettings,
};

pub use agents::{AgentConfig, Backend, ProviderApi, ProviderConfig};
pub use merge::{MAX_BATCH, MergeMethod, MergeQueueSettings};
pub use policy::{GateSpec, RepoPolicy, detect_gates};
pub use service::{Config, ProjectConfig, Retention};
pub use stages::{ResolvedAgent, StageAgent, StageMap};
pub use telemetry::{TelemetryConfig, parse_headers as parse_telemetry_headers};
pub use web::{OidcConfig, ROLES, WebConfig};

/// A configuration file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {location}{message}")]
pub struct ConfigError {
    pub file: String,
    /// "line 3, key `agent.modle`: " or empty.
    pub location: String,
    pub message: String,
}

impl ConfigError {
    fn at(file: &str, key: &str, message: impl fmt::Display) -> Self {
        ConfigError {
            file: file.to_string(),
            location: format!("key `{key}`: "),
            message: message.to_string(),
        }
    }

    /// Add the line of the key this error names, when it can be found in `text`.
    fn with_line(mut self, text: &str) -> Self {
        if let Some(key) = self
            .location
            .strip_prefix("key `")
            .and_then(|rest| rest.strip_suffix("`: "))
            && let Some(line) = line_of_key(text, key)
        {
            self.location = format!("line {line}, key `{key}`: ");
        }
        self
    }
}

/// The 1-based line where dotted `key` is set: `name = …` under the table `[parent]` (or
/// `[[parent]]`), or the header `[key]` itself.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (parent, name) = key.rsplit_once('.').unwrap_or(("", key));
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .split('.')
                .map(|p| p.trim().trim_matches('"'))
                .collect::<Vec<_>>()
                .join(".");
            if table == key {
                return Some(i + 1);
            }
            continue;
        }
        if table == parent
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == name
        {
            return Some(i + 1);
        }
    }
    None
}

/// An unknown field that is a table of its own (`[agents.cursor]`, `[telemetry]`): toml points
/// at the start of the enclosing table, which may be line 1. Name the header that opened it.
fn unknown_table(file: &str, text: &str, start: usize, message: &str) -> Option<ConfigError> {
    let field = message
        .strip_prefix("unknown field `")?
        .split('`')
        .next()?
        .to_string();
    let (i, header) = text
        .lines()
        .enumerate()
        .skip(text[..start].matches('\n').count())
        .find(|(_, l)| {
            let l = l.trim();
            l.starts_with('[')
                && l.trim_matches(|c| c == '[' || c == ']')
                    .split('.')
                    .any(|part| part.trim().trim_matches('"') == field)
        })?;
    let header = header.trim().trim_matches(|c| c == '[' || c == ']').trim();
    Some(ConfigError {
        file: file.into(),
        location: format!("line {}, table `[{header}]`: ", i + 1),
        message: format!(
            "unknown table `{field}`: {}",
            message.trim_start_matches(&format!("unknown field `{field}`, "))
        ),
    })
}

/// serde's words for Rust types, in the words of the file.
fn plain_words(message: &str) -> String {
    [
        ("expected u8", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
    ]
    .iter()
    .fold(message.to_string(), |m, (rust, plain)| {
        m.replace(rust, plain)
    })
}

fn toml_error(file: &str, text: &str, err: toml::de::Error) -> ConfigError {
    let message = plain_words(err.message());
    let Some(span) = err.span() else {
        return ConfigError {
            file: file.into(),
            location: String::new(),
            message,
        };
    };
    let start = span.start.min(text.len());
    if let Some(located) = unknown_table(file, text, start, &message) {
        return located;
    }
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    // The table header at or above the error, to name the key in full (a table's own errors,
    // such as a missing field or a duplicate table, point at its header line).
    let table = text[..line_start]
        .lines()
        .chain(std::iter::once(line))
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let location = match (table, key) {
        (Some(t), Some(k)) => format!("line {line_no}, key `{t}.{k}`: "),
        (None, Some(k)) => format!("line {line_no}, key `{k}`: "),
        (Some(t), None) => format!("line {line_no}, table `[{t}]`: "),
        (None, None) => format!("line {line_no}: "),
    };
    ConfigError {
        file: file.into(),
        location,
        message,
    }
}
