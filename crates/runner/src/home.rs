//! The codemill home: where every piece of state lives, and how it is created and read.
//!
//! Layout: `codemill.toml`, `codemill.db`, `clones/<project>.git`, `worktrees/<project>/<KEY>`,
//! `logs/<job>/`, `agents/<job>/`, `run/`.

use std::path::{Path, PathBuf};

use codemill_core::config::{Config, ConfigError};
use codemill_core::ids::{JobId, TicketKey};

/// Errors about the home directory and its config file.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{0} is not a codemill home (no codemill.toml); run `codemill init` or pass --home")]
    NotInitialised(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The default configuration written by `codemill init`, documented inline.
pub const DEFAULT_CONFIG: &str = r#"# codemill configuration. Every key is optional; unknown keys are errors.
# Reference: the "Configuration" section of codemill's README.

[pipeline]
# max_fix_rounds = 3          # fix rounds before a job stops as needs_attention
# gate_timeout_secs = 600     # default timeout of one gate command
# gate_output_cap_bytes = 65536

[git]
# author_name = "codemill"
# author_email = "codemill@localhost"
# worktree_retention = "remove"   # remove | keep_failed | keep

[agent]
# backend = "builtin"        # builtin | claude-code | codex | gemini | opencode
# provider = "demo"          # a name under [providers]; "demo" is the embedded scripted demo model
# model = "codemill-demo"
# max_turns = 30
# wall_clock_secs = 1800
# idle_secs = 300

# [agents.claude-code]
# command = "claude"
# max_api_retries = 2
# api_timeout_ms = 60000
# [agents.codex]
# command = "codex"
# [agents.gemini]
# command = "gemini"
# [agents.opencode]
# command = "opencode"
# [agents.builtin]
# max_api_retries = 2
# command_timeout_secs = 300

# [providers.anthropic]
# api = "anthropic"          # anthropic | openai-chat | openai-responses | gemini | demo
# base_url = "https://api.anthropic.com"
# api_key_env = "ANTHROPIC_API_KEY"   # the NAME of the variable, never the key

# [prices."claude-sonnet-4-5"]    # dollars per million tokens; a model without a price costs $0
# input_per_mtok = 3.0
# output_per_mtok = 15.0
# cache_read_per_mtok = 0.3
# cache_write_per_mtok = 3.75

# Every agent, agent command, gate and prepare step runs in bubblewrap; jobs refuse to start
# when it cannot sandbox here (`codemill doctor` says why).
[sandbox]
# mode = "bwrap"             # "off" only on a machine that is itself a throwaway sandbox
# expose = ["/opt/toolchains"]   # extra read-only host paths
# max_processes = 1024
# max_file_size_mb = 4096
# cpu_secs = 14400

# Spending limits, enforced by codemill's model gateway before each model request.
[budgets]
# job_usd = 20.0
# ticket_usd = 50.0
# project_day_usd = 200.0
# day_usd = 500.0
# job_tokens = 5000000

# Projects are added with `codemill project add NAME --repo PATH_OR_URL`.
# Per project: [projects.NAME.budgets] (same keys) and
# [projects.NAME.sandbox] allow_hosts = ["index.crates.io"] (reached through the egress proxy).
"#;

/// Paths of one codemill home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// `--home`, else `CODEMILL_HOME`, else `~/.codemill`.
    pub fn resolve(
        flag: Option<PathBuf>,
        env: Option<PathBuf>,
        user_home: Option<PathBuf>,
    ) -> Home {
        let root = flag.or(env).unwrap_or_else(|| {
            user_home
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".codemill")
        });
        // Absolute before anything is handed to an agent (or a sandbox, which binds paths).
        Home::new(std::path::absolute(&root).unwrap_or(root))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("codemill.toml")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("codemill.db")
    }
    pub fn clone_dir(&self, project: &str) -> PathBuf {
        self.root.join("clones").join(format!("{project}.git"))
    }
    pub fn worktree(&self, key: &TicketKey) -> PathBuf {
        self.root
            .join("worktrees")
            .join(key.project())
            .join(key.to_string())
    }
    pub fn logs(&self, job: JobId) -> PathBuf {
        self.root.join("logs").join(job.to_string())
    }
    pub fn agent_state(&self, job: JobId, backend: &str) -> PathBuf {
        self.root.join("agents").join(job.to_string()).join(backend)
    }
    /// Private (0700) runtime files: the sandbox relay, the model gateway's socket.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn is_initialised(&self) -> bool {
        self.config_file().is_file()
    }

    /// Create the home and a default config; keeps an existing config. Returns whether it created one.
    pub fn init(&self) -> Result<bool, HomeError> {
        for dir in ["clones", "worktrees"] {
            let p = self.root.join(dir);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        // What agents said and did, and the runtime sockets: the service's alone.
        for dir in ["logs", "agents", "run"] {
            use std::os::unix::fs::PermissionsExt;
            let p = self.root.join(dir);
            std::fs::create_dir_all(&p)
                .and_then(|()| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)))
                .map_err(io(&p))?;
        }
        let file = self.config_file();
        if file.exists() {
            return Ok(false);
        }
        std::fs::write(&file, DEFAULT_CONFIG).map_err(io(&file))?;
        Ok(true)
    }

    /// Read and validate `codemill.toml`.
    pub fn load_config(&self) -> Result<Config, HomeError> {
        let file = self.config_file();
        if !file.exists() {
            return Err(HomeError::NotInitialised(self.root.clone()));
        }
        if !file.is_file() {
            return Err(HomeError::Io {
                source: std::io::Error::other("this is not a file; codemill.toml must be one"),
                path: file,
            });
        }
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        Ok(Config::parse(&text, file)?)
    }

    /// Append a `[projects.NAME]` table to the config, keeping the rest of the file as written.
    pub fn add_project(&self, name: &str, repo: &str) -> Result<(), HomeError> {
        let file = self.config_file();
        let mut text = std::fs::read_to_string(&file).map_err(io(&file))?;
        if !text.ends_with('\n') && !text.is_empty() {
            text.push('\n');
        }
        let repo_literal = toml_string(repo);
        text.push_str(&format!("\n[projects.{name}]\nrepo = {repo_literal}\n"));
        // Validate before writing so a bad edit never lands.
        Config::parse(&text, file.clone())?;
        let tmp = file.with_extension("toml.tmp");
        std::fs::write(&tmp, &text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        Ok(())
    }
}

impl Home {
    /// Take `[projects.NAME]` and its sub-tables out of codemill.toml; `false` when it has no
    /// such project. The edit is validated before it is written, like `add_project`.
    pub fn remove_project(&self, name: &str) -> Result<bool, HomeError> {
        let file = self.config_file();
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        let kept = without_project(&text, name);
        if kept == text {
            return Ok(false);
        }
        let config = Config::parse(&kept, file.clone())?;
        if config.projects.contains_key(name) {
            return Ok(false);
        }
        let tmp = file.with_extension("toml.tmp");
        std::fs::write(&tmp, &kept).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        Ok(true)
    }
}

/// `text` without the tables of project `name`: every header `[projects.NAME]`,
/// `[projects.NAME.…]` or `[[projects.NAME.…]]` and the lines up to the next other header.
fn without_project(text: &str, name: &str) -> String {
    let ours = |header: &str| {
        let path: Vec<String> = header
            .trim_matches(|c| c == '[' || c == ']' || c == ' ')
            .split('.')
            .map(|p| p.trim().trim_matches('"').to_string())
            .collect();
        path.len() >= 2 && path[0] == "projects" && path[1] == name
    };
    let mut out = String::new();
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            skipping = ours(trimmed.split('#').next().unwrap_or(trimmed).trim());
        }
        if !skipping {
            out.push_str(line);
        }
    }
    out
}

/// A TOML basic string literal.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every setting the template shows, uncommented, is a valid configuration: the template
    /// documents keys and values that exist.
    #[test]
    fn the_init_template_uncommented_is_valid() {
        let uncommented: String = DEFAULT_CONFIG
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if !rest.contains("NAME")
                        && (rest.starts_with('[')
                            || (rest.starts_with(|c: char| c.is_ascii_lowercase())
                                && rest.contains(" = "))) =>
                {
                    rest.to_string()
                }
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            uncommented.contains("\nbackend = \"builtin\""),
            "{uncommented}"
        );
        assert!(uncommented.contains("\n[agents.opencode]"), "{uncommented}");
        Config::parse(&uncommented, PathBuf::from("codemill.toml")).unwrap();
    }

    #[test]
    fn a_project_is_removed_with_its_sub_tables_only() {
        let text = "[pipeline]\nmax_fix_rounds = 2\n\n[projects.web]\nrepo = \"/r/web\"\n\n[projects.web.roles]\ntrigger = [\"*\"]\n\n[[projects.web.notify]]\nchannel = \"webhook\"\n\n[projects.webapp]\nrepo = \"/r/app\"\n";
        assert_eq!(
            without_project(text, "web"),
            "[pipeline]\nmax_fix_rounds = 2\n\n[projects.webapp]\nrepo = \"/r/app\"\n"
        );
        assert_eq!(without_project(text, "nope"), text);
    }

    #[test]
    fn resolution_order() {
        let h = Home::resolve(Some("/a".into()), Some("/b".into()), Some("/u".into()));
        assert_eq!(h.root(), Path::new("/a"));
        let h = Home::resolve(None, Some("/b".into()), Some("/u".into()));
        assert_eq!(h.root(), Path::new("/b"));
        let h = Home::resolve(None, None, Some("/u".into()));
        assert_eq!(h.root(), Path::new("/u/.codemill"));
        let h = Home::resolve(Some("rel/home".into()), None, None);
        assert!(h.root().is_absolute(), "{}", h.root().display());
        assert!(h.root().ends_with("rel/home"));
    }

    #[test]
    fn init_then_add_project_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        assert!(home.init().unwrap());
        assert!(!home.init().unwrap());
        home.add_project("WEB", "/repos/we\"b").unwrap();
        let c = home.load_config().unwrap();
        assert_eq!(c.projects["WEB"].repo, "/repos/we\"b");
        assert!(
            home.add_project("WEB", "/x").is_err(),
            "duplicate project accepted"
        );
        assert_eq!(home.load_config().unwrap().projects.len(), 1);
    }

    #[test]
    fn missing_home_says_so() {
        let home = Home::new("/nonexistent/codemill-home");
        let err = home.load_config().unwrap_err().to_string();
        assert!(
            err.contains("not a codemill home") && err.contains("codemill init"),
            "{err}"
        );
    }
}
