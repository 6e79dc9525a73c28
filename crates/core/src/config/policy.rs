//! `.codemill/pipeline.toml`, the repository's own policy: gates, prepare steps, fix rounds,
//! stage map and triage; and the gates detected when a repository has no policy file.

use serde::{Deserialize, Serialize};

use super::{ConfigError, StageMap, toml_error};

/// One gate: an argument list run in the worktree. Never a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub name: String,
    pub command: Vec<String>,
    /// Relative to the repository root.
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Treat running out of time as a failure an agent can fix (a test that hangs), so it
    /// starts a fix round. By default a timeout stops the job instead: usually the machine or
    /// the limit is the problem, not the code.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fix_on_timeout: bool,
}

/// The repository's own policy, `.codemill/pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RepoPolicy {
    #[serde(default)]
    pub gates: Vec<GateSpec>,
    /// Run once per job, with network, on the base commit before any agent step (`cargo
    /// fetch`, `npm ci`): sandboxed like gates otherwise.
    #[serde(default)]
    pub prepare: Vec<GateSpec>,
    #[serde(default)]
    pub max_fix_rounds: Option<u32>,
    /// Sub-tasks at most when the planner splits a ticket into a graph (default 8, at most 32).
    #[serde(default)]
    pub max_subtasks: Option<u32>,
    /// Which agent and model each stage uses.
    #[serde(default)]
    pub stages: StageMap,
    /// How review findings are sorted into fix_now, backlog and ignore.
    #[serde(default)]
    pub triage: crate::triage::TriagePolicy,
}

impl RepoPolicy {
    /// The limit on a plan's sub-tasks: the repository's, else the service's `[pipeline]` one.
    pub fn max_subtasks(&self, service: u32) -> u32 {
        self.max_subtasks.unwrap_or(service)
    }

    pub fn parse(text: &str, file: &str) -> Result<RepoPolicy, ConfigError> {
        let policy: RepoPolicy = toml::from_str(text).map_err(|e| toml_error(file, text, e))?;
        if let Some(n) = policy.max_subtasks
            && !(1..=32).contains(&n)
        {
            return Err(ConfigError::at(
                file,
                "max_subtasks",
                format!("expected 1 to 32 sub-tasks, found {n}"),
            ));
        }
        let listed = policy
            .gates
            .iter()
            .enumerate()
            .map(|(i, g)| ("gates", i, g))
            .chain(
                policy
                    .prepare
                    .iter()
                    .enumerate()
                    .map(|(i, g)| ("prepare", i, g)),
            );
        for (table, i, g) in listed {
            if g.command.is_empty() || g.command[0].trim().is_empty() {
                return Err(ConfigError::at(
                    file,
                    &format!("{table}[{i}].command"),
                    format!(
                        "gate {:?}: expected a non-empty argument list such as [\"cargo\", \"test\"]",
                        g.name
                    ),
                ));
            }
            if let Some(dir) = &g.workdir
                && (dir.starts_with('/') || dir.split('/').any(|p| p == ".."))
            {
                return Err(ConfigError::at(
                    file,
                    &format!("{table}[{i}].workdir"),
                    format!("expected a path inside the repository, found {dir:?}"),
                ));
            }
        }
        Ok(policy)
    }
}

/// Gates detected from the files at the repository root when it has no policy file.
pub fn detect_gates(root_files: &[&str]) -> Vec<GateSpec> {
    let has = |f: &str| root_files.contains(&f);
    let gate = |name: &str, cmd: &[&str]| GateSpec {
        name: name.into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        workdir: None,
        timeout_secs: None,
        fix_on_timeout: false,
    };
    let mut gates = Vec::new();
    if has("Cargo.toml") {
        gates.push(gate(
            "build",
            &["cargo", "build", "--all-targets", "--quiet"],
        ));
        gates.push(gate("test", &["cargo", "test", "--quiet"]));
    } else if has("package.json") {
        let pm = if has("pnpm-lock.yaml") { "pnpm" } else { "npm" };
        gates.push(gate("test", &[pm, "test"]));
    } else if has("go.mod") {
        gates.push(gate("vet", &["go", "vet", "./..."]));
        gates.push(gate("test", &["go", "test", "./..."]));
    } else if has("pyproject.toml") || has("setup.py") || has("pytest.ini") {
        gates.push(gate("test", &["python3", "-m", "pytest", "-q"]));
    } else if has("Makefile") {
        gates.push(gate("test", &["make", "test"]));
    }
    gates
}
