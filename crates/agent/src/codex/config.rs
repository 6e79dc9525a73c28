//! The `config.toml` codemill writes into the isolated `CODEX_HOME` before every run (pure).
//!
//! Everything Codex should do differently from its defaults lives here, so the command line
//! stays the same for new and resumed runs. Every key was checked with `--strict-config`
//! against Codex CLI 0.169.0 (which the runs also pass, so a renamed key fails loudly).

use std::fmt::Write as _;
use std::time::Duration;

/// The provider id codemill defines; Codex's own providers are never used.
pub(crate) const PROVIDER_ID: &str = "codemill";

/// The values of one run.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig<'a> {
    pub model: &'a str,
    /// `http://host:port` without `/v1`; Codex posts to `{base}/v1/responses`.
    pub base_url: &'a str,
    /// Codex's `sandbox_mode`: `read-only`, `workspace-write` or `danger-full-access`.
    pub sandbox_mode: &'a str,
    /// Appended to Codex's instructions as a developer message.
    pub developer_instructions: Option<&'a str>,
    /// The environment variable holding the key; Codex sends it as `Authorization: Bearer`.
    pub key_env: &'a str,
    pub request_max_retries: u32,
    pub stream_max_retries: u32,
    pub stream_idle_timeout: Duration,
    /// codemill's knowledge MCP server: command and arguments. Its pass comes from the
    /// environment (`env_vars`), so this file still holds no secret.
    pub mcp: Option<(&'a str, &'a [String])>,
}

/// Renders `config.toml`. It holds no secret: only the name of the key's variable.
pub(crate) fn render(c: &RunConfig<'_>) -> String {
    let mut out = String::from("# Written by codemill before every run; edits are overwritten.\n");
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("model", quote(c.model));
    line("model_provider", quote(PROVIDER_ID));
    // exec is non-interactive: anything needing approval is refused, never waited on.
    line("approval_policy", quote("never"));
    line("sandbox_mode", quote(c.sandbox_mode));
    // `bash -c`, not `bash -lc`: a login shell's /etc/profile would reset PATH.
    line("allow_login_shell", "false".into());
    line("check_for_update_on_startup", "false".into());
    line("web_search", quote("disabled"));
    if let Some(text) = c.developer_instructions {
        line("developer_instructions", quote(text));
    }
    let base_url = format!("{}/v1", c.base_url.trim_end_matches('/'));
    let idle_ms = c.stream_idle_timeout.as_millis();
    let _ = write!(
        out,
        r#"
[model_providers.{PROVIDER_ID}]
name = "codemill"
base_url = {base_url}
wire_api = "responses"
env_key = {key_env}
request_max_retries = {request}
stream_max_retries = {stream}
stream_idle_timeout_ms = {idle_ms}

# Off: everything that could reach outside hosts or is not needed for a coding job.
# unbounded_connection_retries would retry a refused connection forever.
[features]
plugins = false
apps = false
goals = false
hooks = false
memories = false
image_generation = false
shell_snapshot = false
unbounded_connection_retries = false

# Commands the agent runs inherit the environment, minus the model key.
[shell_environment_policy]
inherit = "all"
ignore_default_excludes = false
exclude = [{key_env}, {pass_env}]

[analytics]
enabled = false

[history]
persistence = "none"
"#,
        base_url = quote(&base_url),
        key_env = quote(c.key_env),
        pass_env = quote(crate::knowledge::PASS_VAR),
        request = c.request_max_retries,
        stream = c.stream_max_retries,
    );
    if let Some((command, args)) = c.mcp {
        let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
        let _ = write!(
            out,
            r#"
[mcp_servers.{server}]
command = {command}
args = [{args}]
env_vars = [{pass}]
startup_timeout_sec = 30
default_tools_approval_mode = "approve"
"#,
            server = crate::knowledge::SERVER,
            command = quote(command),
            args = args.join(", "),
            pass = quote(crate::knowledge::PASS_VAR),
        );
    }
    out
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(instructions: Option<&str>) -> String {
        render(&RunConfig {
            model: "gpt-5.5",
            base_url: "http://127.0.0.1:4000/",
            sandbox_mode: "read-only",
            developer_instructions: instructions,
            key_env: "CODEMILL_CODEX_API_KEY",
            request_max_retries: 2,
            stream_max_retries: 1,
            stream_idle_timeout: Duration::from_secs(90),
            mcp: None,
        })
    }

    #[test]
    fn renders_the_provider_and_the_mode() {
        let text = sample(None);
        assert!(text.contains("model = \"gpt-5.5\"\n"));
        assert!(text.contains("sandbox_mode = \"read-only\"\n"));
        assert!(text.contains("base_url = \"http://127.0.0.1:4000/v1\"\n"));
        assert!(text.contains("env_key = \"CODEMILL_CODEX_API_KEY\"\n"));
        assert!(text.contains("stream_idle_timeout_ms = 90000\n"));
        assert!(text.contains("exclude = [\"CODEMILL_CODEX_API_KEY\", \"CODEMILL_PASS\"]\n"));
        assert!(!text.contains("mcp_servers"));
        assert!(!text.contains("developer_instructions"));
    }

    #[test]
    fn escapes_instructions() {
        let text = sample(Some("say \"hi\"\n\\ done\u{7}"));
        assert!(
            text.contains(r#"developer_instructions = "say \"hi\"\n\\ done\u0007""#),
            "{text}"
        );
    }
}
