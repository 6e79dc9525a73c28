//! The per-run files opencode reads: isolated HOME/XDG directories, the generated config, the
//! prompt and the appended system prompt, and the stub that keeps opencode from installing npm packages.
//!
//! The config is built by a pure function ([`config`]) so its exact shape is unit-tested. The
//! API key is never written: the config names an environment variable (`{env:VAR}`) that only
//! the child's environment holds.

use std::path::{Path, PathBuf};

use codemill_core::agent::AgentMode;
use serde_json::{Value, json};

use crate::{AgentError, AgentRequest, Api};

/// Environment variable that carries the API key into opencode (and nowhere else).
pub(crate) const API_KEY_VAR: &str = "CODEMILL_OPENCODE_API_KEY";
/// Provider id in the generated config; models are addressed as `codemill/<model>`.
pub(crate) const PROVIDER_ID: &str = "codemill";
/// The custom agent codemill runs (`--agent codemill`), with the mode's permissions.
pub(crate) const AGENT_NAME: &str = "codemill";
/// The version opencode's own plugin package would be installed at; only the name matters to
/// opencode's "is it installed" check, the version is informative.
const PLUGIN_PACKAGE: &str = "@opencode-ai/plugin";
const PLUGIN_VERSION: &str = "1.18.33";

/// The isolated directories under the state dir.
#[derive(Debug, Clone)]
pub(crate) struct StateDirs {
    pub home: PathBuf,
    pub xdg_config: PathBuf,
    pub xdg_data: PathBuf,
    pub xdg_cache: PathBuf,
    pub xdg_state: PathBuf,
    pub tmp: PathBuf,
    /// `OPENCODE_CONFIG`: written anew for every run (mode and limits may differ per round).
    pub config_file: PathBuf,
    /// Listed in the config's `instructions` (after the repository's) when the request has a
    /// system prompt.
    pub system_prompt_file: PathBuf,
    /// opencode's stdin: the prompt, verbatim.
    pub prompt_file: PathBuf,
}

impl StateDirs {
    pub(crate) fn new(state_dir: &Path) -> StateDirs {
        StateDirs {
            home: state_dir.join("home"),
            xdg_config: state_dir.join("xdg/config"),
            xdg_data: state_dir.join("xdg/data"),
            xdg_cache: state_dir.join("xdg/cache"),
            xdg_state: state_dir.join("xdg/state"),
            tmp: state_dir.join("tmp"),
            config_file: state_dir.join("opencode.json"),
            system_prompt_file: state_dir.join("system-prompt.md"),
            prompt_file: state_dir.join("prompt.md"),
        }
    }

    /// Creates the directories and the plugin-dependency stub.
    pub(crate) fn create(&self) -> Result<(), AgentError> {
        for dir in [
            &self.home,
            &self.xdg_config,
            &self.xdg_data,
            &self.xdg_cache,
            &self.xdg_state,
            &self.tmp,
        ] {
            crate::private::create_dir(dir).map_err(AgentError::StateDir)?;
        }
        self.stub_plugin_dependency()
    }

    /// opencode's global config dir (`$XDG_CONFIG_HOME/opencode`).
    fn opencode_config_dir(&self) -> PathBuf {
        self.xdg_config.join("opencode")
    }

    /// On start opencode runs `npm install @opencode-ai/plugin` in the background in its config
    /// dir (for user plugins written against that package) unless the dir already has a
    /// `node_modules` and a lock file listing every dependency of its `package.json`. That
    /// install goes to the npm registry and takes seconds of CPU; codemill loads no plugins, so
    /// an empty install that satisfies the check is written instead.
    fn stub_plugin_dependency(&self) -> Result<(), AgentError> {
        let dir = self.opencode_config_dir();
        crate::private::create_dir(dir.join("node_modules")).map_err(AgentError::StateDir)?;
        let manifest = json!({"dependencies": {PLUGIN_PACKAGE: PLUGIN_VERSION}});
        let lock = json!({
            "lockfileVersion": 3,
            "packages": {"": {"dependencies": {PLUGIN_PACKAGE: PLUGIN_VERSION}}},
        });
        for (name, value) in [("package.json", manifest), ("package-lock.json", lock)] {
            crate::private::write(dir.join(name), format!("{value:#}\n"))
                .map_err(AgentError::StateDir)?;
        }
        Ok(())
    }

    /// Writes the prompt, the config and the system prompt file the config may point at.
    pub(crate) fn write_files(&self, req: &AgentRequest, npm: &str) -> Result<(), AgentError> {
        crate::private::write(&self.prompt_file, &req.prompt).map_err(AgentError::StateDir)?;
        let mut instructions: Vec<PathBuf> = repo_instructions(&req.workdir).into_iter().collect();
        if let Some(text) = &req.system_prompt {
            crate::private::write(&self.system_prompt_file, text).map_err(AgentError::StateDir)?;
            instructions.push(self.system_prompt_file.clone());
        }
        let config = config(req, npm, &instructions);
        crate::private::write(&self.config_file, format!("{config:#}\n"))
            .map_err(AgentError::StateDir)
    }
}

/// The repository's agent instructions, as opencode itself would pick them in the worktree root
/// (`AGENTS.md`, else `CLAUDE.md`). `OPENCODE_DISABLE_PROJECT_CONFIG` switches off opencode's
/// own discovery together with the repository's `opencode.json`, so they are listed explicitly.
fn repo_instructions(workdir: &Path) -> Option<PathBuf> {
    ["AGENTS.md", "CLAUDE.md"]
        .iter()
        .map(|name| workdir.join(name))
        .find(|path| path.is_file())
}

/// The AI SDK provider package for `api`, or None when opencode cannot speak it here.
pub(crate) fn provider_package(api: Api) -> Option<&'static str> {
    match api {
        // Both are bundled inside the opencode binary: nothing is installed at run time.
        Api::Anthropic => Some("@ai-sdk/anthropic"),
        Api::OpenAiChat => Some("@ai-sdk/openai-compatible"),
        Api::OpenAiResponses | Api::Gemini => None,
    }
}

/// The generated opencode config for `req`.
///
/// - one provider (`codemill`) with the local base URL and the key as `{env:VAR}`; no other
///   provider is enabled, and models are defined here, so nothing is looked up online;
/// - sharing, auto-update, snapshots (codemill owns git), LSP servers and formatters (they would
///   rewrite the agent's files) are off;
/// - the `codemill` agent carries the permissions of the mode and opencode's step limit;
/// - `instructions` lists files whose text opencode adds to its system prompt.
pub(crate) fn config(req: &AgentRequest, npm: &str, instructions: &[PathBuf]) -> Value {
    let base = req.endpoint.base_url.trim_end_matches('/');
    let model = format!("{PROVIDER_ID}/{}", req.model);
    let mut config = json!({
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            PROVIDER_ID: {
                "npm": npm,
                "name": "codemill",
                "options": {
                    "baseURL": format!("{base}/v1"),
                    "apiKey": format!("{{env:{API_KEY_VAR}}}"),
                },
                "models": { req.model.clone(): { "name": req.model } },
            }
        },
        "enabled_providers": [PROVIDER_ID],
        "model": model,
        "small_model": model,
        "default_agent": AGENT_NAME,
        "agent": {
            AGENT_NAME: {
                "mode": "primary",
                "description": "A codemill job",
                "steps": req.limits.max_turns.max(1),
                "permission": permissions(req.mode),
            }
        },
        "share": "disabled",
        "autoupdate": false,
        "snapshot": false,
        "lsp": false,
        "formatter": false,
        "plugin": [],
        "mcp": {},
    });
    if let Some(server) = crate::knowledge::server(req) {
        let mut command = vec![server.command];
        command.extend(server.args);
        // The pass, like the key, only by name: the child's environment holds it.
        config["mcp"] = json!({
            crate::knowledge::SERVER: {
                "type": "local",
                "command": command,
                "environment": {
                    crate::knowledge::PASS_VAR: format!("{{env:{}}}", crate::knowledge::PASS_VAR)
                },
                "enabled": true,
                "timeout": 30_000,
            }
        });
        if req.mode == AgentMode::ReadOnly {
            config["agent"][AGENT_NAME]["permission"][format!("{}_*", crate::knowledge::SERVER)] =
                json!("allow");
        }
    }
    if !instructions.is_empty() {
        let paths: Vec<String> = instructions
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        config["instructions"] = json!(paths);
    }
    config
}

/// opencode permissions: rules are matched last-first in file order, so later keys override
/// `*`. serde_json writes keys sorted, and `*` sorts before every letter, so it comes first.
///
/// Denied tools are not offered to the model at all (measured on 1.18.33: read-only requests
/// carry only `glob`, `grep` and `read`), and a call to one anyway fails without effect.
fn permissions(mode: AgentMode) -> Value {
    match mode {
        AgentMode::Write => json!({
            // write, edit, bash, read, ... without prompts (an "ask" would be auto-rejected).
            "*": "allow",
            // Its edit tools stay inside the worktree.
            "external_directory": "deny",
            // Offline and unattended: no web, no questions, no sub-agent sessions (whose steps
            // codemill could neither see nor count).
            "webfetch": "deny",
            "websearch": "deny",
            "question": "deny",
            "task": "deny",
        }),
        AgentMode::ReadOnly => json!({
            "*": "deny",
            "read": "allow",
            "glob": "allow",
            "grep": "allow",
            "list": "allow",
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{AgentLimits, Endpoint};
    use secrecy::SecretString;

    fn request(mode: AgentMode, system_prompt: Option<&str>) -> AgentRequest {
        AgentRequest {
            workdir: "/work/tree".into(),
            prompt: "do it".into(),
            system_prompt: system_prompt.map(str::to_string),
            mode,
            resume_session: None,
            model: "claude-sonnet-4-5".into(),
            limits: AgentLimits {
                max_turns: 7,
                ..AgentLimits::default()
            },
            state_dir: "/state".into(),
            log_path: "/logs/agent.log".into(),
            endpoint: Endpoint {
                api: Api::Anthropic,
                base_url: "http://127.0.0.1:4000/".into(),
                api_key: SecretString::from("sk-secret-never-written"),
            },
            exec: codemill_process::ExecPolicy::new(
                codemill_process::Sandbox::Off,
                codemill_process::Limits::default(),
            ),
            knowledge: None,
            cancel: Default::default(),
        }
    }

    #[test]
    fn write_mode_config() {
        let dirs = StateDirs::new(Path::new("/state"));
        let req = request(AgentMode::Write, Some("Be brief."));
        let instructions = [
            PathBuf::from("/work/tree/AGENTS.md"),
            dirs.system_prompt_file.clone(),
        ];
        let config = config(&req, "@ai-sdk/anthropic", &instructions);
        insta::assert_json_snapshot!(config);
        assert!(!config.to_string().contains("sk-secret"));
    }

    #[test]
    fn read_only_config_denies_everything_but_reading() {
        let req = request(AgentMode::ReadOnly, None);
        let config = config(&req, "@ai-sdk/openai-compatible", &[]);
        insta::assert_json_snapshot!(config["agent"]);
        assert!(config.get("instructions").is_none());
        // File order matters to opencode: the catch-all must come before the exceptions.
        let text = format!("{config:#}");
        let star = text.find("\"*\": \"deny\"").unwrap();
        assert!(star < text.find("\"read\": \"allow\"").unwrap());
        assert_eq!(
            config["provider"]["codemill"]["npm"],
            "@ai-sdk/openai-compatible"
        );
    }

    #[test]
    fn packages_per_api() {
        assert_eq!(provider_package(Api::Anthropic), Some("@ai-sdk/anthropic"));
        assert_eq!(
            provider_package(Api::OpenAiChat),
            Some("@ai-sdk/openai-compatible")
        );
        assert_eq!(provider_package(Api::Gemini), None);
        assert_eq!(provider_package(Api::OpenAiResponses), None);
    }

    #[test]
    fn state_dirs_hold_the_plugin_stub() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = StateDirs::new(tmp.path());
        dirs.create().unwrap();
        let config_dir = dirs.opencode_config_dir();
        assert!(config_dir.join("node_modules").is_dir());
        let lock: Value = serde_json::from_str(
            &std::fs::read_to_string(config_dir.join("package-lock.json")).unwrap(),
        )
        .unwrap();
        assert!(lock["packages"][""]["dependencies"][PLUGIN_PACKAGE].is_string());
        // Idempotent: a fix round reuses the same state dir.
        dirs.create().unwrap();
    }
}
