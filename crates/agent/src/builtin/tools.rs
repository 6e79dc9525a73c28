//! The builtin agent's tools: what is offered to the model per mode, and running a call.
//!
//! Read-only mode is enforced twice: write tools are not offered, and a call to one anyway is
//! refused here before anything touches the disk.

use std::path::PathBuf;
use std::time::Duration;

use codemill_core::agent::AgentMode;
use codemill_process::{ExecPolicy, ProcessError};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::files::{OUTPUT_MAX, Worktree};
use crate::text::one_line;

/// A tool as offered to the model; each provider wraps it in its own format.
#[derive(Debug, Clone)]
pub(crate) struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: Value,
}

/// What a tool call produced, sent back to the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    fn ok(content: String) -> ToolOutput {
        ToolOutput {
            content,
            is_error: false,
        }
    }

    fn error(content: String) -> ToolOutput {
        ToolOutput {
            content,
            is_error: true,
        }
    }
}

const READ_TOOLS: [&str; 3] = ["read_file", "list_dir", "search"];

/// The tools of one run: the worktree, the mode and how commands are started.
#[derive(Debug, Clone)]
pub(crate) struct Toolbox {
    pub worktree: Worktree,
    pub mode: AgentMode,
    /// HOME for commands (under the state dir, never the operator's).
    pub home: PathBuf,
    /// How commands run: the step's sandbox, environment and limits.
    pub exec: ExecPolicy,
    pub command_timeout: Duration,
    /// The knowledge tools, answered by the gateway under the step's pass.
    pub knowledge: Option<KnowledgeClient>,
}

/// Calls the gateway's knowledge route with the step's pass (what a CLI's MCP server does).
#[derive(Clone)]
pub(crate) struct KnowledgeClient {
    pub http: reqwest::Client,
    /// The gateway's base URL (the request's endpoint).
    pub url: String,
    pub pass: secrecy::SecretString,
}

impl std::fmt::Debug for KnowledgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl KnowledgeClient {
    /// One call; the gateway's answer (or its error) as the tool's output.
    async fn call(&self, name: &str, input: &Value) -> ToolOutput {
        match crate::knowledge::call_gateway(&self.http, &self.url, &self.pass, name, input).await {
            Ok(result) => ToolOutput::ok(serde_json::to_string_pretty(&result).unwrap_or_default()),
            Err(e) => ToolOutput::error(e.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct ReadArgs {
    path: String,
    offset: Option<usize>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    old_text: String,
    new_text: String,
}

#[derive(Deserialize)]
struct ListArgs {
    path: Option<String>,
}

#[derive(Deserialize)]
struct SearchArgs {
    pattern: String,
    path: Option<String>,
}

#[derive(Deserialize)]
struct CommandArgs {
    argv: Vec<String>,
    timeout_secs: Option<u64>,
}

impl Toolbox {
    /// The tools offered in this mode.
    pub(crate) fn specs(&self) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = all_specs()
            .into_iter()
            .filter(|spec| self.mode == AgentMode::Write || READ_TOOLS.contains(&spec.name))
            .collect();
        if self.knowledge.is_some() {
            specs.extend(
                codemill_core::knowledge::tools()
                    .into_iter()
                    .map(|t| ToolSpec {
                        name: t.name,
                        description: t.description,
                        schema: t.schema,
                    }),
            );
        }
        specs
    }

    /// Runs one call. Never fails: every problem is an error result for the model to read.
    pub(crate) async fn call(&self, name: &str, input: &Value, deadline: Instant) -> ToolOutput {
        // The knowledge tools touch only the knowledge (through the gateway), never the
        // worktree: offered in both modes.
        if let Some(knowledge) = &self.knowledge
            && codemill_core::knowledge::is_tool(name)
        {
            return knowledge.call(name, input).await;
        }
        if self.mode == AgentMode::ReadOnly && !READ_TOOLS.contains(&name) {
            return ToolOutput::error(format!(
                "tool `{name}` is not available in read-only mode; use {}",
                READ_TOOLS.join(", ")
            ));
        }
        if name == "run_command" {
            return match parse::<CommandArgs>(name, input) {
                Ok(args) => self.run_command(args, deadline).await,
                Err(e) => ToolOutput::error(e),
            };
        }
        // File tools do blocking IO (search walks the tree): keep it off the async threads.
        let worktree = self.worktree.clone();
        let name = name.to_string();
        let input = input.clone();
        let result = tokio::task::spawn_blocking(move || file_tool(&worktree, &name, &input)).await;
        match result {
            Ok(Ok(content)) => ToolOutput::ok(content),
            Ok(Err(message)) => ToolOutput::error(message),
            Err(e) => ToolOutput::error(format!("tool crashed: {e}")),
        }
    }

    /// `run_command{argv, timeout_secs?}`: no shell, cwd = worktree, under the step's policy.
    async fn run_command(&self, args: CommandArgs, deadline: Instant) -> ToolOutput {
        let Some((program, rest)) = args.argv.split_first() else {
            return ToolOutput::error("argv is empty".to_string());
        };
        let requested = args
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(self.command_timeout);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = requested.min(self.command_timeout).min(remaining);
        let policy = self.exec.clone().env("HOME", &self.home);
        let output = match policy
            .hand_over()
            .and_then(|()| policy.command(program, rest, self.worktree.root()))
        {
            Ok(cmd) => cmd.output(Some(timeout), OUTPUT_MAX).await,
            Err(e) => Err(e),
        };
        let output = match output {
            Ok(output) => output,
            Err(ProcessError::NotFound { program }) => {
                return ToolOutput::error(format!("command not found: {program}"));
            }
            Err(e) => return ToolOutput::error(e.to_string()),
        };
        let mut content = if output.timed_out {
            format!("killed after {} s (timeout)\n", timeout.as_secs())
        } else {
            match output.code() {
                Some(code) => format!("exit code {code}\n"),
                None => "killed by a signal\n".to_string(),
            }
        };
        content.push_str(&output.combined());
        if output.success() {
            ToolOutput::ok(content)
        } else {
            ToolOutput::error(content)
        }
    }
}

fn file_tool(worktree: &Worktree, name: &str, input: &Value) -> Result<String, String> {
    match name {
        "read_file" => {
            let a: ReadArgs = parse(name, input)?;
            worktree.read_file(&a.path, a.offset, a.limit)
        }
        "write_file" => {
            let a: WriteArgs = parse(name, input)?;
            worktree.write_file(&a.path, &a.content)
        }
        "edit_file" => {
            let a: EditArgs = parse(name, input)?;
            worktree.edit_file(&a.path, &a.old_text, &a.new_text)
        }
        "list_dir" => {
            let a: ListArgs = parse(name, input)?;
            worktree.list_dir(a.path.as_deref())
        }
        "search" => {
            let a: SearchArgs = parse(name, input)?;
            worktree.search(&a.pattern, a.path.as_deref())
        }
        other => Err(format!("unknown tool `{other}`")),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(name: &str, input: &Value) -> Result<T, String> {
    if let Value::String(raw) = input {
        // Arguments that were not valid JSON are kept as the raw string (see session::Block).
        return Err(format!(
            "arguments for `{name}` are not valid JSON: {}",
            one_line(raw, 200)
        ));
    }
    T::deserialize(input).map_err(|e| format!("invalid arguments for `{name}`: {e}"))
}

/// One line for progress: the path, or the command line.
pub(crate) fn summary(name: &str, input: &Value) -> String {
    let text = match name {
        "run_command" => input
            .get("argv")
            .and_then(Value::as_array)
            .map(|argv| {
                argv.iter()
                    .map(|a| match a.as_str() {
                        Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => {
                            s.to_string()
                        }
                        Some(s) => format!("{s:?}"),
                        None => a.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        "search" => {
            let pattern = input.get("pattern").and_then(Value::as_str).unwrap_or("");
            match input.get("path").and_then(Value::as_str) {
                Some(path) => format!("{pattern} in {path}"),
                None => pattern.to_string(),
            }
        }
        _ => input
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(".")
            .to_string(),
    };
    one_line(&text, 200)
}

fn all_specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "read_file",
            description: "Read a UTF-8 text file in the worktree. Optional offset (1-based first \
                          line) and limit (number of lines) read part of a long file.",
            schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the worktree root"},
                    "offset": {"type": "integer", "minimum": 1},
                    "limit": {"type": "integer", "minimum": 1}
                },
                "required": ["path"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "write_file",
            description: "Create or replace a file in the worktree with the given content. \
                          Parent directories are created.",
            schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the worktree root"},
                    "content": {"type": "string"}
                },
                "required": ["path", "content"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "edit_file",
            description: "Replace old_text with new_text in a file. old_text must occur exactly \
                          once; include enough surrounding lines to make it unique.",
            schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "old_text": {"type": "string"},
                    "new_text": {"type": "string"}
                },
                "required": ["path", "old_text", "new_text"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "list_dir",
            description: "List a directory of the worktree (default: the root). Directories end \
                          with /.",
            schema: json!({
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "search",
            description: "Search text files for a regular expression (Rust regex syntax). \
                          Prints path:line: text per match; .git is skipped.",
            schema: json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string"},
                    "path": {"type": "string", "description": "File or directory to search (default: the root)"}
                },
                "required": ["pattern"],
                "additionalProperties": false
            }),
        },
        ToolSpec {
            name: "run_command",
            description: "Run a program in the worktree root. argv is the argument list (no \
                          shell: no pipes, globs or redirections; use [\"sh\", \"-c\", ...] if you \
                          need one). Returns the exit code and the (capped) output.",
            schema: json!({
                "type": "object",
                "properties": {
                    "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "timeout_secs": {"type": "integer", "minimum": 1}
                },
                "required": ["argv"],
                "additionalProperties": false
            }),
        },
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn toolbox(mode: AgentMode) -> (tempfile::TempDir, Toolbox) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("wt")).unwrap();
        let toolbox = Toolbox {
            worktree: Worktree::new(&dir.path().join("wt")).unwrap(),
            mode,
            home: dir.path().join("home"),
            exec: ExecPolicy::new(
                codemill_process::Sandbox::Off,
                codemill_process::Limits::default(),
            )
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CODEMILL_TEST_VAR", "from-the-policy"),
            command_timeout: Duration::from_secs(10),
            knowledge: None,
        };
        (dir, toolbox)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn read_only_offers_only_read_tools() {
        let (_dir, ro) = toolbox(AgentMode::ReadOnly);
        let names: Vec<_> = ro.specs().iter().map(|s| s.name).collect();
        assert_eq!(names, ["read_file", "list_dir", "search"]);
        let (_dir, rw) = toolbox(AgentMode::Write);
        assert_eq!(rw.specs().len(), 6);
    }

    #[tokio::test]
    async fn read_only_refuses_write_calls() {
        let (_dir, ro) = toolbox(AgentMode::ReadOnly);
        let out = ro
            .call("write_file", &json!({"path": "a", "content": "x"}), far())
            .await;
        assert!(out.is_error);
        assert!(out.content.contains("read-only"), "{}", out.content);
        let out = ro
            .call("run_command", &json!({"argv": ["touch", "a"]}), far())
            .await;
        assert!(out.is_error);
        assert!(!ro.worktree.root().join("a").exists());
    }

    #[tokio::test]
    async fn commands_run_without_a_shell_in_a_clean_environment() {
        let (_dir, rw) = toolbox(AgentMode::Write);
        let out = rw
            .call(
                "run_command",
                &json!({"argv": ["sh", "-c", "pwd; echo $HOME; echo $CODEMILL_TEST_VAR; exit 3"]}),
                far(),
            )
            .await;
        assert!(out.is_error);
        let root = rw.worktree.root().display().to_string();
        assert!(out.content.starts_with("exit code 3\n"), "{}", out.content);
        assert!(out.content.contains(&root), "{}", out.content);
        assert!(out.content.contains("/home\n"), "{}", out.content);
        assert!(out.content.contains("from-the-policy"), "{}", out.content);
        // The argument list is passed as is: no globbing or splitting.
        let out = rw
            .call("run_command", &json!({"argv": ["echo", "*  two"]}), far())
            .await;
        assert_eq!(out.content, "exit code 0\n*  two\n");
    }

    #[tokio::test]
    async fn command_timeouts_and_missing_programs_are_tool_errors() {
        let (_dir, rw) = toolbox(AgentMode::Write);
        let started = std::time::Instant::now();
        let out = rw
            .call(
                "run_command",
                &json!({"argv": ["sleep", "30"], "timeout_secs": 1}),
                far(),
            )
            .await;
        assert!(out.is_error);
        assert!(out.content.contains("timeout"), "{}", out.content);
        assert!(started.elapsed() < Duration::from_secs(10));
        let out = rw
            .call(
                "run_command",
                &json!({"argv": ["codemill-no-such-tool"]}),
                far(),
            )
            .await;
        assert!(out.is_error);
        assert!(out.content.contains("not found"), "{}", out.content);
    }

    #[tokio::test]
    async fn bad_arguments_are_tool_errors() {
        let (_dir, rw) = toolbox(AgentMode::Write);
        let out = rw.call("write_file", &json!({"path": "a"}), far()).await;
        assert!(
            out.is_error && out.content.contains("content"),
            "{}",
            out.content
        );
        let out = rw.call("read_file", &json!("{not json"), far()).await;
        assert!(out.is_error && out.content.contains("not valid JSON"));
        let out = rw.call("rm_rf", &json!({}), far()).await;
        assert!(out.is_error && out.content.contains("unknown tool"));
    }

    #[test]
    fn summaries_name_the_path_or_command() {
        assert_eq!(
            summary("write_file", &json!({"path": "src/a.rs"})),
            "src/a.rs"
        );
        assert_eq!(
            summary("run_command", &json!({"argv": ["cargo", "test", "a b"]})),
            "cargo test \"a b\""
        );
        assert_eq!(summary("search", &json!({"pattern": "fn main"})), "fn main");
        assert_eq!(summary("list_dir", &json!({})), ".");
    }
}
