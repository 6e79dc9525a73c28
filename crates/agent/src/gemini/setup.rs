//! The files a Gemini CLI run reads from its isolated state: settings, system prompt, policy.
//!
//! Written before every run, because implement, fix rounds and a read-only review of one job
//! share the state dir (and so the HOME, whose `.gemini/tmp/` holds the sessions to resume).

use std::path::{Path, PathBuf};

use codemill_core::agent::AgentMode;
use serde_json::{Value, json};

use crate::AgentError;

/// The only tools a read-only run registers (`tools.core`) and the policy allows.
pub(crate) const READ_ONLY_TOOLS: [&str; 5] = [
    "list_directory",
    "read_file",
    "read_many_files",
    "grep_search",
    "glob",
];

/// Policy for read-only runs, passed with `--policy` (user tier, above the CLI's defaults; a
/// repository's own `.gemini/policies` cannot override it). A global `deny` removes a tool from
/// the declarations sent to the model, so this leaves exactly the reading tools: no write_file,
/// replace, run_shell_command, sub-agents, web access or MCP tools.
/// With `knowledge`, codemill's own MCP server's tools (the knowledge tools) are allowed too.
fn read_only_policy(knowledge: bool) -> String {
    let allowed: Vec<String> = READ_ONLY_TOOLS.iter().map(|t| format!("{t:?}")).collect();
    let mut policy = format!(
        "# Written by codemill for read-only (reviewer) runs.\n\
         [[rule]]\ntoolName = \"*\"\ndecision = \"deny\"\npriority = 900\n\n\
         [[rule]]\ntoolName = [{}]\ndecision = \"allow\"\npriority = 999\n",
        allowed.join(", ")
    );
    if knowledge {
        policy.push_str(&format!(
            "\n[[rule]]\nmcpName = {:?}\ntoolName = \"*\"\ndecision = \"allow\"\npriority = 999\n",
            crate::knowledge::SERVER
        ));
    }
    policy
}

/// Adds codemill's knowledge MCP server to `settings` (trusted: its tools need no prompt).
pub(crate) fn add_knowledge_server(settings: &mut Value, server: &crate::knowledge::Server) {
    settings["mcpServers"] = json!({
        crate::knowledge::SERVER: {
            "command": server.command,
            "args": server.args,
            "env": {crate::knowledge::PASS_VAR: server.pass},
            "trust": true,
            "timeout": 60_000,
        }
    });
}

/// Paths of one run's isolated state under the request's state dir.
pub(crate) struct StateDirs {
    /// `HOME`: `.gemini/settings.json`, `.gemini/GEMINI.md`, and the CLI's sessions.
    pub home: PathBuf,
    /// `TMPDIR`: the CLI writes its error reports here instead of the host's /tmp.
    pub tmp: PathBuf,
    /// `--policy` file of read-only runs.
    pub read_only_policy: PathBuf,
    /// Never created: the system settings paths point here so host-wide files
    /// (`/etc/gemini-cli/*.json`) do not leak in.
    pub no_system_settings: PathBuf,
}

impl StateDirs {
    pub(crate) fn create(state_dir: &Path) -> Result<StateDirs, AgentError> {
        let dirs = StateDirs {
            home: state_dir.join("home"),
            tmp: state_dir.join("tmp"),
            read_only_policy: state_dir.join("policies").join("read-only.toml"),
            no_system_settings: state_dir.join("no-system-settings"),
        };
        for dir in [
            dirs.home.join(".gemini"),
            dirs.tmp.clone(),
            state_dir.join("policies"),
        ] {
            crate::private::create_dir(dir).map_err(AgentError::StateDir)?;
        }
        Ok(dirs)
    }

    fn gemini_dir(&self) -> PathBuf {
        self.home.join(".gemini")
    }

    /// Writes settings, the appended system prompt and (read-only) the policy for one run.
    pub(crate) fn write(
        &self,
        settings: &Value,
        system_prompt: Option<&str>,
        mode: AgentMode,
        knowledge: bool,
    ) -> Result<(), AgentError> {
        let text =
            serde_json::to_string_pretty(settings).map_err(|e| AgentError::StateDir(e.into()))?;
        crate::private::write(self.gemini_dir().join("settings.json"), text)
            .map_err(AgentError::StateDir)?;
        // The global GEMINI.md lands at the end of the CLI's own system instruction (measured),
        // which is what `system_prompt` asks for; GEMINI_SYSTEM_MD would replace it instead.
        let context = self.gemini_dir().join("GEMINI.md");
        match system_prompt {
            Some(text) => crate::private::write(&context, text).map_err(AgentError::StateDir)?,
            None => match fs_err::remove_file(&context) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(AgentError::StateDir(e));
                }
                _ => {}
            },
        }
        if mode == AgentMode::ReadOnly {
            crate::private::write(&self.read_only_policy, read_only_policy(knowledge))
                .map_err(AgentError::StateDir)?;
        }
        Ok(())
    }
}

/// `~/.gemini/settings.json` for one run.
///
/// `max_session_turns` is the CLI's own turn limit (per invocation, also when resuming);
/// `max_attempts` bounds its retries of a failed model call (1 = no retry; the CLI caps it at 10).
pub(crate) fn settings(
    mode: AgentMode,
    max_session_turns: Option<u32>,
    max_attempts: u32,
) -> Value {
    let mut settings = json!({
        // Without this the CLI finds no auth method in a fresh HOME and exits 41.
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        // Usage statistics and the update check phone home (measured: DNS lookups without these
        // settings, none with them).
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false, "logPrompts": false},
        "general": {
            "enableAutoUpdate": false,
            "enableAutoUpdateNotification": false,
            "maxAttempts": max_attempts.clamp(1, 10),
            "checkpointing": {"enabled": false},
        },
        "model": {
            "maxSessionTurns": max_session_turns.map_or(-1, i64::from),
            // Loop detection ends a run with `success` after five identical tool calls (and may
            // ask another model); codemill's own turn and time limits decide instead.
            "disableLoopDetection": true,
        },
        "ide": {"enabled": false},
        // The environment comes from codemill only, not from a `.env` in the worktree.
        "advanced": {"ignoreLocalEnv": true},
    });
    if mode == AgentMode::ReadOnly {
        settings["tools"] = json!({"core": READ_ONLY_TOOLS});
    }
    settings
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn read_only_settings_restrict_the_tools() {
        let write = settings(AgentMode::Write, Some(7), 3);
        assert!(write.get("tools").is_none());
        assert_eq!(write["model"]["maxSessionTurns"], 7);
        assert_eq!(write["general"]["maxAttempts"], 3);
        let read = settings(AgentMode::ReadOnly, None, 50);
        assert_eq!(read["model"]["maxSessionTurns"], -1);
        assert_eq!(read["general"]["maxAttempts"], 10);
        assert_eq!(read["tools"]["core"].as_array().unwrap().len(), 5);
        assert!(read_only_policy(true).contains("mcpName = \"codemill\""));
        assert_eq!(
            read_only_policy(false),
            "# Written by codemill for read-only (reviewer) runs.\n[[rule]]\ntoolName = \"*\"\n\
             decision = \"deny\"\npriority = 900\n\n[[rule]]\ntoolName = [\"list_directory\", \
             \"read_file\", \"read_many_files\", \"grep_search\", \"glob\"]\n\
             decision = \"allow\"\npriority = 999\n"
        );
    }
}
