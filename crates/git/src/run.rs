//! Building and running one hardened git command line: fixed safety config, scrubbed environment.
//!
//! Every git process codemill starts on the host is built here, so the rules that keep an agent's
//! repository config from running code on the host (no hooks, no fsmonitor, no signing programs,
//! no `ext::` transport) cannot be forgotten by a single call site.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use codemill_process::{Cmd, Output};

use crate::repo::Ctx;
use crate::{Git, GitError, HttpAuth};

/// `-c` settings given to every host git call, before the subcommand.
///
/// Command-line config beats every config file, so whatever an agent wrote into the repository
/// config or a hooks directory is never consulted for these keys.
pub(crate) const SAFETY_CONFIG: &[(&str, &str)] = &[
    // The two measured escapes: hooks and fsmonitor both ran on the host without these.
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    // Signing would run `gpg.program`, which repository config can name.
    ("commit.gpgsign", "false"),
    ("tag.gpgsign", "false"),
    ("push.gpgsign", "false"),
    // `ext::` URLs run arbitrary commands; a repository config could have allowed them.
    ("protocol.ext.allow", "never"),
    // Auto gc and maintenance daemonize out of our process group and race worktree operations;
    // codemill runs gc itself under the repository lock.
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    // Submodule recursion would run git in directories whose `.git` the agent controls.
    ("submodule.recurse", "false"),
    ("color.ui", "never"),
    // Extra HTTP headers for every URL from a config file (left by a CI checkout, say) would go
    // to every remote codemill talks to, next to or instead of its own credentials. Cleared here
    // for all calls; URL-scoped ones are dealt with by `HttpAuth::config_entries` (broader than
    // or equal to the auth prefix) and by the config check (repository scope, any URL). Git
    // skips this entry for URLs where a more specific one was already applied, so codemill's
    // own scoped header (in the environment, which git reads before `-c`) survives it.
    ("http.extraHeader", ""),
];

/// Inherited variables that would point git at another repository, index, config or identity.
const ENV_REMOVE: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_QUARANTINE_PATH",
    "GIT_ATTR_SOURCE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_EXTERNAL_DIFF",
    "GIT_DIFF_OPTS",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    // Tracing that could copy the HTTP auth header or its config entry into stderr (which ends
    // up in error messages): `GIT_TRACE_REDACT=0` turns off git's redaction of `Authorization`
    // in curl traces, older gits hand `GIT_CURL_VERBOSE` to curl unredacted, and trace2 can be
    // told to print chosen environment variables and config values.
    "GIT_TRACE_REDACT",
    "GIT_CURL_VERBOSE",
    "GIT_TRACE2_ENV_VARS",
    "GIT_TRACE2_CONFIG_PARAMS",
];

/// Subcommands that contact a remote: the only ones given the HTTP auth header (see
/// [`Call::talks_to_remote`]).
const REMOTE_SUBCOMMANDS: &[&str] = &["fetch", "push", "ls-remote", "clone", "pull"];

/// One git invocation being assembled: per-call config, arguments and environment.
pub(crate) struct Call {
    config: Vec<(String, String)>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cap: Option<usize>,
    allow_truncated: bool,
}

impl Call {
    pub(crate) fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Call {
            config: Vec::new(),
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            cap: None,
            allow_truncated: false,
        }
    }

    /// An extra `-c key=value` (the key is always one of ours, never caller text).
    pub(crate) fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Use `index` (one of codemill's own) instead of the repository's index, with the settings
    /// that keep git's view of it trustworthy (`index::INDEX_CONFIG`).
    pub(crate) fn index(mut self, index: &Path) -> Self {
        for (k, v) in crate::index::INDEX_CONFIG {
            self = self.config(k, v);
        }
        self.env("GIT_INDEX_FILE", index)
    }

    /// Keep at most `cap` bytes of stdout (head and tail) and accept a truncated result.
    pub(crate) fn capped(mut self, cap: usize) -> Self {
        self.cap = Some(cap);
        self.allow_truncated = true;
        self
    }

    /// Whether git may contact a remote for this call, so it needs the HTTP auth header.
    ///
    /// Other commands never use it, and some print command-scope config (`git config --list`,
    /// which the config check runs and whose output a failure would put into an error), so
    /// the header is kept away from them.
    fn talks_to_remote(&self) -> bool {
        self.args
            .first()
            .and_then(|a| a.to_str())
            .is_some_and(|sub| REMOTE_SUBCOMMANDS.contains(&sub))
    }

    /// The command for messages: subcommand and arguments, credentials in URLs hidden.
    fn shown(&self) -> String {
        let mut out = String::from("git");
        for a in &self.args {
            out.push(' ');
            let a = redact(&a.to_string_lossy());
            if a.is_empty() || a.contains(char::is_whitespace) {
                out.push_str(&format!("{a:?}"));
            } else {
                out.push_str(&a);
            }
        }
        out
    }
}

/// Hide the user-info part of every `scheme://user:secret@host` in `text`.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

impl Git {
    /// The HTTP auth this call carries, if any.
    fn auth_for(&self, call: &Call) -> Option<&HttpAuth> {
        self.http_auth.as_ref().filter(|_| call.talks_to_remote())
    }

    fn build(&self, ctx: Option<&Ctx>, call: &Call) -> Cmd {
        let mut cmd = Cmd::new(&self.program);
        for (k, v) in SAFETY_CONFIG {
            cmd = cmd.arg("-c").arg(format!("{k}={v}"));
        }
        for (k, v) in &call.config {
            cmd = cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd = cmd.args(&call.args);
        for k in ENV_REMOVE {
            cmd = cmd.env_remove(k);
        }
        cmd = cmd.env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C");
        match ctx {
            Some(ctx) => {
                cmd = cmd.cwd(ctx.cwd());
                for (k, v) in ctx.env() {
                    cmd = cmd.env(k, v);
                }
            }
            // Outside any repository: run from `/` so no repository (and its config) is discovered.
            None => cmd = cmd.cwd(Path::new("/")),
        }
        // Overrides for keys found in repository config go through the environment: unlike `-c`,
        // it cannot be misparsed when a subsection name contains `=`. The HTTP auth header goes
        // the same way, after them, so it is never an argument (visible in `ps`).
        let overrides = ctx.map_or(&[][..], Ctx::overrides);
        let auth = self.auth_for(call).map(HttpAuth::config_entries);
        let entries = overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(auth.iter().flatten().map(|(k, v)| (k.as_str(), *v)));
        let mut count = 0;
        for (i, (k, v)) in entries.enumerate() {
            cmd = cmd
                .env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
            count = i + 1;
        }
        if count > 0 {
            cmd = cmd.env("GIT_CONFIG_COUNT", count.to_string());
        }
        for (k, v) in &call.env {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// Run and return the raw output; the caller interprets the exit status.
    pub(crate) async fn output(&self, ctx: Option<&Ctx>, call: Call) -> Result<Output, GitError> {
        let cmd = self.build(ctx, &call);
        let shown = call.shown();
        let cap = call.cap.unwrap_or(self.output_cap);
        tracing::debug!(command = %shown, cwd = ?ctx.map(|c| c.cwd().to_owned()), "git");
        let mut out = cmd.output(Some(self.timeout), cap).await?;
        if let Some(auth) = self.auth_for(&call) {
            out.stdout = auth.scrub(&out.stdout);
            out.stderr = auth.scrub(&out.stderr);
        }
        if out.timed_out {
            return Err(GitError::Timeout {
                command: shown,
                after: self.timeout,
            });
        }
        if out.stdout_truncated && !call.allow_truncated {
            return Err(GitError::OutputTooLarge { command: shown });
        }
        Ok(out)
    }

    /// Run, requiring success; returns stdout.
    pub(crate) async fn run(&self, ctx: Option<&Ctx>, call: Call) -> Result<String, GitError> {
        let shown = call.shown();
        let out = self.output(ctx, call).await?;
        if !out.success() {
            return Err(command_error(shown, &out));
        }
        Ok(out.stdout)
    }

    /// Run, requiring success; returns stdout's first line without the newline.
    pub(crate) async fn run_line(&self, ctx: Option<&Ctx>, call: Call) -> Result<String, GitError> {
        let out = self.run(ctx, call).await?;
        Ok(out.lines().next().unwrap_or("").trim().to_owned())
    }
}

pub(crate) fn command_error(shown: String, out: &Output) -> GitError {
    // Some commands report the reason on stdout (`push --porcelain`: "[rejected] (stale info)").
    let mut text = out.stderr.trim().to_owned();
    let stdout = out.stdout.trim();
    if !stdout.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.extend(stdout.chars().take(2000));
    }
    let stderr = redact(&text);
    GitError::Command {
        command: shown,
        stderr,
        code: out.code(),
    }
}

/// The command text of a call, for errors raised after interpreting an exit status.
pub(crate) fn shown<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Call::new(args).shown()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(
            redact("fatal: https://bot:ghp_secret@github.com/a/b.git failed"),
            "fatal: https://***@github.com/a/b.git failed"
        );
        assert_eq!(redact("ssh://git@host/x"), "ssh://***@host/x");
        assert_eq!(
            redact("https://host/x and /plain/path"),
            "https://host/x and /plain/path"
        );
        assert_eq!(redact("no url"), "no url");
    }

    #[test]
    fn http_auth_goes_to_the_environment_of_remote_calls_only() {
        let token = secrecy::SecretString::from("ghp_unit_test_token_123");
        let auth = HttpAuth::github_token("https://github.com/", &token);
        let header = secrecy::ExposeSecret::expose_secret(&auth.header).to_owned();
        let credential = header.rsplit(' ').next().unwrap_or_default().to_owned();
        let git = Git::new().with_http_auth(Some(auth));
        let secrets = [
            "ghp_unit_test_token_123",
            header.as_str(),
            credential.as_str(),
        ];
        let clean = |text: &str| secrets.iter().all(|s| !text.contains(s));
        assert!(clean(&format!("{git:?}")));

        let ctx = Ctx::bare(PathBuf::from("/nonexistent/clone.git"));
        for ctx in [None, Some(&ctx)] {
            let call = Call::new(["fetch", "--prune", "origin"]);
            let cmd = git.build(ctx, &call);
            assert!(cmd.get_args().iter().all(|a| clean(&a.to_string_lossy())));
            assert!(clean(&cmd.display()) && clean(&call.shown()));
            let debug = format!("{cmd:?}");
            assert!(clean(&debug), "{debug}");
            assert!(debug.contains("GIT_CONFIG_COUNT") && debug.contains("GIT_CONFIG_VALUE_1"));

            // A command that never contacts a remote does not get the header at all.
            let call = Call::new(["config", "--list", "--show-scope", "-z"]);
            let debug = format!("{:?}", git.build(ctx, &call));
            assert!(!debug.contains("GIT_CONFIG_COUNT"), "{debug}");
        }
    }
}
