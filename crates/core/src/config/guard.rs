//! `[sandbox]` and `[budgets]` of codemill.toml, and their per-project overrides: what untrusted
//! code may see and reach, and how much a job, ticket, project and day may spend. Only the
//! operator's file sets these; a repository's policy never can.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Whether agents and gates run in bubblewrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// The default: refuse to run jobs if bubblewrap cannot make its namespaces.
    #[default]
    Bwrap,
    /// No sandbox: agents and gates run as plain child processes of codemill. Must be written
    /// explicitly; `doctor`, `serve` and every job's log warn about it.
    Off,
}

impl SandboxMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            SandboxMode::Bwrap => "bwrap",
            SandboxMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSandbox {
    mode: Option<SandboxMode>,
    bwrap: Option<String>,
    expose: Vec<PathBuf>,
    hide: Vec<PathBuf>,
    env: BTreeMap<String, String>,
    max_processes: Option<u64>,
    max_file_size_mb: Option<u64>,
    cpu_secs: Option<u64>,
    max_open_files: Option<u64>,
    uid: Option<u32>,
}

/// The sandbox settings, with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// The bubblewrap executable (a bare name is looked up on PATH).
    pub bwrap: String,
    /// Host paths every sandbox sees read-only (toolchains outside `/usr`).
    pub expose: Vec<PathBuf>,
    /// Host paths masked in every sandbox, on top of the built-in list of secret files.
    pub hide: Vec<PathBuf>,
    /// Fixed, non-secret variables every sandboxed process gets.
    pub env: BTreeMap<String, String>,
    pub max_processes: u64,
    pub max_file_size_mb: u64,
    pub cpu_secs: u64,
    pub max_open_files: u64,
    /// When codemill runs as root: the unprivileged host uid sandboxes run as. The kernel does
    /// not apply the process limit to uid 0, so without it a fork bomb is not contained. That
    /// uid must be able to reach every mounted path (codemill's home, toolchains); the paths it
    /// writes are handed over to it. Running codemill as a dedicated user is simpler.
    pub uid: Option<u32>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            mode: SandboxMode::Bwrap,
            bwrap: "bwrap".into(),
            expose: Vec::new(),
            hide: Vec::new(),
            env: BTreeMap::new(),
            max_processes: 1024,
            max_file_size_mb: 4096,
            cpu_secs: 4 * 3600,
            max_open_files: 8192,
            uid: None,
        }
    }
}

impl RawSandbox {
    pub(crate) fn resolve(self, file: &str) -> Result<SandboxConfig, super::ConfigError> {
        let d = SandboxConfig::default();
        for (key, paths) in [
            ("sandbox.expose", &self.expose),
            ("sandbox.hide", &self.hide),
        ] {
            if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
                return Err(super::ConfigError::at(
                    file,
                    key,
                    format!(
                        "expected absolute paths, found {:?}",
                        p.display().to_string()
                    ),
                ));
            }
        }
        if let Some(k) = self.env.keys().find(|k| !super::vendors::is_env_name(k)) {
            return Err(super::ConfigError::at(
                file,
                &format!("sandbox.env.{k}"),
                "expected an environment variable name (letters, digits, '_')",
            ));
        }
        let positive = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(super::ConfigError::at(
                file,
                &format!("sandbox.{key}"),
                "expected a number above 0",
            )),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        Ok(SandboxConfig {
            mode: self.mode.unwrap_or_default(),
            bwrap: self.bwrap.unwrap_or(d.bwrap),
            expose: self.expose,
            hide: self.hide,
            env: self.env,
            max_processes: positive("max_processes", self.max_processes, d.max_processes)?,
            max_file_size_mb: positive(
                "max_file_size_mb",
                self.max_file_size_mb,
                d.max_file_size_mb,
            )?,
            cpu_secs: positive("cpu_secs", self.cpu_secs, d.cpu_secs)?,
            max_open_files: positive("max_open_files", self.max_open_files, d.max_open_files)?,
            uid: match self.uid {
                Some(0) => {
                    return Err(super::ConfigError::at(
                        file,
                        "sandbox.uid",
                        "expected an unprivileged uid, not 0",
                    ));
                }
                other => other,
            },
        })
    }
}

/// Spending limits. Each is optional; the gateway refuses a model request once spend is at or
/// over any of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// One job (one attempt at a ticket).
    #[serde(default)]
    pub job_usd: Option<f64>,
    /// Every job of one ticket together.
    #[serde(default)]
    pub ticket_usd: Option<f64>,
    /// One project in one UTC day.
    #[serde(default)]
    pub project_day_usd: Option<f64>,
    /// Everything in one UTC day.
    #[serde(default)]
    pub day_usd: Option<f64>,
    /// Tokens of one job (input, output and cache together).
    #[serde(default)]
    pub job_tokens: Option<u64>,
}

impl Budgets {
    /// `self` with every limit `over` sets replaced.
    pub fn overridden_by(&self, over: &Budgets) -> Budgets {
        Budgets {
            job_usd: over.job_usd.or(self.job_usd),
            ticket_usd: over.ticket_usd.or(self.ticket_usd),
            project_day_usd: over.project_day_usd.or(self.project_day_usd),
            day_usd: over.day_usd.or(self.day_usd),
            job_tokens: over.job_tokens.or(self.job_tokens),
        }
    }

    pub(crate) fn check(&self, file: &str, section: &str) -> Result<(), super::ConfigError> {
        for (key, value) in [
            ("job_usd", self.job_usd),
            ("ticket_usd", self.ticket_usd),
            ("project_day_usd", self.project_day_usd),
            ("day_usd", self.day_usd),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(super::ConfigError::at(
                    file,
                    &format!("{section}.{key}"),
                    format!("expected an amount in dollars of 0 or more, found {v}"),
                ));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == Budgets::default()
    }
}

/// Per-project sandbox settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProjectSandbox {
    /// Host names agents and gates of this project may reach through codemill's egress proxy
    /// (`*.example.com` allows subdomains). Empty: no network but the model gateway.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
}

impl ProjectSandbox {
    pub(crate) fn check(&self, file: &str, project: &str) -> Result<(), super::ConfigError> {
        for host in &self.allow_hosts {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            let ok = !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(super::ConfigError::at(
                    file,
                    &format!("projects.{project}.sandbox.allow_hosts"),
                    format!(
                        "expected host names such as \"index.crates.io\" or \"*.npmjs.org\", found {host:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether `host` is on the list (case-insensitive; `*.x` matches subdomains of x).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == pattern,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_budgets_override_only_what_they_set() {
        let global = Budgets {
            job_usd: Some(20.0),
            day_usd: Some(100.0),
            ..Budgets::default()
        };
        let project = Budgets {
            job_usd: Some(5.0),
            job_tokens: Some(1000),
            ..Budgets::default()
        };
        let b = global.overridden_by(&project);
        assert_eq!(b.job_usd, Some(5.0));
        assert_eq!(b.day_usd, Some(100.0));
        assert_eq!(b.job_tokens, Some(1000));
    }

    #[test]
    fn hosts_match_exactly_or_by_subdomain() {
        let s = ProjectSandbox {
            allow_hosts: vec!["index.crates.io".into(), "*.npmjs.org".into()],
        };
        assert!(s.allows("index.crates.io"));
        assert!(s.allows("INDEX.crates.io."));
        assert!(s.allows("registry.npmjs.org"));
        assert!(!s.allows("npmjs.org"));
        assert!(!s.allows("crates.io"));
        assert!(!s.allows("evil-index.crates.io"));
        assert!(!s.allows("index.crates.io.evil.com"));
    }
}
