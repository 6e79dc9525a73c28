//! Configuration files: `codemill.toml` (service) and `.codemill/pipeline.toml` (repository policy).
//!
//! Parsing is pure: callers pass the text and the path to name in errors. Every table rejects
//! unknown keys, and errors name the file, the key and what was expected.

use std::fmt;

pub mod guard;
pub mod notify;
pub mod vendors;

mod agents;
mod policy;
mod service;
mod stages;

#[cfg(test)]
mod tests;

pub use guard::{Budgets, ProjectSandbox, SandboxConfig, SandboxMode};
pub use notify::{NotifyChannel, NotifyOn, NotifyTarget, SmtpTls};

pub use vendors::{
    ForgeSettings, GithubApp, GithubSettings, JiraAuth, JiraSettings, LinearSettings, Roles,
    StatusMap, TrackerSettings, WebhookAuthKind, WebhookSettings,
};

pub use agents::{AgentConfig, Backend, ProviderApi, ProviderConfig};
pub use policy::{GateSpec, RepoPolicy, detect_gates};
pub use service::{Config, ProjectConfig, Retention};
pub use stages::{ResolvedAgent, StageAgent, StageMap};

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
}

fn toml_error(file: &str, text: &str, err: toml::de::Error) -> ConfigError {
    let message = err.message().to_string();
    let Some(span) = err.span() else {
        return ConfigError {
            file: file.into(),
            location: String::new(),
            message,
        };
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    // The table header above the error, to name the key in full.
    let table = text[..line_start]
        .lines()
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
